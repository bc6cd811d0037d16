//! The engine's and the store's words in the API's: the one place that
//! knows `sluice-core`'s rollout types, `sluice-store`'s stored states and
//! `sluice-api`'s vocabulary, so that the wire can stay put while the engine
//! or the store changes.

use sluice_api::admin::Role;
use sluice_api::agent::ReportState;
use sluice_api::rollout as api;
use sluice_core::rollout as core;
use sluice_store::{ReportedState, TokenRole};

pub fn rollout_state(status: &core::Status) -> api::RolloutState {
    match status {
        core::Status::Pending => api::RolloutState::Pending,
        core::Status::Running { .. } => api::RolloutState::Running,
        core::Status::Paused { .. } => api::RolloutState::Paused,
        core::Status::Completed => api::RolloutState::Completed,
        core::Status::Aborted => api::RolloutState::Aborted,
        core::Status::RolledBack => api::RolloutState::RolledBack,
    }
}

pub fn phase(phase: core::Phase) -> api::Phase {
    match phase {
        core::Phase::Progressing => api::Phase::Progressing,
        core::Phase::Baking { .. } => api::Phase::Baking,
        core::Phase::AwaitingApproval { .. } => api::Phase::AwaitingApproval,
    }
}

pub fn host_state(state: &core::HostState) -> api::HostState {
    match state {
        core::HostState::Waiting => api::HostState::Waiting,
        core::HostState::Instructed { .. } => api::HostState::Instructed,
        core::HostState::Healthy => api::HostState::Healthy,
        core::HostState::Failed { .. } => api::HostState::Failed,
        core::HostState::Reverting => api::HostState::Reverting,
        core::HostState::Reverted => api::HostState::Reverted,
    }
}

pub fn host_counts(counts: core::HostCounts) -> api::HostCounts {
    api::HostCounts {
        waiting: counts.waiting,
        instructed: counts.instructed,
        healthy: counts.healthy,
        failed: counts.failed,
        reverting: counts.reverting,
        reverted: counts.reverted,
    }
}

pub fn gate_outcome(outcome: core::GateOutcome) -> api::GateOutcome {
    match outcome {
        core::GateOutcome::Pass => api::GateOutcome::Pass,
        core::GateOutcome::Fail => api::GateOutcome::Fail,
        core::GateOutcome::NoData => api::GateOutcome::NoData,
    }
}

pub fn comparison(figures: core::CohortComparison) -> api::ComparisonView {
    api::ComparisonView {
        aggregate: figures.aggregate,
        canary: figures.canary,
        baseline: figures.baseline,
        canary_hosts: figures.canary_hosts,
        baseline_hosts: figures.baseline_hosts,
        ratio: figures.ratio,
        diff: figures.diff,
        u: figures.u,
        p: figures.p,
        strata_judged: figures.strata_judged,
        strata_failing: figures.strata_failing,
        query: figures.query,
    }
}

pub fn action(action: api::Action) -> core::Action {
    match action {
        api::Action::Start => core::Action::Start,
        api::Action::Pause => core::Action::Pause,
        api::Action::Resume => core::Action::Resume,
        api::Action::Advance => core::Action::Advance,
        api::Action::Approve => core::Action::Approve,
        api::Action::Abort => core::Action::Abort,
        api::Action::Rollback => core::Action::Rollback,
    }
}

/// A stored role on the wire.
pub fn wire_role(role: TokenRole) -> Role {
    match role {
        TokenRole::Agent => Role::Agent,
        TokenRole::Enroll => Role::Enroll,
        TokenRole::Viewer => Role::Viewer,
        TokenRole::Operator => Role::Operator,
        TokenRole::Admin => Role::Admin,
    }
}

/// A wire role as the store keeps it.
pub fn stored_role(role: Role) -> TokenRole {
    match role {
        Role::Agent => TokenRole::Agent,
        Role::Enroll => TokenRole::Enroll,
        Role::Viewer => TokenRole::Viewer,
        Role::Operator => TokenRole::Operator,
        Role::Admin => TokenRole::Admin,
    }
}

/// A stored report state on the wire.
pub fn wire_report(state: ReportedState) -> ReportState {
    match state {
        ReportedState::Ok => ReportState::Ok,
        ReportedState::Applying => ReportState::Applying,
        ReportedState::Failed => ReportState::Failed,
    }
}

/// A reported state as the store keeps it.
pub fn stored_report(state: ReportState) -> ReportedState {
    match state {
        ReportState::Ok => ReportedState::Ok,
        ReportState::Applying => ReportedState::Applying,
        ReportState::Failed => ReportedState::Failed,
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;

    /// The engine's notion of terminal and the API's are the same states.
    #[test]
    fn terminal_means_the_same_on_both_sides() {
        let statuses = [
            core::Status::Pending,
            core::Status::Running {
                stage: 0,
                phase: core::Phase::Progressing,
            },
            core::Status::Paused {
                reason: "r".to_owned(),
                stage: 0,
                phase: core::Phase::Baking {
                    until: Timestamp::UNIX_EPOCH,
                },
            },
            core::Status::Completed,
            core::Status::Aborted,
            core::Status::RolledBack,
        ];
        for status in &statuses {
            let state = rollout_state(status);
            assert_eq!(state.is_terminal(), status.is_terminal(), "{status:?}");
            assert_eq!(state.as_str(), status.name(), "{status:?}");
        }
        let covered: Vec<_> = statuses.iter().map(rollout_state).collect();
        assert_eq!(covered, api::RolloutState::ALL);
    }

    #[test]
    fn host_states_keep_their_names() {
        let states = [
            core::HostState::Waiting,
            core::HostState::Instructed {
                since: Timestamp::UNIX_EPOCH,
            },
            core::HostState::Healthy,
            core::HostState::Failed {
                reason: "r".to_owned(),
            },
            core::HostState::Reverting,
            core::HostState::Reverted,
        ];
        for state in &states {
            assert_eq!(host_state(state).as_str(), state.name());
        }
    }

    /// One engine event of each type, found by a match that names every
    /// variant: a new type fails to compile here until it is added.
    fn one_of_each() -> Vec<core::EventKind> {
        use self::core::EventKind as K;
        let text = || "t".to_owned();
        let hold = || core::HoldReason::OutsideWindow { next_opening: None };
        let all = vec![
            K::Created {
                rollout: text(),
                plan: text(),
                component: text(),
                version: text(),
            },
            K::Started { reason: text() },
            K::StageStarted {
                index: 0,
                name: text(),
                percent: 1.0,
                quota: 1,
            },
            K::Baking {
                stage: 0,
                until: Timestamp::UNIX_EPOCH,
            },
            K::AwaitingApproval { stage: 0 },
            K::Approved {
                stage: 0,
                reason: text(),
            },
            K::Advanced {
                stage: 0,
                reason: text(),
            },
            K::StageCompleted {
                index: 0,
                name: text(),
            },
            K::Completed,
            K::Paused { reason: text() },
            K::Resumed {
                reason: text(),
                acknowledged_failures: 0,
                reset_gates: Vec::new(),
            },
            K::Held { hold: hold() },
            K::Released {
                hold: hold(),
                reason: None,
            },
            K::Waiting {
                wait: core::Wait::FleetBudget,
            },
            K::WaitOver {
                wait: core::Wait::HostsBusy,
            },
            K::HostFailed {
                host: text(),
                reason: text(),
                stage: None,
            },
            K::MaxFailedExceeded {
                stage: 0,
                failed: 1,
                allowed: 0,
            },
            K::GateEvaluated {
                gate: text(),
                outcome: core::GateOutcome::Pass,
                evidence: text(),
                report_only: false,
                comparison: None,
            },
            K::GateFailed {
                gate: text(),
                failures: 1,
                evidence: text(),
            },
            K::RollbackSkipped { why: text() },
            K::RollbackStarted {
                reason: text(),
                hosts: 0,
                not_reversible: false,
            },
            K::Aborted { reason: text() },
        ];
        for kind in &all {
            match kind {
                K::Created { .. }
                | K::Started { .. }
                | K::StageStarted { .. }
                | K::Baking { .. }
                | K::AwaitingApproval { .. }
                | K::Approved { .. }
                | K::Advanced { .. }
                | K::StageCompleted { .. }
                | K::Completed
                | K::Paused { .. }
                | K::Resumed { .. }
                | K::Held { .. }
                | K::Released { .. }
                | K::Waiting { .. }
                | K::WaitOver { .. }
                | K::HostFailed { .. }
                | K::MaxFailedExceeded { .. }
                | K::GateEvaluated { .. }
                | K::GateFailed { .. }
                | K::RollbackSkipped { .. }
                | K::RollbackStarted { .. }
                | K::Aborted { .. } => {}
            }
        }
        all
    }

    /// Webhooks filter by the API's event kinds: every type of the
    /// engine's events is one of them, under the same name.
    #[test]
    fn every_engine_event_type_is_an_event_kind_of_the_api() {
        for kind in one_of_each() {
            let event = core::Event {
                at: Timestamp::UNIX_EPOCH,
                actor: None,
                kind,
            };
            let stored = crate::persist::new_event(Some("r-1"), &event);
            let parsed = stored.kind.parse::<sluice_api::vocabulary::EventKind>();
            assert!(parsed.is_ok(), "{}: {parsed:?}", stored.kind);
        }
    }
}
