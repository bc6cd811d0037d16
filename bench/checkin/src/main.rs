//! `sluice-bench-checkin`: the check-in load benchmark.
//!
//! Starts two servers on loopback, each its own process on a default
//! multi-threaded tokio runtime: a **bare axum handler** (this binary's
//! hidden `bare` subcommand: parses the same `CheckinRequest`, answers a
//! fixed `CheckinResponse`) and the **real `sluice server`** (release build,
//! temp data dir, N imported hosts and, unless `--no-rollout`, a running
//! rollout so that every check-in feeds the engine). Then, for each, it
//! finds the maximum throughput with a closed loop of keep-alive
//! connections, each request a different host (cycling over all N), and
//! measures latency with an open loop at half that rate. It prints the
//! figures, with the CPU each process used, and writes them as Markdown.
//!
//! The load generator runs in this process on the same machine, so it
//! competes with the server for CPU; the report says how much it took.
//! Traffic goes to 127.0.0.1 only, and every phase is bounded in time.

mod bare;
mod fleet;
mod load;
mod procs;
mod report;
mod setup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice-bench-checkin",
    about = "Check-in load benchmark: sluice server vs a bare axum handler, same run",
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
    /// Serve the bare axum check-in handler (started by the benchmark itself)
    #[command(hide = true)]
    Bare {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
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
    /// Pin both servers to CPU 0 and the load generator to CPU 1 (taskset)
    #[arg(long)]
    pub pin: bool,
    /// Record a CPU profile of the sluice server during its first
    /// closed-loop phase into this file (`perf record --call-graph dwarf`)
    #[arg(long, value_name = "FILE")]
    pub perf: Option<PathBuf>,
    /// Where to write the Markdown results
    #[arg(long, default_value = "bench/out/checkin-results.md")]
    pub out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Bare { listen }) => bare::serve(listen),
        None => run(cli.run),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.hosts == 0 || args.connections.contains(&0) || args.open_connections == 0 {
        bail!("--hosts, --connections and --open-connections must be at least 1");
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    runtime.block_on(setup::benchmark(args, quiet))
}

/// `10s`, `500ms`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
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
