//! A test engine that misbehaves on purpose. Its config is a JSON object whose `mode` key says
//! how `decide` behaves:
//! - `"ok"`: launches one instance when there is none;
//! - `"trap"`: panics, which traps the call;
//! - `"error"`: returns an error;
//! - `"foreign"`: destroys an instance id that is not in the domain.
//!
//! It parses its config by hand to stay free of dependencies.

// The generated export glue takes one argument per flattened record field.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "engine", path: "../../wit" });

use epu::engine::types::{EngineStatus, Launch};
use std::sync::Mutex;

static MODE: Mutex<String> = Mutex::new(String::new());

fn set_mode(config: &str) -> Result<(), String> {
    let mode = ["ok", "trap", "error", "foreign"]
        .into_iter()
        .find(|m| {
            config.contains(&format!("\"mode\":\"{m}\""))
                || config.contains(&format!("\"mode\": \"{m}\""))
        })
        .ok_or_else(|| format!("mode must be ok, trap, error or foreign: {config}"))?;
    *MODE.lock().unwrap() = mode.to_string();
    Ok(())
}

struct Faulty;

impl Guest for Faulty {
    fn initialize(config: String) -> Result<(), String> {
        set_mode(&config)
    }

    fn decide(snapshot: Snapshot) -> Result<Decision, String> {
        let mode = MODE.lock().unwrap().clone();
        match mode.as_str() {
            "trap" => panic!("faulty engine: trapping on purpose"),
            "error" => Err("faulty engine: failing on purpose".into()),
            _ => {
                log(LogLevel::Info, &format!("deciding for {}", snapshot.domain));
                let destroy = if mode == "foreign" {
                    vec!["i-not-mine".to_string()]
                } else {
                    vec![]
                };
                let count = u32::from(snapshot.instances.is_empty());
                Ok(Decision {
                    launches: vec![Launch {
                        count,
                        vars: vec![],
                    }],
                    destroy,
                    next_decide_ms: Some(200),
                    memo: Some(b"faulty".to_vec()),
                    status: EngineStatus::Stable,
                })
            }
        }
    }

    fn reconfigure(config: String) -> Result<(), String> {
        set_mode(&config)
    }

    fn dying() {}
}

export!(Faulty);
