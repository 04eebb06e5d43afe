//! The `ec2` driver against moto's EC2 server (a real HTTP implementation of the EC2 API on
//! 127.0.0.1), with simulated workers sending heartbeats to the daemon's TCP listener.
// Needs moto's EC2 server: run with `--features services` (host/tests/README.md).

use crate::kit;

use kit::moto::{self, CloudInstance, Moto, Proxy};
use kit::{wait_for, Epu};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Waits until `domain` has `n` running, healthy instances in the store and `n` up in the
/// cloud; returns the store's instance ids.
fn wait_pool(epu: &Epu, cloud: &Moto, domain: &str, n: usize) -> Vec<String> {
    let ok = wait_for(Duration::from_secs(60), || {
        let live = epu.instances(domain);
        live.len() == n
            && live
                .iter()
                .all(|i| i.state == "running" && i.health == "ok")
            && cloud.instances(domain).iter().filter(|c| c.is_up()).count() == n
    });
    assert!(
        ok,
        "expected {n} running instances of {domain}: store {:?}, cloud {:?}",
        epu.instances(domain),
        cloud.instances(domain)
    );
    epu.instances(domain).into_iter().map(|i| i.id).collect()
}

/// The launches that made more than one cloud instance: `epu:instance` tag → instances.
fn doubled(cloud: &Moto, domain: &str) -> HashMap<String, Vec<CloudInstance>> {
    let mut seen: HashMap<String, Vec<CloudInstance>> = HashMap::new();
    for c in cloud.instances(domain) {
        if let Some(owner) = c.owner.clone() {
            seen.entry(owner).or_default().push(c);
        }
    }
    seen.retain(|_, copies| copies.len() > 1);
    seen
}

/// Asserts that no launch made two cloud instances: every `epu:instance` tag is on one
/// instance at most, whatever its state.
fn assert_no_duplicates(cloud: &Moto, domain: &str) {
    let doubled = doubled(cloud, domain);
    assert!(doubled.is_empty(), "launched twice: {doubled:?}");
}

fn events(epu: &Epu, domain: &str) -> Vec<Value> {
    epu.ok(&["events", "--json", "--domain", domain])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn npreserving_on_ec2_keeps_n_replaces_a_terminated_instance_and_goes_to_zero() {
    let cloud = Moto::start();
    let _workers = cloud.heartbeats();
    let epu = Epu::new();
    let (_daemon, _) = moto::daemon(&epu);
    moto::boot_domain(&epu, "fleet", 3, &cloud.url, "");
    let first = wait_pool(&epu, &cloud, "fleet", 3);

    // Tags name the domain, the instance and the run.
    let tagged = cloud.instances("fleet");
    assert!(tagged
        .iter()
        .all(|c| first.contains(c.owner.as_ref().unwrap())));

    // Terminated behind epu's back, through the EC2 API: replaced.
    let victim = tagged[0].clone();
    cloud.terminate(&victim.id);
    let ok = wait_for(Duration::from_secs(60), || {
        let live = epu.instances("fleet");
        live.len() == 3
            && live.iter().all(|i| i.state == "running")
            && !live.iter().any(|i| Some(&i.id) == victim.owner.as_ref())
    });
    assert!(ok, "not replaced: {:?}", epu.instances("fleet"));
    wait_pool(&epu, &cloud, "fleet", 3);
    let victim_events: Vec<Value> = events(&epu, "fleet")
        .into_iter()
        .filter(|e| e["instance"].as_str() == victim.owner.as_deref() && e["kind"] == "state")
        .collect();
    assert_eq!(victim_events.last().unwrap()["detail"]["to"], "terminated");

    // Reconfigured to 0: every instance is terminated in the cloud.
    epu.ok(&["reconfigure", "fleet", "preserve_n=0"]);
    let gone = wait_for(Duration::from_secs(60), || {
        epu.instances("fleet").is_empty()
            && cloud
                .instances("fleet")
                .iter()
                .all(|c| c.state == "terminated")
    });
    assert!(
        gone,
        "store {:?}, cloud {:?}",
        epu.instances("fleet"),
        cloud.instances("fleet")
    );
    assert_eq!(cloud.instances("fleet").len(), 4);
    assert_no_duplicates(&cloud, "fleet");
}

#[test]
fn a_crash_before_or_during_run_instances_launches_nothing_twice() {
    let cloud = Moto::start();
    let _workers = cloud.heartbeats();
    let epu = Epu::new();
    let proxy = Proxy::start(&cloud.url, epu.dir.path());

    // 1. The daemon dies after recording the launch, before RunInstances reaches the cloud.
    proxy.mode("hang-run");
    let (daemon, listen) = moto::daemon(&epu);
    moto::boot_domain(&epu, "crashy", 1, &proxy.url, "call_timeout_ms = 60000");
    assert!(wait_for(Duration::from_secs(30), || proxy.stats()
        ["run-hung"]
        == 1));
    let recorded: Vec<String> = epu.instances("crashy").into_iter().map(|i| i.id).collect();
    assert_eq!(recorded.len(), 1);
    daemon.kill9();
    assert!(cloud.instances("crashy").is_empty());
    proxy.mode("pass");
    let (daemon, _) = moto::daemon_on(&epu, &listen);
    let ids = wait_pool(&epu, &cloud, "crashy", 1);
    assert_eq!(
        ids, recorded,
        "the recorded launch is the one that was carried out"
    );
    assert_eq!(cloud.instances("crashy").len(), 1);

    // 2. The daemon dies after RunInstances launched the instance, before the answer came.
    proxy.mode("lose-run");
    epu.ok(&["reconfigure", "crashy", "preserve_n=2"]);
    assert!(wait_for(Duration::from_secs(30), || proxy.stats()
        ["run-lost"]
        == 1));
    daemon.kill9();
    assert_eq!(
        cloud.instances("crashy").len(),
        2,
        "the lost launch did reach the cloud"
    );
    proxy.mode("pass");
    let (_daemon, _) = moto::daemon_on(&epu, &listen);
    wait_pool(&epu, &cloud, "crashy", 2);
    assert_eq!(
        cloud.instances("crashy").len(),
        2,
        "{:?}",
        cloud.instances("crashy")
    );
    assert_no_duplicates(&cloud, "crashy");
}

#[test]
fn a_tagged_stray_and_a_second_copy_are_ended_and_an_untagged_one_is_left_alone() {
    let cloud = Moto::start();
    let _workers = cloud.heartbeats();
    let epu = Epu::new();
    let (_daemon, _) = moto::daemon(&epu);
    moto::boot_domain(&epu, "reaped", 1, &cloud.url, "reap_after_s = 1");
    let ids = wait_pool(&epu, &cloud, "reaped", 1);
    let original = cloud.instances("reaped")[0].id.clone();
    let untagged = cloud.plant(&[]);
    let tagged = cloud.plant(&[("epu:domain", "reaped"), ("epu:instance", "i-planted")]);
    // A second cloud instance for the same launch, as a cloud without client-token
    // idempotency can make: the recorded one stays, the copy is ended.
    let copy = cloud.plant(&[("epu:domain", "reaped"), ("epu:instance", &ids[0])]);
    let ended = wait_for(Duration::from_secs(30), || {
        cloud.state(&copy) == "terminated"
    });
    assert!(ended, "the copy is {}", cloud.state(&copy));
    assert_eq!(cloud.state(&original), "running");
    let reaped = wait_for(Duration::from_secs(30), || {
        cloud.state(&tagged) == "terminated"
    });
    assert!(reaped, "the tagged stray is {}", cloud.state(&tagged));
    let copies = events(&epu, "reaped")
        .into_iter()
        .filter(|e| e["kind"] == "duplicate-terminated")
        .collect::<Vec<_>>();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0]["detail"]["terminated"], copy.as_str());
    let event = events(&epu, "reaped")
        .into_iter()
        .find(|e| e["kind"] == "stray-reaped")
        .expect("a stray-reaped event");
    assert_eq!(event["detail"]["cloud_id"], tagged.as_str());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(cloud.state(&untagged), "running");
    // The domain's own instance was not touched.
    wait_pool(&epu, &cloud, "reaped", 1);
}

#[test]
fn faults_between_epu_and_the_cloud_are_ridden_out_without_duplicates() {
    let cloud = Moto::start();
    let _workers = cloud.heartbeats();
    let epu = Epu::new();
    let proxy = Proxy::start(&cloud.url, epu.dir.path());
    proxy.mode("chaos:7");
    let (_daemon, _) = moto::daemon(&epu);
    moto::boot_domain(
        &epu,
        "stormy",
        4,
        &proxy.url,
        "call_timeout_ms = 1000\nmax_attempts = 8",
    );
    let first = wait_pool(&epu, &cloud, "stormy", 4);
    // Two instances die; their replacements go through the storm too.
    for c in cloud.instances("stormy").iter().take(2) {
        cloud.terminate(&c.id);
    }
    let ok = wait_for(Duration::from_secs(90), || {
        let live = epu.instances("stormy");
        live.len() == 4
            && live.iter().all(|i| i.state == "running")
            && live.iter().filter(|i| first.contains(&i.id)).count() == 2
    });
    assert!(ok, "store {:?}", epu.instances("stormy"));
    wait_pool(&epu, &cloud, "stormy", 4);
    // moto has no client-token idempotency (AWS has): a RunInstances that timed out but
    // still reached it after the retry's look by tag doubles a launch. The poller must end
    // every extra copy, and say so; at most one copy of a launch stays up.
    let settled = wait_for(Duration::from_secs(30), || {
        doubled(&cloud, "stormy")
            .values()
            .all(|copies| copies.iter().filter(|c| c.is_up()).count() <= 1)
    });
    assert!(
        settled,
        "a doubled launch still has two live copies: {:?}",
        doubled(&cloud, "stormy")
    );
    let extras: usize = doubled(&cloud, "stormy")
        .values()
        .map(|c| c.len() - 1)
        .sum();
    let ended = events(&epu, "stormy")
        .iter()
        .filter(|e| e["kind"] == "duplicate-terminated")
        .count();
    assert_eq!(ended, extras, "every extra copy was ended by epu");
    assert_eq!(cloud.instances("stormy").len(), 6 + extras);
    eprintln!("launches doubled by the storm and ended by epu: {extras}");
    // The storm was real: every kind of fault was injected.
    let stats = proxy.stats();
    eprintln!("faults injected: {stats}");
    for kind in ["500-before", "500-after", "throttled", "slow"] {
        assert!(
            stats[kind].as_u64().unwrap_or(0) > 0,
            "no {kind} in {stats}"
        );
    }
}

#[test]
fn the_ec2_moto_plan_boots_keeps_three_instances_and_terminates_to_nothing() {
    let epu = Epu::new();
    let plan = kit::repo().join("launch-plans/ec2-moto");
    let python = moto::python();
    let out = epu.ok_with_env(
        &["boot", plan.to_str().unwrap(), "--json"],
        &[
            ("EPU_LISTEN", "127.0.0.1:0"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("EPU_MOTO_PYTHON", python.to_str().unwrap()),
        ],
    );
    let booted: serde_json::Value = serde_json::from_str(&out).unwrap();
    let moto_pid = booted["services"][0]["pid"].as_i64().unwrap() as i32;
    let workers = epu.wait_running("cloud-workers", 3);
    assert!(
        workers.iter().all(|w| w.pid.is_none()),
        "cloud instances have no pid"
    );
    let found = epu.ok(&["find-workers", "ec2-moto"]);
    assert_eq!(
        found.matches(" i-").count(),
        3 * 2,
        "worker and cloud ids: {found}"
    );
    epu.ok(&["terminate", "ec2-moto"]);
    assert!(!kit::is_alive(moto_pid), "moto is still running");
    assert!(epu.service_processes().is_empty());
    let history = epu.ok(&["history", "ec2-moto"]);
    assert_eq!(history.matches("to=terminated").count(), 3, "{history}");
}

/// The crash-restart torture on the `ec2` driver, checked against the EC2 API: each round
/// reconfigures the fleet up and down and terminates instances behind epu's back, `kill -9`s
/// the daemon at a random moment and restarts it. After each restart: no cloud instance is up
/// that the store does not know as live (or it is reaped), no launch made two instances, the
/// store's running instances are up in the cloud, the config is as last acknowledged, and the
/// event log has no gap. `EPU_TORTURE_EC2_ROUNDS` (default 5) and `EPU_TORTURE_SEED` replay it.
#[test]
fn crash_restart_torture_on_ec2_doubles_and_leaks_nothing() {
    let kit::seeded::Run {
        rounds,
        seed,
        replay,
    } = kit::seeded::Run::from_env("EPU_TORTURE_EC2_ROUNDS", 5);
    eprintln!("ec2 torture: {rounds} rounds ({replay})");
    let mut rng = kit::seeded::Rng(seed);
    let mut random = move |n: u64| rng.next() % n;

    let cloud = Moto::start();
    let _workers = cloud.heartbeats();
    let epu = Epu::new();
    let listen = format!("127.0.0.1:{}", kit::free_port());
    let (mut daemon, _) = moto::daemon_on(&epu, &listen);
    moto::boot_domain(&epu, "storm", 2, &cloud.url, "reap_after_s = 2");
    wait_pool(&epu, &cloud, "storm", 2);
    let db = epu.state_dir().join("epu.db");
    let mut n = 2u64;
    let mut violations = Vec::new();
    let mut checks = 0u64;

    for round in 1..=rounds {
        let mut maybe = None;
        for _ in 0..random(4) + 1 {
            match random(3) {
                0 | 1 => {
                    let want = random(5);
                    maybe = Some(want);
                    if epu
                        .run(&["reconfigure", "storm", &format!("preserve_n={want}")])
                        .status
                        .success()
                    {
                        n = want;
                        maybe = None;
                    }
                }
                _ => {
                    let up: Vec<CloudInstance> = cloud
                        .instances("storm")
                        .into_iter()
                        .filter(CloudInstance::is_up)
                        .collect();
                    if !up.is_empty() {
                        cloud.terminate(&up[random(up.len() as u64) as usize].id);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(random(800)));
        }
        daemon.kill9();
        (daemon, _) = moto::daemon_on(&epu, &listen);

        let mut bad = Vec::new();
        let config = epu.status()["domains"][0]["config"]["preserve_n"].as_u64();
        checks += 1;
        match (config, maybe) {
            (Some(c), _) if c == n => {}
            (Some(c), Some(m)) if c == m => n = m,
            _ => bad.push(format!("preserve_n is {config:?}, last acknowledged {n}")),
        }
        let settled = wait_for(Duration::from_secs(60), || {
            let live: Vec<kit::Instance> = epu.instances("storm");
            let up: Vec<CloudInstance> = cloud
                .instances("storm")
                .into_iter()
                .filter(CloudInstance::is_up)
                .collect();
            let known = up.iter().all(|c| {
                live.iter()
                    .any(|i| Some(&i.id) == c.owner.as_ref() && i.state != "terminated")
            });
            let backed = live
                .iter()
                .filter(|i| i.state == "running")
                .all(|i| up.iter().any(|c| c.owner.as_ref() == Some(&i.id)));
            let staying = live.iter().filter(|i| i.state != "terminating").count() as u64;
            known && backed && staying == n && up.len() as u64 == n
        });
        checks += 3;
        if !settled {
            bad.push(format!(
                "store and cloud did not agree on {n} instances: store {:?}, cloud {:?}",
                epu.instances("storm"),
                cloud.instances("storm")
            ));
        }
        checks += 1;
        let twice = doubled(&cloud, "storm");
        if !twice.is_empty() {
            bad.push(format!("launched twice: {twice:?}"));
        }
        checks += 1;
        let c = rusqlite::Connection::open(&db).unwrap();
        let (count, hi): (i64, i64) = c
            .query_row("SELECT COUNT(*), MAX(seq) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        if count != hi {
            bad.push(format!("event seq has a gap: {count} events up to {hi}"));
        }
        eprintln!(
            "ec2 round {round}/{rounds}: n = {n}, violations: {}",
            bad.len()
        );
        violations.extend(bad.into_iter().map(|v| format!("round {round}: {v}")));
    }
    eprintln!(
        "ec2 torture: {rounds} rounds, {checks} invariant checks, {} violations ({replay})",
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "replay with {replay}:\n{}",
        violations.join("\n")
    );
}
