//! Enrollment: an agent with no token of its own yet, but an enrollment
//! token (`enroll_token_file`), asks for one at first contact —
//! `POST /v1/agent/enroll` with its id and labels — and keeps the answer in
//! `token_file`, readable by its owner only and written atomically, so
//! that a crash leaves either no token file (it enrolls again, which the
//! server refuses while the first token is bound to the host: an admin's
//! `sluice hosts reenroll` settles that) or the whole token. From then on
//! it checks in with that token; the enrollment token is not used again.
//!
//! The servers of the list are tried in turn while they cannot serve (the
//! check-in's rule); a refusal (an expired or used-up token, a label
//! outside the selector, a host already enrolled) is the server's verdict.
//! The daemon retries with capped, jittered backoff until it is enrolled
//! (an admin may fix what was refused meanwhile); `--once` fails at once.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use sluice_api::agent::{EnrollRequest, EnrollResponse};
use sluice_client::{Client, ClientError};

use crate::agent::{backoff_delay, cannot_serve};
use crate::config::AgentConfig;
use crate::ops::HostOps;

/// Why an agent could not enroll (with `--once`, or its token file).
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The server refused, or none could be reached (`--once`).
    #[error("enrolling failed: {0}")]
    Refused(#[source] ClientError),
    /// The host's labels could not be read (`--once`).
    #[error("cannot read the host's labels to enroll: {0}")]
    Labels(String),
    /// The token the server gave could not be kept: it is lost, and the
    /// host must be re-enrolled (`sluice hosts reenroll`).
    #[error("cannot write the enrolled token to {path}: {source}; an admin must let the host enroll again (sluice hosts reenroll HOST)")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Enrolls `config`'s host with `labels` through `client`, which carries
/// the enrollment token: each server of `config.servers` in turn while
/// they cannot serve. Returns the host's own token, shown once.
pub async fn enroll(
    client: &Client,
    config: &AgentConfig,
    labels: BTreeMap<String, String>,
) -> Result<EnrollResponse, ClientError> {
    let request = EnrollRequest {
        host: config.id.clone(),
        labels,
    };
    let servers = config.servers.as_slice();
    let mut index = 0;
    loop {
        let server = &servers[index];
        match client.with_server(server).enroll(&request).await {
            Ok(enrolled) => return Ok(enrolled),
            Err(error) if cannot_serve(&error) && index + 1 < servers.len() => {
                tracing::info!(from = %server, %error, "the server cannot serve the enrollment; trying the next one");
                index += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Enrolls the host and writes its token to `token_file`; returns the
/// token. The labels are the configured ones under those of `ops` (as a
/// check-in sends them). Unless `once`, a failure is logged and tried
/// again after a capped, jittered backoff, for as long as it takes.
pub async fn enroll_host<H: HostOps>(
    client: &Client,
    config: &AgentConfig,
    ops: &H,
    token_file: &Path,
    once: bool,
) -> Result<String, EnrollError> {
    let mut rng = fastrand::Rng::new();
    let mut failures = 0;
    loop {
        let attempt = match ops.labels().await {
            Ok(extra) => {
                let mut labels = config.labels.clone();
                labels.extend(extra);
                enroll(client, config, labels)
                    .await
                    .map_err(EnrollError::Refused)
            }
            Err(error) => Err(EnrollError::Labels(error)),
        };
        match attempt {
            Ok(enrolled) => {
                write_token_file(token_file, &enrolled.token).map_err(|source| {
                    EnrollError::TokenFile {
                        path: token_file.display().to_string(),
                        source,
                    }
                })?;
                tracing::info!(host = %enrolled.host, token = %enrolled.id, selector = %enrolled.selector, path = %token_file.display(), "enrolled; the host's token is kept in token_file");
                return Ok(enrolled.token);
            }
            Err(error) if once => return Err(error),
            Err(error) => {
                failures += 1;
                let delay = backoff_delay(config.interval, failures, rng.f64());
                tracing::error!(%error, retry_in_s = delay.as_secs_f64(), "could not enroll");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Writes `token` to `path`, readable and writable by its owner only from
/// the moment it exists, atomically: a temporary file beside it, synced,
/// renamed over `path`, and the directory synced.
pub fn write_token_file(path: &Path, token: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        writeln!(file, "{}", token.trim())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_the_owners_only_and_replaced_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.token");
        write_token_file(&path, "slc_first\n").expect("written");
        write_token_file(&path, "slc_second").expect("replaced");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "slc_second\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("listed")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("agent.token")]);
    }
}
