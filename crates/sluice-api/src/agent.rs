//! `POST /v1/agent/checkin`: the one call an agent makes; and
//! `POST /v1/agent/enroll`, which an agent with an enrollment token makes
//! once, at first contact, for a token of its own.

use std::collections::BTreeMap;

use sluice_types::HostId;

use crate::wire;

pub use crate::vocabulary::ReportState;

wire! {
/// What an agent reports: who it is, its labels, and per component what it
/// runs and how that is going.
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    /// The host's stable id, its FQDN.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[A-Za-z0-9._:-]{1,253}$", min_length = 1, max_length = 253))]
    pub host: HostId,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub components: BTreeMap<String, ComponentReport>,
}
}

wire! {
#[serde(deny_unknown_fields)]
pub struct ComponentReport {
    /// The version installed now, as `version_cmd` reads it.
    pub version: String,
    pub state: ReportState,
    /// The last lines of output of a failed apply or health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The host ran its desired version and was then found at `version`
    /// outside an apply (someone changed it by hand). Absent (an older
    /// agent, or nothing to say) means not drifted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drifted: bool,
}
}

wire! {
/// The desired version of every component sluice manages for this host; a
/// component it does not manage is absent and the agent leaves it alone.
pub struct CheckinResponse {
    pub components: BTreeMap<String, Desired>,
    /// When to check in next, before the agent's jitter.
    pub next_checkin_s: u64,
}
}

wire! {
pub struct Desired {
    pub version: String,
    /// The rollout that sets this version, if any (else the stable version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// Opaque JSON for the agent's commands (`SLUICE_PAYLOAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}
}

wire! {
/// `POST /v1/agent/enroll` (with an enrollment token): who the host is and
/// its labels, which must match the enrollment token's selector.
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The host's stable id, its FQDN: the id it will check in as.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[A-Za-z0-9._:-]{1,253}$", min_length = 1, max_length = 253))]
    pub host: HostId,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}
}

wire! {
/// The host's own token, shown once: bound to the host and to the
/// enrollment's selector.
pub struct EnrollResponse {
    /// The secret, for the agent's `token_file`.
    pub token: String,
    /// The token's id (`sluice token list`).
    pub id: String,
    pub host: String,
    /// The host's labels must keep matching it at every check-in.
    pub selector: String,
}
}
