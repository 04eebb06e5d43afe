//! The web dashboard in a real browser: Debian's chromium, driven by playwright-core
//! (`tests/browser/dashboard.mjs`) against a daemon that runs the quickstart plan, beside a
//! domain whose engine is quarantined and one whose workers crash as they start.
// Needs chromium and playwright-core: run with `--features services` (host/tests/README.md).

use crate::kit;

use kit::{repo, wait_for, Epu};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_dashboard_shows_the_pool_its_instances_events_and_reasons_and_acts_on_them() {
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
    let booted = epu.ok(&["boot", plan.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    // The boot says where the dashboard is and where its token is.
    let addr = std::fs::read_to_string(epu.state_dir().join("listen.addr")).unwrap();
    let url = format!("http://{}/", addr.trim());
    assert!(
        booted.contains(&format!("dashboard: {url}")) && booted.contains("api-token"),
        "{booted}"
    );
    epu.wait_running("workers", 3);
    let faulty = PathBuf::from(env!("EPU_TEST_ENGINES_DIR")).join("faulty.wasm");
    epu.add_domain("broken")
        .engine(&faulty)
        .config("mode=trap")
        .options(&["--pulse-ms", "200", "--quarantine-after", "2"])
        .ok();
    epu.add_domain("crashy")
        .config("preserve_n=1")
        .options(&["--pulse-ms", "300"])
        .command(&["/bin/sh", "-c", "echo no config; exit 2"])
        .ok();
    assert!(wait_for(Duration::from_secs(30), || {
        epu.domain("broken")["controller"]["quarantined"] == true
            && epu.domain("crashy")["controller"]["backoff_ms"].as_u64() > Some(0)
    }));
    let token = std::fs::read_to_string(epu.state_dir().join("api-token")).unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let stages = ["overview", "quarantine", "crash-loop"];
    let shot = |stage: &str| PathBuf::from(format!("{}-{stage}.png", shots.display()));
    for stage in stages {
        let _ = std::fs::remove_file(shot(stage));
    }

    let run = Command::new("node")
        .arg(browser.join("dashboard.mjs"))
        .arg(&url)
        .arg(token.trim())
        .arg(&shots)
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
    let text = |key: &str| seen[key].as_str().unwrap_or_default().to_string();
    assert!(text("bad_login").contains("refused"));
    assert!(text("before").contains("3 (3 running)"), "{seen}");
    assert!(text("after").contains("5 (5 running)"), "{seen}");
    let chart: serde_json::Value = serde_json::from_str(&text("chart")).unwrap();
    assert_eq!(chart["running"], 5);
    assert_eq!(text("target"), "5", "the chart draws the engine's target");
    // The reconfigure form came from the schema npreserving declares.
    let keys = seen["form_keys"].as_array().unwrap();
    for k in [
        "preserve_n",
        "devmode_no_failure_compensation",
        "unique_instances",
    ] {
        assert!(keys.contains(&k.into()), "the form has {k}: {seen}");
    }
    let field = &seen["form_field"];
    assert_eq!(field["type"], "number", "{field}");
    assert_eq!(field["min"], "0", "{field}");
    assert_eq!(field["step"], "1", "{field}");
    assert_eq!(field["value"], "3", "{field}");
    assert!(text("form_row").contains("healthy instances"), "{seen}");
    assert!(text("form_about").contains("npreserving"), "{seen}");
    let error = text("error");
    assert!(
        error.contains("preserve_n"),
        "the page's error names the key: {error}"
    );
    assert!(
        seen["events"].as_u64().unwrap() > 0,
        "recent events are shown"
    );
    // An instance's row: its state, health, age and pid.
    let row = text("instance_row");
    assert!(
        row.contains("running") && row.contains("ok") && row.contains("pid "),
        "{row}"
    );
    assert!(
        text("sentence").starts_with("The config changed to version 2"),
        "{seen}"
    );
    assert!(text("raw").contains("\"kind\": \"reconfigured\""), "{seen}");
    assert!(
        text("destroy_sentence").contains("destroyed by operator"),
        "{seen}"
    );
    assert!(seen["history"].as_u64().unwrap() >= 1, "{seen}");
    assert!(
        text("quarantine").contains("Quarantined: the engine faulted"),
        "{seen}"
    );
    assert!(text("resumed").contains("\"resumed\":true"), "{seen}");
    assert!(
        text("crash_loop").contains("Crash loop: new workers fail as they start"),
        "{seen}"
    );
    assert_eq!(seen["runs"], 1, "the quickstart run is shown: {seen}");
    assert!(text("logged_out").contains("logged out"), "{seen}");

    // The page's changes went through the same API: the store has them.
    assert_eq!(epu.wait_running("workers", 5).len(), 5);
    let workers = epu.domain("workers");
    assert_eq!(workers["config"]["preserve_n"], 5);
    let protected = text("protected");
    let instances = workers["instances"].as_array().unwrap();
    assert!(
        instances
            .iter()
            .any(|i| i["id"] == protected.as_str() && i["protected"] == true),
        "{workers}"
    );
    assert!(
        !instances.iter().any(|i| i["id"] == seen["destroyed"]),
        "the destroyed instance is gone: {workers}"
    );
    for stage in stages {
        let png = std::fs::read(shot(stage)).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
            "{}",
            shot(stage).display()
        );
        eprintln!("screenshot: {}", shot(stage).display());
    }
}
