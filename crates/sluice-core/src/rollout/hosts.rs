//! The rollout's host table, built for a million hosts: compact per-host
//! records indexed by id, the strata with their waiting hosts in rank order,
//! the order in which strata get the next free slot, and the in-flight queue
//! ordered by instruction time.
//!
//! Costs: placing a host is O(log n); admitting one is O(log n + log s) for s
//! strata; finding timed-out hosts looks only at the front of the in-flight
//! queue; nothing here scans every host except [`HostTable::admitted`] (used
//! once, by a rollback) and snapshots.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};
use jiff::Timestamp;

use crate::percent::Percent;
use crate::selection::{stage_quota, StratumKey};

use super::model::{HostCounts, HostState, Verdict, Wait};

/// What [`HostTable::take_best`] found in a stratum.
enum Taken {
    Host(u32),
    /// No host let in; why, if the check skipped some.
    None(Option<Wait>),
    /// The check stopped the search.
    Stopped(Wait),
}

/// An interned version string: agents report a handful of distinct versions,
/// so each record holds 4 bytes instead of a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct VersionId(u32);

#[derive(Debug, Clone, Default)]
struct Versions {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, VersionId>,
}

impl Versions {
    fn intern(&mut self, version: &str) -> VersionId {
        if let Some(id) = self.ids.get(version) {
            return *id;
        }
        let id = VersionId(self.names.len() as u32);
        self.names.push(version.into());
        self.ids.insert(version.into(), id);
        id
    }

    fn name(&self, id: VersionId) -> &str {
        &self.names[id.0 as usize]
    }
}

/// One host taking part in the rollout.
#[derive(Debug, Clone)]
pub(super) struct HostRecord {
    pub id: Arc<str>,
    pub rank: u64,
    pub stratum: u32,
    /// The version it last reported.
    pub version: Option<VersionId>,
    /// The version it reported before admission.
    pub previous: Option<VersionId>,
    pub admitted_stage: Option<u32>,
    pub state: HostState,
}

impl HostRecord {
    pub fn admitted(&self) -> bool {
        self.admitted_stage.is_some()
    }
}

/// One distinct combination of `spread` label values.
#[derive(Debug, Clone)]
pub(super) struct Stratum {
    pub key: StratumKey,
    pub size: u64,
    pub admitted: u64,
    pub healthy: u64,
    pub failed: u64,
    /// Hosts not admitted yet, best rank first: (rank, host index). Equal
    /// ranks are ordered by id when taken (see [`HostTable::take_best`]).
    waiting: BTreeSet<(u64, u32)>,
}

/// A stratum short of its quota, ordered so that the first is the one
/// furthest behind: lowest admitted/quota ratio, ties by key.
#[derive(Debug, Clone)]
struct Behind {
    admitted: u64,
    quota: u64,
    key: StratumKey,
    stratum: u32,
}

impl Ord for Behind {
    fn cmp(&self, other: &Self) -> Ordering {
        // admitted/quota < other.admitted/other.quota, in integers; quotas
        // are never 0 here (a stratum at quota 0 is never behind).
        let left = u128::from(self.admitted) * u128::from(other.quota);
        let right = u128::from(other.admitted) * u128::from(self.quota);
        left.cmp(&right)
            .then_with(|| self.key.cmp(&other.key))
            .then_with(|| self.stratum.cmp(&other.stratum))
    }
}

impl PartialOrd for Behind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Behind {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Behind {}

/// The stage whose quotas admission works toward.
#[derive(Debug, Clone, Copy)]
struct StageTarget {
    index: u32,
    percent: Percent,
    min_per_stratum: u64,
}

#[derive(Debug, Clone)]
pub(super) struct HostTable {
    records: Vec<HostRecord>,
    index: HashMap<Arc<str>, u32>,
    versions: Versions,
    target: VersionId,
    strata: Vec<Stratum>,
    strata_index: HashMap<StratumKey, u32>,
    stage: Option<StageTarget>,
    /// Strata with fewer admitted hosts than the stage's quota.
    behind: BTreeSet<Behind>,
    /// Sum over strata of the stage's quota.
    quota_total: u64,
    tally: Tally,
}

impl HostTable {
    pub fn new(target: &str) -> HostTable {
        let mut versions = Versions::default();
        let target = versions.intern(target);
        HostTable {
            records: Vec::new(),
            index: HashMap::new(),
            versions,
            target,
            strata: Vec::new(),
            strata_index: HashMap::new(),
            stage: None,
            behind: BTreeSet::new(),
            quota_total: 0,
            tally: Tally::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn record(&self, host: u32) -> &HostRecord {
        &self.records[host as usize]
    }

    pub fn records(&self) -> &[HostRecord] {
        &self.records
    }

    pub fn strata(&self) -> &[Stratum] {
        &self.strata
    }

    pub fn counts(&self) -> HostCounts {
        self.tally.counts
    }

    pub fn is_target(&self, version: &str) -> bool {
        self.versions.name(self.target) == version
    }

    /// The stratum for `key`, created empty on first use.
    pub fn stratum_for(&mut self, key: StratumKey) -> u32 {
        if let Some(index) = self.strata_index.get(&key) {
            return *index;
        }
        let index = self.strata.len() as u32;
        self.strata_index.insert(key.clone(), index);
        self.strata.push(Stratum {
            key,
            size: 0,
            admitted: 0,
            healthy: 0,
            failed: 0,
            waiting: BTreeSet::new(),
        });
        index
    }

    /// Adds a host to the table (the caller checked the id is new). An
    /// admitted host (restored from a snapshot) counts toward its stratum's
    /// admissions; any other is waiting.
    pub fn insert(&mut self, mut record: HostRecord) -> u32 {
        let host = self.records.len() as u32;
        let s = record.stratum;
        let old_quota = self.quota(s);
        let stratum = &mut self.strata[s as usize];
        stratum.size += 1;
        if record.admitted() {
            stratum.admitted += 1;
        } else {
            record.state = HostState::Waiting;
            stratum.waiting.insert((record.rank, host));
        }
        self.index.insert(Arc::clone(&record.id), host);
        self.tally
            .account(stratum, (record.rank, host), &record.state, true);
        self.records.push(record);
        self.requota(s, old_quota);
        host
    }

    pub fn intern(&mut self, version: &str) -> VersionId {
        self.versions.intern(version)
    }

    pub fn set_version(&mut self, host: u32, version: &str) {
        let id = self.versions.intern(version);
        self.records[host as usize].version = Some(id);
    }

    /// Changes a host's state, keeping the counts, the per-stratum counts and
    /// the in-flight queue. Returns whether the state changed.
    pub fn set_state(&mut self, host: u32, state: HostState) -> bool {
        let record = &mut self.records[host as usize];
        if record.state == state {
            return false;
        }
        let old = std::mem::replace(&mut record.state, state);
        let stratum = &mut self.strata[record.stratum as usize];
        let key = (record.rank, host);
        self.tally.account(stratum, key, &old, false);
        self.tally.account(stratum, key, &record.state, true);
        true
    }

    /// Sets the stage whose quotas admission works toward (`None`: no stage).
    pub fn set_stage(&mut self, stage: Option<(usize, Percent, u64)>) {
        self.stage = stage.map(|(index, percent, min_per_stratum)| StageTarget {
            index: index as u32,
            percent,
            min_per_stratum,
        });
        self.behind.clear();
        self.quota_total = 0;
        for s in 0..self.strata.len() as u32 {
            let quota = self.quota(s);
            self.quota_total += quota;
            self.mark_behind(s, quota);
        }
    }

    /// The quota of stratum `s` at the current stage (0 without one).
    pub fn quota(&self, s: u32) -> u64 {
        match self.stage {
            Some(stage) => stage_quota(
                stage.percent,
                self.strata[s as usize].size,
                stage.min_per_stratum,
            ),
            None => 0,
        }
    }

    /// The stage's quota across strata.
    pub fn quota_total(&self) -> u64 {
        self.quota_total
    }

    /// Hosts admitted so far, in every stratum.
    pub fn admitted_total(&self) -> u64 {
        self.tally.counts.admitted()
    }

    pub fn in_flight(&self) -> u64 {
        self.tally.in_flight.len() as u64
    }

    /// The host instructed longest ago.
    pub fn oldest_in_flight(&self) -> Option<(Timestamp, u32)> {
        let (since, _, host) = self.tally.in_flight.first()?;
        Some((*since, *host))
    }

    /// Every stratum has its quota admitted and no host is in flight.
    pub fn settled(&self) -> bool {
        self.behind.is_empty() && self.tally.in_flight.is_empty()
    }

    /// Whether some stratum is short of its quota at the current stage.
    pub fn behind_quota(&self) -> bool {
        !self.behind.is_empty()
    }

    /// Admits, instructing it at `now`, the best-ranked waiting host of the
    /// stratum furthest behind its quota that `check` lets in. A stratum
    /// whose waiting hosts `check` all skips gives its turn to the next one;
    /// `Ok(None)` when every stratum is at quota (or none has a host
    /// `check` lets in and it named no reason), `Err` with the reason when
    /// `check` stopped, or skipped every host it was shown.
    pub fn admit_next(
        &mut self,
        now: Timestamp,
        check: &mut dyn FnMut(&str) -> Verdict,
    ) -> Result<Option<u32>, Wait> {
        let Some(stage) = self.stage else {
            return Ok(None);
        };
        let mut aside = Vec::new();
        let mut skipped = None;
        let taken = loop {
            let Some(entry) = self.behind.pop_first() else {
                break match skipped {
                    Some(wait) => Err(wait),
                    None => Ok(None),
                };
            };
            match self.take_best(entry.stratum, check) {
                Taken::Host(host) => break Ok(Some((entry, host))),
                Taken::None(wait) => {
                    skipped = skipped.or(wait);
                    aside.push(entry);
                }
                Taken::Stopped(wait) => {
                    aside.push(entry);
                    break Err(wait);
                }
            }
        };
        self.behind.extend(aside);
        let Some((mut entry, host)) = taken? else {
            return Ok(None);
        };
        let s = entry.stratum;
        self.strata[s as usize].admitted += 1;
        entry.admitted += 1;
        if entry.admitted < entry.quota {
            self.behind.insert(entry);
        }
        let record = &mut self.records[host as usize];
        record.admitted_stage = Some(stage.index);
        record.previous = record.version;
        self.set_state(host, HostState::Instructed { since: now });
        Ok(Some(host))
    }

    /// Removes from stratum `s`'s waiting set its best-ranked host that
    /// `check` lets in: lowest rank, ties (astronomically rare) by id.
    fn take_best(&mut self, s: u32, check: &mut dyn FnMut(&str) -> Verdict) -> Taken {
        let waiting = &self.strata[s as usize].waiting;
        let mut skipped = None;
        let mut hosts = waiting.iter().peekable();
        let mut tied = Vec::new();
        let found = 'search: loop {
            let Some(&(rank, first)) = hosts.next() else {
                break None;
            };
            tied.clear();
            tied.push(first);
            while let Some(&&(next_rank, next)) = hosts.peek() {
                if next_rank != rank {
                    break;
                }
                tied.push(next);
                hosts.next();
            }
            if tied.len() > 1 {
                tied.sort_unstable_by(|a, b| {
                    self.records[*a as usize]
                        .id
                        .cmp(&self.records[*b as usize].id)
                });
            }
            for &host in &tied {
                match check(&self.records[host as usize].id) {
                    Verdict::Admit => break 'search Some((rank, host)),
                    Verdict::Skip(wait) => skipped = skipped.or(Some(wait)),
                    Verdict::Stop(wait) => return Taken::Stopped(wait),
                }
            }
        };
        match found {
            Some(key) => {
                self.strata[s as usize].waiting.remove(&key);
                Taken::Host(key.1)
            }
            None => Taken::None(skipped),
        }
    }

    /// Updates stratum `s`'s place among the strata behind after its size
    /// changed, its quota having been `old_quota`.
    fn requota(&mut self, s: u32, old_quota: u64) {
        let quota = self.quota(s);
        if quota == old_quota {
            return;
        }
        let stratum = &self.strata[s as usize];
        self.behind.remove(&Behind {
            admitted: stratum.admitted,
            quota: old_quota,
            key: stratum.key.clone(),
            stratum: s,
        });
        self.quota_total = self.quota_total - old_quota + quota;
        self.mark_behind(s, quota);
    }

    fn mark_behind(&mut self, s: u32, quota: u64) {
        let stratum = &self.strata[s as usize];
        if stratum.admitted < quota {
            self.behind.insert(Behind {
                admitted: stratum.admitted,
                quota,
                key: stratum.key.clone(),
                stratum: s,
            });
        }
    }

    /// Every admitted host, in table order.
    /// Admitted hosts by id: an order that follows from the hosts alone, not
    /// from when the table learnt of them (a restored table learns in
    /// another order).
    pub fn admitted(&self) -> Vec<u32> {
        let mut admitted: Vec<u32> = (0..self.records.len() as u32)
            .filter(|&host| self.records[host as usize].admitted())
            .collect();
        admitted.sort_unstable_by(|a, b| {
            self.records[*a as usize]
                .id
                .cmp(&self.records[*b as usize].id)
        });
        admitted
    }

    /// Up to `count` waiting hosts of stratum `s` that admission takes
    /// last: worst rank first, equal ranks by id, the greatest first (the
    /// reverse of [`HostTable::take_best`]'s order).
    pub fn worst_waiting(&self, s: u32, count: usize) -> Vec<u32> {
        let waiting = &self.strata[s as usize].waiting;
        let mut worst: Vec<(u64, u32)> = Vec::with_capacity(count);
        for &(rank, host) in waiting.iter().rev() {
            // Past `count`, only hosts tied with the last one taken matter.
            if worst.len() >= count && worst.last().is_none_or(|&(last, _)| last != rank) {
                break;
            }
            worst.push((rank, host));
        }
        worst.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| (self.records[b.1 as usize].id).cmp(&self.records[a.1 as usize].id))
        });
        worst.truncate(count);
        worst.into_iter().map(|(_, host)| host).collect()
    }

    /// Resolves an interned version for display or comparison.
    pub fn version_of(&self, version: Option<VersionId>) -> Option<&str> {
        version.map(|id| self.versions.name(id))
    }
}

/// The table's counts by state and its in-flight queue, kept in step with
/// every host's state.
#[derive(Debug, Clone, Default)]
struct Tally {
    counts: HostCounts,
    /// Instructed hosts by instruction time, oldest first, then by rank
    /// (then by index, for two ids of equal rank): an order that follows
    /// from the hosts alone, not from when the table learnt of them, so a
    /// table restored in another order times hosts out in the same order.
    in_flight: BTreeSet<(Timestamp, u64, u32)>,
}

impl Tally {
    /// Adds (or removes) a host (its rank and index) in `state` to the
    /// counts, its stratum's counts and the in-flight queue.
    fn account(
        &mut self,
        stratum: &mut Stratum,
        (rank, host): (u64, u32),
        state: &HostState,
        add: bool,
    ) {
        let step = |n: &mut u64| {
            if add {
                *n += 1;
            } else {
                *n -= 1;
            }
        };
        step(self.counts.slot(state));
        match state {
            HostState::Healthy => step(&mut stratum.healthy),
            HostState::Failed { .. } => step(&mut stratum.failed),
            HostState::Instructed { since } => {
                if add {
                    self.in_flight.insert((*since, rank, host));
                } else {
                    self.in_flight.remove(&(*since, rank, host));
                }
            }
            _ => {}
        }
    }
}
