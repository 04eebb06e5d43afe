//! Regression tests of what an outside audit broke: values that bricked a state dir, idle
//! connections, workers' children that outlived them, refusals written to disk, values that
//! broke a domain later, terminates cut short by a crash, an open state dir, the daemon's
//! environment in workers, and zombies nobody killed.

use crate::kit;

use kit::http::request;
use kit::{is_alive, kill9, wait_for, Epu, Signal};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// A worker whose leader dies on SIGTERM while its child ignores SIGTERM; the child keeps the
/// worker's environment, as children do.
const LEAVES_A_CHILD: &str = "(trap '' TERM; exec sleep 1000) & wait";

/// Adds a domain of `n` workers running `script` under `sh -c`, with a 1 s grace.
fn add_script(epu: &Epu, name: &str, n: u32, script: &str) {
    let keep = format!("preserve_n={n}");
    epu.add_domain(name)
        .options(&["-c", &keep, "--pulse-ms", "100", "--grace", "1"])
        .command(&["/bin/sh", "-c", script])
        .ok();
}

/// The processes of the state dir's workers, by instance id.
fn processes(epu: &Epu) -> std::collections::HashMap<String, Vec<i32>> {
    kit::workers_by_instance(&epu.state_dir())
}

/// The pids of one instance's processes once it has `n` of them.
fn processes_of(epu: &Epu, id: &str, n: usize) -> Vec<i32> {
    let mut pids = Vec::new();
    let ok = wait_for(Duration::from_secs(10), || {
        pids = processes(epu).remove(id).unwrap_or_default();
        pids.len() >= n
    });
    assert!(ok, "instance {id} has {pids:?}, not {n} processes");
    pids.sort_unstable();
    pids
}

/// Waits until `n` instances of `domain` have a worker process; returns them.
fn wait_started(epu: &Epu, domain: &str, n: usize) -> Vec<kit::Instance> {
    let mut last = Vec::new();
    let ok = wait_for(Duration::from_secs(30), || {
        last = epu.instances(domain);
        last.len() == n
            && last
                .iter()
                .all(|i| i.pid.is_some() && matches!(i.state.as_str(), "started" | "running"))
    });
    assert!(
        ok,
        "expected {n} started instances of {domain}, have {last:#?}"
    );
    last
}

fn all_dead(pids: &[i32]) -> bool {
    wait_for(Duration::from_secs(15), || {
        pids.iter().all(|&p| !is_alive(p))
    })
}

fn events_of(epu: &Epu, kind: &str) -> Vec<Value> {
    let out = epu.ok(&["events", "--json"]);
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| match v {
            Value::Array(a) => a,
            other => vec![other],
        })
        .filter(|e| e["kind"] == kind)
        .collect()
}

fn admin_token(epu: &Epu) -> String {
    std::fs::read_to_string(epu.state_dir().join("api-token"))
        .unwrap()
        .trim()
        .to_string()
}

fn process_spec(name: &str, deployable: Value) -> Value {
    json!({
        "name": name, "engine": "npreserving", "config": {"preserve_n": 1},
        "deployable": deployable, "health": {}, "max_instances": 10, "pulse_ms": 1000,
        "run": null, "sensors": [], "dry_run": false,
    })
}

#[test]
fn every_number_is_range_checked_at_every_entry() {
    let epu = Epu::new();
    let (_d, addr) = epu.listening_daemon("127.0.0.1:0");
    let err = epu
        .add_domain("d")
        .options(&["--grace", "1e300"])
        .command(&["/bin/true"])
        .fails();
    assert!(
        err.contains("grace_seconds") && err.contains("3600"),
        "{err}"
    );
    let err = epu
        .add_domain("d")
        .options(&["--grace", "inf"])
        .command(&["/bin/true"])
        .fails();
    assert!(err.contains("not a finite number"), "{err}");
    let cases = [
        (json!({"pulse_ms": 0}), "pulse_ms"),
        (json!({"max_instances": 0}), "max_instances"),
        (
            json!({"health": {"missing_timeout": 1e300}}),
            "health.missing_timeout",
        ),
        (
            json!({"deployable": {"command": ["/bin/true"], "grace_seconds": 1e300}}),
            "grace_seconds",
        ),
        (
            json!({"deployable": {"command": ["/bin/true"], "env": {"A=B": "1"}}}),
            "env",
        ),
        (
            json!({"deployable": {"command": ["/bin/true"], "env": {"A\u{0}": "1"}}}),
            "env",
        ),
        (
            json!({"deployable": {"command": ["/no/such/program"]}}),
            "does not exist",
        ),
        (
            json!({"deployable": {"command": ["/tmp"]}}),
            "not an executable",
        ),
        (
            json!({"deployable": {"command": ["/bin/true"], "cwd": "/no/such/dir"}}),
            "cwd",
        ),
        (json!({"surprise": 1}), "unknown field"),
        (
            json!({"deployable": {"command": ["/bin/true"], "surprise": 1}}),
            "unknown field",
        ),
        (json!({"limits": {"timeout_ms": 0}}), "limits.timeout_ms"),
        (
            json!({"budget": {"min_healthy_percent": 101}}),
            "budget.min_healthy_percent",
        ),
        (
            json!({"budget": {"window_seconds": 0}}),
            "budget.window_seconds",
        ),
        (json!({"budget": {"max_destroy": 1}}), "unknown field"),
    ];
    let token = admin_token(&epu);
    for (change, want) in cases {
        let mut spec = process_spec("d", json!({"command": ["/bin/true"]}));
        for (k, v) in change.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let (code, body) = request(
            &addr,
            "POST",
            "/v1/domains",
            Some(&token),
            &spec.to_string(),
        );
        assert_eq!(code, 400, "{change}: {body}");
        assert!(body.contains(want), "{change}: {body}");
    }
    assert!(epu.status()["domains"].as_array().unwrap().is_empty());
    // A plan says where: the key and its line, for a range and for inf alike.
    let dir = epu.dir.path().join("plan");
    std::fs::create_dir_all(&dir).unwrap();
    for (value, want) in [("1e300", "grace_seconds"), ("inf", "inf and nan")] {
        let text = format!(
            "name = \"p\"\n[[domain]]\nname = \"d\"\nengine = \"npreserving\"\n\
             [domain.process]\ncommand = [\"/bin/true\"]\ngrace_seconds = {value}\n"
        );
        std::fs::write(dir.join("plan.toml"), text).unwrap();
        let err = epu.fails(&["boot", "--validate", dir.to_str().unwrap()]);
        assert!(err.contains(want) && err.contains("line 7"), "{err}");
    }
}

#[test]
fn a_bad_stored_value_holds_its_domain_and_the_rest_starts() {
    let epu = Epu::new();
    let d = epu.daemon();
    epu.add_sleepers("good", 1);
    epu.add_sleepers("bad", 2);
    wait_started(&epu, "good", 1);
    let bad = wait_started(&epu, "bad", 2);
    d.kill9();
    let db = rusqlite::Connection::open(epu.state_dir().join("epu.db")).unwrap();
    db.execute(
        "UPDATE domains SET deployable = json_set(deployable, '$.grace_seconds', 1e300) \
         WHERE name = 'bad'",
        [],
    )
    .unwrap();
    drop(db);
    let _d = epu.daemon();
    let status = epu.status();
    let held = &status["held"][0];
    assert_eq!(held["name"], "bad", "{status}");
    assert!(
        held["error"].as_str().unwrap().contains("grace_seconds"),
        "{held}"
    );
    assert_eq!(held["instances"], 2);
    wait_started(&epu, "good", 1);
    // Held means left alone: its workers run on, and nothing replaces them.
    std::thread::sleep(Duration::from_secs(1));
    assert!(bad.iter().all(|i| is_alive(i.pid.unwrap())));
    assert!(!epu.ok(&["status"]).is_empty());
    assert_eq!(events_of(&epu, "domain-held").len(), 1);
    epu.ok(&["domain", "remove", "bad"]);
    let pids: Vec<i32> = bad.iter().map(|i| i.pid.unwrap()).collect();
    assert!(
        all_dead(&pids),
        "the held domain's workers outlived its removal"
    );
    assert!(epu.status()["held"].as_array().unwrap().is_empty());
}

#[test]
fn a_config_whose_decision_would_be_refused_is_refused_at_add_and_reconfigure() {
    let epu = Epu::new();
    let _d = epu.daemon();
    let err = epu
        .add_domain("d")
        .options(&[
            "-c",
            "preserve_n=51",
            "--max-instances",
            "50",
            "--pulse-ms",
            "100",
        ])
        .command(&["/bin/sleep", "1000"])
        .fails();
    assert!(err.contains("max_instances"), "{err}");
    assert!(epu.status()["domains"].as_array().unwrap().is_empty());
    epu.add_domain("d")
        .options(&[
            "-c",
            "preserve_n=2",
            "--max-instances",
            "50",
            "--pulse-ms",
            "100",
        ])
        .command(&["/bin/sleep", "1000"])
        .ok();
    wait_started(&epu, "d", 2);
    let err = epu.fails(&["reconfigure", "d", "preserve_n=51"]);
    assert!(err.contains("max_instances"), "{err}");
    let d = epu.domain("d");
    assert_eq!(d["config"]["preserve_n"], 2);
    assert_eq!(d["config_version"], 1);
    assert_eq!(d["controller"]["quarantined"], false);
}

#[test]
fn idle_and_slow_connections_neither_pile_up_nor_blind_the_daemon() {
    let epu = Epu::new();
    // A low fd limit, as the audit had: the daemon must keep fds for itself.
    let script = format!(
        "ulimit -n 400 && exec {} daemon --listen 127.0.0.1:0",
        kit::EPU
    );
    let mut child = epu.spawn_daemon(
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .env("EPU_STATE_DIR", epu.state_dir())
            .env_remove("EPU_NODE_ID"),
    );
    let addr = std::fs::read_to_string(epu.state_dir().join("listen.addr")).unwrap();
    let addr = addr.trim().to_string();
    epu.add_sleepers("w", 6);
    let before = wait_started(&epu, "w", 6);
    // A slowloris client: a byte of headers every half second.
    let mut slow = TcpStream::connect(&addr).unwrap();
    let start = std::time::Instant::now();
    let mut idle = Vec::new();
    for _ in 0..600 {
        if let Ok(s) = TcpStream::connect(&addr) {
            idle.push(s);
        }
    }
    // The unix socket answers, and no worker is taken for gone.
    for _ in 0..5 {
        assert!(epu.run(&["status"]).status.success());
        std::thread::sleep(Duration::from_millis(500));
        let _ = slow.write_all(b"G");
    }
    let now = epu.instances("w");
    assert_eq!(now, before, "workers changed while connections were held");
    // The daemon closes what is idle or slow.
    let mut buf = [0u8; 64];
    slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let closed = wait_for(Duration::from_secs(30), || {
        let _ = slow.write_all(b"E");
        matches!(slow.read(&mut buf), Ok(0) | Err(_)) && start.elapsed() > Duration::from_secs(5)
    });
    assert!(closed, "a slowloris connection was kept");
    assert!(start.elapsed() < Duration::from_secs(30));
    // By then every idle connection has been refused or has timed out.
    std::thread::sleep(
        (start + Duration::from_secs(13)).saturating_duration_since(std::time::Instant::now()),
    );
    let mut open_after = 0;
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        if !matches!(s.read(&mut buf), Ok(0)) {
            open_after += 1;
        }
    }
    eprintln!(
        "{} idle connections opened; {open_after} still open after {:.1} s; the slowloris \
         one closed; the unix socket answered throughout",
        idle.len(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(open_after, 0, "idle connections were kept");
    drop(idle);
    epu.ok(&["terminate"]);
    let _ = child.wait();
}

#[test]
fn children_of_a_worker_that_died_while_the_daemon_was_down_are_killed() {
    let epu = Epu::new();
    let d = epu.daemon();
    add_script(&epu, "d", 1, LEAVES_A_CHILD);
    let inst = wait_started(&epu, "d", 1);
    let pids = processes_of(&epu, &inst[0].id, 2);
    d.kill9();
    kill9(inst[0].pid.unwrap());
    let _d = epu.daemon();
    assert!(
        all_dead(&pids),
        "the child of a worker that died outlived recovery: {pids:?}"
    );
    // And the worker is replaced.
    wait_started(&epu, "d", 1);
}

#[test]
fn children_of_an_adopted_worker_are_killed_when_it_dies_or_is_destroyed() {
    let epu = Epu::new();
    let d = epu.daemon();
    add_script(&epu, "d", 2, LEAVES_A_CHILD);
    let inst = wait_started(&epu, "d", 2);
    let first = processes_of(&epu, &inst[0].id, 2);
    let second = processes_of(&epu, &inst[1].id, 2);
    d.kill9();
    let _d = epu.daemon();
    // Adopted, then killed: what it left goes with it.
    kill9(inst[0].pid.unwrap());
    assert!(
        all_dead(&first),
        "an adopted worker's child outlived it: {first:?}"
    );
    // Adopted, then destroyed: SIGTERM ends the leader, the child ignores it.
    epu.ok(&["domain", "remove", "d"]);
    assert!(
        all_dead(&second),
        "a destroyed worker's child outlived it: {second:?}"
    );
    assert!(epu.worker_processes().is_empty());
}

#[test]
fn terminate_succeeds_only_once_no_process_of_the_state_dir_is_left() {
    let epu = Epu::new();
    let d = epu.daemon();
    // One child stays in the group and ignores SIGTERM; another leaves the group.
    let script =
        "setsid sh -c \"trap '' TERM; exec sleep 1000\" & (trap '' TERM; exec sleep 1000) & wait";
    add_script(&epu, "d", 2, script);
    let inst = wait_started(&epu, "d", 2);
    let mut pids = processes_of(&epu, &inst[0].id, 3);
    pids.extend(processes_of(&epu, &inst[1].id, 3));
    d.kill9();
    let guard = epu.daemon();
    epu.ok(&["terminate"]);
    let left = epu.worker_processes();
    assert!(
        left.is_empty(),
        "terminate succeeded with processes left: {left:?}"
    );
    assert!(pids.iter().all(|&p| !is_alive(p)));
    drop(guard);
}

#[test]
fn refused_requests_are_counted_not_stored() {
    let epu = Epu::new();
    let (_d, addr) = epu.listening_daemon("127.0.0.1:0");
    let db = epu.state_dir().join("epu.db");
    let size = |p: &std::path::Path| {
        let wal = p.with_extension("db-wal");
        std::fs::metadata(p).map_or(0, |m| m.len()) + std::fs::metadata(wal).map_or(0, |m| m.len())
    };
    let before = size(&db);
    let long = format!("/v1/{}", "x".repeat(8000));
    for _ in 0..200 {
        let (code, _) = request(&addr, "GET", &long, None, "");
        assert_eq!(code, 401);
    }
    // A head past its cap is refused before anything else.
    let huge = format!("/v1/{}", "x".repeat(60_000));
    let (code, _) = request(&addr, "GET", &huge, None, "");
    assert!(code == 431 || code == 0, "{code}");
    assert!(events_of(&epu, "api-refused").is_empty());
    let grown = size(&db).saturating_sub(before);
    eprintln!("200 refused requests with 8 kB paths grew the store by {grown} bytes");
    assert!(grown < 256 << 10, "the store grew by {grown} bytes");
    let token = admin_token(&epu);
    let (_, metrics) = request(&addr, "GET", "/metrics", Some(&token), "");
    let refused: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("epu_api_refused_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(refused >= 200.0, "{refused}");
}

#[test]
fn a_terminate_cut_short_by_a_crash_is_finished_without_launching() {
    let epu = Epu::new();
    let d = epu.daemon();
    // Workers that ignore SIGTERM: the terminate waits out their grace.
    let keep = "preserve_n=3";
    epu.add_domain("d")
        .options(&["-c", keep, "--pulse-ms", "100", "--grace", "3"])
        .command(&["/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"])
        .ok();
    let inst = wait_started(&epu, "d", 3);
    let mut cli = epu.command().arg("terminate").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    d.kill9();
    let _ = cli.kill();
    let _ = cli.wait();
    let launches_before = launch_decisions(&epu);
    assert!(launches_before > 0);
    // The restart finishes the terminate and stops by itself.
    let mut child = epu
        .command()
        .arg("daemon")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stopped = wait_for(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(stopped, "the restarted daemon did not finish the terminate");
    let pids: Vec<i32> = inst.iter().map(|i| i.pid.unwrap()).collect();
    assert!(pids.iter().all(|&p| !is_alive(p)));
    assert!(epu.worker_processes().is_empty());
    assert_eq!(
        launch_decisions(&epu),
        launches_before,
        "the restart launched"
    );
}

#[test]
fn a_run_terminate_cut_short_by_a_crash_is_finished_without_launching() {
    let epu = Epu::new();
    let dir = epu.dir.path().join("plan");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("plan.toml"),
        "name = \"slow\"\n[[domain]]\nname = \"d\"\nengine = \"npreserving\"\n\
         pulse_ms = 100\n[domain.config]\npreserve_n = 3\n[domain.process]\n\
         command = [\"/bin/sh\", \"-c\", \"trap '' TERM; while :; do sleep 0.1; done\"]\n\
         grace_seconds = 3\n",
    )
    .unwrap();
    let d = epu.daemon();
    epu.ok(&["boot", dir.to_str().unwrap()]);
    let inst = wait_started(&epu, "d", 3);
    let mut cli = epu.command().args(["terminate", "slow"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    d.kill9();
    let _ = cli.kill();
    let _ = cli.wait();
    let launches_before = launch_decisions(&epu);
    assert!(launches_before > 0);
    let _d = epu.daemon();
    let finished = wait_for(Duration::from_secs(30), || {
        epu.ok(&["list", "--json"]).contains("\"terminated\"")
    });
    assert!(finished, "{}", epu.ok(&["list", "--json"]));
    let pids: Vec<i32> = inst.iter().map(|i| i.pid.unwrap()).collect();
    assert!(pids.iter().all(|&p| !is_alive(p)));
    assert!(epu.worker_processes().is_empty());
    assert_eq!(
        launch_decisions(&epu),
        launches_before,
        "the restart launched"
    );
}

/// Decisions that launched something, read from the store itself (for a daemon that is not
/// running).
fn launch_decisions(epu: &Epu) -> usize {
    let db = rusqlite::Connection::open(epu.state_dir().join("epu.db")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM events WHERE kind = 'decision' AND detail LIKE '%\"launch\":[\"%'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as usize
}

#[test]
fn a_state_dir_open_to_others_or_with_planted_symlinks_is_refused() {
    let epu = Epu::new();
    let state = epu.state_dir();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = epu.command().arg("daemon").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("chmod 700"), "{err}");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let target = epu.dir.path().join("victim");
    std::fs::write(&target, "precious").unwrap();
    for planted in ["api-token", "daemon.lock"] {
        let link = state.join(planted);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let out = epu.command().arg("daemon").output().unwrap();
        assert!(!out.status.success(), "{planted}: the daemon started");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        std::fs::remove_file(&link).unwrap();
    }
    std::fs::write(state.join("api-token"), "short\n").unwrap();
    let out = epu
        .command()
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("at least 32"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("api-token")).unwrap(),
        "short\n"
    );
    std::fs::remove_file(state.join("api-token")).unwrap();
    let _d = epu.daemon();
    epu.add_sleepers("w", 1);
    wait_started(&epu, "w", 1);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("logs")), 0o700);
    for f in ["epu.db", "api-token", "api-secret", "daemon.lock"] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    for log in std::fs::read_dir(state.join("logs")).unwrap().flatten() {
        assert_eq!(mode(&log.path()), 0o600, "{}", log.path().display());
    }
}

#[test]
fn workers_get_a_clean_environment() {
    let epu = Epu::new();
    let child = epu.spawn_daemon(
        epu.command()
            .arg("daemon")
            .env("EPU_API_TOKEN", "a-secret-admin-token-of-the-daemon")
            .env("AWS_SECRET_ACCESS_KEY", "daemon-credentials")
            .env("SOMETHING_ELSE", "x"),
    );
    let _guard = kit::DaemonGuard {
        child,
        state_dir: epu.state_dir(),
    };
    let out = epu.dir.path().join("env.txt");
    let script = format!("env > {}; exec sleep 1000", out.display());
    epu.add_domain("d")
        .options(&["-c", "preserve_n=1", "--env", "MINE=yes"])
        .command(&["/bin/sh", "-c", &script])
        .ok();
    assert!(wait_for(Duration::from_secs(10), || out.exists()
        && std::fs::read_to_string(&out)
            .unwrap()
            .contains("EPU_NODE_ID")));
    let env = std::fs::read_to_string(&out).unwrap();
    for leaked in ["EPU_API_TOKEN", "AWS_SECRET_ACCESS_KEY", "SOMETHING_ELSE"] {
        assert!(!env.contains(leaked), "{leaked} reached the worker:\n{env}");
    }
    for kept in ["PATH=", "MINE=yes", "EPU_DOMAIN=d", "EPU_API_SOCKET="] {
        assert!(env.contains(kept), "{kept} missing:\n{env}");
    }
}

#[test]
fn a_zombie_is_killed_by_the_daemon() {
    let epu = Epu::new();
    let _d = epu.daemon();
    // The worker leaves behind a process in a session of its own that keeps heartbeating
    // as the worker, then exits.
    let beat =
        "while :; do \"$EPU_BIN\" heartbeat \"$EPU_NODE_ID\" >/dev/null 2>&1; sleep 0.2; done";
    let script = format!("setsid sh -c '{beat}' & sleep 1; exit 0");
    epu.add_domain("z")
        .options(&[
            "-c",
            "preserve_n=1",
            "--pulse-ms",
            "100",
            "--zombie-timeout",
            "0.2",
        ])
        .command(&["/bin/sh", "-c", &script])
        .ok();
    let inst = wait_started(&epu, "z", 1);
    let id = inst[0].id.clone();
    let mut escaped = Vec::new();
    assert!(wait_for(Duration::from_secs(10), || {
        escaped = processes(&epu).remove(&id).unwrap_or_default();
        escaped.iter().any(|&p| Some(p) != inst[0].pid)
    }));
    assert!(all_dead(&escaped), "the zombie lives on: {escaped:?}");
    let ended: Vec<Value> = events_of(&epu, "zombie-killed")
        .into_iter()
        .chain(events_of(&epu, "stray-killed"))
        .filter(|e| e["instance"] == id.as_str())
        .collect();
    assert!(!ended.is_empty(), "no event records the zombie's end");
}

#[test]
fn the_dashboard_sends_guard_headers_and_bearer_is_case_insensitive() {
    let epu = Epu::new();
    let (_d, addr) = epu.listening_daemon("127.0.0.1:0");
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let head = text.split("\r\n\r\n").next().unwrap().to_lowercase();
    assert!(head.contains("content-security-policy:"), "{head}");
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(head.contains("x-frame-options: deny"), "{head}");
    let token = admin_token(&epu);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let mut s = TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: {scheme} {token}\r\n\
             Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{scheme}: {text}");
    }
    let _ = Signal::SIGTERM;
}
