//! Schedules and the queue: rollouts that start by themselves.
//!
//! A rollout created with a start time (`POST /v1/rollouts?start_at=T`,
//! `sluice rollout create --start-at T`) or whose plan says `after: NAME`
//! is created pending and *scheduled*; the controller's tick starts it
//! ([`World::start_due`]) once the engine's [`Rollout::schedule`] says it
//! is due: the time passed and the named rollout completed, and no
//! started rollout of its component owns hosts it selects ("one owner":
//! it then waits behind that one, queued, rather than failing). A rollout
//! it starts after that was rolled back or aborted blocks it for good,
//! visibly. The start time is kept in the rollout's stored header, the
//! `after` in its plan, so a restart or a new leader carries on; a time
//! that passed while no server ran starts the rollout at the first tick.
//!
//! The queue of a component is its pending rollouts, oldest first: due at
//! the same tick, the older starts first, and one started then owns the
//! hosts the next would share.

use jiff::Timestamp;
use sluice_core::plan::Plan;
use sluice_core::rollout::{Rollout, Schedule, Status};
use sluice_store::Write;

use super::{World, WorldError};

/// Whether `rollout` owns the hosts it selects: started (running or
/// paused) and not over. A pending rollout owns nothing yet.
pub(super) fn owns(rollout: &Rollout) -> bool {
    rollout.is_active() && *rollout.status() != Status::Pending
}

/// Refuses a start time that is not ahead of `now`, and an `after` that
/// names no rollout or one that stopped without completing (it would never
/// start by itself).
pub(super) fn check(
    world: &World,
    plan: &Plan,
    start_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), WorldError> {
    if let Some(at) = start_at.filter(|at| *at <= now) {
        return Err(WorldError::Invalid {
            field: "start_at".to_owned(),
            message: format!(
                "start_at {at} is not in the future (it is {now} now); give a later time, or leave start_at out and start the rollout by hand"
            ),
        });
    }
    let Some(after) = &plan.after else {
        return Ok(());
    };
    let problem = match world.rollout_named(&after.name) {
        None => format!(
            "no rollout is named {:?}; name an existing rollout (sluice rollout list), or create that one first",
            after.name
        ),
        Some(other) => match other.status() {
            status @ (Status::Aborted | Status::RolledBack) => format!(
                "rollout {:?} ({}) was {}, so it will never complete and this rollout would never start by itself; name another rollout, or leave after out and start this one by hand",
                after.name,
                other.id(),
                status.name().replace('_', " ")
            ),
            _ => return Ok(()),
        },
    };
    Err(WorldError::InvalidPlan {
        field: format!("after at {}:{}", after.line, after.column),
        message: format!(
            "the plan has 1 problem: {}:{}: after: {problem}",
            after.line, after.column
        ),
    })
}

impl World {
    /// The rollout whose plan is named `name` (names are unique).
    fn rollout_named(&self, name: &str) -> Option<&Rollout> {
        self.rollouts
            .iter()
            .map(|entry| &entry.rollout)
            .find(|rollout| rollout.plan().name == name)
    }

    /// What rollout `index`'s schedule says at `now`, the rollout that owns
    /// hosts it selects looked for only once nothing else holds it back.
    pub(super) fn schedule_of(&self, index: usize, now: Timestamp) -> Schedule {
        let rollout = &self.rollouts[index].rollout;
        if !rollout.is_scheduled() {
            return Schedule::None;
        }
        let after = rollout
            .plan()
            .after
            .as_ref()
            .and_then(|after| self.rollout_named(&after.name));
        match rollout.schedule(now, after, None) {
            Schedule::Due { reason } => match self.overlapping(rollout.plan(), owns) {
                Some((owner, _)) => {
                    rollout.schedule(now, after, Some(&self.rollouts[owner].rollout))
                }
                None => Schedule::Due { reason },
            },
            other => other,
        }
    }

    /// Starts every scheduled rollout that is due, oldest first.
    pub(super) fn start_due(&mut self, now: Timestamp, writes: &mut Vec<Write>) {
        self.latest = self.latest.max(now);
        for index in 0..self.rollouts.len() {
            let Schedule::Due { reason } = self.schedule_of(index, now) else {
                continue;
            };
            tracing::info!(rollout = %self.rollouts[index].rollout.id(), %reason, "scheduled rollout started");
            self.drive_logged(index, now, writes, "scheduled start", |rollout| {
                rollout.start_scheduled(now, reason)
            });
        }
    }

    /// Its place in its component's queue (1 is next): pending rollouts of
    /// the component, oldest first; `None` once it started.
    pub(super) fn queue_position(&self, index: usize) -> Option<u64> {
        let rollout = &self.rollouts[index].rollout;
        if *rollout.status() != Status::Pending {
            return None;
        }
        let entry = self.components.get(&rollout.plan().component)?;
        let ahead = entry
            .rollouts
            .iter()
            .take_while(|&&other| other != index)
            .filter(|&&other| *self.rollouts[other].rollout.status() == Status::Pending)
            .count() as u64;
        Some(ahead + 1)
    }
}
