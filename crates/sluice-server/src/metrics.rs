//! `GET /metrics`: Prometheus text, via `prometheus-client`.
//!
//! Counters and histograms are updated as things happen (check-ins, group
//! commits); the gauges of rollouts and hosts by state are set from memory
//! at each scrape ([`Gauges`]), so they are never stale.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

type LabelSet = Vec<(&'static str, String)>;
type GaugeFamily = Family<LabelSet, Gauge<i64, std::sync::atomic::AtomicI64>>;

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// One scrape at a time: the gauges are cleared and set for each.
    render: std::sync::Mutex<()>,
    checkins: Counter,
    checkin_seconds: Histogram,
    checkins_rejected: Counter,
    checkin_queue: Gauge,
    commit_writes: Histogram,
    commit_requests: Histogram,
    commit_seconds: Histogram,
    commit_failures: Counter,
    forwarded_batches: Histogram,
    rollouts: GaugeFamily,
    hosts: GaugeFamily,
    drifted: GaugeFamily,
    rollout_hosts: GaugeFamily,
    leader: Gauge,
    epoch: Gauge,
    webhooks_failing: GaugeFamily,
}

/// The gauges' values, read from memory at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// State (`pending`, `running`, …) → rollouts.
    pub rollouts: Vec<(&'static str, u64)>,
    /// (component, reported state or `unknown`) → hosts.
    pub hosts: Vec<(String, &'static str, u64)>,
    /// Component → hosts whose agent reports it drifted.
    pub drifted: Vec<(String, u64)>,
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
        let r = &mut registry;
        let checkins = registered(
            r,
            "checkins",
            "agent check-ins answered",
            Counter::default(),
        );
        // 100 µs … ~3 s.
        let checkin_seconds = registered(
            r,
            "checkin_duration_seconds",
            "check-in latency, from request to durable answer",
            Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        );
        let checkins_rejected = registered(
            r,
            "checkins_rejected",
            "check-ins answered 429 because the check-in queue was full (sluice server --checkin-queue)",
            Counter::default(),
        );
        let checkin_queue = registered(
            r,
            "checkin_queue",
            "check-ins admitted and not yet answered",
            Gauge::default(),
        );
        let commit_writes = registered(
            r,
            "commit_batch_writes",
            "writes per group commit",
            Histogram::new(exponential_buckets(1.0, 4.0, 10)),
        );
        let commit_requests = registered(
            r,
            "commit_batch_requests",
            "requests acknowledged per group commit",
            Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        );
        let commit_seconds = registered(
            r,
            "commit_duration_seconds",
            "group commit latency",
            Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        );
        let commit_failures = registered(
            r,
            "commit_failures",
            "group commits the store refused",
            Counter::default(),
        );
        let forwarded_batches = registered(
            r,
            "forwarded_checkin_batch_size",
            "check-ins per batch a standby forwarded to the leader (crate::replica::batch)",
            Histogram::new(exponential_buckets(1.0, 2.0, 8)),
        );
        let rollouts = registered(r, "rollouts", "rollouts by state", Family::default());
        let hosts = registered(
            r,
            "hosts",
            "hosts by component and last reported state",
            Family::default(),
        );
        let drifted = registered(
            r,
            "hosts_drifted",
            "hosts whose agent found the component at another version than its desired one, outside an apply",
            Family::default(),
        );
        let rollout_hosts = registered(
            r,
            "rollout_hosts",
            "hosts of active rollouts by state in the rollout",
            Family::default(),
        );
        let leader = registered(
            r,
            "leader",
            "1 on the replica that leads (holds the lease; always on the embedded store), else 0",
            Gauge::default(),
        );
        let epoch = registered(
            r,
            "leader_epoch",
            "the epoch of the leader's lease as this replica last saw it (0: none yet, or the embedded store)",
            Gauge::default(),
        );
        let webhooks_failing = registered(
            r,
            "webhook_failing",
            "1 for a webhook whose receiver failed 3 deliveries in a row or more (delivery keeps retrying), 0 for one that delivers; by webhook id, on the leader",
            Family::default(),
        );
        Metrics {
            registry,
            render: std::sync::Mutex::new(()),
            checkins,
            checkin_seconds,
            checkins_rejected,
            checkin_queue,
            commit_writes,
            commit_requests,
            commit_seconds,
            commit_failures,
            forwarded_batches,
            rollouts,
            hosts,
            drifted,
            rollout_hosts,
            leader,
            epoch,
            webhooks_failing,
        }
    }

    /// Whether the webhook `id` is failing; `None` forgets it (removed, or
    /// no longer delivered here).
    pub fn webhook_failing(&self, id: &str, failing: Option<bool>) {
        let labels = vec![("webhook", id.to_owned())];
        match failing {
            Some(failing) => {
                self.webhooks_failing
                    .get_or_create(&labels)
                    .set(i64::from(failing));
            }
            None => {
                self.webhooks_failing.remove(&labels);
            }
        }
    }

    /// Whether this replica leads, and the lease's epoch as it last saw it.
    pub fn set_leadership(&self, leader: bool, epoch: Option<i64>) {
        self.leader.set(i64::from(leader));
        self.epoch.set(epoch.unwrap_or(0));
    }

    pub fn checkin(&self, elapsed: Duration) {
        self.checkins.inc();
        self.checkin_seconds.observe(elapsed.as_secs_f64());
    }

    /// A standby forwarded a batch of `checkins` check-ins to the leader.
    pub fn forwarded_batch(&self, checkins: usize) {
        self.forwarded_batches.observe(checkins as f64);
    }

    pub fn checkin_rejected(&self) {
        self.checkins_rejected.inc();
    }

    /// One more check-in in the queue ([`crate::admission`]), or one less.
    pub fn checkin_queued(&self, queued: bool) {
        if queued {
            self.checkin_queue.inc();
        } else {
            self.checkin_queue.dec();
        }
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
        set_all(
            &self.rollouts,
            gauges
                .rollouts
                .iter()
                .map(|(state, count)| (vec![("state", (*state).to_owned())], *count)),
        );
        set_all(&self.hosts, by_state("component", &gauges.hosts));
        set_all(
            &self.drifted,
            gauges
                .drifted
                .iter()
                .map(|(component, count)| (vec![("component", component.clone())], *count)),
        );
        set_all(
            &self.rollout_hosts,
            by_state("rollout", &gauges.rollout_hosts),
        );
        let mut text = String::new();
        if let Err(error) = encode(&mut text, &self.registry) {
            tracing::error!(%error, "encoding metrics");
        }
        text
    }
}

/// Registers `metric` as `name`, and hands it back to be updated.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Replaces every series of `family` with `series`: (labels, value).
fn set_all(family: &GaugeFamily, series: impl Iterator<Item = (LabelSet, u64)>) {
    family.clear();
    for (labels, value) in series {
        family.get_or_create(&labels).set(value as i64);
    }
}

/// (name, state, count) rows as series labelled `key` and `state`.
fn by_state<'a>(
    key: &'static str,
    rows: &'a [(String, &'static str, u64)],
) -> impl Iterator<Item = (LabelSet, u64)> + 'a {
    rows.iter().map(move |(name, state, count)| {
        let labels = vec![(key, name.clone()), ("state", (*state).to_owned())];
        (labels, *count)
    })
}
