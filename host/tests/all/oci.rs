//! Engines distributed by digest, through a real OCI registry on loopback (Debian's
//! `docker-registry`): push, pull by tag and by digest, a domain added and swapped by `oci://`
//! that keeps running with the registry gone, and a tampered blob, an unknown tag and a file
//! that is no component refused; a daemon that requires signatures, and its drop-in directory.

use crate::kit::registry::{Registry, PASSWORD, USER};
use crate::kit::{wait_for, DaemonGuard, Epu};
use base64::Engine as _;
use serde_json::Value;
use std::time::Duration;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn sha_of(epu: &Epu, engine: &str) -> String {
    json(&epu.ok(&["engine", "info", engine, "--json"]))["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn an_engine_is_pushed_pulled_by_tag_and_digest_and_run_from_the_registry() {
    let registry = Registry::start();
    let epu = Epu::new();
    let dir = tempfile::tempdir().unwrap();
    let tag = registry.reference("engines/npreserving:1.0");
    let pushed = json(&epu.ok(&["engine", "push", "npreserving", &tag, "--json"]));
    let digest = pushed["digest"].as_str().unwrap().to_string();
    let pinned = pushed["pinned"].as_str().unwrap().to_string();
    let sha = sha_of(&epu, "npreserving");
    assert!(digest.starts_with("sha256:"), "{pushed}");
    assert_eq!(pushed["sha256"], sha.as_str(), "{pushed}");
    assert!(
        pinned.ends_with(&format!("engines/npreserving@{digest}")),
        "{pushed}"
    );

    // By tag and by digest: the same component, byte for byte.
    for (name, reference) in [("by-tag", &tag), ("by-digest", &pinned)] {
        let out = dir.path().join(format!("{name}.wasm"));
        let out_s = out.to_str().unwrap();
        let pulled = json(&epu.ok(&["engine", "pull", reference, "-o", out_s, "--json"]));
        assert_eq!(pulled["digest"], digest.as_str(), "{pulled}");
        assert_eq!(pulled["sha256"], sha.as_str(), "{pulled}");
        assert_eq!(sha_of(&epu, out_s), sha);
    }

    // A plan may name it: `boot --validate` pulls and tries it.
    let plan = dir.path().join("plan");
    std::fs::create_dir(&plan).unwrap();
    let quickstart = crate::kit::repo().join("launch-plans/quickstart");
    for file in ["plan.toml", "worker.sh"] {
        let text = std::fs::read_to_string(quickstart.join(file)).unwrap();
        let text = text.replace(
            "engine = \"npreserving\"",
            &format!("engine = \"{pinned}\""),
        );
        std::fs::write(plan.join(file), text).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    let worker = plan.join("worker.sh");
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plan_toml = std::fs::read_to_string(plan.join("plan.toml")).unwrap();
    assert!(plan_toml.contains(&pinned), "{plan_toml}");
    let out = epu.ok(&["boot", "--validate", plan.to_str().unwrap()]);
    assert!(out.contains("accepts its config"), "{out}");

    // A domain runs it by its reference, and the store keeps the component by its digest.
    let daemon = epu.daemon();
    epu.add_domain("d")
        .engine(&tag)
        .config("preserve_n=2")
        .flag("--pulse-ms", "100")
        .ok();
    assert!(wait_for(Duration::from_secs(30), || epu
        .instances("d")
        .len()
        == 2));
    let history = json(&epu.ok(&["engine", "history", "d", "--json"]));
    assert_eq!(history[0]["name"], tag.as_str(), "{history}");
    assert_eq!(history[0]["sha"], sha.as_str(), "{history}");

    // A swap by digest to another engine pushed beside it.
    let queuelen = registry.reference("engines/queuelen:1");
    epu.ok(&["engine", "push", "queuelen", &queuelen]);
    epu.ok(&[
        "engine",
        "swap",
        "d",
        &queuelen,
        "-c",
        "queuelen_high_water=10",
        "-c",
        "queuelen_low_water=2",
    ]);
    assert_eq!(epu.domain("d")["engine"], queuelen.as_str());

    // With the registry gone, a restart runs on: nothing is resolved again.
    drop(registry);
    daemon.stop();
    let _daemon = epu.daemon();
    assert!(wait_for(Duration::from_secs(20), || {
        let d = epu.domain("d");
        d["engine"] == queuelen.as_str() && d["controller"]["decides"].as_u64() > Some(1)
    }));
}

#[test]
fn a_registry_that_requires_a_login_is_used_with_the_credentials_other_tools_keep() {
    let registry = Registry::start_with_login();
    let epu = Epu::new();
    let tag = registry.reference("engines/np:1");
    // No credentials: refused, saying where they go.
    let err = epu.fails(&["engine", "push", "npreserving", &tag]);
    assert!(
        err.contains("refused anonymous access") && err.contains("config.json"),
        "{err}"
    );
    // Docker's client config, as `docker login` writes it.
    let config = epu.docker_config();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let login = |password: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        let text = serde_json::json!({ "auths": { registry.addr.clone(): { "auth": auth } } });
        std::fs::write(&config, text.to_string()).unwrap();
    };
    login("wrong");
    let err = epu.fails(&["engine", "push", "npreserving", &tag]);
    assert!(err.contains("refused the credentials of 'epu'"), "{err}");

    login(PASSWORD);
    epu.ok(&["engine", "push", "npreserving", &tag]);
    let dir = tempfile::tempdir().unwrap();
    let pulled = dir.path().join("np.wasm");
    epu.ok(&["engine", "pull", &tag, "-o", pulled.to_str().unwrap()]);
    assert_eq!(
        sha_of(&epu, pulled.to_str().unwrap()),
        sha_of(&epu, "npreserving")
    );
    // The daemon reads the same file.
    let _daemon = epu.daemon();
    epu.add_domain("d").engine(&tag).config("preserve_n=1").ok();
    assert!(wait_for(Duration::from_secs(20), || epu
        .instances("d")
        .len()
        == 1));
}

#[test]
fn a_tampered_blob_an_unknown_tag_and_a_file_that_is_no_component_are_refused() {
    let registry = Registry::start();
    let epu = Epu::new();
    let dir = tempfile::tempdir().unwrap();
    let tag = registry.reference("engines/np:1");
    epu.ok(&["engine", "push", "npreserving", &tag]);
    let sha = sha_of(&epu, "npreserving");

    // Flip a byte of the stored layer: the pull is refused, and no file is written.
    let blob = registry.blob_path(&format!("sha256:{sha}"));
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let out = dir.path().join("np.wasm");
    let err = epu.fails(&["engine", "pull", &tag, "-o", out.to_str().unwrap()]);
    assert!(err.contains("digest") || err.contains("sha256"), "{err}");
    assert!(!out.exists());
    // A daemon refuses it as well, and keeps nothing.
    let _daemon = epu.daemon();
    let refused = epu
        .add_domain("d")
        .engine(&tag)
        .config("preserve_n=1")
        .run();
    assert!(!refused.status.success());
    assert!(epu.status()["domains"].as_array().unwrap().is_empty());

    let err = epu.fails(&[
        "engine",
        "pull",
        &registry.reference("engines/np:no-such-tag"),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("no-such-tag"), "{err}");

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not a component").unwrap();
    let err = epu.fails(&[
        "engine",
        "push",
        junk.to_str().unwrap(),
        &registry.reference("engines/junk:1"),
    ]);
    assert!(err.contains("not WebAssembly"), "{err}");
    let err = epu.fails(&["engine", "push", "npreserving", "oci://no-repository"]);
    assert!(err.contains("repository"), "{err}");
}

#[test]
fn a_daemon_that_requires_signatures_runs_only_engines_signed_with_its_key() {
    let registry = Registry::start();
    let epu = Epu::new();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let engine = path("faulty.wasm");
    let fixture = std::path::PathBuf::from(env!("EPU_TEST_ENGINES_DIR")).join("faulty.wasm");
    std::fs::copy(&fixture, &engine).unwrap();
    // Other bytes than the signed engine's: a signature is of a component's content, so the
    // same bytes pushed under another tag would find it.
    let unsigned = path("unsigned.wasm");
    std::fs::copy(fixture.with_file_name("hostile-wasi.wasm"), &unsigned).unwrap();

    let key = path("engines.key");
    epu.ok(&["engine", "keygen", &key]);
    let public = format!("{key}.pub");
    let other = path("other.key");
    epu.ok(&["engine", "keygen", &other]);
    assert!(epu
        .fails(&["engine", "keygen", &key])
        .contains("never overwritten"));
    epu.ok(&["engine", "sign", &engine, "--key", &key]);
    let sig = format!("{engine}.minisig");
    epu.ok(&["engine", "verify", &engine, "--key", &public]);
    // The signature is minisign's own: the minisign tool checks it.
    let checked = std::process::Command::new("minisign")
        .args(["-V", "-q", "-p", &public, "-m", &engine])
        .status()
        .expect("minisign is installed by ./dev.sh setup");
    assert!(checked.success());
    let err = epu.fails(&[
        "engine",
        "verify",
        &engine,
        "--key",
        &format!("{other}.pub"),
    ]);
    assert!(err.contains("does not verify"), "{err}");

    // Pushed with its signature, pulled with it; an unsigned push has none.
    let signed_ref = registry.reference("engines/faulty:signed");
    let unsigned_ref = registry.reference("engines/faulty:unsigned");
    let pushed = json(&epu.ok(&["engine", "push", &engine, &signed_ref, "--json"]));
    assert_eq!(pushed["signed"], true, "{pushed}");
    let pushed = json(&epu.ok(&["engine", "push", &unsigned, &unsigned_ref, "--json"]));
    assert_eq!(pushed["signed"], false, "{pushed}");
    epu.ok(&["engine", "verify", &signed_ref, "--key", &public]);
    let pulled = path("pulled.wasm");
    let v = json(&epu.ok(&["engine", "pull", &signed_ref, "-o", &pulled, "--json"]));
    assert_eq!(v["signed"], true, "{v}");
    epu.ok(&["engine", "verify", &pulled, "--key", &public]);

    let _daemon = DaemonGuard {
        child: epu.spawn_with(&["daemon", "--require-signed", &public]),
        state_dir: epu.state_dir(),
    };
    let add = |name: &str, spec: &str| {
        epu.add_domain(name)
            .engine(spec)
            .flag("--pulse-ms", "100")
            .run()
    };
    for (spec, why) in [
        (unsigned.as_str(), "not signed"),
        (unsigned_ref.as_str(), "not signed"),
    ] {
        let out = add("refused", spec);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{spec}: {err}");
    }
    // A signature by another key, or of other bytes, is refused too.
    let stranger = path("stranger.wasm");
    std::fs::copy(fixture.with_file_name("hostile-spin.wasm"), &stranger).unwrap();
    epu.ok(&["engine", "sign", &stranger, "--key", &other]);
    let out = add("refused", &stranger);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not verify"));
    std::fs::copy(&sig, format!("{unsigned}.minisig")).unwrap();
    let mut bytes = std::fs::read(&unsigned).unwrap();
    bytes.push(0);
    std::fs::write(&unsigned, bytes).unwrap();
    let out = add("refused", &unsigned);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not verify"));
    assert!(epu.status()["domains"].as_array().unwrap().is_empty());

    // Signed engines, by file and by reference, and the bundled ones, run.
    assert!(add("file", &engine).status.success());
    assert!(add("oci", &signed_ref).status.success());
    assert!(add("bundled", "npreserving").status.success());
    assert_eq!(epu.status()["domains"].as_array().unwrap().len(), 3);
    let err = epu.fails(&["engine", "swap", "bundled", &unsigned_ref]);
    assert!(err.contains("not signed"), "{err}");

    // The drop-in directory: a new version of `faulty` copied in without its signature is
    // refused; the signature copied in after it makes it tried again, and it goes live.
    let dropped = epu.state_dir().join("plugins").join("faulty.wasm");
    let before = epu.domain("file")["engine_sha"].clone();
    std::fs::copy(fixture.with_file_name("hostile-wasi.wasm"), &dropped).unwrap();
    assert!(wait_for(Duration::from_secs(10), || epu
        .events("file", Some("swap-rejected"))
        .iter()
        .any(|e| e.to_string().contains("not signed"))));
    assert_eq!(epu.domain("file")["engine_sha"], before);
    epu.ok(&["engine", "sign", dropped.to_str().unwrap(), "--key", &key]);
    assert!(wait_for(Duration::from_secs(10), || epu.domain("file")
        ["engine_sha"]
        != before));
}
