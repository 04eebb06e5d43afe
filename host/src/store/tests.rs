use super::*;
use crate::model::{Deployable, HealthSettings, ProcessDeployable};

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
        }),
        health: HealthSettings::default(),
        max_instances: 10,
        pulse_ms: 1000,
        run: None,
        limits: Default::default(),
        sensors: vec![],
        dry_run: false,
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
        first.instances.len(),
        2,
        "the failed one is shown as a change"
    );
    s.record_decision("a", first.seen_seq, Some(b"memo"), &[], None)
        .unwrap();
    let second = s.decide_view("a").unwrap();
    assert_eq!(second.record.memo, b"memo");
    assert_eq!(second.record.last_decide_seq, first.seen_seq);
    assert_eq!(
        second
            .instances
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        ["i-1"]
    );
    assert!(first.record.memo.is_empty());
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
    d.sensors = vec![crate::sensors::SensorSpec::Pushed {
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
