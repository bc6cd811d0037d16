//! Snapshots: the whole state of a rollout as plain serde data, so that the
//! server can rebuild it after a crash and carry on exactly where it was —
//! same admissions, same quotas, same timers — without admitting beyond a
//! quota. Per-host records are a flat list; the plan is not in the snapshot
//! (the server stores it apart) and must be given back to [`Rollout::restore`].

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::hash;
use crate::plan::Plan;
use crate::selection::StratumKey;

use super::error::RestoreError;
use super::hosts::HostRecord;
use super::model::{Freeze, GateStatus, HoldReason, HostState, Status, Waiting};
use super::Rollout;

/// Everything a rollout knows, but its plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub created_at: Timestamp,
    pub status: Status,
    pub frozen: Option<Freeze>,
    pub hold: Option<HoldReason>,
    /// What it waits for, as an arbiter across rollouts last said: kept so
    /// that the rollout that waited longest is still first after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// When a scheduled rollout starts by itself: kept so that a restart,
    /// or another leader, still starts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Timestamp>,
    /// Host failures counted for each stage.
    pub failures: Vec<u64>,
    /// Failures of the current stage acknowledged by a resume.
    pub failure_baseline: u64,
    pub gates: Vec<GateStatus>,
    /// The strata's keys (the `spread` label values), indexed by
    /// [`SnapshotHost::stratum`].
    pub strata: Vec<Vec<String>>,
    /// Every host taking part, in the order the rollout first saw them.
    pub hosts: Vec<SnapshotHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHost {
    pub id: String,
    /// Index into [`Snapshot::strata`].
    pub stratum: u32,
    pub state: HostState,
    pub version: Option<String>,
    pub previous: Option<String>,
    /// The stage that admitted it; `None` exactly when it is waiting.
    pub admitted_stage: Option<usize>,
}

impl Rollout {
    /// The rollout's state, for storage.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = self.snapshot_header();
        snapshot.hosts = self
            .hosts
            .records()
            .iter()
            .map(|record| self.snapshot_record(record))
            .collect();
        snapshot
    }

    /// The snapshot without its hosts (`hosts` is empty): what changes with
    /// the rollout as a whole, cheap to take after every input. A store that
    /// keeps the header and the per-host records ([`Rollout::snapshot_host`])
    /// apart rebuilds the whole snapshot by putting the records back into
    /// `hosts`; a record's `stratum` indexes the header's `strata`, which
    /// only ever grows, so a header at least as new as every record fits.
    pub fn snapshot_header(&self) -> Snapshot {
        Snapshot {
            id: self.id.clone(),
            created_at: self.created_at,
            status: self.status.clone(),
            frozen: self.frozen.clone(),
            hold: self.hold.clone(),
            waiting: self.waiting,
            start_at: self.start_at,
            failures: self.failures.clone(),
            failure_baseline: self.failure_baseline,
            gates: self.gates(),
            strata: self
                .hosts
                .strata()
                .iter()
                .map(|stratum| stratum.key.0.clone())
                .collect(),
            hosts: Vec::new(),
        }
    }

    /// One host's record of the snapshot, if the host takes part: what to
    /// store for each host an [`super::Outcome`] names.
    pub fn snapshot_host(&self, id: &str) -> Option<SnapshotHost> {
        let host = self.hosts.get(id)?;
        Some(self.snapshot_record(self.hosts.record(host)))
    }

    fn snapshot_record(&self, record: &HostRecord) -> SnapshotHost {
        SnapshotHost {
            id: record.id.to_string(),
            stratum: record.stratum,
            state: record.state.clone(),
            version: self.hosts.version_of(record.version).map(str::to_owned),
            previous: self.hosts.version_of(record.previous).map(str::to_owned),
            admitted_stage: record.admitted_stage.map(|stage| stage as usize),
        }
    }

    /// Rebuilds a rollout of `plan` from its snapshot. Fails, naming what is
    /// wrong, when the snapshot does not fit the plan (another number of
    /// stages or spread labels) or contradicts itself.
    pub fn restore(plan: Plan, snapshot: Snapshot) -> Result<Rollout, RestoreError> {
        Rollout::restore_sharing(plan, snapshot, Arc::from)
    }

    /// [`Rollout::restore`], with each host's id turned into the `Arc<str>`
    /// the rollout keeps by `share`: a caller that holds the ids already
    /// (the server's inventory) hands out its own, so that a million ids
    /// are kept once.
    pub fn restore_sharing(
        plan: Plan,
        snapshot: Snapshot,
        mut share: impl FnMut(String) -> Arc<str>,
    ) -> Result<Rollout, RestoreError> {
        let error = |message: String| RestoreError {
            rollout: snapshot.id.clone(),
            message,
        };
        let stages = plan.stages.len();
        if snapshot.failures.len() != stages {
            return Err(error(format!(
                "the snapshot counts failures for {} stages, the plan has {stages}",
                snapshot.failures.len()
            )));
        }
        if let Some(stage) = snapshot.status.stage().filter(|stage| *stage >= stages) {
            return Err(error(format!(
                "the snapshot is at stage {}, the plan has {stages}",
                stage + 1
            )));
        }
        let spread = plan.strategy.spread.len();
        if let Some(key) = snapshot.strata.iter().find(|key| key.len() != spread) {
            return Err(error(format!(
                "stratum {key:?} has {} label values, the plan spreads over {spread} labels",
                key.len()
            )));
        }
        let mut seen = HashSet::with_capacity(snapshot.hosts.len());
        for host in &snapshot.hosts {
            if !seen.insert(host.id.as_str()) {
                return Err(error(format!("host {} appears twice", host.id)));
            }
            if host.stratum as usize >= snapshot.strata.len() {
                return Err(error(format!(
                    "host {} is in stratum {}, the snapshot has {}",
                    host.id,
                    host.stratum,
                    snapshot.strata.len()
                )));
            }
            if host.admitted_stage.is_some() == (host.state == HostState::Waiting) {
                return Err(error(format!(
                    "host {} is {} with admitted stage {:?}; only waiting hosts have none",
                    host.id,
                    host.state.name(),
                    host.admitted_stage
                )));
            }
            if let Some(stage) = host.admitted_stage.filter(|stage| *stage >= stages) {
                return Err(error(format!(
                    "host {} was admitted at stage {}, the plan has {stages}",
                    host.id,
                    stage + 1
                )));
            }
        }
        drop(seen);

        let mut rollout = Rollout::new(snapshot.id, plan, snapshot.created_at);
        let strata: Vec<u32> = snapshot
            .strata
            .into_iter()
            .map(|key| rollout.hosts.stratum_for(StratumKey(key)))
            .collect();
        for host in snapshot.hosts {
            let version = host.version.map(|v| rollout.hosts.intern(&v));
            let previous = host.previous.map(|v| rollout.hosts.intern(&v));
            rollout.hosts.insert(HostRecord {
                rank: hash::rank(rollout.plan.salt(), &host.id),
                id: share(host.id),
                stratum: strata[host.stratum as usize],
                version,
                previous,
                admitted_stage: host.admitted_stage.map(|stage| stage as u32),
                state: host.state,
            });
        }
        for gate in &mut rollout.gates {
            if let Some(saved) = snapshot.gates.iter().find(|saved| saved.name == gate.name) {
                gate.streak = saved.streak;
                gate.latest = saved.latest.clone();
            }
        }
        if let Some(stage) = snapshot.status.stage() {
            let spec = &rollout.plan.stages[stage];
            let target = (stage, spec.percent, rollout.plan.strategy.min_per_stratum);
            rollout.hosts.set_stage(Some(target));
        }
        rollout.status = snapshot.status;
        rollout.frozen = snapshot.frozen;
        rollout.hold = snapshot.hold;
        rollout.waiting = snapshot.waiting;
        rollout.start_at = snapshot.start_at;
        rollout.failures = snapshot.failures;
        rollout.failure_baseline = snapshot.failure_baseline;
        Ok(rollout)
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use crate::plan::parse_plan;
    use crate::rollout::{Action, Input, Rollout};

    #[test]
    fn the_header_and_the_host_records_make_the_snapshot() {
        let plan = parse_plan(
            "name: t\ncomponent: c\nversion: \"2\"\nstrategy: { spread: [role] }\nstages:\n  - { percent: 50 }\n  - { percent: 100 }\n",
        )
        .expect("plan");
        let now = Timestamp::UNIX_EPOCH;
        let mut rollout = Rollout::new("r-1".to_owned(), plan, now);
        for (id, role) in [("a", "web"), ("b", "web"), ("c", "db")] {
            let labels = [("role".to_owned(), role.to_owned())].into_iter().collect();
            let version = Some("1".into());
            let input = Input::Host {
                id: id.into(),
                labels,
                version,
            };
            rollout.handle(now, input).expect("host");
        }
        let start = Input::Action {
            action: Action::Start,
            actor: "me".to_owned(),
            reason: "go".to_owned(),
        };
        rollout.handle(now, start).expect("start");

        let mut split = rollout.snapshot_header();
        assert!(split.hosts.is_empty());
        split.hosts = ["a", "b", "c"]
            .into_iter()
            .filter_map(|id| rollout.snapshot_host(id))
            .collect();
        assert_eq!(split, rollout.snapshot());
        assert_eq!(rollout.snapshot_host("unknown"), None);
    }
}
