//! The systems under test and how they are made ready, shared by the
//! benchmark, `serve` and `takeover`: the reference handlers, sluice on
//! SQLite, a cluster of three sluice replicas on PostgreSQL; importing the
//! fleet and starting the rollout.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice_api::rollout::Action;
use sluice_client::Client;

use crate::bare::Handler;
use crate::fleet::{Fleet, COMPONENT, TARGET_VERSION};
use crate::load;
use crate::procs::Server;

/// The rollout every check-in of the benchmark feeds: a 10 % canary spread
/// over role × site that waits for approval, then the rest.
pub fn plan() -> String {
    format!(
        "name: bench-checkin\n\
         component: {COMPONENT}\n\
         version: \"{TARGET_VERSION}\"\n\
         strategy:\n  spread: [role, site]\n  min_per_stratum: 1\n\
         max_in_flight: 10%\n\
         stages:\n  - {{ name: canary, percent: 10, approve: true }}\n  - {{ percent: 100 }}\n"
    )
}

/// Starts a reference handler (this binary's `bare` subcommand).
pub fn start_reference(handler: Handler, name: &str, cpu: Option<usize>) -> anyhow::Result<Server> {
    let handler = match handler {
        Handler::Parse => "parse",
        Handler::Raw => "raw",
    };
    Server::start(
        name,
        &std::env::current_exe().context("finding this binary")?,
        &["bare", "--handler", handler, "--listen", "127.0.0.1:0"],
        cpu,
        Stdio::inherit(),
    )
}

/// `sluice server` on SQLite in `dir/data`, logging to `dir/server.log`;
/// with its admin token.
pub fn start_sqlite(
    sluice: &Path,
    dir: &Path,
    cpu: Option<usize>,
) -> anyhow::Result<(Server, String)> {
    let data_dir = dir.join("data");
    let log_path = dir.join("server.log");
    let data_arg = data_dir.to_string_lossy().into_owned();
    let server = Server::start(
        "sluice",
        sluice,
        &["server", "--listen", "127.0.0.1:0", "--data-dir", &data_arg],
        cpu,
        Stdio::from(log_file(&log_path)?),
    )
    .with_context(|| format!("(its log: {})", log_path.display()))?;
    let token = read_token(&data_dir)?;
    Ok((server, token))
}

/// Appends to `path` (a replica restarted keeps its log).
fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn read_token(data_dir: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(data_dir.join("admin.token"))
        .context("reading the admin token")?
        .trim()
        .to_owned())
}

/// How the replicas of a cluster are started.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub sluice: PathBuf,
    pub database_url: String,
    /// Each replica's data dir (`rN/`) and log (`rN.log`) go here.
    pub dir: PathBuf,
    pub cpu: Option<usize>,
    /// `--lease-ttl`, if not the server's default.
    pub lease_ttl: Option<String>,
}

/// Three sluice replicas on one PostgreSQL database: `r1` started first on
/// the empty database leads and writes the admin token, `r2` and `r3`
/// follow as standbys.
#[derive(Debug)]
pub struct Cluster {
    pub settings: ClusterSettings,
    /// Replica `r{i+1}`, `None` while it is down.
    pub replicas: Vec<Option<Server>>,
    pub token: String,
}

/// How long a replica may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(120);

impl Cluster {
    pub async fn start(settings: ClusterSettings) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(&settings.dir)
            .with_context(|| format!("creating {}", settings.dir.display()))?;
        let mut cluster = Cluster {
            settings,
            replicas: Vec::new(),
            token: String::new(),
        };
        let first = cluster.start_replica(0)?;
        wait_role(first.addr, Role::Leader, READY_WITHIN).await?;
        cluster.token = read_token(&cluster.settings.dir.join("r1"))?;
        cluster.replicas.push(Some(first));
        for i in 1..3 {
            let replica = cluster.start_replica(i)?;
            cluster.replicas.push(Some(replica));
        }
        for replica in cluster.replicas.iter().flatten() {
            wait_role(replica.addr, Role::Any, READY_WITHIN).await?;
        }
        Ok(cluster)
    }

    /// The id of replica `i`.
    pub fn id(i: usize) -> String {
        format!("r{}", i + 1)
    }

    /// Replica `i`'s log.
    pub fn log(&self, i: usize) -> PathBuf {
        self.settings.dir.join(format!("{}.log", Cluster::id(i)))
    }

    /// Starts replica `i` (again, after it was killed: same id, same data dir).
    pub fn start_replica(&self, i: usize) -> anyhow::Result<Server> {
        let id = Cluster::id(i);
        let s = &self.settings;
        let data_dir = s.dir.join(&id).to_string_lossy().into_owned();
        let mut args = vec![
            "server",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &s.database_url,
            "--replica-id",
            &id,
            "--data-dir",
            &data_dir,
        ];
        if let Some(ttl) = &s.lease_ttl {
            args.extend(["--lease-ttl", ttl]);
        }
        let log_path = self.log(i);
        Server::start(
            &format!("sluice replica {id}"),
            &s.sluice,
            &args,
            s.cpu,
            Stdio::from(log_file(&log_path)?),
        )
        .with_context(|| format!("(its log: {})", log_path.display()))
    }

    /// The addresses of the replicas that run.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.replicas.iter().flatten().map(|s| s.addr).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.replicas.iter().flatten().map(Server::pid).collect()
    }

    /// The replica that says it leads, if one does.
    pub async fn leader(&self) -> Option<usize> {
        for (i, replica) in self.replicas.iter().enumerate() {
            if let Some(replica) = replica {
                if role(replica.addr).await == Some(Role::Leader) {
                    return Some(i);
                }
            }
        }
        None
    }
}

/// A replica's role, as its `/readyz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Standby,
    /// Ready, either way (only to wait for).
    Any,
}

/// The role `/readyz` reports; `None` when not ready or not answering.
pub async fn role(addr: SocketAddr) -> Option<Role> {
    let (status, body) = load::get_any(addr, "/readyz").await.ok()?;
    if !status.is_success() {
        return None;
    }
    let body: serde_json::Value = serde_json::from_str(&body).ok()?;
    match body.get("role")?.as_str()? {
        "leader" => Some(Role::Leader),
        "standby" => Some(Role::Standby),
        _ => None,
    }
}

/// Waits until the replica at `addr` is ready in `want` (any role with
/// [`Role::Any`]).
async fn wait_role(addr: SocketAddr, want: Role, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let now = role(addr).await;
        if now.is_some_and(|now| want == Role::Any || now == want) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the replica at {addr} was not ready as {want:?} within {within:?} (it is {now:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Imports the fleet in chunks of `chunk` and, with `plan`, creates and
/// starts that rollout; its id.
pub async fn prepare(
    addr: SocketAddr,
    token: &str,
    fleet: &Fleet,
    chunk: usize,
    plan: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let client = Client::builder(format!("http://{addr}"))
        .token(token)
        .timeout(Duration::from_secs(600))
        .build()?;
    let started = Instant::now();
    for start in (0..fleet.len()).step_by(chunk.max(1)) {
        let hosts = fleet.chunk(start..start + chunk)?;
        client
            .import_hosts(&hosts, "benchmark fleet")
            .await
            .context("importing hosts")?;
    }
    eprintln!(
        "imported {} hosts in {:.1} s",
        fleet.len(),
        started.elapsed().as_secs_f64()
    );
    let Some(plan) = plan else {
        return Ok(None);
    };
    let created = client
        .create_rollout(plan)
        .await
        .context("creating the rollout")?;
    client
        .action(&created.id, Action::Start, "check-in benchmark")
        .await
        .context("starting the rollout")?;
    eprintln!("rollout {} started", created.id);
    Ok(Some(created.id))
}

/// A rollout's state and host counts, for a report.
pub async fn rollout_summary(addr: SocketAddr, token: &str, id: &str) -> anyhow::Result<String> {
    let client = Client::builder(format!("http://{addr}"))
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

/// `--sluice`, else `sluice` beside this binary (both in target/release).
pub fn sluice_binary(sluice: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match sluice {
        Some(path) => path.to_owned(),
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
