//! The server's memory: the fleet, the components, the rollouts and the
//! freeze, and every change to them.
//!
//! Each change takes its `now` and pushes the store writes that make it
//! durable onto a `Vec<Write>`; the caller queues them with the group commit
//! before it lets go of the lock (see [`crate::commit`]). Queries answer
//! from memory only. Nothing here does IO or awaits.
//!
//! Layout: this module holds the state and the changes (driving rollouts,
//! check-ins, rollouts, freeze, import); [`Loading`] builds it from the
//! store at start; [`desired`] the rule that
//! decides what a host should run, and moving the stable version; `views`
//! the wire projections the API and `/metrics` show; [`WorldError`] why a
//! change or a query was refused (mapped to HTTP in `crate::error` alone).

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;
use sluice_api::admin::FreezeView;
use sluice_api::agent::{CheckinRequest, CheckinResponse, ReportState};
use sluice_api::host::ImportResult;
use sluice_api::rollout::RolloutSummary;
use sluice_core::arbiter::Arbiter;
use sluice_core::fleet::{Host, HostId, Labels};
use sluice_core::plan::Plan;
use sluice_core::rollout::{
    EventKind, Fed, Freeze, GateResult, Health, HostReport, HostState, Input, Outcome, Rejected,
    Rollout, Sighting, Status,
};
use sluice_store::{
    BudgetRecord, ComponentRecord, FreezeRecord, HostComponentRecord, HostRecord, NewEvent,
    PinRecord, RolloutRecord, Write,
};

use crate::clock::rfc3339;
use crate::persist;
use crate::vocabulary;

mod desired;
mod error;
mod fleet;
mod hosts;
mod loading;
mod schedule;
mod views;

pub use error::WorldError;
pub use hosts::{HostEntry, Reported, Reports};
use hosts::{HostMap, Strings};
pub use loading::{Loading, Restored};
pub use views::HostFilter;

/// Longest message kept from a check-in report: its last lines.
const MAX_MESSAGE_CHARS: usize = 4096;

/// How stale the stored `last_seen` of a host may get. A check-in that
/// changes nothing else writes nothing durable unless the stored time is
/// this old: after a crash, a host's `last_seen` may be this much older than
/// its last check-in (a clean shutdown saves them all). Reports, labels and
/// every decision are still durable before the check-in is answered.
const LAST_SEEN_SAVE_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// Whether the engine's labels equal the wire's, without converting.
fn same_labels(labels: &Labels, wire: &BTreeMap<String, String>) -> bool {
    labels.len() == wire.len()
        && labels
            .iter()
            .zip(wire)
            .all(|((key, value), (wire_key, wire_value))| {
                *key == **wire_key && *value == **wire_value
            })
}

/// Converts the engine's labels to the wire's.
pub fn from_labels(labels: &Labels) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Per component: the stable version, the rollouts, and counts of what
/// hosts report (kept up to date, so that listings and metrics never scan
/// the fleet).
#[derive(Debug, Clone, Default)]
pub struct ComponentEntry {
    pub stable: Option<String>,
    /// Indices into the rollouts, oldest first.
    rollouts: Vec<usize>,
    versions: BTreeMap<String, u64>,
    /// Hosts by reported state: ok, applying, failed, unknown (imported).
    states: [u64; 4],
    /// Hosts whose report says the component drifted.
    drifted: u64,
}

const STATE_NAMES: [&str; 4] = ["ok", "applying", "failed", "unknown"];

fn state_slot(state: Option<ReportState>) -> usize {
    match state {
        Some(ReportState::Ok) => 0,
        Some(ReportState::Applying) => 1,
        Some(ReportState::Failed) => 2,
        None => 3,
    }
}

impl ComponentEntry {
    fn count(&mut self, reported: &Reported, add: bool) {
        let slot = &mut self.states[state_slot(reported.state)];
        let versions = self
            .versions
            .entry(reported.version.to_string())
            .or_default();
        let drifted = u64::from(reported.drifted);
        if add {
            *slot += 1;
            *versions += 1;
            self.drifted += drifted;
        } else {
            *slot = slot.saturating_sub(1);
            *versions = versions.saturating_sub(1);
            self.drifted = self.drifted.saturating_sub(drifted);
            if *versions == 0 {
                self.versions.remove(&*reported.version);
            }
        }
    }
}

/// One rollout with what the server keeps beside the engine.
#[derive(Debug, Clone)]
pub struct RolloutEntry {
    pub rollout: Rollout,
    /// The plan as submitted.
    pub source: String,
    pub updated_at: Timestamp,
    /// [`persist::header_key`] as last written.
    header_key: String,
}

impl RolloutEntry {
    fn new(rollout: Rollout, source: String, updated_at: Timestamp) -> RolloutEntry {
        RolloutEntry {
            header_key: persist::header_key(&rollout),
            rollout,
            source,
            updated_at,
        }
    }

    fn record(&self) -> RolloutRecord {
        let plan = self.rollout.plan();
        RolloutRecord {
            id: self.rollout.id().to_owned(),
            name: plan.name.clone(),
            component: plan.component.clone(),
            state: self.rollout.status().name().to_owned(),
            plan: self.source.clone(),
            header: persist::header_value(&self.rollout),
            created_at: self.rollout.created_at(),
            updated_at: self.updated_at,
        }
    }

    fn is_active(&self) -> bool {
        self.rollout.is_active()
    }
}

impl std::borrow::Borrow<Rollout> for RolloutEntry {
    fn borrow(&self) -> &Rollout {
        &self.rollout
    }
}

impl std::borrow::BorrowMut<Rollout> for RolloutEntry {
    fn borrow_mut(&mut self) -> &mut Rollout {
        &mut self.rollout
    }
}

/// Records what driving a rollout changed: the record of every host the
/// outcome names that is not waiting (once, however often it is named),
/// the header if it changed, the events. Returns whether the rollout
/// completed.
///
/// The header changes only with an event or a new stratum (which comes
/// with a host joining, as waiting), so it is compared only then.
fn record(
    entry: &mut RolloutEntry,
    now: Timestamp,
    outcome: Outcome,
    writes: &mut Vec<Write>,
) -> bool {
    if outcome.is_empty() {
        return false;
    }
    entry.updated_at = now;
    let mut header_may_change = !outcome.events.is_empty();
    let mut seen: HashSet<&str> = HashSet::new();
    for change in &outcome.hosts {
        let waiting = change.state == HostState::Waiting;
        header_may_change |= waiting;
        // A host that joined waiting is placed again from the inventory at
        // a restart (`Rollout::place`): its record would say nothing more.
        if !waiting && seen.insert(&change.id) {
            if let Some(record) = persist::host_record(&entry.rollout, &change.id) {
                writes.push(Write::RolloutHost(record));
            }
        }
    }
    if header_may_change {
        let key = persist::header_key(&entry.rollout);
        if key != entry.header_key {
            entry.header_key = key;
            writes.push(Write::Rollout(entry.record()));
        }
    }
    let id = entry.rollout.id().to_owned();
    let mut completed = false;
    for event in &outcome.events {
        completed |= matches!(event.kind, EventKind::Completed);
        writes.push(Write::Event(persist::new_event(Some(&id), event)));
    }
    completed
}

/// Everything the server holds in memory.
#[derive(Debug, Default)]
pub struct World {
    hosts: HostMap,
    components: BTreeMap<String, ComponentEntry>,
    /// Oldest first.
    rollouts: Vec<RolloutEntry>,
    by_id: HashMap<String, usize>,
    freeze: Option<FreezeRecord>,
    /// The number of the next rollout id (`r-N`).
    next_seq: u64,
    /// The label maps, component names and versions hosts share.
    strings: Strings,
    /// Admission across rollouts: the budget, one change per host, pins
    /// (see [`fleet`]).
    arbiter: Arbiter,
    /// The budget as set (who, why, since when); the arbiter holds it parsed.
    budget: Option<BudgetRecord>,
    /// Pins, by host, then component.
    pins: BTreeMap<String, BTreeMap<String, PinRecord>>,
    /// Something changed since the arbiter last handed out hosts.
    arbitration_due: bool,
    /// The latest time the controller ticked at: what the views of
    /// schedules compare start times with.
    latest: Timestamp,
}

impl World {
    // ---- loading -------------------------------------------------------

    /// After a restart: feeds the freeze to every active rollout (it may
    /// have been set after a rollout's record was last written), lifts the
    /// pins that expired meanwhile and lets the arbiter hand out hosts.
    pub fn resume(&mut self, now: Timestamp, writes: &mut Vec<Write>) {
        self.latest = now;
        if let Some(freeze) = self.freeze.as_ref().map(|freeze| Freeze {
            actor: freeze.actor.clone(),
            reason: freeze.reason.clone(),
        }) {
            for index in 0..self.rollouts.len() {
                self.drive_logged(index, now, writes, "freeze", |rollout| {
                    rollout.offer(now, [], Some(&freeze))
                });
            }
        }
        self.expire_pins(now, writes);
        self.arbitration_due = true;
        self.settle(now, writes);
    }

    fn insert_rollout(&mut self, mut entry: RolloutEntry) -> usize {
        entry.rollout.set_arbitrated(true);
        let index = self.rollouts.len();
        let component = entry.rollout.plan().component.clone();
        self.by_id.insert(entry.rollout.id().to_owned(), index);
        self.components
            .entry(component)
            .or_default()
            .rollouts
            .push(index);
        self.rollouts.push(entry);
        index
    }

    // ---- driving rollouts ----------------------------------------------

    /// Drives rollout `index` with `step` (one of the engine's driving
    /// rules, or one input) and records what it changed; a rollout that
    /// completes is completed here. Returns the input `step` was refused.
    fn drive(
        &mut self,
        index: usize,
        now: Timestamp,
        writes: &mut Vec<Write>,
        step: impl FnOnce(&mut Rollout) -> Fed,
    ) -> Option<Rejected> {
        let entry = &mut self.rollouts[index];
        let fed = step(&mut entry.rollout);
        let hosts = &self.hosts;
        let labels_of = |id: &str| hosts.get(id).map(|host| host.labels.clone());
        self.arbiter
            .observe(index, &entry.rollout, &fed.outcome.hosts, &labels_of);
        self.arbitration_due |= !fed.outcome.is_empty();
        if record(entry, now, fed.outcome, writes) {
            self.complete(index, now, writes);
        }
        fed.rejected
    }

    /// Drives like [`World::drive`] where nothing is expected to be
    /// refused; a refusal is a bug, logged with the rollout and what fed it.
    fn drive_logged(
        &mut self,
        index: usize,
        now: Timestamp,
        writes: &mut Vec<Write>,
        what: &'static str,
        step: impl FnOnce(&mut Rollout) -> Fed,
    ) {
        if let Some(rejected) = self.drive(index, now, writes, step) {
            let rollout = self.rollouts[index].rollout.id();
            tracing::error!(%rollout, %rejected, input = what, "the engine refused an input the server fed it");
        }
    }

    /// A completed rollout's target becomes the component's stable version
    /// only when the rollout covered every host that has the component;
    /// otherwise the rollout's own selector keeps deciding for the hosts it
    /// covers (see [`desired`]), and the rest keep what they run.
    fn complete(&mut self, index: usize, now: Timestamp, writes: &mut Vec<Write>) {
        let rollout = &self.rollouts[index].rollout;
        let plan = rollout.plan();
        let (name, version) = (plan.component.clone(), plan.version.clone());
        let id = rollout.id().to_owned();
        let uncovered = self
            .hosts
            .iter()
            .filter(|(_, host)| host.components.contains_key(&name))
            .filter(|(host, _)| rollout.host(host).is_none())
            .count();
        if uncovered > 0 {
            tracing::info!(rollout = %id, component = %name, %version, uncovered, "rollout completed; the stable version stays, the rollout decides for the hosts it covered");
            return;
        }
        tracing::info!(rollout = %id, component = %name, %version, "rollout completed over every host with the component; stable version set");
        let entry = self.components.entry(name.clone()).or_default();
        let from = entry.stable.replace(version.clone());
        writes.push(Write::Component(ComponentRecord {
            name: name.clone(),
            stable_version: Some(version.clone()),
        }));
        writes.push(Write::Event(NewEvent {
            rollout: None,
            at: now,
            actor: None,
            kind: "stable_version_set".to_owned(),
            data: serde_json::json!({
                "component": name,
                "from": from,
                "to": version,
                "rollout": id,
            }),
        }));
    }

    /// Feeds every known host, then the freeze, to rollout `index`: hosts
    /// it does not know yet join it.
    fn feed_inventory(&mut self, index: usize, now: Timestamp, writes: &mut Vec<Write>) {
        let ids: Vec<HostId> = self.hosts.keys().cloned().collect();
        self.feed_hosts(index, &ids, now, writes);
    }

    /// Feeds `ids` (known hosts), then the freeze, to rollout `index`.
    fn feed_hosts(
        &mut self,
        index: usize,
        ids: &[HostId],
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) {
        let component = self.rollouts[index].rollout.plan().component.clone();
        let hosts = &self.hosts;
        let sightings: Vec<Sighting> = ids
            .iter()
            .filter_map(|id| {
                let host = hosts.get(id)?;
                Some(Sighting {
                    id: id.as_arc().clone(),
                    labels: host.labels.clone(),
                    version: host.components.get(&component).map(|c| c.version.clone()),
                })
            })
            .collect();
        let freeze = self.freeze.as_ref().map(|freeze| Freeze {
            actor: freeze.actor.clone(),
            reason: freeze.reason.clone(),
        });
        self.drive_logged(index, now, writes, "inventory", |rollout| {
            rollout.offer(now, sightings, freeze.as_ref())
        });
    }

    /// Time passes for every rollout that listens, and for pins; scheduled
    /// rollouts that are due start first.
    pub fn tick(&mut self, now: Timestamp, writes: &mut Vec<Write>) {
        self.start_due(now, writes);
        for index in 0..self.rollouts.len() {
            self.drive_logged(index, now, writes, "tick", |rollout| rollout.tick(now));
        }
        self.expire_pins(now, writes);
        self.arbitration_due = true;
        self.settle(now, writes);
    }

    /// An external gate's result.
    pub fn gate_result(
        &mut self,
        rollout: &str,
        result: GateResult,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) {
        let Some(&index) = self.by_id.get(rollout) else {
            return;
        };
        self.drive_logged(index, now, writes, "gate result", |rollout| {
            rollout.handle(now, Input::Gate(result)).into()
        });
        self.settle(now, writes);
    }

    /// The rollouts whose external gates are to be evaluated now.
    pub fn gated_rollouts(&self) -> impl Iterator<Item = &Rollout> {
        self.rollouts
            .iter()
            .map(|entry| &entry.rollout)
            .filter(|rollout| rollout.gates_active())
    }

    // ---- check-in ------------------------------------------------------

    /// A check-in (already validated): updates the host, feeds the
    /// rollouts, and answers with the desired versions.
    pub fn checkin(
        &mut self,
        request: &CheckinRequest,
        now: Timestamp,
        next_checkin_s: u64,
        writes: &mut Vec<Write>,
    ) -> CheckinResponse {
        let id = &request.host;
        let new = !self.hosts.contains_key(id);
        let host = self.hosts.get_or_add(id);
        let relabelled = !same_labels(&host.labels, &request.labels);
        if relabelled || new {
            let labels = self.strings.labels(&request.labels);
            let old = std::mem::replace(&mut host.labels, labels);
            self.arbiter
                .host_labels((!new).then_some(&old), &host.labels);
            self.arbitration_due |= new;
        }
        host.last_seen = Some(now);
        let stale = host
            .saved_seen
            .is_none_or(|saved| now.duration_since(saved) >= LAST_SEEN_SAVE_EVERY);
        if relabelled || stale {
            host.saved_seen = Some(now);
            writes.push(Write::Host(HostRecord {
                id: id.to_string(),
                labels: request.labels.clone(),
                last_seen: Some(now),
            }));
        }
        let labels = host.labels.clone();
        if relabelled {
            self.save_waiting_records(id, writes);
        }
        for (component, report) in &request.components {
            let reported = Reported {
                version: self.strings.get(&report.version),
                state: Some(report.state),
                message: report.message.as_deref().map(|m| tail(m).into_boxed_str()),
                drifted: report.drifted,
                at: now,
            };
            if self.set_reported(id, component, reported) {
                writes.push(Write::HostComponent(HostComponentRecord {
                    host: id.to_string(),
                    component: component.clone(),
                    version: report.version.clone(),
                    state: Some(vocabulary::stored_report(report.state)),
                    message: report.message.as_deref().map(tail),
                    drifted: report.drifted,
                    at: now,
                }));
            }
        }
        for index in 0..self.rollouts.len() {
            let rollout = &self.rollouts[index].rollout;
            // A rollout over for good (terminal, every told host answered)
            // takes nothing from a check-in: nothing is built for it.
            if !rollout.is_active() && !rollout.listens() {
                continue;
            }
            let report = request.components.get(&rollout.plan().component);
            let sighting = Sighting {
                id: id.as_arc().clone(),
                labels: labels.clone(),
                version: report.map(|r| self.strings.get(&r.version)),
            };
            let report = report.map(|report| HostReport {
                version: report.version.clone(),
                health: match report.state {
                    ReportState::Ok => Health::Ok,
                    ReportState::Applying => Health::Applying,
                    ReportState::Failed => Health::Failed,
                },
                message: report.message.as_deref().map(tail),
                drifted: report.drifted,
            });
            self.drive_logged(index, now, writes, "check-in", |rollout| {
                rollout.check_in(now, sighting, report)
            });
        }
        self.settle(now, writes);
        CheckinResponse {
            components: self.desired(id),
            next_checkin_s,
        }
    }

    /// A waiting host keeps the stratum it joined a rollout in when it is
    /// relabelled, but a restart places waiting hosts by their labels of
    /// the time (`Rollout::place`): so a relabelled host's records in the
    /// rollouts it waits in are stored, and restored as they are.
    fn save_waiting_records(&self, id: &str, writes: &mut Vec<Write>) {
        for entry in &self.rollouts {
            let rollout = &entry.rollout;
            if rollout.is_active() && rollout.host_state(id) == Some(&HostState::Waiting) {
                writes.extend(persist::host_record(rollout, id).map(Write::RolloutHost));
            }
        }
    }

    /// Saves every `last_seen` the store does not hold yet (at shutdown).
    pub fn save_last_seen(&mut self, writes: &mut Vec<Write>) {
        for (id, host) in self.hosts.iter_mut() {
            if host.last_seen != host.saved_seen {
                host.saved_seen = host.last_seen;
                writes.push(Write::Host(HostRecord {
                    id: id.to_string(),
                    labels: from_labels(&host.labels),
                    last_seen: host.last_seen,
                }));
            }
        }
    }

    /// Records what a host reports for a component; false if nothing changed.
    fn set_reported(&mut self, host: &str, component: &str, reported: Reported) -> bool {
        let Some(entry) = self.hosts.get_mut(host) else {
            return false;
        };
        if !self.components.contains_key(component) {
            self.components
                .insert(component.to_owned(), ComponentEntry::default());
        }
        let Some(stats) = self.components.get_mut(component) else {
            return false;
        };
        match entry.components.get_mut(component) {
            Some(old) if old.same_report(&reported) => false,
            Some(old) => {
                stats.count(old, false);
                stats.count(&reported, true);
                *old = reported;
                true
            }
            None => {
                stats.count(&reported, true);
                entry
                    .components
                    .insert(self.strings.get(component), reported);
                true
            }
        }
    }

    // ---- rollouts ------------------------------------------------------

    /// Creates a pending rollout of `plan` and feeds it the inventory; with
    /// `start_at` or the plan's `after` it is scheduled (see [`schedule`]).
    pub fn create_rollout(
        &mut self,
        source: String,
        plan: Plan,
        start_at: Option<Timestamp>,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) -> Result<String, WorldError> {
        if let Some(other) = self
            .rollouts
            .iter()
            .find(|entry| entry.rollout.plan().name == plan.name)
        {
            return Err(WorldError::Conflict(format!(
                "a rollout named {:?} already exists ({}, {}); plan names are unique, give this plan another name",
                plan.name,
                other.rollout.id(),
                other.rollout.status().name()
            )));
        }
        self.latest = self.latest.max(now);
        schedule::check(self, &plan, start_at, now)?;
        // A scheduled rollout may queue behind the rollouts of its
        // component; one started by hand may not overlap any active one.
        let scheduled = start_at.is_some() || plan.after.is_some();
        if !scheduled {
            if let Some(message) = self.overlap(&plan, Rollout::is_active) {
                return Err(WorldError::Conflict(message));
            }
        }
        let id = format!("r-{}", self.next_seq);
        self.next_seq += 1;
        let mut rollout = Rollout::new(id.clone(), plan, now);
        rollout.set_start_at(start_at);
        let created = rollout.created_event();
        let entry = RolloutEntry::new(rollout, source, now);
        writes.push(Write::Rollout(entry.record()));
        writes.push(Write::Event(persist::new_event(Some(&id), &created)));
        let index = self.insert_rollout(entry);
        self.feed_inventory(index, now, writes);
        self.settle(now, writes);
        tracing::info!(rollout = %id, plan = %self.rollouts[index].rollout.plan().name, hosts = self.rollouts[index].rollout.selected(), "rollout created");
        Ok(id)
    }

    /// Why `plan` may not start beside a rollout of its component that
    /// `owns` hosts (they would both own some host), or `None`.
    fn overlap(&self, plan: &Plan, owns: impl Fn(&Rollout) -> bool) -> Option<String> {
        self.overlapping(plan, owns).map(|(other, why)| {
            let other = &self.rollouts[other].rollout;
            format!(
                "rollout {} ({:?}, {}) already changes {} on hosts this plan selects ({why}); complete, abort or roll it back first, or choose a selector that does not overlap",
                other.id(),
                other.plan().name,
                other.status().name(),
                plan.component
            )
        })
    }

    /// The first rollout of `plan`'s component that `owns` hosts and selects
    /// some host `plan` selects, with why they overlap.
    fn overlapping(&self, plan: &Plan, owns: impl Fn(&Rollout) -> bool) -> Option<(usize, String)> {
        let entry = self.components.get(&plan.component)?;
        for &index in &entry.rollouts {
            let other = &self.rollouts[index];
            if !owns(&other.rollout) || other.rollout.plan().name == plan.name {
                continue;
            }
            let theirs = &other.rollout.plan().selector;
            let why = if plan.selector.is_empty() || theirs.is_empty() {
                Some("one of the two selects every host".to_owned())
            } else if plan.selector == *theirs {
                Some("both have the same selector".to_owned())
            } else {
                self.hosts
                    .iter()
                    .find(|(_, host)| {
                        plan.selector.matches(&host.labels) && theirs.matches(&host.labels)
                    })
                    .map(|(id, _)| format!("both select {id}, for one"))
            };
            if let Some(why) = why {
                return Some((index, why));
            }
        }
        None
    }

    /// An operator action.
    pub fn act(
        &mut self,
        id: &str,
        action: sluice_api::rollout::Action,
        actor: &str,
        reason: &str,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) -> Result<RolloutSummary, WorldError> {
        let index = self.index_of(id)?;
        let rollout = &self.rollouts[index].rollout;
        // One owner: a pending rollout starts only once no started one
        // shares its hosts (a scheduled one waits for that by itself).
        if action == sluice_api::rollout::Action::Start && *rollout.status() == Status::Pending {
            if let Some(message) = self.overlap(rollout.plan(), schedule::owns) {
                return Err(WorldError::Conflict(format!(
                    "cannot start {id}: {message}"
                )));
            }
        }
        let input = Input::Action {
            action: vocabulary::action(action),
            actor: actor.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rejected) = self.drive(index, now, writes, |rollout| {
            rollout.handle(now, input).into()
        }) {
            return Err(match rejected {
                Rejected::EmptyReason { .. } => WorldError::Invalid {
                    field: "reason".to_owned(),
                    message: rejected.to_string(),
                },
                other => WorldError::Conflict(other.to_string()),
            });
        }
        self.settle(now, writes);
        tracing::info!(rollout = %id, %action, %actor, %reason, "operator action");
        Ok(self.summary(&self.rollouts[index]))
    }

    fn index_of(&self, id: &str) -> Result<usize, WorldError> {
        self.by_id.get(id).copied().ok_or_else(|| {
            WorldError::NotFound(format!(
                "no rollout {id:?}; list them with GET /v1/rollouts (ids look like r-1)"
            ))
        })
    }

    // ---- freeze --------------------------------------------------------

    /// Turns the freeze on or off; doing what is already done changes nothing.
    pub fn set_freeze(
        &mut self,
        on: bool,
        actor: &str,
        reason: &str,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) {
        if on == self.freeze.is_some() {
            return;
        }
        self.freeze = on.then(|| FreezeRecord {
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            since: now,
        });
        writes.push(Write::Freeze(self.freeze.clone()));
        writes.push(Write::Event(NewEvent {
            rollout: None,
            at: now,
            actor: Some(actor.to_owned()),
            kind: if on { "freeze_on" } else { "freeze_off" }.to_owned(),
            data: serde_json::json!({ "reason": reason }),
        }));
        tracing::warn!(frozen = on, %actor, %reason, "fleet-wide freeze changed");
        for index in 0..self.rollouts.len() {
            if self.rollouts[index].is_active() {
                let input = Input::Freeze {
                    on,
                    actor: actor.to_owned(),
                    reason: reason.to_owned(),
                };
                self.drive_logged(index, now, writes, "freeze", |rollout| {
                    rollout.handle(now, input).into()
                });
            }
        }
        self.settle(now, writes);
    }

    pub fn freeze_view(&self) -> FreezeView {
        match &self.freeze {
            Some(freeze) => FreezeView {
                frozen: true,
                actor: Some(freeze.actor.clone()),
                reason: Some(freeze.reason.clone()),
                since: Some(rfc3339(freeze.since)),
            },
            None => FreezeView {
                frozen: false,
                actor: None,
                reason: None,
                since: None,
            },
        }
    }

    // ---- import --------------------------------------------------------

    /// Registers hosts from a fleet file; versions only fill in components
    /// the host's agent has not reported. New hosts join active rollouts.
    pub fn import(
        &mut self,
        hosts: Vec<Host>,
        actor: &str,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) -> ImportResult {
        let imported = hosts.len() as u64;
        let mut new = 0;
        let mut ids = Vec::with_capacity(hosts.len());
        for host in hosts {
            let joined = !self.hosts.contains_key(&host.id);
            if joined {
                new += 1;
            }
            let entry = self.hosts.get_or_add(&host.id);
            let relabelled = entry.labels != host.labels;
            if relabelled || joined {
                let labels = self.strings.share(host.labels.clone());
                let old = std::mem::replace(&mut entry.labels, labels);
                self.arbiter
                    .host_labels((!joined).then_some(&old), &entry.labels);
            }
            entry.saved_seen = entry.last_seen;
            writes.push(Write::Host(HostRecord {
                id: host.id.to_string(),
                labels: from_labels(&host.labels),
                last_seen: entry.last_seen,
            }));
            if relabelled {
                self.save_waiting_records(&host.id, writes);
            }
            for (component, version) in host.components.iter() {
                let reported_by_agent = self
                    .hosts
                    .get(&host.id)
                    .and_then(|entry| entry.components.get(component))
                    .is_some_and(|c| c.state.is_some());
                if reported_by_agent {
                    continue;
                }
                let reported = Reported {
                    version: self.strings.get(version),
                    state: None,
                    message: None,
                    drifted: false,
                    at: now,
                };
                if self.set_reported(&host.id, component, reported) {
                    writes.push(Write::HostComponent(HostComponentRecord {
                        host: host.id.to_string(),
                        component: component.to_string(),
                        version: version.to_string(),
                        state: None,
                        message: None,
                        drifted: false,
                        at: now,
                    }));
                }
            }
            ids.push(host.id);
        }
        for index in 0..self.rollouts.len() {
            if self.rollouts[index].is_active() {
                self.feed_hosts(index, &ids, now, writes);
            }
        }
        writes.push(Write::Event(NewEvent {
            rollout: None,
            at: now,
            actor: Some(actor.to_owned()),
            kind: "hosts_imported".to_owned(),
            data: serde_json::json!({ "imported": imported, "new": new }),
        }));
        self.arbitration_due = true;
        self.settle(now, writes);
        ImportResult { imported, new }
    }

    // ---- read-only access for the dashboard's views --------------------

    /// Every host, by id.
    pub fn host_entries(&self) -> impl Iterator<Item = (&str, &HostEntry)> + '_ {
        self.hosts.iter().map(|(id, entry)| (id.as_str(), entry))
    }

    /// One host, by id.
    pub fn host_entry(&self, id: &str) -> Option<&HostEntry> {
        self.hosts.get(id)
    }

    /// Every rollout, oldest first.
    pub fn rollout_entries(&self) -> &[RolloutEntry] {
        &self.rollouts
    }

    /// One rollout, by id.
    pub fn rollout_entry(&self, id: &str) -> Option<&RolloutEntry> {
        self.by_id.get(id).map(|&index| &self.rollouts[index])
    }
}

/// `r-12` → 12.
fn id_number(id: &str) -> Option<u64> {
    id.strip_prefix("r-")?.parse().ok()
}

/// The last [`MAX_MESSAGE_CHARS`] characters of a report's message: the
/// last lines of output are what explains a failure.
/// NUL characters (which PostgreSQL cannot store in text) become U+FFFD.
fn tail(message: &str) -> String {
    let count = message.chars().count();
    message
        .chars()
        .skip(count.saturating_sub(MAX_MESSAGE_CHARS))
        .map(|c| {
            if c == '\0' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_tail() {
        let long = "x".repeat(MAX_MESSAGE_CHARS) + "the end";
        let kept = tail(&long);
        assert_eq!(kept.chars().count(), MAX_MESSAGE_CHARS);
        assert!(kept.ends_with("the end"));
        assert_eq!(tail("a\0b"), "a\u{fffd}b");
    }
}
