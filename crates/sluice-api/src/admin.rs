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

/// Most hosts one enrollment token may enroll.
pub const MAX_USES: u64 = 1_000_000;

/// `POST /v1/tokens`. Its schema says what the server checks: an agent
/// token names its host, no other token does.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub role: Role,
    /// For agent tokens (required): the host id the token may check in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostId>,
    /// A note on whom the token is for; `sluice token revoke NAME` finds it
    /// by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For enrollment tokens (required): the label selector the labels of
    /// the hosts it enrolls must match, such as `site in (sto, lon)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// For enrollment tokens (required): how many hosts it may enroll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u64>,
    /// The token is refused this long after its creation, in sluice's
    /// duration grammar (`30m`, `24h`, `7d`, `1h30m`; at most a year).
    /// Absent: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Why the token is made (required, not blank): recorded with the
    /// actor in the audit log.
    pub reason: String,
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
    /// The token's id (`sluice token list`, `sluice token revoke ID`):
    /// not the secret, nor enough to find it.
    pub id: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u64>,
    /// RFC 3339; absent: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}
}

wire! {
/// A token as `GET /v1/tokens` lists it: everything but the secret.
pub struct TokenView {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub role: Role,
    /// For agent tokens, the host it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// For enrollment tokens, the selector of the hosts it enrolls; for the
    /// tokens they made, the selector the host's labels must keep matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; absent: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// It expired: it is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
    /// RFC 3339; absent: never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// For enrollment tokens, how many more hosts it may enroll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u64>,
}
}

wire! {
/// `GET /v1/tokens`: a page of tokens, in the order of their ids.
pub struct TokenList {
    pub tokens: Vec<TokenView>,
    /// More tokens follow: ask again with `after` set to this (the last id
    /// of this page). Absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
}

wire! {
/// `DELETE /v1/tokens/{id}`: the token revoked (refused from then on).
pub struct TokenRevoked {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Dashboard sessions signed in with it, ended with it.
    pub sessions_ended: u64,
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
