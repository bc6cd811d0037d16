//! Why the world refused a change or a query: its own error, mapped to an
//! HTTP status in one place (`crate::error`).

/// What went wrong, in the world's terms. Messages are lowercase, without a
/// trailing period, and say what would be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// No such rollout, host or component.
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the current state: a duplicate name, an
    /// overlapping rollout, an action the rollout's state does not allow.
    #[error("{0}")]
    Conflict(String),
    /// A field of the request is invalid in itself (an empty reason).
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The plan is valid in itself but not against the world: its `after`
    /// names no rollout, or one that can no longer complete (422, like a
    /// plan's own problems). `field` is `after at LINE:COLUMN`.
    #[error("{message}")]
    InvalidPlan { field: String, message: String },
}
