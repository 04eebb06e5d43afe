//! Against the real 3-member etcd of `./dev.sh etcd` (`EPU_TEST_ETCD`), each test under a
//! prefix of its own.

use super::*;

fn endpoints() -> Vec<String> {
    std::env::var("EPU_TEST_ETCD")
        .expect("EPU_TEST_ETCD is not set: start etcd with ./dev.sh etcd")
        .split(',')
        .map(str::to_string)
        .collect()
}

fn prefix() -> String {
    format!("/epu-test/{}/", uuid::Uuid::new_v4())
}

async fn join(prefix: &str, name: &str, ttl_s: u64) -> Membership {
    Membership::join(&endpoints(), prefix, name, Duration::from_secs(ttl_s), "{}")
        .await
        .unwrap()
}

/// Whether `m` won each of `domains`.
async fn claim_all(m: &Membership, domains: &[String]) -> Vec<bool> {
    let mut won = Vec::new();
    for d in domains {
        won.push(m.claim(d).await.unwrap().is_some());
    }
    won
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_nodes_claim_every_domain_exactly_once() {
    let p = prefix();
    let (a, b) = (join(&p, "a", 5).await, join(&p, "b", 5).await);
    let domains: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    let (by_a, by_b) = tokio::join!(claim_all(&a, &domains), claim_all(&b, &domains));
    for (i, (x, y)) in by_a.iter().zip(&by_b).enumerate() {
        assert!(x ^ y, "d{i}: a {x}, b {y}");
    }
    let (nodes, owners) = a.view().await.unwrap();
    assert_eq!(nodes, ["a", "b"]);
    assert_eq!(owners.len(), 20);
    assert!(a.is_live() && b.is_live());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_held_by_a_live_node_is_refused() {
    let p = prefix();
    let _a = join(&p, "a", 5).await;
    let again = Membership::join(&endpoints(), &p, "a", Duration::from_secs(5), "{}").await;
    assert!(
        matches!(again, Err(ClusterError::NameTaken(_))),
        "{:?}",
        again.err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_lease_ran_out_is_fenced_off_its_domain() {
    let p = prefix();
    let a = join(&p, "a", 5).await;
    let claim = a.claim("d").await.unwrap().unwrap();
    a.fenced_put("d", claim, "memo/d", b"1").await.unwrap();
    // As if a slept past its TTL: its lease is gone, and b claims the domain.
    a.leave().await.unwrap();
    let b = join(&p, "b", 5).await;
    let b_claim = b
        .claim("d")
        .await
        .unwrap()
        .expect("b claims the free domain");
    assert_ne!(b_claim, claim);
    let late = a.fenced_put("d", claim, "memo/d", b"stale").await;
    assert!(matches!(late, Err(ClusterError::Fenced(_))), "{late:?}");
    b.fenced_put("d", b_claim, "memo/d", b"2").await.unwrap();
    let (_, mut client) = b.pool().client();
    let got = client.get(format!("{p}memo/d"), None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_nodes_domains_are_free_within_its_ttl() {
    let p = prefix();
    let a = join(&p, "a", 2).await;
    a.claim("d").await.unwrap().unwrap();
    let b = join(&p, "b", 2).await;
    assert!(b.claim("d").await.unwrap().is_none(), "a still owns it");
    // a dies: its keep-alive stops with it.
    drop(a);
    let died = Instant::now();
    let claimed = loop {
        if b.claim("d").await.unwrap().is_some() {
            break died.elapsed();
        }
        assert!(died.elapsed() < Duration::from_secs(10), "never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // etcd expires a lease within its TTL of the last keep-alive, plus its own tick.
    assert!(claimed <= Duration::from_secs(4), "freed after {claimed:?}");
    let (nodes, owners) = b.view().await.unwrap();
    assert_eq!(nodes, ["b"]);
    assert_eq!(owners["d"], "b");
}
