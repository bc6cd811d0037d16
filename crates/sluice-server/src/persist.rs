//! How a rollout lives in the store, and how it is put back together.
//!
//! The engine's [`Snapshot`] is split in two:
//! - the **header** ([`Rollout::snapshot_header`]: status, hold, failure
//!   counts, gate streaks, the strata's keys) is the `header` JSON of the
//!   rollout's row, rewritten whenever it changes;
//! - each host's [`SnapshotHost`] is one `rollout_hosts` record, rewritten
//!   whenever an outcome names the host (admission, report, failure).
//!
//! Both travel through the group commit in the order the engine produced
//! them, so the store always holds a prefix of the rollout's history: an
//! admission is durable before any answer reveals it, and a restored
//! rollout counts every admission it ever revealed against its quotas.
//!
//! The store loads per-host records only for rollouts that are not terminal,
//! but an aborted rollout still decides that its admitted hosts keep the
//! target, a rolled-back one that they return to what they ran, and every
//! rollout's view (counts, strata) should read the same after a restart: so
//! once a rollout is terminal its header holds the whole snapshot, hosts
//! included, written when it stops (the per-host records loaded, if any,
//! are newer and win). Host states that change after that (a rolled-back
//! host reporting its old version) are saved as records but not loaded: a
//! restarted server shows them as they were when the rollout stopped until
//! the host reports again.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use sluice_core::plan::parse_plan;
use sluice_core::rollout::{Event, Rollout, Snapshot, SnapshotHost, Status};
use sluice_store::{NewEvent, RolloutHostRecord};

/// Whether the stored header of this rollout carries its hosts.
fn header_has_hosts(status: &Status) -> bool {
    status.is_terminal()
}

/// The header as stored.
pub fn header_value(rollout: &Rollout) -> serde_json::Value {
    let snapshot = if header_has_hosts(rollout.status()) {
        rollout.snapshot()
    } else {
        rollout.snapshot_header()
    };
    serde_json::to_value(snapshot).unwrap_or(serde_json::Value::Null)
}

/// A cheap fingerprint of the header without hosts: the rollout's row is
/// rewritten when it changes.
pub fn header_key(rollout: &Rollout) -> String {
    serde_json::to_string(&rollout.snapshot_header()).unwrap_or_default()
}

/// One host's record, for the host an outcome named.
pub fn host_record(rollout: &Rollout, host: &str) -> Option<RolloutHostRecord> {
    let record = rollout.snapshot_host(host)?;
    Some(RolloutHostRecord {
        rollout: rollout.id().to_owned(),
        host: host.to_owned(),
        record: serde_json::to_string(&record).ok()?,
    })
}

/// A stored per-host record, read.
pub fn read_host_record(rollout: &str, host: &str, record: &str) -> anyhow::Result<SnapshotHost> {
    serde_json::from_str(record).with_context(|| {
        format!("reading rollout_hosts: the record of rollout {rollout}, host {host}")
    })
}

/// Rebuilds a rollout from its plan text, its stored header and the
/// per-host records the store loaded for it (read), each host's id made
/// the rollout's by `share`.
pub fn restore(
    id: &str,
    plan: &str,
    header: &serde_json::Value,
    records: Vec<SnapshotHost>,
    share: impl FnMut(String) -> Arc<str>,
) -> anyhow::Result<Rollout> {
    let plan = parse_plan(plan).map_err(|errors| {
        anyhow::anyhow!("rollout {id}: its stored plan no longer validates:\n{errors}")
    })?;
    let mut snapshot: Snapshot = serde_json::from_value(header.clone())
        .with_context(|| format!("rollout {id}: reading its stored header"))?;
    if snapshot.hosts.is_empty() {
        snapshot.hosts = records;
    } else {
        let mut position: HashMap<String, usize> = snapshot
            .hosts
            .iter()
            .enumerate()
            .map(|(index, host)| (host.id.clone(), index))
            .collect();
        for host in records {
            match position.get(&host.id) {
                Some(&index) => snapshot.hosts[index] = host,
                None => {
                    position.insert(host.id.clone(), snapshot.hosts.len());
                    snapshot.hosts.push(host);
                }
            }
        }
    }
    Ok(Rollout::restore_sharing(plan, snapshot, share)?)
}

/// An engine event as the store keeps it: its type as `kind`, its other
/// fields as `data`.
pub fn new_event(rollout: Option<&str>, event: &Event) -> NewEvent {
    let mut data = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
    let kind = data
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    if let Some(map) = data.as_object_mut() {
        map.remove("at");
        map.remove("actor");
        map.remove("type");
    }
    NewEvent {
        rollout: rollout.map(str::to_owned),
        at: event.at,
        actor: event.actor.clone(),
        kind,
        data,
    }
}
