//! `sluice webhook add|list|remove|test`: notifications. Each event of the
//! log that a webhook wants is POSTed to its receiver by the leader, at
//! least once, in order per rollout, signed with HMAC-SHA256 when it has a
//! secret (`X-Sluice-Signature: sha256=…`), retried with a capped backoff;
//! a receiver that keeps failing is marked failing here.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_api::vocabulary::WebhookFormat;
use sluice_api::webhook::{
    event_filter, WebhookList, WebhookRequest, WebhookTestResult, WebhookView,
};
use sluice_client::Client;

use crate::commands::connect::{ReasonArgs, RemoteArgs};
use crate::commands::output::{self, Table};
use crate::exit::Failure;

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// POST events to a receiver from now on (admin)
    Add(AddArgs),
    /// Every webhook and how its delivery goes (never the secrets)
    List(ListArgs),
    /// Stop delivering to a webhook (admin)
    Remove(RemoveArgs),
    /// Send one webhook_test delivery now and show the receiver's answer (admin)
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Where events are POSTed: an http or https URL
    #[arg(value_name = "URL")]
    url: String,
    /// The event kinds delivered, comma separated (stage_started,completed,host_failed, …;
    /// halted: paused, rollback_started and aborted); default every kind
    #[arg(long, value_name = "KINDS", value_delimiter = ',')]
    events: Vec<String>,
    /// json: the event as the API shows it; slack: {"text": "…"}, one readable line
    #[arg(long, value_name = "FORMAT", default_value = "json", value_parser = format)]
    format: WebhookFormat,
    /// Sign each body with the key in this file (its first line): the receiver checks
    /// X-Sluice-Signature: sha256=<hex HMAC-SHA256 of the body>
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    #[command(flatten)]
    reason: ReasonArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The webhook's id (sluice webhook list)
    #[arg(value_name = "ID")]
    id: String,
    #[command(flatten)]
    reason: ReasonArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The webhook's id (sluice webhook list)
    #[arg(value_name = "ID")]
    id: String,
    #[command(flatten)]
    remote: RemoteArgs,
}

fn format(text: &str) -> Result<WebhookFormat, String> {
    text.parse()
        .map_err(|error: sluice_api::vocabulary::UnknownWord| error.to_string())
}

pub fn run(command: WebhookCommand) -> Result<(), Failure> {
    match command {
        WebhookCommand::Add(args) => add(args),
        WebhookCommand::List(args) => list(args),
        WebhookCommand::Remove(args) => remove(args),
        WebhookCommand::Test(args) => test(args),
    }
}

fn add(args: AddArgs) -> Result<(), Failure> {
    let reason = args.reason.require(
        "add a webhook",
        "sluice webhook add https://hooks.example.net/sluice --events stage_started,halted,completed --reason \"CHG-12: tell #infra\"",
    )?;
    let events: Vec<String> = args
        .events
        .iter()
        .map(|kind| kind.trim().to_owned())
        .filter(|kind| !kind.is_empty())
        .collect();
    event_filter(&events).map_err(|error| Failure::invalid(format!("--events: {error}")))?;
    let secret = args.secret_file.as_deref().map(read_secret).transpose()?;
    let request = WebhookRequest {
        url: args.url.clone(),
        events,
        format: Some(args.format),
        secret,
        reason,
    };
    args.remote.show(
        "adding the webhook",
        async |client| client.add_webhook(&request).await,
        |view| {
            format!(
                "added webhook {}\n{}",
                view.id,
                render(std::slice::from_ref(view))
            )
        },
    )
}

/// The key in a secret file: its first line, which must not be blank.
fn read_secret(path: &std::path::Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --secret-file {}", path.display()))
        .map_err(Failure::Invalid)?;
    let secret = text.lines().next().unwrap_or_default().trim().to_owned();
    if secret.is_empty() {
        return Err(Failure::invalid(format!(
            "--secret-file {} is empty; write the key to sign bodies with on its first line",
            path.display()
        )));
    }
    Ok(secret)
}

fn list(args: ListArgs) -> Result<(), Failure> {
    args.remote.show(
        "listing webhooks",
        Client::webhooks,
        |list: &WebhookList| {
            if list.webhooks.is_empty() {
                "no webhooks (add one with `sluice webhook add URL --reason R`)\n".to_owned()
            } else {
                render(&list.webhooks)
            }
        },
    )
}

fn remove(args: RemoveArgs) -> Result<(), Failure> {
    let reason = args.reason.require(
        "remove a webhook",
        "sluice webhook remove wh-0123456789ab --reason \"channel archived\"",
    )?;
    args.remote.show(
        "removing the webhook",
        async |client| client.remove_webhook(&args.id, &reason).await,
        |view: &WebhookView| format!("removed webhook {} ({})\n", view.id, view.url),
    )
}

fn test(args: TestArgs) -> Result<(), Failure> {
    let (client, connection) = args.remote.connect()?;
    crate::commands::connect::block_on(async {
        let result = client
            .test_webhook(&args.id)
            .await
            .map_err(|error| connection.failure("testing the webhook", error))?;
        args.remote
            .output
            .print(&result, |result: &WebhookTestResult| {
                match (result.delivered, result.status, &result.error) {
                    (true, Some(status), _) => {
                        format!("delivered: the receiver answered {status}\n")
                    }
                    (_, _, Some(error)) => format!("not delivered: {error}\n"),
                    _ => "not delivered\n".to_owned(),
                }
            })?;
        if result.delivered {
            Ok(())
        } else {
            Err(Failure::Failed(anyhow::anyhow!(
                "webhook {} did not acknowledge the test delivery",
                args.id
            )))
        }
    })
}

/// Webhooks as a table: id, URL, events, format, whether signed, where
/// delivery stands and how it goes.
fn render(webhooks: &[WebhookView]) -> String {
    let mut table = Table::new(&[
        "ID",
        "URL",
        "EVENTS",
        "FORMAT",
        "SIGNED",
        "DELIVERED",
        "STATE",
        "LAST SUCCESS",
        "LAST ERROR",
    ]);
    for hook in webhooks {
        let events = if hook.events.is_empty() {
            "all".to_owned()
        } else {
            hook.events
                .iter()
                .map(|kind| kind.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let state = if hook.failing {
            format!("FAILING ({} in a row)", hook.failures)
        } else if hook.failures > 0 {
            format!("retrying ({})", hook.failures)
        } else {
            "ok".to_owned()
        };
        table.row(vec![
            hook.id.clone(),
            hook.url.clone(),
            events,
            hook.format.to_string(),
            if hook.signed { "yes" } else { "no" }.to_owned(),
            format!("seq {}", hook.delivered_seq),
            state,
            hook.last_success_at
                .as_deref()
                .map(output::timestamp)
                .unwrap_or_else(|| "-".to_owned()),
            hook.last_error.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table.render()
}
