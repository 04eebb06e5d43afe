//! `GET /metrics`: the daemon's metrics in the Prometheus text format, with the gauges set
//! from its status at each scrape.

use crate::daemon::DomainStatus;
use crate::metrics::Metrics;
use crate::model::{Health, InstanceState};

/// The exposition text, with the gauges set from `domains` (the daemon's own) and, in a
/// cluster, from `node` (its name, and whether it may act).
pub fn render(metrics: &Metrics, domains: &[DomainStatus], node: Option<(String, bool)>) -> String {
    let g = &metrics.gauges;
    g.reset();
    if let Some((me, live)) = &node {
        g.node_live
            .with_label_values(&[me.as_str()])
            .set(i64::from(*live));
    }
    for d in domains {
        let name = d.name.as_str();
        if let (Some((me, _)), Some(owner)) = (&node, &d.owner) {
            if owner == me {
                g.owned.with_label_values(&[name, me.as_str()]).set(1);
            }
        }
        for s in InstanceState::ALL.iter().filter(|s| !s.is_final()) {
            let n = d.instances.iter().filter(|i| i.state == *s).count();
            g.instances
                .with_label_values(&[name, s.as_str()])
                .set(n as i64);
        }
        for h in Health::ALL {
            let n = d.instances.iter().filter(|i| i.health == h).count();
            g.health
                .with_label_values(&[name, h.as_str()])
                .set(n as i64);
        }
        let actual = d
            .instances
            .iter()
            .filter(|i| i.state < InstanceState::Terminating)
            .count();
        g.actual.with_label_values(&[name]).set(actual as i64);
        if let Some(desired) = d.controller.desired {
            g.desired.with_label_values(&[name]).set(i64::from(desired));
        }
        g.quarantined
            .with_label_values(&[name])
            .set(i64::from(d.controller.quarantined));
        g.dry_run
            .with_label_values(&[name])
            .set(i64::from(d.dry_run));
        for s in &d.sensors {
            if let Some(v) = s.value {
                g.sensor_value.with_label_values(&[name, &s.name]).set(v);
            }
            g.sensor_stale
                .with_label_values(&[name, &s.name])
                .set(i64::from(s.stale));
        }
    }
    metrics.encode()
}
