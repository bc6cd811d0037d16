//! The command line of `sluice-agent`, in the library so that the packaging
//! step (`sluice generate`) writes its man page and shell completions from
//! the very definition the binary parses, without putting the generators
//! in the agent.

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

/// Checks in with the sluice server, applies the desired versions, runs the
/// health checks and reports.
#[derive(Debug, Parser)]
#[command(name = "sluice-agent", version)]
pub struct Args {
    /// The agent's configuration (TOML)
    #[arg(long, value_name = "PATH", default_value = "/etc/sluice/agent.toml")]
    pub config: PathBuf,
    /// One check-in (and apply, and report), then exit: for cron or a Puppet exec
    #[arg(long)]
    pub once: bool,
}

/// The agent's command line as clap sees it.
pub fn command() -> clap::Command {
    Args::command()
}
