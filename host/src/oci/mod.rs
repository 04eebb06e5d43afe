//! Engines distributed by digest: a component pushed to and pulled from an OCI registry as a
//! wasm artifact, in the layout other wasm tools use (a config of media type
//! `application/vnd.wasm.config.v0+json` and one layer of `application/wasm`), with the
//! `oci-client` crate. A name is `oci://HOST[:PORT]/REPO:TAG` or `oci://HOST/REPO@sha256:…`.
//!
//! A registry on loopback is spoken to over plain HTTP, as other OCI clients allow; any other
//! over HTTPS. Credentials are those other OCI tools keep ([`credentials`]); a registry with
//! none is spoken to anonymously. A pull reads the manifest first and refuses one that is not
//! a single wasm layer within the size cap; the layer is read into a buffer of that cap, and its
//! sha256 must be the digest the manifest names (a tampered blob is refused).
//!
//! A component's minisign signature ([`crate::signing`]) travels beside it in the same
//! repository, as an artifact of its own tagged `sha256-<the component's digest>.minisig` (the
//! way cosign tags its signatures), so a tag or digest of the component finds it.

pub mod credentials;

use anyhow::{bail, Context, Result};
use credentials::Credentials;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

/// How an engine named by an OCI reference begins.
pub const SCHEME: &str = "oci://";
/// The media type of the artifact's config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of its one layer, the component.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The media types of a signature's artifact: its config and its one layer.
pub const SIGNATURE_CONFIG_MEDIA_TYPE: &str = "application/vnd.epu.signature.config.v1+json";
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.epu.signature.minisign.v1";
/// How long one registry operation may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether an engine spec is an OCI reference.
pub fn is_oci(spec: &str) -> bool {
    spec.starts_with(SCHEME)
}

/// A component pulled from a registry.
#[derive(Debug)]
pub struct Pulled {
    pub bytes: Vec<u8>,
    /// The digest of the manifest the reference resolved to.
    pub manifest_digest: String,
    /// The reference pinned to that digest: `oci://HOST/REPO@sha256:…`.
    pub pinned: String,
    /// The component's signature, if one was pushed beside it.
    pub signature: Option<String>,
}

/// Pulls the component `spec` names, refusing one over `max_bytes`. It runs on a thread of its
/// own with its own runtime, so it may be called from anywhere.
pub fn pull(spec: &str, max_bytes: u64) -> Result<Pulled> {
    let reference = parse(spec)?;
    let creds = credentials::for_registry(reference.resolve_registry())?;
    let auth = creds.auth.clone();
    blocking(async move { pull_async(&reference, &auth, max_bytes).await })
        .map_err(|e| explain_refusal(e, &creds))
        .with_context(|| format!("pulling {spec}"))
}

/// Pushes component `bytes` to `spec`, and its `signature` beside it if given; returns the
/// manifest's digest.
pub fn push(bytes: Vec<u8>, spec: &str, signature: Option<String>) -> Result<String> {
    let reference = parse(spec)?;
    let creds = credentials::for_registry(reference.resolve_registry())?;
    let auth = creds.auth.clone();
    blocking(async move { push_async(&reference, &auth, bytes, signature).await })
        .map_err(|e| explain_refusal(e, &creds))
        .with_context(|| format!("pushing to {spec}"))
}

/// Whether the registry said the client may not do what it asked.
fn is_refusal(e: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode;
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    }
}

/// Says which credentials a registry refused, when it refused them.
fn explain_refusal(e: anyhow::Error, creds: &Credentials) -> anyhow::Error {
    let refused = e
        .chain()
        .filter_map(|cause| cause.downcast_ref::<OciDistributionError>())
        .any(is_refusal);
    if !refused {
        return e;
    }
    let why = match (&creds.auth, &creds.source) {
        (RegistryAuth::Basic(user, _), Some(path)) => format!(
            "the registry refused the credentials of '{user}' from {}",
            path.display()
        ),
        _ => format!(
            "the registry refused anonymous access: put its credentials in {} (docker login \
             or oras login write them there)",
            credentials::config_path()
                .map_or("~/.docker/config.json".into(), |p| p.display().to_string())
        ),
    };
    e.context(why)
}

/// Where the signature of the component of digest `layer_digest` is kept.
fn signature_reference(reference: &Reference, layer_digest: &str) -> Reference {
    let tag = format!(
        "{}.{}",
        layer_digest.replace(':', "-"),
        crate::signing::EXTENSION
    );
    Reference::with_tag(
        reference.registry().to_string(),
        reference.repository().to_string(),
        tag,
    )
}

/// Parses `oci://HOST/REPO[:TAG|@DIGEST]`.
fn parse(spec: &str) -> Result<Reference> {
    let Some(rest) = spec.strip_prefix(SCHEME) else {
        bail!("'{spec}' is not an OCI reference (oci://HOST/REPO:TAG or oci://HOST/REPO@sha256:…)");
    };
    if !rest.contains('/') {
        bail!("'{spec}' names no repository: oci://HOST/REPO:TAG");
    }
    rest.parse::<Reference>()
        .with_context(|| format!("'{spec}' is not a valid OCI reference"))
}

fn client(reference: &Reference) -> Client {
    let registry = reference.resolve_registry().to_string();
    let host = registry
        .rsplit_once(':')
        .map_or(registry.as_str(), |(h, _)| h);
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1");
    let config = ClientConfig {
        protocol: if loopback {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        },
        ..Default::default()
    };
    Client::new(config)
}

async fn pull_async(reference: &Reference, auth: &RegistryAuth, max_bytes: u64) -> Result<Pulled> {
    let client = client(reference);
    let (manifest, digest, _config) = client
        .pull_manifest_and_config(reference, auth)
        .await
        .context("reading the manifest")?;
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        bail!(
            "the artifact's config is {}, not a wasm component's ({CONFIG_MEDIA_TYPE})",
            manifest.config.media_type
        );
    }
    let layer = match manifest.layers.as_slice() {
        [layer] if layer.media_type == LAYER_MEDIA_TYPE => layer,
        _ => bail!("a wasm component's artifact has exactly one layer of {LAYER_MEDIA_TYPE}"),
    };
    if layer.size < 0 || layer.size as u64 > max_bytes {
        bail!(
            "the engine is {} bytes, over the cap of {max_bytes} bytes (the daemon's \
             --max-engine-mib)",
            layer.size
        );
    }
    let mut out = Capped {
        bytes: Vec::with_capacity(layer.size as usize),
        max: max_bytes as usize,
    };
    client
        .pull_blob(reference, layer, &mut out)
        .await
        .context("reading the component's layer")?;
    let sha = format!("sha256:{}", hex::encode(Sha256::digest(&out.bytes)));
    if sha != layer.digest {
        bail!(
            "the layer's content is {sha}, not {} as its manifest says: refused",
            layer.digest
        );
    }
    let pinned = format!(
        "{SCHEME}{}/{}@{digest}",
        reference.registry(),
        reference.repository()
    );
    let signature = pull_signature(&client, &signature_reference(reference, &sha), auth).await;
    Ok(Pulled {
        bytes: out.bytes,
        manifest_digest: digest,
        pinned,
        signature,
    })
}

/// The signature kept at `at`, if there is one of the right shape.
async fn pull_signature(client: &Client, at: &Reference, auth: &RegistryAuth) -> Option<String> {
    let (manifest, _, _) = client.pull_manifest_and_config(at, auth).await.ok()?;
    let max = crate::signing::MAX_SIGNATURE_BYTES;
    let layer = match manifest.layers.as_slice() {
        [l] if l.media_type == SIGNATURE_MEDIA_TYPE && (0..=max as i64).contains(&l.size) => l,
        _ => return None,
    };
    let mut out = Capped {
        bytes: Vec::new(),
        max: max as usize,
    };
    client.pull_blob(at, layer, &mut out).await.ok()?;
    String::from_utf8(out.bytes).ok()
}

async fn push_async(
    reference: &Reference,
    auth: &RegistryAuth,
    bytes: Vec<u8>,
    signature: Option<String>,
) -> Result<String> {
    let client = client(reference);
    let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let layers = vec![ImageLayer::new(bytes, LAYER_MEDIA_TYPE.to_string(), None)];
    if let Some(signature) = signature {
        let at = signature_reference(reference, &layer_digest);
        let layers = vec![ImageLayer::new(
            signature.into_bytes(),
            SIGNATURE_MEDIA_TYPE.to_string(),
            None,
        )];
        let config = Config {
            data: b"{}".to_vec().into(),
            media_type: SIGNATURE_CONFIG_MEDIA_TYPE.to_string(),
            annotations: None,
        };
        client
            .push(&at, &layers, config, auth, None)
            .await
            .context("uploading the signature")?;
    }
    let config_json = serde_json::json!({
        "created": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
    });
    let config = Config {
        data: serde_json::to_vec(&config_json)?.into(),
        media_type: CONFIG_MEDIA_TYPE.to_string(),
        annotations: None,
    };
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.media_type = Some("application/vnd.oci.image.manifest.v1+json".to_string());
    client
        .push(reference, &layers, config, auth, Some(manifest))
        .await
        .context("uploading")?;
    client
        .fetch_manifest_digest(reference, auth)
        .await
        .context("reading back the manifest's digest")
}

/// Runs `f` to its end on a thread of its own, with a runtime of its own, within [`TIMEOUT`].
fn blocking<T: Send + 'static>(
    f: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            match tokio::time::timeout(TIMEOUT, f).await {
                Ok(r) => r,
                Err(_) => bail!("the registry did not answer within {} s", TIMEOUT.as_secs()),
            }
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the registry client panicked"))?
}

/// A buffer that refuses to grow past `max` bytes.
struct Capped {
    bytes: Vec<u8>,
    max: usize,
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.bytes.len() + buf.len() > self.max {
            let why = format!("the layer is longer than the cap of {} bytes", self.max);
            return Poll::Ready(Err(std::io::Error::other(why)));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_parsed_or_refused_with_the_form_named() {
        let r = parse("oci://127.0.0.1:5000/engines/np:1.0").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "engines/np");
        assert_eq!(r.tag(), Some("1.0"));
        let d = format!("oci://127.0.0.1:5000/np@sha256:{}", "a".repeat(64));
        assert!(parse(&d).unwrap().digest().is_some());
        assert!(parse("npreserving")
            .unwrap_err()
            .to_string()
            .contains("oci://"));
        assert!(parse("oci://np")
            .unwrap_err()
            .to_string()
            .contains("repository"));
    }
}
