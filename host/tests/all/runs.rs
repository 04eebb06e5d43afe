//! Runs of launch plans with bootlevels: booting, attributes reaching workers, a failing level,
//! invalid plans, terminate, clean and event analysis. All against the real binary, real
//! service processes and real workers. The runs of the two-level demo, whose services are
//! Python, are in `demo_run.rs`.

use crate::kit;

use kit::{is_alive, repo, Epu};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub(crate) fn demo() -> PathBuf {
    repo().join("launch-plans/two-level-demo")
}

pub(crate) fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A copy of the two-level demo in `dir`, with `edit` applied to its plan.
pub(crate) fn demo_copy(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(demo()).unwrap().flatten() {
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let plan = std::fs::read_to_string(dir.join("plan.toml")).unwrap();
    std::fs::write(dir.join("plan.toml"), edit(plan)).unwrap();
    dir.to_path_buf()
}

/// A change to the demo's plan text.
type PlanEdit = dyn Fn(String) -> String;

#[test]
fn every_invalid_plan_gets_its_own_error_with_file_line_and_key_before_anything_starts() {
    let epu = Epu::new();
    let dir = epu.dir.path().join("plan");
    let cases: [(&str, &PlanEdit, &[&str]); 9] = [
        (
            "cycle",
            &|p| {
                p.replace(
                    "[[level]]\n[[level.service]]\nname = \"announcer\"",
                    "[[level.service]]\nname = \"announcer\"",
                )
                .replace(
                    "start = [\"./kv.py\"]",
                    "start = [\"./kv.py\", \"${announcer.greeting_url}\"]",
                )
            },
            &[
                "deps form a cycle",
                "announcer -> kv -> announcer",
                "line 19",
            ],
        ),
        (
            "a dep on a later level",
            &|p| {
                p.replace(
                    "start = [\"./kv.py\"]",
                    "start = [\"./kv.py\", \"${announcer.greeting_url}\"]",
                )
                .replace("deps = { KV_PORT = \"${kv.port}\" }\n", "")
            },
            &[
                "boots at level 2, not before this service's level 1",
                "start.1",
                "line 10",
            ],
        ),
        (
            "an unknown service",
            &|p| p.replace("${kv.port}\" }\nenv", "${kvv.port}\" }\nenv"),
            &["unknown service 'kvv'", "deps.KV_PORT", "line 20"],
        ),
        (
            "an attribute nobody publishes",
            &|p| {
                p.replace(
                    "GREETING_URL = \"${announcer.greeting_url}\"",
                    "GREETING_URL = \"${announcer.url}\"",
                )
            },
            &[
                "does not publish 'url'",
                "deployable.env.GREETING_URL",
                "line 34",
            ],
        ),
        (
            "a missing file",
            &|p| p.replace("./kv-ready.py", "./kv-wait.py"),
            &["kv-wait.py does not exist", "ready.command", "line 12"],
        ),
        (
            "a bad type",
            &|p| p.replace("retries = 40", "retries = \"many\""),
            &["retries", "line 12", "invalid type"],
        ),
        (
            "an unknown key",
            &|p| {
                p.replace(
                    "grace_seconds = 3\n\n[[level]]",
                    "grace_seconds = 3\ncolour = \"red\"\n\n[[level]]",
                )
            },
            &["colour", "unknown field", "line 15"],
        ),
        (
            "a service declared twice",
            &|p| p.replace("name = \"announcer\"", "name = \"kv\""),
            &["service 'kv'", "declared twice", "line 18"],
        ),
        (
            "a bad reference",
            &|p| p.replace("${kv.port}\" }\nenv", "${kv.port\" }\nenv"),
            &["not closed", "deps.KV_PORT", "line 20"],
        ),
    ];
    for (what, edit, needles) in cases {
        let plan = demo_copy(&dir, edit);
        let err = epu.fails(&["boot", plan.to_str().unwrap()]);
        for needle in needles.iter().chain(&["plan.toml"]) {
            assert!(
                err.contains(needle),
                "{what}: expected '{needle}' in: {err}"
            );
        }
        let err2 = epu.fails(&["boot", "--validate", plan.to_str().unwrap()]);
        assert_eq!(err, err2, "{what}: --validate gives the same error");
    }
    // Nothing was started: no daemon, no state.
    assert!(!epu.state_dir().join("epu.db").exists());
    // The demo itself is valid.
    let out = epu.ok(&["boot", "--validate", demo().to_str().unwrap()]);
    assert!(
        out.contains("is valid: 2 levels, 2 services, 1 domain\n"),
        "{out}"
    );
    let dry = epu.ok(&["boot", "--dry-run", demo().to_str().unwrap()]);
    assert!(
        dry.contains("level 2") && dry.contains("domain greeters"),
        "{dry}"
    );
    assert!(!epu.state_dir().join("epu.db").exists());
}

#[test]
fn clean_kills_planted_strays_of_its_own_state_dir_only() {
    use std::os::unix::process::CommandExt;
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let state = epu.state_dir().canonicalize().unwrap();
    let plant = |var: &str, value: &str| {
        std::process::Command::new("/bin/sleep")
            .arg("1000")
            .env("EPU_STATE_DIR", &state)
            .env(var, value)
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let mut worker = plant("EPU_NODE_ID", "i-planted");
    let mut service = plant("EPU_SERVICE_ID", "gone/kv");
    // A process of another state dir is not ours to kill.
    let mut other = std::process::Command::new("/bin/sleep")
        .arg("1000")
        .env("EPU_STATE_DIR", "/elsewhere")
        .env("EPU_NODE_ID", "i-other")
        .process_group(0)
        .spawn()
        .unwrap();
    let report = json(&epu.ok(&["clean", "--json"]));
    let killed: Vec<i64> = report["killed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["pid"].as_i64().unwrap())
        .collect();
    assert!(killed.contains(&(worker.id() as i64)), "{report:#}");
    assert!(killed.contains(&(service.id() as i64)), "{report:#}");
    worker.wait().unwrap();
    service.wait().unwrap();
    assert!(
        is_alive(other.id() as i32),
        "a process of another state dir was killed"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    let again = epu.ok(&["clean"]);
    assert!(again.contains("nothing to clean"), "{again}");
}

#[test]
fn a_queue_graph_draws_the_readings_and_the_instance_graph_overlays_them() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    epu.add_domain("q")
        .config("preserve_n=1")
        .flag("--sensor", "kind=pushed,name=queue-length")
        .ok();
    for v in ["3", "8", "5"] {
        epu.ok(&["sensor", "push", "q", "queue-length", v]);
    }
    let svg = epu.dir.path().join("q.svg");
    let out = epu.ok(&["graph", "q", "--kind", "queue", "-o", svg.to_str().unwrap()]);
    assert!(out.contains("(queue-length)"), "{out}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("sensor readings"));
    // The sensor's line (the sixth series color) goes through the three readings, the
    // middle one (8) the highest: the smallest y.
    let line = text
        .split("<polyline")
        .find(|p| p.contains("stroke=\"#0D6EFD\""))
        .expect("the sensor's line");
    let points = line
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let ys: Vec<f64> = points
        .split_whitespace()
        .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(ys.len(), 3, "{points}");
    assert!(ys[1] < ys[2] && ys[2] < ys[0], "{points}");
    let out = epu.ok(&["graph", "q", "-o", svg.to_str().unwrap()]);
    assert!(
        out.contains("queue-length") && out.contains("launching"),
        "{out}"
    );
}

/// The text of an SVG's `<text>` elements.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            Some(
                t.split_once('>')?
                    .1
                    .split_once("</text>")?
                    .0
                    .trim()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn graphs_read_clock_time_whole_counts_the_target_and_marked_events_and_a_failed_one_leaves_nothing(
) {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    epu.add_sleepers("g", 2);
    let mut up = Vec::new();
    assert!(kit::wait_for(std::time::Duration::from_secs(20), || {
        up = epu.instances("g");
        up.len() == 2 && up.iter().all(|i| i.pid.is_some())
    }));
    epu.ok(&["reconfigure", "g", "preserve_n=3"]);
    kit::kill9(up[0].pid.unwrap());
    assert!(kit::wait_for(std::time::Duration::from_secs(20), || {
        epu.events("g", Some("decision")).len() >= 3 && epu.instances("g").len() == 3
    }));
    let dir = epu.dir.path();
    let svg = dir.join("i.svg");
    let out = epu.ok(&["graph", "g", "-o", svg.to_str().unwrap()]);
    for series in ["target", "failure", "reconfigure"] {
        assert!(out.contains(series), "no {series} in: {out}");
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    let labels = svg_texts(&text);
    assert!(
        labels.iter().any(|l| l.starts_with("time (UTC), from ")),
        "{labels:?}"
    );
    // The time axis reads clock time, and the count axis whole numbers only.
    let clock = |l: &str| l.len() >= 8 && l.as_bytes()[2] == b':' && l.as_bytes()[5] == b':';
    let clocks: std::collections::BTreeSet<_> = labels.iter().filter(|l| clock(l)).collect();
    assert!(clocks.len() >= 3, "{labels:?}");
    let counts: Vec<&String> = labels.iter().filter(|l| l.parse::<f64>().is_ok()).collect();
    assert!(counts.len() >= 3, "{labels:?}");
    assert!(counts.iter().all(|l| !l.contains('.')), "{counts:?}");
    assert!(labels.iter().any(|l| l == "3"), "{labels:?}");

    let latency = dir.join("l.svg");
    epu.ok(&[
        "graph",
        "g",
        "--kind",
        "latency",
        "-o",
        latency.to_str().unwrap(),
    ]);
    let labels = svg_texts(&std::fs::read_to_string(&latency).unwrap());
    for bucket in ["≤10", "≤1000", "≤10000", "&gt;10000"] {
        assert!(
            labels.iter().any(|l| l == bucket),
            "no {bucket} in {labels:?}"
        );
    }

    // A graph that cannot be drawn leaves no file, and one already there as it was.
    let none = dir.join("none.svg");
    let queue = [
        "graph",
        "g",
        "--kind",
        "queue",
        "-o",
        none.to_str().unwrap(),
    ];
    let err = epu.fails(&queue);
    assert!(err.contains("no sensor reading"), "{err}");
    assert!(!none.exists());
    std::fs::write(&none, "kept").unwrap();
    epu.fails(&queue);
    assert_eq!(std::fs::read_to_string(&none).unwrap(), "kept");
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
