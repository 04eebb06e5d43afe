//! Waking a domain's controller for an early decide. Whatever changes a domain (the
//! provisioner, the health monitor, a sensor reading) calls [`Wakeups::wake`]; the controller
//! registers how it is woken. The registry holds closures, so nothing that wakes a controller
//! depends on the controller.

use std::collections::HashMap;
use std::sync::Mutex;

/// How one domain's controller is woken.
pub type Waker = Box<dyn Fn() + Send + Sync>;

/// The wakers of the live domains. Wakes that arrive during a decide are kept by the
/// controller, so a change is never missed.
#[derive(Default)]
pub struct Wakeups {
    map: Mutex<HashMap<String, Waker>>,
}

impl Wakeups {
    /// Wakes `domain`'s controller; nothing if it has none.
    pub fn wake(&self, domain: &str) {
        if let Some(waker) = self.map.lock().unwrap().get(domain) {
            waker();
        }
    }

    /// Sets how `domain`'s controller is woken, in place of any waker it had.
    pub fn register(&self, domain: &str, waker: Waker) {
        self.map.lock().unwrap().insert(domain.to_string(), waker);
    }

    /// Forgets `domain`'s waker.
    pub fn unregister(&self, domain: &str) {
        self.map.lock().unwrap().remove(domain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn wakes_only_the_registered_domain() {
        let w = Wakeups::default();
        let woken = Arc::new(AtomicU32::new(0));
        let seen = woken.clone();
        w.register(
            "a",
            Box::new(move || {
                seen.fetch_add(1, Ordering::SeqCst);
            }),
        );
        w.wake("a");
        w.wake("b");
        w.unregister("a");
        w.wake("a");
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }
}
