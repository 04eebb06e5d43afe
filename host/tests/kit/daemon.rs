//! Daemons started by tests and benches: waited for until they answer, and stopped when their
//! guard drops.

use super::{wait_for, Epu, Signal, EPU};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

impl Epu {
    /// Starts `epu daemon` on the state dir and waits until it answers.
    pub fn start_daemon(&self) -> std::process::Child {
        self.spawn_daemon(self.command().arg("daemon"))
    }

    /// Starts `epu ARGS` (a daemon command, such as `daemon --listen …`) and waits until it
    /// answers.
    pub fn spawn_with(&self, args: &[&str]) -> std::process::Child {
        self.spawn_daemon(self.command().args(args))
    }

    /// Spawns a daemon command and waits until it answers.
    pub fn spawn_daemon(&self, command: &mut Command) -> std::process::Child {
        let child = command.stderr(std::process::Stdio::null()).spawn().unwrap();
        let up = wait_for(Duration::from_secs(60), || {
            self.run(&["status"]).status.success()
        });
        assert!(up, "the daemon did not come up");
        child
    }

    /// Starts `epu daemon` like [`Epu::start_daemon`]; the daemon is terminated (workers
    /// included) and reaped when the guard drops.
    pub fn daemon(&self) -> DaemonGuard {
        DaemonGuard {
            child: self.start_daemon(),
            state_dir: self.state_dir(),
        }
    }

    /// Starts `epu daemon --listen ADDR` (with test AWS credentials in its env); returns its
    /// guard and the address it listens on (`127.0.0.1:0` picks a port).
    pub fn listening_daemon(&self, listen: &str) -> (DaemonGuard, String) {
        let child = self.spawn_daemon(
            self.command()
                .args(["daemon", "--listen", listen])
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing"),
        );
        let addr = std::fs::read_to_string(self.state_dir().join("listen.addr")).unwrap();
        let guard = DaemonGuard {
            child,
            state_dir: self.state_dir(),
        };
        (guard, addr.trim().to_string())
    }
}

/// A daemon started by a test; see [`Epu::daemon`].
pub struct DaemonGuard {
    pub child: std::process::Child,
    pub state_dir: PathBuf,
}

impl DaemonGuard {
    /// Stops the daemon with SIGTERM (its workers live on) and reaps it.
    pub fn stop(mut self) {
        super::signal(self.child.id() as i32, Signal::SIGTERM);
        self.child.wait().unwrap();
    }

    /// `kill -9`s the daemon (its workers live on) and reaps it.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new(EPU)
            .env("EPU_STATE_DIR", &self.state_dir)
            .arg("terminate")
            .output();
        let exited = wait_for(Duration::from_secs(15), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
