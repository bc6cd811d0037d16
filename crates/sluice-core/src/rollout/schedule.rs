//! Schedules: a pending rollout that starts by itself — at a time (its
//! `start_at`, given when it is created), once another rollout completes
//! (the plan's `after: NAME`), or both, whichever comes later — and what
//! it waits for meanwhile.
//!
//! The engine knows one rollout: the caller (the server's world) looks up
//! the rollout the plan names and the rollout, if any, that owns hosts of
//! the component this one selects ("one owner"), and asks
//! [`Rollout::schedule`] what to do at `now`. A due rollout is started with
//! [`Rollout::start_scheduled`]: the `started` event has no actor (sluice
//! started it) and says why. Rules:
//!
//! - `start_at` passed and the `after` rollout completed: due.
//! - The `after` rollout rolled back or aborted: blocked for good — it never
//!   starts by itself (an operator may still start or abort it).
//! - Another rollout of the component owns hosts this one selects: it waits
//!   behind it (queued, not failed), and starts once that one is over.
//! - Only a pending rollout is scheduled; a start by hand, an abort, or
//!   anything that ends pending ends the schedule.

use std::fmt;

use jiff::Timestamp;

use super::model::Status;
use super::{Input, Rollout};
use crate::rollout::driving::Fed;

/// What a pending rollout with a schedule waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Its start time is ahead.
    StartsAt(Timestamp),
    /// The rollout it starts after has not completed.
    After {
        name: String,
        id: String,
        state: &'static str,
    },
    /// Another rollout of its component owns hosts it selects.
    Behind { id: String, name: String },
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::StartsAt(at) => write!(f, "starts at {at}"),
            Wait::After { name, id, state } => {
                write!(f, "after {name} ({id}, {})", state.replace('_', " "))
            }
            Wait::Behind { id, name } => {
                write!(f, "behind {id} ({name}), which changes the same hosts")
            }
        }
    }
}

/// What a rollout's schedule says at some time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Not scheduled: no `start_at`, no `after`, or no longer pending.
    None,
    /// Start it now; `reason` goes in the `started` event.
    Due { reason: String },
    /// Not yet: everything it still waits for, in this order: the time,
    /// the rollout it starts after, the rollout it is queued behind.
    Queued(Vec<Wait>),
    /// It never starts by itself: the rollout it starts after stopped
    /// without completing.
    Blocked(Blocked),
}

/// Why a scheduled rollout never starts by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The plan's `after`.
    pub after: String,
    /// That rollout's id, if one has the name.
    pub id: Option<String>,
    /// That rollout's state: `rolled_back` or `aborted`, or `None` when no
    /// rollout has the name.
    pub state: Option<&'static str>,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.id, self.state) {
            (Some(id), Some(state)) => {
                let was = match state {
                    "rolled_back" => "rolled back",
                    other => other,
                };
                write!(f, "after {} ({id}), which was {was}", self.after)
            }
            _ => write!(f, "after {}, which does not exist", self.after),
        }
    }
}

impl Rollout {
    /// When it starts by itself, if it was created with a start time.
    pub fn start_at(&self) -> Option<Timestamp> {
        self.start_at
    }

    /// Sets the time it starts by itself (at creation).
    pub fn set_start_at(&mut self, at: Option<Timestamp>) {
        self.start_at = at;
    }

    /// Whether it waits to start by itself: pending, with a start time or
    /// an `after`.
    pub fn is_scheduled(&self) -> bool {
        self.status == Status::Pending && (self.start_at.is_some() || self.plan.after.is_some())
    }

    /// What its schedule says at `now`. `after` is the rollout its plan's
    /// `after` names (`None`: no rollout has that name, or the plan names
    /// none); `owner` an active, started rollout of the same component that
    /// selects some of the same hosts, if any.
    pub fn schedule(
        &self,
        now: Timestamp,
        after: Option<&Rollout>,
        owner: Option<&Rollout>,
    ) -> Schedule {
        if !self.is_scheduled() {
            return Schedule::None;
        }
        let mut waits = Vec::new();
        let mut reasons = Vec::new();
        if let Some(at) = self.start_at {
            if now < at {
                waits.push(Wait::StartsAt(at));
            } else {
                reasons.push(format!("scheduled for {at}"));
            }
        }
        if let Some(name) = self.plan.after.as_ref().map(|after| &after.name) {
            match after.map(|other| (other, other.status())) {
                Some((other, Status::Completed)) => {
                    reasons.push(format!("after {name} ({}) completed", other.id()));
                }
                Some((other, status @ (Status::Aborted | Status::RolledBack))) => {
                    return Schedule::Blocked(Blocked {
                        after: name.clone(),
                        id: Some(other.id().to_owned()),
                        state: Some(status.name()),
                    });
                }
                Some((other, status)) => waits.push(Wait::After {
                    name: name.clone(),
                    id: other.id().to_owned(),
                    state: status.name(),
                }),
                None => {
                    return Schedule::Blocked(Blocked {
                        after: name.clone(),
                        id: None,
                        state: None,
                    })
                }
            }
        }
        if let Some(owner) = owner {
            waits.push(Wait::Behind {
                id: owner.id().to_owned(),
                name: owner.plan().name.clone(),
            });
        }
        if waits.is_empty() {
            Schedule::Due {
                reason: reasons.join(", "),
            }
        } else {
            Schedule::Queued(waits)
        }
    }

    /// Starts a due scheduled rollout (see [`Rollout::schedule`]): the
    /// `started` event has no actor, sluice started it, and says `reason`.
    /// Refused (changing nothing) unless the rollout is pending.
    pub fn start_scheduled(&mut self, now: Timestamp, reason: String) -> Fed {
        self.handle(now, Input::ScheduledStart { reason }).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::parse_plan;
    use crate::rollout::{Action, EventKind, Rejected};

    fn plan(name: &str, after: Option<&str>) -> crate::plan::Plan {
        let after = after.map_or(String::new(), |after| format!("after: {after}\n"));
        parse_plan(&format!(
            "name: {name}\ncomponent: c\nversion: \"2\"\n{after}stages: [{{ percent: 100 }}]\n"
        ))
        .expect("plan")
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("time")
    }

    fn act(rollout: &mut Rollout, now: Timestamp, action: Action) {
        let input = Input::Action {
            action,
            actor: "op".to_owned(),
            reason: "test".to_owned(),
        };
        rollout.handle(now, input).expect("action");
    }

    #[test]
    fn a_start_time_is_due_at_that_time_and_not_before() {
        let mut rollout = Rollout::new("r-1".to_owned(), plan("a", None), at(0));
        assert_eq!(rollout.schedule(at(5), None, None), Schedule::None);
        rollout.set_start_at(Some(at(100)));
        assert!(rollout.is_scheduled());
        assert_eq!(
            rollout.schedule(at(99), None, None),
            Schedule::Queued(vec![Wait::StartsAt(at(100))])
        );
        let due = rollout.schedule(at(100), None, None);
        assert_eq!(
            due,
            Schedule::Due {
                reason: "scheduled for 1970-01-01T00:01:40Z".to_owned()
            }
        );
        let Schedule::Due { reason } = due else {
            unreachable!()
        };
        let fed = rollout.start_scheduled(at(100), reason.clone());
        assert_eq!(fed.rejected, None);
        let started = &fed.outcome.events[0];
        assert_eq!(started.actor, None);
        assert_eq!(started.kind, EventKind::Started { reason });
        assert!(!rollout.is_scheduled());
        assert_eq!(rollout.schedule(at(200), None, None), Schedule::None);
        // Started already: a second scheduled start is refused.
        let again = rollout.start_scheduled(at(200), "again".to_owned());
        assert!(matches!(
            again.rejected,
            Some(Rejected::InvalidAction {
                action: Action::Start,
                ..
            })
        ));
    }

    #[test]
    fn after_waits_for_completion_and_is_blocked_by_a_rollback_or_an_abort() {
        let mut first = Rollout::new("r-1".to_owned(), plan("a", None), at(0));
        let second = Rollout::new("r-2".to_owned(), plan("b", Some("a")), at(0));
        assert!(second.is_scheduled());
        assert_eq!(
            second.schedule(at(1), Some(&first), None),
            Schedule::Queued(vec![Wait::After {
                name: "a".to_owned(),
                id: "r-1".to_owned(),
                state: "pending"
            }])
        );
        // No host: starting completes it at once.
        act(&mut first, at(2), Action::Start);
        assert_eq!(first.status(), &Status::Completed);
        assert_eq!(
            second.schedule(at(3), Some(&first), None),
            Schedule::Due {
                reason: "after a (r-1) completed".to_owned()
            }
        );

        let mut aborted = Rollout::new("r-3".to_owned(), plan("a", None), at(0));
        act(&mut aborted, at(1), Action::Abort);
        let blocked = second.schedule(at(3), Some(&aborted), None);
        let Schedule::Blocked(why) = blocked else {
            panic!("expected blocked, got {blocked:?}")
        };
        assert_eq!(why.to_string(), "after a (r-3), which was aborted");
        let missing = second.schedule(at(3), None, None);
        assert!(
            matches!(&missing, Schedule::Blocked(why) if why.to_string() == "after a, which does not exist"),
            "{missing:?}"
        );
    }

    #[test]
    fn both_must_hold_and_an_owner_queues_it() {
        let mut first = Rollout::new("r-1".to_owned(), plan("a", None), at(0));
        act(&mut first, at(1), Action::Start);
        let mut second = Rollout::new("r-2".to_owned(), plan("b", Some("a")), at(0));
        second.set_start_at(Some(at(50)));
        // Completed, but the time has not come.
        assert_eq!(
            second.schedule(at(10), Some(&first), None),
            Schedule::Queued(vec![Wait::StartsAt(at(50))])
        );
        let owner = Rollout::new("r-9".to_owned(), plan("z", None), at(0));
        let queued = second.schedule(at(60), Some(&first), Some(&owner));
        assert_eq!(
            queued,
            Schedule::Queued(vec![Wait::Behind {
                id: "r-9".to_owned(),
                name: "z".to_owned()
            }])
        );
        let Schedule::Queued(waits) = queued else {
            unreachable!()
        };
        assert_eq!(
            waits[0].to_string(),
            "behind r-9 (z), which changes the same hosts"
        );
        assert_eq!(
            second.schedule(at(60), Some(&first), None),
            Schedule::Due {
                reason: "scheduled for 1970-01-01T00:00:50Z, after a (r-1) completed".to_owned()
            }
        );
        // An abort by hand ends the schedule.
        act(&mut second, at(61), Action::Abort);
        assert_eq!(second.schedule(at(62), Some(&first), None), Schedule::None);
    }
}
