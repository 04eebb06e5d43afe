//! The original engines, whole: the bundled engines hold to their scenario files (the original
//! engines' unit tests among them), and npreserving's uniques keep their vars through a lost
//! worker and a daemon restart.

use crate::kit;

use kit::{is_alive, kill9, repo, wait_for, Epu, Instance, EPU};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[test]
fn bundled_engines_hold_to_their_scenarios() {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scenario-cache");
    for name in ["npreserving", "queuelen", "sensor"] {
        let dir = repo().join("plugins").join(name).join("scenarios");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 4, "{name}: only {files:?}");
        for file in files {
            let out = Command::new(EPU)
                .arg("--state-dir")
                .arg(&cache)
                .args(["engine", "test", name])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}{}",
                file.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The `role` var a worker was launched with (its `EPU_VAR_ROLE`), or "" for none.
fn role(pid: i32) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"EPU_VAR_ROLE="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// Each running worker's pid, by its role.
fn by_role(instances: &[Instance]) -> BTreeMap<String, i32> {
    instances
        .iter()
        .map(|i| {
            let pid = i.pid.expect("a process worker has a pid");
            (role(pid), pid)
        })
        .collect()
}

#[test]
fn uniques_keep_their_vars_through_a_lost_worker_and_a_restart() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    // Workers that send a heartbeat every second.
    let worker = repo().join("launch-plans/quickstart/worker.sh");
    epu.add_domain("u")
        .config("preserve_n=3")
        .config(r#"unique_instances={"a": {"role": "alpha"}, "b": {"role": "beta"}}"#)
        .flag("--pulse-ms", "100")
        .command(&[&worker])
        .ok();
    let first = by_role(&epu.wait_running("u", 3));
    let roles: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(roles, ["", "alpha", "beta"], "two uniques and one generic");

    // The alpha worker dies: its replacement is launched with alpha's vars.
    kill9(first["alpha"]);
    let mut now = BTreeMap::new();
    let replaced = wait_for(Duration::from_secs(30), || {
        let running = epu.instances("u");
        let all_up = running.len() == 3 && running.iter().all(|i| i.state == "running");
        now = if all_up {
            by_role(&running)
        } else {
            BTreeMap::new()
        };
        now.len() == 3 && now.get("alpha").is_some_and(|p| *p != first["alpha"])
    });
    assert!(replaced, "alpha was not replaced with its vars: {now:?}");
    assert_eq!(now["beta"], first["beta"], "beta is untouched");
    assert_eq!(now[""], first[""], "the generic is untouched");

    // The daemon dies and comes back: it keeps both uniques and launches nothing.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(now.values().all(|p| is_alive(*p)));
    let mut daemon = epu.start_daemon();
    let adopted = by_role(&epu.wait_running("u", 3));
    assert_eq!(adopted, now, "the restarted daemon adopts the same workers");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        by_role(&epu.instances("u")),
        now,
        "nothing is relaunched after the restart"
    );
    epu.ok(&["terminate"]);
    let _ = daemon.wait();
}
