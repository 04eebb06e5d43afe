//! The decide threads. Each owns a share of the domains' controllers and runs them: one timer
//! queue per thread fires every decide that is due, and wakes and commands arrive on one
//! channel. A decide runs the engine right there, with no handoff to another thread, so a
//! decide that finds nothing changed costs a few microseconds.
//!
//! They are plain threads, not async workers, because an engine call blocks for as long as the
//! engine runs (its time budget bounds that). They enter the daemon's runtime, so that what a
//! decide starts (a worker process, a grace timer) runs there.
//!
//! An engine that runs past its time budget once is moved to the isolation thread, with every
//! other such engine, so that it no longer delays the domains it shared a thread with.

use super::{Command, Controller};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Instant;

/// What a decide thread is told.
pub(super) enum Msg {
    /// A controller to run, and when its next decide is due.
    Start(u64, Box<Controller>, Instant),
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

/// The decide threads of a daemon: one per core, and the isolation thread.
pub struct DecideThreads {
    /// The threads new controllers are placed on.
    senders: Vec<Sender<Msg>>,
    next_thread: AtomicUsize,
    next_key: AtomicU64,
}

impl DecideThreads {
    /// Starts one decide thread per core (at least two). Call it within the daemon's runtime.
    pub fn start() -> DecideThreads {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Handle::current();
        let spawn = |name: String, isolation: Option<Sender<Msg>>| {
            let (tx, rx) = mpsc::channel();
            let runtime = runtime.clone();
            std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    let _entered = runtime.enter();
                    Thread::new(isolation).run(rx);
                })
                .expect("spawning a decide thread");
            tx
        };
        let isolation = spawn("epu-isolation".into(), None);
        let senders = (0..cores.max(2))
            .map(|i| spawn(format!("epu-decide-{i}"), Some(isolation.clone())))
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
        route.send(|key| Msg::Start(key, Box::new(controller), Instant::now()));
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

struct Thread {
    slots: HashMap<u64, Slot>,
    /// Due times; an entry whose time is no longer its slot's `next` is stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Where engines that ran past their budget go; None on the isolation thread itself.
    isolation: Option<Sender<Msg>>,
    /// The controllers moved to the isolation thread: their messages follow them there.
    moved: HashSet<u64>,
}

impl Thread {
    fn new(isolation: Option<Sender<Msg>>) -> Thread {
        Thread {
            slots: HashMap::new(),
            timers: BinaryHeap::new(),
            isolation,
            moved: HashSet::new(),
        }
    }

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
        let key = match &msg {
            Msg::Start(key, ..) | Msg::Command(key, _) | Msg::Wake(key) => *key,
        };
        if self.moved.contains(&key) {
            if matches!(msg, Msg::Command(_, Command::Stop(_))) {
                self.moved.remove(&key);
            }
            if let Some(isolation) = &self.isolation {
                let _ = isolation.send(msg);
            }
            return;
        }
        match msg {
            Msg::Start(key, controller, next) => {
                let now = Instant::now();
                self.slots.insert(
                    key,
                    Slot {
                        controller,
                        next,
                        last: now,
                    },
                );
                self.timers.push(Reverse((next, key)));
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
                    if slot.controller.timed_out {
                        self.isolate(key);
                    } else {
                        self.timers.push(Reverse((slot.next, key)));
                    }
                }
                None => {
                    self.slots.remove(&key);
                }
            }
        }
    }

    /// Moves a controller whose engine ran past its budget to the isolation thread.
    fn isolate(&mut self, key: u64) {
        let Some(isolation) = &self.isolation else {
            let next = self.slots[&key].next;
            self.timers.push(Reverse((next, key)));
            return;
        };
        let slot = self.slots.remove(&key).expect("the slot that just decided");
        tracing::warn!(domain = %slot.controller.spec.name, "the engine ran past its time budget: it runs on the isolation thread from now on");
        slot.controller.status.lock().unwrap().isolated = true;
        self.moved.insert(key);
        let _ = isolation.send(Msg::Start(key, slot.controller, slot.next));
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
