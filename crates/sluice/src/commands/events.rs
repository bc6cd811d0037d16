//! `sluice events [--follow]`: every rollout's events and the fleet-wide
//! ones, from the whole event log.
//!
//! It shows the newest `--limit` events matching `--rollout` and `--kind`,
//! oldest first: a line of text each, or with `--output json` the page as
//! one document (`{"events": [...]}`). `--follow` prints them, then each
//! new event as the server streams it (`GET /v1/events?follow=true`), with
//! `--output json` one JSON object per line. The stream is opened before
//! that first page is read, so nothing written in between is missed; an
//! event the page already printed is not printed again. When the stream
//! breaks — the server restarted, a leader changed (503), the connection
//! fell silent — it connects again with the last seq it printed as
//! `Last-Event-ID`: no event is skipped and none printed twice. Ctrl-C stops.

use std::time::Duration;

use clap::Args;
use sluice_api::rollout::EventView;
use sluice_client::{Client, ClientError, EventFilter, EventStream};

use crate::commands::connect::{block_on, Connection, RemoteArgs};
use crate::commands::output::{fields, print_json, print_text, timestamp};
use crate::exit::Failure;

/// How long `--follow` waits before connecting again, at first and at most.
const RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this rollout's events (its id, e.g. r-7)
    #[arg(long, value_name = "ID")]
    rollout: Option<String>,
    /// Only events of these kinds, comma-separated (stage_started,paused,completed,freeze_on, …)
    #[arg(long, value_name = "KIND[,KIND…]")]
    kind: Option<String>,
    /// At most this many events at first, the newest (1 to 10000)
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: u32,
    /// Keep printing events as they are written (Ctrl-C stops)
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub fn run(args: EventsArgs) -> Result<(), Failure> {
    if !(1..=10_000).contains(&args.limit) {
        return Err(Failure::Invalid(anyhow::anyhow!(
            "--limit {}: give 1 to 10000 events",
            args.limit
        )));
    }
    let filter = EventFilter {
        rollout: args.rollout.clone(),
        kind: args.kind.clone(),
        after: None,
        limit: Some(args.limit),
    };
    let (client, connection) = args.remote.connect()?;
    let json = args.remote.json();
    block_on(async move {
        if !args.follow {
            let page = client
                .log_events(&filter)
                .await
                .map_err(|error| connection.failure("reading the event log", error))?;
            if json {
                return print_json(&page);
            }
            if page.events.is_empty() {
                return print_text("no events\n");
            }
            for event in &page.events {
                print_event(event, false)?;
            }
            return Ok(());
        }
        follow(&client, &connection, &filter, json).await
    })
}

/// Prints the newest events, then every new one, for good.
async fn follow(
    client: &Client,
    connection: &Connection,
    filter: &EventFilter,
    json: bool,
) -> Result<(), Failure> {
    // Opened first: it starts at the log's end as it was then, and the page
    // read next reaches at least as far.
    let mut stream = client
        .follow_events(filter, None)
        .await
        .map_err(|error| connection.failure("following the event log", error))?;
    let page = client
        .log_events(filter)
        .await
        .map_err(|error| connection.failure("reading the event log", error))?;
    for event in &page.events {
        print_event(event, json)?;
    }
    // An empty page: no event matched at all when it was read, after the
    // stream had started; from 0 then on a reconnection.
    let mut last = page.events.last().map_or(0, |event| event.seq);
    let mut retry = RETRY;
    loop {
        match stream.next().await {
            Ok(Some(event)) => {
                retry = RETRY;
                if event.seq > last {
                    print_event(&event, json)?;
                    last = event.seq;
                }
                continue;
            }
            Ok(None) => eprintln!("sluice events: the server ended the stream; connecting again"),
            Err(error) if waits_out(&error) => {
                eprintln!("sluice events: {error}; connecting again");
            }
            Err(error) => return Err(connection.failure("following the event log", error)),
        }
        stream = reconnect(client, connection, filter, last, &mut retry).await?;
    }
}

/// Connects the stream again after `last`, waiting out servers that are
/// away or cannot serve for a moment.
async fn reconnect(
    client: &Client,
    connection: &Connection,
    filter: &EventFilter,
    last: i64,
    retry: &mut Duration,
) -> Result<EventStream, Failure> {
    let mut wait = *retry;
    loop {
        tokio::time::sleep(wait).await;
        *retry = (*retry * 2).min(MAX_RETRY);
        match client.follow_events(filter, Some(last)).await {
            Ok(stream) => return Ok(stream),
            Err(error) if waits_out(&error) => {
                eprintln!("sluice events: {error}; trying again");
                // A 429 says when; anything else backs off.
                wait = error.retry_after().unwrap_or(*retry);
            }
            Err(error) => return Err(connection.failure("following the event log", error)),
        }
    }
}

/// Failures `--follow` waits out: no answer, a connection that broke or
/// fell silent, a server that cannot serve for a moment or has too many
/// streams open.
fn waits_out(error: &ClientError) -> bool {
    error.is_unreachable() || matches!(error.status(), Some(429 | 502..=504))
}

fn print_event(event: &EventView, json: bool) -> Result<(), Failure> {
    if json {
        let line = serde_json::to_string(event)
            .map_err(|error| Failure::Failed(anyhow::anyhow!("encoding an event: {error}")))?;
        print_text(&format!("{line}\n"))
    } else {
        print_text(&format!("{}\n", render(event)))
    }
}

/// One line: seq, time, rollout (`-` for a fleet-wide event), kind, who
/// (when someone did it, not sluice by itself), then the event's fields.
fn render(event: &EventView) -> String {
    let mut line = format!(
        "{:>6}  {}  {:<8} {:<18}",
        event.seq,
        timestamp(&event.at),
        event.rollout.as_deref().unwrap_or("-"),
        event.kind,
    );
    if let Some(actor) = &event.actor {
        line.push_str(&format!(" by {actor}"));
    }
    let details = fields(&event.data);
    if !details.is_empty() {
        line.push_str(&format!("  {details}"));
    }
    line.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_line_with_its_rollout_kind_actor_and_fields() {
        let event = EventView {
            seq: 42,
            rollout: Some("r-3".into()),
            at: "2026-12-07T09:00:00.123Z".into(),
            actor: Some("alice".into()),
            kind: "paused".into(),
            data: serde_json::json!({"reason": "errors up"}),
        };
        assert_eq!(
            render(&event),
            "    42  2026-12-07 09:00:00Z  r-3      paused             by alice  reason=\"errors up\""
        );
        let freeze = EventView {
            seq: 43,
            rollout: None,
            actor: None,
            kind: "completed".into(),
            data: serde_json::json!({}),
            ..event
        };
        assert_eq!(
            render(&freeze),
            "    43  2026-12-07 09:00:00Z  -        completed"
        );
    }
}
