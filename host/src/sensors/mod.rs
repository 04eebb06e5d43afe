//! Sensors: the readings an engine scales on. Each declared sensor is polled by a task of its
//! own (AMQP queue depth, a command's output) or fed through the API (`epu sensor push`).
//! The latest reading of each sits on the [`SensorBoard`], from which every decide takes its
//! snapshot's `sensors` and `sensor-changes`. Every reading that arrives, and a sensor that
//! starts to fail, wakes the domain's controller for an early decide.
//!
//! A reading is stale while its source fails (the value is then the last one known) or once it
//! is older than [`SensorSpec::stale_after`].

mod amqp;
mod board;
mod command;

pub use crate::model::sensor::{check_all, redact, SensorSpec};
pub use board::{PushError, Reading, Readings, SensorBoard, SensorStatus};

use crate::model::now;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The polling tasks of one domain's sensors; dropping it stops them.
pub struct Pollers(Vec<JoinHandle<()>>);

impl Drop for Pollers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Declares a domain's sensors on the board and starts polling those that are polled.
pub fn start(board: &Arc<SensorBoard>, domain: &str, specs: &[SensorSpec]) -> Pollers {
    board.declare(domain, specs);
    let tasks = specs
        .iter()
        .filter(|s| !matches!(s, SensorSpec::Pushed { .. }))
        .map(|spec| tokio::spawn(poll(board.clone(), domain.to_string(), spec.clone())))
        .collect();
    Pollers(tasks)
}

async fn poll(board: Arc<SensorBoard>, domain: String, spec: SensorSpec) {
    let Some((interval, mut source)) = Source::of(&spec) else {
        return;
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let outcome = source.read().await;
        board.record(&domain, spec.name(), outcome, now());
    }
}

/// Where a polled sensor reads from.
enum Source {
    Amqp(Box<amqp::QueueDepth>),
    Command {
        command: Vec<String>,
        cwd: Option<PathBuf>,
        timeout: Duration,
    },
}

impl Source {
    /// The poll interval and the source of a polled sensor; None for a pushed one.
    fn of(spec: &SensorSpec) -> Option<(Duration, Source)> {
        let ms = |n: &u32| Duration::from_millis(u64::from(*n));
        match spec {
            SensorSpec::Amqp {
                url,
                queue,
                interval_ms,
                ..
            } => Some((
                ms(interval_ms),
                Source::Amqp(Box::new(amqp::QueueDepth::new(url, queue))),
            )),
            SensorSpec::Command {
                command,
                cwd,
                interval_ms,
                timeout_ms,
                ..
            } => Some((
                ms(interval_ms),
                Source::Command {
                    command: command.clone(),
                    cwd: cwd.clone(),
                    timeout: ms(timeout_ms),
                },
            )),
            SensorSpec::Pushed { .. } => None,
        }
    }

    async fn read(&mut self) -> Result<f64, String> {
        match self {
            Source::Amqp(q) => q.read().await,
            Source::Command {
                command,
                cwd,
                timeout,
            } => command::read(command, cwd.as_deref(), *timeout).await,
        }
    }
}
