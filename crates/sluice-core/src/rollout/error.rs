//! Why an input was rejected. A rejected input changes nothing; its message
//! says why and what is possible instead.

use super::model::Action;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The action does not apply to the rollout as it is now (HTTP 409).
    #[error("cannot {action} rollout {rollout}: {state}; {hint}")]
    InvalidAction {
        rollout: String,
        action: Action,
        /// The rollout's state, e.g. `it is completed`.
        state: String,
        /// What is possible instead.
        hint: String,
    },
    /// An operator action or a freeze without a reason (HTTP 422).
    #[error("cannot {what} rollout {rollout} without a reason; say why, it goes in the event log")]
    EmptyReason { rollout: String, what: String },
    /// A gate result for a gate the plan does not have: a server bug.
    #[error("rollout {rollout} has no gate named {gate:?}; its gates are: {known}")]
    UnknownGate {
        rollout: String,
        gate: String,
        known: String,
    },
}

/// Why a snapshot could not be restored with the given plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot restore rollout {rollout}: {message}")]
pub struct RestoreError {
    pub rollout: String,
    pub message: String,
}
