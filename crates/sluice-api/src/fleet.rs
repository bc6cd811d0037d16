//! Fleet operations: the fleet-wide change budget (`GET|PUT /v1/budget`)
//! and pins (`PUT|DELETE /v1/hosts/{id}/pins/{component}`).

use std::collections::BTreeMap;

use crate::wire;

wire! {
/// `PUT /v1/budget`: sets the fleet-wide change budget, or lifts it
/// (`max_in_flight` absent).
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    /// Hosts in flight at once across all rollouts: a count (`50`) or a
    /// share of the fleet (`2%`). Absent: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<String>,
    /// Hosts in flight at once in any one stratum of the fleet: a count or
    /// a share of the stratum (`10%`). Needs `max_in_flight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_stratum: Option<String>,
    /// The labels whose distinct values make the fleet's strata for
    /// `per_stratum` (default `["role", "site"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<Vec<String>>,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::reason))]
    pub reason: String,
}
}

wire! {
/// The budget as it was set.
pub struct BudgetSetting {
    /// A count or a share of the fleet, as given (`2%`).
    pub max_in_flight: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_stratum: Option<String>,
    pub spread: Vec<String>,
    pub actor: String,
    pub reason: String,
    /// RFC 3339.
    pub since: String,
}
}

wire! {
/// One stratum of the fleet against a per-stratum budget.
pub struct StratumBudget {
    /// `role=web,site=sto` (`!site`: hosts without the label).
    pub stratum: String,
    pub hosts: u64,
    pub in_flight: u64,
    pub limit: u64,
}
}

wire! {
/// A rollout that wants hosts and is given none now.
pub struct WaitingRollout {
    pub id: String,
    pub name: String,
    pub component: String,
    /// `waiting for fleet budget`, or for hosts busy with another change.
    pub waiting: String,
    /// RFC 3339: when the wait began.
    pub since: String,
}
}

wire! {
/// `GET|PUT /v1/budget`: the budget, what is in flight against it, and
/// who waits.
pub struct BudgetView {
    /// Absent: no budget (rollouts are limited by their own plans, and one
    /// change per host still holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSetting>,
    /// Hosts in the fleet.
    pub fleet: u64,
    /// The most hosts in flight at once for this fleet; absent without a
    /// budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Hosts instructed, not yet healthy, across all rollouts (a host in
    /// flight for two rollouts counts once).
    pub in_flight: u64,
    /// Hosts in flight per component.
    pub in_flight_by_component: BTreeMap<String, u64>,
    /// With `per_stratum`, each stratum of the fleet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strata: Vec<StratumBudget>,
    /// Rollouts that want hosts and are given none now, longest waiting
    /// first.
    pub waiting: Vec<WaitingRollout>,
}
}

/// Longest pinned version, in characters once trimmed.
pub const MAX_PIN_VERSION_LENGTH: usize = 253;

wire! {
/// `PUT /v1/hosts/{id}/pins/{component}`: tell the host `version` for a
/// while, whatever its rollouts or the stable version say.
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    pub version: String,
    /// How long, in sluice's duration grammar (`30m`, `2h`, `1d`); the pin
    /// then expires by itself.
    #[serde(rename = "for")]
    pub lasts: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::reason))]
    pub reason: String,
}
}

wire! {
/// A host's component pinned to a version.
pub struct PinView {
    pub host: String,
    pub component: String,
    pub version: String,
    /// RFC 3339: when the pin expires by itself.
    pub expires_at: String,
    pub actor: String,
    pub reason: String,
    /// RFC 3339.
    pub since: String,
}
}
