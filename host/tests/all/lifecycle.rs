//! The quickstart end to end: real worker processes kept alive by the wasm npreserving engine.

use crate::kit;

use kit::{is_alive, kill9, wait_for, Epu};
use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::time::Duration;

fn pids(instances: &[kit::Instance]) -> HashSet<i32> {
    instances
        .iter()
        .map(|i| i.pid.expect("process workers have a pid"))
        .collect()
}

#[test]
fn quickstart_keeps_three_real_workers_and_replaces_a_killed_one() {
    let epu = Epu::new();
    let before = epu.boot_quickstart();
    let before_pids = pids(&before);
    assert_eq!(before_pids.len(), 3);
    assert!(before_pids.iter().all(|p| is_alive(*p)), "{before_pids:?}");

    let victim = before[0].clone();
    kill9(victim.pid.unwrap());
    let mut after = Vec::new();
    let replaced = wait_for(Duration::from_secs(10), || {
        after = epu.instances("workers");
        after.len() == 3
            && after.iter().all(|i| i.state == "running")
            && !after.iter().any(|i| i.id == victim.id)
    });
    assert!(replaced, "not replaced within 10 s: {after:#?}");
    let after_pids = pids(&after);
    assert_eq!(after_pids.intersection(&before_pids).count(), 2);
    assert!(after_pids.iter().all(|p| is_alive(*p)));

    // The killed one is recorded as failed with the reason.
    let events = epu.ok(&["events", "--json", "--domain", "workers"]);
    assert!(
        events
            .lines()
            .any(|l| l.contains(&victim.id) && l.contains("\"to\":\"failed\"")),
        "no failed event for {}",
        victim.id
    );

    // Killing the newest worker over and over is not a crash loop: it had sent heartbeats,
    // so each replacement follows at once rather than after a backoff.
    for _ in 0..3 {
        let newest = epu
            .wait_running("workers", 3)
            .into_iter()
            .find(|i| !before_pids.contains(&i.pid.unwrap()))
            .unwrap();
        kill9(newest.pid.unwrap());
        let replaced = wait_for(Duration::from_secs(10), || {
            let now = epu.instances("workers");
            now.len() == 3 && !now.iter().any(|i| i.id == newest.id)
        });
        assert!(replaced);
    }
    let events = epu.ok(&["events", "--json", "--domain", "workers"]);
    assert!(!events.contains("crash-loop-backoff"), "{events}");
}

#[test]
fn reconfigure_grows_and_shrinks_the_pool() {
    let epu = Epu::new();
    epu.boot_quickstart();
    epu.ok(&["reconfigure", "workers", "preserve_n=5"]);
    let five = epu.wait_running("workers", 5);
    assert_eq!(pids(&five).len(), 5);

    epu.ok(&["reconfigure", "workers", "preserve_n=0"]);
    assert!(
        wait_for(Duration::from_secs(15), || epu
            .instances("workers")
            .is_empty()),
        "workers left: {:?}",
        epu.instances("workers")
    );
    assert!(
        wait_for(Duration::from_secs(5), || five
            .iter()
            .all(|i| !is_alive(i.pid.unwrap()))),
        "a destroyed worker process is still alive"
    );
    let status = epu.status();
    assert_eq!(status["domains"][0]["config"]["preserve_n"], 0);
    assert_eq!(status["domains"][0]["config_version"], 3);
}

#[test]
fn a_restarted_daemon_adopts_the_same_workers_without_duplicates() {
    let epu = Epu::new();
    epu.boot_quickstart();
    // A reconfigured N must survive the restart too.
    epu.ok(&["reconfigure", "workers", "preserve_n=4"]);
    let before = pids(&epu.wait_running("workers", 4));
    let daemon = epu.daemon_pid().expect("daemon pid");
    kill9(daemon);
    assert!(wait_for(Duration::from_secs(5), || !is_alive(daemon)));
    // The workers outlive the daemon.
    assert!(before.iter().all(|p| is_alive(*p)));

    let mut child = epu.command().arg("daemon").spawn().unwrap();
    let adopted = epu.wait_running("workers", 4);
    assert_eq!(
        pids(&adopted),
        before,
        "the restarted daemon must adopt the same pids"
    );
    // Give the engine a few decides to launch a duplicate, if it were going to.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pids(&epu.instances("workers")), before);
    let mut procs = epu.worker_processes();
    procs.sort();
    let leaders: HashSet<i32> = procs
        .iter()
        .copied()
        .filter(|p| nix_pgid(*p) == Some(*p))
        .collect();
    assert_eq!(
        leaders, before,
        "worker processes on the machine: {procs:?}"
    );
    let status = epu.status();
    assert_eq!(status["domains"][0]["config"]["preserve_n"], 4);
    assert_eq!(status["domains"][0]["config_version"], 2);

    epu.ok(&["terminate"]);
    let _ = child.wait();
}

/// A crash between recording a launch and confirming its spawn: the worker that did start is
/// found through /proc and adopted, the one that did not is failed, and nothing is launched twice.
/// A stray worker of the state dir that the store does not know is killed.
#[test]
fn a_launch_interrupted_by_a_crash_is_adopted_not_repeated() {
    let epu = Epu::new();
    let before = epu.boot_quickstart();
    kill9(epu.daemon_pid().unwrap());
    kill9(before[0].pid.unwrap());
    let state_dir = epu.state_dir().canonicalize().unwrap();

    // What the daemon had written just before spawning two workers, of which one started.
    let db = rusqlite::Connection::open(state_dir.join("epu.db")).unwrap();
    for id in ["i-spawned00001", "i-neverstarted"] {
        db.execute(
            "INSERT INTO instances (id, domain, launch_id, state, state_ord, state_time, health, \
             health_time, vars, changed_seq, created, handle) VALUES (?1, 'workers', 'l-crashed', \
             'requesting', 0, 0, 'unknown', 0, '[]', 0, 0, \
             (SELECT MAX(handle) + 1 FROM instances))",
            [id],
        )
        .unwrap();
    }
    let seq_before: i64 = db
        .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
        .unwrap();
    drop(db);
    let mut orphan = std::process::Command::new("/bin/sleep")
        .arg("1000")
        .env("EPU_NODE_ID", "i-spawned00001")
        .env("EPU_STATE_DIR", &state_dir)
        .process_group(0)
        .spawn()
        .unwrap();
    let orphan_pid = orphan.id() as i32;
    // And a worker of this state dir that the store does not know at all: a stray.
    let mut stray = std::process::Command::new("/bin/sleep")
        .arg("1000")
        .env("EPU_NODE_ID", "i-unknown00000")
        .env("EPU_STATE_DIR", &state_dir)
        .process_group(0)
        .spawn()
        .unwrap();

    let mut child = epu.command().arg("daemon").spawn().unwrap();
    let mut now = Vec::new();
    let settled = wait_for(Duration::from_secs(10), || {
        now = epu.instances("workers");
        now.len() == 3
    });
    assert!(settled, "{now:#?}");
    std::thread::sleep(Duration::from_secs(1));
    now = epu.instances("workers");
    let adopted = now
        .iter()
        .find(|i| i.id == "i-spawned00001")
        .expect("adopted");
    assert_eq!(adopted.pid, Some(orphan_pid));
    assert!(!now.iter().any(|i| i.id == "i-neverstarted"));
    let after = epu.ok(&["events", "--json", "--after", &seq_before.to_string()]);
    let launches = after
        .lines()
        .filter(|l| l.contains("launch-recorded"))
        .count();
    assert_eq!(
        launches, 0,
        "two survivors + the adopted one make 3: nothing to launch\n{after}"
    );
    assert!(after.contains("the launch was interrupted before the worker started"));
    assert!(after.contains("stray-killed"), "{after}");
    let status = stray.wait().unwrap();
    assert!(!status.success(), "the stray was killed");

    epu.ok(&["terminate"]);
    let _ = child.wait();
    let _ = orphan.wait();
}

/// A crash cuts a destroy short: the worker ignores SIGTERM and its SIGKILL was due from the
/// daemon that died. The restarted daemon destroys it again (found by the torture test: such a
/// worker used to stay `terminating` and alive for good).
#[test]
fn a_destroy_cut_short_by_a_crash_is_finished_after_the_restart() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    epu.add_domain("stubborn")
        .config("preserve_n=1")
        .flag("--pulse-ms", "100")
        .flag("--grace", "3")
        .command(&["/bin/sh", "-c", "trap '' TERM; exec sleep 1000"])
        .ok();
    let mut first = Vec::new();
    assert!(wait_for(Duration::from_secs(10), || {
        first = epu.instances("stubborn");
        first.len() == 1 && first[0].pid.is_some()
    }));
    let pid = first[0].pid.unwrap();
    epu.ok(&["reconfigure", "stubborn", "preserve_n=0"]);
    assert!(wait_for(Duration::from_secs(5), || epu
        .instances("stubborn")
        .iter()
        .any(|i| i.state == "terminating")));
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        is_alive(pid),
        "SIGTERM is ignored and the SIGKILL died with the daemon"
    );

    let mut daemon = epu.start_daemon();
    assert!(
        wait_for(Duration::from_secs(8), || !is_alive(pid)),
        "the restarted daemon did not finish the destroy"
    );
    assert!(wait_for(Duration::from_secs(5), || epu
        .instances("stubborn")
        .is_empty()));
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

/// `epu events | head -1`: the client ends quietly when its reader goes away (it panicked on
/// the failed write before).
#[test]
fn a_client_whose_output_pipe_closes_ends_quietly() {
    let epu = Epu::new();
    epu.boot_quickstart();
    let mut events = epu
        .command()
        .args(["events", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end at once: every write the client makes hits a closed pipe.
    drop(events.stdout.take());
    let out = events.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn terminate_leaves_no_worker_behind() {
    let epu = Epu::new();
    let before = epu.boot_quickstart();
    let daemon = epu.daemon_pid().unwrap();
    epu.ok(&["terminate"]);
    epu.assert_no_workers_left(&before);
    assert!(
        wait_for(Duration::from_secs(5), || !is_alive(daemon)),
        "daemon still running"
    );
    let err = epu.fails(&["status"]);
    assert!(err.contains("no epu daemon is running"), "{err}");
}

#[test]
fn run_streams_events_and_ctrl_c_terminates_every_worker() {
    let epu = Epu::new();
    let plan = kit::repo().join("launch-plans/quickstart");
    let child = epu
        .command()
        .args(["run", plan.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let running = epu.wait_running("workers", 3);
    assert!(kit::signal(child.id() as i32, kit::Signal::SIGINT));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "epu run exited with {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("launch-recorded"),
        "no events streamed: {text}"
    );
    epu.assert_no_workers_left(&running);
}

fn nix_pgid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

#[test]
fn terminate_after_a_daemon_crash_still_stops_every_worker() {
    let epu = Epu::new();
    let before = epu.boot_quickstart();
    kill9(epu.daemon_pid().unwrap());
    assert!(before.iter().all(|i| is_alive(i.pid.unwrap())));
    epu.ok(&["terminate"]);
    epu.assert_no_workers_left(&before);
}

/// A worker that exits at once, or a command that cannot be spawned, is relaunched with a
/// growing backoff rather than in a tight loop.
#[test]
fn crash_looping_workers_are_relaunched_with_backoff() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    // A program that exists when the domain is added (a missing one is refused then), and
    // is gone by its first launch.
    let vanishing = epu.dir.path().join("vanishing.sh");
    std::fs::write(&vanishing, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&vanishing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let missing = vanishing.to_str().unwrap();
    for (name, command) in [("crashy", "/bin/false"), ("missing", missing)] {
        epu.add_domain(name)
            .config("preserve_n=0")
            .command(&[command])
            .ok();
    }
    std::fs::remove_file(&vanishing).unwrap();
    for name in ["crashy", "missing"] {
        epu.ok(&["reconfigure", name, "preserve_n=2"]);
    }
    std::thread::sleep(Duration::from_secs(3));
    for name in ["crashy", "missing"] {
        let events = epu.ok(&["events", "--json", "--domain", name]);
        let launches = events
            .lines()
            .filter(|l| l.contains("launch-recorded"))
            .count();
        assert!(
            launches >= 4,
            "{name}: it should keep trying, launched {launches}"
        );
        assert!(
            launches <= 30,
            "{name}: {launches} launches in 3 s, no backoff"
        );
        assert!(events.contains("crash-loop-backoff"), "{name}");
    }
    let status = epu.status();
    for d in status["domains"].as_array().unwrap() {
        assert!(
            d["controller"]["backoff_ms"].as_u64().unwrap() >= 250,
            "{d}"
        );
    }
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn domains_are_added_listed_and_removed_with_their_workers() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    epu.add_domain("sleepers")
        .config("preserve_n=2")
        .flag("--grace", "0.5")
        .ok();
    let mut workers = Vec::new();
    assert!(wait_for(Duration::from_secs(10), || {
        workers = epu.instances("sleepers");
        workers.len() == 2 && workers.iter().all(|i| i.state == "started")
    }));
    let list: serde_json::Value =
        serde_json::from_str(&epu.ok(&["domain", "list", "--json"])).unwrap();
    assert_eq!(list[0]["name"], "sleepers");
    assert_eq!(list[0]["engine"], "npreserving");
    assert_eq!(list[0]["instances"], 2);
    assert_eq!(epu.ok(&["domain", "list"]).trim(), "sleepers");

    epu.ok(&["domain", "remove", "sleepers"]);
    epu.assert_no_workers_left(&workers);
    assert_eq!(epu.ok(&["domain", "list"]).trim(), "");
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn booting_a_plan_again_carries_on_with_the_same_workers() {
    let epu = Epu::new();
    let before = pids(&epu.boot_quickstart());
    let plan = kit::repo().join("launch-plans/quickstart");
    let out = epu.ok(&["boot", plan.to_str().unwrap()]);
    assert!(out.contains("already booted"), "{out}");
    // After a daemon crash, booting again adopts the workers rather than adding anything.
    kill9(epu.daemon_pid().unwrap());
    let out = epu.ok(&["boot", plan.to_str().unwrap()]);
    assert!(out.contains("already booted"), "{out}");
    assert_eq!(pids(&epu.wait_running("workers", 3)), before);
}

#[test]
fn events_follow_streams_new_events_and_ends_with_the_daemon() {
    use std::io::{BufRead, BufReader};
    let epu = Epu::new();
    epu.boot_quickstart();
    let mut follower = epu
        .command()
        .args(["events", "--follow", "--json", "--domain", "workers"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    // The backlog first.
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["kind"], "domain-added");
    // Then what happens next, as it happens.
    epu.ok(&["reconfigure", "workers", "preserve_n=2"]);
    let reconfigured = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("\"kind\":\"reconfigured\""));
    assert!(reconfigured.is_some());
    // A follower of a quiet domain does not hold the daemon up when it stops.
    epu.add_sleepers("quiet", 0);
    let mut quiet = epu
        .command()
        .args(["events", "--follow", "--domain", "quiet"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let daemon = epu.daemon_pid().unwrap();
    epu.ok(&["terminate"]);
    let status = follower.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "a follower ends, non-zero, when the daemon goes away: {status}"
    );
    assert!(
        wait_for(Duration::from_secs(3), || !is_alive(daemon)),
        "a long poll held the daemon up"
    );
    let _ = quiet.wait();
}
