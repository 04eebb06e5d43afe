//! The adapter of `epu:engine@0.4.0` (`host/wit/0.4.0/engine.wit`). 0.5.0 added the
//! `describe` export and changed no shape, so a 0.4.0 engine is given each snapshot as it is;
//! it has no description, and its config is checked by its `initialize` alone.

use super::{same_cases, unchanged_shapes};

unchanged_shapes!("0.4.0", "wit/0.4.0");

fn instance(i: &current::Instance) -> old::Instance {
    let (state, health) = state_and_health(i);
    old::Instance {
        handle: i.handle,
        state,
        state_time: i.state_time,
        health,
        health_time: i.health_time,
        protected: i.protected,
        draining: i.draining,
    }
}
