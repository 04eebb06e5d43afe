use super::*;
use crate::model::{Deployable, HealthSettings, ProcessDeployable};
use rusqlite::params;
use std::collections::{BTreeMap, BTreeSet};

fn spec(name: &str) -> DomainSpec {
    DomainSpec {
        name: name.into(),
        engine: "npreserving".into(),
        config: serde_json::from_str(r#"{"preserve_n": 1}"#).unwrap(),
        deployable: Deployable::Process(ProcessDeployable {
            command: vec!["/bin/true".into()],
            env: Default::default(),
            cwd: None,
            grace_seconds: 1.0,
            inherit_env: crate::model::default_inherit_env(),
        }),
        health: HealthSettings::default(),
        max_instances: 10,
        pulse_ms: 1000,
        run: None,
        limits: Default::default(),
        sensors: vec![],
        dry_run: false,
        placement: Default::default(),
        budget: Default::default(),
        drain_timeout_seconds: None,
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("epu.db")).unwrap();
    (dir, s)
}

fn launch(store: &Store, domain: &str, id: &str) {
    let new = NewInstance {
        id: id.into(),
        launch_id: "l-1".into(),
        vars: vec![("k".into(), "v".into())],
        surge: false,
    };
    store
        .record_decision(domain, 0, None, &[new], None)
        .unwrap();
}

#[test]
fn the_schema_migrates_once_and_refuses_newer_versions() {
    let (dir, s) = store();
    s.insert_domain(&spec("a"), "sha").unwrap();
    drop(s);
    let s = Store::open(&dir.path().join("epu.db")).unwrap();
    assert_eq!(s.domains().unwrap().len(), 1);
    drop(s);
    let c = Connection::open(dir.path().join("epu.db")).unwrap();
    c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(c);
    let err = Store::open(&dir.path().join("epu.db"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("newer epu"), "{err}");
}

#[test]
fn domains_are_unique_and_configs_are_versioned() {
    let (_d, s) = store();
    s.insert_domain(&spec("a"), "sha").unwrap();
    assert!(s.insert_domain(&spec("a"), "sha").is_err());
    let mut cfg = s.domain("a").unwrap().unwrap().spec.config;
    cfg.insert("preserve_n".into(), 4.into());
    let change = cfg.clone();
    assert_eq!(s.save_config("a", &cfg, &change).unwrap(), 2);
    let d = s.domain("a").unwrap().unwrap();
    assert_eq!(d.config_version, 2);
    assert_eq!(d.spec.config["preserve_n"], 4);
    s.delete_domain("a").unwrap();
    assert!(s.domain("a").unwrap().is_none());
}

#[test]
fn states_only_move_forward_and_final_states_reset_health() {
    let (_d, s) = store();
    s.insert_domain(&spec("a"), "sha").unwrap();
    launch(&s, "a", "i-1");
    let i = s.instance("i-1").unwrap().unwrap();
    assert_eq!(i.state, InstanceState::Requesting);
    assert_eq!(i.vars, vec![("k".to_string(), "v".to_string())]);
    let update = StateUpdate {
        pid: Some(42),
        pid_start: Some(7),
        error: None,
    };
    assert!(s
        .advance("i-1", InstanceState::Started, update)
        .unwrap()
        .is_some());
    assert!(s.set_health("i-1", Health::Ok).unwrap().is_some());
    assert!(
        s.set_health("i-1", Health::Ok).unwrap().is_none(),
        "no change, no event"
    );
    assert!(s
        .advance("i-1", InstanceState::Pending, StateUpdate::default())
        .unwrap()
        .is_none());
    let t = s
        .advance("i-1", InstanceState::Terminating, StateUpdate::default())
        .unwrap()
        .unwrap();
    assert_eq!(t.health, Health::Unknown);
    assert_eq!((t.pid, t.pid_start), (Some(42), Some(7)));
    assert!(s
        .advance("nope", InstanceState::Failed, StateUpdate::default())
        .unwrap()
        .is_none());
}

#[test]
fn a_pid_recorded_after_the_worker_reported_in_is_kept() {
    let (_d, s) = store();
    s.insert_domain(&spec("a"), "sha").unwrap();
    launch(&s, "a", "i-1");
    // The worker's first heartbeat won the race with the record of its spawn.
    s.advance("i-1", InstanceState::Running, StateUpdate::default())
        .unwrap()
        .unwrap();
    let spawned = StateUpdate {
        pid: Some(42),
        pid_start: Some(7),
        error: None,
    };
    assert!(s
        .advance("i-1", InstanceState::Started, spawned)
        .unwrap()
        .is_none());
    let i = s.instance("i-1").unwrap().unwrap();
    assert_eq!(i.state, InstanceState::Running);
    assert_eq!((i.pid, i.pid_start), (Some(42), Some(7)));
}

#[test]
fn a_decide_sees_live_instances_and_what_changed_since_the_last_one() {
    let (_d, s) = store();
    s.insert_domain(&spec("a"), "sha").unwrap();
    launch(&s, "a", "i-1");
    launch(&s, "a", "i-2");
    s.advance("i-2", InstanceState::Failed, StateUpdate::error("boom"))
        .unwrap();
    let first = s.decide_view("a").unwrap();
    assert_eq!(
        first.records.len(),
        2,
        "the failed one is shown as a change"
    );
    s.record_decision("a", first.seen_seq, Some(b"memo"), &[], None)
        .unwrap();
    let second = s.decide_view("a").unwrap();
    assert_eq!(second.memo, b"memo");
    assert_eq!(second.last_seq, first.seen_seq);
    assert_eq!(
        second
            .records
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        ["i-1"]
    );
    assert!(first.memo.is_empty());
    assert!(s.decide_view("nope").is_err());
}

#[test]
fn the_event_log_has_no_gaps_and_can_be_filtered() {
    let (_d, s) = store();
    s.insert_domain(&spec("a"), "sha").unwrap();
    s.insert_domain(&spec("b"), "sha").unwrap();
    launch(&s, "a", "i-1");
    let all = s.events_after(0, None, 100).unwrap();
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    let only_b = s.events_after(0, Some("b"), 100).unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].kind, "domain-added");
    assert_eq!(*s.subscribe().borrow(), *seqs.last().unwrap());
}

#[test]
fn sensors_and_pushed_readings_are_kept_until_the_domain_goes() {
    let (_dir, s) = store();
    let mut d = spec("q");
    d.sensors = vec![crate::model::sensor::SensorSpec::Pushed {
        name: "queue-length".into(),
        stale_after_ms: Some(500),
    }];
    s.insert_domain(&d, "sha").unwrap();
    assert_eq!(s.domain("q").unwrap().unwrap().spec.sensors, d.sensors);
    s.save_pushed_reading("q", "queue-length", 4.0, 10.0)
        .unwrap();
    s.save_pushed_reading("q", "queue-length", 7.0, 11.0)
        .unwrap();
    assert_eq!(
        s.pushed_readings("q").unwrap(),
        [("queue-length".to_string(), 7.0, 11.0)]
    );
    s.delete_domain("q").unwrap();
    assert!(s.pushed_readings("q").unwrap().is_empty());
}

#[test]
fn a_domain_generation_moves_with_every_write_to_it_and_only_then() {
    let (_d, s) = store();
    s.insert_domain(&spec("a"), "sha").unwrap();
    s.insert_domain(&spec("b"), "sha").unwrap();
    let generation = |d: &str| s.decide_view(d).unwrap().generation;
    let g0 = generation("a");
    assert_eq!(generation("a"), g0, "a read changes nothing");
    launch(&s, "a", "i-1");
    let g1 = generation("a");
    assert!(g1 > g0, "a launch recorded");
    let b = generation("b");
    s.advance("i-1", InstanceState::Pending, StateUpdate::default())
        .unwrap();
    let g2 = generation("a");
    assert!(g2 > g1, "a state change");
    s.set_health("i-1", Health::Missing).unwrap();
    let g3 = generation("a");
    assert!(g3 > g2, "a health change");
    s.touch_heartbeat("i-1", 5.0).unwrap();
    s.event(Some("a"), None, "note", serde_json::Value::Null)
        .unwrap();
    assert_eq!(
        generation("a"),
        g3,
        "heartbeat times and events are not in the view"
    );
    s.set_quarantine("a", true, Some(1), &serde_json::Value::Null)
        .unwrap();
    assert!(generation("a") > g3, "a quarantine");
    assert_eq!(generation("b"), b, "another domain's writes");
}

#[test]
fn a_swap_with_a_config_stores_both_at_once_and_the_history_keeps_each_config() {
    let (_d, s) = store();
    s.insert_domain(&spec("a"), "sha1").unwrap();
    let first = s.domain("a").unwrap().unwrap().spec.config;
    let mut other = serde_json::Map::new();
    other.insert("metric".into(), "cpu".into());
    s.set_engine("a", "py", "sha2", Some(&other), &serde_json::Value::Null)
        .unwrap();
    let now = s.domain("a").unwrap().unwrap();
    assert_eq!((now.engine_sha.as_str(), now.config_version), ("sha2", 2));
    assert_eq!(now.spec.config, other);
    s.set_engine("a", "again", "sha3", None, &serde_json::Value::Null)
        .unwrap();
    let versions: Vec<_> = s
        .engine_versions("a")
        .unwrap()
        .iter()
        .map(|v| (v.sha.clone(), v.config_version))
        .collect();
    assert_eq!(
        versions,
        [
            ("sha1".to_string(), Some(1)),
            ("sha2".to_string(), Some(2)),
            ("sha3".to_string(), Some(2))
        ]
    );
    assert_eq!(s.config_at("a", 1).unwrap(), first);
    assert!(s.config_at("a", 9).is_err());
}

/// One domain of an old store, with its instances.
#[derive(Clone, Debug)]
struct OldDomain {
    memo: Vec<u8>,
    preserve_n: u32,
    run: Option<String>,
    /// Each instance's state and health, as indexes into their `ALL`.
    instances: Vec<(usize, usize, Option<i32>)>,
}

fn old_domains() -> impl proptest::strategy::Strategy<Value = BTreeMap<String, OldDomain>> {
    use proptest::prelude::*;
    let domain = (
        proptest::collection::vec(any::<u8>(), 0..48),
        0u32..100,
        proptest::option::of("[a-z]{1,6}"),
        proptest::collection::vec(
            (
                0..InstanceState::ALL.len(),
                0..Health::ALL.len(),
                proptest::option::of(1i32..1 << 22),
            ),
            0..6,
        ),
    )
        .prop_map(|(memo, preserve_n, run, instances)| OldDomain {
            memo,
            preserve_n,
            run,
            instances,
        });
    proptest::collection::btree_map("[a-z][a-z0-9-]{0,8}", domain, 0..4)
}

/// Writes `domains` and `events` as an epu of schema `version` would have: the columns that
/// version has, and the deployable without its `driver` key before schema 7.
fn write_old_store(
    path: &Path,
    version: i64,
    domains: &BTreeMap<String, OldDomain>,
    events: &[(String, String)],
) {
    let mut c = Connection::open(path).unwrap();
    schema::migrate_to(&mut c, version).unwrap();
    let mut deployable = serde_json::to_value(&spec("x").deployable).unwrap();
    if version < 7 {
        deployable.as_object_mut().unwrap().remove("driver");
    }
    let health = serde_json::to_string(&HealthSettings::default()).unwrap();
    let mut handle = 0;
    for (name, d) in domains {
        c.execute(
            "INSERT INTO domains (name, engine_name, engine_sha, deployable, health, \
             max_instances, pulse_ms, run, config_version, memo, created) \
             VALUES (?1, 'npreserving', 'sha', ?2, ?3, 10, 1000, ?4, 1, ?5, 1.5)",
            params![name, deployable.to_string(), health, d.run, d.memo],
        )
        .unwrap();
        let config = serde_json::json!({ "preserve_n": d.preserve_n }).to_string();
        c.execute(
            "INSERT INTO engine_configs (domain, version, config, time) VALUES (?1, 1, ?2, 1.5)",
            params![name, config],
        )
        .unwrap();
        if version >= 2 {
            c.execute(
                "INSERT INTO engine_versions (domain, seq, name, sha, time) \
                 VALUES (?1, 1, 'npreserving', 'sha', 1.5)",
                [name],
            )
            .unwrap();
        }
        if let (Some(run), true) = (&d.run, version >= 6) {
            c.execute(
                "INSERT OR IGNORE INTO runs (name, plan, state, created, updated) \
                 VALUES (?1, '', 'booted', 1.5, 1.5)",
                [run],
            )
            .unwrap();
            c.execute(
                "INSERT INTO run_domains (run, domain) VALUES (?1, ?2)",
                [run, name],
            )
            .unwrap();
        }
        for (i, (state, health, pid)) in d.instances.iter().enumerate() {
            let state = InstanceState::ALL[*state];
            c.execute(
                "INSERT INTO instances (id, domain, launch_id, state, state_ord, state_time, \
                 health, health_time, vars, pid, changed_seq, created) \
                 VALUES (?1, ?2, 'l-1', ?3, ?4, 2.5, ?5, 2.5, '[]', ?6, 0, 2.5)",
                params![
                    format!("i-{name}-{i}"),
                    name,
                    state.as_str(),
                    state as i64,
                    Health::ALL[*health].as_str(),
                    pid
                ],
            )
            .unwrap();
            if version >= 4 {
                handle += 1;
                c.execute(
                    "UPDATE instances SET handle = ?2 WHERE id = ?1",
                    params![format!("i-{name}-{i}"), handle],
                )
                .unwrap();
            }
        }
    }
    for (kind, detail) in events {
        c.execute(
            "INSERT INTO events (time, kind, detail) VALUES (3.5, ?1, ?2)",
            params![kind, serde_json::json!({ "text": detail }).to_string()],
        )
        .unwrap();
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: crate::proptest_cases(300),
        ..Default::default()
    })]

    /// A store written by any earlier schema version opens, migrates to the current one, and
    /// reads back every domain (memo, config, run), instance and event; opening again changes
    /// nothing.
    #[test]
    fn a_store_of_every_earlier_version_migrates_with_nothing_lost(
        version in 1..SCHEMA_VERSION,
        domains in old_domains(),
        events in proptest::collection::vec(("[a-z-]{1,12}", ".{0,30}"), 0..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epu.db");
        write_old_store(&path, version, &domains, &events);
        for _ in 0..2 {
            let s = Store::open(&path).unwrap();
            let stored = s.domains().unwrap();
            let names: Vec<&str> = stored.iter().map(|d| d.spec.name.as_str()).collect();
            proptest::prop_assert_eq!(names, domains.keys().map(String::as_str).collect::<Vec<_>>());
            for d in &stored {
                let old = &domains[&d.spec.name];
                proptest::prop_assert_eq!(&d.memo, &old.memo);
                proptest::prop_assert_eq!(&d.spec.config["preserve_n"], &serde_json::json!(old.preserve_n));
                proptest::prop_assert!(matches!(d.spec.deployable, Deployable::Process(_)));
                proptest::prop_assert_eq!(s.engine_versions(&d.spec.name).unwrap().len(), 1);
                let live: BTreeSet<String> = s
                    .live_instances(Some(&d.spec.name))
                    .unwrap()
                    .into_iter()
                    .map(|i| i.id)
                    .collect();
                let want: BTreeSet<String> = old
                    .instances
                    .iter()
                    .enumerate()
                    .filter(|(_, (st, _, _))| InstanceState::ALL[*st] < InstanceState::Terminated)
                    .map(|(i, _)| format!("i-{}-{i}", d.spec.name))
                    .collect();
                proptest::prop_assert_eq!(live, want);
                if let Some(run) = &old.run {
                    proptest::prop_assert!(s.run(run).unwrap().is_some());
                    proptest::prop_assert!(s.run_domains(run).unwrap().contains(&d.spec.name));
                }
            }
            let log = s.events_after(0, None, 10_000).unwrap();
            proptest::prop_assert_eq!(log.len(), events.len());
            for (e, (kind, _)) in log.iter().zip(&events) {
                proptest::prop_assert_eq!(&e.kind, kind);
            }
            let c = s.conn.lock().unwrap();
            let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            proptest::prop_assert_eq!(v, SCHEMA_VERSION);
        }
    }
}

mod deployables;
mod mirror;
