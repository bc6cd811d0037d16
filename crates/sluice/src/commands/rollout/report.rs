//! `sluice rollout report ID [--format md|html|json] [-o FILE]`: the
//! rollout's retrospective, as the server writes it from its record. With
//! `-o`, a Markdown report's chart is written beside it (`ID-chart.svg`,
//! the name the report links it by).

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use sluice_sim::retro::render;

use crate::commands::connect::{block_on, io_reason, ConnectArgs};
use crate::exit::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Markdown, to paste into the incident review
    Md,
    /// One self-contained HTML page, readable printed
    Html,
    /// Every figure, for tools
    Json,
}

impl From<ReportFormat> for render::Format {
    fn from(format: ReportFormat) -> render::Format {
        match format {
            ReportFormat::Md => render::Format::Md,
            ReportFormat::Html => render::Format::Html,
            ReportFormat::Json => render::Format::Json,
        }
    }
}

impl ReportFormat {
    fn name(self) -> &'static str {
        match self {
            ReportFormat::Md => "md",
            ReportFormat::Html => "html",
            ReportFormat::Json => "json",
        }
    }
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The rollout id
    #[arg(value_name = "ID")]
    id: String,
    /// md (default), html or json
    #[arg(long, short = 'f', value_enum, default_value_t = ReportFormat::Md)]
    format: ReportFormat,
    /// Write the report to FILE instead of standard output (and, for md,
    /// its chart beside it as ID-chart.svg)
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub fn report(args: ReportArgs) -> Result<(), Failure> {
    let (client, connection) = args.connect.connect()?;
    let id = &args.id;
    let doing = format!("reading the report of rollout {id}");
    block_on(async move {
        let report = client
            .report(id, args.format.name())
            .await
            .map_err(|error| connection.failure(&doing, error))?;
        let Some(path) = &args.output else {
            print!("{report}");
            return Ok(());
        };
        write(path, &report)?;
        eprintln!("wrote {}", path.display());
        if args.format == ReportFormat::Md {
            let chart = client
                .report(id, "svg")
                .await
                .map_err(|error| connection.failure(&doing, error))?;
            let beside = path
                .parent()
                .unwrap_or(Path::new(""))
                .join(format!("{id}-chart.svg"));
            write(&beside, &chart)?;
            eprintln!("wrote {}", beside.display());
        }
        Ok(())
    })
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|error| {
        Failure::Failed(anyhow!("writing {}: {}", path.display(), io_reason(&error)))
    })
}
