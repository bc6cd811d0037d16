//! `sluice demo`: the whole product on one machine, in one command.
//!
//! Starts the server on a temporary embedded SQLite, imports an inventory
//! sampled from the example fleet, runs one simulated agent per host — the
//! real agent library (`sluice-agent`) checking in over real HTTP, with a
//! simulated apply, each enrolled at its first contact with one enrollment
//! token for the sampled sites — and starts a rollout whose stages last seconds. Then it
//! prints where to look (the dashboard, the CLI) and follows the rollout
//! until Ctrl-C, which stops the agents and the server and removes the data.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_agent::enroll::enroll;
use sluice_agent::{
    Agent, AgentConfig, ComponentConfig, Desired, Failure as OpFailure, HostOps, Mode,
};
use sluice_api::admin::{Role, TokenRequest};
use sluice_api::host::ImportHost;
use sluice_api::rollout::Action;
use sluice_api::rollout::RolloutDetail;
use sluice_client::Client;
use sluice_core::fleet::Labels;
use sluice_core::plan::parse_plan;
use sluice_server::{Application, Config};
use sluice_sim::{Fault, FaultKind};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinSet;

use crate::commands::plan::load_plan;
use crate::commands::server::shutdown_signal;
use crate::exit::Failure;

/// The example fleet the demo samples its hosts from.
const FLEET: &str = include_str!("../../../../examples/fleet-10k.json");
/// The plan the demo runs unless `--plan` names another.
const PLAN: &str = include_str!("../../../../examples/plan-demo.yaml");
/// What simulated hosts run of a component the example fleet does not name.
const FIRST_VERSION: &str = "1.0";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Simulated hosts, sampled evenly from the 10,000 of examples/fleet-10k.json
    #[arg(long, value_name = "N", default_value_t = 300)]
    hosts: usize,
    /// Make hosts misbehave once they run the target: all:fail, role=edge:fail,
    /// site=ash:fail:p=0.3, all:silent (repeatable)
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<String>,
    /// Port on 127.0.0.1 for the server and dashboard; 0 picks a free one
    #[arg(long, value_name = "PORT", default_value_t = 7070)]
    port: u16,
    /// The plan to roll out [default: examples/plan-demo.yaml, built in]
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// Seconds between an agent's check-ins
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    checkin_interval: u64,
}

pub fn run(args: DemoArgs) -> Result<(), Failure> {
    crate::commands::server::init_tracing("warn,sluice_agent=error");
    if !(1..=10_000).contains(&args.hosts) {
        return Err(Failure::invalid(format!(
            "--hosts {}: the demo samples its hosts from a fleet of 10,000; give 1 to 10000",
            args.hosts
        )));
    }
    if args.checkin_interval == 0 {
        return Err(Failure::invalid(
            "--checkin-interval must be at least 1 second",
        ));
    }
    let faults = parse_faults(&args.faults)?;
    let (plan_source, plan_name, component) = match &args.plan {
        Some(path) => {
            let plan = load_plan(path)?;
            let source = std::fs::read_to_string(path)
                .with_context(|| format!("reading plan file {}", path.display()))
                .map_err(Failure::Invalid)?;
            (source, path.display().to_string(), plan.component)
        }
        None => {
            let plan = parse_plan(PLAN).map_err(|errors| {
                anyhow::anyhow!("the built-in demo plan is invalid: {errors:?}")
            })?;
            let name = "examples/plan-demo.yaml (built in)".to_owned();
            (PLAN.to_owned(), name, plan.component)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(demo(args, faults, plan_source, plan_name, component))
}

fn parse_faults(specs: &[String]) -> Result<Vec<Fault>, Failure> {
    specs
        .iter()
        .map(|spec| {
            let fault = Fault::parse(spec).map_err(Failure::invalid)?;
            match fault.kind() {
                FaultKind::FailAfter(_) => {
                    return Err(Failure::invalid(format!(
                        "--fault {spec:?}: the demo's agents check health once, right after they apply, \
                         so a late failure cannot show; rehearse it with `sluice simulate`, or use \
                         SELECTOR:fail or SELECTOR:silent here"
                    )));
                }
                FaultKind::Degrade(_) => {
                    return Err(Failure::invalid(format!(
                        "--fault {spec:?}: the demo has no metrics for a degradation to show in; \
                         rehearse it with `sluice simulate`, or use SELECTOR:fail or SELECTOR:silent here"
                    )));
                }
                FaultKind::Fail | FaultKind::Silent => {}
            }
            Ok(fault)
        })
        .collect()
}

/// The demo's hosts: an even sample of the example fleet, with what each
/// runs of `component`.
fn sample_fleet(count: usize, component: &str) -> anyhow::Result<Vec<ImportHost>> {
    let fleet: Vec<ImportHost> =
        serde_json::from_str(FLEET).context("reading the built-in example fleet")?;
    let step = fleet.len() as f64 / count as f64;
    Ok((0..count)
        .filter_map(|i| fleet.get((i as f64 * step) as usize).cloned())
        .map(|mut host| {
            let version = host
                .components
                .get(component)
                .cloned()
                .unwrap_or_else(|| FIRST_VERSION.to_owned());
            host.components = BTreeMap::from([(component.to_owned(), version)]);
            host
        })
        .collect())
}

/// An enrollment token for the demo's hosts: their sites, one use each,
/// for a day; `client` with it (the admin's pool).
async fn enrollment_token(client: &Client, hosts: &[ImportHost]) -> anyhow::Result<Client> {
    let sites: BTreeSet<&str> = hosts
        .iter()
        .filter_map(|host| host.labels.get("site").map(String::as_str))
        .collect();
    let sites: Vec<&str> = sites.into_iter().collect();
    let created = client
        .request_token(&TokenRequest {
            role: Role::Enroll,
            host: None,
            name: Some("demo agents".to_owned()),
            selector: Some(format!("site in ({})", sites.join(", "))),
            uses: Some(hosts.len().max(1) as u64),
            expires: Some("24h".to_owned()),
            reason: "sluice demo: the simulated agents enroll with it".to_owned(),
        })
        .await
        .context("creating the agents' enrollment token")?;
    client
        .with_token(&created.token)
        .context("the enrollment token")
}

async fn demo(
    args: DemoArgs,
    faults: Vec<Fault>,
    plan_source: String,
    plan_name: String,
    component: String,
) -> Result<(), Failure> {
    let data = tempfile::Builder::new()
        .prefix("sluice-demo-")
        .tempdir()
        .context("creating the demo's data directory")?;
    let listen = SocketAddr::from(([127, 0, 0, 1], args.port));
    let mut config = Config::new(listen, data.path());
    config.next_checkin_s = args.checkin_interval;
    let app = Application::build(config).await.with_context(|| {
        format!("starting the server on {listen} (another sluice on that port? try --port 0)")
    })?;
    let url = app.url();
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = server_stopped.await;
    }));

    let token_path = data.path().join(crate::commands::connect::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("reading {}", token_path.display()))?
        .trim()
        .to_owned();
    // The demo acts as the admin; the simulated agents share its HTTP
    // client (one pool) but not its token: each enrolls with one
    // enrollment token, as a real fleet does, and checks in with its own.
    let client = Client::builder(url.clone())
        .token(token)
        .user_agent(concat!("sluice-demo/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;

    let hosts = sample_fleet(args.hosts, &component)?;
    client
        .import_hosts(&hosts, "sluice demo: the simulated fleet")
        .await
        .context("importing the simulated hosts")?;
    let enrollment = enrollment_token(&client, &hosts).await?;
    let stop_agents = Arc::new(Notify::new());
    let dark = Arc::new(AtomicUsize::new(0));
    let mut agents = JoinSet::new();
    for (index, host) in hosts.iter().enumerate() {
        let labels: Labels = host
            .labels
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let fault = faults
            .iter()
            .enumerate()
            .find(|(position, fault)| fault.hits(0, *position, &host.id, &labels))
            .map(|(_, fault)| fault.kind());
        let first = host
            .components
            .get(&component)
            .cloned()
            .unwrap_or_else(|| FIRST_VERSION.to_owned());
        let simulated = Arc::new(SimulatedHost {
            installed: Mutex::new(first.clone()),
            first,
            // Installing takes a moment, different on every host.
            apply_time: Duration::from_millis(300 + (index as u64 * 7919) % 900),
            fault,
            dark: Notify::new(),
        });
        let config = AgentConfig {
            servers: client.server_url().clone().into(),
            id: host.id.clone(),
            interval: Duration::from_secs(args.checkin_interval),
            labels: host.labels.clone(),
            components: vec![ComponentConfig {
                name: component.clone(),
                mode: Mode::Apply,
                timeout: Duration::from_secs(60),
                health_interval: None,
                enforce: false,
            }],
            state_file: None,
            artifacts: None,
        };
        let (client, enrollment) = (client.clone(), enrollment.clone());
        let stop = Arc::clone(&stop_agents);
        let dark = Arc::clone(&dark);
        agents.spawn(async move {
            // First contact: enroll for a token of its own.
            let enrolled = enroll(&enrollment, &config, config.labels.clone()).await;
            let own = match enrolled.map(|enrolled| client.with_token(&enrolled.token)) {
                Ok(Ok(own)) => own,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "a simulated agent's token");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "a simulated agent could not enroll");
                    return;
                }
            };
            let agent = match Agent::new(config, own, Arc::clone(&simulated)) {
                Ok(agent) => agent.with_seed(index as u64),
                Err(error) => {
                    tracing::warn!(%error, "starting a simulated agent");
                    return;
                }
            };
            tokio::select! {
                result = agent.run(stop.notified()) => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "a simulated agent stopped");
                    }
                }
                () = simulated.dark.notified() => {
                    dark.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    let created = client
        .create_rollout(&plan_source)
        .await
        .context("creating the demo rollout")?;
    client
        .action(&created.id, Action::Start, "sluice demo")
        .await
        .context("starting the demo rollout")?;
    // Signing in without pasting the admin token: a one-time link.
    let link = client
        .signin_link()
        .await
        .context("making a dashboard sign-in link")?;
    print_banner(&BannerFacts {
        url: &url,
        hosts: hosts.len(),
        faults: &args.faults,
        data_dir: data.path(),
        signin: &format!("{}{}", client.server_url(), link.path),
        id: &created.id,
        plan: &plan_name,
    });

    tokio::select! {
        () = shutdown_signal() => {}
        () = follow(&client, &created.id) => {}
    }

    println!("\nstopping: agents, then the server");
    stop_agents.notify_waiters();
    agents.shutdown().await;
    let _ = stop_server.send(());
    match server.await {
        Ok(result) => result?,
        Err(error) => return Err(anyhow::anyhow!("the server task failed: {error}").into()),
    }
    let path = data.path().display().to_string();
    data.close()
        .with_context(|| format!("removing the demo's data directory {path}"))?;
    println!("stopped; removed {path}");
    Ok(())
}

struct BannerFacts<'a> {
    url: &'a str,
    hosts: usize,
    faults: &'a [String],
    data_dir: &'a Path,
    /// A one-time sign-in link to the dashboard.
    signin: &'a str,
    id: &'a str,
    plan: &'a str,
}

fn print_banner(facts: &BannerFacts<'_>) {
    let me = std::env::current_exe()
        .ok()
        .and_then(|path| {
            let cwd = std::env::current_dir().ok()?;
            Some(match path.strip_prefix(&cwd) {
                Ok(relative) => format!("./{}", relative.display()),
                Err(_) => path.display().to_string(),
            })
        })
        .unwrap_or_else(|| "sluice".to_owned());
    let faults = if facts.faults.is_empty() {
        "none (add --fault all:fail or --fault role=edge:fail to see a rollout stop)".to_owned()
    } else {
        facts.faults.join(", ")
    };
    let data_dir = facts.data_dir.display();
    let (url, id, signin) = (facts.url, facts.id, facts.signin);
    println!(
        "\
sluice demo: {hosts} simulated hosts checking in over HTTP; faults: {faults}
  server     {url}  (embedded SQLite in {data_dir}, removed at exit)
  dashboard  {signin}
             (signs you in once, within a minute; later: {me} dashboard --open, after the export below)
  rollout    {id}, plan {plan}

Try, in another terminal:
  export SLUICE_SERVER={url} SLUICE_DATA_DIR={data_dir}
  {me} rollout status {id} --watch
  {me} rollout pause {id} --reason \"looks wrong\"
  {me} rollout resume {id} --reason \"fine after all\"
  {me} rollout rollback {id} --reason \"take it back\"
  {me} freeze on --reason \"incident\"      # holds every rollout; freeze off to release

Ctrl-C stops the demo.
",
        hosts = facts.hosts,
        plan = facts.plan,
    );
    let _ = std::io::stdout().flush();
}

/// Prints a line whenever the rollout's state, stage or phase changes, and
/// its counts at most every few seconds; says when it is over (the server
/// keeps serving until Ctrl-C).
async fn follow(client: &Client, id: &str) {
    const QUIET: Duration = Duration::from_secs(5);
    let mut last = (String::new(), String::new());
    let mut printed = tokio::time::Instant::now();
    let mut ended = false;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let detail = match client.rollout(id).await {
            Ok(detail) => detail,
            Err(error) => {
                tracing::warn!(%error, "reading the rollout");
                continue;
            }
        };
        let summary = &detail.summary;
        let step = format!("{} {:?} {:?}", summary.state, summary.stage, summary.phase);
        let line = progress_line(&detail);
        if step != last.0 || (line != last.1 && printed.elapsed() >= QUIET) {
            println!("{line}");
            let _ = std::io::stdout().flush();
            printed = tokio::time::Instant::now();
            last = (step, line);
        }
        if detail.summary.state.is_terminal() && !ended {
            ended = true;
            println!(
                "the rollout is over; the server keeps running for a look around (Ctrl-C stops it)"
            );
        }
    }
}

fn progress_line(detail: &RolloutDetail) -> String {
    let summary = &detail.summary;
    let stage = summary
        .stage
        .and_then(|index| detail.stages.get(index).map(|stage| (index, stage)))
        .map(|(index, stage)| {
            format!(
                " stage {}/{} {} ({}%)",
                index + 1,
                detail.stages.len(),
                stage.name,
                stage.percent
            )
        })
        .unwrap_or_default();
    let phase = summary
        .phase
        .map(|phase| format!(" {phase}"))
        .unwrap_or_default();
    let reason = detail
        .reason
        .as_deref()
        .map(|reason| format!(" — {reason}"))
        .unwrap_or_default();
    format!(
        "{}{stage}{phase}: {} of {} hosts admitted, {} healthy, {} failed{reason}",
        summary.state, summary.admitted, summary.selected, summary.healthy, summary.failed
    )
}

/// A host that installs a version by remembering it, after a short while;
/// a faulty one fails its health check, or goes dark, once it runs the
/// target (only the target is faulty: going back heals it).
#[derive(Debug)]
struct SimulatedHost {
    installed: Mutex<String>,
    /// What the host ran before any rollout.
    first: String,
    apply_time: Duration,
    fault: Option<FaultKind>,
    /// Notified when the host stops checking in (`silent`).
    dark: Notify,
}

impl HostOps for SimulatedHost {
    async fn installed(
        &self,
        _: &ComponentConfig,
        _: Option<&Desired>,
    ) -> Result<String, OpFailure> {
        Ok(self
            .installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }

    async fn apply(
        &self,
        _: &ComponentConfig,
        desired: &Desired,
        _: Option<&Path>,
    ) -> Result<(), OpFailure> {
        tokio::time::sleep(self.apply_time).await;
        *self
            .installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = desired.version.clone();
        Ok(())
    }

    async fn health(&self, _: &ComponentConfig, desired: &Desired) -> Result<(), OpFailure> {
        if desired.version == self.first {
            return Ok(());
        }
        match self.fault {
            Some(FaultKind::Fail) => Err(format!(
                "dockerd: failed to start daemon: error initializing graphdriver (simulated fault on {})",
                desired.version
            )),
            Some(FaultKind::Silent) => {
                self.dark.notify_one();
                std::future::pending().await
            }
            Some(FaultKind::FailAfter(_) | FaultKind::Degrade(_)) | None => Ok(()),
        }
    }
}
