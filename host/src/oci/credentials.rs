//! Registry credentials, where other OCI tools keep them: the `auths` of Docker's client
//! config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), as `docker login`,
//! `oras login` and `podman login --authfile` write them. An entry is `{"auth":
//! base64("USER:PASSWORD")}` or `{"username": …, "password": …}`, under the registry's
//! `HOST[:PORT]` (a scheme or a path after it is ignored). A registry with no entry is spoken
//! to anonymously. Credential helpers (`credsStore`, `credHelpers`) are not run: a registry
//! whose credentials only a helper has is refused with a clear error.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde_json::{Map, Value};
use std::io::Read;
use std::path::PathBuf;

/// The largest client config read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The credentials found for a registry, and where they came from.
pub struct Credentials {
    pub auth: RegistryAuth,
    /// The config file they were read from; None when there were none.
    pub source: Option<PathBuf>,
}

/// The client config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The credentials for `registry` (`HOST[:PORT]`): anonymous unless the client config has an
/// entry for it. A config that cannot be read or parsed, or an entry that cannot be used, is an
/// error naming the file.
pub fn for_registry(registry: &str) -> Result<Credentials> {
    let anonymous = Credentials {
        auth: RegistryAuth::Anonymous,
        source: None,
    };
    let Some(path) = config_path() else {
        return Ok(anonymous);
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(anonymous),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        bail!("{} is over {MAX_CONFIG_BYTES} bytes", path.display());
    }
    let config: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let auth = lookup(&config, registry).with_context(|| path.display().to_string())?;
    Ok(match auth {
        RegistryAuth::Anonymous => anonymous,
        auth => Credentials {
            auth,
            source: Some(path),
        },
    })
}

/// The credentials `config` holds for `registry`.
fn lookup(config: &Value, registry: &str) -> Result<RegistryAuth> {
    let empty = Map::new();
    let auths = config
        .get("auths")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let entry = auths
        .iter()
        .find(|(key, _)| host_of(key) == registry)
        .map(|(_, v)| v);
    let Some(entry) = entry.and_then(Value::as_object).filter(|e| !e.is_empty()) else {
        // A registry a credential helper keeps: named in `credHelpers`, or listed with no
        // credentials beside a `credsStore`.
        let helper = config
            .get("credHelpers")
            .and_then(|h| h.get(registry))
            .or_else(|| entry.and(config.get("credsStore")))
            .and_then(Value::as_str);
        if let Some(helper) = helper {
            bail!(
                "the credentials for {registry} are kept by the credential helper \
                 'docker-credential-{helper}', which epu does not run: put them in \"auths\" \
                 (see README, \"Distribution by digest\")"
            );
        }
        return Ok(RegistryAuth::Anonymous);
    };
    let text = |key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let (Some(user), Some(password)) = (text("username"), text("password")) {
        return Ok(RegistryAuth::Basic(user.to_string(), password.to_string()));
    }
    if let Some(encoded) = text("auth") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok());
        return match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((user, password)) if !user.is_empty() => {
                Ok(RegistryAuth::Basic(user.to_string(), password.to_string()))
            }
            _ => bail!("the \"auth\" of {registry} is not base64 of USER:PASSWORD"),
        };
    }
    if text("identitytoken").is_some() {
        bail!(
            "the entry of {registry} holds an identity token, which epu does not use: give it \
             a username and password"
        );
    }
    bail!("the entry of {registry} has no \"auth\" and no username and password")
}

/// The `HOST[:PORT]` of an `auths` key, which may carry a scheme and a path
/// (`https://index.docker.io/v1/`).
fn host_of(key: &str) -> &str {
    let rest = key.split_once("://").map_or(key, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn basic(config: Value, registry: &str) -> Result<Option<(String, String)>> {
        Ok(match lookup(&config, registry)? {
            RegistryAuth::Basic(u, p) => Some((u, p)),
            _ => None,
        })
    }

    #[test]
    fn entries_are_found_by_host_and_port_in_either_form() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("epu:pa:ss");
        let config = json!({"auths": {
            "https://127.0.0.1:5000/v2/": {"auth": b64},
            "registry.example": {"username": "u", "password": "p"},
        }});
        let pair = |u: &str, p: &str| Some((u.to_string(), p.to_string()));
        assert_eq!(
            basic(config.clone(), "127.0.0.1:5000").unwrap(),
            pair("epu", "pa:ss")
        );
        assert_eq!(
            basic(config.clone(), "registry.example").unwrap(),
            pair("u", "p")
        );
        assert_eq!(basic(config.clone(), "127.0.0.1:5001").unwrap(), None);
        assert_eq!(basic(json!({}), "registry.example").unwrap(), None);
    }

    #[test]
    fn unusable_entries_are_refused_with_the_reason() {
        for (config, why) in [
            (
                json!({"auths": {"r": {"auth": "not base64!"}}}),
                "not base64",
            ),
            (
                json!({"auths": {"r": {"identitytoken": "t"}}}),
                "identity token",
            ),
            (json!({"auths": {"r": {"email": "e"}}}), "no \"auth\""),
            (
                json!({"auths": {"r": {}}, "credsStore": "desktop"}),
                "credential helper",
            ),
            (
                json!({"credHelpers": {"r": "ecr-login"}}),
                "docker-credential-ecr-login",
            ),
        ] {
            let err = lookup(&config, "r").unwrap_err().to_string();
            assert!(err.contains(why), "{config}: {err}");
        }
        // A store for other registries leaves one without an entry anonymous.
        let config = json!({"credsStore": "desktop"});
        assert!(matches!(
            lookup(&config, "r").unwrap(),
            RegistryAuth::Anonymous
        ));
    }
}
