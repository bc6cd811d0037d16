//! The server's memory: the fleet, the components, the rollouts and the
//! freeze, and every change to them.
//!
//! Each change takes its `now` and pushes the store writes that make it
//! durable onto a `Vec<Write>`; the caller queues them with the group commit
//! before it lets go of the lock (see [`crate::commit`]). Queries answer
//! from memory only. Nothing here does IO or awaits.
//!
//! The desired version of a component for a host (the spec's rule): the
//! newest rollout of the component with an opinion on the host decides (its
//! target once admitted; after a rollback, what the host ran before); else
//! the component's stable version; else, while none is set, the version the
//! host reports.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jiff::Timestamp;
use sluice_api::admin::{ComponentList, ComponentView, FreezeView};
use sluice_api::agent::{CheckinRequest, CheckinResponse, Desired, ReportState};
use sluice_api::host::{DesiredMap, HostComponent, HostList, HostView, ImportResult};
use sluice_api::rollout::{
    GateReadingView, GateView, RolloutDetail, RolloutSummary, StageView, StratumView,
};
use sluice_core::fleet::{Host, Labels};
use sluice_core::plan::Plan;
use sluice_core::rollout::{
    Action, EventKind, GateOutcome, GateResult, Health, HostState, Input, Phase, Rejected, Rollout,
    Status,
};
use sluice_core::selection::stage_quota;
use sluice_core::selector::Selector;
use sluice_store::{
    ComponentRecord, FreezeRecord, HostComponentRecord, HostRecord, Loaded, NewEvent,
    ReportedState, RolloutRecord, Write,
};

use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::metrics::Gauges;
use crate::persist;

/// Longest message kept from a check-in report: its last lines.
const MAX_MESSAGE_CHARS: usize = 4096;

/// How stale the stored `last_seen` of a host may get. A check-in that
/// changes nothing else writes nothing durable unless the stored time is
/// this old: after a crash, a host's `last_seen` may be this much older than
/// its last check-in (a clean shutdown saves them all). Reports, labels and
/// every decision are still durable before the check-in is answered.
const LAST_SEEN_SAVE_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// Converts wire labels to the engine's: the one place that knows both.
pub fn to_labels(labels: &BTreeMap<String, String>) -> Labels {
    labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

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

/// One host as the server knows it.
#[derive(Debug, Clone, Default)]
pub struct HostEntry {
    pub labels: Labels,
    /// `None` for hosts imported but never checked in.
    pub last_seen: Option<Timestamp>,
    /// The `last_seen` the store holds (see [`LAST_SEEN_SAVE_EVERY`]).
    saved_seen: Option<Timestamp>,
    /// Component → what the host last reported (or was imported with).
    pub components: BTreeMap<String, Reported>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub version: String,
    /// `None` for a version from an import.
    pub state: Option<ReportState>,
    pub message: Option<String>,
    pub at: Timestamp,
}

impl Reported {
    fn same_report(&self, other: &Reported) -> bool {
        self.version == other.version && self.state == other.state && self.message == other.message
    }
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

pub fn report_state_name(state: ReportState) -> &'static str {
    STATE_NAMES[state_slot(Some(state))]
}

/// A wire state as the store keeps it.
fn stored_state(state: ReportState) -> ReportedState {
    match state {
        ReportState::Ok => ReportedState::Ok,
        ReportState::Applying => ReportedState::Applying,
        ReportState::Failed => ReportedState::Failed,
    }
}

/// A stored state on the wire.
fn wire_state(state: ReportedState) -> ReportState {
    match state {
        ReportedState::Ok => ReportState::Ok,
        ReportedState::Applying => ReportState::Applying,
        ReportedState::Failed => ReportState::Failed,
    }
}

impl ComponentEntry {
    fn count(&mut self, reported: &Reported, add: bool) {
        let slot = &mut self.states[state_slot(reported.state)];
        let versions = self.versions.entry(reported.version.clone()).or_default();
        if add {
            *slot += 1;
            *versions += 1;
        } else {
            *slot = slot.saturating_sub(1);
            *versions = versions.saturating_sub(1);
            if *versions == 0 {
                self.versions.remove(&reported.version);
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

    /// Whether the rollout still takes reports and ticks: while it is not
    /// terminal, and after it stopped while hosts it told something have
    /// not answered yet (to record them healthy, reverted or failed).
    fn listens(&self) -> bool {
        if !self.rollout.status().is_terminal() {
            return true;
        }
        let counts = self.rollout.counts();
        counts.instructed + counts.reverting > 0
    }

    fn is_active(&self) -> bool {
        !self.rollout.status().is_terminal()
    }
}

/// Applies inputs to a rollout and records what they changed: the record of
/// every host an outcome names, the header if it changed, the events.
/// Returns whether the rollout completed.
///
/// Several inputs (a whole inventory) are recorded together, the header
/// once. The header changes only with an event or a new stratum (which
/// comes with a host joining, as waiting), so it is compared only then. A
/// rejected input changes nothing and ends the run; only operator actions,
/// freezes and gate results are ever rejected, and they come alone.
fn drive(
    entry: &mut RolloutEntry,
    now: Timestamp,
    inputs: impl IntoIterator<Item = Input>,
    writes: &mut Vec<Write>,
) -> Result<bool, Rejected> {
    let mut hosts: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut events = Vec::new();
    let mut header_may_change = false;
    let mut rejected = None;
    for input in inputs {
        match entry.rollout.handle(now, input) {
            Ok(outcome) => {
                header_may_change |= !outcome.events.is_empty();
                for change in outcome.hosts {
                    header_may_change |= change.state == HostState::Waiting;
                    if seen.insert(change.id.clone()) {
                        hosts.push(change.id);
                    }
                }
                events.extend(outcome.events);
            }
            Err(error) => {
                rejected = Some(error);
                break;
            }
        }
    }
    if !hosts.is_empty() || !events.is_empty() {
        entry.updated_at = now;
    }
    for host in &hosts {
        if let Some(record) = persist::host_record(&entry.rollout, host) {
            writes.push(Write::RolloutHost(record));
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
    for event in &events {
        completed |= matches!(event.kind, EventKind::Completed);
        writes.push(Write::Event(persist::new_event(Some(&id), event)));
    }
    match rejected {
        Some(error) => Err(error),
        None => Ok(completed),
    }
}

/// Everything the server holds in memory.
#[derive(Debug, Default)]
pub struct World {
    hosts: BTreeMap<String, HostEntry>,
    components: BTreeMap<String, ComponentEntry>,
    /// Oldest first.
    rollouts: Vec<RolloutEntry>,
    by_id: HashMap<String, usize>,
    freeze: Option<FreezeRecord>,
    /// The number of the next rollout id (`r-N`).
    next_seq: u64,
}

impl World {
    // ---- loading -------------------------------------------------------

    /// Rebuilds memory from the store. Fails, naming the rollout, when a
    /// rollout cannot be restored: serving without it could admit hosts
    /// beyond its quotas or forget what its hosts should run.
    pub fn load(loaded: Loaded) -> anyhow::Result<World> {
        let mut world = World {
            next_seq: 1,
            ..World::default()
        };
        for host in loaded.hosts {
            let last_seen = host.last_seen;
            world.hosts.insert(
                host.id,
                HostEntry {
                    labels: to_labels(&host.labels),
                    last_seen,
                    saved_seen: last_seen,
                    components: BTreeMap::new(),
                },
            );
        }
        for record in loaded.host_components {
            let reported = Reported {
                version: record.version,
                state: record.state.map(wire_state),
                message: record.message,
                at: record.at,
            };
            world.set_reported(&record.host, &record.component, reported);
        }
        for component in loaded.components {
            world.components.entry(component.name).or_default().stable = component.stable_version;
        }
        world.freeze = loaded.freeze;

        let mut records: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
        for record in loaded.rollout_hosts {
            records
                .entry(record.rollout)
                .or_default()
                .push(record.record);
        }
        let mut rollouts = loaded.rollouts;
        rollouts.sort_by(|a, b| {
            (&a.created_at, id_number(&a.id)).cmp(&(&b.created_at, id_number(&b.id)))
        });
        for record in rollouts {
            let hosts = records.remove(&record.id).unwrap_or_default();
            let rollout = persist::restore(&record.id, &record.plan, &record.header, hosts)?;
            let updated_at = record.updated_at;
            world.next_seq = world.next_seq.max(id_number(&record.id).unwrap_or(0) + 1);
            world.insert_rollout(RolloutEntry::new(rollout, record.plan, updated_at));
        }
        Ok(world)
    }

    /// After a restart: feeds the inventory (hosts that joined while a
    /// record was not yet durable) and the freeze to every active rollout.
    pub fn resume(&mut self, now: Timestamp, writes: &mut Vec<Write>) {
        for index in 0..self.rollouts.len() {
            if self.rollouts[index].is_active() {
                self.feed_inventory(index, now, writes);
            }
        }
    }

    fn insert_rollout(&mut self, entry: RolloutEntry) -> usize {
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

    fn drive(
        &mut self,
        index: usize,
        now: Timestamp,
        input: Input,
        writes: &mut Vec<Write>,
    ) -> Result<(), Rejected> {
        if drive(&mut self.rollouts[index], now, [input], writes)? {
            self.complete(index, writes);
        }
        Ok(())
    }

    /// A completed rollout's target becomes the component's stable version.
    fn complete(&mut self, index: usize, writes: &mut Vec<Write>) {
        let plan = self.rollouts[index].rollout.plan();
        let (name, version) = (plan.component.clone(), plan.version.clone());
        tracing::info!(rollout = %self.rollouts[index].rollout.id(), component = %name, %version, "rollout completed; stable version set");
        self.components.entry(name.clone()).or_default().stable = Some(version.clone());
        writes.push(Write::Component(ComponentRecord {
            name,
            stable_version: Some(version),
        }));
    }

    /// Feeds every known host, then the freeze, to rollout `index`: hosts
    /// it does not know yet join it.
    fn feed_inventory(&mut self, index: usize, now: Timestamp, writes: &mut Vec<Write>) {
        let ids: Vec<String> = self.hosts.keys().cloned().collect();
        self.feed_hosts(index, &ids, now, writes);
    }

    /// Feeds `ids` (known hosts), then the freeze, to rollout `index`.
    fn feed_hosts(
        &mut self,
        index: usize,
        ids: &[String],
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) {
        let component = self.rollouts[index].rollout.plan().component.clone();
        let hosts = &self.hosts;
        let inputs = ids.iter().filter_map(|id| {
            let host = hosts.get(id)?;
            Some(Input::Host {
                id: id.clone(),
                labels: host.labels.clone(),
                version: host.components.get(&component).map(|c| c.version.clone()),
            })
        });
        let freeze = self.freeze.as_ref().map(|freeze| Input::Freeze {
            on: true,
            actor: freeze.actor.clone(),
            reason: freeze.reason.clone(),
        });
        match drive(&mut self.rollouts[index], now, inputs.chain(freeze), writes) {
            Ok(true) => self.complete(index, writes),
            Ok(false) => {}
            Err(rejected) => tracing::error!(%rejected, "feeding the inventory"),
        }
    }

    /// Time passes for every rollout that listens.
    pub fn tick(&mut self, now: Timestamp, writes: &mut Vec<Write>) {
        for index in 0..self.rollouts.len() {
            if self.rollouts[index].listens() {
                if let Err(rejected) = self.drive(index, now, Input::Tick, writes) {
                    tracing::error!(%rejected, "tick rejected");
                }
            }
        }
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
        if let Err(rejected) = self.drive(index, now, Input::Gate(result), writes) {
            tracing::error!(%rejected, "gate result rejected");
        }
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
        let host = match self.hosts.get_mut(id) {
            Some(host) => host,
            None => self.hosts.entry(id.clone()).or_default(),
        };
        let relabelled = !same_labels(&host.labels, &request.labels);
        if relabelled {
            host.labels = to_labels(&request.labels);
        }
        host.last_seen = Some(now);
        let stale = host
            .saved_seen
            .is_none_or(|saved| now.duration_since(saved) >= LAST_SEEN_SAVE_EVERY);
        if relabelled || stale {
            host.saved_seen = Some(now);
            writes.push(Write::Host(HostRecord {
                id: id.clone(),
                labels: request.labels.clone(),
                last_seen: Some(now),
            }));
        }
        let labels = host.labels.clone();
        for (component, report) in &request.components {
            let reported = Reported {
                version: report.version.clone(),
                state: Some(report.state),
                message: report.message.as_deref().map(tail),
                at: now,
            };
            if self.set_reported(id, component, reported.clone()) {
                writes.push(Write::HostComponent(HostComponentRecord {
                    host: id.clone(),
                    component: component.clone(),
                    version: reported.version,
                    state: reported.state.map(stored_state),
                    message: reported.message,
                    at: now,
                }));
            }
        }
        for index in 0..self.rollouts.len() {
            let entry = &self.rollouts[index];
            let component = &entry.rollout.plan().component;
            let report = request.components.get(component);
            let feed_host = entry.is_active();
            let feed_report = report.is_some() && entry.listens();
            if feed_host {
                let input = Input::Host {
                    id: id.clone(),
                    labels: labels.clone(),
                    version: report.map(|r| r.version.clone()),
                };
                let _ = self.drive(index, now, input, writes);
            }
            if let (true, Some(report)) = (feed_report, report) {
                let input = Input::Report {
                    id: id.clone(),
                    version: report.version.clone(),
                    health: match report.state {
                        ReportState::Ok => Health::Ok,
                        ReportState::Applying => Health::Applying,
                        ReportState::Failed => Health::Failed,
                    },
                    message: report.message.as_deref().map(tail),
                };
                let _ = self.drive(index, now, input, writes);
            }
        }
        CheckinResponse {
            components: self.desired(id),
            next_checkin_s,
        }
    }

    /// Saves every `last_seen` the store does not hold yet (at shutdown).
    pub fn save_last_seen(&mut self, writes: &mut Vec<Write>) {
        for (id, host) in &mut self.hosts {
            if host.last_seen != host.saved_seen {
                host.saved_seen = host.last_seen;
                writes.push(Write::Host(HostRecord {
                    id: id.clone(),
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
        let stats = self.components.entry(component.to_owned()).or_default();
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
                entry.components.insert(component.to_owned(), reported);
                true
            }
        }
    }

    // ---- desired versions ----------------------------------------------

    /// The desired version of every component sluice has an opinion on for
    /// `host`: those it reports, those with a stable version, and those of
    /// rollouts that admitted it.
    pub fn desired(&self, host: &str) -> BTreeMap<String, Desired> {
        let entry = self.hosts.get(host);
        let mut names: BTreeSet<&str> = BTreeSet::new();
        if let Some(entry) = entry {
            names.extend(entry.components.keys().map(String::as_str));
        }
        for (name, component) in &self.components {
            if component.stable.is_some() {
                names.insert(name);
            }
        }
        for rollout in &self.rollouts {
            if rollout.rollout.desired_version(host).is_some() {
                names.insert(&rollout.rollout.plan().component);
            }
        }
        names
            .into_iter()
            .filter_map(|name| {
                let reported = entry
                    .and_then(|e| e.components.get(name))
                    .map(|c| c.version.as_str());
                Some((name.to_owned(), self.resolve(name, host, reported)?))
            })
            .collect()
    }

    fn resolve(&self, component: &str, host: &str, reported: Option<&str>) -> Option<Desired> {
        if let Some(entry) = self.components.get(component) {
            for &index in entry.rollouts.iter().rev() {
                let rollout = &self.rollouts[index].rollout;
                if let Some(version) = rollout.desired_version(host) {
                    let plan = rollout.plan();
                    let payload = if version == plan.version {
                        plan.payload.clone()
                    } else {
                        self.payload_of(component, version)
                    };
                    return Some(Desired {
                        version: version.to_owned(),
                        rollout: Some(rollout.id().to_owned()),
                        payload,
                    });
                }
            }
            if let Some(stable) = &entry.stable {
                return Some(Desired {
                    version: stable.clone(),
                    rollout: None,
                    payload: self.payload_of(component, stable),
                });
            }
        }
        reported.map(|version| Desired {
            version: version.to_owned(),
            rollout: None,
            payload: None,
        })
    }

    /// The payload of a version: that of the newest completed rollout to it.
    fn payload_of(&self, component: &str, version: &str) -> Option<serde_json::Value> {
        let entry = self.components.get(component)?;
        entry
            .rollouts
            .iter()
            .rev()
            .map(|&index| &self.rollouts[index].rollout)
            .find(|rollout| {
                rollout.plan().version == version && *rollout.status() == Status::Completed
            })
            .and_then(|rollout| rollout.plan().payload.clone())
    }

    pub fn desired_map(&self, host: &str) -> Option<DesiredMap> {
        self.hosts.get(host)?;
        Some(
            self.desired(host)
                .into_iter()
                .map(|(name, desired)| (name, desired.version))
                .collect(),
        )
    }

    // ---- rollouts ------------------------------------------------------

    /// Creates a pending rollout of `plan` and feeds it the inventory.
    pub fn create_rollout(
        &mut self,
        source: String,
        plan: Plan,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) -> Result<String, ApiError> {
        if let Some(other) = self
            .rollouts
            .iter()
            .find(|entry| entry.rollout.plan().name == plan.name)
        {
            return Err(ApiError::Conflict(format!(
                "a rollout named {:?} already exists ({}, {}); plan names are unique, give this plan another name",
                plan.name,
                other.rollout.id(),
                other.rollout.status().name()
            )));
        }
        if let Some(message) = self.overlap(&plan) {
            return Err(ApiError::Conflict(message));
        }
        let id = format!("r-{}", self.next_seq);
        self.next_seq += 1;
        let rollout = Rollout::new(id.clone(), plan, now);
        let created = rollout.created_event();
        let entry = RolloutEntry::new(rollout, source, now);
        writes.push(Write::Rollout(entry.record()));
        writes.push(Write::Event(persist::new_event(Some(&id), &created)));
        let index = self.insert_rollout(entry);
        self.feed_inventory(index, now, writes);
        tracing::info!(rollout = %id, plan = %self.rollouts[index].rollout.plan().name, hosts = self.rollouts[index].rollout.selected(), "rollout created");
        Ok(id)
    }

    /// Why `plan` may not start beside an active rollout of its component
    /// (they would both own some host), or `None`.
    fn overlap(&self, plan: &Plan) -> Option<String> {
        let entry = self.components.get(&plan.component)?;
        for &index in &entry.rollouts {
            let other = &self.rollouts[index];
            if !other.is_active() {
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
                return Some(format!(
                    "rollout {} ({:?}, {}) already changes {} on hosts this plan selects ({why}); complete, abort or roll it back first, or choose a selector that does not overlap",
                    other.rollout.id(),
                    other.rollout.plan().name,
                    other.rollout.status().name(),
                    plan.component
                ));
            }
        }
        None
    }

    /// An operator action.
    pub fn act(
        &mut self,
        id: &str,
        action: Action,
        actor: &str,
        reason: &str,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) -> Result<RolloutSummary, ApiError> {
        let index = self.index_of(id)?;
        let input = Input::Action {
            action,
            actor: actor.to_owned(),
            reason: reason.to_owned(),
        };
        self.drive(index, now, input, writes)
            .map_err(|rejected| match rejected {
                Rejected::EmptyReason { .. } => ApiError::bad_field("reason", rejected.to_string()),
                other => ApiError::Conflict(other.to_string()),
            })?;
        tracing::info!(rollout = %id, action = action.name(), %actor, %reason, "operator action");
        Ok(self.summary(&self.rollouts[index]))
    }

    fn index_of(&self, id: &str) -> Result<usize, ApiError> {
        self.by_id.get(id).copied().ok_or_else(|| {
            ApiError::NotFound(format!(
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
                if let Err(rejected) = self.drive(index, now, input, writes) {
                    tracing::error!(%rejected, "freeze rejected");
                }
            }
        }
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
            let entry = match self.hosts.get_mut(&host.id) {
                Some(entry) => entry,
                None => {
                    new += 1;
                    self.hosts.entry(host.id.clone()).or_default()
                }
            };
            if entry.labels != host.labels {
                entry.labels = host.labels.clone();
            }
            entry.saved_seen = entry.last_seen;
            writes.push(Write::Host(HostRecord {
                id: host.id.clone(),
                labels: from_labels(&host.labels),
                last_seen: entry.last_seen,
            }));
            for (component, version) in host.components.iter() {
                let reported_by_agent = self.hosts[&host.id]
                    .components
                    .get(component)
                    .is_some_and(|c| c.state.is_some());
                if reported_by_agent {
                    continue;
                }
                let reported = Reported {
                    version: version.to_string(),
                    state: None,
                    message: None,
                    at: now,
                };
                if self.set_reported(&host.id, component, reported) {
                    writes.push(Write::HostComponent(HostComponentRecord {
                        host: host.id.clone(),
                        component: component.to_string(),
                        version: version.to_string(),
                        state: None,
                        message: None,
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
        ImportResult { imported, new }
    }

    // ---- views ---------------------------------------------------------

    pub fn rollout_list(&self) -> Vec<RolloutSummary> {
        self.rollouts
            .iter()
            .map(|entry| self.summary(entry))
            .collect()
    }

    pub fn rollout_detail(&self, id: &str) -> Result<RolloutDetail, ApiError> {
        let entry = &self.rollouts[self.index_of(id)?];
        let rollout = &entry.rollout;
        let plan = rollout.plan();
        let strata = rollout.strata();
        let counts = rollout.counts();
        let stages = plan
            .stages
            .iter()
            .map(|stage| StageView {
                name: stage.name.clone(),
                percent: stage.percent.as_f64(),
                bake_s: stage.bake.as_secs(),
                approve: stage.approve,
                quota: strata
                    .iter()
                    .map(|s| stage_quota(stage.percent, s.size, plan.strategy.min_per_stratum))
                    .sum(),
            })
            .collect();
        let mut strata_views: Vec<StratumView> = strata
            .iter()
            .map(|s| StratumView {
                key: s.key.display(&plan.strategy.spread).to_string(),
                size: s.size,
                quota: s.quota,
                admitted: s.admitted,
                healthy: s.healthy,
                failed: s.failed,
            })
            .collect();
        strata_views.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.key.cmp(&b.key)));
        let hosts = [
            ("waiting", counts.waiting),
            ("instructed", counts.instructed),
            ("healthy", counts.healthy),
            ("failed", counts.failed),
            ("reverting", counts.reverting),
            ("reverted", counts.reverted),
        ]
        .into_iter()
        .map(|(name, count)| (name.to_owned(), count))
        .collect();
        let gates = rollout
            .gates()
            .into_iter()
            .map(|gate| GateView {
                name: gate.name,
                report_only: gate.report_only,
                streak: gate.streak,
                consecutive: gate.consecutive,
                latest: gate.latest.map(|reading| GateReadingView {
                    at: rfc3339(reading.at),
                    outcome: outcome_name(reading.outcome).to_owned(),
                    evidence: reading.evidence,
                }),
            })
            .collect();
        let stage = rollout.stage();
        Ok(RolloutDetail {
            summary: self.summary(entry),
            reason: match rollout.status() {
                Status::Paused { reason, .. } => Some(reason.clone()),
                _ => None,
            },
            bake_until: match rollout.phase() {
                Some(Phase::Baking { until }) => Some(rfc3339(until)),
                _ => None,
            },
            stages,
            hosts,
            in_flight: rollout.in_flight(),
            max_in_flight: rollout.max_in_flight().min(rollout.selected()),
            stage_failures: stage.map_or(0, |stage| rollout.stage_failures(stage)),
            allowed_failures: if stage.is_some() {
                rollout.allowed_failures()
            } else {
                0
            },
            strata: strata_views,
            gates,
            plan: entry.source.clone(),
        })
    }

    fn summary(&self, entry: &RolloutEntry) -> RolloutSummary {
        let rollout = &entry.rollout;
        let plan = rollout.plan();
        let counts = rollout.counts();
        RolloutSummary {
            id: rollout.id().to_owned(),
            name: plan.name.clone(),
            component: plan.component.clone(),
            version: plan.version.clone(),
            state: rollout.status().name().to_owned(),
            stage: rollout.stage(),
            phase: rollout.phase().map(|phase| phase_name(phase).to_owned()),
            held: rollout.held().map(ToString::to_string),
            selected: rollout.selected(),
            admitted: rollout.admitted(),
            healthy: counts.healthy,
            failed: counts.failed,
            created_at: rfc3339(rollout.created_at()),
            updated_at: rfc3339(entry.updated_at),
        }
    }

    pub fn has_rollout(&self, id: &str) -> Result<(), ApiError> {
        self.index_of(id).map(drop)
    }

    /// Hosts matching `selector` (and reporting `component`), a page of them.
    pub fn host_list(
        &self,
        selector: &Selector,
        component: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> HostList {
        let mut total = 0u64;
        let mut hosts = Vec::new();
        for (id, entry) in &self.hosts {
            if !selector.is_empty() && !selector.matches(&entry.labels) {
                continue;
            }
            if component.is_some_and(|c| !entry.components.contains_key(c)) {
                continue;
            }
            if total as usize >= offset && hosts.len() < limit {
                hosts.push(self.host_view(id, entry));
            }
            total += 1;
        }
        HostList { hosts, total }
    }

    pub fn host(&self, id: &str) -> Option<HostView> {
        Some(self.host_view(id, self.hosts.get(id)?))
    }

    pub fn has_host(&self, id: &str) -> bool {
        self.hosts.contains_key(id)
    }

    fn host_view(&self, id: &str, entry: &HostEntry) -> HostView {
        let components = entry
            .components
            .iter()
            .map(|(name, reported)| {
                let desired = self.resolve(name, id, Some(&reported.version));
                let rollout = self.components.get(name).and_then(|component| {
                    component
                        .rollouts
                        .iter()
                        .rev()
                        .map(|&index| &self.rollouts[index].rollout)
                        .find(|rollout| rollout.host(id).is_some())
                        .map(|rollout| rollout.id().to_owned())
                });
                let view = HostComponent {
                    version: reported.version.clone(),
                    state: reported.state,
                    message: reported.message.clone(),
                    desired: desired.map(|d| d.version),
                    rollout,
                };
                (name.clone(), view)
            })
            .collect();
        HostView {
            id: id.to_owned(),
            labels: from_labels(&entry.labels),
            components,
            last_seen: entry.last_seen.map(rfc3339),
        }
    }

    pub fn component_list(&self) -> ComponentList {
        let components = self
            .components
            .iter()
            .map(|(name, entry)| ComponentView {
                name: name.clone(),
                stable_version: entry.stable.clone(),
                versions: entry.versions.clone(),
                active_rollouts: entry
                    .rollouts
                    .iter()
                    .map(|&index| &self.rollouts[index])
                    .filter(|rollout| rollout.is_active())
                    .map(|rollout| rollout.rollout.id().to_owned())
                    .collect(),
            })
            .collect();
        ComponentList { components }
    }

    /// An Ansible dynamic inventory: one group per component and desired
    /// version (`docker_engine_17_03_1`: names made of letters, digits and
    /// underscores, as Ansible wants), and per host its labels and desired
    /// versions in `_meta.hostvars`.
    pub fn ansible_inventory(&self) -> serde_json::Value {
        let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        let mut hostvars = serde_json::Map::new();
        for (id, entry) in &self.hosts {
            let desired = self.desired(id);
            let mut versions = serde_json::Map::new();
            for (component, desired) in desired {
                groups
                    .entry(group_name(&component, &desired.version))
                    .or_default()
                    .push(id);
                versions.insert(component, serde_json::Value::String(desired.version));
            }
            hostvars.insert(
                id.clone(),
                serde_json::json!({
                    "sluice_labels": from_labels(&entry.labels),
                    "sluice_desired": versions,
                }),
            );
        }
        let mut inventory = serde_json::Map::new();
        for (group, hosts) in groups {
            inventory.insert(group, serde_json::json!({ "hosts": hosts }));
        }
        inventory.insert(
            "_meta".to_owned(),
            serde_json::json!({ "hostvars": hostvars }),
        );
        serde_json::Value::Object(inventory)
    }

    /// The gauges of `/metrics`.
    pub fn gauges(&self) -> Gauges {
        let mut by_state: BTreeMap<&'static str, u64> = sluice_api::rollout::ROLLOUT_STATES
            .into_iter()
            .map(|state| (state, 0))
            .collect();
        let mut rollout_hosts = Vec::new();
        for entry in &self.rollouts {
            *by_state.entry(entry.rollout.status().name()).or_default() += 1;
            if entry.is_active() {
                let counts = entry.rollout.counts();
                let id = entry.rollout.id();
                for (state, count) in [
                    ("waiting", counts.waiting),
                    ("instructed", counts.instructed),
                    ("healthy", counts.healthy),
                    ("failed", counts.failed),
                    ("reverting", counts.reverting),
                    ("reverted", counts.reverted),
                ] {
                    rollout_hosts.push((id.to_owned(), state, count));
                }
            }
        }
        let mut hosts = Vec::new();
        for (name, entry) in &self.components {
            for (slot, state) in STATE_NAMES.iter().enumerate() {
                hosts.push((name.clone(), *state, entry.states[slot]));
            }
        }
        Gauges {
            rollouts: by_state.into_iter().collect(),
            hosts,
            rollout_hosts,
        }
    }

    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    // ---- read-only access for the dashboard's views --------------------

    /// Every host, by id.
    pub fn host_entries(&self) -> impl Iterator<Item = (&str, &HostEntry)> + '_ {
        self.hosts.iter().map(|(id, entry)| (id.as_str(), entry))
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
fn tail(message: &str) -> String {
    let count = message.chars().count();
    if count <= MAX_MESSAGE_CHARS {
        return message.to_owned();
    }
    message.chars().skip(count - MAX_MESSAGE_CHARS).collect()
}

pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Progressing => "progressing",
        Phase::Baking { .. } => "baking",
        Phase::AwaitingApproval { .. } => "awaiting_approval",
    }
}

pub fn outcome_name(outcome: GateOutcome) -> &'static str {
    match outcome {
        GateOutcome::Pass => "pass",
        GateOutcome::Fail => "fail",
        GateOutcome::NoData => "no_data",
    }
}

/// An Ansible group name: letters, digits and underscores.
fn group_name(component: &str, version: &str) -> String {
    format!("{component}_{version}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_identifiers() {
        assert_eq!(
            group_name("docker-engine", "17.03.1"),
            "docker_engine_17_03_1"
        );
    }

    #[test]
    fn messages_keep_their_tail() {
        let long = "x".repeat(MAX_MESSAGE_CHARS) + "the end";
        let kept = tail(&long);
        assert_eq!(kept.chars().count(), MAX_MESSAGE_CHARS);
        assert!(kept.ends_with("the end"));
    }
}
