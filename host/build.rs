//! Builds the bundled engines (`plugins/*`) for wasm32-wasip2 so that `epu` embeds them.
//!
//! The nested cargo uses its own target directory (`<target>/plugin-build`) so that it never
//! waits on the lock of the build that runs this script.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const BUNDLED: &[&str] = &["npreserving"];
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugin-build");

    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    check_target_installed();

    for name in BUNDLED {
        let crate_dir = root.join("plugins").join(name);
        println!("cargo:rerun-if-changed={}", crate_dir.join("src").display());
        println!(
            "cargo:rerun-if-changed={}",
            crate_dir.join("Cargo.toml").display()
        );
        build_plugin(&root, name, &target_dir);
        let built = target_dir
            .join(TARGET)
            .join("plugin")
            .join(format!("{name}.wasm"));
        std::fs::copy(&built, out_dir.join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
    }
}

fn build_plugin(root: &Path, name: &str, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "--profile",
            "plugin",
            "--target",
            TARGET,
            "-p",
            name,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        // Flags and wrappers meant for the host build (clippy, coverage) must not leak in.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build plugin {name}: {e}"));
    assert!(
        status.success(),
        "building the bundled engine '{name}' for {TARGET} failed"
    );
}

fn check_target_installed() {
    let out = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .expect("running rustc");
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !Path::new(&dir).exists() {
        panic!("the {TARGET} target is not installed; run: rustup target add {TARGET}");
    }
}
