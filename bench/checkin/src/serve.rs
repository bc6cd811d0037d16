//! `serve`: a sluice server prepared as the benchmark prepares it (SQLite in
//! a temp dir, N imported hosts, the benchmark's rollout running, warmed up
//! until every host has checked in once), left to another load generator
//! (`bench/checkin-wrk.sh`). Prints, once ready:
//!
//! ```text
//! listening on http://ADDR
//! pid PID
//! token TOKEN
//! bodies FILE
//! ```
//!
//! where FILE holds each host's check-in body, one JSON document a line,
//! as its simulated agent would send it now (reporting the target version
//! where the warm-up told it so); then serves until SIGTERM or Ctrl-C, and
//! stops the server and removes its files.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::course;
use crate::fleet::Fleet;
use crate::load::{Agents, Target};
use crate::setup;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Distinct host ids: imported into sluice, one per check-in body
    #[arg(long, default_value_t = 20_000)]
    pub hosts: usize,
    /// Closed-loop warm-up, at least (and until every host checked in once)
    #[arg(long, default_value = "3s", value_parser = crate::parse_duration)]
    pub warmup: Duration,
    /// Keep-alive connections of the warm-up
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// The sluice binary (default: `sluice` beside this binary)
    #[arg(long)]
    pub sluice: Option<PathBuf>,
    /// No rollout (components only, no engine work)
    #[arg(long)]
    pub no_rollout: bool,
    /// Pin the server to CPU 0 and this process (its warm-up) to CPU 1
    #[arg(long)]
    pub pin: bool,
}

/// Hosts per `POST /v1/hosts/import`.
const IMPORT_CHUNK: usize = 10_000;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.hosts > 0 && args.connections > 0,
        "--hosts and --connections must be at least 1"
    );
    let sluice = setup::sluice_binary(args.sluice.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix("sluice-bench-serve-")
        .tempdir()
        .context("creating the data dir")?;
    let (server, token) = setup::start_sqlite(&sluice, dir.path(), args.pin.then_some(0))?;
    eprintln!("sluice on {} (pid {})", server.addr, server.pid());
    let fleet = Fleet::new(args.hosts)?;
    let plan = setup::plan();
    let plan = (!args.no_rollout).then_some(plan.as_str());
    setup::prepare(server.addr, &token, &fleet, IMPORT_CHUNK, plan).await?;
    let agents = Arc::new(Agents::new(fleet.bodies(args.hosts)?));
    let target = Target::new("sluice", &[server.addr], Some(&token))?;
    course::warm_up(&target, &agents, args.connections, args.warmup).await?;

    let bodies = dir.path().join("bodies.jsonl");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&bodies).with_context(|| format!("creating {}", bodies.display()))?,
    );
    for host in 0..agents.hosts() {
        file.write_all(&agents.body(host))?;
        file.write_all(b"\n")?;
    }
    file.flush()
        .with_context(|| format!("writing {}", bodies.display()))?;
    drop(file);
    println!("listening on http://{}", server.addr);
    println!("pid {}", server.pid());
    println!("token {token}");
    println!("bodies {}", bodies.display());
    let _ = std::io::stdout().flush();
    eprintln!(
        "ready: {} hosts, {} told the target version; serving until SIGTERM or Ctrl-C",
        agents.hosts(),
        agents.upgraded()
    );
    stopped().await;
    drop(server);
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn stopped() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                eprintln!("cannot listen for SIGTERM ({error}); stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
