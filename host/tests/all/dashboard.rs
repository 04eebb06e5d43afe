//! The web dashboard in a real browser: Debian's chromium, driven by playwright-core
//! (`tests/browser/dashboard.mjs`) against a daemon that runs the quickstart plan.
// Needs chromium and playwright-core: run with `--features services` (host/tests/README.md).

use crate::kit;

use kit::{repo, Epu};
use std::process::Command;

#[test]
fn the_dashboard_logs_in_shows_the_pool_follows_a_reconfigure_and_shows_errors() {
    let browser = repo().join("host/tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in {} (./dev.sh test does)",
        browser.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no chromium at {chromium}: apt-get install chromium (./dev.sh test does)"
    );
    let epu = Epu::new();
    let plan = repo().join("launch-plans/quickstart");
    epu.ok_with_env(
        &["boot", plan.to_str().unwrap()],
        &[("EPU_LISTEN", "127.0.0.1:0")],
    );
    epu.wait_running("workers", 3);
    let addr = std::fs::read_to_string(epu.state_dir().join("listen.addr")).unwrap();
    let token = std::fs::read_to_string(epu.state_dir().join("api-token")).unwrap();
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);

    let run = Command::new("node")
        .arg(browser.join("dashboard.mjs"))
        .arg(format!("http://{}/", addr.trim()))
        .arg(token.trim())
        .arg(&shot)
        .env("CHROMIUM", &chromium)
        .current_dir(&browser)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the browser run failed: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(seen["bad_login"].as_str().unwrap().contains("refused"));
    assert!(
        seen["before"].as_str().unwrap().contains("3 (3 running)"),
        "{seen}"
    );
    assert!(
        seen["after"].as_str().unwrap().contains("5 (5 running)"),
        "{seen}"
    );
    let chart: serde_json::Value = serde_json::from_str(seen["chart"].as_str().unwrap()).unwrap();
    assert_eq!(chart["running"], 5);
    let error = seen["error"].as_str().unwrap();
    assert!(
        error.contains("preserve_n"),
        "the page's error names the key: {error}"
    );
    assert!(
        seen["events"].as_u64().unwrap() > 0,
        "recent events are shown"
    );

    // The page's changes went through the same API: the store has them.
    assert_eq!(epu.wait_running("workers", 5).len(), 5);
    let status = epu.status();
    assert_eq!(status["domains"][0]["config"]["preserve_n"], 5);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{}",
        shot.display()
    );
    eprintln!("screenshot: {}", shot.display());
}
