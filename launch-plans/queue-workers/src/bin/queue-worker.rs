//! A queue worker: takes one message at a time from the queue, works on it for `WORK_MS`,
//! acks it, and heartbeats to epu all along.
//!
//! Settings come from the env: `QUEUE` (required), `AMQP_URL`, `WORK_MS` (default 200),
//! `HEARTBEAT_MS` (default 1000) and `DONE_LOG`, a file that gets one line per acked message:
//! `<body>\t<redelivered>\t<node id>`. epu gives it `EPU_BIN` and `EPU_NODE_ID`.
//!
//! SIGTERM stops it at once. A message it was working on is left un-acked, so the broker
//! delivers it again to another worker: nothing is lost and nothing is acked twice.

use anyhow::{bail, Context, Result};
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

struct Settings {
    url: String,
    queue: String,
    work: Duration,
    heartbeat: Duration,
    done_log: Option<PathBuf>,
    node: String,
}

fn millis(var: &str, default: u64) -> Result<Duration> {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Duration::from_millis)
            .with_context(|| format!("{var} must be a whole number of milliseconds, got '{v}'")),
        Err(_) => Ok(Duration::from_millis(default)),
    }
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let queue = std::env::var("QUEUE").unwrap_or_default();
        if queue.is_empty() {
            bail!("QUEUE is not set: name the queue to consume from");
        }
        Ok(Settings {
            url: std::env::var("AMQP_URL").unwrap_or_else(|_| queue_workers::DEFAULT_URL.into()),
            queue,
            work: millis("WORK_MS", 200)?,
            heartbeat: millis("HEARTBEAT_MS", 1000)?,
            done_log: std::env::var_os("DONE_LOG").map(PathBuf::from),
            node: std::env::var("EPU_NODE_ID").unwrap_or_else(|_| "-".into()),
        })
    }
}

/// Why consuming ended.
enum Ended {
    Terminated,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queue-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let settings = Settings::from_env()?;
    let mut term = signal(SignalKind::terminate())?;
    if let Ok(epu) = std::env::var("EPU_BIN") {
        tokio::spawn(heartbeats(epu, settings.heartbeat));
    }
    eprintln!(
        "queue-worker {}: consuming '{}' ({} ms a message)",
        settings.node,
        settings.queue,
        settings.work.as_millis()
    );
    loop {
        match consume(&settings, &mut term).await {
            Ok(Ended::Terminated) => return Ok(()),
            // The broker went away: keep heartbeating (this worker is fine) and reconnect.
            Err(e) => eprintln!("queue-worker {}: {e:#}; reconnecting", settings.node),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = term.recv() => return Ok(()),
        }
    }
}

async fn consume(s: &Settings, term: &mut tokio::signal::unix::Signal) -> Result<Ended> {
    let (conn, channel) = queue_workers::open(&s.url, &s.queue, "queue-worker").await?;
    channel.basic_qos(1, BasicQosOptions::default()).await?;
    let mut deliveries = channel
        .basic_consume(
            s.queue.as_str().into(),
            format!("worker-{}", s.node).as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        let next = tokio::select! {
            next = deliveries.next() => next,
            _ = term.recv() => break,
        };
        let delivery = match next {
            Some(d) => d.context("receiving")?,
            None => bail!("the broker cancelled the consumer"),
        };
        tokio::select! {
            _ = tokio::time::sleep(s.work) => {}
            // Stop mid-work: the message stays un-acked and goes back to the queue.
            _ = term.recv() => break,
        }
        delivery
            .ack(BasicAckOptions::default())
            .await
            .context("acking")?;
        if let Some(path) = &s.done_log {
            let body = String::from_utf8_lossy(&delivery.data);
            let line = format!("{body}\t{}\t{}\n", delivery.redelivered, s.node);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let _ = conn.close(200, "worker stopping".into()).await;
    Ok(Ended::Terminated)
}

/// Runs `epu heartbeat` every `every`; a failed heartbeat is reported and retried.
async fn heartbeats(epu: String, every: Duration) {
    loop {
        match tokio::process::Command::new(&epu)
            .arg("heartbeat")
            .status()
            .await
        {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!("queue-worker: heartbeat failed ({s})"),
            Err(e) => eprintln!("queue-worker: running {epu}: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}
