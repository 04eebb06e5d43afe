//! Engines built into the `epu` binary (see `host/build.rs`), usable by name.

/// The bundled engines, by name.
const BUNDLED: &[(&str, &[u8])] = &[
    (
        "npreserving",
        include_bytes!(concat!(env!("OUT_DIR"), "/npreserving.wasm")),
    ),
    (
        "queuelen",
        include_bytes!(concat!(env!("OUT_DIR"), "/queuelen.wasm")),
    ),
    (
        "sensor",
        include_bytes!(concat!(env!("OUT_DIR"), "/sensor.wasm")),
    ),
];

/// The component bytes of a bundled engine.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUNDLED.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The names of the bundled engines.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUNDLED.iter().map(|(n, _)| *n)
}
