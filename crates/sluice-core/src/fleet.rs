//! Hosts as the engine sees them, and the fleet file format
//! (`[{"id", "labels", "components"}]`) shared by preview, import and the
//! simulator.
//!
//! A million hosts must fit in well under a GiB: a [`Host`] is its id and two
//! [`StrMap`]s (16 bytes each), and [`parse_fleet`] interns label and
//! component strings and whole maps, so hosts with the same labels share them
//! (see [`crate::strmap`]).

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

pub use sluice_types::HostId;

use crate::strmap::interning;
pub use crate::strmap::StrMap;

/// Label name → value, e.g. `role → playlist`.
pub type Labels = StrMap;

/// One host of a fleet file: its id (FQDN), its labels and the version it
/// runs of each component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub id: HostId,
    #[serde(default)]
    pub labels: Labels,
    /// Component → the version the host runs.
    #[serde(default)]
    pub components: StrMap,
}

/// Why a fleet file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("line {line}, column {column}: {}{source}; a fleet is a JSON array of {{\"id\", \"labels\", \"components\"}} objects", path.as_deref().map(|path| format!("{path}: ")).unwrap_or_default())]
    Json {
        line: usize,
        column: usize,
        /// Where in the document, e.g. `[3].id`, when serde knows.
        path: Option<String>,
        source: serde_json::Error,
    },
    #[error("host {index}: {id:?} appears twice (first as host {first}); host ids must be unique")]
    DuplicateId {
        index: usize,
        first: usize,
        id: String,
    },
}

impl FleetError {
    /// The field at fault, as a path into the document (`[3].id`).
    pub fn field(&self) -> Option<String> {
        match self {
            FleetError::Json { path, .. } => path.clone(),
            FleetError::DuplicateId { index, .. } => Some(format!("[{index}].id")),
        }
    }
}

/// Parses a fleet file: every id a [`HostId`] (refused at its line and
/// column otherwise), every id unique.
pub fn parse_fleet(json: &[u8]) -> Result<Vec<Host>, FleetError> {
    // Interning makes the hosts share their label and component strings and
    // maps; it ends with the parse.
    let hosts: Vec<Host> = interning(|| match std::str::from_utf8(json) {
        // Checking the UTF-8 of the whole file at once is cheaper than string
        // by string; invalid UTF-8 is left to `from_slice` to locate.
        Ok(text) => serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text)),
        Err(_) => serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(json)),
    })
    .map_err(|error| {
        let path = error.path().to_string();
        let source = error.into_inner();
        FleetError::Json {
            line: source.line(),
            column: source.column(),
            path: (path != ".").then_some(path),
            source,
        }
    })?;
    match first_duplicate(&hosts) {
        Some((index, first)) => Err(FleetError::DuplicateId {
            index,
            first,
            id: hosts[index].id.to_string(),
        }),
        None => Ok(hosts),
    }
}

/// The first host whose id an earlier host has, and the first host with
/// that id: `(index, first)`.
///
/// Sorts `(hash of id, index)`: that reads each id once, in memory order, and
/// takes 16 bytes a host, where a `HashMap<&str, usize>` of a million ids
/// probes memory at random and takes three times the memory.
fn first_duplicate(hosts: &[Host]) -> Option<(usize, usize)> {
    let mut order: Vec<(u64, usize)> = hosts
        .iter()
        .enumerate()
        .map(|(index, host)| (xxh3_64(host.id.as_bytes()), index))
        .collect();
    // Ids only break ties of hashes, so that equal ids end up side by side
    // even when another id has the same hash.
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| hosts[a.1].id.cmp(&hosts[b.1].id))
            .then(a.1.cmp(&b.1))
    });
    order
        .windows(2)
        .filter(|pair| pair[0].0 == pair[1].0 && hosts[pair[0].1].id == hosts[pair[1].1].id)
        .map(|pair| (pair[1].1, pair[0].1))
        .min()
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
        assert_eq!(hosts[0].labels.get("role"), Some("edge"));
        assert!(hosts[1].labels.is_empty());
    }

    #[test]
    fn rejects_duplicates_empty_ids_and_unknown_fields() {
        let duplicate = parse_fleet(br#"[{"id":"a"},{"id":"b"},{"id":"a"}]"#).expect_err("dup");
        assert_eq!(
            duplicate.to_string(),
            "host 2: \"a\" appears twice (first as host 0); host ids must be unique"
        );
        for (fleet, error) in [
            (
                &br#"[{"id":"a"},{"id":"b"},{"id":"b"},{"id":"a"},{"id":"b"}]"#[..],
                "host 2: \"b\" appears twice (first as host 1); host ids must be unique",
            ),
            (
                br#"[{"id":"a"},{"id":"a"},{"id":"b"}]"#,
                "host 1: \"a\" appears twice (first as host 0); host ids must be unique",
            ),
        ] {
            let message = parse_fleet(fleet).expect_err("invalid").to_string();
            assert_eq!(message, error);
        }
        let empty = parse_fleet(b"[{\"id\":\"a\"},\n {\"id\":\"\"}]").expect_err("empty");
        assert_eq!(empty.field().as_deref(), Some("[1].id"));
        let message = empty.to_string();
        assert!(
            message.starts_with("line 2, ")
                && message.contains(": [1].id: \"\" is not a host id; use the host's FQDN"),
            "{message}"
        );
        let unknown = parse_fleet(br#"[{"id":"a","lables":{}}]"#).expect_err("unknown");
        assert!(
            unknown.to_string().contains("unknown field `lables`"),
            "{unknown}"
        );
    }

    #[test]
    fn locates_invalid_utf8_and_duplicate_labels() {
        let invalid = parse_fleet(b"[{\"id\":\"a\"},\n {\"id\":\"b\xff\"}]").expect_err("utf-8");
        assert!(
            invalid.to_string().starts_with("line 2, column "),
            "{invalid}"
        );
        let duplicate = parse_fleet(br#"[{"id":"a","labels":{"role":"a","role":"b"}}]"#)
            .expect_err("duplicate label");
        assert!(
            duplicate.to_string().contains("duplicate key `role`"),
            "{duplicate}"
        );
    }

    #[test]
    fn hosts_with_equal_labels_share_them() {
        let hosts = parse_fleet(
            br#"[{"id":"a","labels":{"role":"edge","site":"sto"}},
                {"id":"b","labels":{"site":"sto","role":"edge"}}]"#,
        )
        .expect("valid fleet");
        assert_eq!(hosts[0].labels, hosts[1].labels);
        assert!(hosts[0].labels.shares(&hosts[1].labels));
    }
}
