//! Gates in a simulation, modelled on one simulated metric.
//!
//! Every host has a value of "the metric": `metric_base` × a spread fixed
//! per host (uniform in 0.8 to 1.2, drawn from the seeded hash of its id),
//! times the factor of its `degrade` fault while it runs the target. On it:
//!
//! - **Comparison gates** are judged as the server judges them
//!   ([`sluice_core::compare`]), on the values of the engine's own cohorts
//!   ([`sluice_core::rollout::Rollout::cohorts`], `cohort_max` hosts each).
//! - **Prometheus gates**, when a `degrade` fault gives the metric a
//!   meaning, read it over the whole fleet with their query's outer
//!   aggregation — `sum`, `avg`, `max` or `min` — and compare that with
//!   `fail_if`. Other queries, and every Prometheus gate without a
//!   `degrade` fault, are assumed to pass, as are HTTP gates.
//!
//! Each modelled gate is evaluated every `interval` while the engine says
//! it is active ([`sluice_core::rollout::Rollout::gate_active`]: a stage
//! progressing or baking, a comparison gate only baking), like the
//! server's controller does.

use sluice_core::compare::StratumValues;
use sluice_core::plan::{CompareGate, Plan, PrometheusGate};
use sluice_core::rollout::{GateOutcome, GateResult};

/// The spread of hosts' values around `metric_base`.
const SPREAD_LOW: f64 = 0.8;
const SPREAD_WIDTH: f64 = 0.4;

/// A gate the simulation evaluates.
#[derive(Debug, Clone)]
pub(crate) enum Modelled {
    Compare(CompareGate),
    Threshold {
        gate: PrometheusGate,
        over: FleetAggregate,
    },
}

impl Modelled {
    pub fn name(&self) -> &str {
        match self {
            Modelled::Compare(gate) => &gate.common.name,
            Modelled::Threshold { gate, .. } => &gate.common.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Modelled::Compare(_) => "compare",
            Modelled::Threshold { .. } => "prometheus",
        }
    }

    pub fn interval_s(&self) -> u64 {
        match self {
            Modelled::Compare(gate) => gate.common.interval.as_secs(),
            Modelled::Threshold { gate, .. } => gate.common.interval.as_secs(),
        }
        .max(1)
    }

    pub fn report_only(&self) -> bool {
        match self {
            Modelled::Compare(gate) => gate.common.report_only,
            Modelled::Threshold { gate, .. } => gate.common.report_only,
        }
    }
}

/// A Prometheus query's outer aggregation over hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FleetAggregate {
    Sum,
    Avg,
    Max,
    Min,
}

impl FleetAggregate {
    /// `sum(…)`, `sum by (job) (…)`, `avg without (x) (…)`: the function
    /// a query starts with, if it is one of these.
    pub fn of(query: &str) -> Option<FleetAggregate> {
        let query = query.trim_start();
        let (name, rest) = query.split_at(query.find(|c: char| !c.is_ascii_alphabetic())?);
        let next = rest.trim_start();
        if !(next.starts_with('(') || next.starts_with("by") || next.starts_with("without")) {
            return None;
        }
        match name {
            "sum" => Some(FleetAggregate::Sum),
            "avg" => Some(FleetAggregate::Avg),
            "max" => Some(FleetAggregate::Max),
            "min" => Some(FleetAggregate::Min),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FleetAggregate::Sum => "sum",
            FleetAggregate::Avg => "avg",
            FleetAggregate::Max => "max",
            FleetAggregate::Min => "min",
        }
    }

    fn over(self, values: impl Iterator<Item = f64>) -> Option<f64> {
        let mut count = 0usize;
        let mut acc: Option<f64> = None;
        for value in values {
            count += 1;
            acc = Some(match (self, acc) {
                (_, None) => value,
                (FleetAggregate::Sum | FleetAggregate::Avg, Some(a)) => a + value,
                (FleetAggregate::Max, Some(a)) => a.max(value),
                (FleetAggregate::Min, Some(a)) => a.min(value),
            });
        }
        match self {
            FleetAggregate::Avg => acc.map(|sum| sum / count as f64),
            _ => acc,
        }
    }
}

/// The plan's gates the simulation evaluates, in plan order (Prometheus,
/// then comparison), and the names of those it assumes pass.
pub(crate) fn modelled(plan: &Plan, degraded: bool) -> (Vec<Modelled>, Vec<String>) {
    let mut modelled = Vec::new();
    let mut assumed = Vec::new();
    for gate in &plan.gates.prometheus {
        match FleetAggregate::of(&gate.query).filter(|_| degraded) {
            Some(over) => modelled.push(Modelled::Threshold {
                gate: gate.clone(),
                over,
            }),
            None => assumed.push(format!("{} (prometheus)", gate.common.name)),
        }
    }
    for gate in &plan.gates.http {
        assumed.push(format!("{} (http)", gate.common.name));
    }
    for gate in &plan.gates.compare {
        modelled.push(Modelled::Compare(gate.clone()));
    }
    (modelled, assumed)
}

/// A host's usual value of the metric: `base` × its fixed spread.
pub(crate) fn usual_value(base: f64, spread_draw: f64) -> f64 {
    base * (SPREAD_LOW + SPREAD_WIDTH * spread_draw)
}

/// Evaluates a fleet-wide threshold gate on every host's value.
pub(crate) fn threshold(
    gate: &PrometheusGate,
    over: FleetAggregate,
    values: impl Iterator<Item = f64>,
    hosts: usize,
) -> GateResult {
    let (outcome, evidence) = match over.over(values) {
        None => (
            GateOutcome::NoData,
            format!("simulated {}: no host", gate.query),
        ),
        Some(value) => {
            let failing = gate.fail_if.fails(value);
            (
                if failing {
                    GateOutcome::Fail
                } else {
                    GateOutcome::Pass
                },
                format!(
                    "simulated {} of the metric over {hosts} hosts = {value:.6}, {} fail_if {}",
                    over.name(),
                    if failing { "fails" } else { "passes" },
                    gate.fail_if
                ),
            )
        }
    };
    GateResult {
        name: gate.common.name.clone(),
        outcome,
        evidence,
        comparison: None,
    }
}

/// Evaluates a comparison gate on the cohorts' values, by stratum.
pub(crate) fn compare(gate: &CompareGate, strata: &[StratumValues]) -> GateResult {
    let query = format!("simulated {}", gate.query);
    let verdict = sluice_core::compare::judge(gate, strata, &query);
    GateResult {
        name: gate.common.name.clone(),
        outcome: verdict.outcome,
        evidence: verdict.evidence,
        comparison: verdict.comparison,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_aggregations() {
        for (query, aggregate) in [
            ("sum(rate(x[5m]))", Some(FleetAggregate::Sum)),
            ("  avg (x)", Some(FleetAggregate::Avg)),
            ("max by (job) (x)", Some(FleetAggregate::Max)),
            ("min without(instance)(x)", Some(FleetAggregate::Min)),
            ("rate(x[5m])", None),
            ("summary(x)", None),
            ("sum", None),
            ("count(x)", None),
        ] {
            assert_eq!(FleetAggregate::of(query), aggregate, "{query}");
        }
        let values = [1.0, 3.0, 2.0];
        assert_eq!(FleetAggregate::Sum.over(values.into_iter()), Some(6.0));
        assert_eq!(FleetAggregate::Avg.over(values.into_iter()), Some(2.0));
        assert_eq!(FleetAggregate::Max.over(values.into_iter()), Some(3.0));
        assert_eq!(FleetAggregate::Min.over(values.into_iter()), Some(1.0));
        assert_eq!(FleetAggregate::Sum.over(std::iter::empty()), None);
    }
}
