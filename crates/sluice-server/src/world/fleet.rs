//! Fleet operations: the fleet-wide change budget, one change per host at
//! a time, and pins.
//!
//! Every rollout the world holds is handed to the engine's
//! [`Arbiter`](sluice_core::arbiter::Arbiter) ([`Rollout::set_arbitrated`]):
//! the rollouts admit no host by themselves; after every change that may
//! free or take room (a host settling, a stage starting, a freeze lifted,
//! the budget set, a pin lifted, a second passing) [`World::settle`] lets
//! the arbiter hand out hosts, the rollout that waited longest first. What
//! it admits is recorded like any other outcome (durable before revealed).
//!
//! A pin tells one host a version of one component until it expires,
//! whatever its rollouts or the stable version say ([`World::resolve`]
//! asks the pins first); the arbiter admits the host in no rollout of the
//! component meanwhile. A pin is refused on a host a rollout of the
//! component has admitted and not let go of (active, or still waiting for
//! the host's answer), since the rollout would take the pinned version for
//! a failure. Pins expire at the first tick past their end, and at start.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use sluice_api::fleet::{
    BudgetRequest, BudgetSetting, BudgetView, PinRequest, PinView, StratumBudget, WaitingRollout,
    MAX_PIN_VERSION_LENGTH,
};
use sluice_core::arbiter::Budget;
use sluice_core::percent::Amount;
use sluice_core::rollout::{HostState, Rollout};
use sluice_store::{BudgetRecord, NewEvent, PinRecord, Write};

use super::{record, World, WorldError};
use crate::clock::rfc3339;

/// The labels of the fleet's strata when a budget names none.
const DEFAULT_SPREAD: [&str; 2] = ["role", "site"];

/// Most labels a budget's strata may spread over.
const MAX_SPREAD: usize = 8;

fn invalid(field: &str, message: String) -> WorldError {
    WorldError::Invalid {
        field: field.to_owned(),
        message,
    }
}

/// A budget amount: a count of at least 1, or a percentage.
fn amount(field: &str, text: &str) -> Result<Amount, WorldError> {
    match Amount::parse(text) {
        Ok(Amount::Count(0)) => Err(invalid(
            field,
            format!("{field} 0 would admit nothing; give at least 1 host, or a share such as 2%"),
        )),
        Ok(amount) => Ok(amount),
        Err(error) => Err(invalid(field, format!("{field}: {error}"))),
    }
}

/// The engine's budget of a stored (or requested) record.
pub(super) fn parse_budget(record: &BudgetRecord) -> Result<Budget, WorldError> {
    Ok(Budget {
        max_in_flight: amount("max_in_flight", &record.max_in_flight)?,
        per_stratum: record
            .per_stratum
            .as_deref()
            .map(|text| amount("per_stratum", text))
            .transpose()?,
        spread: record.spread.clone(),
    })
}

/// The spread of a request: label names, none twice.
fn spread(requested: Option<&[String]>) -> Result<Vec<String>, WorldError> {
    let Some(labels) = requested else {
        return Ok(DEFAULT_SPREAD.map(str::to_owned).to_vec());
    };
    if labels.len() > MAX_SPREAD {
        return Err(invalid(
            "spread",
            format!(
                "{} labels; strata spread over at most {MAX_SPREAD}",
                labels.len()
            ),
        ));
    }
    let mut seen = Vec::with_capacity(labels.len());
    for label in labels {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        if !valid {
            return Err(invalid(
                "spread",
                format!("{label:?} is not a label name; write names such as role, site"),
            ));
        }
        if seen.contains(&label) {
            return Err(invalid(
                "spread",
                format!("{label:?} is named twice; name each label once"),
            ));
        }
        seen.push(label);
    }
    Ok(labels.to_vec())
}

fn required_reason(reason: &str, to: &str) -> Result<(), WorldError> {
    if reason.trim().is_empty() {
        return Err(invalid(
            "reason",
            format!("a reason is required to {to}: it is recorded with your name"),
        ));
    }
    Ok(())
}

fn pin_view(pin: &PinRecord) -> PinView {
    PinView {
        host: pin.host.clone(),
        component: pin.component.clone(),
        version: pin.version.clone(),
        expires_at: rfc3339(pin.expires_at),
        actor: pin.actor.clone(),
        reason: pin.reason.clone(),
        since: rfc3339(pin.since),
    }
}

impl World {
    /// Lets the arbiter hand out hosts to the rollouts that want some, if
    /// anything changed since it last did, and records what it decided.
    pub(super) fn settle(&mut self, now: Timestamp, writes: &mut Vec<Write>) {
        if !self.arbitration_due {
            return;
        }
        self.arbitration_due = false;
        let hosts = &self.hosts;
        let pins = &self.pins;
        let labels_of = |id: &str| hosts.get(id).map(|host| host.labels.clone());
        let pinned = |host: &str, component: &str| {
            pins.get(host)
                .is_some_and(|pins| pins.contains_key(component))
        };
        let fleet = hosts.len() as u64;
        let changed =
            self.arbiter
                .arbitrate(now, fleet, &mut self.rollouts[..], &labels_of, &pinned);
        for (index, outcome) in changed {
            record(&mut self.rollouts[index], now, outcome, writes);
        }
    }

    /// Counts the fleet and the changes in flight again for the arbiter
    /// (after a load), with the budget as stored.
    pub(super) fn rebuild_arbiter(&mut self) -> Result<(), WorldError> {
        let budget = self.budget.as_ref().map(parse_budget).transpose()?;
        let hosts = &self.hosts;
        let labels_of = |id: &str| hosts.get(id).map(|host| host.labels.clone());
        self.arbiter.set_budget(
            budget,
            hosts.iter().map(|(_, host)| &host.labels),
            &labels_of,
        );
        self.arbiter.rebuild(&self.rollouts[..], &labels_of);
        self.arbitration_due = true;
        Ok(())
    }

    // ---- the budget ----------------------------------------------------

    /// Sets the fleet-wide change budget, or lifts it (`max_in_flight`
    /// absent).
    pub fn set_budget(
        &mut self,
        request: &BudgetRequest,
        actor: &str,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) -> Result<BudgetView, WorldError> {
        let lifting = request.max_in_flight.is_none();
        required_reason(
            &request.reason,
            if lifting {
                "lift the budget"
            } else {
                "set the budget"
            },
        )?;
        let record = match &request.max_in_flight {
            None if request.per_stratum.is_some() => {
                return Err(invalid(
                    "per_stratum",
                    "per_stratum needs max_in_flight: give both, such as 2% and 10%".to_owned(),
                ));
            }
            None => None,
            Some(max_in_flight) => Some(BudgetRecord {
                max_in_flight: max_in_flight.trim().to_owned(),
                per_stratum: request.per_stratum.as_deref().map(|p| p.trim().to_owned()),
                spread: spread(request.spread.as_deref())?,
                actor: actor.to_owned(),
                reason: request.reason.clone(),
                since: now,
            }),
        };
        let budget = record.as_ref().map(parse_budget).transpose()?;
        let event = match &budget {
            Some(budget) => serde_json::json!({
                "budget": budget.to_string(),
                "reason": request.reason,
            }),
            None => serde_json::json!({ "reason": request.reason }),
        };
        tracing::warn!(budget = ?budget.as_ref().map(ToString::to_string), %actor, reason = %request.reason, "fleet-wide change budget changed");
        let hosts = &self.hosts;
        let labels_of = |id: &str| hosts.get(id).map(|host| host.labels.clone());
        self.arbiter.set_budget(
            budget,
            hosts.iter().map(|(_, host)| &host.labels),
            &labels_of,
        );
        self.budget = record;
        writes.push(Write::Budget(self.budget.clone()));
        writes.push(Write::Event(NewEvent {
            rollout: None,
            at: now,
            actor: Some(actor.to_owned()),
            kind: if lifting {
                "budget_lifted"
            } else {
                "budget_set"
            }
            .to_owned(),
            data: event,
        }));
        self.arbitration_due = true;
        self.settle(now, writes);
        Ok(self.budget_view())
    }

    /// The budget, the hosts in flight against it, and the rollouts
    /// waiting.
    pub fn budget_view(&self) -> BudgetView {
        let fleet = self.hosts.len() as u64;
        let usage = self.arbiter.usage(fleet);
        let spread = self
            .arbiter
            .budget()
            .map(|budget| budget.spread.clone())
            .unwrap_or_default();
        let mut in_flight_by_component: BTreeMap<String, u64> = BTreeMap::new();
        for entry in &self.rollouts {
            let rollout = &entry.rollout;
            let instructed = rollout.counts().instructed;
            if instructed > 0 {
                *in_flight_by_component
                    .entry(rollout.plan().component.clone())
                    .or_default() += instructed;
            }
        }
        BudgetView {
            budget: self.budget.as_ref().map(|record| BudgetSetting {
                max_in_flight: record.max_in_flight.clone(),
                per_stratum: record.per_stratum.clone(),
                spread: record.spread.clone(),
                actor: record.actor.clone(),
                reason: record.reason.clone(),
                since: rfc3339(record.since),
            }),
            fleet,
            limit: usage.limit,
            in_flight: usage.in_flight,
            in_flight_by_component,
            strata: usage
                .strata
                .into_iter()
                .map(|stratum| StratumBudget {
                    stratum: stratum.key.display(&spread).to_string(),
                    hosts: stratum.size,
                    in_flight: stratum.in_flight,
                    limit: stratum.limit,
                })
                .collect(),
            waiting: self.waiting_rollouts(),
        }
    }

    /// The rollouts waiting to be given hosts, longest waiting first.
    fn waiting_rollouts(&self) -> Vec<WaitingRollout> {
        let mut waiting: Vec<(Timestamp, &Rollout)> = self
            .rollouts
            .iter()
            .filter_map(|entry| Some((entry.rollout.waiting()?.since, &entry.rollout)))
            .collect();
        waiting.sort_by_key(|(since, _)| *since);
        waiting
            .into_iter()
            .filter_map(|(since, rollout)| {
                Some(WaitingRollout {
                    id: rollout.id().to_owned(),
                    name: rollout.plan().name.clone(),
                    component: rollout.plan().component.clone(),
                    waiting: rollout.waiting()?.wait.to_string(),
                    since: rfc3339(since),
                })
            })
            .collect()
    }

    // ---- pins ----------------------------------------------------------

    /// The pin of `host`'s `component`, if any.
    pub(super) fn pin_of(&self, host: &str, component: &str) -> Option<&PinRecord> {
        self.pins.get(host)?.get(component)
    }

    /// `host`'s pins, by component.
    pub fn pins_of(&self, host: &str) -> Vec<PinView> {
        self.pins
            .get(host)
            .map(|pins| pins.values().map(pin_view).collect())
            .unwrap_or_default()
    }

    /// Every pin, by host and component.
    pub fn pin_list(&self) -> Vec<PinView> {
        self.pins
            .values()
            .flat_map(|pins| pins.values().map(pin_view))
            .collect()
    }

    pub fn is_pinned(&self, host: &str) -> bool {
        self.pins.contains_key(host)
    }

    /// Pins `host`'s `component` to a version for a while (replacing its
    /// pin, if any).
    pub fn pin(
        &mut self,
        host: &str,
        component: &str,
        request: &PinRequest,
        actor: &str,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) -> Result<PinView, WorldError> {
        required_reason(&request.reason, "pin a host")?;
        let version = request.version.trim();
        if version.is_empty()
            || version.chars().count() > MAX_PIN_VERSION_LENGTH
            || version.chars().any(char::is_control)
        {
            return Err(invalid(
                "version",
                format!("{version:?} is not a version; give 1 to {MAX_PIN_VERSION_LENGTH} characters without control characters"),
            ));
        }
        let seconds = sluice_api::duration::parse_seconds(&request.lasts)
            .map_err(|error| invalid("for", format!("for: {error}")))?;
        if seconds == 0 {
            return Err(invalid(
                "for",
                "for: 0s would end the pin at once; give how long, such as 2h".to_owned(),
            ));
        }
        if !self.hosts.contains_key(host) {
            return Err(WorldError::NotFound(format!(
                "no host {host:?}; hosts appear when their agent checks in or they are imported (GET /v1/hosts lists them)"
            )));
        }
        if !self.components.contains_key(component) {
            return Err(WorldError::NotFound(format!(
                "no component {component:?}; components appear when agents report them or hosts are imported (GET /v1/components lists them)"
            )));
        }
        if let Some(rollout) = self.holding(host, component) {
            let state = rollout.host_state(host).map_or("", HostState::name);
            return Err(WorldError::Conflict(format!(
                "rollout {} ({:?}, {}) has {host} {state}: a pin would tell it another version than the rollout's; wait until the rollout settles, or abort or roll it back first",
                rollout.id(),
                rollout.plan().name,
                rollout.status().name()
            )));
        }
        let expires_at = now
            .checked_add(SignedDuration::from_secs(
                i64::try_from(seconds).unwrap_or(i64::MAX),
            ))
            .map_err(|_| invalid("for", format!("for: {} is too long", request.lasts)))?;
        let pin = PinRecord {
            host: host.to_owned(),
            component: component.to_owned(),
            version: version.to_owned(),
            expires_at,
            actor: actor.to_owned(),
            reason: request.reason.clone(),
            since: now,
        };
        writes.push(Write::Pin(pin.clone()));
        writes.push(Write::Event(NewEvent {
            rollout: None,
            at: now,
            actor: Some(actor.to_owned()),
            kind: "host_pinned".to_owned(),
            data: serde_json::json!({
                "host": host,
                "component": component,
                "version": version,
                "expires_at": rfc3339(expires_at),
                "reason": request.reason,
            }),
        }));
        tracing::info!(%host, %component, %version, expires_at = %rfc3339(expires_at), %actor, reason = %request.reason, "host pinned");
        let view = pin_view(&pin);
        self.pins
            .entry(host.to_owned())
            .or_default()
            .insert(component.to_owned(), pin);
        self.arbitration_due = true;
        self.settle(now, writes);
        Ok(view)
    }

    /// The rollout of `component` that has `host` admitted and has not let
    /// go of it, if any.
    fn holding(&self, host: &str, component: &str) -> Option<&Rollout> {
        let entry = self.components.get(component)?;
        entry.rollouts.iter().find_map(|&index| {
            let rollout = &self.rollouts[index].rollout;
            let state = rollout.host_state(host)?;
            let told = matches!(state, HostState::Instructed { .. } | HostState::Reverting);
            let admitted = *state != HostState::Waiting;
            ((rollout.is_active() && admitted) || (rollout.listens() && told)).then_some(rollout)
        })
    }

    /// Lifts the pin of `host`'s `component`: the host returns to its
    /// desired version at its next check-in.
    pub fn unpin(
        &mut self,
        host: &str,
        component: &str,
        actor: &str,
        reason: &str,
        now: Timestamp,
        writes: &mut Vec<Write>,
    ) -> Result<PinView, WorldError> {
        required_reason(reason, "unpin a host")?;
        let Some(pin) = self.remove_pin(host, component) else {
            return Err(WorldError::NotFound(format!(
                "host {host:?} has no pin of {component:?}; `sluice hosts list --pinned` lists the pins"
            )));
        };
        writes.push(Write::PinRemoved {
            host: host.to_owned(),
            component: component.to_owned(),
        });
        writes.push(Write::Event(NewEvent {
            rollout: None,
            at: now,
            actor: Some(actor.to_owned()),
            kind: "host_unpinned".to_owned(),
            data: serde_json::json!({
                "host": host,
                "component": component,
                "version": pin.version,
                "reason": reason,
            }),
        }));
        tracing::info!(%host, %component, %actor, %reason, "host unpinned");
        self.arbitration_due = true;
        self.settle(now, writes);
        Ok(pin_view(&pin))
    }

    fn remove_pin(&mut self, host: &str, component: &str) -> Option<PinRecord> {
        let pins = self.pins.get_mut(host)?;
        let pin = pins.remove(component)?;
        if pins.is_empty() {
            self.pins.remove(host);
        }
        Some(pin)
    }

    /// Lifts every pin whose time is up.
    pub(super) fn expire_pins(&mut self, now: Timestamp, writes: &mut Vec<Write>) {
        let expired: Vec<(String, String)> = self
            .pins
            .values()
            .flat_map(|pins| pins.values())
            .filter(|pin| pin.expires_at <= now)
            .map(|pin| (pin.host.clone(), pin.component.clone()))
            .collect();
        for (host, component) in expired {
            let Some(pin) = self.remove_pin(&host, &component) else {
                continue;
            };
            writes.push(Write::PinRemoved {
                host: host.clone(),
                component: component.clone(),
            });
            writes.push(Write::Event(NewEvent {
                rollout: None,
                at: now,
                actor: None,
                kind: "pin_expired".to_owned(),
                data: serde_json::json!({
                    "host": host,
                    "component": component,
                    "version": pin.version,
                    "expires_at": rfc3339(pin.expires_at),
                }),
            }));
            tracing::info!(%host, %component, version = %pin.version, "pin expired");
            self.arbitration_due = true;
        }
    }
}
