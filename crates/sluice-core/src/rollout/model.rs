//! The rollout's public vocabulary: its status, the per-host states, the
//! inputs it consumes and the outcome of each, and the read-only views the
//! server and the dashboard show.

use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::fleet::Labels;
use crate::selection::StratumKey;

use super::event::Event;

/// Where a rollout is in its lifecycle.
///
/// `Pending → Running { stage, phase } → Completed`, plus `Paused`,
/// `Aborted` and `RolledBack`. Stages are 0-based indices into
/// `plan.stages`; messages for people say `stage {index + 1}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Created, not started: no host is admitted.
    Pending,
    Running {
        stage: usize,
        phase: Phase,
    },
    /// Stopped by an operator or by a failure; `stage` and `phase` are what a
    /// resume goes back to.
    Paused {
        reason: String,
        stage: usize,
        phase: Phase,
    },
    /// Every stage done: the rollout decides for the hosts it covered.
    Completed,
    /// Stopped for good; admitted hosts keep the target.
    Aborted,
    /// Stopped for good; admitted hosts return to the version they ran before.
    RolledBack,
}

impl Status {
    /// Whether the rollout can no longer change (completed, aborted, rolled back).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Aborted | Status::RolledBack
        )
    }

    /// The stage the rollout is in, or would resume into.
    pub fn stage(&self) -> Option<usize> {
        match self {
            Status::Running { stage, .. } | Status::Paused { stage, .. } => Some(*stage),
            _ => None,
        }
    }

    /// A short lowercase name: `pending`, `running`, `paused`, `completed`,
    /// `aborted`, `rolled_back`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running { .. } => "running",
            Status::Paused { .. } => "paused",
            Status::Completed => "completed",
            Status::Aborted => "aborted",
            Status::RolledBack => "rolled_back",
        }
    }
}

/// What the current stage is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Phase {
    /// Admitting hosts toward the stage's quotas and waiting for them to
    /// report healthy.
    Progressing,
    /// Every quota admitted, no host in flight: watching until `until`. A
    /// bake whose `until` has passed waits for hosts that joined during the
    /// bake to settle.
    Baking { until: Timestamp },
    /// Waiting for `sluice rollout approve`. `approved` is set when the
    /// approval came but the rollout is held, or hosts that joined meanwhile
    /// are still in flight: the next stage starts as soon as they settle.
    AwaitingApproval { approved: bool },
}

/// A host's state within one rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HostState {
    /// Takes part but is not admitted yet: it runs whatever it ran.
    Waiting,
    /// Told the target, not yet reported healthy at it.
    Instructed { since: Timestamp },
    /// Reported healthy at the target.
    Healthy,
    /// Reported failure, or went silent past `host_timeout`.
    Failed { reason: String },
    /// Rolled back: told its previous version, not yet reported healthy at it.
    Reverting,
    /// Rolled back and reported healthy at its previous version.
    Reverted,
}

impl HostState {
    /// A short lowercase name, e.g. `instructed`.
    pub fn name(&self) -> &'static str {
        match self {
            HostState::Waiting => "waiting",
            HostState::Instructed { .. } => "instructed",
            HostState::Healthy => "healthy",
            HostState::Failed { .. } => "failed",
            HostState::Reverting => "reverting",
            HostState::Reverted => "reverted",
        }
    }
}

/// Why a rollout is held: it admits no host and moves to no next stage, while
/// timers and host reports still count. Not a status: a held rollout is still
/// running (or paused, or pending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HoldReason {
    /// The fleet-wide freeze is on.
    Frozen { actor: String, reason: String },
    /// None of the plan's windows is open; `next_opening` is when one opens,
    /// if within the next eight days.
    OutsideWindow { next_opening: Option<Timestamp> },
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldReason::Frozen { actor, reason } => {
                write!(f, "frozen by {actor}: {reason}")
            }
            HoldReason::OutsideWindow {
                next_opening: Some(at),
            } => write!(f, "outside its windows until {at}"),
            HoldReason::OutsideWindow { next_opening: None } => f.write_str("outside its windows"),
        }
    }
}

/// Why a rollout whose admissions an arbiter decides (see
/// [`crate::arbiter`]) admits none now although its stage wants more hosts.
/// Not a hold: the rollout runs on; it is given hosts again as soon as the
/// fleet has room for them, the rollout that waited longest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// The fleet-wide change budget (or a stratum's share of it) is taken
    /// by hosts in flight.
    FleetBudget,
    /// Every host it could admit next is in flight for another rollout
    /// (one change per host at a time) or pinned.
    HostsBusy,
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Wait::FleetBudget => "waiting for fleet budget",
            Wait::HostsBusy => {
                "waiting for hosts busy with another change (in flight for another rollout, or pinned)"
            }
        })
    }
}

/// What a rollout waits for, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub wait: Wait,
    pub since: Timestamp,
}

/// An arbiter's answer about one host a rollout would admit next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admit it.
    Admit,
    /// Not this host, for now: try the next one.
    Skip(Wait),
    /// No host at all, for now.
    Stop(Wait),
}

/// What [`super::Rollout::admit_one`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// One host admitted; the outcome names it.
    Admitted(Outcome),
    /// The stage wants more hosts, and none could be admitted now.
    Blocked(Wait),
    /// The rollout admits nothing now (not running, held, at its own
    /// `max_in_flight`, or its stage's quotas admitted).
    Nothing,
}

/// The fleet-wide freeze: who turned it on and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    pub actor: String,
    pub reason: String,
}

/// One thing that happened to a rollout, with the time it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A host from the inventory or a check-in registration. Only hosts
    /// matching the plan's selector at first sight take part; `version` is
    /// what it runs of the component, if known.
    Host {
        id: Arc<str>,
        labels: Labels,
        version: Option<Arc<str>>,
    },
    /// A host's report on the component, from its check-in. `drifted`:
    /// its agent found it at `version` after it had run the version it was
    /// told, outside an apply (changed by hand).
    Report {
        id: String,
        version: String,
        health: Health,
        message: Option<String>,
        drifted: bool,
    },
    /// Time passes: timeouts, bakes and windows are checked.
    Tick,
    /// The result of an external gate evaluation.
    Gate(GateResult),
    /// An operator action, with who and why.
    Action {
        action: Action,
        actor: String,
        reason: String,
    },
    /// Sluice starts a pending rollout whose schedule is due (see
    /// [`super::Rollout::schedule`]): like a start by hand, with no actor.
    ScheduledStart { reason: String },
    /// The fleet-wide freeze turned on or off.
    Freeze {
        on: bool,
        actor: String,
        reason: String,
    },
}

/// The health a host reports for the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Ok,
    Applying,
    Failed,
}

/// Operator actions; each needs a non-empty reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Pause,
    Resume,
    /// Skip the rest of the current bake.
    Advance,
    Approve,
    Abort,
    Rollback,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Advance => "advance",
            Action::Approve => "approve",
            Action::Abort => "abort",
            Action::Rollback => "roll back",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One evaluation of an external (Prometheus, HTTP or comparison) gate,
/// done by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// The gate's name in the plan.
    pub name: String,
    pub outcome: GateOutcome,
    /// What was seen, for the event log: `sum(rate(...))=0.7 > 0.5`,
    /// `GET http://slo/ok: 503`.
    pub evidence: String,
    /// A comparison gate's figures, when both cohorts had values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<CohortComparison>,
}

/// What a comparison gate read: each cohort's aggregate and hosts with a
/// value, how they compare, and the query sent. Every figure is finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortComparison {
    /// `mean`, `median` or `p90`.
    pub aggregate: String,
    pub canary: f64,
    pub baseline: f64,
    pub canary_hosts: u64,
    pub baseline_hosts: u64,
    /// canary / baseline; absent when the baseline is 0 and the canary not
    /// (an infinite ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// canary − baseline.
    pub diff: f64,
    /// The Mann-Whitney U statistic of the canary, for `test: mann-whitney`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub u: Option<f64>,
    /// Its p-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// Strata judged on their own (with `min_hosts` in each cohort).
    #[serde(default)]
    pub strata_judged: u64,
    /// Those that failed, the worst first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strata_failing: Vec<String>,
    /// The PromQL query sent to Prometheus.
    pub query: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateOutcome {
    Pass,
    Fail,
    /// No data (empty query result): counts per the gate's `no_data`.
    NoData,
}

/// What one input changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    /// Every per-host state change, in order, admissions included.
    pub hosts: Vec<HostChange>,
    pub events: Vec<Event>,
}

impl Outcome {
    /// Appends what `later` changed.
    pub fn absorb(&mut self, later: Outcome) {
        self.hosts.extend(later.hosts);
        self.events.extend(later.events);
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.events.is_empty()
    }
}

/// A host's new state in the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostChange {
    pub id: String,
    pub state: HostState,
}

/// How many of the rollout's hosts are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCounts {
    pub waiting: u64,
    pub instructed: u64,
    pub healthy: u64,
    pub failed: u64,
    pub reverting: u64,
    pub reverted: u64,
}

impl HostCounts {
    /// Every host taking part.
    pub fn total(&self) -> u64 {
        self.waiting + self.admitted()
    }

    /// Hosts admitted at some stage (every state but waiting).
    pub fn admitted(&self) -> u64 {
        self.instructed + self.healthy + self.failed + self.reverting + self.reverted
    }

    pub(super) fn slot(&mut self, state: &HostState) -> &mut u64 {
        match state {
            HostState::Waiting => &mut self.waiting,
            HostState::Instructed { .. } => &mut self.instructed,
            HostState::Healthy => &mut self.healthy,
            HostState::Failed { .. } => &mut self.failed,
            HostState::Reverting => &mut self.reverting,
            HostState::Reverted => &mut self.reverted,
        }
    }
}

/// One stratum's progress at the current stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StratumProgress {
    pub key: StratumKey,
    /// Hosts of the stratum taking part.
    pub size: u64,
    /// Hosts the current stage admits; 0 when there is no current stage.
    pub quota: u64,
    pub admitted: u64,
    pub healthy: u64,
    pub failed: u64,
}

/// One host as the rollout sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostView<'a> {
    pub id: &'a str,
    pub state: &'a HostState,
    /// The version it last reported, if any.
    pub version: Option<&'a str>,
    /// The version it reported before admission: what a rollback returns it to.
    pub previous: Option<&'a str>,
    /// The stage that admitted it.
    pub admitted_stage: Option<usize>,
    pub stratum: &'a StratumKey,
}

/// An external gate's state, for status display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateStatus {
    pub name: String,
    pub report_only: bool,
    /// Consecutive failing results so far (reset by a pass or a resume).
    pub streak: u32,
    /// The failing results in a row that fail the gate (the plan's `for`).
    pub consecutive: u32,
    pub latest: Option<GateReading>,
}

/// The latest result of a gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReading {
    pub at: Timestamp,
    pub outcome: GateOutcome,
    pub evidence: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<CohortComparison>,
}
