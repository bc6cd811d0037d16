//! `sluice plan check` and `sluice plan preview`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_core::fleet::{parse_fleet, Host};
use sluice_core::plan::{parse_plan, Plan};
use sluice_core::selection::preview;

use crate::commands::connect::io_reason;
use crate::exit::Failure;

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Validate a plan file and report every problem with its line and column
    Check(CheckArgs),
    /// Show how many hosts each stage admits, in total and per stratum
    Preview(PreviewArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The plan file (YAML or JSON)
    #[arg(short = 'f', long = "file", value_name = "PLAN")]
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The plan file (YAML or JSON)
    #[arg(short = 'f', long = "file", value_name = "PLAN")]
    file: PathBuf,
    /// A fleet file: a JSON array of {"id", "labels", "components"}
    #[arg(long, value_name = "FLEET.json")]
    fleet: PathBuf,
    /// Print {"strata": N, "stages": [{"name", "percent", "admitted": [host ids]}]}
    #[arg(long)]
    json: bool,
    /// How many of the largest strata to list per stage before summarising the rest
    #[arg(long, default_value_t = 8, value_name = "N")]
    top: usize,
}

pub fn run(command: PlanCommand) -> Result<(), Failure> {
    match command {
        PlanCommand::Check(args) => check(&args),
        PlanCommand::Preview(args) => preview_plan(&args),
    }
}

fn check(args: &CheckArgs) -> Result<(), Failure> {
    let plan = load_plan(&args.file)?;
    let stages: Vec<String> = plan
        .stages
        .iter()
        .map(|stage| format!("{}%", stage.percent))
        .collect();
    // Whether the rollout it names exists is the server's to say, at create.
    let after = plan
        .after
        .as_ref()
        .map(|after| format!("; starts after {} completes", after.name))
        .unwrap_or_default();
    println!(
        "{}: valid plan {:?}: {} → {}, {} stages ({}){after}",
        args.file.display(),
        plan.name,
        plan.component,
        plan.version,
        plan.stages.len(),
        stages.join(", ")
    );
    Ok(())
}

fn preview_plan(args: &PreviewArgs) -> Result<(), Failure> {
    let plan = load_plan(&args.file)?;
    let hosts = load_fleet(&args.fleet)?;
    let preview = preview(&plan, &hosts);
    let mut out = BufWriter::new(std::io::stdout().lock());
    if args.json {
        serde_json::to_writer(&mut out, &preview.to_json(&hosts)).context("writing the preview")?;
        writeln!(out).context("writing the preview")?;
    } else {
        write!(out, "{}", preview.render_text(&plan, args.top)).context("writing the preview")?;
    }
    out.flush().context("writing the preview")?;
    // The process exits next and the OS takes the memory back at once;
    // dropping a million hosts one allocation at a time would only add
    // tens of milliseconds to every preview.
    std::mem::forget(hosts);
    Ok(())
}

/// Reads and validates a plan; every problem goes to stderr as
/// `FILE:LINE:COLUMN: FIELD: MESSAGE`, and the failure is invalid input.
pub fn load_plan(path: &Path) -> Result<Plan, Failure> {
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("reading plan file {}", path.display()))
        .map_err(Failure::Invalid)?;
    parse_plan(&source).map_err(|errors| {
        for error in &errors.0 {
            eprintln!("{}:{error}", path.display());
        }
        let count = errors.0.len();
        Failure::invalid(format!(
            "{}: {count} problem{} found; the plan was not accepted",
            path.display(),
            if count == 1 { "" } else { "s" }
        ))
    })
}

/// Reads a fleet file.
pub fn load_fleet(path: &Path) -> Result<Vec<Host>, Failure> {
    let bytes = std::fs::read(path).map_err(|error| {
        Failure::invalid(format!(
            "cannot read fleet file {}: {}",
            path.display(),
            io_reason(&error)
        ))
    })?;
    parse_fleet(&bytes)
        .with_context(|| format!("fleet file {}", path.display()))
        .map_err(Failure::Invalid)
}
