use super::*;
use bindings::{Health, Instance, InstanceState, Snapshot};
use std::time::Duration;

const LIMITS: CallLimits = CallLimits {
    timeout: Duration::from_millis(200),
    wall_timeout: Duration::from_secs(2),
    memory_bytes: 64 << 20,
};

fn host() -> (tempfile::TempDir, EngineHost) {
    let dir = tempfile::tempdir().unwrap();
    let host = EngineHost::new(dir.path()).unwrap();
    (dir, host)
}

fn instance(handle: u64, state: InstanceState) -> Instance {
    Instance {
        handle,
        state,
        state_time: 1.0,
        health: Health::Ok,
        health_time: 1.0,
        protected: false,
        draining: false,
    }
}

/// A full snapshot of `n` running instances.
fn snapshot(n: u64) -> Snapshot {
    Snapshot {
        now: 10.0,
        full: true,
        instances: (1..=n)
            .map(|h| instance(h, InstanceState::Running))
            .collect(),
        details: None,
        sensors: None,
        memo: None,
    }
}

#[test]
fn the_bundled_npreserving_decides_through_the_sandbox() {
    let (_dir, host) = host();
    let loaded = host.add(bundled::get("npreserving").unwrap()).unwrap();
    let mut inst = host
        .instantiate(&loaded, r#"{"preserve_n": 2}"#, LIMITS)
        .unwrap();
    let d = inst.decide(&snapshot(0), 0).unwrap();
    assert_eq!(d.launches.iter().map(|l| l.count).sum::<u32>(), 2);
    let d = inst.decide(&snapshot(3), 0).unwrap();
    assert_eq!(d.destroy.len(), 1);
    inst.reconfigure(r#"{"preserve_n": 5}"#).unwrap();
    let d = inst.decide(&snapshot(3), 0).unwrap();
    assert_eq!(d.launches.iter().map(|l| l.count).sum::<u32>(), 2);
}

#[test]
fn an_engine_instance_keeps_its_table_between_delta_snapshots() {
    let (_dir, host) = host();
    let loaded = host.add(bundled::get("npreserving").unwrap()).unwrap();
    let mut inst = host
        .instantiate(&loaded, r#"{"preserve_n": 3}"#, LIMITS)
        .unwrap();
    let d = inst.decide(&snapshot(3), 0).unwrap();
    assert!(d.launches.is_empty() && d.destroy.is_empty());
    // Only the change: instance 2 failed. The engine still knows 1 and 3.
    let mut delta = snapshot(0);
    delta.full = false;
    delta.instances = vec![instance(2, InstanceState::Failed)];
    let d = inst.decide(&delta, 0).unwrap();
    assert_eq!(d.launches.iter().map(|l| l.count).sum::<u32>(), 1);
    // A new instance arrives; a full snapshot of one instance then replaces the table.
    delta.instances = vec![instance(4, InstanceState::Requesting)];
    assert!(inst.decide(&delta, 0).unwrap().launches.is_empty());
    let d = inst.decide(&snapshot(1), 0).unwrap();
    assert_eq!(d.launches.iter().map(|l| l.count).sum::<u32>(), 2);
}

#[test]
fn engine_errors_are_rejections_and_leave_the_instance_usable() {
    let (_dir, host) = host();
    let loaded = host.add(bundled::get("npreserving").unwrap()).unwrap();
    // The schema npreserving declares refuses the config before the engine sees it; the
    // engine's own initialize refuses it too.
    match host.instantiate(&loaded, r#"{"preserve_n": "x"}"#, LIMITS) {
        Err(EngineError::Schema(e)) => assert_eq!(e.key, "preserve_n", "{e}"),
        other => panic!("expected the schema's refusal, got {:?}", other.err()),
    }
    match host.instantiate_unchecked(&loaded, r#"{"preserve_n": "x"}"#, LIMITS) {
        Err(EngineError::Rejected(m)) => assert!(m.contains("preserve_n"), "{m}"),
        other => panic!("expected a rejection, got {:?}", other.err()),
    }
    let mut inst = host.instantiate(&loaded, "{}", LIMITS).unwrap();
    let (logs, _) = inst.take_logs();
    assert!(
        logs.iter()
            .any(|(_, m)| m.contains("preserve_n is not set")),
        "{logs:?}"
    );
    assert!(matches!(
        inst.reconfigure("[]"),
        Err(EngineError::Rejected(_))
    ));
    assert!(inst.decide(&snapshot(1), 0).is_ok());
}

#[test]
fn compiled_code_is_cached_on_disk_and_reused() {
    let (dir, host) = host();
    let loaded = host.add(bundled::get("npreserving").unwrap()).unwrap();
    let cached = cache_entry(dir.path());
    let stamp = std::fs::metadata(&cached).unwrap().modified().unwrap();
    // A second host (a restarted daemon) loads by sha from the state dir and the cache.
    let again = EngineHost::new(dir.path()).unwrap();
    let reloaded = again.load(&loaded.sha).unwrap();
    assert_eq!(reloaded.sha, loaded.sha);
    assert_eq!(
        std::fs::metadata(&cached).unwrap().modified().unwrap(),
        stamp
    );
}

/// The one compiled-code file in a state dir's cache.
fn cache_entry(state: &std::path::Path) -> std::path::PathBuf {
    let entries: Vec<_> = std::fs::read_dir(state.join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

#[test]
fn a_corrupt_cache_entry_is_detected_and_rebuilt() {
    let (dir, host) = host();
    let loaded = host.add(bundled::get("npreserving").unwrap()).unwrap();
    let cached = cache_entry(dir.path());
    let good = std::fs::read(&cached).unwrap();
    let truncated = good[..good.len() / 2].to_vec();
    // One flipped byte deep inside passes the format's own header checks.
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    for corrupt in [truncated, flipped] {
        std::fs::write(&cached, &corrupt).unwrap();
        let again = EngineHost::new(dir.path()).unwrap();
        let reloaded = again.load(&loaded.sha).unwrap();
        let mut inst = again.instantiate(&reloaded, "{}", LIMITS).unwrap();
        assert!(inst.decide(&snapshot(0), 0).is_ok());
        assert_eq!(
            std::fs::read(&cached).unwrap(),
            good,
            "the entry was rebuilt"
        );
    }
}

#[test]
fn non_components_and_other_worlds_are_refused() {
    let (dir, host) = host();
    let core = host.add(b"\0asm\x01\0\0\0").err().unwrap().to_string();
    assert!(core.contains("core WebAssembly module"), "{core}");
    let empty = format!("{:#}", host.add(b"\0asm\x0d\0\x01\0").err().unwrap());
    assert!(empty.contains("declares no epu:engine version"), "{empty}");
    assert!(empty.contains("does not implement"), "{empty}");
    for kept in ["engines", "cache"] {
        let files = std::fs::read_dir(dir.path().join(kept)).unwrap().count();
        assert_eq!(files, 0, "{kept}: a refused engine left files");
    }
}

#[test]
fn the_contract_version_is_the_wit_package_version() {
    let wit = include_str!("../../../wit/engine.wit");
    assert!(wit.contains(&format!("package epu:engine@{CONTRACT_VERSION};")));
}
