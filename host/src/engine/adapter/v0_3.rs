//! The adapter of `epu:engine@0.3.0` (`host/wit/0.3.0/engine.wit`). 0.4.0 added `protected`
//! and `draining` to the instance record, so a 0.3.0 engine is given each instance without
//! them. It cannot see which instances are protected or draining; the daemon's guarantees (a
//! protected, healthy instance is never destroyed; a launch takes back a draining instance)
//! hold for it all the same.

use super::{same_cases, unchanged_shapes};

unchanged_shapes!("0.3.0", "wit/0.3.0");

fn instance(i: &current::Instance) -> old::Instance {
    let (state, health) = state_and_health(i);
    old::Instance {
        handle: i.handle,
        state,
        state_time: i.state_time,
        health,
        health_time: i.health_time,
    }
}
