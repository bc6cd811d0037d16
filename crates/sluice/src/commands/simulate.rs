//! `sluice simulate`: rehearse a plan against a fleet file in virtual time
//! (see the `sluice-sim` crate), and print what would happen — or, with
//! `--report`, the rollout retrospective of the rehearsal, the same report
//! `sluice rollout report` writes of a real rollout.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use jiff::Timestamp;
use sluice_core::duration::Duration;
use sluice_sim::retro::{self, render};
use sluice_sim::run::DEFAULT_START;
use sluice_sim::{rehearse, simulate, Config, Fault};

use crate::commands::connect::io_reason;
use crate::commands::plan::{load_fleet, load_plan};
use crate::commands::rollout::ReportFormat;
use crate::exit::Failure;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A fleet file: a JSON array of {"id", "labels", "components"}
    #[arg(long, value_name = "FLEET.json")]
    fleet: PathBuf,
    /// The plan file (YAML or JSON)
    #[arg(long, value_name = "PLAN")]
    plan: PathBuf,
    /// A fault, SELECTOR:KIND[:p=SHARE]: all:fail, role=edge:fail,
    /// site=ash:fail:p=0.3, all:fail-after=2h, all:silent, role=edge:degrade=2.0
    /// (the gates' simulated metric times 2.0 on hosts running the target; repeatable;
    /// a host gets the first fault that hits it)
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<String>,
    /// How often agents check in (jittered ±20 %)
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    poll: String,
    /// Seeds the jitter, the apply times and which hosts a p= fault hits
    #[arg(long, default_value_t = 0, value_name = "N")]
    seed: u64,
    /// How long after a stage awaits approval the simulated operator approves it
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    approve_after: String,
    /// The virtual start time, RFC 3339 [default: 2026-01-05T08:00:00Z, a Monday]
    #[arg(long, value_name = "TIMESTAMP")]
    start: Option<String>,
    /// A host's usual value of the simulated metric that comparison and Prometheus gates read
    /// (each host 0.8 to 1.2 times it), in the units of the plan's thresholds
    #[arg(long, default_value_t = 1.0, value_name = "VALUE")]
    metric_base: f64,
    /// Hosts per cohort of comparison gates, at most, as `sluice server --cohort-max`
    #[arg(long, default_value_t = sluice_sim::run::DEFAULT_COHORT_MAX, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    cohort_max: usize,
    /// Stop after this much virtual time, finished or not
    #[arg(long, default_value = "30d", value_name = "DURATION")]
    limit: String,
    /// Print the figures as JSON
    #[arg(long, conflicts_with = "report")]
    json: bool,
    /// Print the rehearsal's retrospective instead (md, html or json), as
    /// `sluice rollout report` writes a real rollout's
    #[arg(long, value_enum, value_name = "FORMAT")]
    report: Option<ReportFormat>,
    /// With --report: write it to FILE (and, for md, its chart beside it as
    /// sim-chart.svg) instead of standard output
    #[arg(long, short = 'o', value_name = "FILE", requires = "report")]
    output: Option<PathBuf>,
}

pub fn run(args: SimulateArgs) -> Result<(), Failure> {
    let config = config(&args)?;
    let plan = load_plan(&args.plan)?;
    let hosts = load_fleet(&args.fleet)?;
    if let Some(format) = args.report {
        let rehearsal = rehearse(&plan, &hosts, &config);
        let report = retro::of_rehearsal(&plan, &hosts, &config, &rehearsal);
        let chart_file = format!("{}-chart.svg", report.rollout);
        let text = render::render(&report, format.into(), &chart_file);
        match &args.output {
            None => {
                let mut out = std::io::stdout().lock();
                write!(out, "{text}").context("writing the report")?;
                out.flush().context("writing the report")?;
            }
            Some(path) => {
                write_file(path, &text)?;
                if format == ReportFormat::Md {
                    let beside = path.parent().unwrap_or(Path::new("")).join(chart_file);
                    write_file(&beside, &render::chart(&report))?;
                }
            }
        }
        std::mem::forget(hosts);
        return Ok(());
    }
    let report = simulate(&plan, &hosts, &config);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).context("writing the report")?;
        writeln!(out).context("writing the report")?;
    } else {
        write!(out, "{}", report.render_text()).context("writing the report")?;
    }
    out.flush().context("writing the report")?;
    // The process exits next; the OS takes the fleet back at once.
    std::mem::forget(hosts);
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|error| {
        Failure::Failed(anyhow::anyhow!(
            "writing {}: {}",
            path.display(),
            io_reason(&error)
        ))
    })?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The simulation's settings from the flags; each error names its flag.
fn config(args: &SimulateArgs) -> Result<Config, Failure> {
    let duration = |flag: &str, text: &str| {
        Duration::parse(text).map_err(|error| Failure::invalid(format!("{flag}: {error}")))
    };
    let poll = duration("--poll", &args.poll)?;
    if poll.is_zero() {
        return Err(Failure::invalid(
            "--poll: agents must wait between check-ins; give a positive duration such as 60s",
        ));
    }
    let limit = duration("--limit", &args.limit)?;
    if limit.is_zero() {
        return Err(Failure::invalid(
            "--limit: give a positive duration of virtual time, such as 30d",
        ));
    }
    let start = match &args.start {
        None => DEFAULT_START,
        Some(text) => text.parse::<Timestamp>().map_err(|error| {
            Failure::invalid(format!(
                "--start: {text:?} is not a timestamp ({error}); write RFC 3339, such as 2026-01-05T08:00:00Z"
            ))
        })?,
    };
    let faults = args
        .faults
        .iter()
        .map(|spec| Fault::parse(spec).map_err(Failure::invalid))
        .collect::<Result<Vec<_>, _>>()?;
    if !(args.metric_base.is_finite() && args.metric_base > 0.0) {
        return Err(Failure::invalid(format!(
            "--metric-base {}: write a positive number, such as 0.00004 (restarts a second on a host)",
            args.metric_base
        )));
    }
    Ok(Config {
        poll,
        seed: args.seed,
        faults,
        approve_after: duration("--approve-after", &args.approve_after)?,
        start,
        limit,
        metric_base: args.metric_base,
        cohort_max: args.cohort_max,
    })
}
