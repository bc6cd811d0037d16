//! The controller: drives every rollout through time.
//!
//! Once a second (and right after an operator action or a freeze) it ticks
//! every rollout that listens — timeouts, bakes, windows, stage advance —
//! and starts the evaluations of external gates that are due: each gate of
//! each rollout whose stage progresses or bakes (a comparison gate: bakes),
//! first at once, then every `interval`, never two at a time. Evaluations run in spawned tasks with a
//! timeout and come back here as inputs. Every outcome is persisted through
//! the group commit like any other change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sluice_core::rollout::GateResult;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use crate::cohorts::CohortSettings;
use crate::gates::{self, GateSpec};
use crate::state::AppState;

/// When a gate is next due, and whether an evaluation is running.
#[derive(Debug)]
struct Schedule {
    next: Timestamp,
    running: bool,
}

/// The controller's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tick: Duration,
    /// Longest a Prometheus query may take.
    pub gate_timeout: Duration,
}

/// Runs until `stop` fires (or its sender is dropped).
pub async fn run(
    state: AppState,
    client: reqwest::Client,
    settings: Settings,
    mut stop: oneshot::Receiver<()>,
) {
    let (results_tx, mut results) = mpsc::unbounded_channel::<(String, GateResult)>();
    let mut schedules: HashMap<(String, String), Schedule> = HashMap::new();
    let cohorts = state.cohorts().clone();
    let mut ticker = tokio::time::interval(settings.tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
            _ = state.woken() => {}
            Some((rollout, result)) = results.recv() => {
                if let Some(schedule) = schedules.get_mut(&(rollout.clone(), result.name.clone())) {
                    schedule.running = false;
                }
                tracing::debug!(%rollout, gate = %result.name, outcome = ?result.outcome, evidence = %result.evidence, "gate evaluated");
                let ((), pending) = state.change(|world, now, writes| {
                    world.gate_result(&rollout, result, now, writes)
                });
                if let Err(error) = pending.durable().await {
                    tracing::warn!(%error, "gate result not saved");
                }
                continue;
            }
        }
        let (due, pending) = state.change(|world, now, writes| {
            world.tick(now, writes);
            due_gates(world, &mut schedules, now, &cohorts)
        });
        for (rollout, spec) in due {
            let client = client.clone();
            let results = results_tx.clone();
            let timeout = match &spec {
                GateSpec::Prometheus { .. } | GateSpec::Compare { .. } => settings.gate_timeout,
                GateSpec::Http { timeout, .. } => *timeout,
            };
            tokio::spawn(async move {
                // The HTTP client has its own timeouts; this one is the last word.
                let result = match tokio::time::timeout(
                    timeout + Duration::from_secs(1),
                    gates::evaluate(&client, &spec, timeout),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => GateResult {
                        name: spec.name().to_owned(),
                        outcome: sluice_core::rollout::GateOutcome::Fail,
                        evidence: format!("no answer within {}s", timeout.as_secs()),
                        comparison: None,
                    },
                };
                let _ = results.send((rollout, result));
            });
        }
        if let Err(error) = pending.durable().await {
            tracing::warn!(%error, "controller tick not saved");
        }
    }
}

/// The gates to evaluate now; forgets those of rollouts no longer gated, so
/// that a gate is evaluated at once when its rollout is gated again.
fn due_gates(
    world: &crate::world::World,
    schedules: &mut HashMap<(String, String), Schedule>,
    now: Timestamp,
    cohorts: &CohortSettings,
) -> Vec<(String, GateSpec)> {
    let mut due = Vec::new();
    let mut live = HashSet::new();
    for rollout in world.gated_rollouts() {
        for (spec, interval) in gates::specs(rollout.id(), rollout.plan()) {
            if !rollout.gate_active(spec.name()) {
                continue;
            }
            let key = (rollout.id().to_owned(), spec.name().to_owned());
            live.insert(key.clone());
            let schedule = schedules.entry(key).or_insert(Schedule {
                next: now,
                running: false,
            });
            if schedule.running || now < schedule.next {
                continue;
            }
            schedule.running = true;
            let step = SignedDuration::try_from(interval).unwrap_or(SignedDuration::from_secs(30));
            schedule.next = now.checked_add(step).unwrap_or(Timestamp::MAX);
            let spec = match spec {
                GateSpec::Compare { gate, query, .. } => {
                    let drawn = rollout.cohorts(cohorts.max);
                    let strata = gates::strata_of(&drawn, &rollout.plan().strategy.spread);
                    GateSpec::Compare {
                        gate,
                        query,
                        strata: Arc::new(strata),
                    }
                }
                spec => spec,
            };
            due.push((rollout.id().to_owned(), spec));
        }
    }
    schedules.retain(|key, schedule| live.contains(key) || schedule.running);
    due
}
