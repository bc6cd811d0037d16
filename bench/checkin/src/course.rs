//! The benchmark's course: start the targets `--targets` names, load the
//! sluice servers (hosts, a running rollout), run the phases against each
//! target in turn, report.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::bare::Handler;
use crate::fleet::Fleet;
use crate::load::{self, Agents, Load, Phase, Target};
use crate::pg::Database;
use crate::procs::{self, Counted, CpuSample, CpuUse, Server};
use crate::report::{self, Commits, Measured, Report, System};
use crate::setup::{self, Cluster, ClusterSettings};
use crate::{Kind, RunArgs};

/// Hosts per `POST /v1/hosts/import`.
const IMPORT_CHUNK: usize = 10_000;

/// One target under load, and what is counted for it.
struct Subject {
    kind: Kind,
    target: Target,
    /// Its processes (three replicas for a cluster): their CPU is the
    /// server's.
    pids: Vec<u32>,
    /// The PostgreSQL database it uses, whose processes' CPU is counted.
    database: Option<String>,
    /// Where its group-commit metrics are read (the leader).
    metrics: Option<SocketAddr>,
    agents: Arc<Agents>,
}

/// The whole benchmark; `quiet` is how many cores were busy just before.
pub async fn benchmark(args: RunArgs, quiet: f64) -> anyhow::Result<()> {
    let mut kinds = args.targets.clone();
    kinds.sort();
    kinds.dedup();
    let database = if kinds.iter().any(|k| k.is_cluster()) {
        Some(Database::create(&args.postgres).await?)
    } else {
        None
    };
    let result = run(&args, quiet, &kinds, database.as_ref()).await;
    if let Some(database) = database {
        database.remove().await;
    }
    result
}

async fn run(
    args: &RunArgs,
    quiet: f64,
    kinds: &[Kind],
    database: Option<&Database>,
) -> anyhow::Result<()> {
    let ticks = procs::clock_ticks();
    let started = jiff::Timestamp::now();
    let sluice = if kinds.iter().any(|k| !k.is_reference()) {
        Some(setup::sluice_binary(args.sluice.as_deref())?)
    } else {
        None
    };
    eprintln!("generating {} hosts …", args.hosts);
    let fleet = Fleet::new(args.hosts)?;
    let bodies = fleet.bodies(args.hosts)?;
    let dir = tempfile::Builder::new()
        .prefix("sluice-bench-checkin-")
        .tempdir()
        .context("creating the data dir")?;
    let cpu = args.pin.then_some(0);
    let plan = setup::plan();
    let plan = (!args.no_rollout).then_some(plan.as_str());

    // Every process started is kept here until the end.
    let mut servers: Vec<Server> = Vec::new();
    let mut clusters: Vec<Cluster> = Vec::new();
    let mut subjects: Vec<Subject> = Vec::new();
    let mut systems: Vec<(System, SocketAddr, String, Arc<Agents>)> = Vec::new();
    let references = Arc::new(Agents::new(bodies.clone()));
    for &kind in kinds {
        let handler = match kind {
            Kind::Raw => Handler::Raw,
            Kind::Bare => Handler::Parse,
            _ => continue,
        };
        let server = setup::start_reference(handler, kind.name(), cpu)?;
        eprintln!("{} on {} (pid {})", kind.name(), server.addr, server.pid());
        subjects.push(Subject {
            kind,
            target: Target::new(kind.name(), &[server.addr], None)?,
            pids: vec![server.pid()],
            database: None,
            metrics: None,
            agents: Arc::clone(&references),
        });
        servers.push(server);
    }
    if let (true, Some(sluice)) = (kinds.contains(&Kind::Sluice), &sluice) {
        let (server, token) = setup::start_sqlite(sluice, dir.path(), cpu)?;
        eprintln!(
            "sluice on {} (pid {}, data {})",
            server.addr,
            server.pid(),
            dir.path().display()
        );
        let rollout = setup::prepare(server.addr, &token, &fleet, IMPORT_CHUNK, plan).await?;
        let agents = Arc::new(Agents::new(bodies.clone()));
        subjects.push(Subject {
            kind: Kind::Sluice,
            target: Target::new(Kind::Sluice.name(), &[server.addr], Some(&token))?,
            pids: vec![server.pid()],
            database: None,
            metrics: Some(server.addr),
            agents: Arc::clone(&agents),
        });
        let system = System {
            name: "sluice",
            store: "SQLite in a temp dir".to_owned(),
            rollout,
            upgraded: 0,
        };
        systems.push((system, server.addr, token, agents));
        servers.push(server);
    }
    if let (Some(database), Some(sluice)) = (database, &sluice) {
        let cluster = Cluster::start(ClusterSettings {
            sluice: sluice.clone(),
            database_url: database.url.clone(),
            dir: dir.path().join("cluster"),
            cpu,
            lease_ttl: None,
        })
        .await?;
        let addrs = cluster.addrs();
        let leader = addrs[0];
        eprintln!(
            "three sluice replicas on PostgreSQL: {}",
            addrs
                .iter()
                .enumerate()
                .map(|(i, addr)| format!("{} on {addr}", Cluster::id(i)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let token = cluster.token.clone();
        let rollout = setup::prepare(leader, &token, &fleet, IMPORT_CHUNK, plan).await?;
        let agents = Arc::new(Agents::new(bodies.clone()));
        for &kind in kinds.iter().filter(|k| k.is_cluster()) {
            // One replica: a standby, the worst case (it forwards).
            let through = match kind {
                Kind::PgOne => &addrs[1..2],
                _ => &addrs[..],
            };
            subjects.push(Subject {
                kind,
                target: Target::new(kind.name(), through, Some(&token))?,
                pids: cluster.pids(),
                database: Some(database.name.clone()),
                metrics: Some(leader),
                agents: Arc::clone(&agents),
            });
        }
        let system = System {
            name: "sluice pg",
            store: format!(
                "three replicas (`sluice server --database-url`) on PostgreSQL (database {}, not pinned); r1 leads; `{}` sends every check-in to r2, a standby, which forwards it to r1; `{}` spreads the connections over r1, r2 and r3 (two thirds are forwarded)",
                database.name,
                Kind::PgOne.name(),
                Kind::PgThree.name()
            ),
            rollout,
            upgraded: 0,
        };
        systems.push((system, leader, token, agents));
        clusters.push(cluster);
    }
    drop(bodies);

    // Warm every target up, then alternate between them at each step, so
    // that a drift in the machine's state affects all alike.
    let most = args.connections.iter().copied().max().unwrap_or(64);
    for subject in &subjects {
        warm_up(&subject.target, &subject.agents, most, args.warmup).await?;
    }
    let mut measured: Vec<Measured> = subjects
        .iter()
        .map(|subject| Measured {
            kind: subject.kind,
            closed: Vec::new(),
            open: None,
        })
        .collect();
    for &connections in &args.connections {
        for (subject, result) in subjects.iter().zip(&mut measured) {
            let perf = match &args.perf {
                Some(file) if subject.kind == Kind::Sluice && connections == most => {
                    Some(file.as_path())
                }
                _ => None,
            };
            let step = Step {
                subject,
                connections,
                load: Load::Closed,
                duration: args.duration,
                ticks,
                perf,
            };
            result.closed.push(step.run().await?);
        }
    }
    for (subject, result) in subjects.iter().zip(&mut measured) {
        let rate = result.best().phase.throughput() / 2.0;
        let step = Step {
            subject,
            connections: args.open_connections,
            load: Load::Open(rate),
            duration: args.duration,
            ticks,
            perf: None,
        };
        result.open = Some((rate, step.run().await?));
    }

    let mut described = Vec::new();
    for (mut system, addr, token, agents) in systems {
        if let Some(id) = &system.rollout {
            system.rollout = Some(setup::rollout_summary(addr, &token, id).await?);
        }
        system.upgraded = agents.upgraded();
        described.push(system);
    }
    let report = Report {
        started,
        quiet,
        args: args.clone(),
        machine: report::Machine::read(),
        systems: described,
        targets: measured,
    };
    let text = report.markdown();
    println!("{text}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("written to {}", args.out.display());
    drop(subjects);
    drop(clusters);
    drop(servers);
    Ok(())
}

/// The longest a warm-up may take.
const WARMUP_CAP: Duration = Duration::from_secs(180);

/// Closed loop for at least `warmup` and until every host has checked in
/// once (so that sluice is measured in its steady state: each host's first
/// check-in after the import records its state, later ones only its last
/// check-in, unless its report changed), at most [`WARMUP_CAP`].
pub async fn warm_up(
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
    subject: &'a Subject,
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
        let subject = self.subject;
        let target = &subject.target;
        let what = match self.load {
            Load::Closed => format!("closed loop, {} connections", self.connections),
            Load::Open(rate) => format!("open loop at {rate:.0}/s"),
        };
        eprintln!("{}: {what} …", target.name);
        let before = commits(subject.metrics).await;
        let mut perf = match (self.perf, subject.pids.first()) {
            (Some(file), Some(&pid)) => Some(procs::perf_record(pid, file, self.duration)?),
            _ => None,
        };
        let counted = Counted {
            servers: &subject.pids,
            database: subject.database.as_deref(),
        };
        let mut start = None;
        let mut end = None;
        let phase = load::run_phase(
            target,
            &subject.agents,
            self.connections,
            self.load,
            self.duration,
            || start = Some((CpuSample::take(counted), std::time::Instant::now())),
            || end = Some((CpuSample::take(counted), std::time::Instant::now())),
        )
        .await?;
        if let (Some(perf), Some(file)) = (&mut perf, self.perf) {
            let status = perf.wait().context("waiting for perf")?;
            eprintln!("perf record: {status}; perf report -i {}", file.display());
        }
        let (Some((start, t0)), Some((end, t1))) = (start, end) else {
            anyhow::bail!("the phase did not sample CPU");
        };
        let cpu = CpuUse::between(&start?, &end?, t1 - t0, self.ticks);
        let after = commits(subject.metrics).await;
        check_errors(target, &what, &phase)?;
        eprintln!(
            "{}: {what}: {:.0} check-ins/s, latency p50 {:.2} ms p99 {:.2} ms; cores: server {:.2}, database {:.2}, generator {:.2}, machine {:.2}",
            target.name,
            phase.throughput(),
            phase.intended.value_at_quantile(0.5) as f64 / 1e3,
            phase.intended.value_at_quantile(0.99) as f64 / 1e3,
            cpu.server,
            cpu.database,
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
pub fn check_errors(target: &Target, phase: &str, result: &Phase) -> anyhow::Result<()> {
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

/// The group commit counters of a sluice server's `/metrics`.
async fn commits(addr: Option<SocketAddr>) -> Option<Commits> {
    let text = load::get(addr?, "/metrics").await.ok()?;
    Commits::parse(&text)
}
