//! What the agent remembers across restarts (`state_file`, JSON): per
//! component the last desired version the server named, the desired
//! version the host was last found running (to tell drift from a version
//! not applied yet), what the agent reports (also a failed health check
//! found between applies), the last failed version and whether its apply or
//! its health failed, and an apply in progress. Written
//! atomically: a temp file beside it, fsync, rename, fsync of the directory.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sluice_api::agent::{Desired, ReportState};

/// The state file's contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// The host id this state belongs to.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub components: BTreeMap<String, ComponentState>,
}

/// One component's memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentState {
    /// The last desired version the server named (kept while it is
    /// unreachable; never applied without a fresh answer naming it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Desired>,
    /// The installed version, as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<String>,
    /// The desired version the host was last found running. While the
    /// server still names it, another installed version found outside an
    /// apply is drift (changed by hand); a version the host never ran is
    /// one to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<String>,
    /// What the next check-in reports.
    pub state: ReportState,
    /// The last lines of output of a failed apply or health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A version whose apply failed: not applied again until the server has
    /// named another version in between.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// `failed` is installed and its health check failed (rather than its
    /// apply): the agent keeps checking it, to report a recovery.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unhealthy: bool,
    /// Recorded before `apply_cmd` starts, cleared when its outcome is
    /// recorded: found at start, the apply was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applying: Option<String>,
    /// A version whose interrupted apply was already retried once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried: Option<String>,
}

impl Default for ComponentState {
    fn default() -> Self {
        ComponentState {
            desired: None,
            installed: None,
            reached: None,
            state: ReportState::Ok,
            message: None,
            failed: None,
            unhealthy: false,
            applying: None,
            retried: None,
        }
    }
}

/// Reading or writing the state file failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the state file {path} is not valid agent state ({source}); move it away to start afresh"
    )]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl AgentState {
    /// Reads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<AgentState, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
                path: path.display().to_string(),
                source,
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(source) => Err(StateError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Writes the state file atomically.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|source| StateError::Write {
            path: path.display().to_string(),
            source: source.into(),
        })?;
        bytes.push(b'\n');
        write_atomically(path, &bytes)
    }
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees either the
/// old or the new contents, never a mix: a temp file in the same directory,
/// fsync, rename over `path`, fsync of the directory. Creates the directory
/// when missing.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let error = |source| StateError::Write {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(error)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/state.json");
        assert_eq!(
            AgentState::load(&path).expect("missing is empty"),
            AgentState::default()
        );
        let mut state = AgentState {
            host: "h1".into(),
            ..AgentState::default()
        };
        state.components.insert(
            "c".into(),
            ComponentState {
                desired: Some(Desired {
                    version: "2".into(),
                    rollout: Some("r-1".into()),
                    payload: None,
                }),
                applying: Some("2".into()),
                state: ReportState::Applying,
                ..ComponentState::default()
            },
        );
        state.save(&path).expect("saved");
        assert_eq!(AgentState::load(&path).expect("loaded"), state);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("listing")
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temp file is left behind");
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").expect("writing");
        let error = AgentState::load(&path).expect_err("corrupt");
        assert!(error.to_string().contains("move it away"), "{error}");
    }
}
