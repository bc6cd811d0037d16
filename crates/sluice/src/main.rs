//! The `sluice` command line: thin argument parsing over the library crates.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 invalid usage or input.

mod commands;
mod exit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Create, follow and act on rollouts
    #[command(subcommand)]
    Rollout(commands::rollout::RolloutCommand),
    /// The inventory: list and import hosts
    #[command(subcommand)]
    Hosts(commands::hosts::HostsCommand),
    /// Hold every rollout at once (the big red button), or release them
    #[command(subcommand)]
    Freeze(commands::admin::FreezeCommand),
    /// Each component's stable version and the versions across the fleet
    Components(commands::admin::ComponentsArgs),
    /// API tokens
    #[command(subcommand)]
    Token(commands::admin::TokenCommand),
    /// Rehearse a plan against a fleet file in virtual time, with faults
    Simulate(commands::simulate::SimulateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(args),
        Command::Plan(command) => commands::plan::run(command),
        Command::Server(args) => commands::server::run(args),
        Command::Rollout(command) => commands::rollout::run(command),
        Command::Hosts(command) => commands::hosts::run(command),
        Command::Freeze(command) => commands::admin::freeze(command),
        Command::Components(args) => commands::admin::components(args),
        Command::Token(command) => commands::admin::token(command),
        Command::Simulate(args) => commands::simulate::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
