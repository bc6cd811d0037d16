//! This server's part among replicas sharing one database.
//!
//! Exactly one replica **leads**: it holds memory, runs the controller and
//! makes every decision, in a [`Term`] that lasts as long as its lease (the
//! embedded store has one server, which leads for the life of the process).
//! Every replica serves every request: its own router answers liveness,
//! readiness, metrics, the OpenAPI document, `GET /v1/cluster` and the
//! event log (`GET /v1/events`, read from the database) itself;
//! everything else (check-ins, the API, the dashboard) is answered by the
//! leader's term — here when this replica leads, else forwarded to the
//! leader ([`forward`]). So the selection invariants hold across replicas
//! for the simplest reason: one process decides.
//!
//! A leader answers only while its lease is fresh: renewed within three
//! quarters of its TTL, by this process's clock, counted from when the
//! renewal was sent. A leader that was paused or cut off past that answers
//! 503 before it can learn that it lost the lease, and whatever it still
//! tries to commit fails against the lease's fence. The lease itself is
//! kept by [`leadership`].

pub mod batch;
pub mod forward;
pub mod leadership;
pub mod term;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use sluice_api::cluster::{ClusterView, ReplicaRole, ReplicaView};
use sluice_store::{Cluster, LogQuery, Store, StoreError, StoredEvent};
use tower::ServiceExt as _;

use crate::admission::TokenRate;
use crate::auth::{hash_secret, Need};
use crate::error::ApiError;
use crate::follow::Streams;
use crate::metrics::{Gauges, Metrics};
use crate::vocabulary;

pub use term::{Term, TermSettings};

/// The replica that holds the lease, as a standby last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub id: String,
    pub address: String,
    pub epoch: i64,
}

/// What this replica is now.
#[derive(Debug, Clone)]
pub enum Role {
    Leader(Arc<Term>),
    /// Forwards to the leader; `None` while no replica holds the lease (or
    /// the database cannot tell).
    Standby(Option<Leader>),
}

/// This process among the replicas (see the module's documentation).
pub struct Replica {
    pub id: String,
    /// Where the other replicas forward to this one.
    pub address: String,
    /// `None` on the embedded store, which has no lease.
    cluster: Option<Arc<dyn Cluster>>,
    settings: TermSettings,
    metrics: Arc<Metrics>,
    lease_ttl: Duration,
    role: RwLock<Role>,
    started: Instant,
    /// When the database last answered the lease's statements, in
    /// milliseconds of [`Replica::clock`].
    contact: AtomicU64,
    forwarder: forward::Forwarder,
    /// Batches the check-ins a standby forwards (`None` on the embedded
    /// store, whose one server never forwards).
    batcher: Option<batch::Batcher>,
    openapi: String,
    /// The open events streams ([`crate::follow`]).
    streams: Streams,
    /// Each token's rate of requests to the endpoints a standby answers
    /// itself (a leader counts them in its term's).
    rate: TokenRate,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("address", &self.address)
            .field("clustered", &self.cluster.is_some())
            .field("role", &self.role())
            .finish_non_exhaustive()
    }
}

/// How a request is answered.
enum Route {
    Here(Arc<Term>),
    Forward(Leader),
    Unavailable(String),
}

impl Replica {
    /// A replica on the embedded store: it leads at once, for good.
    pub async fn embedded(
        id: String,
        address: String,
        store: Arc<dyn Store>,
        settings: TermSettings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Replica>> {
        let term = Term::start(&settings, store, Arc::clone(&metrics), None, 0).await?;
        metrics.set_leadership(true, None);
        Ok(Arc::new(Replica::new(
            id,
            address,
            None,
            settings,
            metrics,
            Duration::MAX,
            Role::Leader(Arc::new(term)),
            forward::client(None, None)?,
            None,
        )))
    }

    /// A replica of a cluster: a standby, until [`leadership::try_lead`]
    /// takes the lease.
    #[allow(clippy::too_many_arguments)]
    pub fn clustered(
        id: String,
        address: String,
        cluster: Arc<dyn Cluster>,
        settings: TermSettings,
        metrics: Arc<Metrics>,
        lease_ttl: Duration,
        forwarder: forward::Forwarder,
    ) -> Arc<Replica> {
        metrics.set_leadership(false, None);
        let batcher = batch::Batcher::new(forwarder.clone(), id.clone(), Arc::clone(&metrics));
        Arc::new(Replica::new(
            id,
            address,
            Some(cluster),
            settings,
            metrics,
            lease_ttl,
            Role::Standby(None),
            forwarder,
            Some(batcher),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        id: String,
        address: String,
        cluster: Option<Arc<dyn Cluster>>,
        settings: TermSettings,
        metrics: Arc<Metrics>,
        lease_ttl: Duration,
        role: Role,
        forwarder: forward::Forwarder,
        batcher: Option<batch::Batcher>,
    ) -> Replica {
        let streams = Streams::new(settings.event_streams);
        let rate = TokenRate::new(settings.api_rate);
        Replica {
            id,
            address,
            cluster,
            settings,
            metrics,
            lease_ttl,
            role: RwLock::new(role),
            started: Instant::now(),
            contact: AtomicU64::new(0),
            forwarder,
            batcher,
            openapi: crate::routes::document(),
            streams,
            rate,
        }
    }

    /// Milliseconds since this replica started: the clock of leases'
    /// freshness, which a paused process cannot keep from moving.
    pub fn clock(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn role(&self) -> Role {
        self.role
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_role(&self, role: Role) {
        let (leader, epoch) = match &role {
            Role::Leader(term) => (true, term.epoch),
            Role::Standby(leader) => (false, leader.as_ref().map(|leader| leader.epoch)),
        };
        self.metrics.set_leadership(leader, epoch);
        *self.role.write().unwrap_or_else(PoisonError::into_inner) = role;
    }

    /// The term, if this replica leads.
    pub fn term(&self) -> Option<Arc<Term>> {
        match self.role() {
            Role::Leader(term) => Some(term),
            Role::Standby(_) => None,
        }
    }

    /// The term of a replica that leads for good (the embedded store's).
    pub fn lasting_term(&self) -> Option<Arc<Term>> {
        match self.cluster {
            None => self.term(),
            Some(_) => None,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The key forwarded requests prove their client address with.
    pub fn forward_key(&self) -> crate::audit::ForwardKey {
        self.forwarder.key()
    }

    pub fn openapi(&self) -> &str {
        &self.openapi
    }

    /// The open events streams of this server.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// The whole event log after `after`, read from the database as it
    /// stands (any replica can: no forwarding, no lock on memory).
    pub async fn events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        match (&self.cluster, self.term()) {
            (Some(cluster), _) => cluster.events_after(after, limit).await,
            (None, Some(term)) => term.state.store().events_after(after, limit).await,
            (None, None) => Err(no_store()),
        }
    }

    /// Events of the whole log matching `query` ([`Store::log_events`]).
    /// A leader first waits until everything it has shown is durable, so
    /// that the log never lags its answers.
    pub async fn log_events(&self, query: &LogQuery) -> Result<Vec<StoredEvent>, ApiError> {
        let unavailable =
            |error: StoreError| ApiError::Unavailable(format!("reading the event log: {error}"));
        if let Some(term) = self.term() {
            term.state.reveal(|_| ()).await?;
        }
        let read = match (&self.cluster, self.term()) {
            (Some(cluster), _) => cluster.log_events(query).await,
            (None, Some(term)) => term.state.store().log_events(query).await,
            (None, None) => Err(no_store()),
        };
        read.map_err(unavailable)
    }

    /// How long a leader may go without renewing its lease before it stops
    /// answering: three quarters of the TTL.
    fn freshness(&self) -> u64 {
        u64::try_from((self.lease_ttl / 4 * 3).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether `term` may answer now (see the module's documentation).
    fn fresh(&self, term: &Term) -> bool {
        self.cluster.is_none() || self.clock().saturating_sub(term.renewed()) < self.freshness()
    }

    /// How a request is answered here; `forwarded` when another replica
    /// forwarded it.
    fn route(&self, forwarded: bool) -> Route {
        match self.role() {
            Role::Leader(term) if self.fresh(&term) => Route::Here(term),
            Role::Leader(_) => Route::Unavailable(
                "this replica leads but could not renew its lease in time; it answers nothing until it knows whether it still leads, retry in a moment".to_owned(),
            ),
            Role::Standby(Some(_)) if forwarded => {
                Route::Unavailable(
                    "the leader moved while this request was forwarded to it; retry".to_owned(),
                )
            }
            Role::Standby(Some(leader)) => Route::Forward(leader),
            Role::Standby(None) => Route::Unavailable(
                "no replica leads at the moment (an election is under way or the database cannot be reached); retry in a moment".to_owned(),
            ),
        }
    }

    /// Answers a request the replica's own router does not: by the term
    /// when this replica leads, else by forwarding it to the leader.
    pub async fn dispatch(self: Arc<Replica>, request: Request) -> Response {
        match self.route(request.headers().contains_key(forward::FORWARDED_BY)) {
            Route::Here(term) => match term.router.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
            Route::Forward(leader) => match &self.batcher {
                Some(batcher) if batch::batches(&request) => {
                    batcher.forward(&leader.address, request).await
                }
                _ => forward::forward(&self.forwarder, &leader.address, &self.id, request).await,
            },
            Route::Unavailable(why) => ApiError::Unavailable(why).into_response(),
        }
    }

    /// Whether this replica can serve: a leader whose lease is fresh, or a
    /// standby that knows a leader and heard from the database lately.
    pub fn ready(&self) -> Result<ReplicaRole, String> {
        match self.role() {
            Role::Leader(term) if self.fresh(&term) => Ok(ReplicaRole::Leader),
            Role::Leader(_) => Err("the lease could not be renewed in time".to_owned()),
            Role::Standby(None) => Err("no replica leads".to_owned()),
            Role::Standby(Some(leader)) => {
                let silent = self
                    .clock()
                    .saturating_sub(self.contact.load(Ordering::Acquire));
                if silent < self.freshness() {
                    Ok(ReplicaRole::Standby)
                } else {
                    Err(format!(
                        "the database has not answered for {silent} ms (the leader was {})",
                        leader.id
                    ))
                }
            }
        }
    }

    fn touched(&self, at: u64) {
        self.contact.fetch_max(at, Ordering::AcqRel);
    }

    /// The gauges of memory, when this replica leads (a standby holds none).
    pub fn gauges(&self) -> Gauges {
        match self.term() {
            Some(term) => term.state.peek(|world| world.gauges()),
            None => Gauges::default(),
        }
    }

    /// [`Replica::authorize`], and counts the request against the token's
    /// rate (`--api-rate`): the term's when this replica leads, so that
    /// the endpoints it answers itself share the rate of the API's, else
    /// this standby's own.
    pub async fn admit(&self, headers: &HeaderMap, need: Need) -> Result<(), ApiError> {
        let hash = self.authorize(headers, need).await?;
        match self.term() {
            Some(term) => term.state.limit_rate(&hash),
            None => self.rate.check(&hash),
        }
    }

    /// Checks that the bearer token of `headers` may `need`: against the
    /// term's tokens when this replica leads, else against the database.
    /// Returns the token's hash.
    pub async fn authorize(&self, headers: &HeaderMap, need: Need) -> Result<String, ApiError> {
        let secret = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "missing bearer token; send Authorization: Bearer TOKEN".to_owned(),
                )
            })?;
        let unknown = || {
            ApiError::Unauthorized(
                "unknown token; use the admin token from <data-dir>/admin.token or one made with sluice token create".to_owned(),
            )
        };
        let unavailable = |error: sluice_store::StoreError| {
            ApiError::Unavailable(format!("checking the token: {error}"))
        };
        let now = self.settings.clock.now();
        let (role, hash) = match (self.term(), &self.cluster) {
            (Some(term), _) => {
                let token = term
                    .state
                    .tokens()
                    .find(secret, term.state.store())
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(unknown)?;
                token.check_usable(now)?;
                (token.role, token.hash.clone())
            }
            // The database as it stands: a revoked token is gone from it.
            (None, Some(cluster)) => {
                let hash = hash_secret(secret);
                let record = cluster
                    .token(&hash)
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(unknown)?;
                if let Some(at) = record.expires_at.filter(|at| *at <= now) {
                    return Err(ApiError::Unauthorized(format!(
                        "this token expired at {}; ask an admin for a new one",
                        crate::clock::rfc3339(at)
                    )));
                }
                (vocabulary::wire_role(record.role), hash)
            }
            (None, None) => return Err(unknown()),
        };
        crate::auth::require(role, need)?;
        Ok(hash)
    }

    /// `GET /v1/cluster`: the replicas as the database knows them.
    pub async fn cluster_view(&self) -> Result<ClusterView, ApiError> {
        let Some(cluster) = &self.cluster else {
            let now = self.settings.clock.now();
            return Ok(ClusterView {
                answered_by: self.id.clone(),
                epoch: None,
                leader: Some(self.id.clone()),
                lease_expires_at: None,
                replicas: vec![ReplicaView {
                    id: self.id.clone(),
                    address: self.address.clone(),
                    role: ReplicaRole::Leader,
                    last_heartbeat: crate::clock::rfc3339(now),
                    heartbeat_age_s: 0.0,
                }],
            });
        };
        let unavailable =
            |error: sluice_store::StoreError| ApiError::Unavailable(error.to_string());
        let lease = cluster.current().await.map_err(unavailable)?;
        let replicas = cluster.replicas().await.map_err(unavailable)?;
        let held = lease.held();
        Ok(ClusterView {
            answered_by: self.id.clone(),
            epoch: lease.lease.as_ref().map(|lease| lease.epoch),
            leader: held.map(|lease| lease.holder.clone()),
            lease_expires_at: held.map(|lease| crate::clock::rfc3339(lease.expires_at)),
            replicas: replicas
                .into_iter()
                .map(|replica| ReplicaView {
                    role: if held.is_some_and(|lease| lease.holder == replica.id) {
                        ReplicaRole::Leader
                    } else {
                        ReplicaRole::Standby
                    },
                    last_heartbeat: crate::clock::rfc3339(replica.last_heartbeat),
                    heartbeat_age_s: lease
                        .now
                        .duration_since(replica.last_heartbeat)
                        .as_secs_f64()
                        .max(0.0),
                    id: replica.id,
                    address: replica.address,
                })
                .collect(),
        })
    }

    /// Stops leading, if this replica leads: a clean shutdown saves what it
    /// holds and hands the lease over at once.
    pub async fn shutdown(&self) {
        let Some(term) = self.term() else {
            return;
        };
        self.set_role(Role::Standby(None));
        term.stop(true).await;
        if let (Some(cluster), Some(epoch)) = (&self.cluster, term.epoch) {
            match cluster.release(&self.id, epoch).await {
                Ok(true) => tracing::info!(epoch, "released the leader's lease"),
                Ok(false) => tracing::warn!(epoch, "the lease was no longer this replica's"),
                Err(error) => {
                    tracing::warn!(%error, "could not release the lease; it expires by itself")
                }
            }
        }
    }
}

/// A replica without a store: only the embedded one between its term's end
/// and the process's.
fn no_store() -> StoreError {
    StoreError::Unavailable("the server is shutting down".to_owned())
}

/// The fallback of the replica's router: everything it does not answer
/// itself.
pub async fn dispatch(State(replica): State<Arc<Replica>>, request: Request) -> Response {
    replica.dispatch(request).await
}
