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

/// The one account of [`Registry::start_with_login`].
pub const USER: &str = "epu";
pub const PASSWORD: &str = "engine-secret";
/// Its htpasswd line: PASSWORD hashed with bcrypt (cost 5), as the registry requires.
const HTPASSWD: &str = "epu:$2b$05$pYHH.sfVOJLmiz4iYLdTYu4eNvhuPgQsgdkqhGagbEmBfZaowC2D6";

impl Registry {
    /// Starts a registry open to anyone and waits until it answers.
    pub fn start() -> Registry {
        Registry::launch(false)
    }

    /// Starts a registry that requires HTTP basic authentication as [`USER`].
    pub fn start_with_login() -> Registry {
        Registry::launch(true)
    }

    fn launch(login: bool) -> Registry {
        let binary = PathBuf::from("/usr/bin/docker-registry");
        assert!(
            binary.exists(),
            "no {}: apt-get install docker-registry (./dev.sh setup does)",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n",
            dir.path().join("storage").display()
        );
        if login {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{HTPASSWD}\n")).unwrap();
            text += &format!(
                "auth:\n  htpasswd:\n    realm: epu-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        std::fs::write(&config, text).unwrap();
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
