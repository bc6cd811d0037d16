//! The rollout retrospective on the server: the samples of hosts by state
//! that its chart is drawn from, written with the group commit, and the
//! gathering of a rollout's record (plan, events, hosts, samples) for
//! `sluice_sim::retro::build`, which computes every figure.
//!
//! Samples ride the batch of the change they count ([`sample_states`]), so
//! the store holds a sample for every change it holds: a crash loses none,
//! and a report of a rollout that survived one is complete. There is at most
//! one per rollout and second: the time is rounded up to the second, and a
//! later sample of the same second replaces the earlier.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{Timestamp, Unit};
use sluice_core::rollout::{Event, HostCounts};
use sluice_sim::retro::{self, Record, Report, Source, StateSample};
use sluice_store::{StateSampleRecord, Write};

use crate::error::ApiError;
use crate::state::AppState;
use crate::world::World;

/// Events read from the store per page.
const PAGE: u32 = 10_000;

/// Adds to `writes` a sample of hosts by state of each rollout they write.
pub fn sample_states(world: &World, now: Timestamp, writes: &mut Vec<Write>) {
    let touched: BTreeSet<&str> = writes
        .iter()
        .filter_map(|write| match write {
            Write::Rollout(r) => Some(r.id.as_str()),
            Write::RolloutHost(r) => Some(r.rollout.as_str()),
            _ => None,
        })
        .collect();
    if touched.is_empty() {
        return;
    }
    let at = second_after(now);
    let samples: Vec<Write> = touched
        .into_iter()
        .filter_map(|id| world.rollout_entry(id))
        .map(|entry| {
            Write::StateSample(StateSampleRecord {
                rollout: entry.rollout.id().to_owned(),
                at,
                counts: counts_map(&entry.rollout.counts()),
            })
        })
        .collect();
    writes.extend(samples);
}

/// `now` rounded up to the whole second.
fn second_after(now: Timestamp) -> Timestamp {
    let down = now.round(Unit::Second).unwrap_or(now);
    if down >= now {
        down
    } else {
        Timestamp::from_second(down.as_second() + 1).unwrap_or(down)
    }
}

fn counts_map(c: &HostCounts) -> BTreeMap<String, u64> {
    [
        ("waiting", c.waiting),
        ("instructed", c.instructed),
        ("healthy", c.healthy),
        ("failed", c.failed),
        ("reverting", c.reverting),
        ("reverted", c.reverted),
    ]
    .into_iter()
    .map(|(state, hosts)| (state.to_owned(), hosts))
    .collect()
}

fn counts_of(map: &BTreeMap<String, u64>) -> HostCounts {
    let get = |state: &str| map.get(state).copied().unwrap_or(0);
    HostCounts {
        waiting: get("waiting"),
        instructed: get("instructed"),
        healthy: get("healthy"),
        failed: get("failed"),
        reverting: get("reverting"),
        reverted: get("reverted"),
    }
}

/// The retrospective of rollout `id`, from memory (its plan and hosts, as
/// durable) and the store (its events and samples).
pub async fn report(state: &AppState, id: &str) -> Result<Report, ApiError> {
    let gathered = state
        .reveal(|world| {
            world.has_rollout(id)?;
            let entry = world
                .rollout_entry(id)
                .ok_or_else(|| ApiError::NotFound(format!("no rollout {id}")))?;
            let rollout = &entry.rollout;
            let component = rollout.plan().component.clone();
            let hosts = retro::host_facts(
                rollout,
                |host| {
                    world
                        .host_entry(host)
                        .map(|h| h.labels.clone())
                        .unwrap_or_default()
                },
                |host| {
                    world
                        .host_entry(host)
                        .and_then(|h| h.components.get(&component))
                        .and_then(|r| r.message.as_deref().map(str::to_owned))
                },
            );
            Ok::<_, ApiError>((rollout.plan().clone(), hosts))
        })
        .await??;
    let (plan, hosts) = gathered;
    let mut events: Vec<Event> = Vec::new();
    let mut after = 0;
    loop {
        let page = state.events(id, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = page.len() == PAGE as usize;
        for stored in page {
            events.push(engine_event(stored.event)?);
        }
        if !full {
            break;
        }
    }
    let samples: Vec<StateSample> = state
        .store()
        .state_samples(id)
        .await
        .map_err(|error| ApiError::Unavailable(error.to_string()))?
        .into_iter()
        .map(|s| StateSample {
            at: s.at,
            counts: counts_of(&s.counts),
        })
        .collect();
    Ok(retro::build(&Record {
        rollout: id,
        plan: &plan,
        events: &events,
        hosts: &hosts,
        samples: &samples,
        source: Source::Server,
        now: state.now(),
    }))
}

/// A stored event as the engine wrote it (the inverse of
/// `persist::new_event`).
fn engine_event(stored: sluice_store::NewEvent) -> Result<Event, ApiError> {
    let mut data = stored.data;
    if let Some(map) = data.as_object_mut() {
        map.insert("type".to_owned(), stored.kind.clone().into());
        map.insert(
            "at".to_owned(),
            serde_json::to_value(stored.at).unwrap_or_default(),
        );
        if let Some(actor) = stored.actor {
            map.insert("actor".to_owned(), actor.into());
        }
    }
    serde_json::from_value(data).map_err(|error| {
        ApiError::Internal(format!(
            "a stored {} event does not read as one: {error}",
            stored.kind
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_timed_at_the_next_whole_second() {
        let at = |s: &str| s.parse::<Timestamp>().expect("a time");
        assert_eq!(
            second_after(at("2026-01-05T08:00:00.2Z")),
            at("2026-01-05T08:00:01Z")
        );
        assert_eq!(
            second_after(at("2026-01-05T08:00:00.7Z")),
            at("2026-01-05T08:00:01Z")
        );
        assert_eq!(
            second_after(at("2026-01-05T08:00:01Z")),
            at("2026-01-05T08:00:01Z")
        );
    }
}
