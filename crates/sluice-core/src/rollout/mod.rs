//! The rollout state machine: one rollout of one plan, driven by [`Input`]s
//! that each carry the time, answering with what changed ([`Outcome`]).
//!
//! Pure: no IO, no clock. The server feeds it inventory, check-ins, ticks,
//! gate results, operator actions and the freeze; the simulator feeds it the
//! same in virtual time. Both run exactly this code.
//!
//! # Semantics in brief
//!
//! - **Hosts.** A host takes part if it matches the plan's selector when the
//!   rollout first sees it; it is then placed in its stratum and ranked by
//!   [`crate::hash::rank`] (ties by id) for good: labels changing later move
//!   neither an admitted nor a waiting host. A host that does not match is
//!   not recorded, so it joins if a later sighting matches.
//! - **Admission** runs after every accepted input, only while running and not
//!   held: while there is a free in-flight slot, the stratum furthest behind
//!   its quota (lowest admitted/quota, ties by key) admits its best-ranked
//!   waiting host. Admission is sticky. Quotas are recomputed as strata grow,
//!   so joiners are admitted in any phase of a running stage, within its
//!   quota; a stage moves on only once *settled*: every stratum at quota and
//!   no host in flight.
//! - **Stages.** progressing → (settled) baking until `now + bake` → (bake
//!   over, settled) awaiting approval if the stage asks for it → next stage,
//!   or completed after the last.
//! - **Held** (frozen, or outside every window) is not a status: no
//!   admission and no stage transition, while timers, reports, gate results
//!   and failure handling go on. `on_failure` applies while held too: a
//!   rollback admits nothing, it returns hosts to what they ran.
//! - **Failures** count for the current stage (also while paused); the stage
//!   fails when they exceed `max_failed` of the stage's quota across strata.
//!   A resume acknowledges them: the count starts again from zero.
//! - **Rejected inputs change nothing.** Timers (host timeouts, bakes,
//!   windows) advance with every accepted input, after the input itself: a
//!   report that arrives with its timeout already past still counts, since
//!   the host was not yet seen silent.
//!
//! # Decisions the spec leaves open
//!
//! - Reports from hosts the rollout does not know are ignored; a `Host`
//!   input for a known host only updates the version it last reported.
//! - A failed host that later reports ok at the target is healthy again;
//!   its failure still counts for its stage. Every transition into failed
//!   counts, so a flapping host counts more than once.
//! - After a rollback a host is reverted once it reports ok at its previous
//!   version, or, when that was unknown, at any version but the target.
//! - **Drift.** A healthy host whose report says it drifted (its agent found
//!   it at another version than the target, outside an apply: changed by
//!   hand) has lost the change: it fails, and counts against `max_failed`
//!   like any failure — a hand downgrade during a rollout is most often
//!   someone undoing a change that hurt, and halting is reversible where
//!   carrying on is not. It is healthy again once it reports ok at the
//!   target (an agent with `enforce` re-applies it). A drifted report from
//!   an instructed host decides nothing (it never reported healthy; its
//!   timeout still runs), nor from a failed, waiting, reverting or reverted
//!   one; a report at another version that does not say it drifted (an
//!   apply not yet begun, an older agent) decides nothing either.
//! - A resume into a bake restarts the bake in full; `advance` skips it.
//! - An approval given while held (or while joiners are in flight) is kept:
//!   the next stage starts as soon as the stage settles and is released.
//! - `host_timeout: 0s` disables the timeout.
//! - Holds are tracked, and recorded as events, for pending rollouts too;
//!   a terminal rollout is never held.
//! - `max_failed` is resolved against the stage's quota across strata
//!   (what the stage admits in the end), not what is admitted so far.

mod arbitrated;
mod cohort;
mod driving;
mod error;
mod event;
mod hosts;
mod model;
mod schedule;
mod snapshot;

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use crate::duration::Duration;
use crate::fleet::Labels;
use crate::hash;
use crate::plan::{next_opening, windows_open, NoData, OnFailure, Plan};
use crate::selection::StratumKey;

pub use cohort::{CohortStratum, Cohorts};
pub use driving::{Fed, HostReport, Sighting};
pub use error::{Rejected, RestoreError};
pub use event::{Event, EventKind};
pub use model::{
    Action, Admission, CohortComparison, Freeze, GateOutcome, GateReading, GateResult, GateStatus,
    Health, HoldReason, HostChange, HostCounts, HostState, HostView, Input, Outcome, Phase, Status,
    StratumProgress, Verdict, Wait, Waiting,
};
pub use schedule::{Blocked, Schedule, Wait as ScheduleWait};
pub use snapshot::{Snapshot, SnapshotHost};

use hosts::{HostRecord, HostTable};

/// One rollout: its plan, its hosts and where it is.
#[derive(Debug, Clone)]
pub struct Rollout {
    id: String,
    plan: Plan,
    created_at: Timestamp,
    status: Status,
    /// The fleet-wide freeze as this rollout last heard of it.
    frozen: Option<Freeze>,
    /// Why the rollout is held, as of the last input.
    hold: Option<HoldReason>,
    hosts: HostTable,
    /// Host failures counted for each stage.
    failures: Vec<u64>,
    /// Failures of the current stage acknowledged by a resume.
    failure_baseline: u64,
    /// The external gates, in plan order (Prometheus, HTTP, comparison).
    gates: Vec<GateState>,
    /// Whether an arbiter across rollouts admits its hosts
    /// ([`Rollout::admit_one`]) rather than the rollout itself, after each
    /// input (see [`crate::arbiter`]). Not part of the snapshot: whoever
    /// restores a rollout says again who admits.
    arbitrated: bool,
    /// What it waits for, as the arbiter last said.
    waiting: Option<Waiting>,
    /// When it starts by itself, if it was created with a start time (see
    /// [`schedule`]).
    start_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct GateState {
    name: String,
    /// A comparison gate: judged only while the stage bakes.
    compares: bool,
    consecutive: u32,
    no_data: NoData,
    report_only: bool,
    streak: u32,
    latest: Option<GateReading>,
}

/// The input being handled: its time and what it changed so far.
struct Tx {
    now: Timestamp,
    out: Outcome,
}

impl Tx {
    fn event(&mut self, actor: Option<&str>, kind: EventKind) {
        self.out.events.push(Event {
            at: self.now,
            actor: actor.map(str::to_owned),
            kind,
        });
    }

    fn host(&mut self, id: &str, state: HostState) {
        self.out.hosts.push(HostChange {
            id: id.to_owned(),
            state,
        });
    }
}

impl Rollout {
    /// A pending rollout of `plan`, created at `now`. Its timeline starts
    /// with [`Rollout::created_event`].
    pub fn new(id: String, plan: Plan, now: Timestamp) -> Rollout {
        let compares = plan.gates.compare.len();
        let external = plan.gates.external().count();
        let gates = plan
            .gates
            .external()
            .enumerate()
            .map(|(index, common)| GateState {
                name: common.name.clone(),
                compares: index >= external - compares,
                consecutive: common.consecutive.max(1),
                no_data: common.no_data,
                report_only: common.report_only,
                streak: 0,
                latest: None,
            })
            .collect();
        Rollout {
            id,
            hosts: HostTable::new(&plan.version),
            failures: vec![0; plan.stages.len()],
            failure_baseline: 0,
            gates,
            plan,
            created_at: now,
            status: Status::Pending,
            frozen: None,
            hold: None,
            arbitrated: false,
            waiting: None,
            start_at: None,
        }
    }

    /// The first event of the timeline.
    pub fn created_event(&self) -> Event {
        Event {
            at: self.created_at,
            actor: None,
            kind: EventKind::Created {
                rollout: self.id.clone(),
                plan: self.plan.name.clone(),
                component: self.plan.component.clone(),
                version: self.plan.version.clone(),
            },
        }
    }

    /// Applies one input at `now`. A rejected input changes nothing; an
    /// accepted one also advances the timers and admits what it can.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Result<Outcome, Rejected> {
        self.check(&input)?;
        let mut tx = Tx {
            now,
            out: Outcome::default(),
        };
        let open = windows_open(&self.plan.windows, now);
        self.refresh_hold(open, None, &mut tx);
        let mut lifted = None;
        match input {
            Input::Host {
                id,
                labels,
                version,
            } => self.apply_host(id, &labels, version, &mut tx),
            Input::Report {
                id,
                version,
                health,
                message,
                drifted,
            } => self.apply_report(&id, &version, health, message, drifted, &mut tx),
            Input::Tick => {}
            Input::Gate(result) => self.apply_gate(result, &mut tx),
            Input::Action {
                action,
                actor,
                reason,
            } => self.apply_action(action, &actor, reason, &mut tx),
            Input::ScheduledStart { reason } => {
                tx.event(None, EventKind::Started { reason });
                self.start_stage(0, &mut tx);
            }
            Input::Freeze { on, actor, reason } => {
                if on {
                    self.frozen.get_or_insert(Freeze { actor, reason });
                } else if self.frozen.take().is_some() {
                    lifted = Some(Freeze { actor, reason });
                }
            }
        }
        self.expire(&mut tx);
        self.refresh_hold(open, lifted, &mut tx);
        self.step(&mut tx);
        Ok(tx.out)
    }

    // ---- queries -------------------------------------------------------

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The current stage (0-based), also while paused.
    pub fn stage(&self) -> Option<usize> {
        self.status.stage()
    }

    /// The current stage's phase, also while paused.
    pub fn phase(&self) -> Option<Phase> {
        match &self.status {
            Status::Running { phase, .. } | Status::Paused { phase, .. } => Some(*phase),
            _ => None,
        }
    }

    /// Why the rollout is held, if it is (as of the last input).
    pub fn held(&self) -> Option<&HoldReason> {
        self.hold.as_ref()
    }

    /// What the rollout waits for, if an arbiter admits none of the hosts
    /// its stage wants (see [`Rollout::admit_one`]).
    pub fn waiting(&self) -> Option<&Waiting> {
        self.waiting.as_ref()
    }

    /// Whether an arbiter admits its hosts (see [`Rollout::set_arbitrated`]).
    pub fn is_arbitrated(&self) -> bool {
        self.arbitrated
    }

    /// What `host` should run according to this rollout: the target once
    /// admitted; after a rollback, the version it ran before admission.
    /// `None` is no opinion: the caller falls back to the stable version
    /// (also for a rolled-back host whose previous version was unknown).
    pub fn desired_version(&self, host: &str) -> Option<&str> {
        let record = self.hosts.record(self.hosts.get(host)?);
        if !record.admitted() {
            None
        } else if self.status == Status::RolledBack {
            self.hosts.version_of(record.previous)
        } else {
            Some(&self.plan.version)
        }
    }

    pub fn host_state(&self, host: &str) -> Option<&HostState> {
        Some(&self.hosts.record(self.hosts.get(host)?).state)
    }

    /// Everything the rollout knows about one host.
    pub fn host(&self, host: &str) -> Option<HostView<'_>> {
        Some(self.view(self.hosts.get(host)?))
    }

    /// Every host taking part, in the order the rollout first saw them.
    pub fn hosts(&self) -> impl Iterator<Item = HostView<'_>> + '_ {
        (0..self.hosts.len() as u32).map(|host| self.view(host))
    }

    fn view(&self, host: u32) -> HostView<'_> {
        let record = self.hosts.record(host);
        HostView {
            id: &record.id,
            state: &record.state,
            version: self.hosts.version_of(record.version),
            previous: self.hosts.version_of(record.previous),
            admitted_stage: record.admitted_stage.map(|stage| stage as usize),
            stratum: &self.hosts.strata()[record.stratum as usize].key,
        }
    }

    pub fn counts(&self) -> HostCounts {
        self.hosts.counts()
    }

    /// Hosts taking part (matching the selector), admitted or not.
    pub fn selected(&self) -> u64 {
        self.hosts.len() as u64
    }

    /// Hosts admitted at some stage.
    pub fn admitted(&self) -> u64 {
        self.hosts.admitted_total()
    }

    /// Hosts instructed and not yet healthy.
    pub fn in_flight(&self) -> u64 {
        self.hosts.in_flight()
    }

    /// The most hosts in flight at once: `max_in_flight` of the selected
    /// hosts, at least 1; unlimited without `max_in_flight`.
    pub fn max_in_flight(&self) -> u64 {
        self.plan
            .max_in_flight
            .map_or(u64::MAX, |amount| amount.resolve(self.selected()).max(1))
    }

    /// The current stage's quota across strata (0 without a current stage).
    pub fn quota(&self) -> u64 {
        self.hosts.quota_total()
    }

    /// Failures counted for `stage` since the last resume acknowledged some.
    pub fn stage_failures(&self, stage: usize) -> u64 {
        let total = self.failures.get(stage).copied().unwrap_or(0);
        if Some(stage) == self.stage() {
            total - self.failure_baseline
        } else {
            total
        }
    }

    /// The failures the current stage tolerates: `max_failed` of its quota.
    pub fn allowed_failures(&self) -> u64 {
        self.plan.gates.max_failed.resolve(self.quota())
    }

    /// Each stratum's progress at the current stage, ordered by key.
    pub fn strata(&self) -> Vec<StratumProgress> {
        let mut strata: Vec<StratumProgress> = self
            .hosts
            .strata()
            .iter()
            .enumerate()
            .map(|(s, stratum)| StratumProgress {
                key: stratum.key.clone(),
                size: stratum.size,
                quota: self.hosts.quota(s as u32),
                admitted: stratum.admitted,
                healthy: stratum.healthy,
                failed: stratum.failed,
            })
            .collect();
        strata.sort_by(|a, b| a.key.cmp(&b.key));
        strata
    }

    /// The external gates with their latest result, in plan order.
    pub fn gates(&self) -> Vec<GateStatus> {
        self.gates
            .iter()
            .map(|gate| GateStatus {
                name: gate.name.clone(),
                report_only: gate.report_only,
                streak: gate.streak,
                consecutive: gate.consecutive,
                latest: gate.latest.clone(),
            })
            .collect()
    }

    /// Whether external gates should be evaluated now: running, and the
    /// stage progressing or baking (held or not). Results that arrive
    /// otherwise are ignored.
    pub fn gates_active(&self) -> bool {
        matches!(
            self.status,
            Status::Running {
                phase: Phase::Progressing | Phase::Baking { .. },
                ..
            }
        )
    }

    /// Whether the external gate `name` should be evaluated now: like
    /// [`Rollout::gates_active`], but a comparison gate only while the
    /// stage bakes — once its canaries have all reported, so that the
    /// cohorts are what the stage admitted and a bake is its observation
    /// time. A stage without a bake is not compared.
    pub fn gate_active(&self, name: &str) -> bool {
        match self.gates.iter().find(|gate| gate.name == name) {
            Some(gate) if gate.compares => matches!(
                self.status,
                Status::Running {
                    phase: Phase::Baking { .. },
                    ..
                }
            ),
            Some(_) => self.gates_active(),
            None => false,
        }
    }

    // ---- validation ----------------------------------------------------

    fn check(&self, input: &Input) -> Result<(), Rejected> {
        match input {
            Input::Action { action, reason, .. } => {
                if reason.trim().is_empty() {
                    return Err(Rejected::EmptyReason {
                        rollout: self.id.clone(),
                        what: action.name().to_owned(),
                    });
                }
                match self.action_hint(*action) {
                    None => Ok(()),
                    Some(hint) => Err(Rejected::InvalidAction {
                        rollout: self.id.clone(),
                        action: *action,
                        state: self.describe(),
                        hint: hint.to_owned(),
                    }),
                }
            }
            Input::ScheduledStart { .. } => match self.action_hint(Action::Start) {
                None => Ok(()),
                Some(hint) => Err(Rejected::InvalidAction {
                    rollout: self.id.clone(),
                    action: Action::Start,
                    state: self.describe(),
                    hint: hint.to_owned(),
                }),
            },
            Input::Freeze { on, reason, .. } if reason.trim().is_empty() => {
                Err(Rejected::EmptyReason {
                    rollout: self.id.clone(),
                    what: if *on { "freeze" } else { "unfreeze" }.to_owned(),
                })
            }
            Input::Gate(result) if !self.gates.iter().any(|g| g.name == result.name) => {
                Err(Rejected::UnknownGate {
                    rollout: self.id.clone(),
                    gate: result.name.clone(),
                    known: if self.gates.is_empty() {
                        "none".to_owned()
                    } else {
                        let names: Vec<&str> = self.gates.iter().map(|g| g.name.as_str()).collect();
                        names.join(", ")
                    },
                })
            }
            _ => Ok(()),
        }
    }

    /// Why `action` does not apply now and what would, or `None` if it does.
    fn action_hint(&self, action: Action) -> Option<&'static str> {
        use Action::*;
        let phase = self.phase();
        let hint = match (&self.status, action) {
            (Status::Completed, _) => {
                "a completed rollout cannot change — create a new rollout to change the version again"
            }
            (Status::RolledBack, _) => {
                "a rolled-back rollout cannot change — create a new rollout to try again"
            }
            (Status::Aborted, Rollback) => return None,
            (Status::Aborted, _) => "an aborted rollout can only be rolled back",
            (Status::Pending, Start | Abort) => return None,
            (_, Start) => "it has already started; pause, resume or abort it instead",
            (Status::Running { .. }, Pause | Abort | Rollback) => return None,
            (Status::Paused { .. }, Resume | Abort | Rollback) => return None,
            (Status::Paused { .. }, Pause) => "it is already paused; resume it to continue",
            (Status::Pending, Pause) => "a pending rollout admits no host; start it, or abort it",
            (Status::Pending, Resume) => "a pending rollout is started, not resumed",
            (Status::Pending, Rollback) => "no host has been admitted yet; abort it instead",
            (_, Resume) => "only a paused rollout can be resumed",
            (Status::Running { .. }, Advance) if matches!(phase, Some(Phase::Baking { .. })) => {
                return None
            }
            (_, Advance) if matches!(phase, Some(Phase::AwaitingApproval { .. })) => {
                "advance skips the rest of a bake; this stage waits for approve"
            }
            (_, Advance) => "advance skips the rest of a bake",
            (Status::Running { .. }, Approve)
                if phase == Some(Phase::AwaitingApproval { approved: false }) =>
            {
                return None
            }
            (_, Approve) if phase == Some(Phase::AwaitingApproval { approved: true }) => {
                "the next stage starts as soon as the rollout is released and hosts in flight settle"
            }
            (_, Approve) => "approve applies to a stage awaiting approval",
        };
        Some(hint)
    }

    /// The rollout's state in words, for messages: `it is completed`,
    /// `stage 2 (10%) is progressing, 34 of 120 hosts admitted`.
    fn describe(&self) -> String {
        let stage_name =
            |stage: usize| format!("stage {} ({}%)", stage + 1, self.plan.stages[stage].percent);
        match &self.status {
            Status::Pending => "it is pending".to_owned(),
            Status::Completed => "it is completed".to_owned(),
            Status::Aborted => "it is aborted".to_owned(),
            Status::RolledBack => "it is rolled back".to_owned(),
            Status::Paused { reason, stage, .. } => {
                format!("it is paused at {}: {reason}", stage_name(*stage))
            }
            Status::Running { stage, phase } => {
                let stage = stage_name(*stage);
                match phase {
                    Phase::Progressing => format!(
                        "{stage} is progressing, {} of {} hosts admitted",
                        self.admitted(),
                        self.quota()
                    ),
                    Phase::Baking { until } => format!("{stage} is baking until {until}"),
                    Phase::AwaitingApproval { approved: false } => {
                        format!("{stage} is awaiting approval")
                    }
                    Phase::AwaitingApproval { approved: true } => {
                        format!("{stage} is already approved")
                    }
                }
            }
        }
    }

    // ---- inputs --------------------------------------------------------

    fn apply_host(
        &mut self,
        id: Arc<str>,
        labels: &Labels,
        version: Option<Arc<str>>,
        tx: &mut Tx,
    ) {
        if let Some(host) = self.hosts.get(&id) {
            if let Some(version) = version {
                self.hosts.set_version(host, &version);
            }
            return;
        }
        let Some(stratum) = self.stratum_of(labels) else {
            return;
        };
        self.insert_waiting(Arc::clone(&id), stratum, version.as_deref());
        tx.host(&id, HostState::Waiting);
    }

    /// The stratum a host with `labels` joins, or `None` when the selector
    /// leaves it out.
    fn stratum_of(&mut self, labels: &Labels) -> Option<u32> {
        let selector = &self.plan.selector;
        if !selector.is_empty() && !selector.matches(labels) {
            return None;
        }
        Some(
            self.hosts
                .stratum_for(StratumKey::of(&self.plan.strategy.spread, labels)),
        )
    }

    /// Adds a host the rollout does not know yet, waiting.
    fn insert_waiting(&mut self, id: Arc<str>, stratum: u32, version: Option<&str>) {
        let version = version.map(|version| self.hosts.intern(version));
        self.hosts.insert(HostRecord {
            rank: hash::rank(self.plan.salt(), &id),
            id,
            stratum,
            version,
            previous: None,
            admitted_stage: None,
            state: HostState::Waiting,
        });
    }

    fn apply_report(
        &mut self,
        id: &str,
        version: &str,
        health: Health,
        message: Option<String>,
        drifted: bool,
        tx: &mut Tx,
    ) {
        let Some(host) = self.hosts.get(id) else {
            return;
        };
        self.hosts.set_version(host, version);
        let at_target = self.hosts.is_target(version);
        let record = self.hosts.record(host);
        let failure = || match &message {
            Some(message) if !message.trim().is_empty() => {
                format!("reported failed: {}", message.trim())
            }
            _ => "reported failed".to_owned(),
        };
        match (&record.state, health) {
            (HostState::Instructed { .. } | HostState::Failed { .. }, Health::Ok) if at_target => {
                self.set_host(host, HostState::Healthy, tx);
            }
            (HostState::Instructed { .. } | HostState::Healthy, Health::Failed) => {
                self.fail_host(host, failure(), tx);
            }
            (HostState::Healthy, _) if drifted && !at_target => {
                let reason = format!(
                    "drifted: found at {version} after reporting healthy at {}, changed outside sluice",
                    self.plan.version
                );
                self.fail_host(host, reason, tx);
            }
            (HostState::Reverting, Health::Ok) => {
                let reverted = match self.hosts.version_of(record.previous) {
                    Some(previous) => previous == version,
                    None => !at_target,
                };
                if reverted {
                    self.set_host(host, HostState::Reverted, tx);
                }
            }
            (HostState::Reverting, Health::Failed) => {
                let reason = format!("rollback {}", failure());
                tx.event(
                    None,
                    EventKind::HostFailed {
                        host: id.to_owned(),
                        reason,
                        stage: None,
                    },
                );
            }
            _ => {}
        }
    }

    fn apply_gate(&mut self, result: GateResult, tx: &mut Tx) {
        if !self.gate_active(&result.name) {
            return;
        }
        let Some(gate) = self.gates.iter_mut().find(|g| g.name == result.name) else {
            return;
        };
        tx.event(
            None,
            EventKind::GateEvaluated {
                gate: result.name.clone(),
                outcome: result.outcome,
                evidence: result.evidence.clone(),
                report_only: gate.report_only,
                comparison: result.comparison.clone(),
            },
        );
        gate.latest = Some(GateReading {
            at: tx.now,
            outcome: result.outcome,
            evidence: result.evidence.clone(),
            comparison: result.comparison.clone(),
        });
        let effective = match (result.outcome, gate.no_data) {
            (GateOutcome::NoData, NoData::Fail) => GateOutcome::Fail,
            (GateOutcome::NoData, NoData::Pass) => GateOutcome::Pass,
            (outcome, _) => outcome,
        };
        match effective {
            GateOutcome::Pass => gate.streak = 0,
            GateOutcome::Fail => {
                gate.streak += 1;
                let failures = gate.streak;
                if !gate.report_only && failures >= gate.consecutive {
                    tx.event(
                        None,
                        EventKind::GateFailed {
                            gate: result.name.clone(),
                            failures,
                            evidence: result.evidence.clone(),
                        },
                    );
                    let cause = format!(
                        "gate {} failed {failures} {} in a row: {}",
                        result.name,
                        plural(u64::from(failures), "evaluation", "evaluations"),
                        result.evidence
                    );
                    self.fail_stage(cause, tx);
                }
            }
            GateOutcome::NoData => {
                if !gate.report_only {
                    let cause = format!(
                        "gate {} has no data (no_data: pause): {}",
                        result.name, result.evidence
                    );
                    self.pause(None, cause, tx);
                }
            }
        }
    }

    fn apply_action(&mut self, action: Action, actor: &str, reason: String, tx: &mut Tx) {
        let actor = Some(actor);
        match action {
            Action::Start => {
                tx.event(actor, EventKind::Started { reason });
                self.start_stage(0, tx);
            }
            Action::Pause => self.pause(actor, reason, tx),
            Action::Resume => {
                if let Status::Paused { stage, phase, .. } = self.status {
                    let total = self.failures[stage];
                    let acknowledged_failures = total - self.failure_baseline;
                    self.failure_baseline = total;
                    let mut reset_gates = Vec::new();
                    for gate in &mut self.gates {
                        if gate.streak > 0 {
                            gate.streak = 0;
                            reset_gates.push(gate.name.clone());
                        }
                    }
                    tx.event(
                        actor,
                        EventKind::Resumed {
                            reason,
                            acknowledged_failures,
                            reset_gates,
                        },
                    );
                    self.status = Status::Running { stage, phase };
                    if let Phase::Baking { .. } = phase {
                        // A bake interrupted by a pause starts over: the
                        // stage is watched for its whole bake after a resume.
                        self.begin_bake(stage, tx);
                    }
                }
            }
            Action::Advance => {
                if let Status::Running {
                    stage,
                    phase: Phase::Baking { .. },
                } = self.status
                {
                    self.status = Status::Running {
                        stage,
                        phase: Phase::Baking { until: tx.now },
                    };
                    tx.event(actor, EventKind::Advanced { stage, reason });
                }
            }
            Action::Approve => {
                if let Status::Running { stage, .. } = self.status {
                    self.status = Status::Running {
                        stage,
                        phase: Phase::AwaitingApproval { approved: true },
                    };
                    tx.event(actor, EventKind::Approved { stage, reason });
                }
            }
            Action::Abort => {
                self.status = Status::Aborted;
                self.hosts.set_stage(None);
                tx.event(actor, EventKind::Aborted { reason });
            }
            Action::Rollback => self.rollback(actor, reason, tx),
        }
    }

    // ---- timers, holds and progress ------------------------------------

    /// Fails the hosts instructed `host_timeout` ago or longer without
    /// reporting healthy; a zero `host_timeout` never times out.
    fn expire(&mut self, tx: &mut Tx) {
        let timeout = self.plan.gates.host_timeout;
        if timeout.is_zero() {
            return;
        }
        while let Some((since, host)) = self.hosts.oldest_in_flight() {
            if after(since, timeout) > tx.now {
                break;
            }
            self.fail_host(host, format!("silent for {timeout} (host_timeout)"), tx);
        }
    }

    /// Recomputes why the rollout is held and records a change; `lifted` is
    /// the freeze being lifted by this input, if any.
    fn refresh_hold(&mut self, window_open: bool, lifted: Option<Freeze>, tx: &mut Tx) {
        let hold = if self.status.is_terminal() {
            None
        } else if let Some(freeze) = &self.frozen {
            Some(HoldReason::Frozen {
                actor: freeze.actor.clone(),
                reason: freeze.reason.clone(),
            })
        } else if !window_open {
            match &self.hold {
                Some(hold @ HoldReason::OutsideWindow { .. }) => Some(hold.clone()),
                _ => Some(HoldReason::OutsideWindow {
                    next_opening: next_opening(&self.plan.windows, tx.now),
                }),
            }
        } else {
            None
        };
        if hold == self.hold {
            return;
        }
        let old = std::mem::replace(&mut self.hold, hold);
        if self.status.is_terminal() {
            return;
        }
        if let Some(old) = old {
            let (actor, reason) = match (&old, lifted) {
                (HoldReason::Frozen { .. }, Some(lifted)) => {
                    (Some(lifted.actor), Some(lifted.reason))
                }
                _ => (None, None),
            };
            tx.event(actor.as_deref(), EventKind::Released { hold: old, reason });
        }
        if let Some(hold) = &self.hold {
            let actor = match hold {
                HoldReason::Frozen { actor, .. } => Some(actor.as_str()),
                HoldReason::OutsideWindow { .. } => None,
            };
            tx.event(actor, EventKind::Held { hold: hold.clone() });
        }
    }

    /// Admits and moves through stages as far as the rollout can go now.
    fn step(&mut self, tx: &mut Tx) {
        loop {
            let Status::Running { stage, phase } = self.status else {
                return;
            };
            if self.hold.is_some() {
                return;
            }
            if !self.arbitrated {
                self.admit(tx);
            }
            if !self.transition(stage, phase, tx) {
                return;
            }
        }
    }

    fn admit(&mut self, tx: &mut Tx) {
        let limit = self.max_in_flight();
        while self.hosts.in_flight() < limit {
            let Ok(Some(host)) = self.hosts.admit_next(tx.now, &mut |_| Verdict::Admit) else {
                break;
            };
            let record = self.hosts.record(host);
            tx.host(&record.id, record.state.clone());
        }
    }

    /// Takes the one transition the stage is ready for; false if none.
    fn transition(&mut self, stage: usize, phase: Phase, tx: &mut Tx) -> bool {
        let settled = self.hosts.settled();
        match phase {
            Phase::Progressing if settled => self.begin_bake(stage, tx),
            Phase::Baking { until } if settled && tx.now >= until => self.end_bake(stage, tx),
            Phase::AwaitingApproval { approved: true } if settled => self.complete_stage(stage, tx),
            _ => return false,
        }
        true
    }

    fn begin_bake(&mut self, stage: usize, tx: &mut Tx) {
        let bake = self.plan.stages[stage].bake;
        if bake.is_zero() {
            self.end_bake(stage, tx);
            return;
        }
        let until = after(tx.now, bake);
        self.status = Status::Running {
            stage,
            phase: Phase::Baking { until },
        };
        tx.event(None, EventKind::Baking { stage, until });
    }

    fn end_bake(&mut self, stage: usize, tx: &mut Tx) {
        if self.plan.stages[stage].approve {
            self.status = Status::Running {
                stage,
                phase: Phase::AwaitingApproval { approved: false },
            };
            tx.event(None, EventKind::AwaitingApproval { stage });
        } else {
            self.complete_stage(stage, tx);
        }
    }

    fn complete_stage(&mut self, stage: usize, tx: &mut Tx) {
        tx.event(
            None,
            EventKind::StageCompleted {
                index: stage,
                name: self.plan.stages[stage].name.clone(),
            },
        );
        if stage + 1 < self.plan.stages.len() {
            self.start_stage(stage + 1, tx);
        } else {
            self.status = Status::Completed;
            self.hosts.set_stage(None);
            tx.event(None, EventKind::Completed);
        }
    }

    fn start_stage(&mut self, stage: usize, tx: &mut Tx) {
        let spec = &self.plan.stages[stage];
        self.status = Status::Running {
            stage,
            phase: Phase::Progressing,
        };
        self.failure_baseline = self.failures[stage];
        self.hosts.set_stage(Some((
            stage,
            spec.percent,
            self.plan.strategy.min_per_stratum,
        )));
        tx.event(
            None,
            EventKind::StageStarted {
                index: stage,
                name: spec.name.clone(),
                percent: spec.percent.as_f64(),
                quota: self.hosts.quota_total(),
            },
        );
    }

    // ---- failures ------------------------------------------------------

    fn set_host(&mut self, host: u32, state: HostState, tx: &mut Tx) {
        if self.hosts.set_state(host, state) {
            let record = self.hosts.record(host);
            tx.host(&record.id, record.state.clone());
        }
    }

    /// Marks an admitted host failed, counts it for the current stage and
    /// fails the stage once failures exceed `max_failed`.
    fn fail_host(&mut self, host: u32, reason: String, tx: &mut Tx) {
        self.set_host(
            host,
            HostState::Failed {
                reason: reason.clone(),
            },
            tx,
        );
        let stage = self.stage();
        tx.event(
            None,
            EventKind::HostFailed {
                host: self.hosts.record(host).id.to_string(),
                reason,
                stage,
            },
        );
        let Some(stage) = stage else {
            return;
        };
        self.failures[stage] += 1;
        if !matches!(self.status, Status::Running { .. }) {
            return;
        }
        let failed = self.failures[stage] - self.failure_baseline;
        let allowed = self.allowed_failures();
        if failed > allowed {
            tx.event(
                None,
                EventKind::MaxFailedExceeded {
                    stage,
                    failed,
                    allowed,
                },
            );
            let cause = format!(
                "stage {} ({}%): {failed} {} failed, {allowed} allowed (max_failed: {})",
                stage + 1,
                self.plan.stages[stage].percent,
                plural(failed, "host", "hosts"),
                self.plan.gates.max_failed
            );
            self.fail_stage(cause, tx);
        }
    }

    /// Applies `on_failure` to a running rollout whose stage failed.
    fn fail_stage(&mut self, cause: String, tx: &mut Tx) {
        if !matches!(self.status, Status::Running { .. }) {
            return;
        }
        match self.plan.on_failure {
            OnFailure::Pause => self.pause(None, cause, tx),
            OnFailure::Rollback if !self.plan.reversible => {
                tx.event(
                    None,
                    EventKind::RollbackSkipped {
                        why: "the plan is not reversible (reversible: false), so sluice paused instead of rolling back".to_owned(),
                    },
                );
                self.pause(None, cause, tx);
            }
            OnFailure::Rollback => self.rollback(None, cause, tx),
        }
    }

    /// Pauses a running rollout: an operator's action, or sluice's (`actor`
    /// `None`) on a failure.
    fn pause(&mut self, actor: Option<&str>, reason: String, tx: &mut Tx) {
        if let Status::Running { stage, phase } = self.status {
            self.status = Status::Paused {
                reason: reason.clone(),
                stage,
                phase,
            };
            tx.event(actor, EventKind::Paused { reason });
        }
    }

    /// Tells every admitted host to return to its previous version.
    fn rollback(&mut self, actor: Option<&str>, reason: String, tx: &mut Tx) {
        let admitted = self.hosts.admitted();
        for &host in &admitted {
            self.set_host(host, HostState::Reverting, tx);
        }
        self.status = Status::RolledBack;
        self.hosts.set_stage(None);
        tx.event(
            actor,
            EventKind::RollbackStarted {
                reason,
                hosts: admitted.len() as u64,
                not_reversible: !self.plan.reversible,
            },
        );
    }
}

/// `at + duration`, saturating at the end of time.
fn after(at: Timestamp, duration: Duration) -> Timestamp {
    let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
    at.checked_add(SignedDuration::from_secs(seconds))
        .unwrap_or(Timestamp::MAX)
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}
