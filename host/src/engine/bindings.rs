//! Host bindings generated from `wit/engine.wit`.

wasmtime::component::bindgen!({ world: "engine", path: "../wit" });

// `Snapshot`, `Decision` and `LogLevel` are already here (the world `use`s them).
pub use self::epu::engine::types::{
    EngineStatus, Health, Instance, InstanceDetails, InstanceState, Launch, SensorReading,
};
