//! The `sluice` command line: thin argument parsing over the library crates.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 invalid usage or input.

mod commands;
mod exit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Validate plans and preview which hosts each stage admits
    #[command(subcommand)]
    Plan(commands::plan::PlanCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(command) => commands::plan::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
