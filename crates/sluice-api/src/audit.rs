//! The audit log (`GET /v1/audit`): every mutating action with who took
//! it, when, from where and why.

use crate::vocabulary::Role;
use crate::wire;

wire! {
/// Who acted: the token used, never its secret.
pub struct AuditActor {
    /// The token's id (`sluice token list`).
    pub id: String,
    /// The token's name, else its role and the start of its hash.
    pub name: String,
    pub role: Role,
}
}

wire! {
/// One entry of the audit log.
pub struct AuditEntry {
    /// Increasing in commit order; follow the log with `after` = the last one.
    pub seq: i64,
    /// RFC 3339.
    pub at: String,
    pub actor: AuditActor,
    /// The client's IP address as the server saw it (through a replica
    /// that forwarded the request, the address that replica saw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// One of [`AuditKind`](crate::vocabulary::AuditKind)'s words (kept as text, so that an entry a newer
    /// server wrote still reads).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::vocabulary::AuditKind))]
    pub kind: String,
    /// What was acted on: a rollout id, a token id, a host, a component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details of the action (a JSON object).
    pub data: serde_json::Value,
}
}

wire! {
/// `GET /v1/audit`: entries oldest first.
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}
}
