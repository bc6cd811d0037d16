//! The state every handler and the controller share: memory behind one
//! lock, the tokens, the group commit, the metrics, the store and the clock.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use jiff::Timestamp;
use sluice_store::{Store, StoredEvent, Write};
use tokio::sync::Notify;

use crate::auth::Tokens;
use crate::clock::Clock;
use crate::commit::{Committer, Pending};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::world::World;

/// Cheap to clone: one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

struct Inner {
    world: Mutex<World>,
    tokens: Tokens,
    committer: Committer,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    next_checkin_s: u64,
    /// Served over TLS (cookies are then `Secure`).
    https: bool,
    /// Wakes the controller after an operator action.
    wake: Notify,
    /// `/v1/openapi.json`, set once the router is built.
    openapi: OnceLock<String>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("clock", &self.clock)
            .field("next_checkin_s", &self.next_checkin_s)
            .finish_non_exhaustive()
    }
}

/// What [`AppState::new`] needs.
#[derive(Debug)]
pub struct Parts {
    pub world: World,
    pub tokens: Tokens,
    pub committer: Committer,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub next_checkin_s: u64,
    /// Served over TLS.
    pub https: bool,
}

impl AppState {
    pub fn new(parts: Parts, store: Arc<dyn Store>) -> AppState {
        AppState(Arc::new(Inner {
            world: Mutex::new(parts.world),
            tokens: parts.tokens,
            committer: parts.committer,
            metrics: parts.metrics,
            store,
            clock: parts.clock,
            next_checkin_s: parts.next_checkin_s,
            https: parts.https,
            wake: Notify::new(),
            openapi: OnceLock::new(),
        }))
    }

    /// Changes memory and queues the writes that make the change durable,
    /// under the lock, in that order. Await the [`Pending`] before revealing
    /// anything that depends on the change.
    pub fn change<R>(
        &self,
        change: impl FnOnce(&mut World, Timestamp, &mut Vec<Write>) -> R,
    ) -> (R, Pending) {
        let mut world = self.lock();
        let now = self.0.clock.now();
        let mut writes = Vec::new();
        let result = change(&mut world, now, &mut writes);
        let pending = self.0.committer.submit(writes);
        drop(world);
        (result, pending)
    }

    /// Reads memory.
    pub fn read<R>(&self, read: impl FnOnce(&World) -> R) -> R {
        read(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock is a bug; the state it left is
        // still the best there is, and refusing every request would not help.
        self.0.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A barrier: resolves once everything queued so far is durable.
    pub fn barrier(&self) -> Pending {
        let _world = self.lock();
        self.0.committer.submit(Vec::new())
    }

    /// A rollout's events from the store, once every change made before
    /// this call is durable: the log never lags what memory has shown.
    pub async fn events(
        &self,
        rollout: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, ApiError> {
        self.barrier().durable().await?;
        self.store()
            .events(rollout, after, limit)
            .await
            .map_err(|error| ApiError::Unavailable(error.to_string()))
    }

    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    pub fn committer(&self) -> &Committer {
        &self.0.committer
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn store(&self) -> &dyn Store {
        &*self.0.store
    }

    pub fn now(&self) -> Timestamp {
        self.0.clock.now()
    }

    /// Whether the server is reached over TLS.
    pub fn https(&self) -> bool {
        self.0.https
    }

    pub fn next_checkin_s(&self) -> u64 {
        self.0.next_checkin_s
    }

    /// Wakes the controller (after an operator action or a freeze).
    pub fn wake_controller(&self) {
        self.0.wake.notify_one();
    }

    pub async fn woken(&self) {
        self.0.wake.notified().await;
    }

    pub fn set_openapi(&self, json: String) {
        let _ = self.0.openapi.set(json);
    }

    pub fn openapi(&self) -> &str {
        self.0.openapi.get().map_or("{}", String::as_str)
    }
}
