//! The rollout retrospective: every figure of `sluice rollout report`, the
//! dashboard's Report tab and `sluice simulate --report`, computed once.
//!
//! [`build`] is a pure function of what a rollout leaves behind — its plan,
//! its events, its hosts as they stand and the samples of its hosts by state
//! — and returns a typed [`Report`]; [`render`] turns it into Markdown, a
//! self-contained HTML page or JSON, and [`svg`] draws its chart. The server,
//! the CLI, the dashboard and the simulator all call these, so a figure has
//! one definition.
//!
//! It lives in the simulator's crate because one figure needs the simulator:
//! the blast radius of an all-at-once push of the same change over the same
//! hosts, with the failures seen ([`all_at_once`]).
//!
//! Definitions (also the report's own footnotes):
//! - *blast radius*: distinct hosts with a `host_failed` event — told the
//!   change and reported failure or went silent past `host_timeout`;
//! - *time to detect*: from the start to the first failure sluice saw (a
//!   host failed, or a gate evaluation failed);
//! - *time to halt*: from the start to the first pause or rollback after
//!   that failure;
//! - *time to recover*: from the start to the first sample, after the first
//!   failure, with no host failed, reverting or in flight.

pub mod render;
pub mod svg;

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt, HashSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sluice_core::duration::Duration;
use sluice_core::fleet::{Host, HostId, Labels, StrMap};
use sluice_core::percent::Percent;
use sluice_core::plan::{OnFailure, Plan, Stage};
use sluice_core::rollout::{Event, EventKind, GateOutcome, HoldReason, HostCounts, Rollout, Wait};

use crate::fault::Fault;
use crate::push::push_at_once;
use crate::run::Config;

/// How many hosts were in each state at a time: one point of the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSample {
    pub at: Timestamp,
    #[serde(flatten)]
    pub counts: HostCounts,
}

/// One host of the rollout as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct HostFacts {
    pub id: String,
    pub labels: Labels,
    /// Its state in the rollout (`waiting`, `healthy`, …).
    pub state: &'static str,
    /// The version it ran before admission.
    pub previous: Option<String>,
    /// The stage that admitted it.
    pub admitted_stage: Option<usize>,
    /// The last message it reported for the component (its output's tail).
    pub message: Option<String>,
}

/// Where the record comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A rollout on a server.
    Server,
    /// A rehearsal by `sluice simulate`.
    Simulation { seed: u64, faults: Vec<String> },
}

/// Everything a report is computed from.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub rollout: &'a str,
    pub plan: &'a Plan,
    /// The timeline, oldest first.
    pub events: &'a [Event],
    pub hosts: &'a [HostFacts],
    /// Hosts by state over time, oldest first.
    pub samples: &'a [StateSample],
    pub source: Source,
    /// When the report is made: the end of a rollout still under way.
    pub now: Timestamp,
}

/// The retrospective. Times are RFC 3339; durations are seconds (`_s`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub rollout: String,
    pub source: Source,
    pub generated_at: Timestamp,
    pub summary: Summary,
    pub stages: Vec<StageRow>,
    pub holds: Vec<Hold>,
    pub gates: Gates,
    pub failures: Failures,
    pub blast_radius: BlastRadius,
    pub times: Times,
    /// Operator actions and what sluice decided, oldest first (gate
    /// evaluations and host failures have their own sections).
    pub timeline: Vec<Event>,
    pub chart: Vec<StateSample>,
    pub prompts: Prompts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub plan: String,
    pub component: String,
    /// The versions the admitted hosts ran before, most hosts first.
    pub from: Vec<VersionCount>,
    pub to: String,
    pub created_at: Option<Timestamp>,
    /// Who started it: an actor, or `sluice` for a scheduled start.
    pub started_by: Option<String>,
    pub started_at: Option<Timestamp>,
    pub start_reason: Option<String>,
    /// `pending`, `running`, `paused`, `completed`, `aborted` or
    /// `rolled_back`, as the timeline ends.
    pub outcome: String,
    /// When it reached a final state (or paused for the last time).
    pub ended_at: Option<Timestamp>,
    /// From the start to `ended_at`, or to the report while under way.
    pub duration_s: Option<f64>,
    pub hosts_selected: u64,
    pub hosts_admitted: u64,
    pub max_in_flight: Option<u64>,
    pub on_failure: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionCount {
    pub version: String,
    pub hosts: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRow {
    pub index: usize,
    pub name: String,
    pub percent: f64,
    /// Hosts the stage admits across strata, as it started (`None`: never
    /// started).
    pub quota: Option<u64>,
    /// `max_failed` of the quota.
    pub allowed_failures: Option<u64>,
    /// Hosts this stage admitted.
    pub admitted: u64,
    /// Host failures counted for this stage.
    pub failed: u64,
    pub started_at: Option<Timestamp>,
    /// Every quota admitted and no host in flight (its bake began).
    pub settled_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub bake_planned_s: u64,
    /// Time spent baking (every bake of the stage; a resume restarts one).
    pub bake_actual_s: Option<f64>,
    pub approval: Option<Approval>,
    /// An operator skipped the rest of the bake.
    pub advanced: Option<Act>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub asked_at: Timestamp,
    pub approved: Option<Act>,
    pub wait_s: Option<f64>,
}

/// Who did something, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Act {
    pub at: Timestamp,
    pub by: String,
    pub reason: String,
}

/// A time the rollout admitted nobody: a freeze, outside its windows,
/// paused, or waiting for what other rollouts hold (the fleet's change
/// budget, hosts busy with another change).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hold {
    /// `freeze`, `window`, `pause`, `budget` or `busy hosts`.
    pub kind: &'static str,
    /// The stage it happened in (0-based).
    pub stage: Option<usize>,
    pub from: Timestamp,
    pub to: Option<Timestamp>,
    pub duration_s: Option<f64>,
    /// Who put it on (`sluice` for what sluice did by itself).
    pub by: String,
    pub why: String,
    pub released_by: Option<String>,
    pub released_why: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gates {
    pub evaluations: Vec<GateEvaluation>,
    /// The gates that acted (failed and applied `on_failure`), and the
    /// built-in host-health gate when `max_failed` was exceeded.
    pub acted: Vec<GateAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateEvaluation {
    pub at: Timestamp,
    pub gate: String,
    /// `prometheus` or `http`.
    pub kind: &'static str,
    /// The PromQL query, or the URL asked.
    pub query: String,
    /// What fails it: `> 0.5`, `not 2xx`.
    pub threshold: String,
    /// The value seen, when the evidence holds one: the (first failing)
    /// series' value of a Prometheus query, the status of an HTTP answer.
    pub value: Option<f64>,
    /// `pass`, `fail` or `no_data`.
    pub outcome: &'static str,
    /// What was seen, the value included.
    pub evidence: String,
    pub report_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateAction {
    pub at: Timestamp,
    pub gate: String,
    pub evidence: String,
    /// What followed: `paused`, `rolled back` (or nothing yet).
    pub then: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failures {
    pub by_role: Vec<Group>,
    pub by_site: Vec<Group>,
    /// Every host that failed, in the order it first failed.
    pub hosts: Vec<FailedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The label's value, `(none)` without one.
    pub value: String,
    pub failed: u64,
    pub admitted: u64,
    pub selected: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedHost {
    pub host: String,
    pub role: String,
    pub site: String,
    pub stage: Option<usize>,
    pub first_failed_at: Timestamp,
    /// Times it failed (a flapping host fails more than once).
    pub failures: u64,
    /// Why sluice counted it failed, the last time.
    pub reason: String,
    /// Its state now.
    pub state: String,
    /// The last message it reported: its report's now, else the one its
    /// last failure carried.
    pub last_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlastRadius {
    /// Hosts that got the change and failed.
    pub hosts_failed: u64,
    pub hosts_admitted: u64,
    pub hosts_selected: u64,
    /// `max_in_flight` (of the selected hosts; `None`: unlimited).
    pub max_in_flight: Option<u64>,
    /// `max_failed` of the largest stage started.
    pub max_failed: u64,
    /// What the plan allowed: `max_in_flight + max_failed` (`None`:
    /// unlimited).
    pub bound: Option<u64>,
    pub within_bound: bool,
    pub all_at_once: AllAtOnce,
}

/// The same change pushed to every selected host at once, simulated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllAtOnce {
    /// Hosts that would have got the change and failed.
    pub hosts_failed: u64,
    /// Hosts that would have got the change.
    pub hosts_changed: u64,
    pub time_to_detect_s: Option<f64>,
    /// How the failing hosts were chosen.
    pub assumption: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Times {
    pub first_failure_at: Option<Timestamp>,
    /// What the first failure was.
    pub first_failure: Option<String>,
    pub halted_at: Option<Timestamp>,
    pub halt: Option<String>,
    pub recovered_at: Option<Timestamp>,
    pub time_to_detect_s: Option<f64>,
    pub time_to_halt_s: Option<f64>,
    pub time_to_recover_s: Option<f64>,
}

/// The retro's questions, with the facts that answer them (and, for the
/// action items, what the facts suggest); the rest is the team's to write.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prompts {
    pub went_well: Vec<String>,
    pub went_wrong: Vec<String>,
    pub got_lucky: Vec<String>,
    pub action_items: Vec<String>,
}

/// Computes the report.
pub fn build(record: &Record<'_>) -> Report {
    let plan = record.plan;
    let events = record.events;
    let started = events.iter().find_map(|e| match &e.kind {
        EventKind::Started { reason } => Some((e, reason)),
        _ => None,
    });
    let started_at = started.map(|(e, _)| e.at);
    let since = |at: Timestamp| started_at.map(|s| secs(s, at));

    let (outcome, ended_at) = outcome(events);
    let hosts_selected = record.hosts.len() as u64;
    let hosts_admitted = record
        .hosts
        .iter()
        .filter(|h| h.admitted_stage.is_some())
        .count() as u64;
    let max_in_flight = plan
        .max_in_flight
        .map(|amount| amount.resolve(hosts_selected).max(1));

    let mut from: BTreeMap<&str, u64> = BTreeMap::new();
    for host in record.hosts.iter().filter(|h| h.admitted_stage.is_some()) {
        *from
            .entry(host.previous.as_deref().unwrap_or("(unknown)"))
            .or_default() += 1;
    }
    let mut from: Vec<VersionCount> = from
        .into_iter()
        .map(|(version, hosts)| VersionCount {
            version: version.to_owned(),
            hosts,
        })
        .collect();
    from.sort_by(|a, b| b.hosts.cmp(&a.hosts).then(a.version.cmp(&b.version)));

    let summary = Summary {
        plan: plan.name.clone(),
        component: plan.component.clone(),
        from,
        to: plan.version.clone(),
        created_at: events.first().map(|e| e.at),
        // A scheduled rollout is started by sluice itself: no actor.
        started_by: started.map(|(e, _)| e.actor.clone().unwrap_or_else(|| "sluice".to_owned())),
        started_at,
        start_reason: started.map(|(_, reason)| reason.clone()),
        outcome: outcome.to_owned(),
        ended_at,
        duration_s: started_at.map(|s| secs(s, ended_at.unwrap_or(record.now))),
        hosts_selected,
        hosts_admitted,
        max_in_flight,
        on_failure: match plan.on_failure {
            OnFailure::Pause => "pause",
            OnFailure::Rollback => "rollback",
        }
        .to_owned(),
    };

    let stages = stages(record);
    let holds = holds(events, record.now);
    let gates = gates(plan, events);
    let failures = failures(record);
    let times = times(events, record.samples, &since);

    let max_failed = stages
        .iter()
        .filter_map(|s| s.allowed_failures)
        .max()
        .unwrap_or(0);
    let hosts_failed = failures.hosts.len() as u64;
    let bound = max_in_flight.map(|m| m + max_failed);
    let blast_radius = BlastRadius {
        hosts_failed,
        hosts_admitted,
        hosts_selected,
        max_in_flight,
        max_failed,
        bound,
        within_bound: bound.is_none_or(|b| hosts_failed <= b),
        all_at_once: all_at_once(record, &failures),
    };

    let timeline = events
        .iter()
        .filter(|e| {
            !matches!(
                e.kind,
                EventKind::GateEvaluated { .. } | EventKind::HostFailed { .. }
            )
        })
        .cloned()
        .collect();

    let mut report = Report {
        rollout: record.rollout.to_owned(),
        source: record.source.clone(),
        generated_at: record.now,
        summary,
        stages,
        holds,
        gates,
        failures,
        blast_radius,
        times,
        timeline,
        chart: record.samples.to_vec(),
        prompts: Prompts {
            went_well: Vec::new(),
            went_wrong: Vec::new(),
            got_lucky: Vec::new(),
            action_items: Vec::new(),
        },
    };
    report.prompts = prompts(&report);
    report
}

/// Seconds from `from` to `to`.
fn secs(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64()
}

/// The outcome as the timeline ends, and when it was reached.
fn outcome(events: &[Event]) -> (&'static str, Option<Timestamp>) {
    let mut state = ("pending", None);
    for event in events {
        state = match &event.kind {
            EventKind::Started { .. } | EventKind::Resumed { .. } => ("running", None),
            EventKind::Paused { .. } => ("paused", Some(event.at)),
            EventKind::Completed => ("completed", Some(event.at)),
            EventKind::Aborted { .. } => ("aborted", Some(event.at)),
            EventKind::RollbackStarted { .. } => ("rolled_back", Some(event.at)),
            _ => continue,
        };
    }
    state
}

fn stages(record: &Record<'_>) -> Vec<StageRow> {
    let plan = record.plan;
    let mut rows: Vec<StageRow> = plan
        .stages
        .iter()
        .enumerate()
        .map(|(index, stage)| StageRow {
            index,
            name: stage.name.clone(),
            percent: stage.percent.as_f64(),
            quota: None,
            allowed_failures: None,
            admitted: 0,
            failed: 0,
            started_at: None,
            settled_at: None,
            completed_at: None,
            bake_planned_s: stage.bake.as_secs(),
            bake_actual_s: None,
            approval: None,
            advanced: None,
        })
        .collect();
    for host in record.hosts {
        if let Some(row) = host.admitted_stage.and_then(|s| rows.get_mut(s)) {
            row.admitted += 1;
        }
    }
    // The bake under way: its stage and since when.
    let mut baking: Option<(usize, Timestamp)> = None;
    let end_bake = |rows: &mut Vec<StageRow>, baking: &mut Option<(usize, Timestamp)>, at| {
        if let Some((stage, since)) = baking.take() {
            if let Some(row) = rows.get_mut(stage) {
                *row.bake_actual_s.get_or_insert(0.0) += secs(since, at);
            }
        }
    };
    for event in record.events {
        let at = event.at;
        let by = || event.actor.clone().unwrap_or_else(|| "sluice".to_owned());
        match &event.kind {
            EventKind::StageStarted { index, quota, .. } => {
                if let Some(row) = rows.get_mut(*index) {
                    row.started_at.get_or_insert(at);
                    row.quota = Some(*quota);
                    row.allowed_failures = Some(plan.gates.max_failed.resolve(*quota));
                }
            }
            EventKind::Baking { stage, .. } => {
                end_bake(&mut rows, &mut baking, at);
                if let Some(row) = rows.get_mut(*stage) {
                    row.settled_at.get_or_insert(at);
                    row.bake_actual_s.get_or_insert(0.0);
                }
                baking = Some((*stage, at));
            }
            EventKind::AwaitingApproval { stage } => {
                end_bake(&mut rows, &mut baking, at);
                if let Some(row) = rows.get_mut(*stage) {
                    row.settled_at.get_or_insert(at);
                    row.approval.get_or_insert(Approval {
                        asked_at: at,
                        approved: None,
                        wait_s: None,
                    });
                }
            }
            EventKind::Approved { stage, reason } => {
                if let Some(approval) = rows.get_mut(*stage).and_then(|r| r.approval.as_mut()) {
                    approval.wait_s = Some(secs(approval.asked_at, at));
                    approval.approved = Some(Act {
                        at,
                        by: by(),
                        reason: reason.clone(),
                    });
                }
            }
            EventKind::Advanced { stage, reason } => {
                end_bake(&mut rows, &mut baking, at);
                if let Some(row) = rows.get_mut(*stage) {
                    row.advanced = Some(Act {
                        at,
                        by: by(),
                        reason: reason.clone(),
                    });
                }
            }
            EventKind::StageCompleted { index, .. } => {
                end_bake(&mut rows, &mut baking, at);
                if let Some(row) = rows.get_mut(*index) {
                    row.completed_at = Some(at);
                }
            }
            EventKind::HostFailed {
                stage: Some(stage), ..
            } => {
                if let Some(row) = rows.get_mut(*stage) {
                    row.failed += 1;
                }
            }
            EventKind::Paused { .. }
            | EventKind::RollbackStarted { .. }
            | EventKind::Aborted { .. }
            | EventKind::Completed => end_bake(&mut rows, &mut baking, at),
            _ => {}
        }
    }
    end_bake(&mut rows, &mut baking, record.now);
    rows
}

/// A wait's kind of hold.
fn wait_kind(wait: Wait) -> &'static str {
    match wait {
        Wait::FleetBudget => "budget",
        Wait::HostsBusy => "busy hosts",
    }
}

/// The holds of a timeline as it is read, those still open by kind.
#[derive(Default)]
struct HoldLog {
    holds: Vec<Hold>,
    open: HashMap<&'static str, usize>,
}

impl HoldLog {
    /// Opens a hold of `kind` at `from`, unless one is open already.
    fn open(
        &mut self,
        kind: &'static str,
        stage: Option<usize>,
        from: Timestamp,
        by: String,
        why: String,
    ) {
        if self.open.contains_key(kind) {
            return;
        }
        self.open.insert(kind, self.holds.len());
        self.holds.push(Hold {
            kind,
            stage,
            from,
            to: None,
            duration_s: None,
            by,
            why,
            released_by: None,
            released_why: None,
        });
    }

    /// Closes the open hold of `kind` at `at`, if there is one; `by`
    /// released it (`sluice` when no one did), saying `why`.
    fn close(&mut self, kind: &str, at: Timestamp, by: Option<String>, why: Option<String>) {
        let Some(index) = self.open.remove(kind) else {
            return;
        };
        let hold = &mut self.holds[index];
        hold.to = Some(at);
        hold.duration_s = Some(secs(hold.from, at));
        hold.released_by = by.or_else(|| Some("sluice".to_owned()));
        hold.released_why = why;
    }
}

fn holds(events: &[Event], now: Timestamp) -> Vec<Hold> {
    let mut log = HoldLog::default();
    let mut stage = None;
    for event in events {
        let at = event.at;
        let actor = event.actor.clone();
        match &event.kind {
            EventKind::StageStarted { index, .. } => stage = Some(*index),
            EventKind::Held { hold } => {
                let (kind, by, why) = match hold {
                    HoldReason::Frozen { actor, reason } => {
                        ("freeze", actor.clone(), reason.clone())
                    }
                    HoldReason::OutsideWindow { .. } => {
                        ("window", "sluice".to_owned(), hold.to_string())
                    }
                };
                log.open(kind, stage, at, by, why);
            }
            EventKind::Released { hold, reason } => {
                let kind = match hold {
                    HoldReason::Frozen { .. } => "freeze",
                    HoldReason::OutsideWindow { .. } => "window",
                };
                log.close(kind, at, actor, reason.clone());
            }
            EventKind::Paused { reason } => {
                let by = actor.unwrap_or_else(|| "sluice".to_owned());
                log.open("pause", stage, at, by, reason.clone());
            }
            EventKind::Resumed { reason, .. }
            | EventKind::RollbackStarted { reason, .. }
            | EventKind::Aborted { reason } => {
                log.close("pause", at, actor, Some(reason.clone()));
                for wait in [Wait::FleetBudget, Wait::HostsBusy] {
                    log.close(wait_kind(wait), at, None, None);
                }
            }
            EventKind::Waiting { wait } => {
                log.open(
                    wait_kind(*wait),
                    stage,
                    at,
                    "sluice".to_owned(),
                    wait.to_string(),
                );
            }
            EventKind::WaitOver { wait } => log.close(wait_kind(*wait), at, None, None),
            _ => {}
        }
    }
    let mut holds = log.holds;
    for hold in holds.iter_mut().filter(|h| h.to.is_none()) {
        hold.duration_s = Some(secs(hold.from, now));
    }
    holds
}

fn gates(plan: &Plan, events: &[Event]) -> Gates {
    let mut spec: HashMap<&str, (&'static str, String, String)> = HashMap::new();
    for gate in &plan.gates.prometheus {
        spec.insert(
            &gate.common.name,
            ("prometheus", gate.query.clone(), gate.fail_if.to_string()),
        );
    }
    for gate in &plan.gates.http {
        spec.insert(
            &gate.common.name,
            ("http", format!("GET {}", gate.url), "not 2xx".to_owned()),
        );
    }
    for gate in &plan.gates.compare {
        spec.insert(
            &gate.common.name,
            ("compare", gate.query.clone(), gate.judge.to_string()),
        );
    }
    let mut evaluations = Vec::new();
    let mut acted: Vec<GateAction> = Vec::new();
    let mut pending: Option<usize> = None;
    for event in events {
        match &event.kind {
            EventKind::GateEvaluated {
                gate,
                outcome,
                evidence,
                report_only,
                ..
            } => {
                let (kind, query, threshold) = spec.get(gate.as_str()).cloned().unwrap_or((
                    "external",
                    String::new(),
                    String::new(),
                ));
                evaluations.push(GateEvaluation {
                    at: event.at,
                    gate: gate.clone(),
                    kind,
                    value: value_of(kind, &query, evidence),
                    query,
                    threshold,
                    outcome: outcome_name(*outcome),
                    evidence: evidence.clone(),
                    report_only: *report_only,
                });
            }
            EventKind::GateFailed { gate, evidence, .. } => {
                pending = Some(acted.len());
                acted.push(GateAction {
                    at: event.at,
                    gate: gate.clone(),
                    evidence: evidence.clone(),
                    then: None,
                });
            }
            EventKind::MaxFailedExceeded {
                stage,
                failed,
                allowed,
            } => {
                pending = Some(acted.len());
                acted.push(GateAction {
                    at: event.at,
                    gate: "host health (max_failed)".to_owned(),
                    evidence: format!(
                        "{failed} hosts failed in stage {}, {allowed} allowed",
                        stage + 1
                    ),
                    then: None,
                });
            }
            EventKind::Paused { .. } | EventKind::RollbackStarted { .. }
                if event.actor.is_none() =>
            {
                if let Some(action) = pending.take().and_then(|i| acted.get_mut(i)) {
                    action.then = Some(
                        match event.kind {
                            EventKind::Paused { .. } => "paused",
                            _ => "rolled back",
                        }
                        .to_owned(),
                    );
                }
            }
            _ => {}
        }
    }
    Gates { evaluations, acted }
}

/// The value in a gate's evidence, as the server writes it:
/// `QUERY{series} = VALUE, fail_if …` for Prometheus, `GET URL: STATUS …`
/// for HTTP; `None` for an error or no data.
fn value_of(kind: &str, query: &str, evidence: &str) -> Option<f64> {
    match kind {
        "prometheus" => {
            let rest = evidence.strip_prefix(query)?;
            let (_, after) = rest.split_once(" = ")?;
            after.split(',').next()?.trim().parse().ok()
        }
        "http" => {
            let rest = evidence.strip_prefix(query)?.strip_prefix(": ")?;
            let status: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (status.len() == 3).then(|| status.parse().ok()).flatten()
        }
        _ => None,
    }
}

fn outcome_name(outcome: GateOutcome) -> &'static str {
    match outcome {
        GateOutcome::Pass => "pass",
        GateOutcome::Fail => "fail",
        GateOutcome::NoData => "no_data",
    }
}

fn label(labels: &Labels, key: &str) -> String {
    labels.get(key).unwrap_or("(none)").to_owned()
}

fn failures(record: &Record<'_>) -> Failures {
    let by_id: HashMap<&str, &HostFacts> =
        record.hosts.iter().map(|h| (h.id.as_str(), h)).collect();
    let mut hosts: Vec<FailedHost> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for event in record.events {
        let EventKind::HostFailed {
            host,
            reason,
            stage,
        } = &event.kind
        else {
            continue;
        };
        if let Some(&i) = index.get(host.as_str()) {
            hosts[i].failures += 1;
            hosts[i].reason = reason.clone();
            continue;
        }
        let facts = by_id.get(host.as_str());
        index.insert(host, hosts.len());
        hosts.push(FailedHost {
            host: host.clone(),
            role: facts.map_or("(none)".to_owned(), |f| label(&f.labels, "role")),
            site: facts.map_or("(none)".to_owned(), |f| label(&f.labels, "site")),
            stage: *stage,
            first_failed_at: event.at,
            failures: 1,
            reason: reason.clone(),
            state: facts.map_or("(gone)", |f| f.state).to_owned(),
            last_message: facts.and_then(|f| f.message.clone()),
        });
    }
    // A host that reports no message now (back healthy, reverted) keeps
    // the one its last failure carried.
    for host in &mut hosts {
        if host.last_message.is_none() {
            host.last_message = host
                .reason
                .split_once("reported failed: ")
                .map(|(_, message)| message.to_owned());
        }
    }
    let group = |key: &str| {
        let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
        for host in record.hosts {
            let value = host.labels.get(key).unwrap_or("(none)");
            let group = groups.entry(value).or_insert_with(|| Group {
                value: value.to_owned(),
                failed: 0,
                admitted: 0,
                selected: 0,
            });
            group.selected += 1;
            group.admitted += u64::from(host.admitted_stage.is_some());
            group.failed += u64::from(index.contains_key(host.id.as_str()));
        }
        let mut groups: Vec<Group> = groups.into_values().filter(|g| g.failed > 0).collect();
        groups.sort_by(|a, b| b.failed.cmp(&a.failed).then(a.value.cmp(&b.value)));
        groups
    };
    Failures {
        by_role: group("role"),
        by_site: group("site"),
        hosts,
    }
}

fn times(
    events: &[Event],
    samples: &[StateSample],
    since: &dyn Fn(Timestamp) -> Option<f64>,
) -> Times {
    let first = events.iter().find_map(|e| match &e.kind {
        EventKind::HostFailed { host, reason, .. } => {
            Some((e.at, format!("host {host} failed: {reason}")))
        }
        EventKind::GateEvaluated {
            gate,
            outcome: GateOutcome::Fail,
            evidence,
            report_only: false,
            ..
        } => Some((e.at, format!("gate {gate} failed: {evidence}"))),
        _ => None,
    });
    let halt = first.as_ref().and_then(|(detected, _)| {
        events.iter().find_map(|e| match &e.kind {
            EventKind::Paused { reason } if e.at >= *detected => {
                Some((e.at, format!("paused by {}: {reason}", actor(e))))
            }
            EventKind::RollbackStarted { reason, .. } if e.at >= *detected => {
                Some((e.at, format!("rolled back by {}: {reason}", actor(e))))
            }
            _ => None,
        })
    });
    let recovered = first.as_ref().and_then(|(detected, _)| {
        samples
            .iter()
            .find(|s| {
                s.at >= *detected
                    && s.counts.failed == 0
                    && s.counts.reverting == 0
                    && s.counts.instructed == 0
            })
            .map(|s| s.at)
    });
    Times {
        first_failure_at: first.as_ref().map(|(at, _)| *at),
        time_to_detect_s: first.as_ref().and_then(|(at, _)| since(*at)),
        first_failure: first.map(|(_, what)| what),
        halted_at: halt.as_ref().map(|(at, _)| *at),
        time_to_halt_s: halt.as_ref().and_then(|(at, _)| since(*at)),
        halt: halt.map(|(_, what)| what),
        recovered_at: recovered,
        time_to_recover_s: recovered.and_then(since),
    }
}

fn actor(event: &Event) -> &str {
    event.actor.as_deref().unwrap_or("sluice")
}

/// The same change to every selected host at once: an admitted host fails
/// as it did in the rollout; one never admitted fails in the share of its
/// stratum's admitted hosts that failed (strata the rollout never reached:
/// the share over all admitted hosts), picked by a seeded hash; then the
/// simulator pushes a one-stage plan of 100 % without `max_in_flight` to
/// them ([`push_at_once`]: the figures of a simulation run, without
/// running its event loop).
pub fn all_at_once(record: &Record<'_>, failures: &Failures) -> AllAtOnce {
    let plan = record.plan;
    let failed: HashSet<&str> = failures.hosts.iter().map(|h| h.host.as_str()).collect();
    // Each host's stratum: an index into `shares`, (admitted, failed) of
    // each stratum.
    let mut shares: Vec<(u64, u64)> = Vec::new();
    let mut stratum_of: HashMap<Vec<&str>, usize> = HashMap::new();
    let mut key = Vec::with_capacity(plan.strategy.spread.len());
    let strata: Vec<usize> = (record.hosts.iter())
        .map(|host| {
            key.clear();
            key.extend(
                (plan.strategy.spread.iter()).map(|k| host.labels.get(k).unwrap_or_default()),
            );
            if let Some(&s) = stratum_of.get(key.as_slice()) {
                return s;
            }
            stratum_of.insert(key.clone(), shares.len());
            shares.push((0, 0));
            shares.len() - 1
        })
        .collect();
    let (mut admitted_all, mut failed_all) = (0u64, 0u64);
    for (host, &s) in record.hosts.iter().zip(&strata) {
        if host.admitted_stage.is_none() {
            continue;
        }
        let hit = u64::from(failed.contains(host.id.as_str()));
        shares[s].0 += 1;
        shares[s].1 += hit;
        admitted_all += 1;
        failed_all += hit;
    }
    let overall = if admitted_all == 0 {
        0.0
    } else {
        failed_all as f64 / admitted_all as f64
    };
    // Hosts share a handful of versions: one component map each.
    let mut components: HashMap<Option<&str>, StrMap> = HashMap::new();
    let mut fleet = Vec::with_capacity(record.hosts.len());
    let mut failing = std::collections::HashSet::new();
    for (host, &s) in record.hosts.iter().zip(&strata) {
        let Ok(id) = HostId::parse(&host.id) else {
            continue;
        };
        let share = match shares[s] {
            (admitted, failed) if admitted > 0 => failed as f64 / admitted as f64,
            _ => overall,
        };
        // An admitted host fails as it did; one never admitted is drawn.
        let fails = match host.admitted_stage {
            Some(_) => failed.contains(host.id.as_str()),
            None => crate::fault::draw(0, 0, &host.id) < share,
        };
        if fails {
            failing.insert(host.id.clone());
        }
        let components = components
            .entry(host.previous.as_deref())
            .or_insert_with(|| {
                (host.previous.iter())
                    .map(|v| (plan.component.as_str(), v.as_str()))
                    .collect()
            })
            .clone();
        fleet.push(Host {
            id,
            labels: host.labels.clone(),
            components,
        });
    }
    let assumption = format!(
        "every selected host told at once; an admitted host fails as it did, one never admitted \
         in the share of its stratum's admitted hosts that failed ({:.1} % over all admitted \
         hosts, for strata never reached)",
        overall * 100.0
    );
    let mut once = plan.clone();
    once.max_in_flight = None;
    once.windows.clear();
    once.gates.prometheus.clear();
    once.gates.http.clear();
    once.stages = vec![Stage {
        name: "all at once".to_owned(),
        percent: Percent::HUNDRED,
        bake: Duration::from_secs(0),
        approve: false,
    }];
    let config = Config {
        faults: vec![Fault::on_hosts("observed failures", failing)],
        limit: Duration::from_secs(7 * 86_400),
        ..Config::default()
    };
    let push = push_at_once(&once, &fleet, &config);
    AllAtOnce {
        hosts_failed: push.hosts_failed,
        hosts_changed: push.hosts_changed,
        time_to_detect_s: push.time_to_detect_s,
        assumption,
    }
}

fn prompts(report: &Report) -> Prompts {
    let mut p = Prompts {
        went_well: Vec::new(),
        went_wrong: Vec::new(),
        got_lucky: Vec::new(),
        action_items: Vec::new(),
    };
    let t = &report.times;
    let b = &report.blast_radius;
    if let (Some(detect), Some(first)) = (t.time_to_detect_s, &t.first_failure) {
        p.went_wrong.push(format!(
            "first failure {} after the start: {first}",
            human(detect)
        ));
    }
    if let (Some(halt), Some(what)) = (t.time_to_halt_s, &t.halt) {
        let gap = t.time_to_detect_s.map(|d| halt - d).unwrap_or(0.0);
        p.went_well.push(format!(
            "halted {} after the first failure ({what})",
            human(gap)
        ));
    } else if t.first_failure_at.is_some() {
        p.went_wrong
            .push("failures were seen but the rollout never halted".to_owned());
    }
    if b.hosts_failed > 0 {
        p.went_wrong.push(format!(
            "{} of {} admitted hosts failed",
            b.hosts_failed, b.hosts_admitted
        ));
        if let Some(group) = report.failures.by_role.first() {
            p.went_wrong.push(format!(
                "most failures in role {}: {} of {} admitted",
                group.value, group.failed, group.admitted
            ));
        }
    }
    if let Some(bound) = b.bound {
        let line = format!(
            "blast radius {} hosts against the plan's bound of {bound} (max_in_flight {} + max_failed {})",
            b.hosts_failed,
            b.max_in_flight.unwrap_or(0),
            b.max_failed
        );
        if b.within_bound {
            p.went_well.push(line);
        } else {
            p.went_wrong.push(line);
        }
    }
    if b.all_at_once.hosts_failed > b.hosts_failed {
        p.went_well.push(format!(
            "stages kept the blast radius to {} hosts; an all-at-once push would have hurt about {}",
            b.hosts_failed, b.all_at_once.hosts_failed
        ));
    }
    let external_acted = report
        .gates
        .acted
        .iter()
        .any(|a| a.gate != "host health (max_failed)");
    if b.hosts_failed > 0 && !external_acted {
        p.got_lucky.push(
            "the hosts reported their failure themselves; no external gate saw it, so a failure \
             hosts do not report (latency, errors) would have gone on"
                .to_owned(),
        );
        p.action_items.push(
            "add (or trial with report_only) a gate that would have seen this failure".to_owned(),
        );
    }
    if let Some(recover) = t.time_to_recover_s {
        p.went_well.push(format!(
            "every hurt host back healthy {} after the start",
            human(recover)
        ));
    } else if t.first_failure_at.is_some() {
        p.went_wrong
            .push("hurt hosts were not all back healthy when the report was made".to_owned());
    }
    for action in &report.gates.acted {
        p.went_well.push(format!(
            "gate {} acted at {}: {}{}",
            action.gate,
            action.at,
            action.evidence,
            action
                .then
                .as_deref()
                .map(|t| format!(" → {t}"))
                .unwrap_or_default()
        ));
    }
    let report_only_failed: HashSet<&str> = report
        .gates
        .evaluations
        .iter()
        .filter(|e| e.report_only && e.outcome == "fail")
        .map(|e| e.gate.as_str())
        .collect();
    let mut report_only_failed: Vec<&str> = report_only_failed.into_iter().collect();
    report_only_failed.sort_unstable();
    for gate in report_only_failed {
        p.action_items.push(format!(
            "report-only gate {gate} failed during the rollout: decide whether it should act"
        ));
    }
    for hold in report.holds.iter().filter(|h| h.kind == "freeze") {
        p.got_lucky
            .push(format!("frozen by {}: {}", hold.by, hold.why));
    }
    if report.stages.iter().any(|s| s.failed > 0 && s.index == 0) && b.hosts_failed > 0 {
        p.went_well
            .push("the first stage caught the failure before the fleet got it".to_owned());
    }
    if !report.failures.hosts.is_empty() {
        p.action_items.push(
            "for each failed host's last message (Failures), find the cause and who fixes it"
                .to_owned(),
        );
    }
    p
}

/// A duration for people: `1h 2m 3s`, `45s`.
pub fn human(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        total % 86_400 / 3_600,
        total % 3_600 / 60,
        total % 60,
    );
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

/// The hosts of `rollout` as a report takes them: `labels` and `message`
/// (the last message a host reported) come from the inventory.
pub fn host_facts(
    rollout: &Rollout,
    labels: impl Fn(&str) -> Labels,
    message: impl Fn(&str) -> Option<String>,
) -> Vec<HostFacts> {
    rollout
        .hosts()
        .map(|host| HostFacts {
            id: host.id.to_owned(),
            labels: labels(host.id),
            state: host.state.name(),
            previous: host.previous.map(str::to_owned),
            admitted_stage: host.admitted_stage,
            message: message(host.id),
        })
        .collect()
}

/// The retrospective of a simulation of `plan` over `fleet`.
pub fn of_rehearsal(
    plan: &Plan,
    fleet: &[Host],
    config: &Config,
    rehearsal: &crate::run::Rehearsal,
) -> Report {
    let labels: HashMap<&str, &Labels> = fleet.iter().map(|h| (&*h.id, &h.labels)).collect();
    let hosts = host_facts(
        &rehearsal.rollout,
        |id| labels.get(id).map(|l| (*l).clone()).unwrap_or_default(),
        |_| None,
    );
    build(&Record {
        rollout: rehearsal.rollout.id(),
        plan,
        events: &rehearsal.events,
        hosts: &hosts,
        samples: &rehearsal.samples,
        source: Source::Simulation {
            seed: config.seed,
            faults: config.faults.iter().map(|f| f.spec().to_owned()).collect(),
        },
        now: rehearsal.end,
    })
}
