//! Admission decided across rollouts. A rollout alone admits hosts within
//! its own plan after every input; when several rollouts share a fleet, an
//! arbiter ([`crate::arbiter`]) decides instead, host by host, with the
//! fleet-wide change budget, one change per host and pins in view. The
//! rollout still decides *which* host comes next (its stratum furthest
//! behind, its best-ranked waiting host); the arbiter says whether it may.

use jiff::Timestamp;

use super::{Admission, EventKind, Outcome, Rollout, Status, Tx, Verdict, Wait, Waiting};

impl Rollout {
    /// Hands admission to an arbiter (`true`): the rollout then admits
    /// nothing by itself, only through [`Rollout::admit_one`]. `false`
    /// gives it back (the rollout admits at its next input) and forgets
    /// what it waited for.
    pub fn set_arbitrated(&mut self, arbitrated: bool) {
        self.arbitrated = arbitrated;
        if !arbitrated {
            self.waiting = None;
        }
    }

    /// Whether the rollout would admit a host now if one were let in:
    /// running, not held, below its own `max_in_flight`, its stage short
    /// of its quotas.
    pub fn wants_hosts(&self) -> bool {
        matches!(self.status, Status::Running { .. })
            && self.hold.is_none()
            && self.hosts.in_flight() < self.max_in_flight()
            && self.hosts.behind_quota()
    }

    /// Admits at most one host at `now`: the one the rollout would admit
    /// next that `check` lets in (a stratum whose hosts are all skipped
    /// gives its turn to the next stratum). Changes nothing unless a host
    /// is admitted.
    pub fn admit_one(
        &mut self,
        now: Timestamp,
        check: &mut dyn FnMut(&str) -> Verdict,
    ) -> Admission {
        if !self.wants_hosts() {
            return Admission::Nothing;
        }
        let mut tx = Tx {
            now,
            out: Outcome::default(),
        };
        match self.hosts.admit_next(now, check) {
            Ok(Some(host)) => {
                let record = self.hosts.record(host);
                tx.host(&record.id, record.state.clone());
                Admission::Admitted(tx.out)
            }
            Ok(None) => Admission::Nothing,
            Err(wait) => Admission::Blocked(wait),
        }
    }

    /// Records what the rollout waits for (`None`: nothing), as the arbiter
    /// found after its last pass: a `waiting` event when a wait begins, a
    /// `wait_over` event when it ends (both when it changes).
    pub fn set_waiting(&mut self, now: Timestamp, wait: Option<Wait>) -> Outcome {
        let mut tx = Tx {
            now,
            out: Outcome::default(),
        };
        let current = self.waiting.map(|waiting| waiting.wait);
        if current == wait {
            return tx.out;
        }
        if let Some(old) = current {
            tx.event(None, EventKind::WaitOver { wait: old });
        }
        self.waiting = wait.map(|wait| Waiting { wait, since: now });
        if let Some(wait) = wait {
            tx.event(None, EventKind::Waiting { wait });
        }
        tx.out
    }
}
