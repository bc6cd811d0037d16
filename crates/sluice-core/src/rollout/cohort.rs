//! Cohorts for canary analysis: the hosts that got the change (the
//! *canary*) and as many untouched hosts of the same strata (the
//! *baseline*), so that a comparison gate reads one metric for both and
//! compares like with like.
//!
//! Per stratum, with the current stage's quota q of a stratum of n hosts:
//!
//! - **Canary**: admitted hosts whose last report is at the target (not
//!   rolled back), best-ranked first — the hosts admitted first.
//! - **Baseline**: waiting hosts the current stage will not admit — the
//!   n − q that admission takes last, worst-ranked first. Admission takes
//!   the best-ranked waiting host, so a baseline host is never admitted
//!   while it serves: only a later stage, whose quota reaches it, admits
//!   it, and by then the cohorts are drawn again from what it left.
//! - **Matched**: each stratum gives both cohorts the same number of hosts,
//!   the smaller of its canaries and its spare hosts, so the cohorts have
//!   the same make-up. A stratum with canaries but no spare host (a stage
//!   covering all of it, a stratum of one) contributes to neither, and is
//!   listed as unmatched.
//! - **Bounded**: each cohort holds at most `max` hosts; when the strata
//!   offer more, they share `max` in proportion to what they offer
//!   (largest remainders), so the bounded cohorts keep their make-up.
//!
//! Everything follows from the rollout's state: the same state gives the
//! same cohorts, in the server and in the simulator alike.

use std::sync::Arc;

use crate::selection::StratumKey;

use super::model::HostState;
use super::Rollout;

/// The rollout's canary and baseline cohorts, matched per stratum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cohorts {
    /// Strata with hosts at the target, ordered by key.
    pub strata: Vec<CohortStratum>,
}

/// One stratum's share of the cohorts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortStratum {
    pub key: StratumKey,
    /// Admitted hosts at the target, before matching and the bound.
    pub at_target: u64,
    /// Hosts the current stage leaves waiting, the baseline's pool.
    pub spare: u64,
    pub canary: Vec<Arc<str>>,
    /// As many hosts as `canary`.
    pub baseline: Vec<Arc<str>>,
}

impl Cohorts {
    /// The canary cohort's hosts, stratum by stratum.
    pub fn canary(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.strata.iter().flat_map(|s| s.canary.iter())
    }

    /// The baseline cohort's hosts, stratum by stratum.
    pub fn baseline(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.strata.iter().flat_map(|s| s.baseline.iter())
    }

    /// Hosts in each cohort (both hold as many).
    pub fn size(&self) -> usize {
        self.strata.iter().map(|s| s.canary.len()).sum()
    }

    /// Strata with hosts at the target but no spare host to compare them
    /// with.
    pub fn unmatched(&self) -> impl Iterator<Item = &CohortStratum> + '_ {
        self.strata.iter().filter(|s| s.spare == 0)
    }
}

impl Rollout {
    /// The cohorts as the rollout stands, each of at most `max` hosts;
    /// empty unless it has a current stage (running or paused).
    ///
    /// Reads every host of the rollout once: call it for rollouts with
    /// comparison gates.
    pub fn cohorts(&self, max: usize) -> Cohorts {
        if self.stage().is_none() {
            return Cohorts::default();
        }
        let strata = self.hosts.strata();
        // Per stratum: its hosts at the target, as (rank, id, index).
        let mut at_target: Vec<Vec<(u64, &Arc<str>)>> = vec![Vec::new(); strata.len()];
        for record in self.hosts.records() {
            let eligible = record.admitted()
                && !matches!(record.state, HostState::Reverting | HostState::Reverted)
                && record.version.is_some()
                && self.hosts.version_of(record.version) == Some(self.plan.version.as_str());
            if eligible {
                at_target[record.stratum as usize].push((record.rank, &record.id));
            }
        }
        let mut order: Vec<usize> = (0..strata.len())
            .filter(|&s| !at_target[s].is_empty())
            .collect();
        order.sort_by(|&a, &b| strata[a].key.cmp(&strata[b].key));
        let spare: Vec<u64> = order
            .iter()
            .map(|&s| {
                let stratum = &strata[s];
                let waiting = stratum.size - stratum.admitted;
                (stratum.size.saturating_sub(self.hosts.quota(s as u32))).min(waiting)
            })
            .collect();
        let offered: Vec<usize> = order
            .iter()
            .zip(&spare)
            .map(|(&s, &spare)| {
                at_target[s]
                    .len()
                    .min(usize::try_from(spare).unwrap_or(usize::MAX))
            })
            .collect();
        let shares = share(&offered, max);
        let strata = order
            .iter()
            .zip(spare)
            .zip(shares)
            .map(|((&s, spare), take)| {
                let mut canary = std::mem::take(&mut at_target[s]);
                let at_target = canary.len() as u64;
                canary.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
                canary.truncate(take);
                let baseline = self
                    .hosts
                    .worst_waiting(s as u32, take)
                    .into_iter()
                    .map(|host| Arc::clone(&self.hosts.record(host).id))
                    .collect();
                CohortStratum {
                    key: strata[s].key.clone(),
                    at_target,
                    spare,
                    canary: canary.into_iter().map(|(_, id)| Arc::clone(id)).collect(),
                    baseline,
                }
            })
            .collect();
        Cohorts { strata }
    }
}

/// How many of its `offered` hosts each stratum gives, `max` in all at
/// most: in proportion to what it offers (largest remainders, ties in
/// order), so that a bounded cohort keeps the make-up of the whole.
fn share(offered: &[usize], max: usize) -> Vec<usize> {
    let total: usize = offered.iter().sum();
    if total <= max {
        return offered.to_vec();
    }
    let exact = |offer: usize| u128::from(offer as u64) * u128::from(max as u64);
    let total_wide = u128::from(total as u64);
    let mut shares: Vec<usize> = offered
        .iter()
        .map(|&offer| (exact(offer) / total_wide) as usize)
        .collect();
    let mut left = max - shares.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..offered.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(exact(offered[i]) % total_wide), i));
    for i in order {
        if left == 0 {
            break;
        }
        shares[i] += 1;
        left -= 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn strata_share_the_bound_in_proportion() {
        assert_eq!(share(&[3, 2], 10), [3, 2]);
        assert_eq!(share(&[10, 10, 10], 10), [4, 3, 3]);
        assert_eq!(share(&[1, 10, 10], 10), [0, 5, 5]);
        assert_eq!(share(&[0, 7, 2], 4), [0, 3, 1]);
        assert_eq!(share(&[5, 5], 0), [0, 0]);
    }
}
