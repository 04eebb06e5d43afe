//! A real OCI registry for the distribution tests: Debian's `docker-registry`, the reference
//! implementation of the distribution spec, on a free loopback port with its storage in a
//! temporary dir. Stopped when dropped.

use super::{free_port, wait_for};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry and waits until it answers.
    pub fn start() -> Registry {
        let binary = PathBuf::from("/usr/bin/docker-registry");
        assert!(
            binary.exists(),
            "no {}: apt-get install docker-registry (./dev.sh setup does)",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let up = wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        assert!(up, "the registry did not listen on {addr}");
        Registry { child, addr, dir }
    }

    /// An `oci://` reference to `repo_and_tag` (`engines/np:1`) in this registry.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("oci://{}/{repo_and_tag}", self.addr)
    }

    /// Where the registry keeps the blob of `digest` (`sha256:…`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
