//! Hostile components no guest toolchain makes: a core module written in WAT, made into a
//! component of the `engine` world (of any contract version) by `wit-component`. Its
//! `initialize` and `reconfigure` accept anything, its `decide` returns an error (or, for
//! [`idle_component`], a decision that changes nothing), and `extra` adds what the attack
//! needs (memories, tables).

use std::path::PathBuf;

/// The contract version of `wit/engine.wit`.
pub const CURRENT: &str = "0.5.0";

/// The contract versions whose own text is kept in `host/wit/<version>` (run through adapters).
const KEPT: [&str; 2] = ["0.3.0", "0.4.0"];

/// `describe`'s answer laid out at 512: name and version "stub", no summary, no keys, and any
/// other key taken (a stub accepts every config).
const DESCRIBED: &str = "\\c0\\00\\00\\00\\04\\00\\00\\00\\c0\\00\\00\\00\\04\\00\\00\\00\\c0\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\01\\00\\00\\00";

/// A `describe` that answers at once.
const DESCRIBE: &str = "(i32.const 512)";

/// A component of `epu:engine@<version>` whose core module also declares `extra` (WAT module
/// fields, such as `(memory 960)`). Versions 0.3.0 and 0.4.0 are built from their own text
/// (`host/wit/<version>`); any other from `wit/engine.wit` under that version's name.
pub fn engine_component(version: &str, extra: &str) -> Vec<u8> {
    component(version, extra, 128, DESCRIBE)
}

/// A component of the current contract whose `describe` runs `body` (WAT instructions that
/// leave the address of the answer, as [`DESCRIBE`] does).
pub fn describing_component(body: &str) -> Vec<u8> {
    component(CURRENT, "", 256, body)
}

/// A component of `epu:engine@<version>` whose `decide` returns a decision that launches and
/// destroys nothing, with status `stable`.
pub fn idle_component(version: &str) -> Vec<u8> {
    component(version, "", 256, DESCRIBE)
}

/// `decide` returns the result laid out at `decided` (128: an error; 256: an empty decision).
fn component(version: &str, extra: &str, decided: u32, describe: &str) -> Vec<u8> {
    let kept = KEPT.contains(&version);
    let wit = if kept {
        std::fs::read_to_string(super::repo().join(format!("host/wit/{version}/engine.wit")))
            .unwrap()
    } else {
        std::fs::read_to_string(super::repo().join("wit/engine.wit"))
            .unwrap()
            .replace(
                &format!("package epu:engine@{CURRENT};"),
                &format!("package epu:engine@{version};"),
            )
    };
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_str("engine.wit", &wit).unwrap();
    let world = resolve.select_world(&[pkg], Some("engine")).unwrap();
    // Earlier contracts have no describe.
    let describe = if kept {
        String::new()
    } else {
        format!(
            r#"(data (i32.const 512) "{DESCRIBED}")
            (func (export "describe") (result i32) {describe})"#
        )
    };
    let wat = format!(
        r#"(module
            (memory (export "memory") 16)
            (global $next (mut i32) (i32.const 1024))
            (data (i32.const 64) "\00\00\00\00\00\00\00\00\00\00\00\00")
            (data (i32.const 128) "\01\00\00\00\c0\00\00\00\04\00\00\00")
            (data (i32.const 192) "stub")
            ;; ok(decision): no launches, no destroys, no next decide, no memo, status stable
            (data (i32.const 256) "\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\01\00\00\00")
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
                (local $at i32)
                ;; a bump allocator: the next free byte, rounded up to the alignment asked for
                (local.set $at
                    (i32.and
                        (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
                        (i32.sub (i32.const 0) (local.get 2))))
                (global.set $next (i32.add (local.get $at) (local.get 3)))
                (local.get $at))
            (func (export "initialize") (param i32 i32) (result i32) (i32.const 64))
            (func (export "reconfigure") (param i32 i32) (result i32) (i32.const 64))
            (func (export "decide")
                (param f64 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
                (i32.const {decided}))
            (func (export "dying"))
            {describe}
            {extra}
        )"#
    );
    let mut module = wat::parse_str(&wat).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

/// Writes a component into `dir` as `name.wasm` and returns its path.
pub fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// 8 memories of 60 MiB each: a per-memory cap of 64 MiB lets each one through.
pub fn many_memories() -> Vec<u8> {
    let memories: String = (0..8).map(|_| "(memory 960)").collect();
    engine_component(CURRENT, &memories)
}

/// 60 tables of 1M entries each.
pub fn many_tables() -> Vec<u8> {
    let tables: String = (0..60).map(|_| "(table 1000000 funcref)").collect();
    engine_component(CURRENT, &tables)
}
