//! Admission across rollouts: the fleet-wide change budget and one change
//! per host at a time.
//!
//! Each rollout on its own admits within its plan; several rollouts of
//! several teams on one fleet could still change too much of it at once, or
//! change one host twice at once. The [`Arbiter`] decides, host by host,
//! for every rollout handed to it ([`Rollout::set_arbitrated`]):
//!
//! - **Budget.** With a [`Budget`], at most `max_in_flight` of the fleet's
//!   hosts are in flight (instructed, not yet healthy) at once, across all
//!   rollouts, and with `per_stratum` at most that share of each stratum
//!   of the fleet (the distinct values of the budget's `spread` labels). A
//!   host in flight for two rollouts counts once.
//! - **One change per host.** A host in flight (instructed or reverting)
//!   for an exclusive rollout (the default; a plan says `exclusive:
//!   false` for harmless changes) is admitted by no other exclusive
//!   rollout until that change settled: healthy, failed or reverted.
//! - **Pins.** A host pinned to a version of the rollout's component is
//!   admitted by none of its rollouts while the pin lasts.
//! - **Fairness.** Hosts are handed out one at a time to the rollout that
//!   has waited longest: a rollout that is given a host goes to the back of
//!   the line, one that is refused keeps its place. So no rollout starves
//!   another; each wants only what its own plan allows, and every host in
//!   flight settles (healthy, failed, or past its `host_timeout`), freeing
//!   its share of the budget.
//!
//! A rollout refused now records what it waits for ([`Rollout::waiting`]:
//! `waiting for fleet budget`), with an event when the wait begins and when
//! it ends. A refused rollout is not held: its hosts in flight, its timers
//! and its gates go on.
//!
//! Pure like the rest of the crate: the caller (the server's world, or a
//! simulation) owns the rollouts and the fleet, feeds every [`HostChange`]
//! of an arbitrated rollout to [`Arbiter::observe`], and calls
//! [`Arbiter::arbitrate`] after each change.

use std::borrow::{Borrow, BorrowMut};
use std::collections::BTreeSet;
use std::fmt;

use foldhash::HashMap;
use jiff::Timestamp;

use crate::fleet::Labels;
use crate::percent::Amount;
use crate::rollout::{Admission, HostChange, HostState, Outcome, Rollout, Verdict, Wait};
use crate::selection::StratumKey;

/// The fleet-wide change budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Hosts in flight at once across all rollouts: a count, or a share of
    /// the fleet (rounded up, at least 1).
    pub max_in_flight: Amount,
    /// Hosts in flight at once in any one stratum of the fleet: a count, or
    /// a share of the stratum (rounded up, at least 1).
    pub per_stratum: Option<Amount>,
    /// The labels whose distinct values make the fleet's strata.
    pub spread: Vec<String>,
}

impl Budget {
    /// The most hosts in flight at once in a fleet of `fleet` hosts.
    pub fn limit(&self, fleet: u64) -> u64 {
        self.max_in_flight.resolve(fleet).max(1)
    }

    /// The most hosts in flight at once in a stratum of `size` hosts, if
    /// the budget limits strata.
    pub fn stratum_limit(&self, size: u64) -> Option<u64> {
        self.per_stratum.map(|amount| amount.resolve(size).max(1))
    }
}

impl fmt::Display for Budget {
    /// `2% of the fleet in flight, 10% of each role,site stratum`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of the fleet in flight", self.max_in_flight)?;
        if let Some(per_stratum) = self.per_stratum {
            let spread = if self.spread.is_empty() {
                "(all)".to_owned()
            } else {
                self.spread.join(",")
            };
            write!(f, ", {per_stratum} of each {spread} stratum")?;
        }
        Ok(())
    }
}

/// Hosts in flight against the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// Hosts instructed (not yet healthy) in some arbitrated rollout.
    pub in_flight: u64,
    /// The budget's limit for the fleet as it is; `None` without a budget.
    pub limit: Option<u64>,
    /// With a per-stratum budget, every stratum of the fleet, by key.
    pub strata: Vec<StratumUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StratumUsage {
    pub key: StratumKey,
    pub size: u64,
    pub in_flight: u64,
    pub limit: u64,
}

/// One rollout's change in flight on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    rollout: usize,
    exclusive: bool,
    /// Instructed (counts against the budget); else reverting.
    instructed: bool,
}

/// A host with a change in flight.
#[derive(Debug, Clone, Default)]
struct Busy {
    changes: Vec<Change>,
    /// The fleet stratum it counts in, while instructed and the budget
    /// limits strata: fixed when it began, so that a host relabelled in
    /// flight is counted out of the stratum it was counted in.
    stratum: Option<StratumKey>,
}

impl Busy {
    fn instructed(&self) -> bool {
        self.changes.iter().any(|change| change.instructed)
    }
}

/// A fleet stratum's hosts and hosts in flight.
#[derive(Debug, Clone, Copy, Default)]
struct Stratum {
    size: u64,
    in_flight: u64,
}

/// The arbiter's view of the fleet: each host's labels, by id.
pub type LabelsOf<'a> = &'a dyn Fn(&str) -> Option<Labels>;

/// Whether a host is pinned to a version of a component: (host, component).
pub type PinnedOf<'a> = &'a dyn Fn(&str, &str) -> bool;

/// Decides admissions across rollouts (see the module's rules).
#[derive(Debug, Clone, Default)]
pub struct Arbiter {
    budget: Option<Budget>,
    /// Hosts with a change in flight, by id.
    busy: HashMap<String, Busy>,
    /// Hosts instructed in some rollout.
    in_flight: u64,
    /// With a per-stratum budget, the fleet's strata.
    strata: HashMap<StratumKey, Stratum>,
    /// Each rollout's place in line while it wants hosts (lower first), by
    /// its index.
    turns: Vec<Option<u64>>,
    next_turn: u64,
}

impl Arbiter {
    pub fn new() -> Arbiter {
        Arbiter::default()
    }

    pub fn budget(&self) -> Option<&Budget> {
        self.budget.as_ref()
    }

    /// Sets (or, `None`, lifts) the budget; `fleet` is every host's labels,
    /// counted into the budget's strata.
    pub fn set_budget<'a>(
        &mut self,
        budget: Option<Budget>,
        fleet: impl IntoIterator<Item = &'a Labels>,
        labels_of: LabelsOf<'_>,
    ) {
        self.budget = budget;
        self.strata.clear();
        let Some(spread) = self.strata_spread().map(<[String]>::to_vec) else {
            for busy in self.busy.values_mut() {
                busy.stratum = None;
            }
            return;
        };
        for labels in fleet {
            self.strata
                .entry(StratumKey::of(&spread, labels))
                .or_default()
                .size += 1;
        }
        for (id, busy) in &mut self.busy {
            busy.stratum = None;
            if busy.instructed() {
                let key = StratumKey::of(&spread, &labels_of(id).unwrap_or_default());
                self.strata.entry(key.clone()).or_default().in_flight += 1;
                busy.stratum = Some(key);
            }
        }
    }

    /// The spread of the budget's strata, when it limits strata.
    fn strata_spread(&self) -> Option<&[String]> {
        let budget = self.budget.as_ref()?;
        budget.per_stratum.map(|_| budget.spread.as_slice())
    }

    /// A host joined the fleet (`old` `None`), or was relabelled from
    /// `old` to `new`.
    pub fn host_labels(&mut self, old: Option<&Labels>, new: &Labels) {
        let Some(spread) = self.strata_spread().map(<[String]>::to_vec) else {
            return;
        };
        if let Some(old) = old {
            let key = StratumKey::of(&spread, old);
            if let Some(stratum) = self.strata.get_mut(&key) {
                stratum.size = stratum.size.saturating_sub(1);
            }
        }
        self.strata
            .entry(StratumKey::of(&spread, new))
            .or_default()
            .size += 1;
    }

    /// Forgets every change in flight and counts them again from the
    /// rollouts (at start), and lines up the rollouts waiting, longest
    /// waiting first (their waits are part of their stored state).
    pub fn rebuild<R: Borrow<Rollout>>(&mut self, rollouts: &[R], labels_of: LabelsOf<'_>) {
        self.busy.clear();
        self.in_flight = 0;
        for stratum in self.strata.values_mut() {
            stratum.in_flight = 0;
        }
        let mut changes = Vec::new();
        for (index, rollout) in rollouts.iter().enumerate() {
            let rollout = rollout.borrow();
            if !rollout.is_arbitrated() || !rollout.listens() {
                continue;
            }
            changes.clear();
            changes.extend(
                rollout
                    .hosts()
                    .filter(|host| {
                        matches!(
                            host.state,
                            HostState::Instructed { .. } | HostState::Reverting
                        )
                    })
                    .map(|host| HostChange {
                        id: host.id.to_owned(),
                        state: host.state.clone(),
                    }),
            );
            self.observe(index, rollout, &changes, labels_of);
        }
        let mut waiting: Vec<(Timestamp, usize)> = rollouts
            .iter()
            .enumerate()
            .filter_map(|(index, rollout)| Some((rollout.borrow().waiting()?.since, index)))
            .collect();
        waiting.sort();
        self.turns = vec![None; rollouts.len()];
        self.next_turn = 0;
        for (_, index) in waiting {
            self.turns[index] = Some(self.next_turn);
            self.next_turn += 1;
        }
    }

    /// Takes note of what changed for the hosts of rollout `index`: every
    /// host state change of every outcome of an arbitrated rollout, in
    /// order, must come through here.
    pub fn observe(
        &mut self,
        index: usize,
        rollout: &Rollout,
        changes: &[HostChange],
        labels_of: LabelsOf<'_>,
    ) {
        let exclusive = rollout.plan().exclusive;
        let spread = self.strata_spread().map(<[String]>::to_vec);
        for change in changes {
            let instructed = match change.state {
                HostState::Instructed { .. } => Some(true),
                HostState::Reverting => Some(false),
                _ => None,
            };
            if instructed.is_none() && !self.busy.contains_key(change.id.as_str()) {
                continue;
            }
            let busy = self.busy.entry(change.id.clone()).or_default();
            let was_instructed = busy.instructed();
            busy.changes.retain(|change| change.rollout != index);
            if let Some(instructed) = instructed {
                busy.changes.push(Change {
                    rollout: index,
                    exclusive,
                    instructed,
                });
            }
            let now_instructed = busy.instructed();
            if now_instructed && !was_instructed {
                self.in_flight += 1;
                if let Some(spread) = &spread {
                    let labels = labels_of(&change.id).unwrap_or_default();
                    let key = StratumKey::of(spread, &labels);
                    self.strata.entry(key.clone()).or_default().in_flight += 1;
                    busy.stratum = Some(key);
                }
            } else if was_instructed && !now_instructed {
                self.in_flight -= 1;
                if let Some(key) = busy.stratum.take() {
                    if let Some(stratum) = self.strata.get_mut(&key) {
                        stratum.in_flight = stratum.in_flight.saturating_sub(1);
                    }
                }
            }
            if busy.changes.is_empty() {
                self.busy.remove(change.id.as_str());
            }
        }
    }

    /// Whether rollout `index` (exclusive or not, changing `component`)
    /// may admit `host` now, in a fleet whose budget allows `limit` hosts
    /// in flight.
    #[allow(clippy::too_many_arguments)]
    fn verdict(
        &self,
        index: usize,
        exclusive: bool,
        component: &str,
        host: &str,
        limit: Option<u64>,
        labels_of: LabelsOf<'_>,
        pinned: PinnedOf<'_>,
    ) -> Verdict {
        if pinned(host, component) {
            return Verdict::Skip(Wait::HostsBusy);
        }
        let busy = self.busy.get(host);
        let changes = busy.map_or(&[][..], |busy| busy.changes.as_slice());
        if exclusive
            && changes
                .iter()
                .any(|change| change.rollout != index && change.exclusive)
        {
            return Verdict::Skip(Wait::HostsBusy);
        }
        if busy.is_some_and(Busy::instructed) {
            // Already counted against the budget.
            return Verdict::Admit;
        }
        let Some(limit) = limit else {
            return Verdict::Admit;
        };
        if self.in_flight >= limit {
            return Verdict::Stop(Wait::FleetBudget);
        }
        if let (Some(budget), Some(spread)) = (&self.budget, self.strata_spread()) {
            let key = StratumKey::of(spread, &labels_of(host).unwrap_or_default());
            let stratum = self.strata.get(&key).copied().unwrap_or_default();
            let stratum_limit = budget.stratum_limit(stratum.size).unwrap_or(u64::MAX);
            if stratum.in_flight >= stratum_limit {
                return Verdict::Skip(Wait::FleetBudget);
            }
        }
        Verdict::Admit
    }

    /// Hands out hosts to the arbitrated rollouts that want some, one at a
    /// time, the rollout that waited longest first, as far as the budget,
    /// the hosts in flight and the pins allow; then records on each what
    /// it waits for. `fleet` is the number of hosts in the fleet. Returns
    /// what changed, by rollout index (admissions, and the events of waits
    /// beginning or ending), in the order it happened.
    pub fn arbitrate<R: BorrowMut<Rollout>>(
        &mut self,
        now: Timestamp,
        fleet: u64,
        rollouts: &mut [R],
        labels_of: LabelsOf<'_>,
        pinned: PinnedOf<'_>,
    ) -> Vec<(usize, Outcome)> {
        let limit = self.budget.as_ref().map(|budget| budget.limit(fleet));
        self.turns.resize(rollouts.len(), None);
        let mut line = BTreeSet::new();
        for (index, rollout) in rollouts.iter().enumerate() {
            let rollout = rollout.borrow();
            if !rollout.is_arbitrated() || !rollout.wants_hosts() {
                self.turns[index] = None;
                continue;
            }
            let turn = *self.turns[index].get_or_insert_with(|| {
                self.next_turn += 1;
                self.next_turn
            });
            line.insert((turn, index));
        }
        let mut blocked: Vec<Option<Wait>> = vec![None; rollouts.len()];
        let mut changed: Vec<(usize, Outcome)> = Vec::new();
        while let Some((_, index)) = line.pop_first() {
            let rollout = rollouts[index].borrow_mut();
            let exclusive = rollout.plan().exclusive;
            let component = rollout.plan().component.clone();
            let admission = rollout.admit_one(now, &mut |host| {
                self.verdict(index, exclusive, &component, host, limit, labels_of, pinned)
            });
            match admission {
                Admission::Admitted(outcome) => {
                    self.observe(index, rollout, &outcome.hosts, labels_of);
                    push(&mut changed, index, outcome);
                    self.next_turn += 1;
                    self.turns[index] = Some(self.next_turn);
                    if rollout.wants_hosts() {
                        line.insert((self.next_turn, index));
                    }
                }
                Admission::Blocked(wait) => blocked[index] = Some(wait),
                Admission::Nothing => {}
            }
        }
        for (index, rollout) in rollouts.iter_mut().enumerate() {
            let rollout = rollout.borrow_mut();
            if !rollout.is_arbitrated() {
                continue;
            }
            let wait = if rollout.wants_hosts() {
                blocked[index]
            } else {
                self.turns[index] = None;
                None
            };
            let outcome = rollout.set_waiting(now, wait);
            if !outcome.is_empty() {
                push(&mut changed, index, outcome);
            }
        }
        changed
    }

    /// Hosts in flight against the budget, in a fleet of `fleet` hosts.
    pub fn usage(&self, fleet: u64) -> Usage {
        let mut strata: Vec<StratumUsage> = match &self.budget {
            Some(budget) if budget.per_stratum.is_some() => self
                .strata
                .iter()
                .filter(|(_, stratum)| stratum.size > 0 || stratum.in_flight > 0)
                .map(|(key, stratum)| StratumUsage {
                    key: key.clone(),
                    size: stratum.size,
                    in_flight: stratum.in_flight,
                    limit: budget.stratum_limit(stratum.size).unwrap_or(u64::MAX),
                })
                .collect(),
            _ => Vec::new(),
        };
        strata.sort_by(|a, b| a.key.cmp(&b.key));
        Usage {
            in_flight: self.in_flight,
            limit: self.budget.as_ref().map(|budget| budget.limit(fleet)),
            strata,
        }
    }

    /// Whether `host` has a change in flight (instructed or reverting) for
    /// an arbitrated rollout.
    pub fn is_busy(&self, host: &str) -> bool {
        self.busy.contains_key(host)
    }
}

/// Appends `outcome` to what changed for rollout `index`, merging with its
/// previous entry when it is the last one.
fn push(changed: &mut Vec<(usize, Outcome)>, index: usize, outcome: Outcome) {
    match changed.last_mut() {
        Some((last, previous)) if *last == index => previous.absorb(outcome),
        _ => changed.push((index, outcome)),
    }
}
