//! Hot-swap latency, from `epu engine swap` on the command line to the new engine live
//! (validated, canary-decided, recorded), with the real daemon:
//! - cold: the component was never compiled in this state dir;
//! - warm (disk): compiled code is in the on-disk cache but not in memory (after a restart);
//! - warm (memory): the daemon has the component loaded already.
//!
//! `cargo bench -p epu --bench swap` prints p50 and max per case.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod support;

use support::{epu, EPU};
const ROUNDS: usize = 10;

fn fixture(name: &str) -> String {
    format!("{}/{name}.wasm", env!("EPU_TEST_ENGINES_DIR"))
}

/// Runs `epu ARGS` and returns how long it took.
fn timed(state: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    epu(state, args);
    t.elapsed()
}

fn start(state: &Path) -> Child {
    let child = Command::new(EPU)
        .env("EPU_STATE_DIR", state)
        .arg("daemon")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while Command::new(EPU)
        .env("EPU_STATE_DIR", state)
        .arg("status")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < end, "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn stop(mut daemon: Child) {
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    daemon.wait().unwrap();
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<16} {:>9.1} {:>9.1}",
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    );
}

fn main() {
    let (mut cold, mut disk, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    let noop = timed(Path::new("/nonexistent"), &["--version"]);
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let state: PathBuf = dir.path().join("state");
        let daemon = start(&state);
        epu(
            &state,
            &[
                "domain",
                "add",
                "d",
                "--engine",
                "npreserving",
                "--",
                "/bin/true",
            ],
        );
        cold.push(timed(&state, &["engine", "swap", "d", &fixture("faulty")]));
        memory.push(timed(&state, &["engine", "swap", "d", "npreserving"]));
        memory.push(timed(&state, &["engine", "swap", "d", &fixture("faulty")]));
        stop(daemon);
        // After a restart the compiled code comes from the disk cache.
        let daemon = start(&state);
        disk.push(timed(&state, &["engine", "swap", "d", "npreserving"]));
        stop(daemon);
    }
    println!(
        "hot swap, CLI to live, over {ROUNDS} rounds (ms; `epu --version` alone takes {:.1} ms)",
        noop.as_secs_f64() * 1e3
    );
    println!("{:<16} {:>9} {:>9}", "cache", "p50", "max");
    summary("cold", cold);
    summary("warm (disk)", disk);
    summary("warm (memory)", memory);
}
