//! The wire projections of the world: what the API and the metrics show
//! of memory (`sluice-api` types), computed under the read lock.

use std::collections::BTreeMap;

use sluice_api::admin::{ComponentList, ComponentView};
use sluice_api::host::{HostComponent, HostList, HostView};
use sluice_api::rollout::{
    GateReadingView, GateView, HostState, RolloutDetail, RolloutState, RolloutSummary, StageView,
    StratumView,
};
use sluice_core::rollout::{Phase, Schedule, Status};
use sluice_core::selection::stage_quota;
use sluice_core::selector::Selector;

use super::{from_labels, HostEntry, RolloutEntry, World, WorldError, STATE_NAMES};
use crate::clock::rfc3339;
use crate::metrics::Gauges;
use crate::vocabulary;

impl World {
    // ---- views ---------------------------------------------------------

    pub fn rollout_list(&self) -> Vec<RolloutSummary> {
        self.rollouts
            .iter()
            .map(|entry| self.summary(entry))
            .collect()
    }

    pub fn rollout_detail(&self, id: &str) -> Result<RolloutDetail, WorldError> {
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
        let hosts = vocabulary::host_counts(counts);
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
                    outcome: vocabulary::gate_outcome(reading.outcome),
                    evidence: reading.evidence,
                    comparison: reading.comparison.map(vocabulary::comparison),
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

    pub(super) fn summary(&self, entry: &RolloutEntry) -> RolloutSummary {
        let rollout = &entry.rollout;
        let plan = rollout.plan();
        let counts = rollout.counts();
        let index = self.by_id.get(rollout.id()).copied();
        let schedule = index.map_or(Schedule::None, |index| self.schedule_of(index, self.latest));
        let (queued, blocked) = match schedule {
            Schedule::Queued(waits) => {
                let waits: Vec<String> = waits.iter().map(ToString::to_string).collect();
                (Some(waits.join("; ")), None)
            }
            Schedule::Blocked(blocked) => (None, Some(blocked.to_string())),
            Schedule::Due { .. } => (Some("starts now".to_owned()), None),
            Schedule::None => (None, None),
        };
        RolloutSummary {
            id: rollout.id().to_owned(),
            name: plan.name.clone(),
            component: plan.component.clone(),
            version: plan.version.clone(),
            state: vocabulary::rollout_state(rollout.status()),
            stage: rollout.stage(),
            phase: rollout.phase().map(vocabulary::phase),
            held: rollout.held().map(ToString::to_string),
            waiting: rollout.waiting().map(|waiting| waiting.wait.to_string()),
            waiting_since: rollout.waiting().map(|waiting| rfc3339(waiting.since)),
            start_at: rollout.start_at().map(rfc3339),
            after: plan.after.as_ref().map(|after| after.name.clone()),
            queued,
            blocked,
            queue_position: index.and_then(|index| self.queue_position(index)),
            selected: rollout.selected(),
            admitted: rollout.admitted(),
            healthy: counts.healthy,
            failed: counts.failed,
            created_at: rfc3339(rollout.created_at()),
            updated_at: rfc3339(entry.updated_at),
        }
    }

    pub fn has_rollout(&self, id: &str) -> Result<(), WorldError> {
        self.index_of(id).map(drop)
    }

    /// Hosts matching `filter`, a page of them.
    pub fn host_list(&self, filter: &HostFilter<'_>, offset: usize, limit: usize) -> HostList {
        let mut total = 0u64;
        let mut hosts = Vec::new();
        for (id, entry) in self.hosts.iter() {
            if !filter.matches(entry) || (filter.pinned && !self.is_pinned(id)) {
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

    /// For a host the server knows (imported, or checked in before), the
    /// first of its labels that leaves `selector`: the label's key, its
    /// value (`None`: the host lacks it) and the requirement it breaks.
    pub fn known_labels_outside(
        &self,
        id: &str,
        selector: &Selector,
    ) -> Option<(String, Option<String>, String)> {
        let entry = self.hosts.get(id)?;
        let (key, requirement) = selector.unmet_by(|key| entry.labels.get(key))?;
        let value = entry.labels.get(key).map(str::to_owned);
        Some((key.to_owned(), value, requirement))
    }

    fn host_view(&self, id: &str, entry: &HostEntry) -> HostView {
        let components = entry
            .components
            .iter()
            .map(|(name, reported)| {
                let desired = self.resolve(name, id, Some(&entry.labels), Some(&reported.version));
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
                    version: reported.version.to_string(),
                    state: reported.state,
                    message: reported.message.as_deref().map(str::to_owned),
                    drifted: reported.drifted,
                    desired: desired.map(|d| d.version),
                    rollout,
                    pinned: self.pin_of(id, name).is_some(),
                };
                (name.to_owned(), view)
            })
            .collect();
        HostView {
            id: id.to_owned(),
            labels: from_labels(&entry.labels),
            components,
            last_seen: entry.last_seen.map(rfc3339),
            pins: self.pins_of(id),
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
                drifted: entry.drifted,
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
        for (id, entry) in self.hosts.iter() {
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
                id.to_string(),
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
        let mut by_state: BTreeMap<RolloutState, u64> =
            RolloutState::ALL.iter().map(|&state| (state, 0)).collect();
        let mut rollout_hosts = Vec::new();
        for entry in &self.rollouts {
            *by_state
                .entry(vocabulary::rollout_state(entry.rollout.status()))
                .or_default() += 1;
            if entry.is_active() {
                let counts = vocabulary::host_counts(entry.rollout.counts());
                let id = entry.rollout.id();
                for &state in HostState::ALL {
                    rollout_hosts.push((id.to_owned(), state.as_str(), counts.get(state)));
                }
            }
        }
        let mut hosts = Vec::new();
        let mut drifted = Vec::new();
        for (name, entry) in &self.components {
            for (slot, state) in STATE_NAMES.iter().enumerate() {
                hosts.push((name.clone(), *state, entry.states[slot]));
            }
            drifted.push((name.clone(), entry.drifted));
        }
        Gauges {
            rollouts: by_state
                .into_iter()
                .map(|(state, count)| (state.as_str(), count))
                .collect(),
            hosts,
            drifted,
            rollout_hosts,
        }
    }

    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    pub fn rollout_count(&self) -> usize {
        self.rollouts.len()
    }
}

/// Which hosts a listing shows: those matching a label selector, reporting
/// (or imported with) a component, and, with `drifted`, whose agent reports
/// that component (any component, without one) drifted.
#[derive(Debug, Clone, Copy)]
pub struct HostFilter<'a> {
    pub selector: &'a Selector,
    pub component: Option<&'a str>,
    pub drifted: bool,
    /// Only hosts with a pin (tested by the world, which holds the pins).
    pub pinned: bool,
}

impl HostFilter<'_> {
    pub fn matches(&self, entry: &HostEntry) -> bool {
        if !self.selector.is_empty() && !self.selector.matches(&entry.labels) {
            return false;
        }
        match (self.component, self.drifted) {
            (Some(component), false) => entry.components.contains_key(component),
            (Some(component), true) => entry
                .components
                .get(component)
                .is_some_and(|reported| reported.drifted),
            (None, false) => true,
            (None, true) => entry
                .components
                .iter()
                .any(|(_, reported)| reported.drifted),
        }
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
}
