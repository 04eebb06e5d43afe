//! Builds the engines under `plugins/` for wasm32-wasip2: the bundled ones are embedded in
//! `epu`; the test-only ones are handed to the tests as `EPU_TEST_ENGINE_<NAME>` paths.
//!
//! The nested cargo uses its own target directory (`<target>/plugin-build`) so that it never
//! waits on the lock of the build that runs this script.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Engines embedded in `epu`.
const BUNDLED: &[&str] = &["npreserving", "queuelen", "sensor"];
/// Engines built for the tests only.
const TEST_ONLY: &[&str] = &["faulty"];
/// Hostile test fixtures: `faulty` built with one feature each, as `hostile-<feature>.wasm`.
const HOSTILE: &[&str] = &[
    "spin",
    "memory",
    "recurse",
    "panic",
    "billion",
    "foreign",
    "wasi",
    "otherworld",
    "oldcontract",
];
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
    println!(
        "cargo:rerun-if-changed={}",
        root.join("plugins/engine-kit/src").display()
    );
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    check_target_installed();

    let all: Vec<&str> = BUNDLED.iter().chain(TEST_ONLY).copied().collect();
    for name in &all {
        let crate_dir = root.join("plugins").join(name);
        println!("cargo:rerun-if-changed={}", crate_dir.join("src").display());
        println!(
            "cargo:rerun-if-changed={}",
            crate_dir.join("Cargo.toml").display()
        );
    }
    build_plugins(&root, &all, &[], &target_dir);
    for name in &all {
        let built = target_dir
            .join(TARGET)
            .join("plugin")
            .join(format!("{name}.wasm"));
        let copy = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&built, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
        if TEST_ONLY.contains(name) {
            let var = format!("EPU_TEST_ENGINE_{}", name.to_uppercase());
            println!("cargo:rustc-env={var}={}", copy.display());
        }
    }
    for feature in HOSTILE {
        build_plugins(&root, &["faulty"], &[feature], &target_dir);
        let built = target_dir.join(TARGET).join("plugin").join("faulty.wasm");
        std::fs::copy(&built, out_dir.join(format!("hostile-{feature}.wasm")))
            .unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
    }
    println!("cargo:rustc-env=EPU_TEST_ENGINES_DIR={}", out_dir.display());
}

fn build_plugins(root: &Path, names: &[&str], features: &[&str], target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--quiet",
            "--profile",
            "plugin",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        // Flags and wrappers meant for the host build (clippy, coverage) must not leak in.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR");
    for name in names {
        cmd.args(["-p", name]);
    }
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build the plugins: {e}"));
    assert!(
        status.success(),
        "building the plugins {names:?} for {TARGET} failed"
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
