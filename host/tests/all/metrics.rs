//! `/metrics`, `/healthz` and `/readyz` on the TCP listener, parsed with a real exposition-
//! format parser (`prometheus-parse`) while a domain scales up; and dry-run domains.

use crate::kit;

use kit::{http, wait_for, Epu};
use prometheus_parse::{Scrape, Value};
use std::time::Duration;

/// Scrapes `/metrics` with the admin token and parses it.
fn scrape(epu: &Epu, addr: &str) -> Scrape {
    let token = std::fs::read_to_string(epu.state_dir().join("api-token")).unwrap();
    let (code, body) = http::request(addr, "GET", "/metrics", Some(token.trim()), "");
    assert_eq!(code, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("exposition format")
}

/// The value of `metric` with these labels (a counter's or gauge's), if present.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(b) => b.last().map_or(0.0, |c| c.count),
            Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn metrics_follow_a_scripted_scale_up_and_health_endpoints_answer() {
    let epu = Epu::new();
    let (_daemon, addr) = epu.listening_daemon("127.0.0.1:0");
    // /metrics is closed without a token by default; health probes are open.
    assert_eq!(http::request(&addr, "GET", "/metrics", None, "").0, 401);
    assert_eq!(http::request(&addr, "GET", "/healthz", None, "").0, 200);
    let (code, body) = http::request(&addr, "GET", "/readyz", None, "");
    assert_eq!((code, body.contains("ready")), (200, true), "{body}");

    let worker = kit::repo().join("launch-plans/quickstart/worker.sh");
    epu.add_domain("web")
        .config("preserve_n=1")
        .flag("--pulse-ms", "200")
        .flag("--env", "HEARTBEAT_SECONDS=1")
        .flag("--sensor", "kind=pushed,name=queue-length")
        .command(&[&worker])
        .ok();
    epu.ok(&["sensor", "push", "web", "queue-length", "4"]);
    epu.wait_running("web", 1);
    let d = [("domain", "web")];
    let before = scrape(&epu, &addr);
    assert_eq!(value(&before, "epu_desired_instances", &d), Some(1.0));
    assert_eq!(value(&before, "epu_actual_instances", &d), Some(1.0));
    assert_eq!(
        value(
            &before,
            "epu_instances",
            &[("domain", "web"), ("state", "running")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&before, "epu_launches_total", &d), Some(1.0));
    assert_eq!(
        value(
            &before,
            "epu_sensor_value",
            &[("domain", "web"), ("sensor", "queue-length")]
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &before,
            "epu_sensor_stale",
            &[("domain", "web"), ("sensor", "queue-length")]
        ),
        Some(0.0)
    );
    assert_eq!(value(&before, "epu_engine_quarantined", &d), Some(0.0));

    // Scale up to 4: the gauges and counters follow.
    epu.ok(&["reconfigure", "web", "preserve_n=4"]);
    epu.ok(&["sensor", "push", "web", "queue-length", "40"]);
    let workers = epu.wait_running("web", 4);
    let after = scrape(&epu, &addr);
    assert_eq!(value(&after, "epu_desired_instances", &d), Some(4.0));
    assert_eq!(value(&after, "epu_actual_instances", &d), Some(4.0));
    assert_eq!(
        value(
            &after,
            "epu_instances",
            &[("domain", "web"), ("state", "running")]
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &after,
            "epu_instances_by_health",
            &[("domain", "web"), ("health", "ok")]
        ),
        Some(4.0)
    );
    assert_eq!(value(&after, "epu_launches_total", &d), Some(4.0));
    assert_eq!(
        value(
            &after,
            "epu_sensor_value",
            &[("domain", "web"), ("sensor", "queue-length")]
        ),
        Some(40.0)
    );
    let decides = value(&after, "epu_decides_total", &d).unwrap();
    assert!(decides > value(&before, "epu_decides_total", &d).unwrap());
    assert_eq!(
        value(&after, "epu_decide_duration_seconds", &d),
        Some(decides),
        "one sample per decide"
    );
    let reconfigures = value(
        &after,
        "epu_api_requests_total",
        &[
            ("route", "/v1/domains/:name/reconfigure"),
            ("status", "200"),
        ],
    );
    assert_eq!(reconfigures, Some(1.0));
    assert!(value(&after, "epu_store_write_duration_seconds", &[]).unwrap() > 0.0);

    // A killed worker is replaced, and counted as a replacement.
    kit::kill9(workers[0].pid.unwrap());
    let replaced = wait_for(Duration::from_secs(20), || {
        value(&scrape(&epu, &addr), "epu_replacements_total", &d) == Some(1.0)
    });
    assert!(replaced, "no replacement counted");
    epu.wait_running("web", 4);
    assert_eq!(
        value(&scrape(&epu, &addr), "epu_launches_total", &d),
        Some(5.0)
    );
}

#[test]
fn a_dry_run_domain_decides_and_records_but_launches_nothing() {
    let epu = Epu::new();
    let (_daemon, addr) = epu.listening_daemon("127.0.0.1:0");
    epu.add_domain("trial")
        .switch("--dry-run")
        .config("preserve_n=3")
        .flag("--pulse-ms", "100")
        .ok();
    let decided = wait_for(Duration::from_secs(10), || {
        value(
            &scrape(&epu, &addr),
            "epu_decides_total",
            &[("domain", "trial")],
        )
        .unwrap_or(0.0)
            >= 5.0
    });
    assert!(decided, "the engine did not decide");
    let m = scrape(&epu, &addr);
    let d = [("domain", "trial")];
    assert_eq!(value(&m, "epu_domain_dry_run", &d), Some(1.0));
    assert_eq!(value(&m, "epu_desired_instances", &d), Some(3.0));
    assert_eq!(value(&m, "epu_actual_instances", &d), Some(0.0));
    assert_eq!(
        value(&m, "epu_dry_run_launches_total", &d),
        Some(3.0),
        "asked once, recorded once"
    );
    assert_eq!(value(&m, "epu_launches_total", &d).unwrap_or(0.0), 0.0);
    // Nothing was launched: no instance in the store, no worker process.
    assert!(epu.instances("trial").is_empty());
    assert!(epu.worker_processes().is_empty());
    let status = epu.status();
    assert_eq!(status["domains"][0]["dry_run"], true);
    assert!(epu.ok(&["status"]).contains("DRY RUN"));
    // One decision event, with what it would have done.
    let decisions: Vec<serde_json::Value> = epu
        .ok(&["events", "--json", "--domain", "trial"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0]["detail"]["dry_run"], true);
    assert_eq!(decisions[0]["detail"]["would_launch"], 3);
    // A change of config is decided on too, and recorded.
    epu.ok(&["reconfigure", "trial", "preserve_n=5"]);
    let recorded = wait_for(Duration::from_secs(10), || {
        value(&scrape(&epu, &addr), "epu_desired_instances", &d) == Some(5.0)
    });
    assert!(recorded);
    assert!(epu.instances("trial").is_empty());
}
