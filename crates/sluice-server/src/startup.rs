//! Building and running the server: [`Application::build`] opens the store,
//! binds the listener (port 0 picks one, see [`Application::port`]) and
//! makes this process a [`Replica`] — the leader at once on the embedded
//! store, with memory restored; on PostgreSQL the leader if the lease is
//! free, else a standby. [`Application::run_until_stopped`] serves and keeps
//! the lease until its shutdown future resolves, then drains in-flight
//! requests, and a leader stops its controller, flushes the group commit and
//! hands the lease over.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use sluice_store::{Cluster, PgStore, SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::{Config, TlsFiles};
use crate::controller::Settings;
use crate::metrics::Metrics;
use crate::replica::{forward, leadership, Replica, TermSettings};
use crate::routes;

/// A built server, listening, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    replica: Arc<Replica>,
    /// HTTPS when set.
    tls: Option<RustlsConfig>,
}

impl Application {
    /// Opens the PostgreSQL store of `config.database_url` as a replica of
    /// the cluster sharing it, else the SQLite store in `config.data_dir`,
    /// and builds on it.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        match &config.database_url {
            Some(url) => {
                // The store's errors name the URL, its password redacted.
                let store = PgStore::open(url.expose())
                    .await
                    .context("opening the PostgreSQL store")?;
                tracing::info!(database = %store.url(), "state in PostgreSQL");
                Application::build_replica(config, Backing::Cluster(Arc::new(store))).await
            }
            None => {
                let store = SqliteStore::open(&config.data_dir).await.with_context(|| {
                    format!("opening the store in {}", config.data_dir.display())
                })?;
                Application::build_with_store(config, Arc::new(store)).await
            }
        }
    }

    /// Builds on any store with no lease (tests, other backends): the
    /// server leads for the life of the process.
    pub async fn build_with_store(
        config: Config,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<Application> {
        Application::build_replica(config, Backing::Alone(store)).await
    }

    /// Binds the listener, then leads at once on a store of its own; in a
    /// cluster, takes the lease if it is free (the first replica serves as
    /// soon as it is built) and otherwise starts as a standby.
    async fn build_replica(config: Config, backing: Backing) -> anyhow::Result<Application> {
        // Gate evaluations use rustls with ring; the process needs it as its
        // provider (another caller may have installed it already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = match &config.tls {
            Some(files) => Some(load_tls(files).await?),
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let id = match &config.replica.id {
            Some(id) => id.clone(),
            None => format!("{}:{}", host_name(), local_addr.port()),
        };
        let address = match &config.replica.advertise_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if local_addr.ip().is_unspecified() => {
                format!("{scheme}://{}:{}", host_name(), local_addr.port())
            }
            None => format!("{scheme}://{local_addr}"),
        };
        let settings = TermSettings {
            data_dir: config.data_dir.clone(),
            clock: Arc::clone(&config.clock),
            next_checkin_s: config.next_checkin_s,
            checkin_queue: config.checkin_queue,
            checkin_wait: config.checkin_wait,
            api_rate: config.api_rate,
            https: tls.is_some(),
            event_streams: config.event_streams,
            cohorts: config.cohorts.clone(),
            controller: Settings {
                tick: config.tick_interval,
                gate_timeout: config.gate_timeout,
            },
            gates: reqwest::Client::builder()
                .user_agent(concat!("sluice-server/", env!("CARGO_PKG_VERSION")))
                .build()
                .context("building the HTTP client for gates")?,
            webhooks: crate::webhooks::WebhookSettings::new(config.webhook_retry_max)?,
        };
        let metrics = Arc::new(Metrics::new());
        let replica = match backing {
            Backing::Alone(store) => {
                Replica::embedded(id, address, store, settings, metrics).await?
            }
            Backing::Cluster(cluster) => {
                let candidate = crate::auth::new_secret()?;
                let key = cluster
                    .forwarding_key(&candidate)
                    .await
                    .context("reading the cluster's forwarding key")?;
                let forwarder =
                    forward::client(config.replica.peer_ca.as_deref(), Some(key.into()))?;
                let replica = Replica::clustered(
                    id,
                    address,
                    cluster,
                    settings,
                    metrics,
                    config.replica.lease_ttl,
                    forwarder,
                );
                let leads = leadership::try_lead(&replica).await?;
                tracing::info!(replica = %replica.id, address = %replica.address, leads, "replica of the cluster");
                replica
            }
        };
        Ok(Application {
            listener,
            local_addr,
            replica,
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// Where clients reach this server: `https://ADDR` with TLS, else `http://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// The admin token file this start wrote, if it wrote one (a replica
    /// that did not lead at start writes none).
    pub fn new_admin_token(&self) -> Option<PathBuf> {
        self.replica
            .term()
            .and_then(|term| term.admin_token.clone())
    }

    /// Serves until `shutdown` resolves; then waits for in-flight requests,
    /// and a leader stops its controller, commits everything queued and
    /// hands its lease over before returning.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_leadership, leadership_stopped) = oneshot::channel::<()>();
        let elector = tokio::spawn(leadership::run(Arc::clone(&self.replica), async {
            let _ = leadership_stopped.await;
        }));
        let router = routes::front(Arc::clone(&self.replica));
        // Events streams never end by themselves: they end when serving
        // does, or draining would wait for them forever.
        let replica = Arc::clone(&self.replica);
        let shutdown = async move {
            shutdown.await;
            replica.streams().close();
        };
        tracing::info!(address = %self.local_addr, replica = %self.replica.id, "serving");
        let served = match self.tls {
            None => axum::serve(
                self.listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP"),
            Some(tls) => serve_tls(self.listener, router, tls, shutdown).await,
        };
        tracing::info!("shutting down: requests drained");
        let _ = stop_leadership.send(());
        if let Err(error) = elector.await {
            tracing::error!(%error, "the lease keeper ended abnormally");
        }
        self.replica.shutdown().await;
        tracing::info!("stopped");
        served
    }
}

/// What a replica keeps its state in.
enum Backing {
    /// A store of its own, without a lease: the replica leads.
    Alone(Arc<dyn Store>),
    /// A database shared with other replicas, one of which leads.
    Cluster(Arc<dyn Cluster>),
}

/// This machine's host name, for a replica's default id and address.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The TLS certificate or key cannot be used: the operator's input is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTls(String);

/// Reads the certificate chain and key of `--tls-cert` and `--tls-key`,
/// naming the file at fault.
async fn load_tls(files: &TlsFiles) -> Result<RustlsConfig, InvalidTls> {
    let read = |path: &Path, flag: &str| {
        std::fs::read(path)
            .map_err(|error| InvalidTls(format!("{flag}: cannot read {}: {error}", path.display())))
    };
    let cert = read(&files.cert, "--tls-cert")?;
    let key = read(&files.key, "--tls-key")?;
    RustlsConfig::from_pem(cert, key).await.map_err(|error| {
        InvalidTls(format!(
            "--tls-cert {} / --tls-key {}: {error}; --tls-cert takes a PEM certificate chain \
             (the server's certificate first) and --tls-key its PEM private key (PKCS#8, PKCS#1 or SEC1)",
            files.cert.display(),
            files.key.display()
        ))
    })
}

/// Serves HTTPS until `shutdown` resolves, then lets requests in flight finish.
async fn serve_tls(
    listener: TcpListener,
    router: axum::Router,
    tls: RustlsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = listener
        .into_std()
        .context("handing the listener to the TLS server")?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(None);
    });
    axum_server::from_tcp_rustls(listener, tls)
        .context("serving HTTPS")?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .context("serving HTTPS")
}
