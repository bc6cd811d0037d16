//! Building the world from the store at start, part by part as the store
//! reads it ([`sluice_store::Store::load_parts`]), so that a million hosts
//! are never held twice and memory is built while the next page is read.
//!
//! The hosts come sorted by id: they are collected in order and their map
//! built in one pass, and each host's reports, which come sorted by host
//! too, are matched to it by a cursor that only moves on. Rollouts share
//! the inventory's ids, and an active rollout's waiting hosts, which the
//! store does not keep (see `record` in the parent module), are placed
//! again from the inventory ([`sluice_core::rollout::Rollout::place`]).

use std::collections::HashMap;
use std::sync::Arc;

use sluice_core::fleet::HostId;
use sluice_core::rollout::{Sighting, SnapshotHost};
use sluice_store::{Part, RolloutRecord, SessionRecord, TokenRecord};

use super::{id_number, HostEntry, Reported, Reports, RolloutEntry, World};
use crate::{persist, vocabulary};

/// A world being built from the parts of a load. The first part that
/// cannot be taken in (a host id that does not parse, a record that does
/// not read) is the error [`Loading::finish`] returns; later parts are
/// ignored.
#[derive(Debug)]
pub struct Loading {
    world: World,
    /// The hosts until their map is built, in id order once sorted.
    hosts: Vec<(HostId, HostEntry)>,
    sorted: bool,
    /// Where the last host component was found in `hosts`.
    cursor: usize,
    rollouts: Vec<RolloutRecord>,
    /// Stored host records by rollout id.
    records: HashMap<String, Vec<SnapshotHost>>,
    tokens: Vec<TokenRecord>,
    sessions: Vec<SessionRecord>,
    error: Option<anyhow::Error>,
}

/// What a load restores: the world, and beside it the tokens and the
/// dashboard's sessions the store holds.
#[derive(Debug)]
pub struct Restored {
    pub world: World,
    pub tokens: Vec<TokenRecord>,
    /// Every stored session, expired ones too (see `AppState::restore`).
    pub sessions: Vec<SessionRecord>,
}

impl Default for Loading {
    fn default() -> Loading {
        Loading {
            world: World {
                next_seq: 1,
                ..World::default()
            },
            hosts: Vec::new(),
            sorted: false,
            cursor: 0,
            rollouts: Vec::new(),
            records: HashMap::new(),
            tokens: Vec::new(),
            sessions: Vec::new(),
            error: None,
        }
    }
}

impl Loading {
    /// Takes in one part of the load.
    pub fn take(&mut self, part: Part) {
        if self.error.is_none() {
            if let Err(error) = self.try_take(part) {
                self.error = Some(error);
            }
        }
    }

    fn try_take(&mut self, part: Part) -> anyhow::Result<()> {
        let world = &mut self.world;
        match part {
            Part::Components(components) => {
                for component in components {
                    world.components.entry(component.name).or_default().stable =
                        component.stable_version;
                }
            }
            Part::Rollouts(rollouts) => self.rollouts.extend(rollouts),
            Part::Freeze(freeze) => world.freeze = freeze,
            Part::Tokens(tokens) => self.tokens.extend(tokens),
            Part::Sessions(sessions) => self.sessions.extend(sessions),
            Part::Budget(budget) => world.budget = budget,
            Part::Pins(pins) => {
                for pin in pins {
                    world
                        .pins
                        .entry(pin.host.clone())
                        .or_default()
                        .insert(pin.component.clone(), pin);
                }
            }
            Part::Hosts(page) => {
                for host in page {
                    let id = HostId::parse(host.id).map_err(|error| {
                        anyhow::anyhow!("reading hosts: the id of a stored host: {error}")
                    })?;
                    let entry = HostEntry {
                        labels: world.strings.labels(&host.labels),
                        last_seen: host.last_seen,
                        saved_seen: host.last_seen,
                        components: Reports::default(),
                    };
                    self.hosts.push((id, entry));
                }
            }
            Part::HostComponents(page) => {
                sort_hosts(&mut self.hosts, &mut self.sorted);
                for record in page {
                    let Some(at) = find(&self.hosts, &mut self.cursor, &record.host) else {
                        continue;
                    };
                    let reported = Reported {
                        version: world.strings.get(&record.version),
                        state: record.state.map(vocabulary::wire_report),
                        message: record.message.map(String::into_boxed_str),
                        drifted: record.drifted,
                        at: record.at,
                    };
                    let name = world.strings.get(&record.component);
                    let stats = world.components.entry(record.component).or_default();
                    stats.count(&reported, true);
                    self.hosts[at].1.components.insert(name, reported);
                }
            }
            Part::RolloutHosts(page) => {
                for record in page {
                    let host =
                        persist::read_host_record(&record.rollout, &record.host, &record.record)?;
                    self.records.entry(record.rollout).or_default().push(host);
                }
            }
        }
        Ok(())
    }

    /// The world, and the tokens and sessions the store holds. Fails,
    /// naming the rollout, when a rollout cannot be restored: serving
    /// without it could admit hosts beyond its quotas or forget what its
    /// hosts should run.
    pub fn finish(mut self) -> anyhow::Result<Restored> {
        if let Some(error) = self.error {
            return Err(error);
        }
        sort_hosts(&mut self.hosts, &mut self.sorted);
        let mut world = self.world;
        world.hosts = self.hosts.into_iter().collect();
        let mut rollouts = self.rollouts;
        rollouts.sort_by(|a, b| {
            (&a.created_at, id_number(&a.id)).cmp(&(&b.created_at, id_number(&b.id)))
        });
        for record in rollouts {
            let hosts = self.records.remove(&record.id).unwrap_or_default();
            let share = |id: String| match world.hosts.get_key_value(id.as_str()) {
                Some((known, _)) => known.as_arc().clone(),
                None => Arc::from(id),
            };
            let mut rollout =
                persist::restore(&record.id, &record.plan, &record.header, hosts, share)?;
            let component = &rollout.plan().component;
            let inventory: Vec<Sighting> = world
                .hosts
                .iter()
                .map(|(id, host)| Sighting {
                    id: id.as_arc().clone(),
                    labels: host.labels.clone(),
                    version: host.components.get(component).map(|c| c.version.clone()),
                })
                .collect();
            rollout.place(inventory);
            world.next_seq = world.next_seq.max(id_number(&record.id).unwrap_or(0) + 1);
            world.insert_rollout(RolloutEntry::new(rollout, record.plan, record.updated_at));
        }
        world
            .rebuild_arbiter()
            .map_err(|error| anyhow::anyhow!("reading fleet_budget: the stored budget: {error}"))?;
        Ok(Restored {
            world,
            tokens: self.tokens,
            sessions: self.sessions,
        })
    }
}

/// Sorts the hosts once, before the first report is matched: a store whose
/// collation is not byte order hands them over in another order.
fn sort_hosts(hosts: &mut Vec<(HostId, HostEntry)>, sorted: &mut bool) {
    if !*sorted {
        if !hosts.is_sorted_by(|a, b| a.0 < b.0) {
            hosts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            hosts.dedup_by(|a, b| a.0 == b.0);
        }
        *sorted = true;
    }
}

/// The position of host `id`: at the cursor or just after it when the
/// reports come in the hosts' order, else found by a search.
fn find(hosts: &[(HostId, HostEntry)], cursor: &mut usize, id: &str) -> Option<usize> {
    let here = |at: usize| hosts.get(at).is_some_and(|(host, _)| **host == *id);
    let at = if here(*cursor) {
        *cursor
    } else if here(*cursor + 1) {
        *cursor + 1
    } else {
        hosts.binary_search_by(|(host, _)| (**host).cmp(id)).ok()?
    };
    *cursor = at;
    Some(at)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_store::{HostComponentRecord, HostRecord, Timestamp};

    use super::*;

    fn host(id: &str, role: &str) -> HostRecord {
        HostRecord {
            id: id.to_owned(),
            labels: BTreeMap::from([("role".to_owned(), role.to_owned())]),
            last_seen: None,
        }
    }

    fn report(host: &str, component: &str, version: &str) -> HostComponentRecord {
        HostComponentRecord {
            host: host.to_owned(),
            component: component.to_owned(),
            version: version.to_owned(),
            state: None,
            message: None,
            drifted: false,
            at: Timestamp::UNIX_EPOCH,
        }
    }

    fn version(world: &World, host: &str, component: &str) -> Option<String> {
        let view = world.host(host)?;
        Some(view.components.get(component)?.version.clone())
    }

    /// A store whose collation is not byte order hands hosts and reports
    /// over in its own order, over several pages: every report still
    /// reaches its host.
    #[test]
    fn reports_find_their_hosts_in_any_order() {
        let mut loading = Loading::default();
        loading.take(Part::Hosts(vec![host("web-2", "web"), host("db-1", "db")]));
        loading.take(Part::Hosts(vec![host("web-10", "web")]));
        loading.take(Part::HostComponents(vec![
            report("web-2", "kernel", "6.1"),
            report("db-1", "docker-engine", "1.12.6"),
            report("web-10", "docker-engine", "17.03.1"),
        ]));
        loading.take(Part::HostComponents(vec![
            report("web-2", "docker-engine", "17.03.1"),
            report("unknown", "docker-engine", "1.0"),
        ]));
        let world = loading.finish().expect("loads").world;
        assert_eq!(world.host_count(), 3);
        assert_eq!(
            version(&world, "db-1", "docker-engine").as_deref(),
            Some("1.12.6")
        );
        assert_eq!(version(&world, "web-2", "kernel").as_deref(), Some("6.1"));
        assert_eq!(
            version(&world, "web-2", "docker-engine").as_deref(),
            Some("17.03.1")
        );
        assert_eq!(
            version(&world, "web-10", "docker-engine").as_deref(),
            Some("17.03.1")
        );
        assert!(!world.has_host("unknown"));
    }

    /// The first part that cannot be taken in is the load's error.
    #[test]
    fn a_stored_host_id_that_does_not_parse_fails_the_load() {
        let mut loading = Loading::default();
        loading.take(Part::Hosts(vec![host("not a host id", "web")]));
        loading.take(Part::Hosts(vec![host("web-1", "web")]));
        let error = loading.finish().expect_err("refused").to_string();
        assert!(error.contains("the id of a stored host"), "{error}");
    }
}
