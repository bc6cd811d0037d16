//! Samples, for the chart of hosts by version over time: every
//! [`interval`] (five controller ticks), each rollout that changed since the last look (its
//! `updated_at` moved) has its hosts counted by the version they last
//! reported, and the counts are stored ([`sluice_store::Store::add_samples`])
//! when they differ from the rollout's last sample. A chart therefore has a
//! point per change, at most one per interval, and survives restarts.
//!
//! Samples are a record, not state: they go to the store outside the group
//! commit, and one lost in a crash costs a point of a chart, nothing else.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use sluice_store::SampleRecord;
use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

use super::views::versions_of;
use crate::state::AppState;
use crate::world::World;

/// How often rollouts are looked at: every five controller ticks (5 s by
/// default).
pub fn interval(tick: Duration) -> Duration {
    tick * 5
}

/// What the sampler last saw of a rollout.
#[derive(Debug, Default)]
struct Seen {
    updated_at: Option<Timestamp>,
    versions: BTreeMap<String, u64>,
}

/// Samples every `every` until `stop` fires (or its sender is dropped).
pub async fn run(state: AppState, every: Duration, mut stop: oneshot::Receiver<()>) {
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        // A rollout first seen (after a restart, or new) continues from its
        // last stored sample, so that a restart adds no duplicate point.
        let new: Vec<String> = state.peek(|world| {
            world
                .rollout_entries()
                .iter()
                .map(|entry| entry.rollout.id())
                .filter(|id| !seen.contains_key(*id))
                .map(str::to_owned)
                .collect()
        });
        for id in new {
            let versions = match state.store().samples(&id).await {
                Ok(mut samples) => samples.pop().map(|s| s.versions).unwrap_or_default(),
                Err(error) => {
                    tracing::warn!(%error, rollout = %id, "reading the last sample");
                    BTreeMap::new()
                }
            };
            seen.insert(
                id,
                Seen {
                    updated_at: None,
                    versions,
                },
            );
        }
        let now = state.now();
        let samples = state.peek(|world| take(world, &mut seen, now));
        if let Err(error) = state.store().add_samples(&samples).await {
            tracing::warn!(%error, "samples of hosts by version not saved");
        }
    }
}

/// The samples of the rollouts whose counts changed since `seen`.
fn take(world: &World, seen: &mut HashMap<String, Seen>, now: Timestamp) -> Vec<SampleRecord> {
    let mut samples = Vec::new();
    for entry in world.rollout_entries() {
        let id = entry.rollout.id();
        let last = seen.entry(id.to_owned()).or_default();
        if last.updated_at == Some(entry.updated_at) {
            continue;
        }
        last.updated_at = Some(entry.updated_at);
        let versions = versions_of(&entry.rollout);
        if versions == last.versions {
            continue;
        }
        last.versions = versions.clone();
        samples.push(SampleRecord {
            rollout: id.to_owned(),
            at: now,
            versions,
        });
    }
    samples
}
