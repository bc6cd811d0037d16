//! `sluice generate DIR` (hidden): the shell completions and man pages of
//! `sluice` and `sluice-agent`, written from the clap definitions the
//! binaries parse, for `scripts/package`. The agent's definition comes from
//! its library (`sluice_agent::cli`), so the agent binary carries no
//! generator.
//!
//! Layout, one directory per Debian package:
//!
//! ```text
//! DIR/sluice/{sluice.bash, _sluice, sluice.fish, man/sluice.1, man/sluice-SUBCOMMAND….1}
//! DIR/sluice-agent/{sluice-agent.bash, _sluice-agent, sluice-agent.fish, man/sluice-agent.1}
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches};
use clap_complete::Shell;

use crate::exit::Failure;

const NAME: &str = "generate";

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write into (created if missing)
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// The hidden subcommand, added to `sluice`'s parser beside the documented
/// ones.
pub fn command() -> clap::Command {
    GenerateArgs::augment_args(clap::Command::new(NAME))
        .about("Write the shell completions and man pages of sluice and sluice-agent (for scripts/package)")
        .hide(true)
}

/// The arguments when the command line asked for `generate`.
pub fn requested(matches: &clap::ArgMatches) -> Option<Result<GenerateArgs, Failure>> {
    let matches = matches.subcommand_matches(NAME)?;
    Some(
        GenerateArgs::from_arg_matches(matches)
            .map_err(|error| Failure::invalid(error.to_string())),
    )
}

pub fn run(args: GenerateArgs) -> Result<(), Failure> {
    write_all(crate::Cli::command(), &args.dir.join("sluice"))?;
    write_all(sluice_agent::cli::command(), &args.dir.join("sluice-agent"))?;
    Ok(())
}

/// Completions for bash, zsh and fish in `dir`, man pages (one per
/// subcommand, none for `help`) in `dir/man`.
fn write_all(mut command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    let name = command.get_name().to_owned();
    // Before the completions, which build the command (adding `help`
    // subcommands).
    clap_mangen::generate_to(without_help_subcommands(command.clone()), &man)
        .with_context(|| format!("writing the man pages of {name} into {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, &name, dir).with_context(|| {
            format!(
                "writing the {shell} completions of {name} into {}",
                dir.display()
            )
        })?;
    }
    Ok(())
}

/// `sluice help rollout` completes, but needs no man page of its own.
fn without_help_subcommands(command: clap::Command) -> clap::Command {
    command
        .disable_help_subcommand(true)
        .mut_subcommands(without_help_subcommands)
}
