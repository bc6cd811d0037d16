//! The rollout plan: the validated form of the YAML (or JSON) plan file.
//!
//! Every field is valid by construction: [`parse_plan`] either returns a
//! [`Plan`] the engine can trust without re-checking, or every problem it
//! found, each with the field path, the line and column, and what would be
//! valid.

mod parse;
mod window;

use std::fmt;

pub use parse::parse_plan;
pub use window::{next_opening, windows_open, Days, Window, WindowError};

use crate::duration::Duration;
use crate::percent::{Amount, Percent};
use crate::selector::Selector;

/// A validated rollout plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Unique, human-readable name; also the default selection salt.
    pub name: String,
    pub component: String,
    /// The target version.
    pub version: String,
    /// Opaque JSON handed to the agent with the version.
    pub payload: Option<serde_json::Value>,
    /// Which hosts the rollout covers; empty selects every host.
    pub selector: Selector,
    pub strategy: Strategy,
    /// Hosts told to change but not yet healthy, fleet-wide; `None` is no
    /// limit beyond the stage quotas.
    pub max_in_flight: Option<Amount>,
    /// At least one stage; percentages never decrease and the last is 100.
    pub stages: Vec<Stage>,
    pub gates: Gates,
    pub on_failure: OnFailure,
    /// `false` for roll-forward-only changes: sluice never rolls them back by
    /// itself and pauses instead.
    pub reversible: bool,
    /// Whether the rollout takes part in the one-change-per-host rule (the
    /// default): it admits no host that another such rollout has in flight,
    /// and its own hosts in flight are admitted by no other. `false` for
    /// harmless changes, which go alongside any other.
    pub exclusive: bool,
    /// When the rollout may admit hosts; empty is always.
    pub windows: Vec<Window>,
    /// The rollout (by its plan's name) this one starts after, by itself,
    /// once that one completes; `None` starts only when told (or at its
    /// `start_at`, which is no part of the plan).
    pub after: Option<After>,
}

/// The plan's `after: NAME`, with where it is written, so that the server
/// can point at it when no rollout has that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub name: String,
    /// 1-based line and column of the name in the plan.
    pub line: usize,
    pub column: usize,
}

/// How hosts are spread: strata and ranking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strategy {
    /// Label names whose distinct value combinations form the strata.
    pub spread: Vec<String>,
    /// From the first stage on, every stratum gets at least this many hosts
    /// (never more than it has).
    pub min_per_stratum: u64,
    /// The salt of the ranking hash; `None` uses the plan's name.
    pub salt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Given in the plan, or `stage-N` (1-based).
    pub name: String,
    /// Cumulative share of each stratum admitted by the end of this stage.
    pub percent: Percent,
    /// How long the stage waits, all its hosts healthy, before the next.
    pub bake: Duration,
    /// Whether the stage, once its hosts are healthy and its bake is over,
    /// waits for `sluice rollout approve` before the rollout moves on.
    pub approve: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gates {
    /// Failures tolerated per stage (count, or % of admitted hosts); one more
    /// fails the stage.
    pub max_failed: Amount,
    /// An instructed host not healthy after this long counts as failed.
    pub host_timeout: Duration,
    pub prometheus: Vec<PrometheusGate>,
    pub http: Vec<HttpGate>,
    /// Canary analysis: the canary cohort against its baseline.
    pub compare: Vec<CompareGate>,
}

/// Settings shared by every external gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateCommon {
    pub name: String,
    /// How often the gate is evaluated while a stage progresses and bakes.
    pub interval: Duration,
    /// Consecutive failing evaluations before the gate fails.
    pub consecutive: u32,
    pub no_data: NoData,
    /// Evaluated and recorded, but never acts.
    pub report_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusGate {
    pub common: GateCommon,
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus:9090`.
    pub url: String,
    /// A PromQL instant query.
    pub query: String,
    pub fail_if: Threshold,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGate {
    pub common: GateCommon,
    /// GET; 2xx passes, anything else or a timeout fails.
    pub url: String,
    pub timeout: Duration,
}

/// A comparison gate (`compare:`): a per-host query, read for the hosts of
/// the rollout's canary cohort and of its baseline cohort (see
/// [`crate::rollout::Cohorts`]), aggregated per cohort and judged.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareGate {
    pub common: GateCommon,
    /// Base URL of the Prometheus HTTP API.
    pub url: String,
    /// A PromQL query giving one series per host (`instance`), such as
    /// `rate(container_restarts_total[5m])`; several series of one host are
    /// summed.
    pub query: String,
    /// How each cohort's per-host values become one value.
    pub aggregate: Aggregate,
    /// What makes the canary fail against the baseline.
    pub judge: Judge,
    /// Hosts with data each cohort needs before the gate judges; fewer is
    /// no data.
    pub min_hosts: u64,
}

/// How a cohort's per-host values are summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregate {
    #[default]
    Mean,
    Median,
    P90,
}

impl Aggregate {
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Mean => "mean",
            Aggregate::Median => "median",
            Aggregate::P90 => "p90",
        }
    }
}

/// How a comparison gate judges the canary against the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judge {
    /// `fail_if: "ratio > 1.5"`: canary / baseline of the aggregates.
    Ratio(Threshold),
    /// `fail_if: "diff > 0.2"`: canary − baseline of the aggregates.
    Diff(Threshold),
    /// `test: mann-whitney`: the Mann-Whitney U test of the per-host values;
    /// fails when the canary differs from the baseline in `direction` with
    /// at least `confidence` (a p-value below `1 - confidence`).
    MannWhitney {
        confidence: f64,
        direction: Direction,
    },
}

/// Which difference of the canary from its baseline the test looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// The canary's values are higher (errors, restarts, latency).
    #[default]
    Increase,
    /// The canary's values are lower (throughput, hit rates).
    Decrease,
    /// Either way.
    Either,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
            Direction::Either => "either",
        }
    }
}

impl fmt::Display for Judge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Judge::Ratio(threshold) => write!(f, "ratio {threshold}"),
            Judge::Diff(threshold) => write!(f, "diff {threshold}"),
            Judge::MannWhitney {
                confidence,
                direction,
            } => write!(
                f,
                "mann-whitney, confidence {confidence}, direction {}",
                direction.name()
            ),
        }
    }
}

/// `fail_if: "> 0.5"`: the comparison that makes a value failing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub op: Comparison,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    Equal,
    NotEqual,
}

impl Threshold {
    /// Whether `value` fails the gate.
    pub fn fails(&self, value: f64) -> bool {
        match self.op {
            Comparison::Greater => value > self.value,
            Comparison::GreaterOrEqual => value >= self.value,
            Comparison::Less => value < self.value,
            Comparison::LessOrEqual => value <= self.value,
            Comparison::Equal => value == self.value,
            Comparison::NotEqual => value != self.value,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
        };
        write!(f, "{op} {}", self.value)
    }
}

/// What a gate without data (empty query result, no answer) counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoData {
    #[default]
    Fail,
    Pause,
    Pass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    #[default]
    Pause,
    Rollback,
}

impl Gates {
    /// The settings of every external gate, in the order the engine keeps
    /// them: Prometheus, HTTP, then comparison gates.
    pub fn external(&self) -> impl Iterator<Item = &GateCommon> + '_ {
        (self.prometheus.iter().map(|gate| &gate.common))
            .chain(self.http.iter().map(|gate| &gate.common))
            .chain(self.compare.iter().map(|gate| &gate.common))
    }
}

impl Plan {
    /// The salt of the ranking hash: the strategy's, else the plan's name.
    pub fn salt(&self) -> &str {
        self.strategy.salt.as_deref().unwrap_or(&self.name)
    }
}

/// One problem found in a plan file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// Dotted path of the field at fault, e.g. `stages[1].percent`; empty for
    /// the document as a whole.
    pub field: String,
    /// 1-based line and column of the offending text.
    pub line: usize,
    pub column: usize,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.line, self.column, self.field, self.message
            )
        }
    }
}

/// Every problem found in a plan file, in the order they appear.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanErrors(pub Vec<PlanError>);

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}
