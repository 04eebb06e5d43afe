//! `engine swap FILE.wasm` through a node that does not own the domain: the file is read
//! where the command runs and staged in the cluster's record, and the owner swaps in those
//! bytes by their sha256, never reading the path.

use crate::kit::cluster::Cluster;
use crate::kit::http::request;
use crate::kit::wait_for;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn an_engine_file_is_staged_by_the_node_it_is_given_to_and_swapped_in_by_the_owner() {
    let c = Cluster::start(2, 3);
    c.nodes[0]
        .epu
        .add_domain("e")
        .config("preserve_n=1")
        .flag("--pulse-ms", "200")
        .ok();
    c.wait_settled(&["e".to_string()], 1, Duration::from_secs(60));
    let owner_name = c.owners()["e"].clone();
    let owner = c.nodes.iter().find(|n| n.name == owner_name).unwrap();
    let other = c.nodes.iter().find(|n| n.name != owner_name).unwrap();

    // The test engine "faulty": bytes the owner has never seen.
    let built = PathBuf::from(env!("EPU_TEST_ENGINES_DIR")).join("faulty.wasm");
    let file = other.epu.dir.path().join("mine.wasm");
    std::fs::copy(&built, &file).unwrap();
    other
        .epu
        .ok(&["engine", "swap", "e", file.to_str().unwrap()]);
    let history: Value =
        serde_json::from_str(&other.epu.ok(&["engine", "history", "e", "--json"])).unwrap();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["name"], "mine", "{history}");
    let sha = last["sha"].as_str().expect("a sha").to_string();
    assert_ne!(history[0]["sha"], last["sha"], "{history}");

    // The owner takes a staged engine by its sha, whatever path names it.
    let addr = owner.cluster()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == owner_name.as_str())
        .unwrap()["addr"]
        .as_str()
        .unwrap()
        .to_string();
    let token = std::fs::read_to_string(owner.epu.state_dir().join("api-token")).unwrap();
    let body = json!({"engine": "/nowhere/ghost.wasm", "engine_sha": sha}).to_string();
    let (code, answer) = request(
        &addr,
        "POST",
        "/v1/domains/e/engine",
        Some(token.trim()),
        &body,
    );
    assert_eq!(code, 200, "{answer}");
    let body = json!({"engine": "/nowhere/ghost.wasm", "engine_sha": "0".repeat(64)});
    let (code, answer) = request(
        &addr,
        "POST",
        "/v1/domains/e/engine",
        Some(token.trim()),
        &body.to_string(),
    );
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("has no engine"), "{answer}");

    // A file that does not exist where the command runs is refused there, by its path.
    let missing = other.epu.dir.path().join("missing.wasm");
    let err = other
        .epu
        .fails(&["engine", "swap", "e", missing.to_str().unwrap()]);
    assert!(err.contains("missing.wasm"), "{err}");
    let ok = wait_for(Duration::from_secs(10), || {
        let v: Value =
            serde_json::from_str(&owner.epu.ok(&["engine", "history", "e", "--json"])).unwrap();
        v.as_array().unwrap().len() == 3
    });
    assert!(ok, "the domain should have 3 engine versions");
}
