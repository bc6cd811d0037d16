//! `sluice db copy --from DIR --to URL`: moves an embedded install (SQLite
//! in a server's `--data-dir`, the server stopped) into an empty PostgreSQL
//! database, where `sluice server --database-url` goes on with its
//! rollouts. The copy itself is `sluice_store::copy`: every row of every
//! table in one transaction, or nothing.
//!
//! Prints each table on stderr as it is written, then, once committed,
//! what was copied on stdout (`--output json` for scripts). Refusals that
//! the operator's input causes (no install in `--from`, a server still
//! running on it, a schema of another sluice, a target that is not empty,
//! a URL that does not parse) exit 2; a failure of the copy itself (a
//! database that cannot be reached, a row that does not parse) exits 1.
//! The URL shows only with its password replaced.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_store::copy::{self, Copied, CopyError};
use sluice_store::postgres::redact;
use sluice_store::StoreError;

use crate::commands::output::{OutputArgs, Table};
use crate::exit::Failure;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy an embedded install (SQLite in a data dir) into an empty
    /// PostgreSQL database; stop its server first
    Copy(CopyArgs),
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The data dir of the embedded install: its server's --data-dir
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// The empty PostgreSQL database: postgres://USER:PASSWORD@HOST:PORT/DB. Every user of
    /// the machine sees the flag in the process list: prefer SLUICE_DATABASE_URL
    #[arg(
        long,
        value_name = "URL",
        env = "SLUICE_DATABASE_URL",
        hide_env_values = true
    )]
    to: String,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(command: DbCommand) -> Result<(), Failure> {
    match command {
        DbCommand::Copy(args) => copy(&args),
    }
}

/// What `db copy` prints once committed.
#[derive(Debug, Serialize)]
struct Report {
    from: PathBuf,
    to: String,
    tables: Vec<TableRows>,
    rows: u64,
}

#[derive(Debug, Serialize)]
struct TableRows {
    table: &'static str,
    rows: u64,
}

fn copy(args: &CopyArgs) -> Result<(), Failure> {
    let to = redact(&args.to);
    let database = args.from.join(sluice_store::sqlite::FILE_NAME);
    eprintln!("copying {} into {to}", database.display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let copied = runtime
        .block_on(copy::sqlite_to_postgres(
            &args.from,
            &args.to,
            &mut |table: &Copied| eprintln!("  {}: {}", table.table, rows(table.rows)),
        ))
        .map_err(|e| failure(e, &args.from, &to))?;
    let report = Report {
        from: database,
        to,
        rows: copied.iter().map(|table| table.rows).sum(),
        tables: copied
            .into_iter()
            .map(|Copied { table, rows }| TableRows { table, rows })
            .collect(),
    };
    args.output.print(&report, text)
}

fn text(report: &Report) -> String {
    let mut table = Table::new(&["TABLE", "ROWS"]).right(&[1]);
    for copied in &report.tables {
        table.row(vec![copied.table.to_owned(), copied.rows.to_string()]);
    }
    format!(
        "{}copied {} from {} into {}: run the servers with --database-url from now on, \
         not on the data dir\n",
        table.render(),
        rows(report.rows),
        report.from.display(),
        report.to
    )
}

/// `1 row`, `3 rows`.
fn rows(count: u64) -> String {
    match count {
        1 => "1 row".to_owned(),
        count => format!("{count} rows"),
    }
}

/// The exit code of a failed copy: 2 where the operator's input is at
/// fault (the message says what would do), 1 where the copy failed.
fn failure(e: CopyError, from: &Path, to: &str) -> Failure {
    let invalid = |e: CopyError| Failure::Invalid(anyhow::Error::new(e));
    match e {
        CopyError::NoSource(_)
        | CopyError::SourceInUse { .. }
        | CopyError::SourceSchema { .. }
        | CopyError::TargetNotEmpty { .. } => invalid(e),
        CopyError::Store(StoreError::Config(_)) => Failure::Invalid(anyhow::Error::new(e).context(
            "--to takes the URL of a PostgreSQL database: postgres://USER:PASSWORD@HOST:PORT/DB",
        )),
        CopyError::Store(StoreError::SchemaTooNew { .. }) => {
            Failure::Invalid(anyhow::Error::new(e).context(format!("the target {to}")))
        }
        CopyError::Store(_) => Failure::Failed(anyhow::Error::new(e).context(format!(
            "copying {} (nothing was committed)",
            from.display()
        ))),
    }
}
