//! The benchmark's fleet: N hosts shaped like `examples/fleet-10k.json`
//! (labels and components copied from the fixture, cycling, so the strata
//! keep its long-tailed role × site distribution; like `bench/gen_fleet.py`),
//! each with a unique id, and every host's check-in body serialised once.

use bytes::Bytes;
use sluice_api::agent::{CheckinRequest, ComponentReport, ReportState};
use sluice_api::host::ImportHost;
use sluice_api::HostId;

/// The component every host runs and the benchmark's rollout changes.
pub const COMPONENT: &str = "docker-engine";
/// The rollout's target version.
pub const TARGET_VERSION: &str = "17.03.1";

const FIXTURE: &str = include_str!("../../../examples/fleet-10k.json");

/// The hosts and their check-in bodies.
#[derive(Debug)]
pub struct Fleet {
    pub hosts: Vec<ImportHost>,
    /// Per host: the body reporting the version it was imported with, and
    /// the one reporting [`TARGET_VERSION`] (once told to run it, the
    /// simulated agent "applies" it at once and reports it from then on).
    pub bodies: Vec<[Bytes; 2]>,
}

impl Fleet {
    pub fn generate(count: usize) -> anyhow::Result<Fleet> {
        let templates: Vec<ImportHost> = serde_json::from_str(FIXTURE)?;
        anyhow::ensure!(!templates.is_empty(), "the fleet fixture is empty");
        let mut hosts = Vec::with_capacity(count);
        let mut bodies = Vec::with_capacity(count);
        for i in 0..count {
            let template = &templates[i % templates.len()];
            let label = |key: &str| template.labels.get(key).map_or("x", String::as_str);
            let id = HostId::parse(format!(
                "{}-{}-{}{i}.example.net",
                label("site"),
                label("role"),
                label("pool")
            ))?;
            let body = |version: &str| -> anyhow::Result<Bytes> {
                let mut components = template.components.clone();
                components.insert(COMPONENT.to_owned(), version.to_owned());
                let request = CheckinRequest {
                    host: id.clone(),
                    labels: template.labels.clone(),
                    components: components
                        .into_iter()
                        .map(|(name, version)| {
                            let report = ComponentReport {
                                version,
                                state: ReportState::Ok,
                                message: None,
                            };
                            (name, report)
                        })
                        .collect(),
                };
                Ok(Bytes::from(serde_json::to_vec(&request)?))
            };
            let imported = template
                .components
                .get(COMPONENT)
                .map_or("1.12.6", String::as_str);
            bodies.push([body(imported)?, body(TARGET_VERSION)?]);
            hosts.push(ImportHost {
                id: id.clone(),
                labels: template.labels.clone(),
                components: template.components.clone(),
            });
        }
        Ok(Fleet { hosts, bodies })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_bodies_parse() {
        let fleet = Fleet::generate(20_001).expect("fleet");
        let ids: std::collections::HashSet<&str> =
            fleet.hosts.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids.len(), 20_001);
        let request: CheckinRequest =
            serde_json::from_slice(&fleet.bodies[7][1]).expect("a check-in");
        assert_eq!(request.host, fleet.hosts[7].id);
        assert_eq!(request.components[COMPONENT].version, TARGET_VERSION);
    }
}
