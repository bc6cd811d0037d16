//! The desired version of a component for a host — the spec's rule, in one
//! place:
//!
//! 0. a pin of the host's component (`sluice hosts pin`) decides while it
//!    lasts;
//! 1. the newest rollout of the component with an opinion on the host
//!    decides: its target once it admitted the host; after a rollback, what
//!    the host ran before; once completed, its target for every host its
//!    selector covers (a host that joins later and matches gets it too);
//! 2. else the component's stable version;
//! 3. else, while none is set, the version the host reports.
//!
//! A completed rollout therefore changes only the hosts it covered. The
//! stable version moves when a rollout covered every host that has the
//! component, or explicitly ([`World::set_stable`]), after saying how many
//! hosts would change at once.

use std::collections::BTreeMap;

use jiff::Timestamp;
use sluice_api::admin::StableChange;
use sluice_api::agent::Desired;
use sluice_api::host::DesiredMap;
use sluice_core::fleet::Labels;
use sluice_core::rollout::{Rollout, Status};
use sluice_store::{ComponentRecord, NewEvent, Write};

use super::{World, WorldError};

/// Longest version a stable version may name.
const MAX_VERSION_CHARS: usize = sluice_api::admin::MAX_STABLE_VERSION_LENGTH;

/// What `rollout` decides for `host` (whose labels are `labels`), if
/// anything.
fn decision<'r>(rollout: &'r Rollout, host: &str, labels: Option<&Labels>) -> Option<&'r str> {
    rollout.desired_version(host).or_else(|| {
        let covers = *rollout.status() == Status::Completed
            && labels.is_some_and(|labels| rollout.plan().selector.matches(labels));
        covers.then_some(rollout.plan().version.as_str())
    })
}

impl World {
    /// The desired version of every component sluice has an opinion on for
    /// `host`: those it reports, those with a stable version, and those of
    /// rollouts that decide for it. (Answered at every check-in: the host is
    /// looked up once.)
    pub fn desired(&self, host: &str) -> BTreeMap<String, Desired> {
        let entry = self.hosts.get(host);
        let labels = entry.map(|entry| &entry.labels);
        let mut desired = BTreeMap::new();
        if let Some(entry) = entry {
            for (name, reported) in entry.components.iter() {
                if let Some(version) = self.resolve(name, host, labels, Some(&reported.version)) {
                    desired.insert(name.to_owned(), version);
                }
            }
        }
        for (name, component) in &self.components {
            if component.stable.is_some() && !desired.contains_key(name) {
                if let Some(version) = self.resolve(name, host, labels, None) {
                    desired.insert(name.clone(), version);
                }
            }
        }
        for entry in &self.rollouts {
            let rollout = &entry.rollout;
            let name = &rollout.plan().component;
            if !desired.contains_key(name) && decision(rollout, host, labels).is_some() {
                if let Some(version) = self.resolve(name, host, labels, None) {
                    desired.insert(name.clone(), version);
                }
            }
        }
        for name in self.pins.get(host).into_iter().flat_map(|pins| pins.keys()) {
            if !desired.contains_key(name) {
                if let Some(version) = self.resolve(name, host, labels, None) {
                    desired.insert(name.clone(), version);
                }
            }
        }
        desired
    }

    /// The desired version of `component` for `host`, whose labels are
    /// `labels` and which reports `reported` (see the module's rule).
    pub(super) fn resolve(
        &self,
        component: &str,
        host: &str,
        labels: Option<&Labels>,
        reported: Option<&str>,
    ) -> Option<Desired> {
        if let Some(pin) = self.pin_of(host, component) {
            return Some(Desired {
                version: pin.version.clone(),
                rollout: None,
                payload: self.pinned_payload(component, &pin.version),
            });
        }
        if let Some(desired) = self.decided(component, host, labels) {
            return Some(desired);
        }
        if let Some(stable) = self.components.get(component)?.stable.as_ref() {
            return Some(Desired {
                version: stable.clone(),
                rollout: None,
                payload: self.payload_of(component, stable),
            });
        }
        reported.map(|version| Desired {
            version: version.to_owned(),
            rollout: None,
            payload: None,
        })
    }

    /// What the newest rollout with an opinion on `host` decides for it.
    fn decided(&self, component: &str, host: &str, labels: Option<&Labels>) -> Option<Desired> {
        let entry = self.components.get(component)?;
        entry.rollouts.iter().rev().find_map(|&index| {
            let rollout = &self.rollouts[index].rollout;
            let version = decision(rollout, host, labels)?;
            let plan = rollout.plan();
            let payload = if version == plan.version {
                plan.payload.clone()
            } else {
                self.payload_of(component, version)
            };
            Some(Desired {
                version: version.to_owned(),
                rollout: Some(rollout.id().to_owned()),
                payload,
            })
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

    /// The payload of a pinned version: that of the newest completed
    /// rollout to it, else of the newest rollout to it, if any.
    fn pinned_payload(&self, component: &str, version: &str) -> Option<serde_json::Value> {
        self.payload_of(component, version).or_else(|| {
            let entry = self.components.get(component)?;
            entry
                .rollouts
                .iter()
                .rev()
                .map(|&index| self.rollouts[index].rollout.plan())
                .find(|plan| plan.version == version)
                .and_then(|plan| plan.payload.clone())
        })
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

    /// Moves `component`'s stable version to `version` (or, with
    /// `dry_run`, only says what that would change): every host no rollout
    /// decides for is told `version` at its next check-in, all at once.
    /// Refused while a rollout of the component is active, since its
    /// waiting hosts would jump ahead of its stages.
    #[allow(clippy::too_many_arguments)]
    pub fn set_stable(
        &mut self,
        component: &str,
        version: &str,
        actor: &str,
        reason: &str,
        dry_run: bool,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) -> Result<StableChange, WorldError> {
        let invalid = |field: &str, message: String| WorldError::Invalid {
            field: field.to_owned(),
            message,
        };
        if reason.trim().is_empty() {
            return Err(invalid(
                "reason",
                "a reason is required: say why the stable version moves (it is recorded with your name)".to_owned(),
            ));
        }
        let version = version.trim();
        if version.is_empty()
            || version.chars().count() > MAX_VERSION_CHARS
            || version.chars().any(char::is_control)
        {
            return Err(invalid(
                "version",
                format!("{version:?} is not a version; give 1 to {MAX_VERSION_CHARS} characters without control characters"),
            ));
        }
        let Some(entry) = self.components.get(component) else {
            return Err(WorldError::NotFound(format!(
                "no component {component:?}; components appear when agents report them or hosts are imported (GET /v1/components lists them)"
            )));
        };
        if let Some(&active) = entry
            .rollouts
            .iter()
            .find(|&&index| !self.rollouts[index].rollout.status().is_terminal())
        {
            let rollout = &self.rollouts[active].rollout;
            return Err(WorldError::Conflict(format!(
                "rollout {} ({:?}, {}) is changing {component}: moving the stable version now would tell its waiting hosts at once; complete, abort or roll it back first",
                rollout.id(),
                rollout.plan().name,
                rollout.status().name()
            )));
        }
        let from = entry.stable.clone();
        let mut hosts_with_component = 0;
        let mut hosts_changed = 0;
        for (id, host) in self.hosts.iter() {
            let Some(reported) = host.components.get(component) else {
                continue;
            };
            hosts_with_component += 1;
            if *reported.version != *version
                && self.decided(component, id, Some(&host.labels)).is_none()
            {
                hosts_changed += 1;
            }
        }
        let change = StableChange {
            component: component.to_owned(),
            from: from.clone(),
            to: version.to_owned(),
            hosts_changed,
            hosts_with_component,
            applied: !dry_run,
        };
        if dry_run || from.as_deref() == Some(version) {
            return Ok(StableChange {
                applied: false,
                ..change
            });
        }
        if let Some(entry) = self.components.get_mut(component) {
            entry.stable = Some(version.to_owned());
        }
        writes.push(Write::Component(ComponentRecord {
            name: component.to_owned(),
            stable_version: Some(version.to_owned()),
        }));
        writes.push(Write::Event(NewEvent {
            rollout: None,
            at: now,
            actor: Some(actor.to_owned()),
            kind: "stable_version_set".to_owned(),
            data: serde_json::json!({
                "component": component,
                "from": from,
                "to": version,
                "reason": reason,
                "hosts_changed": hosts_changed,
            }),
        }));
        tracing::warn!(%component, from = ?from, to = %version, hosts_changed, %actor, %reason, "stable version moved");
        Ok(change)
    }
}
