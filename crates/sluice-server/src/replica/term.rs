//! A leadership term: everything a replica runs while it leads. Memory is
//! loaded from the store, the group commit writes through the store as the
//! term's lease fences it, and the controller, the dashboard's sampler and
//! the memory rebuilder and the webhooks' delivery run beside it. The embedded store has a single term
//! that lasts as long as the process.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use axum::Router;
use sluice_store::{Store, TokenRecord, TokenRole, Write};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin_token_path;
use crate::auth::{hash_secret, new_secret, Tokens};
use crate::clock::Clock;
use crate::commit::Committer;
use crate::controller::{self, Settings};
use crate::metrics::Metrics;
use crate::state::{AppState, Parts};
use crate::world::World;
use crate::{dashboard, routes};

/// What every term of a replica is started with.
#[derive(Debug, Clone)]
pub struct TermSettings {
    /// Where the first admin token is written.
    pub data_dir: PathBuf,
    pub clock: Arc<dyn Clock>,
    pub next_checkin_s: u64,
    /// The bound of the check-in queue.
    pub checkin_queue: usize,
    /// The bound in time of a check-in's wait.
    pub checkin_wait: Option<std::time::Duration>,
    /// Requests a second per token (0: no limit).
    pub api_rate: u32,
    /// Served over TLS.
    pub https: bool,
    /// Events streams open at once, at most (per replica, whatever its role).
    pub event_streams: usize,
    pub cohorts: crate::cohorts::CohortSettings,
    pub controller: Settings,
    /// The gates' HTTP client.
    pub gates: reqwest::Client,
    /// How webhooks are delivered.
    pub webhooks: crate::webhooks::WebhookSettings,
}

/// One term of leadership (see the module's documentation).
#[derive(Debug)]
pub struct Term {
    /// The lease's epoch; `None` on the embedded store.
    pub epoch: Option<i64>,
    pub state: AppState,
    /// The API and the dashboard over `state`.
    pub router: Router,
    /// When the lease was last renewed (when the renewal was sent), in
    /// milliseconds of the replica's clock.
    renewed: AtomicU64,
    /// The admin token file this term wrote, if the store had none.
    pub admin_token: Option<PathBuf>,
    tasks: Mutex<Option<Tasks>>,
}

/// The term's background tasks.
#[derive(Debug)]
struct Tasks {
    stops: Vec<oneshot::Sender<()>>,
    handles: Vec<(&'static str, JoinHandle<()>)>,
    writer: JoinHandle<()>,
}

impl Term {
    /// Loads memory from `store` (fenced by the lease of `epoch`, if any),
    /// writes the first admin token if the store has none, and starts the
    /// background tasks. `renewed` is when the lease was taken.
    pub async fn start(
        settings: &TermSettings,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        epoch: Option<i64>,
        renewed: u64,
    ) -> anyhow::Result<Term> {
        let (committer, writer) = Committer::spawn(Arc::clone(&store), Arc::clone(&metrics));
        let state = AppState::new(
            Parts {
                world: World::default(),
                tokens: Tokens::default(),
                committer,
                metrics,
                clock: Arc::clone(&settings.clock),
                next_checkin_s: settings.next_checkin_s,
                checkin_queue: settings.checkin_queue,
                checkin_wait: settings.checkin_wait,
                api_rate: settings.api_rate,
                https: settings.https,
                cohorts: settings.cohorts.clone(),
            },
            store,
        );
        let (hosts, rollouts) = state.restore().await?;
        tracing::info!(hosts, rollouts, epoch, "state loaded");
        let admin_token = if state.tokens().has_admin() {
            None
        } else {
            Some(first_admin_token(&state, &settings.data_dir).await?)
        };

        let mut stops = Vec::new();
        let mut handles = Vec::new();
        let (stop, stopped) = oneshot::channel();
        stops.push(stop);
        handles.push((
            "controller",
            tokio::spawn(controller::run(
                state.clone(),
                settings.gates.clone(),
                settings.controller.clone(),
                stopped,
            )),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        handles.push(("memory rebuilder", {
            let state = state.clone();
            tokio::spawn(async move {
                state
                    .rebuild_after_refusals(async {
                        let _ = stopped.await;
                    })
                    .await;
            })
        }));
        let (stop, stopped) = oneshot::channel();
        stops.push(stop);
        handles.push((
            "dashboard sampler",
            tokio::spawn(dashboard::sampler::run(
                state.clone(),
                dashboard::sampler::interval(settings.controller.tick),
                stopped,
            )),
        ));
        let (stop, stopped) = oneshot::channel();
        stops.push(stop);
        handles.push((
            "webhook delivery",
            tokio::spawn(crate::webhooks::run(
                state.clone(),
                settings.webhooks.clone(),
                stopped,
            )),
        ));
        Ok(Term {
            epoch,
            router: routes::api(state.clone()),
            state,
            renewed: AtomicU64::new(renewed),
            admin_token,
            tasks: Mutex::new(Some(Tasks {
                stops,
                handles,
                writer,
            })),
        })
    }

    /// When the lease was last renewed, in milliseconds of the replica's clock.
    pub fn renewed(&self) -> u64 {
        self.renewed.load(Ordering::Acquire)
    }

    pub fn set_renewed(&self, at: u64) {
        self.renewed.fetch_max(at, Ordering::AcqRel);
    }

    /// Stops the background tasks and the group commit. With `flush` (a
    /// clean shutdown of a leader that still holds its lease), first saves
    /// the hosts' last check-in times, and everything queued is committed;
    /// without (the lease is lost), what is queued fails against the fence.
    pub async fn stop(&self, flush: bool) {
        let tasks = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(tasks) = tasks else {
            return;
        };
        for stop in tasks.stops {
            let _ = stop.send(());
        }
        for (name, handle) in tasks.handles {
            if let Err(error) = handle.await {
                tracing::error!(%error, task = name, "a background task ended abnormally");
            }
        }
        if flush {
            let ((), saved) = self
                .state
                .change(|world, _, writes| world.save_last_seen(writes));
            if let Err(error) = saved.durable().await {
                tracing::error!(%error, "could not save the hosts' last check-in times");
            }
        }
        self.state.committer().stop().await;
        if let Err(error) = tasks.writer.await {
            tracing::error!(%error, "the group commit writer ended abnormally");
        }
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
            name: Some("admin".to_owned()),
            ..TokenRecord::new(hash_secret(&secret), TokenRole::Admin, now)
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
