//! Queue-length scaling on a real RabbitMQ: the queue-workers plan's real AMQP workers, the
//! bundled queuelen engine, and the AMQP queue-depth sensor.
// Needs RabbitMQ: run with `--features services` (host/tests/README.md).

use crate::kit;

use kit::amqp::{self, PrivateBroker};
use kit::{wait_for, Epu};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// Adds a queuelen domain `name` whose workers are the plan's queue workers on `queue`, with
/// an AMQP sensor polled every 200 ms, the engine config `config` (KEY=VALUE) and `env`.
fn add_queue_domain(
    epu: &Epu,
    name: &str,
    url: &str,
    queue: &str,
    config: &[&str],
    env: &[String],
) {
    let sensor = format!("kind=amqp,name=queue-length,url={url},queue={queue},interval_ms=200");
    let worker = kit::repo().join("launch-plans/queue-workers/worker.sh");
    let mut add = epu
        .add_domain(name)
        .engine("queuelen")
        .flag("--sensor", &sensor);
    for c in config {
        add = add.config(c);
    }
    let mut env = env.to_vec();
    env.extend([format!("QUEUE={queue}"), format!("AMQP_URL={url}")]);
    for e in &env {
        add = add.flag("--env", e);
    }
    add.flag("--boot-timeout", "30").command(&[worker]).ok();
}

/// Asserts that every message `<prefix>-<n>`, n < count, was acked exactly once.
fn assert_each_consumed_once(done_log: &Path, prefix: &str, count: u32) -> Vec<(String, bool)> {
    let done = amqp::consumed(done_log);
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for (body, _) in &done {
        *seen.entry(body).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "consumed more than once: {twice:?}");
    let missing: Vec<String> = (0..count)
        .map(|n| format!("{prefix}-{n}"))
        .filter(|b| !seen.contains_key(b.as_str()))
        .collect();
    assert!(missing.is_empty(), "never consumed: {missing:?}");
    assert_eq!(done.len(), count as usize);
    done
}

/// The queue-workers plan, pointed at its own queue and with a done log, in `dir`.
fn plan_copy(dir: &Path, queue: &str, done_log: &Path) {
    let plan_dir = kit::repo().join("launch-plans/queue-workers");
    let text = std::fs::read_to_string(plan_dir.join("plan.toml"))
        .unwrap()
        .replace("\"epu-work\"", &format!("\"{queue}\""))
        .replace("./worker.sh", plan_dir.join("worker.sh").to_str().unwrap())
        .replace(
            "HEARTBEAT_MS = \"1000\"",
            &format!(
                "HEARTBEAT_MS = \"1000\", DONE_LOG = \"{}\"",
                done_log.display()
            ),
        );
    assert!(text.contains(queue) && text.contains("DONE_LOG"), "{text}");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("plan.toml"), text).unwrap();
}

#[test]
fn a_burst_grows_the_pool_then_it_drains_back_to_the_minimum_and_each_message_is_consumed_once() {
    let url = amqp::shared_url();
    let epu = Epu::new();
    let queue = amqp::unique_queue("burst");
    let done_log = epu.dir.path().join("done.log");
    let plan = epu.dir.path().join("plan");
    plan_copy(&plan, &queue, &done_log);
    epu.ok(&["boot", plan.to_str().unwrap()]);
    epu.wait_running("queue-workers", 1);

    // 200 messages of 250 ms each: far above high water (20) for one worker.
    let count = 200;
    amqp::publish(&url, &queue, count, "burst");
    let mut most = 0;
    let mut backlog_seen = 0.0f64;
    let grew = wait_for(Duration::from_secs(60), || {
        let backlog = epu.sensor("queue-workers", "queue-length")["value"]
            .as_f64()
            .unwrap_or(0.0);
        backlog_seen = backlog_seen.max(backlog);
        if backlog > 20.0 {
            most = most.max(epu.instances("queue-workers").len());
        }
        most >= 3
    });
    assert!(
        grew,
        "the pool did not grow under a backlog (largest backlog read {backlog_seen}, most workers {most})"
    );

    // The drain: back to the minimum of 1 with an empty queue.
    let drained = wait_for(Duration::from_secs(90), || {
        let s = epu.sensor("queue-workers", "queue-length");
        s["value"] == 0.0 && s["stale"] == false && epu.instances("queue-workers").len() == 1
    });
    assert!(
        drained,
        "not back to 1 worker: {:?}, sensor {}",
        epu.instances("queue-workers"),
        epu.sensor("queue-workers", "queue-length")
    );
    assert_each_consumed_once(&done_log, "burst", count);

    // Every scaling decision names the reading it was taken on.
    let events = epu.ok(&["events", "--json", "--domain", "queue-workers"]);
    let launches = events
        .lines()
        .filter(|l| l.contains("\"kind\":\"decision\"") && l.contains("queue-length"))
        .count();
    assert!(launches >= 2, "{events}");
}

#[test]
fn workers_destroyed_mid_work_lose_no_message() {
    let url = amqp::shared_url();
    let epu = Epu::new();
    let queue = amqp::unique_queue("midwork");
    let done_log = epu.dir.path().join("done.log");
    let _daemon = epu.daemon();
    let done = format!("DONE_LOG={}", done_log.display());
    add_queue_domain(
        &epu,
        "busy",
        &url,
        &queue,
        &[
            "queuelen_high_water=1000",
            "queuelen_low_water=0",
            "min_instances=4",
        ],
        &["WORK_MS=300".into(), done],
    );
    epu.wait_running("busy", 4);
    let count = 60;
    amqp::publish(&url, &queue, count, "mid");
    assert!(wait_for(Duration::from_secs(30), || amqp::consumed(
        &done_log
    )
    .len()
        >= 8));

    // Shrink to 1 while every worker is busy: each destroyed worker drops the message it holds.
    epu.ok(&[
        "reconfigure",
        "busy",
        "min_instances=1",
        "queuelen_low_water=500",
        "queuelen_high_water=1000",
    ]);
    assert!(
        wait_for(Duration::from_secs(30), || epu.instances("busy").len() == 1),
        "did not shrink: {:?}",
        epu.instances("busy")
    );
    assert!(
        wait_for(Duration::from_secs(60), || amqp::consumed(&done_log).len()
            >= count as usize),
        "only {} of {count} consumed",
        amqp::consumed(&done_log).len()
    );
    std::thread::sleep(Duration::from_millis(500));
    let done = assert_each_consumed_once(&done_log, "mid", count);
    let redelivered = done.iter().filter(|(_, again)| *again).count();
    assert!(
        redelivered >= 1,
        "no message was taken from a destroyed worker and redelivered"
    );
}

#[test]
fn a_broker_outage_holds_the_count_and_scaling_resumes_when_it_returns() {
    let mut broker = PrivateBroker::start();
    let url = broker.url();
    let epu = Epu::new();
    let queue = amqp::unique_queue("outage");
    let _daemon = epu.daemon();
    add_queue_domain(
        &epu,
        "q",
        &url,
        &queue,
        &[
            "queuelen_high_water=5",
            "queuelen_low_water=1",
            "min_instances=1",
            "max_instances=3",
        ],
        &["WORK_MS=1000".into()],
    );
    epu.wait_running("q", 1);
    amqp::publish(&url, &queue, 30, "outage");
    assert!(
        wait_for(Duration::from_secs(30), || epu.instances("q").len() == 3),
        "did not grow to 3: {:?}",
        epu.instances("q")
    );

    let failures = || {
        epu.ok(&["events", "--json", "--domain", "q"])
            .matches("\"sensor-failed\"")
            .count()
    };
    // (The queue may not have existed at the first poll: that counts as a failure too.)
    let failures_before = failures();
    broker.stop();
    let stale = wait_for(Duration::from_secs(20), || {
        epu.sensor("q", "queue-length")["stale"] == true
    });
    assert!(
        stale,
        "the reading did not turn stale: {}",
        epu.sensor("q", "queue-length")
    );
    let s = epu.sensor("q", "queue-length");
    assert!(s["error"].as_str().is_some_and(|e| !e.is_empty()), "{s}");
    // The count holds while the broker is away, and the daemon keeps answering.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(epu.instances("q").len(), 3);
    }
    assert_eq!(failures(), failures_before + 1, "one event per outage");

    broker.restart();
    let recovered = wait_for(Duration::from_secs(30), || {
        epu.sensor("q", "queue-length")["stale"] == false
    });
    assert!(recovered, "no fresh reading after the broker came back");
    assert!(epu
        .ok(&["events", "--json", "--domain", "q"])
        .contains("\"sensor-recovered\""));
    // The durable queue kept its messages; the workers reconnect and drain it, and the pool
    // scales back down to its minimum.
    let drained = wait_for(Duration::from_secs(120), || {
        epu.sensor("q", "queue-length")["value"] == 0.0 && epu.instances("q").len() == 1
    });
    assert!(
        drained,
        "scaling did not resume: {:?}, {}",
        epu.instances("q"),
        epu.sensor("q", "queue-length")
    );
}
