//! The benchmark's course: start both servers, load the sluice server
//! (hosts, a running rollout), run the phases against each, report.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_api::rollout::Action;
use sluice_client::Client;

use crate::fleet::{Fleet, COMPONENT, TARGET_VERSION};
use crate::load::{self, Agents, Load, Phase, Target};
use crate::procs::{self, CpuSample, CpuUse, Server};
use crate::report::{self, Commits, Measured, Report};
use crate::RunArgs;

/// Hosts per `POST /v1/hosts/import`.
const IMPORT_CHUNK: usize = 10_000;

/// The rollout every check-in feeds: a 10 % canary spread over role × site
/// that waits for approval, then the rest.
fn plan() -> String {
    format!(
        "name: bench-checkin\n\
         component: {COMPONENT}\n\
         version: \"{TARGET_VERSION}\"\n\
         strategy:\n  spread: [role, site]\n  min_per_stratum: 1\n\
         max_in_flight: 10%\n\
         stages:\n  - {{ name: canary, percent: 10, approve: true }}\n  - {{ percent: 100 }}\n"
    )
}

/// The whole benchmark; `quiet` is how many cores were busy just before.
pub async fn benchmark(args: RunArgs, quiet: f64) -> anyhow::Result<()> {
    let ticks = procs::clock_ticks();
    let sluice = sluice_binary(&args)?;
    let started = jiff::Timestamp::now();

    eprintln!("generating {} hosts …", args.hosts);
    let fleet = Fleet::generate(args.hosts)?;

    let data = tempfile::Builder::new()
        .prefix("sluice-bench-checkin-")
        .tempdir()
        .context("creating the data dir")?;
    let data_dir = data.path().join("data");
    let log_path = data.path().join("server.log");
    let log = std::fs::File::create(&log_path).context("creating the server log")?;
    let cpu = args.pin.then_some(0);
    let bare = Server::start(
        "bare axum",
        &std::env::current_exe().context("finding this binary")?,
        &["bare", "--listen", "127.0.0.1:0"],
        cpu,
        Stdio::inherit(),
    )?;
    let data_arg = data_dir.to_string_lossy().into_owned();
    let server = Server::start(
        "sluice",
        &sluice,
        &["server", "--listen", "127.0.0.1:0", "--data-dir", &data_arg],
        cpu,
        Stdio::from(log),
    )
    .with_context(|| format!("(its log: {})", log_path.display()))?;
    eprintln!(
        "bare axum on {} (pid {}), sluice on {} (pid {}, data {})",
        bare.addr,
        bare.pid(),
        server.addr,
        server.pid(),
        data_dir.display()
    );

    let token = std::fs::read_to_string(data_dir.join("admin.token"))
        .context("reading the admin token")?
        .trim()
        .to_owned();
    let rollout = prepare(&server, &token, &fleet, !args.no_rollout).await?;

    let agents = Arc::new(Agents::new(&fleet));
    drop(fleet);
    let targets = [
        (&bare, Target::new("bare axum", bare.addr, None)?),
        (&server, Target::new("sluice", server.addr, Some(&token))?),
    ];

    // Warm both up, then alternate between them at each step, so that a
    // drift in the machine's state affects both alike.
    let most = args.connections.iter().copied().max().unwrap_or(64);
    for (_, target) in &targets {
        warm_up(target, &agents, most, args.warmup).await?;
    }
    let mut measured: Vec<Measured> = targets
        .iter()
        .map(|(_, target)| Measured {
            name: target.name,
            closed: Vec::new(),
            open: None,
        })
        .collect();
    for &connections in &args.connections {
        for ((process, target), result) in targets.iter().zip(&mut measured) {
            let perf = match &args.perf {
                Some(file) if target.authorization.is_some() && connections == most => {
                    Some(file.as_path())
                }
                _ => None,
            };
            let step = Step {
                process,
                target,
                sluice: &server,
                agents: &agents,
                connections,
                load: Load::Closed,
                duration: args.duration,
                ticks,
                perf,
            };
            result.closed.push(step.run().await?);
        }
    }
    for ((process, target), result) in targets.iter().zip(&mut measured) {
        let rate = result.best().phase.throughput() / 2.0;
        let step = Step {
            process,
            target,
            sluice: &server,
            agents: &agents,
            connections: args.open_connections,
            load: Load::Open(rate),
            duration: args.duration,
            ticks,
            perf: None,
        };
        result.open = Some((rate, step.run().await?));
    }

    let rollout_state = match &rollout {
        Some(id) => Some(rollout_summary(&server, &token, id).await?),
        None => None,
    };
    let report = Report {
        started,
        quiet,
        args: args.clone(),
        machine: report::Machine::read(),
        rollout: rollout_state,
        upgraded: agents.upgraded(),
        targets: measured,
    };
    let text = report.markdown();
    println!("{text}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("written to {}", args.out.display());
    drop(targets);
    drop(server);
    drop(bare);
    Ok(())
}

/// The longest a warm-up may take.
const WARMUP_CAP: Duration = Duration::from_secs(180);

/// Closed loop for at least `warmup` and until every host has checked in
/// once (so that sluice is measured in its steady state: each host's first
/// check-in after the import records its state, later ones only its last
/// check-in, unless its report changed), at most [`WARMUP_CAP`].
async fn warm_up(
    target: &Target,
    agents: &Arc<Agents>,
    connections: usize,
    warmup: Duration,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut done = 0;
    while started.elapsed() < warmup
        || (done < agents.hosts() as u64 && started.elapsed() < WARMUP_CAP)
    {
        let step = Duration::from_secs(1).min(warmup);
        let phase = load::run_phase(
            target,
            agents,
            connections,
            Load::Closed,
            step,
            || {},
            || {},
        )
        .await?;
        check_errors(target, "warm-up", &phase)?;
        done += phase.ok;
    }
    eprintln!(
        "{}: warmed up with {done} check-ins in {:.1} s",
        target.name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One measured phase against one target.
struct Step<'a> {
    process: &'a Server,
    target: &'a Target,
    /// The sluice server, whose group-commit metrics are read around the
    /// phase when it is the target.
    sluice: &'a Server,
    agents: &'a Arc<Agents>,
    connections: usize,
    load: Load,
    duration: Duration,
    ticks: f64,
    /// Record a CPU profile of the target into this file.
    perf: Option<&'a std::path::Path>,
}

impl Step<'_> {
    /// Runs the phase, with the CPU each process used during it and, for
    /// sluice, its group commits.
    async fn run(self) -> anyhow::Result<report::Run> {
        let is_sluice = self.target.authorization.is_some();
        let what = match self.load {
            Load::Closed => format!("closed loop, {} connections", self.connections),
            Load::Open(rate) => format!("open loop at {rate:.0}/s"),
        };
        eprintln!("{}: {what} …", self.target.name);
        let before = if is_sluice {
            commits(self.sluice).await
        } else {
            None
        };
        let mut perf = match self.perf {
            Some(file) => Some(procs::perf_record(self.process.pid(), file, self.duration)?),
            None => None,
        };
        let pid = self.process.pid();
        let mut start = None;
        let mut end = None;
        let phase = load::run_phase(
            self.target,
            self.agents,
            self.connections,
            self.load,
            self.duration,
            || start = Some((CpuSample::take(pid), std::time::Instant::now())),
            || end = Some((CpuSample::take(pid), std::time::Instant::now())),
        )
        .await?;
        if let (Some(perf), Some(file)) = (&mut perf, self.perf) {
            let status = perf.wait().context("waiting for perf")?;
            eprintln!("perf record: {status}; perf report -i {}", file.display());
        }
        let (Some((start, t0)), Some((end, t1))) = (start, end) else {
            anyhow::bail!("the phase did not sample CPU");
        };
        let cpu = CpuUse::between(start?, end?, t1 - t0, self.ticks);
        let after = if is_sluice {
            commits(self.sluice).await
        } else {
            None
        };
        check_errors(self.target, &what, &phase)?;
        eprintln!(
            "{}: {what}: {:.0} check-ins/s, latency p50 {:.2} ms p99 {:.2} ms; cores: server {:.2}, generator {:.2}, machine {:.2}",
            self.target.name,
            phase.throughput(),
            phase.intended.value_at_quantile(0.5) as f64 / 1e3,
            phase.intended.value_at_quantile(0.99) as f64 / 1e3,
            cpu.server,
            cpu.generator,
            cpu.machine
        );
        let commits = match (before, after) {
            (Some(before), Some(after)) => Some(after.since(&before)),
            _ => None,
        };
        Ok(report::Run {
            connections: self.connections,
            phase,
            cpu,
            commits,
        })
    }
}

/// Errors are not part of a fair comparison: stop and say what they were.
fn check_errors(target: &Target, phase: &str, result: &Phase) -> anyhow::Result<()> {
    if result.errors > 0 {
        anyhow::bail!(
            "{}: {} of {} check-ins failed in the {phase}; first: {}",
            target.name,
            result.errors,
            result.errors + result.ok,
            result.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

/// Imports the fleet and, with `rollout`, creates and starts the rollout.
async fn prepare(
    server: &Server,
    token: &str,
    fleet: &Fleet,
    rollout: bool,
) -> anyhow::Result<Option<String>> {
    let client = Client::builder(format!("http://{}", server.addr))
        .token(token)
        .timeout(Duration::from_secs(600))
        .build()?;
    let started = std::time::Instant::now();
    for chunk in fleet.hosts.chunks(IMPORT_CHUNK) {
        client
            .import_hosts(chunk)
            .await
            .context("importing hosts")?;
    }
    eprintln!(
        "imported {} hosts in {:.1} s",
        fleet.hosts.len(),
        started.elapsed().as_secs_f64()
    );
    if !rollout {
        return Ok(None);
    }
    let created = client
        .create_rollout(&plan())
        .await
        .context("creating the rollout")?;
    client
        .action(&created.id, Action::Start, "check-in benchmark")
        .await
        .context("starting the rollout")?;
    eprintln!("rollout {} started", created.id);
    Ok(Some(created.id))
}

/// The rollout's state and host counts at the end, for the report.
async fn rollout_summary(server: &Server, token: &str, id: &str) -> anyhow::Result<String> {
    let client = Client::builder(format!("http://{}", server.addr))
        .token(token)
        .build()?;
    let detail = client.rollout(id).await.context("reading the rollout")?;
    let summary = &detail.summary;
    let hosts: Vec<String> = detail
        .hosts
        .iter()
        .map(|(state, count)| format!("{count} {state}"))
        .collect();
    Ok(format!(
        "{id} {}, stage {} {}; {} selected: {}",
        summary.state,
        summary.stage.map_or(0, |s| s + 1),
        summary.phase.map_or("", |phase| phase.as_str()),
        summary.selected,
        hosts.join(", ")
    ))
}

/// The group commit counters of sluice's `/metrics`.
async fn commits(server: &Server) -> Option<Commits> {
    let text = load::get(server.addr, "/metrics").await.ok()?;
    Commits::parse(&text)
}

/// `--sluice`, else `sluice` beside this binary (both in target/release).
fn sluice_binary(args: &RunArgs) -> anyhow::Result<PathBuf> {
    let path = match &args.sluice {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary's directory")?
            .join("sluice"),
    };
    anyhow::ensure!(
        path.is_file(),
        "{} not found: build it first (cargo build --release -p sluice) or pass --sluice PATH",
        path.display()
    );
    Ok(path)
}
