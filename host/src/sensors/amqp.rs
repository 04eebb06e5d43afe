//! The AMQP queue-depth sensor: a passive queue declare on an interval. The connection is
//! kept between polls and made anew after any failure, so a broker that comes back is picked
//! up at the next poll.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use std::time::Duration;

/// The longest one poll (connecting included) may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

struct Link {
    conn: Connection,
    channel: Channel,
}

/// Reads queue depths from one broker.
pub struct QueueDepth {
    url: String,
    queue: String,
    link: Option<Link>,
}

impl QueueDepth {
    pub fn new(url: &str, queue: &str) -> QueueDepth {
        QueueDepth {
            url: url.to_string(),
            queue: queue.to_string(),
            link: None,
        }
    }

    /// The number of ready messages in the queue. After a failure the next call reconnects.
    pub async fn read(&mut self) -> Result<f64, String> {
        let result = match tokio::time::timeout(POLL_TIMEOUT, self.declare()).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer from the broker within {}s",
                POLL_TIMEOUT.as_secs()
            )),
        };
        if result.is_err() {
            if let Some(link) = self.link.take() {
                // Best effort: the connection may already be gone.
                tokio::spawn(async move {
                    let _ = link.conn.close(200, "epu sensor reconnects".into()).await;
                });
            }
        }
        result
    }

    async fn declare(&mut self) -> Result<f64, String> {
        let link = match self.link.take() {
            Some(l) if l.conn.status().connected() && l.channel.status().connected() => l,
            _ => self.connect().await?,
        };
        let queue = link
            .channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        self.link = Some(link);
        let queue = queue.map_err(|e| format!("queue '{}': {e}", self.queue))?;
        Ok(f64::from(queue.message_count()))
    }

    async fn connect(&self) -> Result<Link, String> {
        let props = ConnectionProperties::default().with_connection_name("epu-sensor".into());
        let conn = Connection::connect(&self.url, props)
            .await
            .map_err(|e| format!("connecting to the broker: {e}"))?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| format!("opening a channel: {e}"))?;
        Ok(Link { conn, channel })
    }
}
