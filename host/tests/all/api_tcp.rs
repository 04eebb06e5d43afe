//! The API on TCP, as a remote worker or tool meets it: tokens, a worker's token only for
//! its own heartbeats, body limits and malformed JSON.

use crate::kit;

use kit::{http, is_alive, Epu};

#[test]
fn the_tcp_api_refuses_missing_wrong_and_foreign_tokens_and_bad_bodies() {
    let epu = Epu::new();
    let (_daemon, addr) = epu.listening_daemon("127.0.0.1:0");
    let worker = kit::repo().join("launch-plans/quickstart/worker.sh");
    epu.add_domain("pool")
        .config("preserve_n=2")
        .flag("--env", "HEARTBEAT_SECONDS=1")
        .command(&[&worker])
        .ok();
    let workers = epu.wait_running("pool", 2);
    let token_of = |pid: i32| {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        env.split(|b| *b == 0)
            .find_map(|v| v.strip_prefix(b"EPU_TOKEN="))
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap()
    };
    let (a, b) = (&workers[0], &workers[1]);
    let token_a = token_of(a.pid.unwrap());
    let admin = std::fs::read_to_string(epu.state_dir().join("api-token")).unwrap();
    let admin = admin.trim();
    let beat = |id: &str| format!(r#"{{"node_id":"{id}","state":"ok"}}"#);

    let (code, _) = http::request(&addr, "GET", "/v1/status", None, "");
    assert_eq!(code, 401, "no token");
    let (code, _) = http::request(&addr, "GET", "/v1/status", Some("not-the-token-at-all"), "");
    assert_eq!(code, 401, "a wrong token");
    let (code, _) = http::request(&addr, "GET", "/v1/status", Some(&token_a), "");
    assert_eq!(code, 401, "a worker's token is not an admin's");
    let (code, body) = http::request(&addr, "GET", "/v1/status", Some(admin), "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"pool\""));

    let (code, body) = http::request(&addr, "POST", "/v1/heartbeat", Some(&token_a), &beat(&a.id));
    assert_eq!(code, 200, "a worker's own heartbeat: {body}");
    let (code, _) = http::request(&addr, "POST", "/v1/heartbeat", Some(&token_a), &beat(&b.id));
    assert_eq!(code, 401, "another worker's heartbeat");
    let (code, _) = http::request(&addr, "POST", "/v1/heartbeat", None, &beat(&a.id));
    assert_eq!(code, 401, "a heartbeat with no token");

    let big = format!(
        r#"{{"node_id":"{}","error":"{}"}}"#,
        a.id,
        "x".repeat(100_000)
    );
    let (code, _) = http::request(&addr, "POST", "/v1/heartbeat", Some(admin), &big);
    assert_eq!(code, 413, "an oversized body");
    let (code, body) = http::request(
        &addr,
        "POST",
        "/v1/heartbeat",
        Some(admin),
        "{\"node_id\": ",
    );
    assert_eq!(code, 400, "malformed JSON: {body}");
    assert!(body.contains("error"), "{body}");
    let (code, _) = http::request(
        &addr,
        "POST",
        "/v1/domains/pool/reconfigure",
        Some(admin),
        "[1,2]",
    );
    assert_eq!(code, 400, "JSON of the wrong shape");

    // What axum's own extractors and router refuse is a JSON error too (found by api_fuzz):
    // a path segment that is not UTF-8, a query of the wrong type, an unknown route, a wrong
    // method.
    for (method, path, want) in [
        ("POST", "/v1/domains/%FF%FE/reconfigure", 400),
        ("GET", "/v1/events?after=x", 400),
        ("GET", "/v1/nope", 404),
        ("PUT", "/v1/status", 405),
    ] {
        let (code, body) = http::request(&addr, method, path, Some(admin), "{}");
        assert_eq!(code, want, "{method} {path}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert!(error["error"].is_string(), "{method} {path}: {body}");
    }

    // Every refusal is counted, none is stored; the daemon still serves, and nothing changed.
    let stored = epu
        .ok(&["events", "--json"])
        .lines()
        .filter(|l| l.contains("\"api-refused\""))
        .count();
    assert_eq!(stored, 0);
    let (_, metrics) = http::request(&addr, "GET", "/metrics", Some(admin), "");
    let refused: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("epu_api_refused_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(refused, 5.0, "{metrics}");
    assert!(is_alive(a.pid.unwrap()) && is_alive(b.pid.unwrap()));
    assert_eq!(epu.wait_running("pool", 2).len(), 2);
}
