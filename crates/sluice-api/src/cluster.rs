//! The control plane's replicas: `GET /v1/cluster`.

use crate::wire;

pub use crate::vocabulary::ReplicaRole;

wire! {
/// Every replica sharing the database, and who leads.
pub struct ClusterView {
    /// The replica that answered.
    pub answered_by: String,
    /// The lease's epoch: it grows at every takeover. Absent while no
    /// replica ever led (and on the embedded store, which has no lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// The replica holding an unexpired lease, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// When the leader's lease runs out unless renewed (RFC 3339, the
    /// database's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    /// By id.
    pub replicas: Vec<ReplicaView>,
}
}

wire! {
pub struct ReplicaView {
    pub id: String,
    /// Where the other replicas forward requests to it.
    pub address: String,
    pub role: ReplicaRole,
    /// RFC 3339, the database's clock.
    pub last_heartbeat: String,
    /// Seconds since the last heartbeat, by the database's clock.
    pub heartbeat_age_s: f64,
}
}
