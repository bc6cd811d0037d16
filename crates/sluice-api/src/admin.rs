//! Components, the fleet-wide freeze, and tokens.

use std::collections::BTreeMap;

use sluice_types::HostId;

use crate::wire;

pub use crate::vocabulary::Role;

/// Longest stable version (`PUT /v1/components/{name}/stable`), in
/// characters once trimmed.
pub const MAX_STABLE_VERSION_LENGTH: usize = 253;

wire! {
pub struct ComponentView {
    pub name: String,
    /// What hosts outside any rollout should run; absent until a rollout of
    /// the component completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<String>,
    /// Reported version → number of hosts.
    pub versions: BTreeMap<String, u64>,
    /// Hosts whose agent reports the component drifted from its desired
    /// version; absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drifted: u64,
    /// Active (pending, running or paused) rollout ids.
    pub active_rollouts: Vec<String>,
}
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

wire! {
pub struct ComponentList {
    pub components: Vec<ComponentView>,
}
}

wire! {
pub struct FreezeView {
    pub frozen: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}
}

/// `POST /v1/tokens`. Its schema says what the server checks: an agent
/// token names its host, no other token does.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub role: Role,
    /// For agent tokens: the host id the token may check in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostId>,
    /// A note on whom the token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for TokenRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::token_request().into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for TokenRequest {}

wire! {
pub struct TokenCreated {
    /// The secret, shown once.
    pub token: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}
}

wire! {
/// `PUT /v1/components/{name}/stable`: what hosts outside any rollout
/// should run from now on.
#[serde(deny_unknown_fields)]
pub struct StableRequest {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::stable_version))]
    pub version: String,
    /// Why: recorded with the actor in the event log.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::reason))]
    pub reason: String,
    /// Only say what would change (how many hosts at once), change nothing.
    #[serde(default)]
    pub dry_run: bool,
}
}

wire! {
/// What moving a component's stable version changes (or would change).
pub struct StableChange {
    pub component: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    /// Hosts that would be told `to` at their next check-in while running
    /// something else: they change at once, without stages or gates.
    pub hosts_changed: u64,
    /// Hosts that report the component.
    pub hosts_with_component: u64,
    /// False for a dry run.
    pub applied: bool,
}
}
