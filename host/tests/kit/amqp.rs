//! RabbitMQ for the queue tests: the shared broker that `.ci/run` (or `./dev.sh broker`)
//! starts on 127.0.0.1:5672, and private brokers that a test may stop and start again.

use super::{free_port, EPU};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The shared broker. Panics with what to do when it is not running.
pub fn shared_url() -> String {
    let url = std::env::var("EPU_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".to_string());
    assert!(
        TcpStream::connect("127.0.0.1:5672").is_ok() || std::env::var("EPU_TEST_AMQP_URL").is_ok(),
        "RabbitMQ is not running on 127.0.0.1:5672: start it with ./dev.sh broker"
    );
    url
}

/// A queue name no other test uses.
pub fn unique_queue(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("epu-test-{tag}-{}-{nanos}", std::process::id())
}

/// A program of the queue-workers plan, which cargo builds next to `epu`.
pub fn tool(name: &str) -> PathBuf {
    let path = Path::new(EPU).parent().unwrap().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p queue-workers` (./dev.sh test does)",
        path.display()
    );
    path
}

/// Publishes `count` messages `<prefix>-<n>` with the load generator.
pub fn publish(url: &str, queue: &str, count: u32, prefix: &str) {
    let out = Command::new(tool("queue-load"))
        .args(["--url", url, "--queue", queue, "--prefix", prefix])
        .args(["--count", &count.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "queue-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The messages the workers acked, from their done log: `(body, redelivered)` per line.
pub fn consumed(done_log: &Path) -> Vec<(String, bool)> {
    std::fs::read_to_string(done_log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let body = f.next().unwrap().to_string();
            (body, f.next() == Some("true"))
        })
        .collect()
}

/// A RabbitMQ node of its own on a free port, with its data in a temp dir that outlives a
/// stop, so durable queues and persistent messages survive a restart.
pub struct PrivateBroker {
    dir: tempfile::TempDir,
    pub port: u16,
    dist_port: u16,
    child: Option<Child>,
}

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

impl PrivateBroker {
    pub fn start() -> PrivateBroker {
        assert!(
            Path::new(SERVER).exists(),
            "{SERVER} is missing: apt-get install -y rabbitmq-server"
        );
        let dir = tempfile::Builder::new()
            .prefix("epu-rmq")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        let mut b = PrivateBroker {
            dir,
            port: free_port(),
            dist_port: free_port(),
            child: None,
        };
        b.restart();
        b
    }

    pub fn url(&self) -> String {
        format!("amqp://127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the node (again) and waits until it takes connections.
    pub fn restart(&mut self) {
        let d = self.dir.path();
        let node = format!("epu-test-{}-{}@localhost", std::process::id(), self.port);
        let log = std::fs::File::create(d.join("server.log")).unwrap();
        let child = Command::new(SERVER)
            .env("HOME", d.join("home"))
            .env("RABBITMQ_NODENAME", node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < end,
                "the private broker did not start: {}",
                std::fs::read_to_string(d.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the node (SIGTERM to its process group) and waits until it is gone.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
