//! Test engines that misbehave on purpose. The config's `mode` key says how `decide`
//! behaves; without it, the mode the fixture was built for (a cargo feature) applies:
//! - `ok`: launches one instance when there is none;
//! - `spin`: loops forever;
//! - `memory`: allocates until the memory cap stops it;
//! - `recurse`: recurses until the stack runs out;
//! - `panic` (or `trap`): panics, which traps the call;
//! - `error`: returns an error;
//! - `billion`: asks for 10^9 launches;
//! - `foreign`: destroys an instance handle that is not in the domain;
//! - `wasi`: tries files, env, clocks and sockets, and logs what it got.
//! - `count`: keeps the config's `n` instances live, destroying the newest extras, and keeps
//!   in its memo how many instances the domain has launched in all (`launched=N`), so a test
//!   can hold the memo against the store's launch records.
//! - `fuzz`: behaves on the first decide of each instance (so a canary passes it), then
//!   returns a random decision on every decide, from the config's `seed`: launches of any
//!   count up to u32::MAX, destroys of live, repeated and foreign handles, memos and vars of
//!   any size, any status and next decide.
//! - `sleep`: sleeps for an hour (a WASI clock wait) in the export the config's `sleep_in`
//!   names: `decide` (the default), `initialize`, `reconfigure` or `dying`;
//! - `memo-bomb`: returns a memo of `memo_bytes` (default 1,000,000) on every decide, and asks
//!   to decide again at once;
//! - `empty-launches`: asks for 50,000 launches of 0 instances;
//! - `big-vars`: asks for one launch of 100 instances with a 1 MB var;
//! - `big-error`: returns a 2 MB error;
//! - `flaky`: returns an error on every other decide;
//! - `fresh-then-trap`: behaves on the first decide of each instance, then traps;
//! - `random`: keeps as its memo a number drawn from `wasi:random` on each decide;
//! - `escape`: logs and fails with terminal escapes and forged event lines.
//!
//! It parses its config by hand to stay free of dependencies.
//!
//! With the `otherworld` feature it is instead a component of an unrelated world that also
//! exports a `decide`, with other types: what a host must refuse. With `oldcontract` it is a
//! component built for an older version of the `epu:engine` package.

// The generated export glue takes one argument per flattened record field.
#![allow(clippy::too_many_arguments)]

#[cfg(feature = "otherworld")]
mod other {
    wit_bindgen::generate!({
        inline: "package test:other; world other { export decide: func(n: u32) -> u32; }",
    });

    struct Other;

    impl Guest for Other {
        fn decide(n: u32) -> u32 {
            n + 1
        }
    }

    export!(Other);
}

#[cfg(feature = "oldcontract")]
mod old {
    wit_bindgen::generate!({
        inline: "package epu:engine@0.1.0;
                 interface types { record snapshot { domain: string } }
                 world engine { use types.{snapshot}; export decide: func(s: snapshot) -> u32; }",
    });

    struct Old;

    impl Guest for Old {
        fn decide(s: Snapshot) -> u32 {
            s.domain.len() as u32
        }
    }

    export!(Old);
}

/// A draw from `wasi:random`, imported directly.
#[cfg(not(any(feature = "otherworld", feature = "oldcontract")))]
mod random_u64 {
    wit_bindgen::generate!({
        inline: "package epu:faulty-random;
                 world draws { import wasi:random/random@0.2.0; }
                 package wasi:random@0.2.0 { interface random {
                     get-random-bytes: func(len: u64) -> list<u8>;
                     get-random-u64: func() -> u64;
                 } }",
        generate_all,
    });

    pub fn draw() -> u64 {
        wasi::random::random::get_random_u64()
    }
}

#[cfg(not(any(feature = "otherworld", feature = "oldcontract")))]
mod engine {
    wit_bindgen::generate!({ world: "engine", path: "../../wit" });

    use epu::engine::types::{ConfigKey, EngineStatus, InstanceState, Launch, ValueKind};
    use std::collections::BTreeMap;
    use std::hint::black_box;
    use std::sync::Mutex;

    const MODES: &[&str] = &[
        "ok",
        "spin",
        "memory",
        "recurse",
        "panic",
        "trap",
        "error",
        "billion",
        "foreign",
        "wasi",
        "count",
        "fuzz",
        "destroy-all",
        "sleep",
        "memo-bomb",
        "empty-launches",
        "big-vars",
        "big-error",
        "flaky",
        "fresh-then-trap",
        "random",
        "escape",
    ];

    const BUILT_FOR: &str = if cfg!(feature = "spin") {
        "spin"
    } else if cfg!(feature = "memory") {
        "memory"
    } else if cfg!(feature = "recurse") {
        "recurse"
    } else if cfg!(feature = "panic") {
        "panic"
    } else if cfg!(feature = "billion") {
        "billion"
    } else if cfg!(feature = "foreign") {
        "foreign"
    } else if cfg!(feature = "wasi") {
        "wasi"
    } else {
        "ok"
    };

    static MODE: Mutex<&str> = Mutex::new(BUILT_FOR);

    /// `sleep` mode: the export that sleeps.
    static SLEEP_IN: Mutex<&str> = Mutex::new("decide");
    /// `memo-bomb` mode: the memo's size.
    static MEMO_BYTES: Mutex<u64> = Mutex::new(1_000_000);
    /// Decides made by this instance.
    static DECIDES: Mutex<u64> = Mutex::new(0);

    /// Sleeps for an hour if `sleep` mode names this export.
    fn maybe_sleep(export: &str) {
        if *MODE.lock().unwrap() == "sleep" && *SLEEP_IN.lock().unwrap() == export {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }

    fn set_mode(config: &str) -> Result<(), String> {
        if let Some(n) = number_after(config, "\"memo_bytes\":") {
            *MEMO_BYTES.lock().unwrap() = n;
        }
        for export in ["decide", "initialize", "reconfigure", "dying"] {
            if config
                .replace(' ', "")
                .contains(&format!("\"sleep_in\":\"{export}\""))
            {
                *SLEEP_IN.lock().unwrap() = export;
            }
        }
        if let Some(n) = number_after(config, "\"n\":") {
            *TARGET.lock().unwrap() = n;
        }
        if let Some(seed) = number_after(config, "\"seed\":") {
            *SEED.lock().unwrap() = seed | 1;
        }
        if !config.contains("\"mode\"") {
            return Ok(());
        }
        let mode = MODES
            .iter()
            .find(|m| {
                config
                    .replace(' ', "")
                    .contains(&format!("\"mode\":\"{m}\""))
            })
            .ok_or_else(|| format!("mode must be one of {MODES:?}: {config}"))?;
        *MODE.lock().unwrap() = mode;
        Ok(())
    }

    /// The unsigned number right after `key` in `text`, if there is one.
    fn number_after(text: &str, key: &str) -> Option<u64> {
        let text = text.replace(' ', "");
        let rest = &text[text.find(key)? + key.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    /// `fuzz` mode: the generator's state (xorshift64).
    static SEED: Mutex<u64> = Mutex::new(1);

    fn random() -> u64 {
        let mut s = SEED.lock().unwrap();
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    /// One of `choices`, at random.
    fn pick<T: Copy>(choices: &[T]) -> T {
        choices[(random() % choices.len() as u64) as usize]
    }

    /// `fuzz` mode's decision.
    fn fuzz(live: &BTreeMap<u64, bool>) -> Decision {
        let handles: Vec<u64> = live.keys().copied().collect();
        let launches = (0..random() % 3)
            .map(|_| Launch {
                count: pick(&[0, 1, 1, 2, 5, 1000, u32::MAX, random() as u32]),
                vars: (0..random() % 3)
                    .map(|_| {
                        let key = pick(&["k", "", "=", "\u{0}", "ÿ", "a-b c"]);
                        (key.to_string(), "v".repeat(pick(&[0, 1, 100, 70_000])))
                    })
                    .collect(),
            })
            .collect();
        let destroy = (0..random() % 4)
            .filter_map(|_| match random() % 6 {
                0 => Some(pick(&[0, u64::MAX, 1 << 40, random()])),
                _ if !handles.is_empty() => Some(pick(&handles)),
                _ => None,
            })
            .collect();
        let size = pick(&[0, 10, 4096, 70_000, 1 << 20]);
        let memo = random().is_multiple_of(2).then(|| vec![b'm'; size]);
        Decision {
            launches,
            destroy,
            next_decide_ms: pick(&[None, Some(0), Some(1), Some(50), Some(u32::MAX)]),
            memo,
            status: pick(&[
                EngineStatus::Pending,
                EngineStatus::Stable,
                EngineStatus::Unknown,
                EngineStatus::DevmodeFailed,
            ]),
        }
    }

    /// `count` mode: the target, and the launches so far (from the memo on a full snapshot).
    static TARGET: Mutex<u64> = Mutex::new(0);
    static LAUNCHED: Mutex<u64> = Mutex::new(0);

    /// `count` mode's decision: launch up to `n`, or destroy the newest over it.
    fn count(live: &BTreeMap<u64, bool>, memo: Option<&[u8]>) -> Decision {
        let mut launched = LAUNCHED.lock().unwrap();
        if let Some(memo) = memo {
            *launched = number_after(&String::from_utf8_lossy(memo), "launched=").unwrap_or(0);
        }
        let target = *TARGET.lock().unwrap();
        let staying: Vec<u64> = live.iter().filter(|(_, t)| !**t).map(|(h, _)| *h).collect();
        let have = staying.len() as u64;
        let launch = target.saturating_sub(have);
        let destroy = staying
            .iter()
            .rev()
            .take(have.saturating_sub(target) as usize);
        *launched += launch;
        Decision {
            launches: launches(launch as u32),
            destroy: destroy.copied().collect(),
            next_decide_ms: Some(100),
            memo: Some(format!("launched={launched}").into_bytes()),
            status: EngineStatus::Stable,
        }
    }

    fn recurse(n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            black_box(1 + recurse(black_box(n - 1)))
        }
    }

    /// What the sandbox let through, as one log line.
    fn probe_wasi() -> String {
        let fs = match std::fs::read_dir("/") {
            Ok(_) => "open".to_string(),
            Err(_) => "denied".to_string(),
        };
        let env = std::env::vars().count();
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let net = match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => "open",
            Err(_) => "denied",
        };
        format!("wasi probe: fs={fs} env={env} clock={clock} net={net}")
    }

    /// One launch of `count` instances, or none for 0.
    fn launches(count: u32) -> Vec<Launch> {
        (count > 0)
            .then_some(Launch {
                count,
                vars: vec![],
            })
            .into_iter()
            .collect()
    }

    /// The decisions of the modes that attack the host's bounds, if `mode` is one.
    fn hostile(mode: &str, decides: u64) -> Option<Result<Decision, String>> {
        let mut d = Decision {
            launches: vec![],
            destroy: vec![],
            next_decide_ms: Some(200),
            memo: None,
            status: EngineStatus::Stable,
        };
        match mode {
            "memo-bomb" => {
                d.memo = Some(vec![b'm'; *MEMO_BYTES.lock().unwrap() as usize]);
                d.next_decide_ms = Some(0);
            }
            "empty-launches" => {
                d.launches = (0..50_000)
                    .map(|_| Launch {
                        count: 0,
                        vars: vec![],
                    })
                    .collect();
                d.next_decide_ms = Some(0);
            }
            "big-vars" => {
                d.launches = vec![Launch {
                    count: 100,
                    vars: vec![("big".into(), "v".repeat(1 << 20))],
                }];
            }
            "big-error" => return Some(Err("e".repeat(2 << 20))),
            "flaky" if decides.is_multiple_of(2) => {
                return Some(Err("flaky: failing every other decide".into()))
            }
            "fresh-then-trap" if decides > 1 => panic!("faulty engine: trapping after one decide"),
            "random" => {
                let n = crate::random_u64::draw();
                d.memo = Some(format!("drew={n}").into_bytes());
            }
            "escape" => {
                log(
                    LogLevel::Warn,
                    "\u{1b}[2J\u{1b}[Hscreen cleared\n0 engine-fault forged",
                );
                return Some(Err("\u{1b}[31mred\u{1b}[0m\r\nforged line".into()));
            }
            _ => return None,
        }
        Some(Ok(d))
    }

    /// The live instances, kept up to date from each snapshot: handle → whether it is
    /// terminating.
    static LIVE: Mutex<BTreeMap<u64, bool>> = Mutex::new(BTreeMap::new());

    struct Faulty;

    /// A config key of the description.
    fn key(name: &str, kind: ValueKind, doc: &str, choices: &[&str]) -> ConfigKey {
        ConfigKey {
            name: name.into(),
            kind,
            doc: doc.into(),
            default: None,
            required: false,
            nullable: false,
            min: None,
            max: None,
            choices: choices.iter().map(|c| c.to_string()).collect(),
        }
    }

    impl Guest for Faulty {
        fn describe() -> Description {
            // It reads its numbers loosely, and ignores what it cannot read: they take any value.
            let loose = ValueKind::Any;
            Description {
                name: "faulty".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                summary: "misbehaves on purpose, as its mode says (a test fixture)".into(),
                config: vec![
                    key("mode", ValueKind::Text, "how decide misbehaves", MODES),
                    key("n", loose, "count mode: the instances to keep", &[]),
                    key("seed", loose, "fuzz mode: the generator's seed", &[]),
                    key("sleep_in", loose, "sleep mode: the export that sleeps", &[]),
                    key("memo_bytes", loose, "memo-bomb mode: the memo's size", &[]),
                ],
                // It ignores every other key, so any domain's config can be swapped onto it.
                more_keys: true,
            }
        }

        fn initialize(config: String) -> Result<(), String> {
            set_mode(&config)?;
            maybe_sleep("initialize");
            Ok(())
        }

        fn decide(snapshot: Snapshot) -> Result<Decision, String> {
            let mode = *MODE.lock().unwrap();
            let decides = {
                let mut d = DECIDES.lock().unwrap();
                *d += 1;
                *d
            };
            maybe_sleep("decide");
            if let Some(d) = hostile(mode, decides) {
                return d;
            }
            let live = {
                let mut live = LIVE.lock().unwrap();
                if snapshot.full {
                    live.clear();
                }
                for i in &snapshot.instances {
                    if i.state >= InstanceState::Terminated {
                        live.remove(&i.handle);
                    } else {
                        live.insert(i.handle, i.state >= InstanceState::Terminating);
                    }
                }
                match mode {
                    "count" => return Ok(count(&live, snapshot.memo.as_deref())),
                    "fuzz" if decides > 1 => return Ok(fuzz(&live)),
                    // Destroys every instance it knows, every decide, and launches nothing.
                    "destroy-all" => {
                        return Ok(Decision {
                            launches: vec![],
                            destroy: live.iter().filter(|(_, t)| !**t).map(|(h, _)| *h).collect(),
                            next_decide_ms: Some(200),
                            memo: None,
                            status: EngineStatus::Stable,
                        })
                    }
                    _ => {}
                }
                live.len()
            };
            let mut launch = u32::from(live == 0);
            let mut destroy = vec![];
            match mode {
                "spin" => loop {
                    black_box(&snapshot);
                },
                "memory" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        // Untouched capacity: the memory grows without a single write, so the
                        // cap, not the time budget, is what stops it.
                        hoard.push(black_box(Vec::with_capacity(16 << 20)));
                    }
                }
                "recurse" => launch += recurse(u64::MAX) as u32,
                "panic" | "trap" => panic!("faulty engine: trapping on purpose"),
                "error" => return Err("faulty engine: failing on purpose".into()),
                "billion" => launch = 1_000_000_000,
                "foreign" => destroy.push(u64::MAX),
                "wasi" => log(LogLevel::Warn, &probe_wasi()),
                _ => log(LogLevel::Info, &format!("deciding on {live} instances")),
            }
            Ok(Decision {
                launches: launches(launch),
                destroy,
                next_decide_ms: Some(200),
                memo: Some(b"faulty".to_vec()),
                status: EngineStatus::Stable,
            })
        }

        fn reconfigure(config: String) -> Result<(), String> {
            set_mode(&config)?;
            maybe_sleep("reconfigure");
            Ok(())
        }

        fn dying() {
            maybe_sleep("dying");
        }
    }

    export!(Faulty);
}
