//! The load generator: publishes a burst of persistent messages to the work queue (with
//! publisher confirms, so each is safely in the broker), then optionally watches the queue:
//! its length and how many consumers (workers) it has, once a second.
//!
//! It needs nothing of epu: the workers' count comes from the broker's consumer count.

use anyhow::{bail, Result};
use clap::Parser;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "queue-load",
    about = "Send a burst of messages to a work queue and watch it drain"
)]
struct Args {
    /// The broker.
    #[arg(long, default_value = queue_workers::DEFAULT_URL)]
    url: String,
    #[arg(long, default_value = "epu-work")]
    queue: String,
    /// How many messages to send.
    #[arg(long, default_value_t = 200)]
    count: u32,
    /// Message bodies are `<prefix>-<n>`.
    #[arg(long, default_value = "msg")]
    prefix: String,
    /// After the burst, print the queue length and consumer count every second for up to
    /// this many seconds.
    #[arg(long, default_value_t = 0)]
    watch: u64,
    /// Stop watching once the queue is empty and has this many consumers.
    #[arg(long)]
    until_consumers: Option<u32>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queue-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    if args.count == 0 && args.watch == 0 {
        bail!("nothing to do: give --count above 0 or --watch");
    }
    let (conn, channel) = queue_workers::open(&args.url, &args.queue, "queue-load").await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let start = Instant::now();
    let persistent = BasicProperties::default().with_delivery_mode(2);
    let mut confirms = Vec::with_capacity(args.count as usize);
    for n in 0..args.count {
        let body = format!("{}-{n}", args.prefix);
        let confirm = channel
            .basic_publish(
                "".into(),
                args.queue.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                persistent.clone(),
            )
            .await?;
        confirms.push(confirm);
    }
    for confirm in confirms {
        if !confirm.await?.is_ack() {
            bail!("the broker refused a message");
        }
    }
    if args.count > 0 {
        println!(
            "published {} messages to '{}' in {} ms",
            args.count,
            args.queue,
            start.elapsed().as_millis()
        );
    }
    if args.watch > 0 {
        println!("{:>6} {:>8} {:>9}", "t(s)", "queue", "consumers");
        let deadline = start + Duration::from_secs(args.watch);
        while Instant::now() < deadline {
            let q = channel
                .queue_declare(
                    args.queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let t = start.elapsed().as_secs_f64();
            println!(
                "{t:>6.1} {:>8} {:>9}",
                q.message_count(),
                q.consumer_count()
            );
            if q.message_count() == 0 && Some(q.consumer_count()) == args.until_consumers {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
