//! The CLI's conventions: `--json` on every command that reports, exit codes, "did you
//! mean", completions and the man page.

use crate::kit::Epu;
use serde_json::Value;

/// Runs `epu ARGS --json` and parses its output.
fn json(epu: &Epu, args: &[&str]) -> Value {
    let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let out = epu.ok(&args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[test]
fn every_command_that_reports_answers_in_json() {
    let epu = Epu::new();
    let _d = epu.daemon();
    let add = [
        "domain",
        "add",
        "d",
        "--engine",
        "npreserving",
        "-c",
        "preserve_n=0",
        "--sensor",
        "kind=pushed,name=load",
        "--json",
        "--",
        "/bin/sleep",
        "100",
    ];
    let v: Value = serde_json::from_str(&epu.ok(&add)).unwrap();
    assert_eq!(v["domain"], "d", "{v}");
    let v = json(&epu, &["reconfigure", "d", "preserve_n=1"]);
    assert_eq!(v["config_version"], 2, "{v}");
    let v = json(&epu, &["sensor", "push", "d", "load", "3"]);
    assert_eq!(
        (v["sensor"].as_str(), v["value"].as_f64()),
        (Some("load"), Some(3.0))
    );
    let mut live = Vec::new();
    let up = crate::kit::wait_for(std::time::Duration::from_secs(20), || {
        live = epu.instances("d");
        live.len() == 1 && live[0].pid.is_some()
    });
    assert!(up, "{live:?}");
    let id = live[0].id.as_str();
    let v = json(&epu, &["instance", "destroy", "d", id]);
    assert_eq!(v["destroyed"], true, "{v}");
    assert_eq!(v["instance"]["id"], id, "{v}");
    let v = json(&epu, &["engine", "swap", "d", "npreserving"]);
    assert_eq!(v["engine_version"], 2, "{v}");
    let v = json(&epu, &["engine", "rollback", "d"]);
    assert_eq!(v["engine_version"], 3, "{v}");
    // (`engine resume --json` answers `{"domain", "resumed"}`; it needs a quarantine.)
    let v = json(&epu, &["domain", "remove", "d"]);
    assert_eq!(v["removed"], "d", "{v}");
    let v = json(&epu, &["terminate"]);
    assert_eq!(v["terminated"], true, "{v}");
}

#[test]
fn unknown_names_exit_non_zero_and_suggest_the_closest() {
    let epu = Epu::new();
    let _d = epu.daemon();
    epu.add_sleepers("workers", 0);
    for args in [
        &["status", "worker"][..],
        &["events", "worker"],
        &["events", "worker", "--summary"],
    ] {
        let err = epu.fails(args);
        assert!(
            err.contains("unknown domain or run 'worker': did you mean 'workers'?"),
            "{args:?}: {err}"
        );
    }
    let err = epu.fails(&["events", "nothing-like-it"]);
    assert!(
        err.contains("unknown domain or run 'nothing-like-it'"),
        "{err}"
    );
    // An engine's unknown key gets its closest known key.
    let err = epu.fails(&["reconfigure", "workers", "preserv_n=2"]);
    assert!(err.contains("did you mean 'preserve_n'"), "{err}");
    // A domain that is gone keeps its history.
    epu.ok(&["domain", "remove", "workers"]);
    assert!(epu.ok(&["events", "workers"]).contains("domain-removed"));
}

#[test]
fn a_summary_without_a_target_covers_every_domain() {
    let epu = Epu::new();
    let _d = epu.daemon();
    epu.add_sleepers("a", 1);
    epu.add_sleepers("b", 1);
    let v = json(&epu, &["events", "--summary"]);
    let names: Vec<&str> = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["domain"].as_str())
        .collect();
    assert_eq!(names, ["a", "b"], "{v}");
}

#[test]
fn completions_and_the_man_page_are_generated() {
    let epu = Epu::new();
    let bash = epu.ok(&["completions", "bash"]);
    assert!(
        bash.contains("complete") && bash.contains("reconfigure"),
        "{bash}"
    );
    for shell in ["zsh", "fish"] {
        let script = epu.ok(&["completions", shell]);
        assert!(script.contains("heartbeat"), "{shell}: {script}");
    }
    assert!(!epu.run(&["completions", "tcsh"]).status.success());
    let man = epu.ok(&["man"]);
    assert!(
        man.contains(".TH epu") && man.contains("reconfigure"),
        "{man}"
    );
}

#[test]
fn a_swap_to_another_kind_of_engine_says_to_give_its_config() {
    let epu = Epu::new();
    let _d = epu.daemon();
    epu.add_sleepers("d", 0);
    let err = epu.fails(&["engine", "swap", "d", "queuelen"]);
    assert!(
        err.contains("needs its own") && err.contains("engine swap d queuelen -c"),
        "{err}"
    );
}

#[test]
fn the_status_shows_runs_with_their_domains() {
    let epu = Epu::new();
    epu.boot_quickstart();
    let v = json(&epu, &["status"]);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{v}");
    assert_eq!(runs[0]["domains"][0], "workers", "{v}");
    assert!(epu
        .ok(&["status"])
        .contains(&format!("run {}", runs[0]["name"].as_str().unwrap())));
    epu.ok(&["terminate"]);
}

#[test]
fn terminate_everything_asks_first_on_a_terminal() {
    use std::io::Write;
    let epu = Epu::new();
    let _d = epu.daemon();
    epu.add_sleepers("d", 1);
    // `script` gives the command a terminal; "n" declines.
    let command = format!(
        "{} --state-dir {} terminate",
        crate::kit::EPU,
        epu.state_dir().display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[y/N]") && text.contains("not terminated"),
        "{text}"
    );
    assert!(
        epu.run(&["status"]).status.success(),
        "the daemon must still run"
    );
    assert_eq!(epu.instances("d").len(), 1);
}

#[test]
fn daemon_stop_keeps_the_workers_for_the_next_start() {
    let epu = Epu::new();
    let mut daemon = epu.daemon();
    epu.add_sleepers("d", 2);
    let pids = {
        let mut pids = Vec::new();
        assert!(crate::kit::wait_for(
            std::time::Duration::from_secs(20),
            || {
                pids = epu.domain_pids("d");
                pids.len() == 2
            }
        ));
        pids
    };
    let v = json(&epu, &["daemon", "stop"]);
    assert_eq!(v["stopped"], true, "{v}");
    assert!(daemon.child.wait().unwrap().success());
    assert!(!epu.run(&["status"]).status.success(), "no daemon answers");
    assert!(pids.iter().all(|p| crate::kit::is_alive(*p as i32)));
    let _d = epu.daemon();
    assert_eq!(epu.domain_pids("d"), pids, "the same workers, adopted");
}

#[test]
fn the_status_of_a_crash_looping_domain_says_why_its_workers_fail() {
    let epu = Epu::new();
    let _d = epu.daemon();
    epu.add_domain("d")
        .config("preserve_n=2")
        .flag("--pulse-ms", "100")
        .command(&["sh", "-c", "echo starting; exit 3"])
        .ok();
    let mut shown = String::new();
    let said = crate::kit::wait_for(std::time::Duration::from_secs(20), || {
        shown = epu.ok(&["status", "d"]);
        shown.contains("CRASH LOOP") && shown.contains("last failure")
    });
    assert!(said, "{shown}");
    assert!(shown.contains("exit status: 3"), "{shown}");
    let c = &epu.domain("d")["controller"];
    assert!(
        c["last_failure"]
            .as_str()
            .unwrap()
            .contains("exit status: 3"),
        "{c}"
    );
}

#[test]
fn list_prints_each_number_under_its_header() {
    let epu = Epu::new();
    epu.boot_quickstart();
    let out = epu.ok(&["list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let (header, row) = (lines[0], lines[1]);
    // Numbers are aligned right: each ends where its header ends.
    for (name, want) in [("SERVICES", "0"), ("DOMAINS", "1"), ("WORKERS", "3")] {
        let end = header.find(name).unwrap() + name.len();
        assert_eq!(&row[end - 1..end], want, "{name}:\n{out}");
        assert_eq!(
            row.as_bytes().get(end).copied().unwrap_or(b' '),
            b' ',
            "{out}"
        );
    }
    epu.ok(&["terminate"]);
}
