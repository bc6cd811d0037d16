//! `sluice audit [--follow]`: the audit log — every mutating action with
//! who took it, when, from where and why.
//!
//! Without `--since` it shows the newest `--limit` entries, oldest first;
//! with it, the entries from then on. `--follow` then polls for new entries
//! every second with the number of the last one it printed (the server
//! numbers entries in commit order, so none is skipped), printing each as
//! it comes: a line of text, or one JSON object per line with `--output
//! json`. Unreachable servers and 503s (a leader changing) are waited out.

use std::time::Duration;

use clap::Args;
use sluice_api::audit::{AuditEntry, AuditList};
use sluice_api::vocabulary::AuditKind;
use sluice_client::{AuditFilter, ClientError};

use crate::commands::connect::{block_on, RemoteArgs};
use crate::commands::output::{print_json, print_text, timestamp};
use crate::exit::Failure;

/// How often `--follow` asks for new entries.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only the actions of this token: its id or name
    #[arg(long, value_name = "TOKEN")]
    actor: Option<String>,
    /// Only entries of this kind (rollout_created, freeze_on, token_revoked, …)
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Entries from then on: an RFC 3339 time, or a duration ago (2h, 1d)
    #[arg(long, value_name = "TIME|DURATION")]
    since: Option<String>,
    /// At most this many entries at first (1 to 1000)
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: u32,
    /// Keep printing new entries as they are written (Ctrl-C stops)
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub fn run(args: AuditArgs) -> Result<(), Failure> {
    let filter = filter(&args, jiff::Timestamp::now())?;
    let (client, connection) = args.remote.connect()?;
    let json = args.remote.json();
    block_on(async move {
        let first = client
            .audit(&filter)
            .await
            .map_err(|error| connection.failure("reading the audit log", error))?;
        if !args.follow {
            return if json {
                print_json(&first)
            } else if first.entries.is_empty() {
                print_text("no audit entries\n")
            } else {
                print_text(&render(&first.entries))
            };
        }
        let mut last = print_each(&first, json)?;
        loop {
            let next = AuditFilter {
                since: None,
                after: Some(last.unwrap_or(0)),
                limit: Some(1000),
                ..filter.clone()
            };
            match client.audit(&next).await {
                Ok(page) => {
                    last = print_each(&page, json)?.or(last);
                    if page.entries.len() == 1000 {
                        continue;
                    }
                }
                Err(error) if waits_out(&error) => {
                    eprintln!("sluice audit: {error}; trying again");
                }
                Err(error) => return Err(connection.failure("following the audit log", error)),
            }
            tokio::time::sleep(POLL).await;
        }
    })
}

/// Failures `--follow` waits out: no answer, or a server that cannot serve
/// for a moment.
fn waits_out(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Unreachable { .. } | ClientError::Timeout { .. }
    ) || matches!(error.status(), Some(502..=504))
}

/// The filter of the first request, every flag checked.
fn filter(args: &AuditArgs, now: jiff::Timestamp) -> Result<AuditFilter, Failure> {
    if let Some(kind) = &args.kind {
        kind.parse::<AuditKind>()
            .map_err(|error| Failure::Invalid(anyhow::anyhow!("--kind: {error}")))?;
    }
    if !(1..=1000).contains(&args.limit) {
        return Err(Failure::Invalid(anyhow::anyhow!(
            "--limit {}: give 1 to 1000 entries",
            args.limit
        )));
    }
    let since = args
        .since
        .as_deref()
        .map(|since| since_time(since, now))
        .transpose()?;
    Ok(AuditFilter {
        actor: args.actor.clone(),
        kind: args.kind.clone(),
        since,
        after: None,
        limit: Some(args.limit),
    })
}

/// `--since` as RFC 3339: a time as given, or a duration before `now`.
fn since_time(since: &str, now: jiff::Timestamp) -> Result<String, Failure> {
    if let Ok(at) = since.parse::<jiff::Timestamp>() {
        return Ok(at.to_string());
    }
    let seconds = sluice_api::duration::parse_seconds(since).map_err(|error| {
        Failure::Invalid(anyhow::anyhow!(
            "--since {since:?}: not an RFC 3339 time (2026-12-07T09:00:00Z) nor a duration ago (2h, 1d): {error}"
        ))
    })?;
    let ago = jiff::SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX));
    now.checked_sub(ago)
        .map(|at| at.to_string())
        .map_err(|error| Failure::Invalid(anyhow::anyhow!("--since {since:?}: {error}")))
}

/// Prints each entry as it comes (a line, or a JSON object per line);
/// returns the last entry's number.
fn print_each(page: &AuditList, json: bool) -> Result<Option<i64>, Failure> {
    for entry in &page.entries {
        if json {
            let line = serde_json::to_string(entry)
                .map_err(|error| Failure::Failed(anyhow::anyhow!("encoding an entry: {error}")))?;
            print_text(&format!("{line}\n"))?;
        } else {
            print_text(&render(std::slice::from_ref(entry)))?;
        }
    }
    Ok(page.entries.last().map(|entry| entry.seq))
}

/// One line per entry: number, time, kind and target, actor, source, reason.
fn render(entries: &[AuditEntry]) -> String {
    let mut text = String::new();
    for entry in entries {
        let target = entry
            .target
            .as_deref()
            .map(|target| format!(" {target}"))
            .unwrap_or_default();
        let source = entry.source.as_deref().unwrap_or("an unknown address");
        let reason = entry
            .reason
            .as_deref()
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "{:>6}  {}  {}{target}  by {} ({}, {}) from {source}{reason}\n",
            entry.seq,
            timestamp(&entry.at),
            entry.kind,
            entry.actor.name,
            entry.actor.role,
            entry.actor.id,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use sluice_api::audit::AuditActor;
    use sluice_api::vocabulary::Role;

    use super::*;

    #[test]
    fn an_entry_is_one_line_with_who_what_where_and_why() {
        let entry = AuditEntry {
            seq: 7,
            at: "2026-12-07T09:00:00.123Z".into(),
            actor: AuditActor {
                id: "1b4f0e9851971998".into(),
                name: "alice".into(),
                role: Role::Operator,
            },
            source: Some("10.0.0.7".into()),
            kind: "rollout_paused".into(),
            target: Some("r-3".into()),
            reason: Some("CHG-9: errors up".into()),
            data: serde_json::json!({}),
        };
        assert_eq!(
            render(&[entry]),
            "     7  2026-12-07 09:00:00Z  rollout_paused r-3  by alice (operator, 1b4f0e9851971998) from 10.0.0.7: CHG-9: errors up\n"
        );
    }

    #[test]
    fn since_is_a_time_or_a_duration_ago() -> Result<(), jiff::Error> {
        let now: jiff::Timestamp = "2026-12-07T12:00:00Z".parse()?;
        assert!(matches!(
            since_time("2h", now).as_deref(),
            Ok("2026-12-07T10:00:00Z")
        ));
        assert!(matches!(
            since_time("2026-12-01T00:00:00Z", now).as_deref(),
            Ok("2026-12-01T00:00:00Z")
        ));
        assert!(matches!(
            since_time("yesterday", now),
            Err(Failure::Invalid(_))
        ));
        Ok(())
    }
}
