//! What a component declares: that it is a component at all, and the `epu:engine` version it
//! was built for, which must be one this host runs.

use super::{adapter, CONTRACT_VERSION};
use anyhow::{bail, Result};
use wasmtime::component::Component;

/// A core module or random bytes fail here with a message that says so, rather than deep
/// inside the component parser.
pub(super) fn check_is_component(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!("the file is not WebAssembly (no \\0asm header)");
    }
    // The layer field: 0 for a core module, 1 for a component.
    if bytes[6..8] != [1, 0] {
        bail!(
            "the file is a core WebAssembly module, not a component; build it for \
             wasm32-wasip2 or wrap it with `wasm-tools component new`"
        );
    }
    Ok(())
}

/// The `epu:engine` version a component declares: the version of the `epu:engine`
/// interfaces it imports or exports. It must be this host's [`CONTRACT_VERSION`], or the
/// version its [`adapter`] runs, exactly: a component of another version is refused by name,
/// even if its shapes happen to match.
pub(super) fn contract_version(engine: &wasmtime::Engine, component: &Component) -> Result<String> {
    let ty = component.component_type();
    let mut versions: Vec<String> = ty
        .imports(engine)
        .chain(ty.exports(engine))
        .filter_map(|(name, _)| {
            let rest = name.strip_prefix("epu:engine/")?;
            Some(match rest.split_once('@') {
                Some((_, v)) => v.to_string(),
                None => "(no version)".to_string(),
            })
        })
        .collect();
    versions.sort();
    versions.dedup();
    match versions.as_slice() {
        [v] if v == CONTRACT_VERSION || adapter::VERSIONS.contains(&v.as_str()) => Ok(v.clone()),
        [] => bail!(
            "the component does not implement the epu:engine/engine world: it declares no \
             epu:engine version (no epu:engine interface among its imports and exports); build \
             it against wit/engine.wit (epu:engine@{CONTRACT_VERSION})"
        ),
        [v] => bail!(
            "the component was built for epu:engine@{v}, and this epu runs \
             epu:engine@{CONTRACT_VERSION} (and epu:engine@{} through adapters): rebuild it \
             against wit/engine.wit",
            adapter::VERSIONS.join(" and epu:engine@")
        ),
        many => bail!(
            "the component declares several epu:engine versions ({}); this epu runs \
             epu:engine@{CONTRACT_VERSION}",
            many.join(", ")
        ),
    }
}
