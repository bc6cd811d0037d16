//! The closed sets of words the API speaks — rollout states, host states,
//! phases, gate outcomes, operator actions, roles, reported states — as
//! enums, each with its one spelling (serde's `snake_case`, the same as
//! [`as_str`](RolloutState::as_str)), the list of its values, and parsing
//! that names the valid values. The OpenAPI document lists the values
//! (`utoipa` enum schemas).

use std::fmt;
use std::str::FromStr;

/// Why a word is not one of a vocabulary's: the message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {word:?}; expected one of {valid}")]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
    pub valid: String,
}

/// An enum of plain words: `ALL`, `as_str`, `Display`, `FromStr`.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in the order the type lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as the API spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;

            fn from_str(word: &str) -> Result<$name, UnknownWord> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == word)
                    .ok_or_else(|| UnknownWord {
                        what: $what,
                        word: word.to_owned(),
                        valid: $name::ALL
                            .iter()
                            .map(|value| value.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            }
        }
    };
}

vocabulary! {
    /// Where a rollout is in its lifecycle.
    RolloutState ("rollout state") {
        Pending = "pending",
        Running = "running",
        Paused = "paused",
        /// Every stage done; the rollout decides for the hosts it covered.
        Completed = "completed",
        /// Stopped; admitted hosts keep the target.
        Aborted = "aborted",
        /// Stopped; admitted hosts return to what they ran before.
        RolledBack = "rolled_back",
    }
}

impl RolloutState {
    /// Whether nothing changes any more: completed, aborted or rolled back.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RolloutState::Completed | RolloutState::Aborted | RolloutState::RolledBack
        )
    }

    /// Whether the rollout may still admit hosts: pending, running or paused.
    pub fn is_active(self) -> bool {
        !self.is_terminal()
    }
}

vocabulary! {
    /// Where a host stands within one rollout, in the order a host meets
    /// the states.
    HostState ("host state") {
        /// Selected, not admitted yet.
        Waiting = "waiting",
        /// Told the target, not reported healthy yet (in flight).
        Instructed = "instructed",
        Healthy = "healthy",
        Failed = "failed",
        /// Told to go back after a rollback, not back yet.
        Reverting = "reverting",
        Reverted = "reverted",
    }
}

vocabulary! {
    /// What a running (or paused) rollout's current stage is doing.
    Phase ("phase") {
        Progressing = "progressing",
        Baking = "baking",
        AwaitingApproval = "awaiting_approval",
    }
}

vocabulary! {
    /// One evaluation of an external gate.
    GateOutcome ("gate outcome") {
        Pass = "pass",
        Fail = "fail",
        NoData = "no_data",
    }
}

vocabulary! {
    /// The operator actions on a rollout: `POST /v1/rollouts/{id}/{action}`.
    Action ("action") {
        Start = "start",
        Pause = "pause",
        Resume = "resume",
        /// Skip the rest of the current stage's bake.
        Advance = "advance",
        /// Let a stage that waits for approval proceed.
        Approve = "approve",
        /// Stop; admitted hosts keep the target version.
        Abort = "abort",
        /// Stop and send admitted hosts back to the version they ran before.
        Rollback = "rollback",
    }
}

vocabulary! {
    /// What a token may do.
    Role ("role") {
        /// Check-in only (and its own host's desired versions), bound to a
        /// host id and, when an enrollment made it, to that selector.
        Agent = "agent",
        /// Enrolls hosts whose labels match its selector, a limited number
        /// of times; nothing else.
        Enroll = "enroll",
        /// Reads everything, changes nothing.
        Viewer = "viewer",
        /// Creates rollouts and acts on them.
        Operator = "operator",
        /// Everything, including tokens, freeze and import.
        Admin = "admin",
    }
}

vocabulary! {
    /// What an agent reports of a component.
    ReportState ("report state") {
        Ok = "ok",
        Applying = "applying",
        Failed = "failed",
    }
}

vocabulary! {
    /// A server replica's part in the cluster.
    ReplicaRole ("replica role") {
        /// Holds the lease: runs the controller and makes every decision.
        Leader = "leader",
        /// Serves by forwarding to the leader; takes over when the lease
        /// expires.
        Standby = "standby",
    }
}

vocabulary! {
    /// What an audit entry records. A new mutating action is one line
    /// here, and one `Caller::audit` where it is done.
    AuditKind ("audit kind") {
        RolloutCreated = "rollout_created",
        RolloutStarted = "rollout_started",
        RolloutPaused = "rollout_paused",
        RolloutResumed = "rollout_resumed",
        RolloutAdvanced = "rollout_advanced",
        RolloutApproved = "rollout_approved",
        RolloutAborted = "rollout_aborted",
        RolloutRolledBack = "rollout_rolled_back",
        FreezeOn = "freeze_on",
        FreezeOff = "freeze_off",
        HostsImported = "hosts_imported",
        StableSet = "stable_set",
        TokenCreated = "token_created",
        TokenRevoked = "token_revoked",
        /// An enrollment token was used to enroll a host.
        HostEnrolled = "host_enrolled",
        HostReenrolled = "host_reenrolled",
        /// A one-time dashboard sign-in link was made for the caller's token.
        SigninLinkCreated = "signin_link_created",
        /// The fleet-wide change budget was set, changed or lifted.
        BudgetSet = "budget_set",
        /// A host's component was pinned to a version for a while.
        HostPinned = "host_pinned",
        /// A host's pin was lifted before it expired.
        HostUnpinned = "host_unpinned",
        WebhookAdded = "webhook_added",
        WebhookRemoved = "webhook_removed",
        /// A test delivery was sent to a webhook.
        WebhookTested = "webhook_tested",
    }
}

impl AuditKind {
    /// The entry of an operator action on a rollout.
    pub fn of_action(action: Action) -> AuditKind {
        match action {
            Action::Start => AuditKind::RolloutStarted,
            Action::Pause => AuditKind::RolloutPaused,
            Action::Resume => AuditKind::RolloutResumed,
            Action::Advance => AuditKind::RolloutAdvanced,
            Action::Approve => AuditKind::RolloutApproved,
            Action::Abort => AuditKind::RolloutAborted,
            Action::Rollback => AuditKind::RolloutRolledBack,
        }
    }
}

vocabulary! {
    /// The type of an event of the log (`EventView.kind`): a rollout's
    /// (the engine's timeline) or a fleet-wide one (the freeze, the
    /// budget, tokens, enrollments, pins). Webhooks choose among them.
    EventKind ("event kind") {
        Created = "created",
        Started = "started",
        StageStarted = "stage_started",
        Baking = "baking",
        AwaitingApproval = "awaiting_approval",
        Approved = "approved",
        Advanced = "advanced",
        StageCompleted = "stage_completed",
        Completed = "completed",
        Paused = "paused",
        Resumed = "resumed",
        Held = "held",
        Released = "released",
        Waiting = "waiting",
        WaitOver = "wait_over",
        HostFailed = "host_failed",
        MaxFailedExceeded = "max_failed_exceeded",
        GateEvaluated = "gate_evaluated",
        GateFailed = "gate_failed",
        RollbackSkipped = "rollback_skipped",
        RollbackStarted = "rollback_started",
        Aborted = "aborted",
        FreezeOn = "freeze_on",
        FreezeOff = "freeze_off",
        BudgetSet = "budget_set",
        BudgetLifted = "budget_lifted",
        StableVersionSet = "stable_version_set",
        HostsImported = "hosts_imported",
        TokenCreated = "token_created",
        TokenRevoked = "token_revoked",
        HostEnrolled = "host_enrolled",
        HostReenrolled = "host_reenrolled",
        HostPinned = "host_pinned",
        HostUnpinned = "host_unpinned",
        PinExpired = "pin_expired",
    }
}

impl EventKind {
    /// The group name `halted`: the events that stop a rollout — paused
    /// (by an operator, a failure or a gate), rollback_started and aborted.
    pub const HALTED: &'static [EventKind] = &[
        EventKind::Paused,
        EventKind::RollbackStarted,
        EventKind::Aborted,
    ];

    /// The kinds a word names: one kind, or the group `halted`
    /// ([`EventKind::HALTED`]). An unknown word's error lists every valid
    /// one, the group included.
    pub fn named(word: &str) -> Result<Vec<EventKind>, UnknownWord> {
        if word == "halted" {
            return Ok(EventKind::HALTED.to_vec());
        }
        word.parse::<EventKind>()
            .map(|kind| vec![kind])
            .map_err(|error| UnknownWord {
                valid: format!(
                    "{}, or halted (paused, rollback_started, aborted)",
                    error.valid
                ),
                ..error
            })
    }
}

vocabulary! {
    /// How a webhook's deliveries are written.
    WebhookFormat ("webhook format") {
        /// The event as the API shows it (`EventView`).
        Json = "json",
        /// `{"text": "…"}`: one readable line, for a Slack incoming webhook.
        Slack = "slack",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde's spelling and `as_str` agree for every value.
    fn same_words<T>(all: &[T])
    where
        T: Copy
            + serde::Serialize
            + serde::de::DeserializeOwned
            + fmt::Display
            + FromStr
            + PartialEq
            + fmt::Debug,
        <T as FromStr>::Err: fmt::Debug,
    {
        for &value in all {
            let json = serde_json::to_value(value).expect("serializes");
            assert_eq!(json, serde_json::Value::String(value.to_string()));
            let back: T = serde_json::from_value(json).expect("deserializes");
            assert_eq!(back, value);
            assert_eq!(value.to_string().parse::<T>().expect("parses"), value);
        }
    }

    #[test]
    fn every_word_is_spelled_once() {
        same_words(RolloutState::ALL);
        same_words(HostState::ALL);
        same_words(Phase::ALL);
        same_words(GateOutcome::ALL);
        same_words(Action::ALL);
        same_words(Role::ALL);
        same_words(ReportState::ALL);
        same_words(ReplicaRole::ALL);
        same_words(AuditKind::ALL);
        same_words(EventKind::ALL);
        same_words(WebhookFormat::ALL);
    }

    #[test]
    fn halted_names_the_events_that_stop_a_rollout_and_unknown_kinds_list_the_valid_ones() {
        assert_eq!(
            EventKind::named("halted").expect("a group"),
            [
                EventKind::Paused,
                EventKind::RollbackStarted,
                EventKind::Aborted
            ]
        );
        assert_eq!(
            EventKind::named("stage_started").expect("a kind"),
            [EventKind::StageStarted]
        );
        let error = EventKind::named("stage_begun").expect_err("unknown");
        let message = error.to_string();
        assert!(
            message.starts_with("unknown event kind \"stage_begun\"; expected one of created, "),
            "{message}"
        );
        assert!(
            message.ends_with(", pin_expired, or halted (paused, rollback_started, aborted)"),
            "{message}"
        );
    }

    #[test]
    fn unknown_words_name_the_valid_ones() {
        let error = "rolledback".parse::<RolloutState>().expect_err("unknown");
        assert_eq!(
            error.to_string(),
            "unknown rollout state \"rolledback\"; expected one of pending, running, paused, completed, aborted, rolled_back"
        );
    }

    #[test]
    fn terminal_states_are_those_that_never_change() {
        let terminal: Vec<RolloutState> = RolloutState::ALL
            .iter()
            .copied()
            .filter(|state| state.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                RolloutState::Completed,
                RolloutState::Aborted,
                RolloutState::RolledBack
            ]
        );
    }
}
