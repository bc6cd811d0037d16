//! `sluice-bench-checkin`: the check-in load benchmark, and the tools built
//! on its setup.
//!
//! The benchmark starts the targets `--targets` names on loopback, each its
//! own process on a default multi-threaded tokio runtime: two references,
//! bare axum handlers (this binary's hidden `bare` subcommand) that answer a
//! fixed `CheckinResponse` — **raw**, which reads the body without parsing
//! it (the loopback HTTP limit), and **bare**, which parses the same
//! `CheckinRequest` — and the **real `sluice server`** (release build, temp
//! data dir, N imported hosts and, unless `--no-rollout`, a running rollout
//! so that every check-in feeds the engine); optionally also three sluice
//! replicas on PostgreSQL, loaded through one standby (**pg-one**) or
//! through all three (**pg-three**). Then, for each target in turn, it
//! finds the maximum throughput with a closed loop of keep-alive
//! connections, each request a different host (cycling over all N), and
//! measures latency with an open loop at half that rate. It prints the
//! figures, with the CPU each process used, and writes them as Markdown.
//!
//! The load generator runs in this process on the same machine, so it
//! competes with the servers for CPU; the report says how much it took.
//! Traffic goes to 127.0.0.1 only, and every phase is bounded in time.
//!
//! `serve` prepares a sluice server the same way and leaves it to another
//! load generator (`bench/checkin-wrk.sh`); `takeover` measures how long a
//! cluster of three replicas takes to serve again after its leader is
//! killed (`bench/takeover.sh`); `overload` offers 4 × the maximum
//! check-in rate to see the server's back-pressure (`bench/overload.sh`).

mod bare;
mod course;
mod fleet;
mod load;
mod overload;
mod pg;
mod procs;
mod report;
mod serve;
mod setup;
mod takeover;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice-bench-checkin",
    about = "Check-in load benchmark: sluice server vs bare axum handlers, same run",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a bare axum check-in handler (started by the benchmark itself)
    #[command(hide = true)]
    Bare {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, value_enum, default_value = "parse")]
        handler: bare::Handler,
    },
    /// Start a sluice server prepared as the benchmark prepares it, print its
    /// address, token and check-in bodies, and serve until SIGTERM or Ctrl-C
    Serve(serve::ServeArgs),
    /// Measure how long three replicas on PostgreSQL take to serve again
    /// after their leader is killed
    Takeover(takeover::TakeoverArgs),
    /// Offer a multiple of the maximum check-in rate in an open loop: accepted
    /// and refused (429) check-ins, accepted latency, the server's memory, and
    /// every acknowledged report after a SIGKILL
    Overload(overload::OverloadArgs),
}

/// What the benchmark can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Kind {
    /// Bare axum: reads the body, does not parse it (the loopback HTTP limit)
    Raw,
    /// Bare axum: parses the same `CheckinRequest`
    Bare,
    /// sluice server on SQLite
    Sluice,
    /// Three sluice replicas on PostgreSQL, loaded through one standby (it forwards)
    PgOne,
    /// Three sluice replicas on PostgreSQL, loaded through all three at once
    PgThree,
}

impl Kind {
    /// `--targets`' default.
    pub const DEFAULT: &[Kind] = &[Kind::Raw, Kind::Bare, Kind::Sluice];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw axum",
            Kind::Bare => "bare axum",
            Kind::Sluice => "sluice",
            Kind::PgOne => "sluice pg, 1 standby",
            Kind::PgThree => "sluice pg, 3 replicas",
        }
    }

    /// Its name on the command line.
    pub fn arg(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Bare => "bare",
            Kind::Sluice => "sluice",
            Kind::PgOne => "pg-one",
            Kind::PgThree => "pg-three",
        }
    }

    pub fn is_reference(self) -> bool {
        matches!(self, Kind::Raw | Kind::Bare)
    }

    /// On the PostgreSQL cluster.
    pub fn is_cluster(self) -> bool {
        matches!(self, Kind::PgOne | Kind::PgThree)
    }
}

/// The benchmark's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Distinct host ids: imported into sluice, one per request, cycling
    #[arg(long, default_value_t = 100_000)]
    pub hosts: usize,
    /// Length of each measured phase (e.g. 10s, 500ms, 1m)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Closed-loop warm-up before measuring each target
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Keep-alive connections of the closed loop; a list (16,64,256) tries
    /// each and takes the best as the maximum throughput
    #[arg(long, default_value = "16,64,256", value_delimiter = ',')]
    pub connections: Vec<usize>,
    /// Keep-alive connections available to the open loop
    #[arg(long, default_value_t = 256)]
    pub open_connections: usize,
    /// Worker threads of the load generator's runtime (with one, it limits
    /// the bare handler's throughput, which would flatter the ratio)
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// The sluice binary (default: `sluice` beside this binary, i.e. target/release/sluice)
    #[arg(long)]
    pub sluice: Option<PathBuf>,
    /// Check in without an active rollout (components only, no engine work)
    #[arg(long)]
    pub no_rollout: bool,
    /// What to load, each in turn: raw, bare, sluice, pg-one, pg-three
    /// (pg-* start three replicas on a database of their own on --postgres)
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "raw,bare,sluice"
    )]
    pub targets: Vec<Kind>,
    /// PostgreSQL server for pg-one and pg-three: the URL of a database
    /// whose user may create databases (the run creates one and drops it)
    #[arg(long, value_name = "URL", default_value = pg::DEFAULT_ADMIN_URL)]
    pub postgres: String,
    /// Pin every server to CPU 0 and the load generator to CPU 1 (taskset)
    #[arg(long)]
    pub pin: bool,
    /// Record a CPU profile of the sluice server (SQLite) during its
    /// closed-loop phase with the most connections into this file (`perf
    /// record --call-graph dwarf`)
    #[arg(long, value_name = "FILE")]
    pub perf: Option<PathBuf>,
    /// Where to write the Markdown results
    #[arg(long, default_value = "bench/out/checkin-results.md")]
    pub out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Bare { listen, handler }) => bare::serve(listen, handler),
        Some(Command::Serve(args)) => {
            if args.pin {
                procs::pin_self(1)?;
            }
            runtime(2)?.block_on(serve::run(args))
        }
        Some(Command::Takeover(args)) => runtime(2)?.block_on(takeover::run(args)),
        Some(Command::Overload(args)) => runtime(2)?.block_on(overload::run(args)),
        None => run(cli.run),
    }
}

/// The load generator's runtime.
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the load generator's runtime")
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.hosts == 0 || args.connections.contains(&0) || args.open_connections == 0 {
        bail!("--hosts, --connections and --open-connections must be at least 1");
    }
    if args.targets.is_empty() {
        bail!("--targets names nothing to load");
    }
    if args.client_threads == 0 {
        bail!("--client-threads must be at least 1");
    }
    // How busy the machine is before anything starts, for the report.
    let quiet = procs::machine_busy(Duration::from_secs(1))?;
    eprintln!("before starting: {quiet:.2} cores busy");
    if args.pin {
        procs::pin_self(1)?;
    }
    runtime(args.client_threads)?.block_on(course::benchmark(args, quiet))
}

/// `10s`, `500ms`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 10s, 500ms or 1m"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" | "" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        _ => return Err(format!("{text:?}: unknown unit {unit:?}; use ms, s or m")),
    };
    if duration.is_zero() {
        return Err("a duration must be more than zero".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3h").is_err());
    }
}
