//! The `sluice` command line: thin argument parsing over the library crates.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 invalid usage or input.

mod commands;
mod exit;
mod generate;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "roll out fleet-wide changes gradually, watched and stoppable"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Try sluice: a server, simulated agents over HTTP and a rollout of seconds
    Demo(commands::demo::DemoArgs),
    /// Validate plans and preview which hosts each stage admits
    #[command(subcommand)]
    Plan(commands::plan::PlanCommand),
    /// Run the control plane: API, controller, dashboard, metrics
    Server(commands::server::ServerArgs),
    /// A one-time link that signs the browser in to the dashboard with your token
    Dashboard(commands::dashboard::DashboardArgs),
    /// Create, follow and act on rollouts
    #[command(subcommand)]
    Rollout(commands::rollout::RolloutCommand),
    /// The inventory: list, import and pin hosts
    #[command(subcommand)]
    Hosts(commands::hosts::HostsCommand),
    /// Hold every rollout at once (the big red button), or release them
    #[command(subcommand)]
    Freeze(commands::admin::FreezeCommand),
    /// Each component's stable version and the versions across the fleet
    Components(commands::admin::ComponentsArgs),
    /// The fleet-wide change budget: how much of the fleet may change at once
    #[command(subcommand)]
    Budget(commands::budget::BudgetCommand),
    /// Notifications: POST every rollout's events to a receiver (json or slack), signed
    #[command(subcommand)]
    Webhook(commands::webhook::WebhookCommand),
    /// API tokens
    #[command(subcommand)]
    Token(commands::admin::TokenCommand),
    /// The audit log: every mutating action, who took it, when, from where and why
    Audit(commands::audit::AuditArgs),
    /// Every rollout's events and the fleet-wide ones; --follow tails them live
    Events(commands::events::EventsArgs),
    /// The replicas sharing one PostgreSQL database, and which one leads
    #[command(subcommand)]
    Cluster(commands::cluster::ClusterCommand),
    /// Rehearse a plan against a fleet file in virtual time, with faults
    Simulate(commands::simulate::SimulateArgs),
    /// The database: move an embedded install into PostgreSQL
    #[command(subcommand)]
    Db(commands::db::DbCommand),
}

fn main() -> ExitCode {
    // `Cli` is the documented command line; the hidden `generate` (for
    // scripts/package) is added for parsing only, so that it stays out of
    // the completions and man pages it writes.
    let matches = Cli::command().subcommand(generate::command()).get_matches();
    if let Some(args) = generate::requested(&matches) {
        return finish(args.and_then(generate::run));
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(args),
        Command::Plan(command) => commands::plan::run(command),
        Command::Server(args) => commands::server::run(args),
        Command::Dashboard(args) => commands::dashboard::run(args),
        Command::Rollout(command) => commands::rollout::run(command),
        Command::Hosts(command) => commands::hosts::run(command),
        Command::Freeze(command) => commands::admin::freeze(command),
        Command::Components(args) => commands::admin::components(args),
        Command::Budget(command) => commands::budget::run(command),
        Command::Webhook(command) => commands::webhook::run(command),
        Command::Token(command) => commands::admin::token(command),
        Command::Audit(args) => commands::audit::run(args),
        Command::Events(args) => commands::events::run(args),
        Command::Cluster(command) => commands::cluster::run(command),
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Db(command) => commands::db::run(command),
    };
    finish(result)
}

fn finish(result: Result<(), exit::Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// clap's own checks of every command (two arguments with one id, a
    /// positional after an optional one, …), which otherwise fail only
    /// when that command runs.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
