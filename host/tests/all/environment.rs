//! The environment failing under a running daemon: a worker program that cannot be spawned,
//! a state dir that fills up or turns read-only, a store locked by another process. Each
//! refuses what it must with a clear error, keeps the daemon up, corrupts nothing, and
//! recovers once the fault is gone.

use crate::kit;

use kit::{is_alive, wait_for, Epu};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The live pids of a domain's instances that are alive, sorted.
fn live_pids(epu: &Epu, domain: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = epu
        .instances(domain)
        .iter()
        .filter(|i| i.state != "terminating")
        .filter_map(|i| i.pid)
        .filter(|p| is_alive(*p))
        .collect();
    pids.sort();
    pids
}

/// Waits until `domain` has `n` live instances, each with a live process, and the state dir
/// has no other worker process.
fn wait_for_workers(epu: &Epu, domain: &str, n: usize) -> Vec<i32> {
    let mut last = Vec::new();
    let ok = wait_for(Duration::from_secs(20), || {
        last = live_pids(epu, domain);
        let mut procs = epu.worker_processes();
        procs.sort();
        last.len() == n && epu.instances(domain).len() == n && procs == last
    });
    assert!(
        ok,
        "expected {n} workers of {domain}: {last:?}, {:?}",
        epu.instances(domain)
    );
    last
}

fn add_sleepers(epu: &Epu, command: &str) {
    epu.add_domain("d")
        .config("preserve_n=2")
        .flag("--pulse-ms", "200")
        .flag("--grace", "0.2")
        .command(&[command, "1000"])
        .ok();
}

/// The store's own check, and the event log's sequence without a gap.
fn assert_store_sound(db: &Path) {
    let c = rusqlite::Connection::open(db).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (n, lo, hi): (i64, i64, i64) = c
        .query_row("SELECT COUNT(*), MIN(seq), MAX(seq) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((lo, hi), (1, n), "the event seq has a gap");
}

#[test]
fn a_worker_program_that_cannot_be_spawned_fails_clearly_and_recovers_when_it_returns() {
    let epu = Epu::new();
    let worker = epu.dir.path().join("worker");
    std::fs::write(&worker, "#!/bin/sh\nexec sleep \"$@\"\n").unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&worker)
        .status()
        .unwrap();
    let mut daemon = epu.start_daemon();
    add_sleepers(&epu, worker.to_str().unwrap());
    let pids = wait_for_workers(&epu, "d", 2);

    // The program goes away (an upgrade half done), and a worker dies.
    let gone = epu.dir.path().join("worker.gone");
    std::fs::rename(&worker, &gone).unwrap();
    kit::kill9(pids[0]);
    let spawn_error = format!(
        "spawning \\\"{}\\\": No such file or directory",
        worker.display()
    );
    assert!(
        wait_for(Duration::from_secs(10), || epu
            .ok(&["events", "--json", "--domain", "d"])
            .contains(&spawn_error)),
        "no spawn error event: {}",
        epu.ok(&["events", "--json", "--domain", "d"])
    );
    assert_eq!(
        live_pids(&epu, "d"),
        vec![pids[1]],
        "the other worker runs on"
    );

    // It comes back: the pool is whole again, with nothing left over.
    std::fs::rename(&gone, &worker).unwrap();
    let now = wait_for_workers(&epu, "d", 2);
    assert!(now.contains(&pids[1]));
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
    assert_store_sound(&epu.state_dir().join("epu.db"));
}

/// A raw HTTP/1.1 POST of `body` to `path` on the daemon's unix socket; the whole answer.
fn post_raw(socket: &Path, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: epu\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// A tmpfs mounted on a test's state dir, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None where mounting is not allowed (not root, or no CAP_SYS_ADMIN).
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn remount(&self, mode: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

struct OnTmpfs {
    epu: Epu,
    fs: Tmpfs,
}

/// Fills the file system of `dir` with a file until it is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

/// The daemon and workers of a test whose state dir is a tmpfs; None where mounting is not
/// allowed.
fn on_tmpfs() -> Option<OnTmpfs> {
    let epu = Epu::new();
    let Some(fs) = Tmpfs::mount(&epu.state_dir(), "64m") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return None;
    };
    // Dropped in this order: the daemon and workers are stopped before the unmount.
    Some(OnTmpfs { epu, fs })
}

/// The state dir fills up under a running daemon: a change is refused with the reason, a
/// worker that dies meanwhile is replaced once there is room again, and the store is sound.
#[test]
fn a_full_state_dir_refuses_changes_clearly_and_loses_nothing() {
    let Some(env) = on_tmpfs() else { return };
    let epu = &env.epu;
    let db = epu.state_dir().join("epu.db");
    let mut daemon = epu.start_daemon();
    add_sleepers(epu, "/bin/sleep");
    let pids = wait_for_workers(epu, "d", 2);

    let filler = fill(&epu.state_dir());
    let error = epu.fails(&["reconfigure", "d", "preserve_n=3"]);
    assert!(error.contains("full"), "{error}");
    // A store failure is the daemon's, not the caller's: 500, not 400.
    let answer = post_raw(
        &epu.state_dir().join("epu.sock"),
        "/v1/domains/d/reconfigure",
        r#"{"config": {"preserve_n": 3}}"#,
    );
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(answer.contains("storing the config"), "{answer}");
    // A worker dies while nothing can be written; the daemon stays up and answers.
    kit::kill9(pids[0]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(is_alive(daemon.id() as i32), "the daemon died");
    epu.ok(&["status"]);

    std::fs::remove_file(filler).unwrap();
    let now = wait_for_workers(epu, "d", 2);
    assert!(now.contains(&pids[1]) && !now.contains(&pids[0]), "{now:?}");
    epu.ok(&["reconfigure", "d", "preserve_n=3"]);
    wait_for_workers(epu, "d", 3);
    assert_eq!(
        epu.status()["domains"][0]["config_version"],
        2,
        "the refused reconfigure left no version"
    );
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
    assert_store_sound(&db);
}

/// A state dir that is read-only (a volume mounted so): the daemon refuses to start with the
/// reason, the commands that only read the store still work, and nothing is changed.
#[test]
fn a_read_only_state_dir_is_refused_clearly_and_left_untouched() {
    let Some(env) = on_tmpfs() else { return };
    let epu = &env.epu;
    let db = epu.state_dir().join("epu.db");
    let mut daemon = epu.start_daemon();
    add_sleepers(epu, "/bin/sleep");
    wait_for_workers(epu, "d", 2);
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
    let before = std::fs::read(&db).unwrap();

    env.fs.remount("ro");
    let out = epu.command().arg("daemon").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        !out.status.success() && stderr.contains("read-only"),
        "{stderr}"
    );
    let history = epu.run(&["list"]);
    assert!(
        history.status.success()
            || String::from_utf8_lossy(&history.stderr)
                .to_lowercase()
                .contains("read-only"),
        "{}",
        String::from_utf8_lossy(&history.stderr)
    );
    assert_eq!(std::fs::read(&db).unwrap(), before, "the store changed");
    env.fs.remount("rw");
    let mut daemon = epu.start_daemon();
    add_sleepers(epu, "/bin/sleep");
    wait_for_workers(epu, "d", 2);
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
    assert_store_sound(&db);
}

/// An exclusive lock on the store, held by this test process (not the daemon's) until it is
/// released or its time runs out.
struct StoreLock {
    release: std::sync::mpsc::Sender<()>,
    holder: std::thread::JoinHandle<()>,
}

impl StoreLock {
    /// Waits until the lock's time runs out and it is released.
    fn wait(self) {
        self.holder.join().unwrap();
    }

    /// Releases the lock now.
    fn release(self) {
        let _ = self.release.send(());
        self.holder.join().unwrap();
    }
}

/// Takes an exclusive lock on the store for `secs`; returns once it is held.
fn lock_store(db: &Path, secs: f64) -> StoreLock {
    let (locked, is_locked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let db = db.to_path_buf();
    let holder = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked.send(()).unwrap();
        let _ = released.recv_timeout(Duration::from_secs_f64(secs));
        c.execute_batch("COMMIT").unwrap();
    });
    is_locked.recv().expect("the store could not be locked");
    StoreLock { release, holder }
}

#[test]
fn a_store_locked_by_another_process_is_waited_for_or_refused_clearly() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    add_sleepers(&epu, "/bin/sleep");
    let pids = wait_for_workers(&epu, "d", 2);
    let db = epu.state_dir().join("epu.db");

    // A short lock is waited out: the change goes through once it is released.
    let holder = lock_store(&db, 1.0);
    epu.ok(&["reconfigure", "d", "preserve_n=3"]);
    holder.wait();
    wait_for_workers(&epu, "d", 3);

    // A long one: the change is refused with a clear error, a worker that dies meanwhile is
    // replaced once the lock is gone, and the daemon answers throughout. The lock outlasts two
    // busy timeouts (5 s each): a decide that was writing when it began waits one out before
    // the reconfigure's own write waits the other.
    let holder = lock_store(&db, 15.0);
    let error = epu.fails(&["reconfigure", "d", "preserve_n=2"]);
    assert!(error.contains("locked"), "{error}");
    kit::kill9(pids[0]);
    holder.wait();
    let now = wait_for_workers(&epu, "d", 3);
    assert!(!now.contains(&pids[0]));
    assert_eq!(epu.status()["domains"][0]["config"]["preserve_n"], 3);

    // A daemon cannot start on a store another process holds: it says so and exits.
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
    let holder = lock_store(&db, 30.0);
    let out = epu
        .command()
        .arg("daemon")
        .output()
        .expect("running epu daemon");
    holder.release();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("locked"),
        "{stderr}"
    );
    assert_store_sound(&db);
}
