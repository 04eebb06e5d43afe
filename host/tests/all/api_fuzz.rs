//! Fuzzing of the API as a remote client meets it: random methods on every route, with
//! hostile path segments and query strings, and bodies that are random JSON, valid bodies with
//! one field replaced by random JSON, or not JSON at all; with the admin token, without one,
//! and with a wrong one. Every answer must be a 2xx or 4xx (never a 5xx or a dropped
//! connection), every refusal must say why in a JSON `error`, and the daemon must be
//! up and consistent at the end.
//!
//! Cases: 300 by default; `PROPTEST_CASES=N` for a longer session.

use crate::kit;

use kit::{http, Epu};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Routes, with `{d}` for a domain, `{s}` a sensor and `{r}` a run. `POST /v1/terminate` is left
/// out: it stops the daemon, as it should.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/status"),
    ("POST", "/v1/domains"),
    ("DELETE", "/v1/domains/{d}"),
    ("POST", "/v1/domains/{d}/reconfigure"),
    ("POST", "/v1/domains/{d}/engine"),
    ("GET", "/v1/domains/{d}/engine/history"),
    ("POST", "/v1/domains/{d}/engine/rollback"),
    ("POST", "/v1/domains/{d}/engine/resume"),
    ("GET", "/v1/domains/{d}/scenario"),
    ("POST", "/v1/domains/{d}/sensors/{s}"),
    ("GET", "/v1/domains/{d}/series"),
    ("POST", "/v1/heartbeat"),
    ("GET", "/v1/events"),
    ("POST", "/v1/runs"),
    ("GET", "/v1/runs/{r}"),
    ("POST", "/v1/runs/{r}/terminate"),
    ("POST", "/v1/clean"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/"),
    ("GET", "/app.js"),
    ("GET", "/nope"),
];

const METHODS: &[&str] = &["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"];

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("pool".to_string()),
        Just("load".to_string()),
        Just("..".to_string()),
        Just("%2e%2e%2f%2e%2e".to_string()),
        Just("%00".to_string()),
        Just("%FF%FE".to_string()),
        Just("a".repeat(300)),
        "[a-zA-Z0-9._~-]{0,12}",
        "(%[0-9A-F]{2}){1,6}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("?after=-1".to_string()),
        Just("?after=99999999999999999999".to_string()),
        Just("?wait_ms=1&domain=%FF".to_string()),
        Just("?seconds=nan".to_string()),
        Just("?seconds=-1e308".to_string()),
        Just("?check=maybe".to_string()),
        Just("?domain=pool&after=0".to_string()),
        "\\?[a-z_]{1,8}=[a-zA-Z0-9%]{0,10}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Well-formed bodies of each kind of request, for the fuzzer to damage one field of.
fn valid_bodies() -> Vec<Value> {
    vec![
        json!({"name": "fz", "engine": "npreserving", "config": {"preserve_n": 0},
               "deployable": {"command": ["/nonexistent/worker"]}, "max_instances": 2}),
        json!({"config": {"preserve_n": 1}}),
        json!({"engine": "npreserving", "config": {"preserve_n": 1}}),
        json!({"value": 3.5}),
        json!({"node_id": "i-000000000000", "state": "ok"}),
        json!({"node_id": "i-000000000000", "state": "process-error", "error": "x"}),
        json!({"plan": "/nonexistent/plan", "name": "r"}),
    ]
}

fn damaged() -> impl Strategy<Value = String> {
    let bodies = valid_bodies();
    let damaged = (0..bodies.len(), "[a-z_]{1,12}", json_value(), any::<bool>()).prop_map(
        move |(i, key, value, replace)| {
            let mut b = bodies[i].clone();
            let obj = b.as_object_mut().unwrap();
            let key = if replace {
                obj.keys().nth(key.len() % obj.len()).unwrap().clone()
            } else {
                key
            };
            obj.insert(key, value);
            b.to_string()
        },
    );
    damaged
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        json_value().prop_map(|v| v.to_string()),
        damaged(),
        damaged(),
        ".{0,60}",
        Just("{\"value\": 1e999}".to_string()),
        Just("{\"value\": 1, \"value\": 2}".to_string()),
        Just("[".repeat(10_000)),
    ]
}

#[test]
fn random_requests_get_a_clear_answer_and_leave_the_daemon_consistent() {
    let epu = Epu::new();
    let (_daemon, addr) = epu.listening_daemon("127.0.0.1:0");
    epu.add_domain("pool")
        .config("preserve_n=1")
        .flag("--sensor", "kind=pushed,name=load")
        .ok();
    let admin = std::fs::read_to_string(epu.state_dir().join("api-token")).unwrap();
    let admin = admin.trim().to_string();

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: epu::proptest_cases(300),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    // The route's own method four times in five.
    let request = (
        0..METHODS.len() * 5,
        0..ROUTES.len(),
        segment(),
        segment(),
        query(),
        body(),
        0..10u8,
    );
    let answered = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    let result = runner.run(
        &request,
        |(method, route, seg_a, seg_b, query, body, token)| {
            let (right, template) = ROUTES[route];
            let method = if method < METHODS.len() {
                METHODS[method]
            } else {
                right
            };
            let path = template
                .replace("{d}", &seg_a)
                .replace("{r}", &seg_a)
                .replace("{s}", &seg_b)
                + &query;
            let token = match token {
                0 => None,
                1 => Some("wrong"),
                _ => Some(admin.as_str()),
            };
            let (code, reply) = http::request(&addr, method, &path, token, &body);
            *answered.borrow_mut().entry(code).or_default() += 1;
            prop_assert!(
                (200..500).contains(&code),
                "{} {path} with {body:?}: {code} {reply}",
                method
            );
            if code >= 400 && method != "HEAD" {
                let error: Value = serde_json::from_str(&reply).unwrap_or_default();
                prop_assert!(
                    error["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{} {path} with {body:?}: {code} without a JSON error: {reply}",
                    method
                );
            }
            Ok(())
        },
    );
    eprintln!("answers by status: {:?}", answered.borrow());
    if let Err(e) = result {
        panic!("{e}");
    }
    // Still up, still serving the domain it had, and the store still opens.
    let status = epu.status();
    let names: Vec<&str> = status["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| epu::model::check_domain_name(n).is_ok()),
        "{names:?}"
    );
    epu.ok(&["events", "--json"]);
}
