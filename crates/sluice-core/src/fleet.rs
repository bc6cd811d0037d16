//! Hosts as the engine sees them, and the fleet file format
//! (`[{"id", "labels", "components"}]`) shared by preview, import and the
//! simulator.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Label name → value, e.g. `role → playlist`.
pub type Labels = BTreeMap<String, String>;

/// One host of a fleet file: its id (FQDN), its labels and the version it
/// runs of each component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub id: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub components: BTreeMap<String, String>,
}

/// Why a fleet file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("line {line}, column {column}: {source}; a fleet is a JSON array of {{\"id\", \"labels\", \"components\"}} objects")]
    Json {
        line: usize,
        column: usize,
        source: serde_json::Error,
    },
    #[error("host {index}: the id is empty; give every host its FQDN")]
    EmptyId { index: usize },
    #[error("host {index}: {id:?} appears twice (first as host {first}); host ids must be unique")]
    DuplicateId {
        index: usize,
        first: usize,
        id: String,
    },
}

/// Parses a fleet file and checks that every host has a unique, non-empty id.
pub fn parse_fleet(json: &[u8]) -> Result<Vec<Host>, FleetError> {
    let hosts: Vec<Host> = serde_json::from_slice(json).map_err(|source| FleetError::Json {
        line: source.line(),
        column: source.column(),
        source,
    })?;
    let mut seen: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(hosts.len());
    for (index, host) in hosts.iter().enumerate() {
        if host.id.is_empty() {
            return Err(FleetError::EmptyId { index });
        }
        if let Some(first) = seen.insert(&host.id, index) {
            return Err(FleetError::DuplicateId {
                index,
                first,
                id: host.id.clone(),
            });
        }
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hosts_and_defaults_missing_maps() {
        let hosts = parse_fleet(
            br#"[{"id":"a.example.net","labels":{"role":"edge"},"components":{"docker-engine":"1.12.6"}},
                {"id":"b.example.net"}]"#,
        )
        .expect("valid fleet");
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].labels["role"], "edge");
        assert!(hosts[1].labels.is_empty());
    }

    #[test]
    fn rejects_duplicates_empty_ids_and_unknown_fields() {
        let duplicate = parse_fleet(br#"[{"id":"a"},{"id":"b"},{"id":"a"}]"#).expect_err("dup");
        assert_eq!(
            duplicate.to_string(),
            "host 2: \"a\" appears twice (first as host 0); host ids must be unique"
        );
        let empty = parse_fleet(br#"[{"id":""}]"#).expect_err("empty");
        assert!(empty.to_string().contains("host 0: the id is empty"));
        let unknown = parse_fleet(br#"[{"id":"a","lables":{}}]"#).expect_err("unknown");
        assert!(
            unknown.to_string().contains("unknown field `lables`"),
            "{unknown}"
        );
    }
}
