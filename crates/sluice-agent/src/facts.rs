//! Facts mode: the desired versions, written for Puppet/Facter as an
//! external JSON fact.
//!
//! The file holds one fact, `sluice`, a map from component name to what the
//! server wants for it:
//!
//! ```json
//! {"sluice": {"dockerd-config": {"version": "2.1", "rollout": "r-7", "payload": null}}}
//! ```
//!
//! so that a manifest reads `$facts['sluice']['dockerd-config']['version']`.
//! Components that share a `facts_file` share its `sluice` map; the file is
//! replaced atomically (temp file, fsync, rename), and only when it changes.

use std::path::Path;

use serde_json::{json, Map, Value};
use sluice_api::agent::Desired;

use crate::state::{write_atomically, StateError};

/// The JSON of a facts file for these components' desired versions.
pub fn facts_json<'a>(desired: impl IntoIterator<Item = (&'a str, &'a Desired)>) -> Value {
    let components: Map<String, Value> = desired
        .into_iter()
        .map(|(name, desired)| {
            (
                name.to_owned(),
                json!({
                    "version": desired.version,
                    "rollout": desired.rollout,
                    "payload": desired.payload,
                }),
            )
        })
        .collect();
    json!({ "sluice": components })
}

/// Writes `facts` to `path` unless it already holds exactly that; true when
/// it wrote.
pub fn write_facts(path: &Path, facts: &Value) -> Result<bool, StateError> {
    let mut text = serde_json::to_string_pretty(facts).unwrap_or_else(|_| facts.to_string());
    text.push('\n');
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    write_atomically(path, text.as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_read_as_a_manifest_expects_and_are_rewritten_only_on_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("facts.d/sluice.json");
        let desired = Desired {
            version: "2.1".into(),
            rollout: Some("r-7".into()),
            payload: None,
        };
        let facts = facts_json([("dockerd-config", &desired)]);
        assert!(write_facts(&path, &facts).expect("written"));
        let read: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(read["sluice"]["dockerd-config"]["version"], "2.1");
        assert_eq!(read["sluice"]["dockerd-config"]["rollout"], "r-7");
        assert!(
            !write_facts(&path, &facts).expect("unchanged"),
            "no rewrite"
        );
    }
}
