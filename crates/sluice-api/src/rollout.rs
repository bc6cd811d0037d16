//! Rollouts: `POST /v1/rollouts`, `GET /v1/rollouts[/{id}]`, the operator
//! actions and `GET /v1/rollouts/{id}/events`.

use crate::wire;

pub use crate::vocabulary::{Action, GateOutcome, HostState, Phase, RolloutState};

wire! {
/// The answer to `POST /v1/rollouts`.
pub struct Created {
    pub id: String,
}
}

/// The body of `POST /v1/rollouts` in the OpenAPI document: a plan (the
/// server reads it as text, with the plan parser).
#[cfg(feature = "openapi")]
#[derive(Debug)]
pub struct Plan;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Plan {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::plan().into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Plan {}

wire! {
/// The body of every operator action (`start`, `pause`, `resume`, `advance`,
/// `approve`, `abort`, `rollback`) and of `PUT`/`DELETE /v1/freeze`.
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::reason))]
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
    pub state: RolloutState,
    /// 0-based current stage while running or paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    /// What the current stage is doing, while running or paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Why the rollout admits nothing right now although running: frozen,
    /// outside its window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Why the rollout is given no host now although its stage wants more:
    /// `waiting for fleet budget`, or for hosts busy with another change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// RFC 3339: when that wait began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<String>,
    /// RFC 3339: when a scheduled rollout starts by itself
    /// (`POST /v1/rollouts?start_at=`), kept once it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// The plan's `after`: the rollout (by name) it starts after, once that
    /// one completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// While a scheduled rollout is pending, what it still waits for, `; `
    /// between: `starts at 2026-12-07T08:00:00Z`, `after docker-17.03.1
    /// (r-3, running)`, `behind r-4 (kernel-6.1), which changes the same
    /// hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<String>,
    /// Why a scheduled rollout will never start by itself: `after
    /// docker-17.03.1 (r-3), which was rolled back` (or aborted). It may
    /// still be started or aborted by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// While pending, its place in its component's queue: 1 is the oldest
    /// pending rollout of the component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u64>,
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
    /// Hosts of the rollout in each state.
    pub hosts: HostCounts,
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
/// How many of a rollout's hosts are in each [`HostState`].
#[derive(Copy, Eq, Default)]
pub struct HostCounts {
    pub waiting: u64,
    pub instructed: u64,
    pub healthy: u64,
    pub failed: u64,
    pub reverting: u64,
    pub reverted: u64,
}
}

impl HostCounts {
    /// Every state with its count, in [`HostState::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (HostState, u64)> + '_ {
        HostState::ALL.iter().map(|&state| (state, self.get(state)))
    }

    pub fn get(&self, state: HostState) -> u64 {
        match state {
            HostState::Waiting => self.waiting,
            HostState::Instructed => self.instructed,
            HostState::Healthy => self.healthy,
            HostState::Failed => self.failed,
            HostState::Reverting => self.reverting,
            HostState::Reverted => self.reverted,
        }
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
    pub outcome: GateOutcome,
    pub evidence: String,
    /// A comparison gate's figures, when both cohorts had values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ComparisonView>,
}
}

wire! {
/// What a comparison gate (`compare:`) read: the canary cohort against its
/// baseline. Also the `comparison` of its `gate_evaluated` events.
pub struct ComparisonView {
    /// How each cohort's per-host values became one: `mean`, `median` or
    /// `p90`.
    pub aggregate: String,
    /// The canary cohort's aggregate.
    pub canary: f64,
    /// The baseline cohort's aggregate.
    pub baseline: f64,
    /// Hosts of each cohort with a value.
    pub canary_hosts: u64,
    pub baseline_hosts: u64,
    /// canary / baseline; absent when it is infinite (a zero baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// canary − baseline.
    pub diff: f64,
    /// The Mann-Whitney U statistic of the canary (`test: mann-whitney`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub u: Option<f64>,
    /// The test's p-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// Strata judged on their own (at least `min_hosts` hosts with a value
    /// in each cohort); one failing fails the gate.
    #[serde(default)]
    pub strata_judged: u64,
    /// The strata that failed, the worst first (`role=edge,site=sto`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strata_failing: Vec<String>,
    /// The PromQL query sent: the gate's joined with the cohorts.
    pub query: String,
}
}

wire! {
/// One timeline entry: `kind` is the event type (`stage_started`,
/// `host_failed`, `paused`, …) and `data` its fields.
pub struct EventView {
    /// Increasing in commit order across the whole log.
    pub seq: i64,
    /// The rollout's id; absent for fleet-wide events (the freeze).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
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
