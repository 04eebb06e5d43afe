//! moto's EC2 server for the ec2 tests: a real HTTP implementation of the EC2 API on
//! 127.0.0.1, with an SDK client to look at it and act on it directly, a fault-injecting
//! proxy, and the heartbeat sender of the `ec2-moto` plan.

use super::{free_port, repo, wait_for, Epu};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Python that has moto and boto3.
pub fn python() -> PathBuf {
    let p = std::env::var_os("EPU_MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/epu/moto/bin/python")
        });
    assert!(
        p.exists(),
        "no Python with moto at {}: run ./dev.sh moto (or set EPU_MOTO_PYTHON)",
        p.display()
    );
    p
}

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An instance as the cloud lists it.
#[derive(Clone, Debug)]
pub struct CloudInstance {
    pub id: String,
    pub state: String,
    /// Its `epu:instance` tag.
    pub owner: Option<String>,
}

impl CloudInstance {
    pub fn is_up(&self) -> bool {
        self.state == "pending" || self.state == "running"
    }
}

pub struct Moto {
    _server: Killed,
    pub url: String,
    rt: tokio::runtime::Runtime,
    client: aws_sdk_ec2::Client,
}

impl Moto {
    /// Starts a fresh moto server and waits until it answers.
    pub fn start() -> Moto {
        let port = free_port();
        let server = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let up = wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "moto did not start on {url}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let creds = aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test");
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(&url)
            .build();
        Moto {
            _server: Killed(server),
            url,
            rt,
            client: aws_sdk_ec2::Client::from_conf(conf),
        }
    }

    /// Every instance tagged with `epu:domain` = `domain`, in any state.
    pub fn instances(&self, domain: &str) -> Vec<CloudInstance> {
        let out = self
            .rt
            .block_on(
                self.client
                    .describe_instances()
                    .filters(
                        Filter::builder()
                            .name("tag:epu:domain")
                            .values(domain)
                            .build(),
                    )
                    .send(),
            )
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| CloudInstance {
                id: i.instance_id().unwrap().to_string(),
                state: i.state().unwrap().name().unwrap().as_str().to_string(),
                owner: i
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some("epu:instance"))
                    .and_then(|t| t.value())
                    .map(str::to_string),
            })
            .collect()
    }

    /// The state of one instance.
    pub fn state(&self, id: &str) -> String {
        let out = self
            .rt
            .block_on(self.client.describe_instances().instance_ids(id).send())
            .unwrap();
        let i = &out.reservations()[0].instances()[0];
        i.state().unwrap().name().unwrap().as_str().to_string()
    }

    pub fn terminate(&self, id: &str) {
        self.rt
            .block_on(self.client.terminate_instances().instance_ids(id).send())
            .unwrap();
    }

    /// Launches an instance behind epu's back, with these tags.
    pub fn plant(&self, tags: &[(&str, &str)]) -> String {
        let mut call = self
            .client
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type("t3.micro".into())
            .min_count(1)
            .max_count(1);
        if !tags.is_empty() {
            let tags = tags
                .iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect();
            call = call.tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags))
                    .build(),
            );
        }
        let out = self.rt.block_on(call.send()).unwrap();
        out.instances()[0].instance_id().unwrap().to_string()
    }

    /// Starts the `ec2-moto` plan's heartbeat sender against this server.
    pub fn heartbeats(&self) -> Killed {
        let script = repo().join("launch-plans/ec2-moto/heartbeats.py");
        Killed(
            Command::new(python())
                .arg(script)
                .env("MOTO_URL", &self.url)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

/// The fault-injecting proxy (`tests/support/ec2_fault_proxy.py`) in front of `upstream`.
pub struct Proxy {
    _server: Killed,
    pub url: String,
}

impl Proxy {
    pub fn start(upstream: &str, dir: &std::path::Path) -> Proxy {
        let port_file = dir.join("proxy.port");
        let script = repo().join("host/tests/support/ec2_fault_proxy.py");
        let server = Command::new("python3")
            .arg(script)
            .arg(upstream)
            .arg(&port_file)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        assert!(wait_for(Duration::from_secs(10), || port_file.exists()));
        let port = std::fs::read_to_string(&port_file).unwrap();
        Proxy {
            _server: Killed(server),
            url: format!("http://127.0.0.1:{}", port.trim()),
        }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> String {
        super::http::request(&self.url[7..], method, path, None, body).1
    }

    pub fn mode(&self, mode: &str) {
        self.call("POST", "/__proxy/mode", mode);
    }

    /// The count of each fault injected so far.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.call("GET", "/__proxy/stats", "")).unwrap()
    }
}

/// A daemon listening on a free port of 127.0.0.1, with test credentials.
pub fn daemon(epu: &Epu) -> (super::DaemonGuard, String) {
    epu.listening_daemon("127.0.0.1:0")
}

/// [`daemon`] on a given address: a restarted daemon keeps the heartbeat URL its instances
/// were launched with.
pub fn daemon_on(epu: &Epu, listen: &str) -> (super::DaemonGuard, String) {
    epu.listening_daemon(listen)
}

/// Boots a plan of one npreserving domain `name` of `n` instances on the `ec2` driver at
/// `endpoint`, with `extra` lines added to its `[domain.ec2]`.
pub fn boot_domain(epu: &Epu, name: &str, n: u32, endpoint: &str, extra: &str) {
    let dir = epu.dir.path().join(format!("plan-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = format!(
        "name = \"{name}\"\n[[domain]]\nname = \"{name}\"\nengine = \"npreserving\"\n\
         config = {{ preserve_n = {n} }}\npulse_ms = 500\n[domain.ec2]\nregion = \"us-east-1\"\n\
         endpoint_url = \"{endpoint}\"\nimage_id = \"ami-12c6146b\"\ninstance_type = \"t3.micro\"\n\
         poll_ms = 300\n{extra}\n[domain.health]\nboot_timeout = 60\nmissing_timeout = 20\n"
    );
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    epu.ok(&["boot", dir.to_str().unwrap()]);
}
