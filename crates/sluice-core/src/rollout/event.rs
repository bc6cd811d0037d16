//! The rollout's timeline: append-only events, serialised as
//! `{"at": …, "actor": …, "type": "stage_started", …}`.
//!
//! Events name what changed for the rollout as a whole; per-host admissions
//! are not events (a stage of a million-host fleet would drown the timeline)
//! and travel in [`super::Outcome::hosts`] instead. Host failures are events:
//! they are what the on-call engineer reads. Stage numbers are 0-based
//! indices into the plan's stages.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::model::{CohortComparison, GateOutcome, HoldReason, Wait};

/// One entry of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: Timestamp,
    /// Who did it: the operator for actions and freezes, `None` for what
    /// sluice did by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Created {
        rollout: String,
        plan: String,
        component: String,
        version: String,
    },
    Started {
        reason: String,
    },
    StageStarted {
        index: usize,
        name: String,
        percent: f64,
        /// Hosts the stage admits across strata (cumulative), at the time.
        quota: u64,
    },
    Baking {
        stage: usize,
        until: Timestamp,
    },
    AwaitingApproval {
        stage: usize,
    },
    Approved {
        stage: usize,
        reason: String,
    },
    /// An operator skipped the rest of a bake.
    Advanced {
        stage: usize,
        reason: String,
    },
    StageCompleted {
        index: usize,
        name: String,
    },
    Completed,
    /// By an operator (with an actor) or by a failure (without).
    Paused {
        reason: String,
    },
    /// The failures that caused a pause are acknowledged: the stage's failure
    /// count starts again from zero, and so do the gates' streaks.
    Resumed {
        reason: String,
        acknowledged_failures: u64,
        reset_gates: Vec<String>,
    },
    Held {
        hold: HoldReason,
    },
    /// The hold is over; for a lifted freeze, the actor lifted it and
    /// `reason` says why.
    Released {
        hold: HoldReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The rollout's stage wants hosts and an arbiter admits none now (see
    /// [`Wait`]).
    Waiting {
        wait: Wait,
    },
    /// The wait is over: the rollout is given hosts again, or wants none.
    WaitOver {
        wait: Wait,
    },
    HostFailed {
        host: String,
        reason: String,
        /// The stage the failure counts for; `None` when the rollout has no
        /// current stage (aborted, completed, rolled back).
        stage: Option<usize>,
    },
    MaxFailedExceeded {
        stage: usize,
        failed: u64,
        allowed: u64,
    },
    GateEvaluated {
        gate: String,
        outcome: GateOutcome,
        evidence: String,
        report_only: bool,
        /// A comparison gate's figures (canary, baseline, ratio, U and p,
        /// hosts, query).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comparison: Option<CohortComparison>,
    },
    GateFailed {
        gate: String,
        /// Failing results in a row.
        failures: u32,
        evidence: String,
    },
    /// `on_failure: rollback` did not roll back, and why (a plan with
    /// `reversible: false`); a `paused` event follows.
    RollbackSkipped {
        why: String,
    },
    RollbackStarted {
        reason: String,
        /// Admitted hosts told to return to their previous version.
        hosts: u64,
        /// Set when an operator rolled back a plan marked `reversible: false`.
        not_reversible: bool,
    },
    Aborted {
        reason: String,
    },
}
