//! `sluice server`: the control plane (API, check-ins, controller, metrics)
//! on embedded SQLite in `--data-dir`, or on PostgreSQL with
//! `--database-url` (`SLUICE_DATABASE_URL`).
//!
//! Plain HTTP is served on a loopback address only, unless `--insecure-http`
//! says otherwise: anywhere else it takes `--tls-cert` and `--tls-key`.
//!
//! Prints `listening on http://ADDR` (`https://` with `--tls-cert`) on stdout once bound (so that scripts
//! and tests can pass `--listen 127.0.0.1:0` and read the port), logs to
//! stderr (`RUST_LOG`, default `info`), and shuts down gracefully on SIGTERM
//! or Ctrl-C: in-flight requests finish, the group commit is flushed, exit 0.

use std::io::{IsTerminal as _, Write as _};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sluice_server::startup::InvalidTls;
use sluice_server::{Application, Config, DatabaseUrl, ReplicaConfig, TlsFiles};
use tracing_subscriber::EnvFilter;

use crate::exit::Failure;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on; port 0 picks a free port
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: String,
    /// Directory of the SQLite database and of admin.token
    #[arg(long, value_name = "DIR", default_value = "./sluice-data")]
    data_dir: PathBuf,
    /// Keep the state in PostgreSQL instead of SQLite in --data-dir: postgres://USER:PASSWORD@HOST:PORT/DB.
    /// Every user of the machine sees the flag in the process list: prefer SLUICE_DATABASE_URL
    #[arg(
        long,
        value_name = "URL",
        env = "SLUICE_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Seconds between an agent's check-ins, told to agents in every answer
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    checkin_interval: u64,
    /// Check-ins admitted and not yet answered (waiting for a CPU or to become durable), at
    /// most; past it a check-in is answered 429 with Retry-After and the agent comes back later
    #[arg(long, value_name = "N", default_value_t = sluice_server::admission::DEFAULT_CHECKIN_QUEUE,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    checkin_queue: usize,
    /// Milliseconds a check-in may wait to become durable: once one was answered later than that
    /// after it arrived, or none was answered for that long, new check-ins are answered 429 with
    /// Retry-After for as long. 0: no bound in time (only --checkin-queue)
    #[arg(long, value_name = "MS", default_value_t = sluice_server::admission::DEFAULT_CHECKIN_WAIT.as_millis() as u64,
          value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(0..=600_000))]
    checkin_wait_ms: u64,
    /// Requests a second each token may make to the API and the dashboard (agents' check-ins and
    /// enrollments, /healthz, /readyz, /metrics excepted), in bursts of up to twice that; past it, 429
    /// with Retry-After. 0: no limit
    #[arg(long, value_name = "N", default_value_t = sluice_server::admission::DEFAULT_API_RATE)]
    api_rate: u32,
    /// The `instance` of each host in the comparison gates' cohorts (GET /v1/metrics/cohorts):
    /// its exporter's address, the host id put in place of {host}
    #[arg(long, value_name = "TEMPLATE", default_value = sluice_server::cohorts::DEFAULT_INSTANCE,
          value_parser = cohort_instance)]
    cohort_instance: sluice_server::cohorts::InstanceTemplate,
    /// Hosts in each cohort of a rollout's canary analysis, at most (its canary and its baseline)
    #[arg(long, value_name = "N", default_value_t = sluice_server::cohorts::DEFAULT_COHORT_MAX,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    cohort_max: usize,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate first)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback --listen address: tokens and dashboard sessions
    /// then cross the network in clear (without it, such an address needs --tls-cert)
    #[arg(long, conflicts_with = "tls_cert")]
    insecure_http: bool,
    /// With --database-url: this replica's id in the cluster [default: HOSTNAME:PORT]
    #[arg(
        long,
        value_name = "ID",
        env = "SLUICE_REPLICA_ID",
        requires = "database_url"
    )]
    replica_id: Option<String>,
    /// With --database-url: where the other replicas reach this one to forward requests
    /// to it while it leads [default: the scheme and --listen, or HOSTNAME:PORT when
    /// listening on every address]
    #[arg(
        long,
        value_name = "URL",
        env = "SLUICE_ADVERTISE_URL",
        requires = "database_url"
    )]
    advertise_url: Option<String>,
    /// With --database-url: how long the leader's lease lasts unless renewed (renewed
    /// every quarter of it; a standby takes over once it runs out)
    #[arg(long, value_name = "DURATION", default_value = "8s", value_parser = lease_ttl)]
    lease_ttl: std::time::Duration,
    /// With --database-url: trust this PEM CA when forwarding to a leader that serves HTTPS
    #[arg(long, value_name = "FILE", requires = "database_url")]
    peer_ca_cert: Option<PathBuf>,
    /// The longest wait between two retries of a webhook delivery that fails (the
    /// first retry waits 1s, each next one twice as long, up to this)
    #[arg(long, value_name = "DURATION", default_value = "1m", env = "SLUICE_WEBHOOK_RETRY_MAX",
          value_parser = webhook_retry_max)]
    webhook_retry_max: std::time::Duration,
}

fn cohort_instance(text: &str) -> Result<sluice_server::cohorts::InstanceTemplate, String> {
    sluice_server::cohorts::InstanceTemplate::parse(text).map_err(|error| error.to_string())
}

/// A lease TTL: the plans' duration grammar, 2 seconds to 10 minutes.
fn lease_ttl(text: &str) -> Result<std::time::Duration, String> {
    let seconds = sluice_api::duration::parse_seconds(text).map_err(|error| error.to_string())?;
    if !(2..=600).contains(&seconds) {
        return Err(format!(
            "{text:?} is outside 2s to 10m: shorter makes leaders step down at every hiccup of the database, longer makes take-overs slow"
        ));
    }
    Ok(std::time::Duration::from_secs(seconds))
}

/// The webhook retries' cap: the plans' duration grammar, 1 second to 1 hour.
fn webhook_retry_max(text: &str) -> Result<std::time::Duration, String> {
    let seconds = sluice_api::duration::parse_seconds(text).map_err(|error| error.to_string())?;
    if !(1..=3600).contains(&seconds) {
        return Err(format!(
            "{text:?} is outside 1s to 1h: a receiver back from an outage would wait that long for its next delivery"
        ));
    }
    Ok(std::time::Duration::from_secs(seconds))
}

pub fn run(args: ServerArgs) -> Result<(), Failure> {
    init_tracing("info");
    let listen = resolve(&args.listen)?;
    refuse_plain_http(listen, args.tls_cert.is_some(), args.insecure_http)?;
    if args.checkin_interval == 0 {
        return Err(Failure::invalid(
            "--checkin-interval must be at least 1 second",
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(listen, args))
}

async fn serve(listen: SocketAddr, args: ServerArgs) -> Result<(), Failure> {
    let mut config = Config::new(listen, &args.data_dir);
    config.next_checkin_s = args.checkin_interval;
    config.checkin_queue = args.checkin_queue;
    config.checkin_wait =
        (args.checkin_wait_ms > 0).then(|| std::time::Duration::from_millis(args.checkin_wait_ms));
    config.api_rate = args.api_rate;
    config.webhook_retry_max = args.webhook_retry_max;
    config.cohorts = sluice_server::cohorts::CohortSettings {
        instance: args.cohort_instance,
        max: args.cohort_max,
    };
    config.database_url = args.database_url.map(DatabaseUrl::new);
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsFiles { cert, key });
    }
    if let Some(url) = &args.advertise_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Failure::invalid(format!(
                "--advertise-url {url:?} is not a URL; write http://HOST:PORT or https://HOST:PORT, as the other replicas reach this one"
            )));
        }
        // It is shown by GET /v1/cluster, in logs and in errors: no secret.
        let authority = url.split("://").nth(1).unwrap_or_default();
        if authority
            .split('/')
            .next()
            .unwrap_or_default()
            .contains('@')
        {
            return Err(Failure::invalid(
                "--advertise-url must not carry a user or password: GET /v1/cluster, logs and errors show it; write http://HOST:PORT or https://HOST:PORT",
            ));
        }
    }
    config.replica = ReplicaConfig {
        id: args.replica_id,
        advertise_url: args.advertise_url,
        lease_ttl: args.lease_ttl,
        peer_ca: args.peer_ca_cert,
    };
    let app = Application::build(config).await.map_err(|error| {
        if error.is::<InvalidTls>() {
            Failure::Invalid(error)
        } else {
            Failure::Failed(error)
        }
    })?;
    if let Some(path) = app.new_admin_token() {
        eprintln!(
            "sluice: first start: the admin token is in {} (mode 0600); the CLI on this machine finds it there",
            path.display()
        );
    }
    println!("listening on {}", app.url());
    let _ = std::io::stdout().flush();
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

/// `host:port`, a name or an address.
fn resolve(listen: &str) -> Result<SocketAddr, Failure> {
    listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| {
            Failure::invalid(format!(
                "--listen {listen:?} is not an address to listen on; write HOST:PORT, such as 127.0.0.1:7070 or 0.0.0.0:7070"
            ))
        })
}

/// Plain HTTP only on a loopback address (the demo, tests, a proxy on the
/// same machine), unless the operator says `--insecure-http`: elsewhere every
/// bearer token and session cookie would cross the network in clear. The
/// unspecified addresses (`0.0.0.0`, `::`) listen on every interface.
fn refuse_plain_http(listen: SocketAddr, tls: bool, insecure_http: bool) -> Result<(), Failure> {
    if tls || insecure_http || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(Failure::invalid(format!(
        "--listen {listen} is not a loopback address, and plain HTTP there would send every token in clear; \
         give the server a certificate with --tls-cert FILE --tls-key FILE (PEM), \
         or pass --insecure-http to serve plain HTTP anyway (behind a TLS-terminating proxy on a trusted network)"
    )))
}

/// Logs to stderr, filtered by `RUST_LOG`, else by `default`.
pub fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "listening for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "listening for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
