//! The two steps of building the C engine that need WebAssembly tooling, as one small binary
//! of the workspace (built with epu's other crates, so nothing is installed):
//! - `epu-guest-tools c-bindings WIT_DIR WORLD OUT_DIR`: the C bindings of a world (what
//!   `wit-bindgen c` writes: `<world>.h`, `<world>.c` and `<world>_component_type.o`);
//! - `epu-guest-tools component CORE.wasm ADAPTER.wasm OUT.wasm`: a component from a core
//!   module built against wasi-libc, with the preview 1 adapter, validated (what
//!   `wasm-tools component new --adapt` and `wasm-tools validate` do).

use anyhow::{bail, Context, Result};
use std::path::Path;
use wit_bindgen_core::Files;

fn c_bindings(wit_dir: &Path, world: &str, out_dir: &Path) -> Result<()> {
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_path(wit_dir)
        .with_context(|| format!("reading the WIT in {}", wit_dir.display()))?;
    let world = resolve.select_world(&[pkg], Some(world))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out_dir)?;
    for (name, contents) in files.iter() {
        let path = out_dir.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn component(core: &Path, adapter: &Path, out: &Path) -> Result<()> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let bytes = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&read(core)?)?
        .adapter("wasi_snapshot_preview1", &read(adapter)?)?
        .encode()
        .context("making the component")?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["c-bindings", wit, world, out] => c_bindings(Path::new(wit), world, Path::new(out)),
        ["component", core, adapter, out] => {
            component(Path::new(core), Path::new(adapter), Path::new(out))
        }
        _ => bail!(
            "usage: epu-guest-tools c-bindings WIT_DIR WORLD OUT_DIR\n       \
             epu-guest-tools component CORE.wasm ADAPTER.wasm OUT.wasm"
        ),
    }
}
