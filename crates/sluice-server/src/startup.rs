//! Building and running the server: [`Application::build`] loads the store,
//! restores memory and binds the listener (port 0 picks one, see
//! [`Application::port`]); [`Application::run_until_stopped`] serves until
//! its shutdown future resolves, then drains in-flight requests, stops the
//! controller and flushes the group commit.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use sluice_store::{PgStore, SqliteStore, Store, TokenRecord, TokenRole, Write};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::{hash_secret, new_secret, Tokens};
use crate::commit::Committer;
use crate::config::{Config, TlsFiles};
use crate::controller::{self, Settings};
use crate::metrics::Metrics;
use crate::state::{AppState, Parts};
use crate::world::World;
use crate::{admin_token_path, dashboard, routes};

/// A built server, listening, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: axum::Router,
    state: AppState,
    writer: JoinHandle<()>,
    settings: Settings,
    /// HTTPS when set.
    tls: Option<RustlsConfig>,
    /// Set when this start wrote a new admin token.
    admin_token: Option<PathBuf>,
}

impl Application {
    /// Opens the PostgreSQL store of `config.database_url`, else the SQLite
    /// store in `config.data_dir`, and builds on it.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let store: Arc<dyn Store> =
            match &config.database_url {
                Some(url) => {
                    // The store's errors name the URL, its password redacted.
                    let store = PgStore::open(url.expose())
                        .await
                        .context("opening the PostgreSQL store")?;
                    tracing::info!(database = %store.url(), "state in PostgreSQL");
                    Arc::new(store)
                }
                None => Arc::new(SqliteStore::open(&config.data_dir).await.with_context(|| {
                    format!("opening the store in {}", config.data_dir.display())
                })?),
            };
        Application::build_with_store(config, store).await
    }

    /// Builds on any store (tests, other backends).
    pub async fn build_with_store(
        config: Config,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<Application> {
        // Gate evaluations use rustls with ring; the process needs it as its
        // provider (another caller may have installed it already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = match &config.tls {
            Some(files) => Some(load_tls(files).await?),
            None => None,
        };

        let metrics = Arc::new(Metrics::new());
        let (committer, writer) = Committer::spawn(Arc::clone(&store), Arc::clone(&metrics));
        let state = AppState::new(
            Parts {
                world: World::default(),
                tokens: Tokens::default(),
                committer,
                metrics,
                clock: Arc::clone(&config.clock),
                next_checkin_s: config.next_checkin_s,
                https: tls.is_some(),
            },
            store,
        );
        let (hosts, rollouts) = state.restore().await?;
        tracing::info!(hosts, rollouts, "state loaded");

        let admin_token = if state.tokens().has_admin() {
            None
        } else {
            Some(first_admin_token(&state, &config.data_dir).await?)
        };

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let router = routes::router(state.clone());
        Ok(Application {
            listener,
            local_addr,
            router,
            state,
            writer,
            settings: Settings {
                tick: config.tick_interval,
                gate_timeout: config.gate_timeout,
            },
            tls,
            admin_token,
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

    /// The admin token file this start wrote, if it wrote one.
    pub fn new_admin_token(&self) -> Option<&Path> {
        self.admin_token.as_deref()
    }

    /// Serves until `shutdown` resolves; then waits for in-flight requests,
    /// stops the controller, and commits everything queued before returning.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("sluice-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client for gates")?;
        let (stop, stopped) = oneshot::channel();
        let controller = tokio::spawn(controller::run(
            self.state.clone(),
            client,
            self.settings.clone(),
            stopped,
        ));
        let (stop_rebuilder, rebuilder_stopped) = oneshot::channel::<()>();
        let rebuilder = tokio::spawn({
            let state = self.state.clone();
            async move {
                state
                    .rebuild_after_refusals(async {
                        let _ = rebuilder_stopped.await;
                    })
                    .await;
            }
        });
        let (stop_sampler, sampler_stopped) = oneshot::channel();
        let sampler = tokio::spawn(dashboard::sampler::run(
            self.state.clone(),
            dashboard::sampler::interval(self.settings.tick),
            sampler_stopped,
        ));
        tracing::info!(address = %self.local_addr, "serving");
        let served = match self.tls {
            None => axum::serve(self.listener, self.router)
                .with_graceful_shutdown(shutdown)
                .await
                .context("serving HTTP"),
            Some(tls) => serve_tls(self.listener, self.router, tls, shutdown).await,
        };
        tracing::info!("shutting down: requests drained, stopping the controller");
        let _ = stop.send(());
        let _ = stop_sampler.send(());
        let _ = stop_rebuilder.send(());
        if let Err(error) = rebuilder.await {
            tracing::error!(%error, "the memory rebuilder ended abnormally");
        }
        if let Err(error) = sampler.await {
            tracing::error!(%error, "the dashboard's sampler ended abnormally");
        }
        if let Err(error) = controller.await {
            tracing::error!(%error, "the controller ended abnormally");
        }
        let ((), saved) = self
            .state
            .change(|world, _, writes| world.save_last_seen(writes));
        if let Err(error) = saved.durable().await {
            tracing::error!(%error, "could not save the hosts' last check-in times");
        }
        self.state.committer().stop().await;
        if let Err(error) = self.writer.await {
            tracing::error!(%error, "the group commit writer ended abnormally");
        }
        tracing::info!("stopped");
        served
    }
}

/// First start: writes a new admin token to `<data-dir>/admin.token` (mode
/// 0600), then stores its hash. In that order: a crash in between leaves no
/// admin token in the store, so the next start writes a new file.
async fn first_admin_token(state: &AppState, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let secret = new_secret()?;
    // On PostgreSQL nothing else creates the data directory.
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let path = admin_token_path(data_dir);
    write_secret(&path, &secret)?;
    let (record, pending) = state.change(|_, now, writes| {
        let record = TokenRecord {
            hash: hash_secret(&secret),
            role: TokenRole::Admin,
            host: None,
            name: Some("admin".to_owned()),
            created_at: now,
        };
        writes.push(Write::Token(record.clone()));
        record
    });
    pending
        .durable()
        .await
        .context("saving the first admin token")?;
    state.tokens().insert(&record);
    tracing::info!(path = %path.display(), "first start: wrote the admin token");
    Ok(path)
}

/// Writes `secret` to `path`, readable by the owner only, atomically.
fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    let temporary = path.with_extension("token.tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", temporary.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("moving the admin token to {}", path.display()))?;
    Ok(())
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
        .serve(router.into_make_service())
        .await
        .context("serving HTTPS")
}
