//! `epu logs` and the retention of the workers' log files: real workers writing to their
//! files, a daemon that sweeps them, and the CLI reading them.

use crate::kit;

use kit::{wait_for, DaemonGuard, Epu};
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

/// The ids of a domain's instances that have a log file, and the total of their sizes.
fn log_files(epu: &Epu, domain: &str) -> (Vec<String>, u64) {
    let ids = epu.instances_ever(domain);
    let mut found = Vec::new();
    let mut bytes = 0;
    for e in std::fs::read_dir(epu.state_dir().join("logs"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let id = name.trim_end_matches(".1").trim_end_matches(".log");
        if ids.contains(id) {
            bytes += e.metadata().unwrap().len();
            if name.ends_with(".log") {
                found.push(id.to_string());
            }
        }
    }
    (found, bytes)
}

#[test]
fn logs_show_each_workers_lines_and_follow_one_worker_to_its_end() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let talk = "i=0; while :; do i=$((i+1)); echo \"line $i of $EPU_NODE_ID\"; sleep 0.1; done";
    epu.add_domain("talk")
        .config("preserve_n=2")
        .command(&["/bin/sh", "-c", talk])
        .ok();
    let mut out = String::new();
    let both = wait_for(Duration::from_secs(30), || {
        out = epu.ok(&["logs", "talk"]);
        let ids: std::collections::BTreeSet<&str> =
            out.lines().filter_map(|l| l.split(" | ").next()).collect();
        ids.len() == 2 && out.lines().count() >= 10
    });
    assert!(both, "{out}");
    // Each line carries its worker's id, and is that worker's own.
    for line in out.lines() {
        let (id, text) = line.split_once(" | ").unwrap();
        assert!(text.ends_with(&format!(" of {id}")), "{line}");
    }

    let id = out.lines().next().unwrap().split(" | ").next().unwrap();
    let tail = epu.ok(&["logs", id, "--tail", "1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(
        tail.starts_with("line ") && tail.trim_end().ends_with(id),
        "{tail}"
    );
    let err = epu.fails(&["logs", "tallk"]);
    assert!(
        err.contains("unknown domain or instance 'tallk': did you mean 'talk'?"),
        "{err}"
    );

    // --follow goes on with new lines, and ends when the worker does.
    let mut follow = epu
        .command()
        .args(["logs", id, "--follow", "--tail", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let pid = epu
        .instances("talk")
        .into_iter()
        .find(|i| i.id == id)
        .and_then(|i| i.pid)
        .unwrap();
    kit::signal(-pid, kit::Signal::SIGKILL);
    let ended = wait_for(Duration::from_secs(20), || {
        matches!(follow.try_wait(), Ok(Some(_)))
    });
    if !ended {
        let _ = follow.kill();
    }
    assert!(ended, "epu logs --follow did not end with its worker");
    assert!(follow.wait().unwrap().success());
    let mut followed = String::new();
    follow
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut followed)
        .unwrap();
    let numbers: Vec<u64> = followed
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(numbers.len() >= 5, "{followed}");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "a line was lost or doubled: {followed}"
    );
}

#[test]
fn a_crash_loop_keeps_only_the_newest_logs_and_a_chatty_worker_is_rotated() {
    let epu = Epu::new();
    let child = epu.spawn_with(&["daemon", "--keep-worker-logs", "2", "--worker-log-mib", "1"]);
    let _daemon = DaemonGuard {
        child,
        state_dir: epu.state_dir(),
    };
    epu.add_domain("crash")
        .config("preserve_n=1")
        .flag("--pulse-ms", "300")
        .command(&["/bin/sh", "-c", "echo \"starting $EPU_NODE_ID\"; exit 1"])
        .ok();
    // About 300 KB a second, one numbered chunk a line.
    let chatty = "i=0; while :; do i=$((i+1)); head -c 100000 /dev/zero | tr '\\0' x; \
                  echo \" chunk $i\"; sleep 0.3; done";
    epu.add_domain("chatty")
        .config("preserve_n=1")
        .command(&["/bin/sh", "-c", chatty])
        .ok();

    let looped = wait_for(Duration::from_secs(120), || {
        epu.instances_ever("crash").len() >= 8
    });
    assert!(looped, "the crash loop did not go round 8 times");
    // A sweep (every 10 s) leaves the 2 newest ended workers' logs, and the live one's.
    let mut files = Vec::new();
    let kept = wait_for(Duration::from_secs(30), || {
        files = log_files(&epu, "crash").0;
        files.len() <= 3
    });
    assert!(
        kept,
        "still {} logs of the crash loop: {files:?}",
        files.len()
    );
    let shown = epu.ok(&["logs", "crash"]);
    assert!(
        shown.lines().count() <= 3 && shown.contains("starting i-"),
        "{shown}"
    );

    // The chatty worker's log is rotated at 1 MiB: its end is kept, the file starts over.
    let id = epu.instances("chatty")[0].id.clone();
    let rotated = epu.state_dir().join(format!("logs/{id}.log.1"));
    assert!(
        wait_for(Duration::from_secs(60), || rotated.exists()),
        "no rotation"
    );
    assert_eq!(std::fs::metadata(&rotated).unwrap().len(), 1 << 20);
    let shown = epu.ok(&["logs", &id]);
    let chunks: Vec<u64> = shown
        .lines()
        .filter_map(|l| l.rsplit(" chunk ").next()?.parse().ok())
        .collect();
    assert!(chunks.len() >= 5, "{} bytes shown", shown.len());
    // What is shown is in order: the rotated part first, then the file.
    assert!(chunks.windows(2).all(|w| w[1] > w[0]), "{chunks:?}");
    let (_, bytes) = log_files(&epu, "chatty");
    assert!(
        bytes < 3 << 20,
        "the chatty worker's logs take {bytes} bytes"
    );
}
