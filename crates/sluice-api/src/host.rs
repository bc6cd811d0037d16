//! Inventory: `GET /v1/hosts`, `GET /v1/hosts/{id}`, `GET /v1/hosts/{id}/desired`,
//! `POST /v1/hosts/import`.

use std::collections::BTreeMap;

use crate::agent::ReportState;
use sluice_types::HostId;

use crate::wire;

wire! {
/// One host of a fleet file or of `POST /v1/hosts/import`.
#[serde(deny_unknown_fields)]
pub struct ImportHost {
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[A-Za-z0-9._:-]{1,253}$", min_length = 1, max_length = 253))]
    pub id: HostId,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Component → version it runs.
    #[serde(default)]
    pub components: BTreeMap<String, String>,
}
}

wire! {
pub struct ImportResult {
    pub imported: u64,
    /// Of those, hosts that were not known before.
    pub new: u64,
}
}

wire! {
pub struct HostView {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub components: BTreeMap<String, HostComponent>,
    /// RFC 3339; absent for hosts imported but never checked in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Its components pinned to a version (`sluice hosts pin`), by
    /// component; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<crate::fleet::PinView>,
}
}

wire! {
pub struct HostComponent {
    /// What the host last reported (or was imported with).
    pub version: String,
    /// Absent for imported hosts that never reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ReportState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The host's agent found it at `version` after it had run `desired`,
    /// outside an apply: someone changed it by hand.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drifted: bool,
    /// What sluice wants it to run, if it has an opinion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<String>,
    /// The rollout the host takes part in for this component, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// The desired version comes from a pin (`sluice hosts pin`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}
}

wire! {
pub struct HostList {
    pub hosts: Vec<HostView>,
    /// Matching hosts in all; `hosts` may be a page of them.
    pub total: u64,
}
}

/// `GET /v1/hosts/{id}/desired`: component → desired version.
pub type DesiredMap = BTreeMap<String, String>;

wire! {
/// `POST /v1/hosts/{id}/reenroll`: the host's tokens are revoked; its agent
/// may enroll again with an enrollment token.
pub struct Reenrolled {
    pub host: String,
    /// Tokens bound to the host, revoked.
    pub tokens_revoked: u64,
}
}
