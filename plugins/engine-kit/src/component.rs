//! The component side that every Rust engine shares: the config and the domain it keeps
//! between calls, and the five exports of the `engine` world.

/// An engine's config, as the component's exports need it.
pub trait EngineConfig: Sized {
    /// The engine's name, summary and config keys, for `describe`.
    const ABOUT: crate::About;

    /// Applies the JSON object `text` on top of `current` (None at initialize). An error
    /// rejects the whole text and leaves the config in force as it was.
    fn from_text(text: &str, current: Option<&Self>) -> Result<Self, String>;

    /// What to warn about when the engine starts with this config.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Brings an engine crate's contract types to its root and defines its `Domain`, at the root of
/// the crate that ran `wit_bindgen::generate!`: `engine_kit::engine_types!();`. `Snapshot`,
/// `Decision` and `LogLevel` are there already (the world `use`s them).
#[macro_export]
macro_rules! engine_types {
    () => {
        pub use epu::engine::types::{
            ConfigKey, EngineStatus, Health, Instance, InstanceDetails, InstanceState, Launch,
            SensorReading, ValueKind,
        };

        $crate::entries!(
            Instance,
            InstanceState,
            Health,
            SensorReading,
            InstanceDetails,
            Snapshot
        );

        /// What the engine keeps of its domain between decides.
        pub type Domain = $crate::Domain<Instance, SensorReading, InstanceDetails>;
    };
}

/// Exports an engine as the `engine` world's component (on wasm32 only):
/// `engine_kit::export_engine!(NPreserving, config::Config, policy::decide);`
///
/// Invoke it at the root of the crate that ran `wit_bindgen::generate!` and
/// [`engine_types!`]. `$config` implements
/// [`EngineConfig`]; `$decide(&config, &mut domain, &snapshot) -> Decision` applies the
/// snapshot and decides.
#[macro_export]
macro_rules! export_engine {
    ($engine:ident, $config:ty, $decide:path) => {
        #[cfg(target_arch = "wasm32")]
        mod component {
            use super::*;
            use std::sync::Mutex;

            /// The config in force.
            static CONFIG: Mutex<Option<$config>> = Mutex::new(None);
            /// The domain as the snapshots told it.
            static DOMAIN: Mutex<Domain> = Mutex::new(Domain::new());

            struct $engine;

            impl Guest for $engine {
                fn describe() -> Description {
                    let about = <$config as $crate::EngineConfig>::ABOUT;
                    let config = about.keys.iter().map(|k| ConfigKey {
                        name: k.name.into(),
                        kind: match k.kind {
                            $crate::Kind::Integer => ValueKind::Integer,
                            $crate::Kind::Number => ValueKind::Number,
                            $crate::Kind::Boolean => ValueKind::Boolean,
                            $crate::Kind::Text => ValueKind::Text,
                            $crate::Kind::Object => ValueKind::Object,
                            $crate::Kind::Array => ValueKind::Array,
                            $crate::Kind::Any => ValueKind::Any,
                        },
                        doc: k.doc.into(),
                        default: k.default.map(Into::into),
                        required: k.required,
                        nullable: k.nullable,
                        min: k.min,
                        max: k.max,
                        choices: k.choices.iter().map(|c| c.to_string()).collect(),
                    });
                    Description {
                        name: about.name.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        summary: about.summary.into(),
                        config: config.collect(),
                        more_keys: false,
                    }
                }

                fn initialize(config: String) -> Result<(), String> {
                    let parsed = <$config as $crate::EngineConfig>::from_text(&config, None)?;
                    for warning in $crate::EngineConfig::warnings(&parsed) {
                        log(LogLevel::Warn, &warning);
                    }
                    *CONFIG.lock().unwrap() = Some(parsed);
                    Ok(())
                }

                fn decide(snapshot: Snapshot) -> Result<Decision, String> {
                    let guard = CONFIG.lock().unwrap();
                    let config = guard.as_ref().ok_or("decide called before initialize")?;
                    Ok($decide(config, &mut DOMAIN.lock().unwrap(), &snapshot))
                }

                fn reconfigure(config: String) -> Result<(), String> {
                    let mut guard = CONFIG.lock().unwrap();
                    let updated =
                        <$config as $crate::EngineConfig>::from_text(&config, guard.as_ref())?;
                    *guard = Some(updated);
                    Ok(())
                }

                fn dying() {}
            }

            export!($engine with_types_in super);
        }
    };
}
