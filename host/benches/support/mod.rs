//! What the benches that drive the real `epu` binary share.

use std::path::Path;
use std::process::Command;

pub const EPU: &str = env!("CARGO_BIN_EXE_epu");

/// Runs `epu ARGS` on a state dir, insists that it succeeds, and returns its stdout.
pub fn epu(state: &Path, args: &[&str]) -> String {
    let out = Command::new(EPU)
        .env("EPU_STATE_DIR", state)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "epu {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
