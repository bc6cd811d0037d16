//! `sluice budget set|show`: the fleet-wide change budget, what is in
//! flight against it and the rollouts waiting for room.

use clap::{Args, Subcommand};
use sluice_api::fleet::{BudgetRequest, BudgetView};
use sluice_client::Client;
use sluice_core::percent::Amount;

use crate::commands::connect::{ReasonArgs, RemoteArgs};
use crate::commands::output::{self, plural, Table};
use crate::exit::Failure;

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Limit the hosts in flight across all rollouts (admin); rollouts wait
    /// for room, the longest waiting first
    Set(SetArgs),
    /// The budget, the hosts in flight against it and the rollouts waiting
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Hosts in flight at once across all rollouts: a count (50) or a share
    /// of the fleet (2%)
    #[arg(long, value_name = "AMOUNT", required_unless_present = "off")]
    max_in_flight: Option<String>,
    /// Hosts in flight at once in any one stratum of the fleet: a count or a
    /// share of the stratum (10%)
    #[arg(long, value_name = "AMOUNT", conflicts_with = "off")]
    per_stratum: Option<String>,
    /// The labels whose distinct values make the fleet's strata, comma
    /// separated (default: role,site)
    #[arg(
        long,
        value_name = "LABELS",
        value_delimiter = ',',
        conflicts_with = "off"
    )]
    spread: Option<Vec<String>>,
    /// Lift the budget: rollouts are limited by their own plans only
    #[arg(long, conflicts_with = "max_in_flight")]
    off: bool,
    #[command(flatten)]
    reason: ReasonArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    remote: RemoteArgs,
}

pub fn run(command: BudgetCommand) -> Result<(), Failure> {
    match command {
        BudgetCommand::Set(args) => set(args),
        BudgetCommand::Show(args) => show(args),
    }
}

/// Checks an amount before it is sent, naming the flag.
fn amount(flag: &str, text: &str) -> Result<String, Failure> {
    match Amount::parse(text) {
        Ok(Amount::Count(0)) => Err(Failure::invalid(format!(
            "{flag} 0 would admit nothing; give at least 1 host, or a share such as 2%"
        ))),
        Ok(_) => Ok(text.trim().to_owned()),
        Err(error) => Err(Failure::invalid(format!("{flag}: {error}"))),
    }
}

fn set(args: SetArgs) -> Result<(), Failure> {
    let (what, example) = if args.off {
        (
            "lift the budget",
            "sluice budget set --off --reason \"change freeze week over\"",
        )
    } else {
        (
            "set the budget",
            "sluice budget set --max-in-flight 2% --reason \"CHG-9: many teams, one fleet\"",
        )
    };
    let reason = args.reason.require(what, example)?;
    let request = BudgetRequest {
        max_in_flight: args
            .max_in_flight
            .as_deref()
            .map(|text| amount("--max-in-flight", text))
            .transpose()?,
        per_stratum: args
            .per_stratum
            .as_deref()
            .map(|text| amount("--per-stratum", text))
            .transpose()?,
        spread: args.spread,
        reason,
    };
    args.remote.show(
        "setting the budget",
        async |client| client.set_budget(&request).await,
        |view| render(view, jiff::Timestamp::now()),
    )
}

fn show(args: ShowArgs) -> Result<(), Failure> {
    args.remote
        .show("reading the budget", Client::budget, |view| {
            render(view, jiff::Timestamp::now())
        })
}

/// The budget, its use, per component and stratum, and who waits.
pub fn render(view: &BudgetView, now: jiff::Timestamp) -> String {
    let mut text = match (&view.budget, view.limit) {
        (Some(budget), Some(limit)) => {
            let mut text = format!(
                "budget: {} in flight of at most {} ({} of {})",
                view.in_flight,
                limit,
                budget.max_in_flight,
                plural(view.fleet, "host")
            );
            if let Some(per_stratum) = &budget.per_stratum {
                text.push_str(&format!(
                    ", at most {per_stratum} of each {} stratum",
                    budget.spread.join(",")
                ));
            }
            text.push_str(&format!(
                "\n  since   {} ({})\n  by      {}\n  reason  {}\n",
                output::timestamp(&budget.since),
                output::relative(&budget.since, now),
                budget.actor,
                budget.reason
            ));
            text
        }
        _ => format!(
            "no budget: {} in flight, each rollout limited by its own plan (set one with `sluice budget set --max-in-flight 2% --reason R`)\n",
            plural(view.in_flight, "host")
        ),
    };
    if !view.in_flight_by_component.is_empty() {
        let mut table = Table::new(&["COMPONENT", "IN FLIGHT"]);
        for (component, in_flight) in &view.in_flight_by_component {
            table.row(vec![component.clone(), in_flight.to_string()]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    let full: Vec<_> = view
        .strata
        .iter()
        .filter(|stratum| stratum.in_flight > 0)
        .collect();
    if !full.is_empty() {
        let mut table = Table::new(&["STRATUM", "IN FLIGHT", "LIMIT", "HOSTS"]);
        for stratum in full {
            table.row(vec![
                stratum.stratum.clone(),
                stratum.in_flight.to_string(),
                stratum.limit.to_string(),
                stratum.hosts.to_string(),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    if view.waiting.is_empty() {
        text.push_str("\nno rollout waits\n");
    } else {
        let mut table = Table::new(&["ROLLOUT", "NAME", "COMPONENT", "WAITING", "SINCE"]);
        for waiting in &view.waiting {
            table.row(vec![
                waiting.id.clone(),
                waiting.name.clone(),
                waiting.component.clone(),
                waiting.waiting.clone(),
                output::relative(&waiting.since, now),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    text
}
