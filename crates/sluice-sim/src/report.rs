//! What a simulation found: the figures (`--json`) and their summary for
//! people. Times are virtual seconds since the rollout started.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;
use sluice_core::plan::Plan;
use sluice_core::rollout::{Event, EventKind};

use crate::run::{ms_secs, Config, APPLY_MAX, APPLY_MIN};

/// The outcome of one simulation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub plan: String,
    pub component: String,
    pub version: String,
    pub seed: u64,
    pub poll_s: u64,
    pub approve_after_s: u64,
    /// The virtual time at which the rollout started.
    pub start: Timestamp,
    /// The bound on virtual time.
    pub limit_s: u64,
    pub faults: Vec<FaultReport>,
    pub hosts_fleet: u64,
    /// Hosts matching the plan's selector.
    pub hosts_selected: u64,
    /// Hosts the rollout admitted (told the target).
    pub hosts_admitted: u64,
    /// Hosts that ran the target at some point.
    pub hosts_changed: u64,
    /// The blast radius: hosts that got the target and failed (reported
    /// failure or went silent), whether or not the rollout saw it.
    pub hosts_failed: u64,
    /// Hosts back on their previous version after a rollback.
    pub hosts_reverted: u64,
    /// `hosts_failed` by the `role` label (`(none)` without one), roles
    /// with failures only.
    pub failed_by_role: BTreeMap<String, u64>,
    /// Every role of the selected hosts.
    pub by_role: Vec<RoleReport>,
    /// When sluice first saw a failure: a host reporting failed, or one
    /// declared failed after `host_timeout`.
    pub time_to_detect_s: Option<f64>,
    /// When the rollout stopped admitting because of failures (paused or
    /// rolled back).
    pub time_to_halt_s: Option<f64>,
    pub halt_reason: Option<String>,
    /// The stage the rollout was in when it halted (0-based).
    pub halt_stage: Option<usize>,
    /// The rollout's final state: `completed`, `paused`, `rolled_back`, or
    /// `running` when the bound on virtual time was reached.
    pub final_state: String,
    /// From the start to the final state (to the bound if never reached).
    pub duration_s: f64,
    /// From the start to the last thing that happened (hosts settling after
    /// a halt, late failures).
    pub ended_s: f64,
    /// The simulation stopped at `limit_s`.
    pub reached_limit: bool,
    /// The most hosts in flight at once, resolved against the selected
    /// hosts; `None` when the plan sets no limit.
    pub max_in_flight: Option<u64>,
    pub stages: Vec<StageReport>,
    /// The rollout's events (the first host failure only).
    pub timeline: Vec<TimelineEntry>,
    /// The gates the simulation evaluated on its simulated metric
    /// (comparison gates, and Prometheus gates when a `degrade` fault is
    /// given), in plan order.
    pub gates: Vec<GateReport>,
    /// External gates the simulation cannot evaluate: treated as passing.
    pub gates_assumed_passing: Vec<String>,
    pub notes: Vec<String>,
    /// Inputs the engine refused (none, unless the simulation drives it
    /// wrongly): listed, never dropped.
    pub refused: Vec<Refusal>,
}

/// One simulated gate: how often it was evaluated and when it first
/// failed, whether or not it acted (`report_only`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateReport {
    pub name: String,
    /// `compare` or `prometheus`.
    pub kind: &'static str,
    pub report_only: bool,
    pub evaluations: u64,
    pub failing: u64,
    pub no_data: u64,
    /// When it first failed (the time it detected the fault), and in which
    /// stage (0-based).
    pub first_failing_s: Option<f64>,
    pub first_failing_stage: Option<usize>,
    pub first_failing_evidence: Option<String>,
}

/// An input the engine refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub at_s: f64,
    /// What fed it: `inventory`, `check-in`, `tick`, `start`, `approval`.
    pub input: &'static str,
    pub reason: String,
}

/// A fault and how many selected hosts it hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultReport {
    pub spec: String,
    pub hosts: u64,
}

/// One role's share of the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleReport {
    pub role: String,
    pub selected: u64,
    pub changed: u64,
    pub failed: u64,
}

/// One event of the rollout, at a virtual time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub at_s: f64,
    /// For a bake: when it ends, as an offset like `at_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_s: Option<f64>,
    /// The engine's event: `{"type": "stage_started", …}`.
    #[serde(flatten)]
    pub event: EventKind,
}

/// One stage of the plan and when it ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReport {
    pub index: usize,
    pub name: String,
    pub percent: f64,
    /// Hosts the stage admits in the end (cumulative), when it started.
    pub quota: Option<u64>,
    /// Failures the stage tolerates (`max_failed` of its quota).
    pub allowed_failures: Option<u64>,
    pub started_s: Option<f64>,
    pub completed_s: Option<f64>,
}

impl Report {
    /// A report of `plan` run with `config`, whose gates `assumed` are
    /// assumed to pass, `modelled` the others.
    pub(crate) fn new(
        plan: &Plan,
        config: &Config,
        gates: Vec<String>,
        modelled: &[String],
    ) -> Report {
        let mut notes = vec![format!(
            "agents check in every {} ±20 %; an apply takes {} to {}; the host reports its result at the next check-in",
            config.poll, APPLY_MIN, APPLY_MAX
        )];
        if !gates.is_empty() {
            notes.push(format!(
                "these gates cannot be evaluated in a simulation and are treated as passing: {}",
                gates.join(", ")
            ));
        }
        if !modelled.is_empty() {
            notes.push(format!(
                "gates evaluated on a simulated metric, each host's value {} × a spread of 0.8 to 1.2 fixed per host (--metric-base), times the factor of its degrade fault while it runs the target; comparison gates on the cohorts (at most {} hosts each), Prometheus gates over the whole fleet with their query's outer sum, avg, max or min: {}",
                config.metric_base,
                config.cohort_max,
                modelled.join(", ")
            ));
        }
        if plan.stages.iter().any(|stage| stage.approve) {
            notes.push(format!(
                "approvals are given {} after a stage awaits them (--approve-after)",
                config.approve_after
            ));
        }
        if !plan.windows.is_empty() {
            notes.push(format!(
                "windows are honoured in virtual time, starting {}",
                config.start
            ));
        }
        Report {
            plan: plan.name.clone(),
            component: plan.component.clone(),
            version: plan.version.clone(),
            seed: config.seed,
            poll_s: config.poll.as_secs(),
            approve_after_s: config.approve_after.as_secs(),
            start: config.start,
            limit_s: config.limit.as_secs(),
            faults: Vec::new(),
            hosts_fleet: 0,
            hosts_selected: 0,
            hosts_admitted: 0,
            hosts_changed: 0,
            hosts_failed: 0,
            hosts_reverted: 0,
            failed_by_role: BTreeMap::new(),
            by_role: Vec::new(),
            time_to_detect_s: None,
            time_to_halt_s: None,
            halt_reason: None,
            halt_stage: None,
            final_state: String::new(),
            duration_s: 0.0,
            ended_s: 0.0,
            reached_limit: false,
            max_in_flight: None,
            stages: Vec::new(),
            timeline: Vec::new(),
            gates: Vec::new(),
            gates_assumed_passing: gates,
            notes,
            refused: Vec::new(),
        }
    }

    /// Counts one selected host.
    pub(crate) fn count_host(&mut self, role: &str, changed: bool, failed: bool) {
        self.hosts_changed += u64::from(changed);
        self.hosts_failed += u64::from(failed);
        if failed {
            *self.failed_by_role.entry(role.to_owned()).or_default() += 1;
        }
        let index = match self.by_role.binary_search_by(|r| r.role.as_str().cmp(role)) {
            Ok(index) => index,
            Err(index) => {
                self.by_role.insert(
                    index,
                    RoleReport {
                        role: role.to_owned(),
                        selected: 0,
                        changed: 0,
                        failed: 0,
                    },
                );
                index
            }
        };
        let entry = &mut self.by_role[index];
        entry.selected += 1;
        entry.changed += u64::from(changed);
        entry.failed += u64::from(failed);
    }

    pub(crate) fn set_timeline(&mut self, start_ms: i64, events: Vec<(i64, Event)>) {
        self.timeline = events
            .into_iter()
            .map(|(at, event)| TimelineEntry {
                at_s: ms_secs(at),
                until_s: match &event.kind {
                    EventKind::Baking { until, .. } => {
                        Some(ms_secs(until.as_millisecond() - start_ms))
                    }
                    _ => None,
                },
                event: event.kind,
            })
            .collect();
    }

    /// The summary for people: the timeline, the figures, the blast radius
    /// by role and the simulation's assumptions.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = self.write_text(&mut out);
        out
    }

    fn write_text(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "simulated {}: {} → {}",
            self.plan, self.component, self.version
        )?;
        writeln!(
            out,
            "fleet: {} hosts, {} selected; seed {}; virtual start {}",
            self.hosts_fleet, self.hosts_selected, self.seed, self.start
        )?;
        if self.faults.is_empty() {
            writeln!(out, "faults: none")?;
        } else {
            let faults: Vec<String> = (self.faults.iter())
                .map(|f| format!("{} ({} selected hosts)", f.spec, f.hosts))
                .collect();
            writeln!(out, "faults: {}", faults.join(", "))?;
        }

        for refusal in &self.refused {
            writeln!(
                out,
                "warning: at {} the engine refused the simulation's {}: {}",
                offset(refusal.at_s),
                refusal.input,
                refusal.reason
            )?;
        }

        writeln!(out, "\ntimeline (virtual time since the start)")?;
        for entry in &self.timeline {
            writeln!(out, "  {:<12} {}", offset(entry.at_s), describe(entry))?;
        }

        writeln!(
            out,
            "\nresult: {} after {}{}",
            self.final_state,
            span(self.duration_s),
            if self.reached_limit {
                format!(
                    " (stopped at the bound of {} of virtual time)",
                    span(self.limit_s as f64)
                )
            } else {
                String::new()
            }
        )?;
        writeln!(
            out,
            "  hosts changed    {} of {} selected ({} admitted)",
            self.hosts_changed, self.hosts_selected, self.hosts_admitted
        )?;
        writeln!(
            out,
            "  hosts failed     {} (blast radius)",
            self.hosts_failed
        )?;
        if self.hosts_reverted > 0 {
            writeln!(out, "  hosts reverted   {}", self.hosts_reverted)?;
        }
        match self.time_to_detect_s {
            Some(at) => writeln!(
                out,
                "  time to detect   {} (first failure seen)",
                offset(at)
            )?,
            None => writeln!(out, "  time to detect   n/a (no failure seen)")?,
        }
        match (self.time_to_halt_s, &self.halt_reason) {
            (Some(at), Some(reason)) => {
                writeln!(out, "  time to halt     {}: {reason}", offset(at))?
            }
            _ => writeln!(out, "  time to halt     n/a (the rollout did not halt)")?,
        }
        if let Some(limit) = self.max_in_flight {
            writeln!(out, "  max in flight    {limit}")?;
        }
        if !self.gates.is_empty() {
            writeln!(out, "\nsimulated gates")?;
            for gate in &self.gates {
                let acts = if gate.report_only {
                    ", report only"
                } else {
                    ""
                };
                let first = match (gate.first_failing_s, gate.first_failing_stage) {
                    (Some(at), Some(stage)) => {
                        format!("first failed at {} in stage {}", offset(at), stage + 1)
                    }
                    (Some(at), None) => format!("first failed at {}", offset(at)),
                    _ => "never failed".to_owned(),
                };
                writeln!(
                    out,
                    "  {} ({}{acts}): {} evaluations, {} failing, {} without data; {first}",
                    gate.name, gate.kind, gate.evaluations, gate.failing, gate.no_data
                )?;
                if let Some(evidence) = &gate.first_failing_evidence {
                    writeln!(out, "    {evidence}")?;
                }
            }
        }

        let mut roles: Vec<&RoleReport> = self.by_role.iter().filter(|r| r.failed > 0).collect();
        if roles.is_empty() {
            writeln!(out, "\nblast radius by role: no host failed")?;
        } else {
            roles.sort_by(|a, b| b.failed.cmp(&a.failed).then(a.role.cmp(&b.role)));
            writeln!(out, "\nblast radius by role")?;
            let width = roles.iter().map(|r| r.role.len()).max().unwrap_or(4).max(4);
            writeln!(
                out,
                "  {:<width$}  {:>8}  {:>8}  {:>8}",
                "role", "selected", "changed", "failed"
            )?;
            const SHOWN: usize = 12;
            for role in roles.iter().take(SHOWN) {
                writeln!(
                    out,
                    "  {:<width$}  {:>8}  {:>8}  {:>8}",
                    role.role, role.selected, role.changed, role.failed
                )?;
            }
            if roles.len() > SHOWN {
                let rest: u64 = roles[SHOWN..].iter().map(|r| r.failed).sum();
                writeln!(
                    out,
                    "  … {} more roles with {rest} failed hosts (--json lists every role)",
                    roles.len() - SHOWN
                )?;
            }
        }

        writeln!(out, "\nassumptions")?;
        for note in &self.notes {
            writeln!(out, "  - {note}")?;
        }
        Ok(())
    }
}

/// One timeline entry in words.
fn describe(entry: &TimelineEntry) -> String {
    let stage = |index: &usize| format!("stage {}", index + 1);
    match &entry.event {
        EventKind::Started { .. } => "started".to_owned(),
        EventKind::StageStarted {
            index,
            name,
            percent,
            quota,
        } => format!(
            "{}{} ({percent}%) started: {quota} hosts by its end",
            stage(index),
            named(*index, name)
        ),
        EventKind::Baking { stage: index, .. } => format!(
            "{} settled, baking until {}",
            stage(index),
            offset(entry.until_s.unwrap_or(entry.at_s))
        ),
        EventKind::AwaitingApproval { stage: index } => {
            format!("{} awaits approval", stage(index))
        }
        EventKind::Approved { stage: index, .. } => {
            format!("{} approved by the simulated operator", stage(index))
        }
        EventKind::StageCompleted { index, name } => {
            format!("{}{} completed", stage(index), named(*index, name))
        }
        EventKind::Completed => "rollout completed".to_owned(),
        EventKind::Paused { reason } => format!("paused: {reason}"),
        EventKind::Held { hold } => format!("held: {hold}"),
        EventKind::Released { .. } => "released".to_owned(),
        EventKind::Waiting { wait } => wait.to_string(),
        EventKind::WaitOver { wait } => format!("wait over ({wait})"),
        EventKind::HostFailed { host, reason, .. } => {
            format!("first host failure: {host}: {reason}")
        }
        EventKind::MaxFailedExceeded {
            stage: index,
            failed,
            allowed,
        } => format!(
            "{}: {failed} {} failed, {allowed} allowed",
            stage(index),
            if *failed == 1 { "host" } else { "hosts" }
        ),
        EventKind::RollbackSkipped { why } => format!("rollback skipped: {why}"),
        EventKind::RollbackStarted { reason, hosts, .. } => {
            format!("rolled back ({hosts} admitted hosts told to return): {reason}")
        }
        EventKind::GateFailed { gate, .. } => format!("gate {gate} failed"),
        other => format!("{other:?}"),
    }
}

/// ` canary` for a stage named in the plan; nothing for the default
/// `stage-N`, which would repeat the number.
fn named(index: usize, name: &str) -> String {
    if name == format!("stage-{}", index + 1) {
        String::new()
    } else {
        format!(" {name}")
    }
}

/// `+1h02m03s`: an offset from the start.
fn offset(seconds: f64) -> String {
    format!("+{}", span(seconds))
}

/// `1d02h03m`, `2h03m04s`, `4m12s`, `35s`: a span rounded to the second.
fn span(seconds: f64) -> String {
    let total = seconds.round().max(0.0) as u64;
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total / 3_600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if days > 0 {
        format!("{days}d{hours:02}h{minutes:02}m")
    } else if hours > 0 {
        format!("{hours}h{minutes:02}m{secs:02}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs:02}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_durations() {
        for (seconds, text) in [
            (0.0, "0s"),
            (35.4, "35s"),
            (252.0, "4m12s"),
            (7_384.0, "2h03m04s"),
            (93_780.0, "1d02h03m"),
        ] {
            assert_eq!(span(seconds), text);
        }
    }
}
