//! `GET /metrics`: Prometheus text, via `prometheus-client`.
//!
//! Counters and histograms are updated as things happen (check-ins, group
//! commits); the gauges of rollouts and hosts by state are set from memory
//! at each scrape ([`Gauges`]), so they are never stale.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type LabelSet = Vec<(&'static str, String)>;

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// One scrape at a time: the gauges are cleared and set for each.
    render: std::sync::Mutex<()>,
    checkins: Counter,
    checkin_seconds: Histogram,
    commit_writes: Histogram,
    commit_requests: Histogram,
    commit_seconds: Histogram,
    commit_failures: Counter,
    rollouts: Family<LabelSet, Gauge<i64, std::sync::atomic::AtomicI64>>,
    hosts: Family<LabelSet, Gauge<i64, std::sync::atomic::AtomicI64>>,
    rollout_hosts: Family<LabelSet, Gauge<i64, std::sync::atomic::AtomicI64>>,
}

/// The gauges' values, read from memory at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// State (`pending`, `running`, …) → rollouts.
    pub rollouts: Vec<(&'static str, u64)>,
    /// (component, reported state or `unknown`) → hosts.
    pub hosts: Vec<(String, &'static str, u64)>,
    /// (active rollout id, host state in the rollout) → hosts.
    pub rollout_hosts: Vec<(String, &'static str, u64)>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sluice");
        let checkins = Counter::<u64, AtomicU64>::default();
        registry.register("checkins", "agent check-ins answered", checkins.clone());
        // 100 µs … ~3 s.
        let checkin_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "checkin_duration_seconds",
            "check-in latency, from request to durable answer",
            checkin_seconds.clone(),
        );
        let commit_writes = Histogram::new(exponential_buckets(1.0, 4.0, 10));
        registry.register(
            "commit_batch_writes",
            "writes per group commit",
            commit_writes.clone(),
        );
        let commit_requests = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "commit_batch_requests",
            "requests acknowledged per group commit",
            commit_requests.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "commit_duration_seconds",
            "group commit latency",
            commit_seconds.clone(),
        );
        let commit_failures = Counter::<u64, AtomicU64>::default();
        registry.register(
            "commit_failures",
            "group commits the store refused",
            commit_failures.clone(),
        );
        let rollouts = Family::default();
        registry.register("rollouts", "rollouts by state", rollouts.clone());
        let hosts = Family::default();
        registry.register(
            "hosts",
            "hosts by component and last reported state",
            hosts.clone(),
        );
        let rollout_hosts = Family::default();
        registry.register(
            "rollout_hosts",
            "hosts of active rollouts by state in the rollout",
            rollout_hosts.clone(),
        );
        Metrics {
            registry,
            render: std::sync::Mutex::new(()),
            checkins,
            checkin_seconds,
            commit_writes,
            commit_requests,
            commit_seconds,
            commit_failures,
            rollouts,
            hosts,
            rollout_hosts,
        }
    }

    pub fn checkin(&self, elapsed: Duration) {
        self.checkins.inc();
        self.checkin_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn observe_commit(&self, writes: usize, requests: usize, elapsed: Duration) {
        self.commit_writes.observe(writes as f64);
        self.commit_requests.observe(requests as f64);
        self.commit_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn commit_failed(&self) {
        self.commit_failures.inc();
    }

    /// The text exposition, with the gauges set to `gauges`.
    pub fn render(&self, gauges: &Gauges) -> String {
        let _one_at_a_time = self
            .render
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.rollouts.clear();
        for (state, count) in &gauges.rollouts {
            self.rollouts
                .get_or_create(&vec![("state", (*state).to_owned())])
                .set(*count as i64);
        }
        self.hosts.clear();
        for (component, state, count) in &gauges.hosts {
            self.hosts
                .get_or_create(&vec![
                    ("component", component.clone()),
                    ("state", (*state).to_owned()),
                ])
                .set(*count as i64);
        }
        self.rollout_hosts.clear();
        for (rollout, state, count) in &gauges.rollout_hosts {
            self.rollout_hosts
                .get_or_create(&vec![
                    ("rollout", rollout.clone()),
                    ("state", (*state).to_owned()),
                ])
                .set(*count as i64);
        }
        let mut text = String::new();
        if let Err(error) = encode(&mut text, &self.registry) {
            tracing::error!(%error, "encoding metrics");
        }
        text
    }
}
