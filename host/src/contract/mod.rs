//! The host side of the engine contract (`wit/engine.wit`): the snapshots an engine is given
//! ([`snapshot`]), the checks its decisions must pass ([`decision`]), and the names the
//! contract gives states, health and statuses ([`mapping`]). The controller, `epu engine check`
//! and `epu engine test` all use these rules, so they hold alike everywhere.

pub mod decision;
pub mod mapping;
pub mod snapshot;

pub use mapping::{engine_status_name, model_health, model_state, wit_health, wit_state};
pub use snapshot::Synced;
