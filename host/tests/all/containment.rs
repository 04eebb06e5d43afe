//! No engine can stall, bloat or fool the daemon. Each test runs a hostile engine of one class
//! beside healthy domains (one on every decide thread, so one shares the hostile engine's) and
//! checks the fault recorded, the daemon's RSS, the healthy domains' cadence, and that the
//! commands an operator needs answer within a few seconds.

use crate::kit;

use kit::{components, wait_for, Epu};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn faulty() -> PathBuf {
    PathBuf::from(env!("EPU_TEST_ENGINES_DIR")).join("faulty.wasm")
}

/// `epu domain add NAME --engine ENGINE -c … EXTRA… -- /bin/sleep 1000`, deciding every
/// 100 ms; returns the command's output.
fn add(
    epu: &Epu,
    name: &str,
    engine: &Path,
    config: &[&str],
    extra: &[&str],
) -> std::process::Output {
    let mut add = epu.add_domain(name).engine(engine);
    for c in config {
        add = add.config(c);
    }
    add.flag("--pulse-ms", "100").options(extra).run()
}

fn domain(epu: &Epu, name: &str) -> Value {
    epu.domain(name)
}

fn decides(epu: &Epu, name: &str) -> u64 {
    domain(epu, name)["controller"]["decides"]
        .as_u64()
        .unwrap_or(0)
}

/// The daemon's resident memory, in MiB, from /proc.
fn rss_mib(epu: &Epu) -> f64 {
    let pid = epu.daemon_pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// Healthy domains, one per decide thread, each a `faulty` engine in `ok` mode that asks to
/// decide every 200 ms.
struct Healthy {
    names: Vec<String>,
    start: Vec<u64>,
    since: Instant,
    /// The daemon's RSS once they run, in MiB.
    rss: f64,
}

impl Healthy {
    fn add(epu: &Epu) -> Healthy {
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        let names: Vec<String> = (0..threads).map(|i| format!("healthy{i}")).collect();
        for n in &names {
            let out = add(epu, n, &faulty(), &[], &[]);
            assert!(out.status.success(), "{out:?}");
        }
        let start = names.iter().map(|n| decides(epu, n)).collect();
        Healthy {
            names,
            start,
            since: Instant::now(),
            rss: rss_mib(epu),
        }
    }

    /// Every healthy domain kept at least 60 % of its cadence of one decide per 200 ms.
    fn kept_cadence(&self, epu: &Epu) {
        let elapsed = self.since.elapsed().as_secs_f64();
        let expected = (elapsed / 0.2) as u64;
        for (n, start) in self.names.iter().zip(&self.start) {
            let made = decides(epu, n) - start;
            assert!(
                made * 10 >= expected * 6,
                "{n} made {made} decides in {elapsed:.1} s, expected about {expected}"
            );
        }
    }
}

/// Runs `epu ARGS` and insists that it answers (either way) within `secs`.
fn answers_within(epu: &Epu, secs: f64, args: &[&str]) -> std::process::Output {
    let t = Instant::now();
    let out = epu.run(args);
    let took = t.elapsed().as_secs_f64();
    assert!(took < secs, "epu {args:?} took {took:.1} s: {out:?}");
    out
}

/// The operator's commands answer while a hostile engine runs.
fn commands_answer(epu: &Epu, hostile: &str) {
    answers_within(epu, 3.0, &["status", "--json"]);
    answers_within(epu, 3.0, &["reconfigure", "healthy0", "n=0"]);
    answers_within(epu, 15.0, &["reconfigure", hostile, "n=0"]);
}

/// What every hostile engine must leave true, checked while it runs: its fault is recorded
/// with its kind, the healthy domains kept their cadence, the daemon's RSS grew by less than
/// `grow_mib`, and status, reconfigure and domain remove answer within a few seconds.
fn contained(epu: &Epu, healthy: &Healthy, hostile: &str, kind: &str, grow_mib: f64) {
    let d = domain(epu, hostile);
    assert_eq!(d["controller"]["last_fault_kind"], kind, "{d}");
    let recorded = faults_of(epu, hostile);
    assert!(
        recorded.iter().any(|f| f["detail"]["kind"] == kind),
        "no {kind} fault recorded for {hostile}"
    );
    healthy.kept_cadence(epu);
    let rss = rss_mib(epu);
    assert!(
        rss < healthy.rss + grow_mib,
        "{hostile}: RSS went from {:.0} to {rss:.0} MiB",
        healthy.rss
    );
    commands_answer(epu, hostile);
    let out = answers_within(epu, 10.0, &["domain", "remove", hostile]);
    assert!(out.status.success(), "{out:?}");
    eprintln!("{hostile}: {kind}, RSS {:.0} -> {rss:.0} MiB", healthy.rss);
}

/// `epu terminate` answers and succeeds while hostile engines run.
fn terminate_answers(epu: &Epu) {
    let out = answers_within(epu, 15.0, &["terminate"]);
    assert!(out.status.success(), "{out:?}");
}

/// The events of a domain as JSON lines.
fn events(epu: &Epu, name: &str) -> Vec<Value> {
    epu.events(name, None)
}

fn faults_of(epu: &Epu, name: &str) -> Vec<Value> {
    events(epu, name)
        .into_iter()
        .filter(|e| e["kind"] == "engine-fault")
        .collect()
}

fn quarantined_within(epu: &Epu, name: &str, secs: u64) -> f64 {
    let t = Instant::now();
    let q = wait_for(Duration::from_secs(secs), || {
        domain(epu, name)["controller"]["quarantined"] == true
    });
    assert!(q, "{name} was not quarantined: {}", domain(epu, name));
    t.elapsed().as_secs_f64()
}

#[test]
fn an_engine_that_sleeps_is_stopped_in_every_export_and_every_command_answers() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let healthy = Healthy::add(&epu);

    // In decide: each call traps at once, and three faults quarantine it.
    let out = add(&epu, "sleeper", &faulty(), &["mode=sleep"], &[]);
    assert!(out.status.success(), "{out:?}");
    let took = quarantined_within(&epu, "sleeper", 10);
    let d = domain(&epu, "sleeper");
    assert_eq!(d["controller"]["last_fault_kind"], "trap", "{d}");
    assert!(
        d["controller"]["last_fault"]
            .as_str()
            .unwrap()
            .contains("may not sleep"),
        "{d}"
    );
    eprintln!("a sleeping decide was quarantined in {took:.2} s");

    // In initialize: `domain add` is refused at once, naming the cause.
    let init_sleeper = epu
        .add_domain("init-sleeper")
        .engine(faulty())
        .config("mode=sleep")
        .config("sleep_in=initialize")
        .args();
    let init_sleeper: Vec<&str> = init_sleeper.iter().map(String::as_str).collect();
    let out = answers_within(&epu, 5.0, &init_sleeper);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not sleep"),
        "{out:?}"
    );

    // In reconfigure: refused at once; the old config stays.
    let out = add(&epu, "reconf", &faulty(), &[], &[]);
    assert!(out.status.success(), "{out:?}");
    let out = answers_within(
        &epu,
        5.0,
        &[
            "reconfigure",
            "reconf",
            "mode=sleep",
            "sleep_in=reconfigure",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(
        domain(&epu, "reconf")["config"].as_object().unwrap().len(),
        0
    );

    // In the canary of a swap: refused at once, and the old engine runs on.
    let out = answers_within(
        &epu,
        5.0,
        &[
            "engine",
            "swap",
            "reconf",
            faulty().to_str().unwrap(),
            "-c",
            "mode=sleep",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not sleep"),
        "{out:?}"
    );

    // In dying: the domain is removed all the same.
    let out = add(
        &epu,
        "dying",
        &faulty(),
        &["mode=sleep", "sleep_in=dying"],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let out = answers_within(&epu, 10.0, &["domain", "remove", "dying"]);
    assert!(out.status.success(), "{out:?}");

    contained(&epu, &healthy, "sleeper", "trap", 64.0);
    terminate_answers(&epu);
}

#[test]
fn a_sleeping_engine_after_a_restart_blocks_neither_remove_nor_terminate() {
    let epu = Epu::new();
    let daemon = epu.daemon();
    let out = add(
        &epu,
        "sleeper",
        &faulty(),
        &["mode=sleep"],
        &["--quarantine-after", "1000", "--fault-window", "1000"],
    );
    assert!(out.status.success(), "{out:?}");
    let out = add(&epu, "sleeper2", &faulty(), &["mode=sleep"], &[]);
    assert!(out.status.success(), "{out:?}");
    daemon.kill9();
    let mut daemon = epu.start_daemon();
    answers_within(&epu, 3.0, &["status"]);
    let out = answers_within(&epu, 10.0, &["domain", "remove", "sleeper"]);
    assert!(out.status.success(), "{out:?}");
    let out = answers_within(&epu, 15.0, &["terminate"]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(Duration::from_secs(10), || matches!(
        daemon.try_wait(),
        Ok(Some(_))
    )));
}

#[test]
fn a_busy_host_does_not_make_a_healthy_engine_time_out() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    // Four CPU hogs on a host of two cores or more: wall-clock time stretches, CPU time does not.
    let hogs: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap()
        })
        .collect();
    for i in 0..3 {
        let name = format!("tight{i}");
        let out = epu
            .add_domain(&name)
            .config("preserve_n=0")
            .flag("--timeout-ms", "10")
            .flag("--pulse-ms", "20")
            .run();
        assert!(out.status.success(), "{out:?}");
    }
    std::thread::sleep(Duration::from_secs(6));
    for mut h in hogs {
        let _ = h.kill();
        let _ = h.wait();
    }
    for i in 0..3 {
        let name = format!("tight{i}");
        let d = domain(&epu, &name);
        assert!(decides(&epu, &name) > 50, "{d}");
        assert_eq!(
            d["controller"]["faults"].as_object().map_or(0, |f| f.len()),
            0,
            "{d}"
        );
        assert_eq!(d["controller"]["quarantined"], false, "{d}");
    }
}

#[test]
fn memory_is_capped_over_all_memories_and_tables_together() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let healthy = Healthy::add(&epu);
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("memories", components::many_memories()),
        ("tables", components::many_tables()),
    ] {
        let path = components::write(dir.path(), name, &bytes);
        let out = add(&epu, name, &path, &[], &[]);
        assert!(!out.status.success(), "{name} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("memory cap"), "{name}: {err}");
        // `engine check` fails it at initialize, naming the limit.
        let out = epu.run(&["engine", "check", path.to_str().unwrap()]);
        assert!(!out.status.success());
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("initialize") && text.contains("memory cap"),
            "{text}"
        );
        // With a cap that holds them, they are accepted; their decides return errors. The
        // memories are reserved, never touched, and the tables are 480 MB that the cap allowed.
        let out = add(&epu, name, &path, &[], &["--memory-mib", "1024"]);
        assert!(out.status.success(), "{name}: {out:?}");
        quarantined_within(&epu, name, 10);
        contained(&epu, &healthy, name, "error", 600.0);
    }
    terminate_answers(&epu);
}

#[test]
fn what_an_engine_makes_the_daemon_keep_is_bounded() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let healthy = Healthy::add(&epu);
    // A 1 MB memo on every decide, at once: the recording stays within its 4 MiB.
    let out = add(&epu, "memo", &faulty(), &["mode=memo-bomb"], &[]);
    assert!(out.status.success(), "{out:?}");
    // 50,000 empty launches, and one launch of 100 with a 1 MB var: refused.
    for (name, mode) in [("empty", "mode=empty-launches"), ("vars", "mode=big-vars")] {
        let out = add(
            &epu,
            name,
            &faulty(),
            &[mode],
            &["--max-decision-bytes", "67108864"],
        );
        assert!(out.status.success(), "{out:?}");
        quarantined_within(&epu, name, 10);
        let d = domain(&epu, name);
        assert_eq!(
            d["controller"]["last_fault_kind"], "invalid-decision",
            "{d}"
        );
        assert!(d["instances"].as_array().unwrap().is_empty(), "{d}");
    }
    // A 2 MB error is cut to 1 KiB in the event and the status.
    let out = add(&epu, "error", &faulty(), &["mode=big-error"], &[]);
    assert!(out.status.success(), "{out:?}");
    quarantined_within(&epu, "error", 10);
    for f in faults_of(&epu, "error") {
        let text = f["detail"]["error"].as_str().unwrap();
        assert!(
            text.len() <= 1100,
            "a fault of {} bytes was stored",
            text.len()
        );
    }
    // An engine that faults on every decide, never quarantined (by its limits): the faults are
    // counted, but only a few are written per 10 s.
    let out = add(
        &epu,
        "noisy",
        &faulty(),
        &["mode=error"],
        &["--quarantine-after", "1000", "--fault-window", "1000"],
    );
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_secs(5));
    let d = domain(&epu, "noisy");
    let counted = d["controller"]["faults"]["error"].as_u64().unwrap();
    let written = faults_of(&epu, "noisy").len();
    assert!(counted >= 20, "{d}");
    assert!(
        written <= 11,
        "{written} fault events written for {counted} faults"
    );

    let memo = domain(&epu, "memo");
    assert!(decides(&epu, "memo") > 50, "{memo}");
    eprintln!("noisy: {counted} faults, {written} fault events written");
    let db = std::fs::metadata(epu.state_dir().join("epu.db"))
        .unwrap()
        .len();
    let wal = std::fs::metadata(epu.state_dir().join("epu.db-wal")).map_or(0, |m| m.len());
    assert!(db < 8 << 20, "epu.db is {db} bytes");
    eprintln!("epu.db {db} bytes, wal {wal} bytes");
    let exported = epu.dir.path().join("memo.toml");
    epu.ok(&[
        "events",
        "--domain",
        "memo",
        "--export-scenario",
        exported.to_str().unwrap(),
    ]);
    let size = std::fs::metadata(&exported).unwrap().len();
    assert!(size < 24 << 20, "the recording exported {size} bytes");
    for (name, kind) in [
        ("empty", "invalid-decision"),
        ("vars", "invalid-decision"),
        ("error", "error"),
        ("noisy", "error"),
    ] {
        contained(&epu, &healthy, name, kind, 100.0);
    }
    // The memo bomb never faults; it is held to the same bounds.
    commands_answer(&epu, "memo");
    let rss = rss_mib(&epu);
    assert!(
        rss < healthy.rss + 100.0,
        "RSS {:.0} -> {rss:.0}",
        healthy.rss
    );
    terminate_answers(&epu);
}

#[test]
fn faulting_on_every_other_call_or_after_each_fresh_start_is_quarantined() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let healthy = Healthy::add(&epu);
    for (mode, kind) in [("flaky", "error"), ("fresh-then-trap", "trap")] {
        let config = format!("mode={mode}");
        let out = add(&epu, mode, &faulty(), &[&config], &[]);
        assert!(out.status.success(), "{out:?}");
        let took = quarantined_within(&epu, mode, 10);
        let d = domain(&epu, mode);
        let total: u64 = d["controller"]["faults"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(total, 3, "quarantined at its third fault: {d}");
        eprintln!("{mode}: quarantined after {total} faults in {took:.2} s");
        contained(&epu, &healthy, mode, kind, 64.0);
    }
    terminate_answers(&epu);
}

#[test]
fn a_component_of_another_contract_version_is_refused_by_name() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let dir = tempfile::tempdir().unwrap();
    for version in ["0.2.0", "0.6.0"] {
        let bytes = components::engine_component(version, "");
        let path = components::write(dir.path(), &format!("v{version}"), &bytes);
        let out = add(&epu, "old", &path, &[], &[]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("epu:engine@{version}")), "{err}");
        assert!(err.contains("epu:engine@0.5.0"), "{err}");
        let out = epu.run(&["engine", "check", path.to_str().unwrap()]);
        assert!(!out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("load") && text.contains(&format!("@{version}")),
            "{text}"
        );
    }
    // The same component at this host's version loads (and then fails its decides).
    let path = components::write(
        dir.path(),
        "current",
        &components::engine_component(components::CURRENT, ""),
    );
    let out = epu.run(&["engine", "check", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("implements epu:engine@0.5.0"), "{text}");
}

#[test]
fn engines_of_the_previous_contracts_run_through_their_adapters() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let dir = tempfile::tempdir().unwrap();
    for version in ["0.3.0", "0.4.0"] {
        let name = format!("old{}", version.replace('.', ""));
        let path = components::write(dir.path(), &name, &components::idle_component(version));
        let out = epu.run(&["engine", "check", path.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("implements epu:engine@{version}")),
            "{text}"
        );
        assert!(text.contains("adapter"), "{text}");
        let out = add(&epu, &name, &path, &[], &[]);
        assert!(out.status.success(), "{out:?}");
        // Its decides are carried out: the status it returns (stable) shows, with no fault.
        let decided = wait_for(Duration::from_secs(20), || {
            let c = &domain(&epu, &name)["controller"];
            c["engine_status"] == "stable" && decides(&epu, &name) > 1
        });
        let d = domain(&epu, &name);
        assert!(decided, "{d}");
        assert_eq!(d["controller"]["quarantined"], false, "{d}");
    }
}

#[test]
fn big_components_are_capped_compiled_outside_the_lock_and_refused_bytes_leave_nothing() {
    let epu = Epu::new();
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = epu.spawn_with(&["daemon", "--max-engine-mib", "2"]);
    let engines = epu.state_dir().join("engines");
    let cache = epu.state_dir().join("cache");
    let files = |d: &Path| std::fs::read_dir(d).unwrap().count();

    // Over the cap: refused by size, before it is read whole.
    let big = components::write(dir.path(), "big", &vec![0u8; 3 << 20]);
    let out = add(&epu, "big", &big, &[], &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("over the cap"),
        "{out:?}"
    );
    // A special file is not read at all.
    let out = add(&epu, "zero", Path::new("/dev/zero"), &[], &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a regular file"),
        "{out:?}"
    );

    // A component that is slow to compile (many functions) keeps no lock: status answers
    // throughout.
    let funcs: String = (0..20_000)
        .map(|i| format!("(func (result i32) (i32.add (i32.const {i}) (i32.const 1)))"))
        .collect();
    let slow = components::write(
        dir.path(),
        "slow",
        &components::engine_component(components::CURRENT, &funcs),
    );
    let adder = epu
        .add_domain("slow")
        .engine(&slow)
        .command(&["/bin/sleep", "1"])
        .spawn();
    let mut slowest = 0.0f64;
    let t = Instant::now();
    let mut adder = adder;
    while adder.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(60) {
        let s = Instant::now();
        assert!(epu.run(&["status"]).status.success());
        slowest = slowest.max(s.elapsed().as_secs_f64());
    }
    adder.wait().unwrap();
    eprintln!(
        "adding took {:.1} s; the slowest status meanwhile {slowest:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert!(slowest < 1.0, "status took {slowest:.2} s during a compile");

    // Refused engines leave no file: a config the engine refuses, a version refused, a canary
    // that fails.
    epu.ok(&["domain", "remove", "slow"]);
    let (blobs, compiled) = (files(&engines), files(&cache));
    let out = add(&epu, "bad", &faulty(), &["mode=nonsense"], &[]);
    assert!(!out.status.success());
    let old = components::write(
        dir.path(),
        "old",
        &components::engine_component("0.2.0", ""),
    );
    assert!(!add(&epu, "old", &old, &[], &[]).status.success());
    epu.add_domain("d").command(&["/bin/sleep", "1"]).ok();
    let (blobs, compiled) = (blobs + 1, compiled + 2);
    let out = epu.run(&["engine", "swap", "d", old.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!((files(&engines), files(&cache)), (blobs, compiled));
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn engine_text_cannot_drive_the_terminal() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let healthy = Healthy::add(&epu);
    let out = add(&epu, "esc", &faulty(), &["mode=escape"], &[]);
    assert!(out.status.success(), "{out:?}");
    quarantined_within(&epu, "esc", 10);
    let text = epu.ok(&["events", "--domain", "esc"]);
    assert!(
        !text.contains('\u{1b}'),
        "an escape reached the terminal: {text:?}"
    );
    assert!(!text.contains('\r'), "{text:?}");
    assert!(text.contains("\\u{1b}[2J"), "{text}");
    // Every line is an event line: none was forged by a newline in the engine's text.
    for line in text.lines() {
        assert!(line.contains(" #"), "a forged line: {line:?}");
    }
    let status = epu.ok(&["status", "esc"]);
    assert!(!status.contains('\u{1b}'), "{status:?}");
    // JSON keeps the text as it was.
    let raw = epu.ok(&["events", "--json", "--domain", "esc"]);
    assert!(raw.contains("\\u001b[2J"), "{raw}");
    contained(&epu, &healthy, "esc", "error", 64.0);
    terminate_answers(&epu);
}

#[test]
fn random_draws_are_seeded_per_decide_and_replay_alike() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let out = add(&epu, "dice", &faulty(), &["mode=random"], &[]);
    assert!(out.status.success(), "{out:?}");
    // Each decide draws anew (the memo changes), so the recording has a step per decide.
    assert!(wait_for(Duration::from_secs(10), || decides(&epu, "dice") >= 10));
    let scenario = epu.dir.path().join("dice.toml");
    epu.ok(&[
        "events",
        "--domain",
        "dice",
        "--export-scenario",
        scenario.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&scenario).unwrap();
    let draws: std::collections::HashSet<&str> =
        text.lines().filter(|l| l.contains("drew=")).collect();
    assert!(draws.len() >= 5, "the draws repeat: {text}");
    assert!(text.contains("seed = "), "{text}");
    // A replay with the recorded seeds draws the same numbers: the memos match.
    let out = epu.run(&[
        "engine",
        "test",
        faulty().to_str().unwrap(),
        scenario.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    // Without the seeds, it does not.
    let unseeded: String = text
        .lines()
        .filter(|l| !l.starts_with("seed = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&scenario, unseeded).unwrap();
    let out = epu.run(&[
        "engine",
        "test",
        faulty().to_str().unwrap(),
        scenario.to_str().unwrap(),
    ]);
    assert!(
        !out.status.success(),
        "the draws did not depend on the seed"
    );
}
