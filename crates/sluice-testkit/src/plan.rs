//! A typed builder of plan files, so that tests say what their plan is
//! instead of spelling out YAML: [`Plan::new`] with the name, component and
//! version, then what the test needs; `to_string()` is the YAML.
//!
//! ```
//! use sluice_testkit::plan::{Amount, OnFailure, Plan, Stage};
//!
//! let plan = Plan::new("docker-2.0", "docker-engine", "2.0")
//!     .spread(&["role"])
//!     .max_in_flight(Amount::Percent(25))
//!     .stage(Stage::percent(10).named("canary").approve())
//!     .stage(Stage::percent(100))
//!     .on_failure(OnFailure::Rollback);
//! assert!(plan.to_string().contains("- { name: \"canary\", percent: 10, approve: true }"));
//! ```
//!
//! Durations are written in the plan's own notation (`"30s"`, `"1h"`).
//! Plans that must be wrong, to test how they are refused, stay YAML.

use std::fmt;

/// A plan file.
#[derive(Debug, Clone)]
pub struct Plan {
    name: String,
    component: String,
    version: String,
    payload_url: Option<String>,
    payload_sha256: Option<String>,
    selector: Option<String>,
    spread: Vec<String>,
    max_in_flight: Option<Amount>,
    stages: Vec<Stage>,
    max_failed: Option<Amount>,
    host_timeout: Option<String>,
    gates: Vec<Gate>,
    on_failure: Option<OnFailure>,
    after: Option<String>,
}

/// A count of hosts, or a share of them.
#[derive(Debug, Clone, Copy)]
pub enum Amount {
    Hosts(u64),
    Percent(u32),
}

impl From<u64> for Amount {
    fn from(hosts: u64) -> Amount {
        Amount::Hosts(hosts)
    }
}

/// What a rollout does when a stage fails.
#[derive(Debug, Clone, Copy)]
pub enum OnFailure {
    Pause,
    Rollback,
}

/// One stage: a percentage, and optionally a name, a bake and an approval.
#[derive(Debug, Clone)]
pub struct Stage {
    name: Option<String>,
    percent: u32,
    bake: Option<String>,
    approve: bool,
}

/// A Prometheus, HTTP or comparison gate.
#[derive(Debug, Clone)]
pub struct Gate {
    kind: GateKind,
    name: String,
    url: String,
    evaluations: Option<u32>,
    interval: Option<String>,
    no_data: Option<String>,
    report_only: bool,
}

#[derive(Debug, Clone)]
enum GateKind {
    Prometheus {
        query: String,
        fail_if: String,
    },
    Http,
    Compare {
        query: String,
        /// `fail_if` (`"ratio > 1.5"`), or `None` for `test: mann-whitney`.
        fail_if: Option<String>,
        aggregate: Option<String>,
        min_hosts: Option<u64>,
    },
}

impl GateKind {
    fn key(&self) -> &'static str {
        match self {
            GateKind::Prometheus { .. } => "prometheus",
            GateKind::Http => "http",
            GateKind::Compare { .. } => "compare",
        }
    }
}

impl Plan {
    /// A plan taking `component` to `version`; add at least one stage.
    pub fn new(name: &str, component: &str, version: &str) -> Plan {
        Plan {
            name: name.to_owned(),
            component: component.to_owned(),
            version: version.to_owned(),
            payload_url: None,
            payload_sha256: None,
            selector: None,
            spread: Vec::new(),
            max_in_flight: None,
            stages: Vec::new(),
            max_failed: None,
            host_timeout: None,
            gates: Vec::new(),
            on_failure: None,
            after: None,
        }
    }

    /// `payload: { url: URL }`.
    pub fn payload_url(mut self, url: &str) -> Plan {
        self.payload_url = Some(url.to_owned());
        self
    }

    /// `payload: { url: URL, sha256: SHA256 }`: an artifact the agent
    /// downloads and verifies before it applies.
    pub fn payload_artifact(mut self, url: &str, sha256: &str) -> Plan {
        self.payload_url = Some(url.to_owned());
        self.payload_sha256 = Some(sha256.to_owned());
        self
    }

    /// The label selector (`"site=lon, role in (db)"`).
    pub fn selector(mut self, selector: &str) -> Plan {
        self.selector = Some(selector.to_owned());
        self
    }

    /// `strategy: { spread: LABELS }`.
    pub fn spread(mut self, labels: &[&str]) -> Plan {
        self.spread = labels.iter().map(|label| (*label).to_owned()).collect();
        self
    }

    pub fn max_in_flight(mut self, amount: impl Into<Amount>) -> Plan {
        self.max_in_flight = Some(amount.into());
        self
    }

    /// Adds a stage after the others.
    pub fn stage(mut self, stage: Stage) -> Plan {
        self.stages.push(stage);
        self
    }

    /// Adds stages after the others.
    pub fn stages(mut self, stages: impl IntoIterator<Item = Stage>) -> Plan {
        self.stages.extend(stages);
        self
    }

    /// `gates: { max_failed: AMOUNT }`.
    pub fn max_failed(mut self, amount: impl Into<Amount>) -> Plan {
        self.max_failed = Some(amount.into());
        self
    }

    /// `gates: { host_timeout: DURATION }`.
    pub fn host_timeout(mut self, duration: &str) -> Plan {
        self.host_timeout = Some(duration.to_owned());
        self
    }

    /// Adds a Prometheus or HTTP gate.
    pub fn gate(mut self, gate: Gate) -> Plan {
        self.gates.push(gate);
        self
    }

    pub fn on_failure(mut self, on_failure: OnFailure) -> Plan {
        self.on_failure = Some(on_failure);
        self
    }

    /// `after: NAME`: the rollout starts by itself once rollout `name`
    /// completes.
    pub fn after(mut self, name: &str) -> Plan {
        self.after = Some(name.to_owned());
        self
    }

    /// The plan's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Stage {
    /// A stage admitting `percent` % of each stratum.
    pub fn percent(percent: u32) -> Stage {
        Stage {
            name: None,
            percent,
            bake: None,
            approve: false,
        }
    }

    pub fn named(mut self, name: &str) -> Stage {
        self.name = Some(name.to_owned());
        self
    }

    /// How long the stage bakes once its hosts are healthy.
    pub fn bake(mut self, duration: &str) -> Stage {
        self.bake = Some(duration.to_owned());
        self
    }

    /// The stage waits for an approval before it starts.
    pub fn approve(mut self) -> Stage {
        self.approve = true;
        self
    }
}

impl Gate {
    /// A Prometheus gate failing when `query`'s value is `fail_if` (`"> 0.5"`).
    pub fn prometheus(name: &str, url: &str, query: &str, fail_if: &str) -> Gate {
        Gate::new(
            GateKind::Prometheus {
                query: query.to_owned(),
                fail_if: fail_if.to_owned(),
            },
            name,
            url,
        )
    }

    /// An HTTP gate: a GET of `url` passes with a 2xx.
    pub fn http(name: &str, url: &str) -> Gate {
        Gate::new(GateKind::Http, name, url)
    }

    /// A comparison gate: the per-host `query` of the canary cohort
    /// against the baseline's, failing when `fail_if` (`"ratio > 1.5"`).
    pub fn compare(name: &str, url: &str, query: &str, fail_if: &str) -> Gate {
        Gate::new(
            GateKind::Compare {
                query: query.to_owned(),
                fail_if: Some(fail_if.to_owned()),
                aggregate: None,
                min_hosts: None,
            },
            name,
            url,
        )
    }

    /// A comparison gate judged by `test: mann-whitney` (default confidence).
    pub fn mann_whitney(name: &str, url: &str, query: &str) -> Gate {
        Gate::new(
            GateKind::Compare {
                query: query.to_owned(),
                fail_if: None,
                aggregate: None,
                min_hosts: None,
            },
            name,
            url,
        )
    }

    fn new(kind: GateKind, name: &str, url: &str) -> Gate {
        Gate {
            kind,
            name: name.to_owned(),
            url: url.to_owned(),
            evaluations: None,
            interval: None,
            no_data: None,
            report_only: false,
        }
    }

    /// A comparison gate's `min_hosts` per cohort.
    pub fn min_hosts(mut self, hosts: u64) -> Gate {
        if let GateKind::Compare { min_hosts, .. } = &mut self.kind {
            *min_hosts = Some(hosts);
        }
        self
    }

    /// A comparison gate's `aggregate`: `mean`, `median` or `p90`.
    pub fn aggregate(mut self, how: &str) -> Gate {
        if let GateKind::Compare { aggregate, .. } = &mut self.kind {
            *aggregate = Some(how.to_owned());
        }
        self
    }

    /// `no_data`: `fail`, `pause` or `pass`.
    pub fn no_data(mut self, policy: &str) -> Gate {
        self.no_data = Some(policy.to_owned());
        self
    }

    /// `report_only: true`.
    pub fn report_only(mut self) -> Gate {
        self.report_only = true;
        self
    }

    /// `for`: consecutive failing results before the gate fails.
    pub fn failing_for(mut self, evaluations: u32) -> Gate {
        self.evaluations = Some(evaluations);
        self
    }

    /// How often the gate is evaluated.
    pub fn interval(mut self, duration: &str) -> Gate {
        self.interval = Some(duration.to_owned());
        self
    }
}

/// A YAML double-quoted scalar (JSON's string syntax is a subset of it).
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Hosts(hosts) => write!(f, "{hosts}"),
            Amount::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut fields = Vec::new();
        if let Some(name) = &self.name {
            fields.push(format!("name: {}", quoted(name)));
        }
        fields.push(format!("percent: {}", self.percent));
        if let Some(bake) = &self.bake {
            fields.push(format!("bake: {}", quoted(bake)));
        }
        if self.approve {
            fields.push("approve: true".to_owned());
        }
        write!(f, "{{ {} }}", fields.join(", "))
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut fields = vec![
            format!("name: {}", quoted(&self.name)),
            format!("url: {}", quoted(&self.url)),
        ];
        match &self.kind {
            GateKind::Prometheus { query, fail_if } => {
                fields.push(format!("query: {}", quoted(query)));
                fields.push(format!("fail_if: {}", quoted(fail_if)));
            }
            GateKind::Http => {}
            GateKind::Compare {
                query,
                fail_if,
                aggregate,
                min_hosts,
            } => {
                fields.push(format!("query: {}", quoted(query)));
                match fail_if {
                    Some(fail_if) => fields.push(format!("fail_if: {}", quoted(fail_if))),
                    None => fields.push("test: mann-whitney".to_owned()),
                }
                if let Some(aggregate) = aggregate {
                    fields.push(format!("aggregate: {aggregate}"));
                }
                if let Some(hosts) = min_hosts {
                    fields.push(format!("min_hosts: {hosts}"));
                }
            }
        }
        if let Some(policy) = &self.no_data {
            fields.push(format!("no_data: {policy}"));
        }
        if self.report_only {
            fields.push("report_only: true".to_owned());
        }
        if let Some(evaluations) = self.evaluations {
            fields.push(format!("for: {evaluations}"));
        }
        if let Some(interval) = &self.interval {
            fields.push(format!("interval: {}", quoted(interval)));
        }
        write!(f, "{{ {} }}", fields.join(", "))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "name: {}", quoted(&self.name))?;
        writeln!(f, "component: {}", quoted(&self.component))?;
        writeln!(f, "version: {}", quoted(&self.version))?;
        if let Some(after) = &self.after {
            writeln!(f, "after: {}", quoted(after))?;
        }
        match (&self.payload_url, &self.payload_sha256) {
            (Some(url), Some(sha256)) => writeln!(
                f,
                "payload: {{ url: {}, sha256: {} }}",
                quoted(url),
                quoted(sha256)
            )?,
            (Some(url), None) => writeln!(f, "payload: {{ url: {} }}", quoted(url))?,
            (None, _) => {}
        }
        if let Some(selector) = &self.selector {
            writeln!(f, "selector: {}", quoted(selector))?;
        }
        if !self.spread.is_empty() {
            let labels: Vec<String> = self.spread.iter().map(|label| quoted(label)).collect();
            writeln!(f, "strategy: {{ spread: [{}] }}", labels.join(", "))?;
        }
        if let Some(amount) = self.max_in_flight {
            writeln!(f, "max_in_flight: {amount}")?;
        }
        writeln!(f, "stages:")?;
        for stage in &self.stages {
            writeln!(f, "  - {stage}")?;
        }
        let has_gates =
            self.max_failed.is_some() || self.host_timeout.is_some() || !self.gates.is_empty();
        if has_gates {
            writeln!(f, "gates:")?;
        }
        if let Some(amount) = self.max_failed {
            writeln!(f, "  max_failed: {amount}")?;
        }
        if let Some(timeout) = &self.host_timeout {
            writeln!(f, "  host_timeout: {}", quoted(timeout))?;
        }
        for key in ["prometheus", "http", "compare"] {
            let gates: Vec<&Gate> = self
                .gates
                .iter()
                .filter(|gate| gate.kind.key() == key)
                .collect();
            if !gates.is_empty() {
                writeln!(f, "  {key}:")?;
                for gate in gates {
                    writeln!(f, "    - {gate}")?;
                }
            }
        }
        if let Some(on_failure) = self.on_failure {
            let word = match on_failure {
                OnFailure::Pause => "pause",
                OnFailure::Rollback => "rollback",
            };
            writeln!(f, "on_failure: {word}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_field_the_builder_takes() {
        let plan = Plan::new("p", "c", "2.0")
            .payload_url("https://repo.example.net/c.deb")
            .selector("site=lon")
            .spread(&["role", "site"])
            .max_in_flight(Amount::Percent(10))
            .stage(Stage::percent(1).named("canary").bake("1s").approve())
            .stage(Stage::percent(100))
            .max_failed(2)
            .host_timeout("30s")
            .gate(Gate::http("slo", "http://127.0.0.1:9/ok").interval("1s"))
            .gate(
                Gate::prometheus("restarts", "http://127.0.0.1:9", "max(x)", "> 0.5")
                    .failing_for(2),
            )
            .on_failure(OnFailure::Rollback);
        assert_eq!(
            plan.to_string(),
            r#"name: "p"
component: "c"
version: "2.0"
payload: { url: "https://repo.example.net/c.deb" }
selector: "site=lon"
strategy: { spread: ["role", "site"] }
max_in_flight: 10%
stages:
  - { name: "canary", percent: 1, bake: "1s", approve: true }
  - { percent: 100 }
gates:
  max_failed: 2
  host_timeout: "30s"
  prometheus:
    - { name: "restarts", url: "http://127.0.0.1:9", query: "max(x)", fail_if: "> 0.5", for: 2 }
  http:
    - { name: "slo", url: "http://127.0.0.1:9/ok", interval: "1s" }
on_failure: rollback
"#
        );
    }

    #[test]
    fn the_engine_reads_what_it_writes() {
        let plan = Plan::new("p", "c", "2.0")
            .spread(&["role"])
            .max_in_flight(4)
            .stage(Stage::percent(50).named("half").bake("1h30m").approve())
            .stage(Stage::percent(100))
            .max_failed(Amount::Percent(5))
            .gate(Gate::http("slo", "http://127.0.0.1:9/ok"))
            .gate(
                Gate::compare("canary", "http://127.0.0.1:9", "rate(x[1m])", "ratio > 1.5")
                    .min_hosts(2)
                    .aggregate("median")
                    .no_data("pause")
                    .report_only(),
            )
            .on_failure(OnFailure::Pause)
            .payload_artifact("http://127.0.0.1:9/c_2.0.deb", &"ab".repeat(32));
        let parsed = sluice_core::plan::parse_plan(&plan.to_string())
            .unwrap_or_else(|errors| panic!("{errors}\n{plan}"));
        assert_eq!(parsed.name, "p");
        assert_eq!(parsed.stages.len(), 2);
        assert!(parsed.stages[0].approve);
        assert_eq!(parsed.gates.http.len(), 1);
        let compare = &parsed.gates.compare[0];
        assert_eq!(compare.min_hosts, 2);
        assert!(compare.common.report_only);
        assert_eq!(compare.judge.to_string(), "ratio > 1.5");
        assert_eq!(
            parsed.payload,
            Some(serde_json::json!({
                "url": "http://127.0.0.1:9/c_2.0.deb",
                "sha256": "ab".repeat(32),
            }))
        );
    }
}
