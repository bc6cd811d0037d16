//! The benchmark's fleet: N hosts shaped like `examples/fleet-10k.json`
//! (labels and components copied from the fixture, cycling, so the strata
//! keep its long-tailed role × site distribution; like `bench/gen_fleet.py`,
//! whose ids it repeats), each with a unique id, and the check-in bodies of
//! the hosts that play agents, serialised once.
//!
//! Host `i` is a function of `i` alone, so a large fleet can be imported a
//! chunk at a time ([`Fleet::chunk`]) without holding it all.

use std::ops::Range;

use bytes::Bytes;
use sluice_api::agent::{CheckinRequest, ComponentReport, ReportState};
use sluice_api::host::ImportHost;
use sluice_api::HostId;

/// The component every host runs and the benchmark's rollout changes.
pub const COMPONENT: &str = "docker-engine";
/// The rollout's target version.
pub const TARGET_VERSION: &str = "17.03.1";

const FIXTURE: &str = include_str!("../../../examples/fleet-10k.json");

/// The fleet of `count` hosts, generated on demand.
#[derive(Debug)]
pub struct Fleet {
    templates: Vec<ImportHost>,
    count: usize,
}

/// Per host: the body reporting the version it was imported with, and the
/// one reporting [`TARGET_VERSION`] (once told to run it, the simulated
/// agent "applies" it at once and reports it from then on).
pub type Bodies = [Bytes; 2];

impl Fleet {
    pub fn new(count: usize) -> anyhow::Result<Fleet> {
        let templates: Vec<ImportHost> = serde_json::from_str(FIXTURE)?;
        anyhow::ensure!(!templates.is_empty(), "the fleet fixture is empty");
        Ok(Fleet { templates, count })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> anyhow::Result<ImportHost> {
        let template = &self.templates[i % self.templates.len()];
        let label = |key: &str| template.labels.get(key).map_or("x", String::as_str);
        let id = HostId::parse(format!(
            "{}-{}-{}{i}.example.net",
            label("site"),
            label("role"),
            label("pool")
        ))?;
        Ok(ImportHost {
            id,
            labels: template.labels.clone(),
            components: template.components.clone(),
        })
    }

    /// The hosts of `range` (clamped to the fleet).
    pub fn chunk(&self, range: Range<usize>) -> anyhow::Result<Vec<ImportHost>> {
        (range.start.min(self.count)..range.end.min(self.count))
            .map(|i| self.host(i))
            .collect()
    }

    /// The check-in bodies of the first `agents` hosts.
    pub fn bodies(&self, agents: usize) -> anyhow::Result<Vec<Bodies>> {
        (0..agents.min(self.count))
            .map(|i| {
                let host = self.host(i)?;
                let imported = host
                    .components
                    .get(COMPONENT)
                    .map_or("1.12.6", String::as_str);
                Ok([body(&host, imported)?, body(&host, TARGET_VERSION)?])
            })
            .collect()
    }
}

/// A check-in of `host` reporting its components, [`COMPONENT`] at `version`.
fn body(host: &ImportHost, version: &str) -> anyhow::Result<Bytes> {
    let mut components = host.components.clone();
    components.insert(COMPONENT.to_owned(), version.to_owned());
    let request = CheckinRequest {
        host: host.id.clone(),
        labels: host.labels.clone(),
        components: components
            .into_iter()
            .map(|(name, version)| {
                let report = ComponentReport {
                    version,
                    state: ReportState::Ok,
                    message: None,
                    drifted: false,
                };
                (name, report)
            })
            .collect(),
    };
    Ok(Bytes::from(serde_json::to_vec(&request)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_bodies_parse() {
        let fleet = Fleet::new(20_001).expect("fleet");
        let hosts = fleet.chunk(0..30_000).expect("hosts");
        let ids: std::collections::HashSet<&str> = hosts.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids.len(), 20_001);
        let bodies = fleet.bodies(10).expect("bodies");
        assert_eq!(bodies.len(), 10);
        let request: CheckinRequest = serde_json::from_slice(&bodies[7][1]).expect("a check-in");
        assert_eq!(request.host, hosts[7].id);
        assert_eq!(request.components[COMPONENT].version, TARGET_VERSION);
    }

    #[test]
    fn chunks_are_the_same_hosts() {
        let fleet = Fleet::new(100).expect("fleet");
        let whole = fleet.chunk(0..100).expect("hosts");
        let part = fleet.chunk(40..60).expect("hosts");
        assert_eq!(part[..], whole[40..60]);
        assert!(fleet.chunk(90..200).expect("hosts").len() == 10);
    }
}
