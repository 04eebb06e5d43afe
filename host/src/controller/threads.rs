//! The decide threads. Each owns a share of the domains' controllers and runs them: one timer
//! queue per thread fires every decide that is due, and wakes and commands arrive on one
//! channel. A decide runs the engine right there, with no handoff to another thread, so a
//! decide that finds nothing changed costs a few microseconds.
//!
//! They are plain threads, not async workers, because an engine call blocks for as long as the
//! engine runs (its time budget bounds that). They enter the daemon's runtime, so that what a
//! decide starts (a worker process, a grace timer) runs there.

use super::{Command, Controller};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Instant;

/// What a decide thread is told.
pub(super) enum Msg {
    Start(u64, Box<Controller>),
    Command(u64, Command),
    Wake(u64),
}

/// Where a domain's controller runs: its thread's channel and its key there.
#[derive(Clone)]
pub(super) struct Route {
    pub tx: Sender<Msg>,
    pub key: u64,
}

impl Route {
    /// Sends a message about this controller; false if its thread is gone.
    pub fn send(&self, make: impl FnOnce(u64) -> Msg) -> bool {
        self.tx.send(make(self.key)).is_ok()
    }
}

/// The decide threads of a daemon.
pub struct DecideThreads {
    senders: Vec<Sender<Msg>>,
    next_thread: AtomicUsize,
    next_key: AtomicU64,
}

impl DecideThreads {
    /// Starts one decide thread per core (at least two). Call it within the daemon's runtime.
    pub fn start() -> DecideThreads {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Handle::current();
        let senders = (0..cores.max(2))
            .map(|i| {
                let (tx, rx) = mpsc::channel();
                let runtime = runtime.clone();
                std::thread::Builder::new()
                    .name(format!("epu-decide-{i}"))
                    .spawn(move || {
                        let _entered = runtime.enter();
                        Thread::default().run(rx);
                    })
                    .expect("spawning a decide thread");
                tx
            })
            .collect();
        DecideThreads {
            senders,
            next_thread: AtomicUsize::new(0),
            next_key: AtomicU64::new(0),
        }
    }

    /// Hands a controller to the next thread in turn; returns its route.
    pub(super) fn place(&self, controller: Controller) -> Route {
        let n = self.next_thread.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        let route = Route {
            tx: self.senders[n].clone(),
            key: self.next_key.fetch_add(1, Ordering::Relaxed),
        };
        route.send(|key| Msg::Start(key, Box::new(controller)));
        route
    }
}

/// A controller with its schedule.
struct Slot {
    controller: Box<Controller>,
    /// When the next decide is due.
    next: Instant,
    /// When the last decide ended.
    last: Instant,
}

#[derive(Default)]
struct Thread {
    slots: HashMap<u64, Slot>,
    /// Due times; an entry whose time is no longer its slot's `next` is stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Thread {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            let msg = match self.timers.peek() {
                Some(Reverse((due, _))) => {
                    rx.recv_timeout(due.saturating_duration_since(Instant::now()))
                }
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(msg) = rx.try_recv() {
                self.handle(msg);
            }
            self.decide_due();
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Start(key, controller) => {
                let now = Instant::now();
                self.slots.insert(
                    key,
                    Slot {
                        controller,
                        next: now,
                        last: now,
                    },
                );
                self.timers.push(Reverse((now, key)));
            }
            // A change: decide early, but not before the crash-loop backoff allows.
            Msg::Wake(key) => {
                if let Some(slot) = self.slots.get_mut(&key) {
                    let backoff = slot.controller.backoff.current();
                    let next = slot.next.min(slot.last + backoff).max(Instant::now());
                    if next < slot.next {
                        slot.next = next;
                        self.timers.push(Reverse((next, key)));
                    }
                }
            }
            Msg::Command(key, command) => {
                let Some(slot) = self.slots.get_mut(&key) else {
                    return; // The reply is dropped: the caller learns that it has stopped.
                };
                let controller = &mut slot.controller;
                let stopped = guarded(controller, |c| c.command(command)).unwrap_or(true);
                if stopped {
                    self.slots.remove(&key);
                }
            }
        }
    }

    /// Runs every decide that is due.
    fn decide_due(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((due, key))) = self.timers.peek() {
            if due > now {
                return;
            }
            self.timers.pop();
            let Some(slot) = self.slots.get_mut(&key) else {
                continue;
            };
            if slot.next != due {
                continue;
            }
            match guarded(&mut slot.controller, |c| c.decide()) {
                Some(delay) => {
                    slot.last = Instant::now();
                    slot.next = slot.last + delay;
                    self.timers.push(Reverse((slot.next, key)));
                }
                None => {
                    self.slots.remove(&key);
                }
            }
        }
    }
}

/// Runs `f` on a controller; a panic stops that controller only (None), as a panicking task
/// would, and is logged.
fn guarded<T>(c: &mut Controller, f: impl FnOnce(&mut Controller) -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(|| f(c))) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::error!(domain = %c.spec.name, "the controller panicked and has stopped");
            c.services.wakeups.unregister(&c.spec.name);
            None
        }
    }
}
