//! Which domains a node should claim or give up, so that every live node owns a fair share of
//! the domains it may run, within one domain, once things settle.
//!
//! Each node plans from the same view of the cluster (the live nodes and each domain's owner,
//! read from etcd) and acts only for itself: it claims unowned domains while it is below the
//! ceiling of its fair share, and it gives domains up while it is above the ceiling, or while
//! it is the most loaded node and another is below the floor. Among the domains it could take
//! or give, a node prefers by rendezvous hashing, so that nodes that plan at the same time want
//! different domains, and a domain keeps its owner across plans unless the counts say otherwise.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The cluster as one node sees it when it plans.
pub struct View<'a> {
    /// The node that plans.
    pub me: &'a str,
    /// The live nodes, the planner among them.
    pub nodes: &'a [String],
    /// Every domain, with its owner (`None`: unowned, as after its owner's lease ran out).
    pub domains: &'a [(String, Option<String>)],
    /// Whether a node may run a domain (a `process` domain runs only on its host's nodes).
    pub eligible: &'a dyn Fn(&str, &str) -> bool,
}

/// What the planning node should do now.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Unowned domains to claim, best first.
    pub claim: Vec<String>,
    /// Owned domains to give up, best first.
    pub release: Vec<String>,
}

/// The rendezvous score of `node` for `domain`: the node with the highest score is the
/// domain's preferred owner.
fn score(domain: &str, node: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(domain.as_bytes())
        .chain_update([0])
        .chain_update(node.as_bytes())
        .finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The plan of `view.me`.
pub fn plan(view: &View) -> Plan {
    let me = view.me;
    let eligible = |d: &str, n: &str| (view.eligible)(d, n);
    // How many live nodes may run each domain; a node's fair share counts each domain it may
    // run as one over that.
    let peers: BTreeMap<&str, usize> = view
        .domains
        .iter()
        .map(|(d, _)| {
            (
                d.as_str(),
                view.nodes.iter().filter(|n| eligible(d, n)).count(),
            )
        })
        .collect();
    let shares: BTreeMap<&str, f64> = view
        .nodes
        .iter()
        .map(|n| {
            let share = view
                .domains
                .iter()
                .filter(|(d, _)| eligible(d, n))
                .map(|(d, _)| 1.0 / peers[d.as_str()].max(1) as f64)
                .sum();
            (n.as_str(), share)
        })
        .collect();
    let share = |n: &str| shares.get(n).copied().unwrap_or(0.0);
    let mut counts: BTreeMap<&str, usize> = view.nodes.iter().map(|n| (n.as_str(), 0)).collect();
    for (_, owner) in view.domains {
        if let Some(c) = owner.as_deref().and_then(|o| counts.get_mut(o)) {
            *c += 1;
        }
    }
    let owned = counts.get(me).copied().unwrap_or(0);
    let my_share = share(me);
    let (floor, ceil) = (my_share.floor() as usize, my_share.ceil() as usize);
    // Another node below the floor of its own share goes first: the rest do not claim, and
    // the most loaded node gives one domain up.
    let starved: Vec<&str> = counts
        .iter()
        .filter(|(n, c)| **n != me && (**c as f64) < share(n).floor())
        .map(|(n, _)| *n)
        .collect();

    let mut plan = Plan::default();
    if owned < floor || (owned < ceil && starved.is_empty()) {
        let mut free: Vec<&str> = view
            .domains
            .iter()
            .filter(|(d, o)| {
                eligible(d, me) && o.as_deref().is_none_or(|o| !counts.contains_key(o))
            })
            .map(|(d, _)| d.as_str())
            .collect();
        // The domains fewest nodes may run first, so that none is left without an owner.
        free.sort_by_key(|d| (peers[d], std::cmp::Reverse(score(d, me))));
        plan.claim = free
            .into_iter()
            .take(ceil - owned)
            .map(str::to_string)
            .collect();
    }
    let load = |n: &str| counts[n] as f64 - share(n);
    let busiest = counts
        .keys()
        .max_by(|a, b| load(a).total_cmp(&load(b)).then(b.cmp(a)))
        .copied();
    let excess = if owned > ceil {
        owned - ceil
    } else if !starved.is_empty() && owned > floor && busiest == Some(me) {
        1
    } else {
        0
    };
    if excess > 0 {
        let mut held: Vec<&str> = view
            .domains
            .iter()
            .filter(|(_, o)| o.as_deref() == Some(me))
            .map(|(d, _)| d.as_str())
            .collect();
        // A domain a starved node may run first, then the one this node is least preferred for.
        held.sort_by_key(|d| {
            let takers = starved.iter().filter(|n| eligible(d, n)).count();
            (std::cmp::Reverse(takers), score(d, me))
        });
        plan.release = held.into_iter().take(excess).map(str::to_string).collect();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs planning rounds, node by node, until nothing changes; returns each node's count.
    fn settle(
        nodes: &[&str],
        domains: &mut Vec<(String, Option<String>)>,
        eligible: &dyn Fn(&str, &str) -> bool,
    ) -> BTreeMap<String, usize> {
        let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        for _ in 0..200 {
            let mut changed = false;
            for me in &nodes {
                let p = plan(&View {
                    me,
                    nodes: &nodes,
                    domains,
                    eligible,
                });
                for d in domains.iter_mut() {
                    if p.release.contains(&d.0) {
                        d.1 = None;
                        changed = true;
                    } else if p.claim.contains(&d.0) && d.1.is_none() {
                        d.1 = Some(me.clone());
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut counts: BTreeMap<String, usize> = nodes.iter().map(|n| (n.clone(), 0)).collect();
        for (_, o) in domains.iter() {
            *counts
                .get_mut(o.as_ref().expect("every domain owned"))
                .unwrap() += 1;
        }
        counts
    }

    fn domains(n: usize) -> Vec<(String, Option<String>)> {
        (0..n).map(|i| (format!("d{i:03}"), None)).collect()
    }

    #[test]
    fn nodes_settle_within_one_domain_of_their_fair_share() {
        for (n_nodes, n_domains) in [(3, 30), (3, 31), (3, 32), (4, 7), (5, 101), (1, 9)] {
            let nodes: Vec<String> = (0..n_nodes).map(|i| format!("n{i}")).collect();
            let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
            let mut ds = domains(n_domains);
            let counts = settle(&names, &mut ds, &|_, _| true);
            let (lo, hi) = (
                counts.values().min().unwrap(),
                counts.values().max().unwrap(),
            );
            assert!(
                hi - lo <= 1,
                "{n_nodes} nodes, {n_domains} domains: {counts:?}"
            );
        }
    }

    #[test]
    fn a_new_node_takes_its_share_and_a_dead_nodes_domains_are_taken_over() {
        let mut ds = domains(30);
        settle(&["a", "b"], &mut ds, &|_, _| true);
        let counts = settle(&["a", "b", "c"], &mut ds, &|_, _| true);
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), [10, 10, 10]);
        // c dies: its owner keys go with its lease.
        for d in ds.iter_mut().filter(|d| d.1.as_deref() == Some("c")) {
            d.1 = None;
        }
        let counts = settle(&["a", "b"], &mut ds, &|_, _| true);
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), [15, 15]);
    }

    #[test]
    fn a_node_claims_only_what_it_may_run() {
        // Domains p* are process domains of host x, where only node a runs; the rest may run
        // anywhere.
        let eligible = |d: &str, n: &str| !d.starts_with('p') || n == "a";
        let mut ds: Vec<(String, Option<String>)> = (0..6)
            .map(|i| (format!("p{i}"), None))
            .chain((0..12).map(|i| (format!("e{i}"), None)))
            .collect();
        settle(&["a", "b", "c"], &mut ds, &eligible);
        for (d, o) in &ds {
            assert!(eligible(d, o.as_deref().unwrap()), "{d} owned by {o:?}");
        }
    }

    #[test]
    fn a_settled_cluster_plans_nothing() {
        let mut ds = domains(12);
        let nodes: Vec<String> = ["a", "b", "c"].iter().map(|n| n.to_string()).collect();
        settle(&["a", "b", "c"], &mut ds, &|_, _| true);
        for me in &nodes {
            let p = plan(&View {
                me,
                nodes: &nodes,
                domains: &ds,
                eligible: &|_, _| true,
            });
            assert_eq!(p, Plan::default(), "{me}");
        }
    }
}
