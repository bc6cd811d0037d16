//! The state every handler and the controller share: memory behind one
//! lock, the tokens and the dashboard's sessions, the group commit, the
//! metrics, the store and the clock.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use jiff::Timestamp;
use sluice_store::{Store, StoredEvent, Write};
use tokio::sync::Notify;

use crate::admission::{CheckinQueue, Slot, TokenRate};
use crate::auth::Tokens;
use crate::clock::Clock;
use crate::cohorts::CohortSettings;
use crate::commit::{CommitError, Committer, Pending};
use crate::dashboard::session::Sessions;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::world::{Loading, Restored, World};

/// Cheap to clone: one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

struct Inner {
    world: Mutex<World>,
    tokens: Tokens,
    sessions: Sessions,
    committer: Committer,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    next_checkin_s: u64,
    checkins: CheckinQueue,
    rate: TokenRate,
    /// Served over TLS (cookies are then `Secure`).
    https: bool,
    cohorts: CohortSettings,
    /// Wakes the controller after an operator action.
    wake: Notify,
    /// Wakes the webhooks' delivery after one was added or removed.
    webhooks: Notify,
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
    /// The bound of the check-in queue.
    pub checkin_queue: usize,
    /// The bound in time of a check-in's wait.
    pub checkin_wait: Option<std::time::Duration>,
    /// Requests a second per token (0: no limit).
    pub api_rate: u32,
    /// Served over TLS.
    pub https: bool,
    pub cohorts: CohortSettings,
}

impl AppState {
    pub fn new(parts: Parts, store: Arc<dyn Store>) -> AppState {
        AppState(Arc::new(Inner {
            world: Mutex::new(parts.world),
            tokens: parts.tokens,
            sessions: Sessions::default(),
            committer: parts.committer,
            checkins: CheckinQueue::new(
                parts.checkin_queue,
                parts.checkin_wait,
                Arc::clone(&parts.metrics),
            ),
            rate: TokenRate::new(parts.api_rate),
            metrics: parts.metrics,
            store,
            clock: parts.clock,
            next_checkin_s: parts.next_checkin_s,
            https: parts.https,
            cohorts: parts.cohorts,
            wake: Notify::new(),
            webhooks: Notify::new(),
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
        crate::retro::sample_states(&world, now, &mut writes);
        let pending = self.0.committer.submit(writes);
        drop(world);
        (result, pending)
    }

    /// Rebuilds memory (the world, the tokens and the dashboard's sessions)
    /// from the store and starts a new generation of the group commit: at
    /// start, and after the store refused a batch (memory then claims what
    /// the store does not hold). Hosts that joined while a rollout's record
    /// was not yet durable, and the freeze, are fed again, and expired
    /// sessions are deleted from the store; whatever that changes is saved
    /// before this returns. Returns the numbers of hosts and rollouts
    /// loaded.
    pub async fn restore(&self) -> anyhow::Result<(usize, usize)> {
        let started = std::time::Instant::now();
        let mut loading = Loading::default();
        self.store()
            .load_parts(&mut |part| loading.take(part))
            .await
            .context("loading state from the store")?;
        let read = started.elapsed();
        let Restored {
            world,
            tokens,
            sessions,
        } = loading.finish()?;
        let counts = (world.host_count(), world.rollout_count());
        let built = started.elapsed();
        let (pending, writes, (sessions, expired)) = {
            let mut memory = self.lock();
            let now = self.0.clock.now();
            *memory = world;
            self.0.tokens.replace_all(&tokens);
            let sessions = self.0.sessions.replace_all(&sessions, &self.0.tokens, now);
            self.0.committer.next_generation();
            let mut writes = Vec::new();
            memory.resume(now, &mut writes);
            crate::retro::sample_states(&memory, now, &mut writes);
            if sessions.1 > 0 {
                writes.push(Write::SessionsExpired(now));
            }
            let count = writes.len();
            (self.0.committer.submit(writes), count, sessions)
        };
        let resumed = started.elapsed();
        pending
            .durable()
            .await
            .context("saving the restored rollouts")?;
        tracing::info!(
            hosts = counts.0,
            rollouts = counts.1,
            sessions,
            expired_sessions = expired,
            read_ms = read.as_millis() as u64,
            memory_ms = (built - read).as_millis() as u64,
            resume_ms = (resumed - built).as_millis() as u64,
            writes,
            saved_ms = (started.elapsed() - resumed).as_millis() as u64,
            "memory restored from the store"
        );
        Ok(counts)
    }

    /// Rebuilds memory from the store whenever the store refuses a batch,
    /// until `stop` resolves; a failed rebuild is tried again.
    pub async fn rebuild_after_refusals(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = self.0.committer.refused() => {}
            }
            let mut backoff = std::time::Duration::from_millis(100);
            loop {
                match self.restore().await {
                    Ok((hosts, rollouts)) => {
                        tracing::warn!(
                            hosts,
                            rollouts,
                            "memory rebuilt from the store after a refused batch"
                        );
                        break;
                    }
                    Err(error) => {
                        tracing::error!(
                            error = format!("{error:#}"),
                            retry_in_ms = backoff.as_millis() as u64,
                            "rebuilding memory from the store failed"
                        );
                        tokio::select! {
                            () = &mut stop => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                    }
                }
            }
        }
    }

    /// Reads memory for an answer that reveals it (a desired version, an
    /// admission, a rollout's state): the read and a barrier are taken
    /// under the same lock, and the answer is given only once everything
    /// the read could have seen is durable. A change made after the read
    /// is not in it; a change made before it is durable before it shows.
    pub async fn reveal<R>(&self, read: impl FnOnce(&World) -> R) -> Result<R, CommitError> {
        let (result, pending) = {
            let world = self.lock();
            (read(&world), self.0.committer.submit(Vec::new()))
        };
        pending.durable().await?;
        Ok(result)
    }

    /// Reads memory as it stands, durable or not: for what is no answer
    /// about decisions (metrics, the controller's own bookkeeping).
    pub fn peek<R>(&self, read: impl FnOnce(&World) -> R) -> R {
        read(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock is a bug; the state it left is
        // still the best there is, and refusing every request would not help.
        self.0.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A rollout's events from the store, once every change made before
    /// this call is durable: the log never lags what memory has shown.
    pub async fn events(
        &self,
        rollout: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, ApiError> {
        self.reveal(|_| ()).await?;
        self.store()
            .events(rollout, after, limit)
            .await
            .map_err(|error| ApiError::Unavailable(error.to_string()))
    }

    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    /// The dashboard's signed-in sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.0.sessions
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

    /// How comparison gates' cohorts are exported.
    pub fn cohorts(&self) -> &CohortSettings {
        &self.0.cohorts
    }

    pub fn next_checkin_s(&self) -> u64 {
        self.0.next_checkin_s
    }

    /// Takes a place in the check-in queue, or refuses with 429 when it is
    /// full; the place is given back when the slot is dropped.
    pub fn admit_checkin(&self) -> Result<Slot<'_>, ApiError> {
        self.0.checkins.admit(self.0.next_checkin_s)
    }

    /// Counts a request of the token whose hash is `hash` against its
    /// rate, or refuses it with 429.
    pub fn limit_rate(&self, hash: &str) -> Result<(), ApiError> {
        self.0.rate.check(hash)
    }

    /// Wakes the controller (after an operator action or a freeze).
    pub fn wake_controller(&self) {
        self.0.wake.notify_one();
    }

    pub async fn woken(&self) {
        self.0.wake.notified().await;
    }

    /// Wakes the webhooks' delivery ([`crate::webhooks`]): one was added or
    /// removed.
    pub fn wake_webhooks(&self) {
        self.0.webhooks.notify_one();
    }

    pub async fn webhooks_woken(&self) {
        self.0.webhooks.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use sluice_api::agent::{CheckinRequest, ComponentReport, ReportState};
    use sluice_api::rollout::Action;
    use sluice_core::plan::parse_plan;

    use super::*;
    use crate::clock::SystemClock;
    use crate::test_store::TestStore;

    const PLAN: &str =
        "name: p\ncomponent: docker-engine\nversion: \"2.0\"\nstages:\n  - { percent: 100 }\n";

    /// A server whose store commits only as the test hands out permits,
    /// knowing host `a` (on docker-engine 1.0) and a pending rollout of
    /// 2.0 over it, all durable.
    async fn gated_server() -> (AppState, Arc<TestStore>) {
        let store = Arc::new(TestStore::gated());
        let metrics = Arc::new(Metrics::new());
        let (committer, _writer) = Committer::spawn(store.clone(), Arc::clone(&metrics));
        let parts = Parts {
            world: Loading::default().finish().expect("empty world").world,
            tokens: Tokens::default(),
            committer,
            metrics,
            clock: Arc::new(SystemClock),
            next_checkin_s: 60,
            checkin_queue: 16,
            checkin_wait: None,
            api_rate: 0,
            https: false,
            cohorts: CohortSettings::default(),
        };
        let state = AppState::new(parts, store.clone());
        let checkin = CheckinRequest {
            host: "a".parse().expect("a host id"),
            labels: Default::default(),
            components: [(
                "docker-engine".to_owned(),
                ComponentReport {
                    version: "1.0".to_owned(),
                    state: ReportState::Ok,
                    message: None,
                    drifted: false,
                },
            )]
            .into(),
        };
        let ((), pending) = state.change(|world, now, writes| {
            world.checkin(&checkin, now, 60, writes);
            let plan = parse_plan(PLAN).expect("plan");
            world
                .create_rollout(PLAN.to_owned(), plan, None, now, writes)
                .expect("created");
        });
        store.gate.add_permits(1);
        pending.durable().await.expect("set-up durable");
        (state, store)
    }

    /// Starts the rollout: its first input admits `a`, queued but not
    /// durable while the gate is closed.
    fn start(state: &AppState) -> Pending {
        let (result, pending) = state.change(|world, now, writes| {
            world.act("r-1", Action::Start, "test", "go", now, writes)
        });
        result.expect("started");
        pending
    }

    fn desired(world: &World) -> Option<String> {
        world
            .desired_map("a")
            .and_then(|map| map.get("docker-engine").cloned())
    }

    #[tokio::test]
    async fn a_barrier_then_a_read_reveals_an_admission_before_it_is_durable() {
        let (state, store) = gated_server().await;
        // The old shape of `/desired`: a barrier, the lock let go, a read.
        let barrier = state.committer().submit(Vec::new());
        let admission = start(&state);
        barrier.durable().await.expect("nothing was in flight");
        assert_eq!(
            state.peek(desired),
            Some("2.0".to_owned()),
            "the admission shows while nothing of it is durable"
        );
        assert!(store.batches.lock().expect("lock").len() == 1);
        store.gate.add_permits(1);
        admission.durable().await.expect("durable");
    }

    #[tokio::test]
    async fn an_answer_reveals_an_admission_only_once_it_is_durable() {
        let (state, store) = gated_server().await;
        let admission = start(&state);
        let answer = tokio::spawn({
            let state = state.clone();
            async move { state.reveal(desired).await }
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(
            !answer.is_finished(),
            "the answer came before the admission it shows was durable"
        );
        assert_eq!(store.batches.lock().expect("lock").len(), 1);
        store.gate.add_permits(1);
        assert_eq!(
            answer.await.expect("task").expect("durable"),
            Some("2.0".to_owned())
        );
        assert_eq!(store.batches.lock().expect("lock").len(), 2);
        admission.durable().await.expect("durable");
    }
}
