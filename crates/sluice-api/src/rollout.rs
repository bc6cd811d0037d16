//! Rollouts: `POST /v1/rollouts`, `GET /v1/rollouts[/{id}]`, the operator
//! actions and `GET /v1/rollouts/{id}/events`.

use std::collections::BTreeMap;

use crate::wire;

/// Every rollout state, in lifecycle order ([`RolloutSummary::state`]).
pub const ROLLOUT_STATES: [&str; 6] = [
    "pending",
    "running",
    "paused",
    "completed",
    "aborted",
    "rolled_back",
];

/// Every state of a host within a rollout, in the order a host meets them
/// (the keys of [`RolloutDetail::hosts`]).
pub const HOST_STATES: [&str; 6] = [
    "waiting",
    "instructed",
    "healthy",
    "failed",
    "reverting",
    "reverted",
];

wire! {
/// The answer to `POST /v1/rollouts`.
pub struct Created {
    pub id: String,
}
}

wire! {
/// The body of every operator action (`start`, `pause`, `resume`, `advance`,
/// `approve`, `abort`, `rollback`) and of `PUT`/`DELETE /v1/freeze`.
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}
}

wire! {
/// A rollout at a glance (`GET /v1/rollouts`).
pub struct RolloutSummary {
    pub id: String,
    pub name: String,
    pub component: String,
    pub version: String,
    /// `pending`, `running`, `paused`, `completed`, `aborted`, `rolled_back`.
    pub state: String,
    /// 0-based current stage while running or paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    /// `progressing`, `baking`, `awaiting_approval` while running or paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Why the rollout admits nothing right now although running: frozen,
    /// outside its window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    pub selected: u64,
    pub admitted: u64,
    pub healthy: u64,
    pub failed: u64,
    pub created_at: String,
    pub updated_at: String,
}
}

wire! {
pub struct RolloutList {
    pub rollouts: Vec<RolloutSummary>,
}
}

wire! {
/// Everything about one rollout (`GET /v1/rollouts/{id}`).
pub struct RolloutDetail {
    #[serde(flatten)]
    pub summary: RolloutSummary,
    /// Why it is paused, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339 end of the current bake, while baking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_until: Option<String>,
    pub stages: Vec<StageView>,
    /// Host counts by state: waiting, instructed, healthy, failed, reverting, reverted.
    pub hosts: BTreeMap<String, u64>,
    pub in_flight: u64,
    pub max_in_flight: u64,
    /// Failures counted in the current stage, and how many it tolerates.
    pub stage_failures: u64,
    pub allowed_failures: u64,
    /// Per stratum, largest first.
    pub strata: Vec<StratumView>,
    pub gates: Vec<GateView>,
    /// The plan as submitted.
    pub plan: String,
}
}

wire! {
pub struct StageView {
    pub name: String,
    pub percent: f64,
    pub bake_s: u64,
    pub approve: bool,
    /// Hosts this stage admits in all (cumulative), over every stratum.
    pub quota: u64,
}
}

wire! {
pub struct StratumView {
    /// `role=edge,site=sto`.
    pub key: String,
    pub size: u64,
    /// Hosts the current stage admits here.
    pub quota: u64,
    pub admitted: u64,
    pub healthy: u64,
    pub failed: u64,
}
}

wire! {
pub struct GateView {
    pub name: String,
    pub report_only: bool,
    /// Consecutive failing results, and how many fail the gate.
    pub streak: u32,
    pub consecutive: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<GateReadingView>,
}
}

wire! {
pub struct GateReadingView {
    pub at: String,
    /// `pass`, `fail`, `no_data`.
    pub outcome: String,
    pub evidence: String,
}
}

wire! {
/// One timeline entry: `kind` is the event type (`stage_started`,
/// `host_failed`, `paused`, …) and `data` its fields.
pub struct EventView {
    pub seq: i64,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub kind: String,
    pub data: serde_json::Value,
}
}

wire! {
pub struct EventList {
    pub events: Vec<EventView>,
}
}
