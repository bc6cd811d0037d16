//! The error body of every endpoint:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use crate::wire;

wire! {
pub struct ErrorBody {
    pub error: ErrorDetail,
}
}

wire! {
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `payload_too_large`, `invalid_plan`,
    /// `too_many_requests`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong and what would be valid; lowercase, no trailing period.
    pub message: String,
    /// The field at fault (for plans: `stages[1].percent at 7:16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
}
