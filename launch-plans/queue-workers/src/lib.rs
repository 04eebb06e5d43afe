//! What the worker and the load generator share: connecting to the broker and declaring the
//! work queue the same way (durable, so that messages survive a broker restart).

use anyhow::{Context, Result};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

/// The broker the plan uses unless told otherwise.
pub const DEFAULT_URL: &str = "amqp://127.0.0.1:5672/%2f";

/// Connects to `url` and opens a channel on which `queue` is declared.
pub async fn open(url: &str, queue: &str, name: &str) -> Result<(Connection, Channel)> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let conn = Connection::connect(url, props)
        .await
        .with_context(|| format!("connecting to the broker at {url}"))?;
    let channel = conn.create_channel().await.context("opening a channel")?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring the queue '{queue}'"))?;
    Ok((conn, channel))
}
