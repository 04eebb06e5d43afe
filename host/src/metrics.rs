//! Prometheus metrics (made by the `prometheus` crate). Counters and histograms are updated
//! where things happen; the [`Gauges`] (instances, desired and actual counts, quarantine,
//! sensors) are set from the daemon's status at each scrape of `GET /metrics` (`api/metrics.rs`),
//! so a removed domain disappears from them.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The per-domain counters a controller updates on every decide, looked up once.
pub struct DomainMetrics {
    pub decides: prometheus::IntCounter,
    pub decide_seconds: Histogram,
    pub launches: prometheus::IntCounter,
    pub destroys: prometheus::IntCounter,
    pub replacements: prometheus::IntCounter,
    pub dry_run_launches: prometheus::IntCounter,
    pub dry_run_destroys: prometheus::IntCounter,
}

/// Every metric of one daemon.
pub struct Metrics {
    registry: Registry,
    /// Decides by domain, and how long each took (engine call included).
    pub decides: IntCounterVec,
    pub decide_seconds: HistogramVec,
    pub launches: IntCounterVec,
    pub destroys: IntCounterVec,
    /// Launches that replace failed or unhealthy instances.
    pub replacements: IntCounterVec,
    pub engine_faults: IntCounterVec,
    pub swaps: IntCounterVec,
    /// Decisions of dry-run domains, which launch and destroy nothing.
    pub dry_run_launches: IntCounterVec,
    pub dry_run_destroys: IntCounterVec,
    pub store_write_seconds: Histogram,
    pub api_requests: IntCounterVec,
    /// TCP API requests refused for their token, by reason.
    pub api_refused: IntCounterVec,
    pub gauges: Gauges,
}

/// The gauges set from the daemon's status at each scrape.
pub struct Gauges {
    /// Instances by domain and state (final states left out).
    pub instances: IntGaugeVec,
    /// Instances by domain and health.
    pub health: IntGaugeVec,
    pub desired: IntGaugeVec,
    pub actual: IntGaugeVec,
    pub quarantined: IntGaugeVec,
    pub dry_run: IntGaugeVec,
    pub sensor_value: GaugeVec,
    pub sensor_stale: IntGaugeVec,
    /// In a cluster: 1 for each domain this node owns.
    pub owned: IntGaugeVec,
    /// In a cluster: 1 while this node may act, 0 while it holds.
    pub node_live: IntGaugeVec,
}

impl Gauges {
    /// Clears every gauge, so that a domain or sensor that is gone disappears.
    pub fn reset(&self) {
        for g in [
            &self.instances,
            &self.health,
            &self.desired,
            &self.actual,
            &self.quarantined,
            &self.dry_run,
            &self.sensor_stale,
            &self.owned,
            &self.node_live,
        ] {
            g.reset();
        }
        self.sensor_value.reset();
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
    r.register(Box::new(c.clone())).expect("a new metric name");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge");
    r.register(Box::new(g.clone())).expect("a new metric name");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let d = &["domain"];
        let decide_seconds = HistogramVec::new(
            HistogramOpts::new("epu_decide_duration_seconds", "Time of one decide cycle.")
                .buckets(prometheus::exponential_buckets(0.00001, 4.0, 10).expect("buckets")),
            d,
        )
        .expect("a valid histogram");
        r.register(Box::new(decide_seconds.clone())).expect("new");
        let store_write_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "epu_store_write_duration_seconds",
                "Time of one store transaction.",
            )
            .buckets(prometheus::exponential_buckets(0.00005, 4.0, 9).expect("buckets")),
        )
        .expect("a valid histogram");
        r.register(Box::new(store_write_seconds.clone()))
            .expect("new");
        let sensor_value = GaugeVec::new(
            Opts::new("epu_sensor_value", "The last reading of a sensor."),
            &["domain", "sensor"],
        )
        .expect("a valid gauge");
        r.register(Box::new(sensor_value.clone())).expect("new");
        Metrics {
            decides: counter(&r, "epu_decides_total", "Decide cycles.", d),
            decide_seconds,
            launches: counter(&r, "epu_launches_total", "Instances launched.", d),
            destroys: counter(&r, "epu_destroys_total", "Instances destroyed.", d),
            replacements: counter(
                &r,
                "epu_replacements_total",
                "Launches that replace failed or unhealthy instances.",
                d,
            ),
            engine_faults: counter(
                &r,
                "epu_engine_faults_total",
                "Engine faults, by kind.",
                &["domain", "kind"],
            ),
            swaps: counter(&r, "epu_engine_swaps_total", "Engines swapped in.", d),
            dry_run_launches: counter(
                &r,
                "epu_dry_run_launches_total",
                "Launches a dry-run domain's engine asked for (none was made).",
                d,
            ),
            dry_run_destroys: counter(
                &r,
                "epu_dry_run_destroys_total",
                "Destroys a dry-run domain's engine asked for (none was made).",
                d,
            ),
            store_write_seconds,
            api_requests: counter(
                &r,
                "epu_api_requests_total",
                "API requests, by route and status.",
                &["route", "status"],
            ),
            api_refused: counter(
                &r,
                "epu_api_refused_total",
                "TCP API requests refused for want of a valid token, by reason.",
                &["reason"],
            ),
            gauges: Gauges {
                instances: gauge(
                    &r,
                    "epu_instances",
                    "Live instances, by state.",
                    &["domain", "state"],
                ),
                health: gauge(
                    &r,
                    "epu_instances_by_health",
                    "Live instances, by health.",
                    &["domain", "health"],
                ),
                desired: gauge(
                    &r,
                    "epu_desired_instances",
                    "The count the engine's last decision aims at.",
                    d,
                ),
                actual: gauge(
                    &r,
                    "epu_actual_instances",
                    "Live instances that are not being destroyed.",
                    d,
                ),
                quarantined: gauge(
                    &r,
                    "epu_engine_quarantined",
                    "1 while the engine is quarantined.",
                    d,
                ),
                dry_run: gauge(&r, "epu_domain_dry_run", "1 for a dry-run domain.", d),
                sensor_value,
                sensor_stale: gauge(
                    &r,
                    "epu_sensor_stale",
                    "1 while a sensor's reading is stale.",
                    &["domain", "sensor"],
                ),
                owned: gauge(
                    &r,
                    "epu_cluster_domain_owned",
                    "1 for each domain this node of a cluster owns.",
                    &["domain", "node"],
                ),
                node_live: gauge(
                    &r,
                    "epu_cluster_node_live",
                    "1 while this node of a cluster may act, 0 while it holds.",
                    &["node"],
                ),
            },
            registry: r,
        }
    }

    /// A domain's decide counters.
    pub fn domain(&self, name: &str) -> DomainMetrics {
        let l = [name];
        DomainMetrics {
            decides: self.decides.with_label_values(&l),
            decide_seconds: self.decide_seconds.with_label_values(&l),
            launches: self.launches.with_label_values(&l),
            destroys: self.destroys.with_label_values(&l),
            replacements: self.replacements.with_label_values(&l),
            dry_run_launches: self.dry_run_launches.with_label_values(&l),
            dry_run_destroys: self.dry_run_destroys.with_label_values(&l),
        }
    }

    /// The exposition text of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
