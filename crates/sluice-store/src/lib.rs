//! sluice-store: everything the control plane must not lose.
//!
//! The server keeps its working state in memory and answers from there; the
//! store is where that state becomes durable. Writes arrive in batches (the
//! server's group commit): [`Store::commit`] applies a batch in one
//! transaction and returns only once it is durable, so a check-in or an
//! operator action is acknowledged only after its batch committed. At start
//! the server rebuilds its memory from [`Store::load`].
//!
//! Layout: this file holds the trait, the records and the error. `sql` is
//! the one [`Store`] implementation of both backends: the SQL they share and
//! a commit's flow, over a `Dialect` saying where each differs. [`sqlite`]
//! is the embedded backend's dialect (its migrations in
//! `migrations/sqlite/`), [`postgres`] the shared database's
//! (`migrations/postgres/`), which also holds the leader lease of a cluster
//! of replicas ([`Cluster`]). Beside them, what neither dialect's SQL
//! touches: `batch`, a batch grouped by kind and the words a refused one is
//! reported in; `read`, rows turned into records, every stored value parsed.
//! [`copy`] moves an embedded install into an empty PostgreSQL database
//! (`sluice db copy`), every row of every table, over the same pages and
//! writes. `conformance` is the test suite every backend must pass, wired
//! into a backend's tests by `store_conformance_suite!`; `testing` makes
//! throwaway PostgreSQL databases for tests.
//!
//! Architecture invariant: the store knows nothing of the engine's rules. It
//! persists opaque JSON where the engine owns the shape (rollout headers,
//! event data), typed columns where the server queries.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

mod batch;
#[doc(hidden)]
pub mod conformance;
pub mod copy;
pub mod postgres;
mod read;
mod sql;
pub mod sqlite;
#[doc(hidden)]
pub mod testing;

/// Every stored time is a real time. Backends keep microseconds (what
/// PostgreSQL's `timestamptz` holds): a time written with nanoseconds comes
/// back truncated to the microsecond, the same in every backend.
pub use jiff::Timestamp;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// One write of a batch. Batches are applied in order, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Creates or updates a host (labels replace the old ones).
    Host(HostRecord),
    /// What a host last reported (or was imported with) for a component.
    HostComponent(HostComponentRecord),
    /// Creates or replaces a rollout's row.
    Rollout(RolloutRecord),
    /// Creates or replaces one host's record inside a rollout.
    RolloutHost(RolloutHostRecord),
    /// Appends an event; the store assigns its sequence number.
    Event(NewEvent),
    /// Sets a component's stable version (creating the component).
    Component(ComponentRecord),
    /// Turns the fleet-wide freeze on (`Some`) or off (`None`).
    Freeze(Option<FreezeRecord>),
    /// Stores a new token.
    Token(TokenRecord),
    /// Deletes the token of this hash (revoked).
    TokenRevoked(String),
    /// Deletes every token bound to this host (it may enroll again).
    HostTokensRevoked(String),
    /// The token of `hash` was used at `at` (kept if later than the
    /// stored last use).
    TokenUsed { hash: String, at: Timestamp },
    /// Stores a new dashboard session (or replaces the one of its hash).
    Session(SessionRecord),
    /// Deletes the dashboard session of this hash (its user signed out).
    SessionEnded(String),
    /// Deletes every dashboard session that expires at or before this time.
    SessionsExpired(Timestamp),
    /// Appends an entry to the audit log; the store assigns its sequence
    /// number.
    Audit(AuditRecord),
    /// Keeps a rollout's hosts by state at a time (replacing a sample of
    /// the same rollout and time).
    StateSample(StateSampleRecord),
    /// Sets the fleet-wide change budget (`Some`) or lifts it (`None`).
    Budget(Option<BudgetRecord>),
    /// Pins a host's component to a version (replacing its pin, if any).
    Pin(PinRecord),
    /// Removes the pin of a host's component (lifted, or expired).
    PinRemoved { host: String, component: String },
    /// Stores a new webhook, its delivery starting after the last event
    /// stored before this batch (the batch's own events are delivered).
    Webhook(WebhookRecord),
    /// Deletes the webhook of this id.
    WebhookRemoved(String),
    /// A webhook's delivery progressed (or failed): replaces its delivery
    /// state; nothing when the webhook was removed meanwhile.
    WebhookDelivery {
        id: String,
        delivery: WebhookDelivery,
    },
}

impl Write {
    /// The kind of write, for logs: `host`, `rollout_host`, `event`, ….
    pub fn kind(&self) -> &'static str {
        match self {
            Write::Host(_) => "host",
            Write::HostComponent(_) => "host_component",
            Write::Rollout(_) => "rollout",
            Write::RolloutHost(_) => "rollout_host",
            Write::Event(_) => "event",
            Write::Component(_) => "component",
            Write::Freeze(_) => "freeze",
            Write::Token(_) => "token",
            Write::TokenRevoked(_) => "token_revoked",
            Write::HostTokensRevoked(_) => "host_tokens_revoked",
            Write::TokenUsed { .. } => "token_used",
            Write::Session(_) => "session",
            Write::SessionEnded(_) => "session_ended",
            Write::SessionsExpired(_) => "sessions_expired",
            Write::Audit(_) => "audit",
            Write::StateSample(_) => "state_sample",
            Write::Budget(_) => "budget",
            Write::Pin(_) => "pin",
            Write::PinRemoved { .. } => "pin_removed",
            Write::Webhook(_) => "webhook",
            Write::WebhookRemoved(_) => "webhook_removed",
            Write::WebhookDelivery { .. } => "webhook_delivery",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// `None` for hosts imported but never checked in.
    pub last_seen: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostComponentRecord {
    pub host: String,
    pub component: String,
    pub version: String,
    /// `None` for an imported version.
    pub state: Option<ReportedState>,
    pub message: Option<String>,
    /// The host's agent found it at `version` after it had run its desired
    /// version, outside an apply.
    pub drifted: bool,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRecord {
    pub id: String,
    pub name: String,
    pub component: String,
    /// `pending`, `running`, `paused`, `completed`, `aborted`, `rolled_back`.
    pub state: String,
    /// The plan as submitted (YAML or JSON text).
    pub plan: String,
    /// The engine's snapshot without its hosts (opaque to the store).
    pub header: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutHostRecord {
    pub rollout: String,
    pub host: String,
    /// The engine's per-host record as JSON text (opaque to the store, and
    /// kept as text: a million of them must not become a million trees).
    pub record: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// `None` for fleet-wide events (freeze).
    pub rollout: Option<String>,
    pub at: Timestamp,
    pub actor: Option<String>,
    /// The event type, e.g. `stage_started`.
    pub kind: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Increasing in commit order, across the whole store.
    pub seq: i64,
    pub event: NewEvent,
}

/// One entry of the audit log: a mutating action, who took it, from where
/// and why. Written in the batch of the action itself.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub at: Timestamp,
    /// The acting token's id (the start of its hash; never the secret).
    pub actor_id: String,
    /// The acting token's name, else its role and the start of its hash.
    pub actor_name: String,
    pub actor_role: TokenRole,
    /// The client's IP address, as the server (or the replica that
    /// forwarded the request) saw it.
    pub source: Option<String>,
    /// What was done: `rollout_created`, `freeze_on`, `token_revoked`, ….
    pub kind: String,
    /// What it was done to: a rollout, a token's id, a host, a component.
    pub target: Option<String>,
    pub reason: Option<String>,
    /// Details of the action (a JSON object; opaque to the store).
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredAudit {
    /// Increasing in commit order.
    pub seq: i64,
    pub entry: AuditRecord,
}

/// Which audit entries [`Store::audit`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries of this actor: its token's id or its name.
    pub actor: Option<String>,
    /// Only entries of this kind.
    pub kind: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<Timestamp>,
    /// Only entries numbered above this (a cursor: the last `seq` read).
    pub after: Option<i64>,
    pub limit: u32,
}

/// Which events [`Store::log_events`] reads: the whole log, filtered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only this rollout's events.
    pub rollout: Option<String>,
    /// Only events of these kinds (any kind when empty).
    pub kinds: Vec<String>,
    /// Only events numbered above this (a cursor: the last `seq` read).
    pub after: Option<i64>,
    pub limit: u32,
}

/// Which tokens [`Store::tokens_page`] reads: ordered by hash, a page at
/// a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenPage {
    /// Only tokens of this role.
    pub role: Option<TokenRole>,
    /// Only tokens whose hash sorts at or after this (lowercase hex): where
    /// the page starts.
    pub from: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentRecord {
    pub name: String,
    pub stable_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeRecord {
    pub actor: String,
    pub reason: String,
    pub since: Timestamp,
}

/// The fleet-wide change budget (table `fleet_budget`, one row while set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRecord {
    /// Hosts in flight across all rollouts: a count (`50`) or a share of
    /// the fleet (`2%`), as the server writes it.
    pub max_in_flight: String,
    /// Hosts in flight in one stratum of the fleet, likewise.
    pub per_stratum: Option<String>,
    /// The labels whose distinct values make the fleet's strata.
    pub spread: Vec<String>,
    pub actor: String,
    pub reason: String,
    pub since: Timestamp,
}

/// A host's component pinned to a version until `expires_at` (table `pins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRecord {
    pub host: String,
    pub component: String,
    pub version: String,
    pub expires_at: Timestamp,
    pub actor: String,
    pub reason: String,
    pub since: Timestamp,
}

/// A webhook as it was added (table `webhooks`): where and how events are
/// delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    /// The event kinds delivered; empty: every kind.
    pub events: Vec<String>,
    /// `json` or `slack`, as the server writes it.
    pub format: String,
    /// The key the bodies are signed with (HMAC-SHA256); `None`: unsigned.
    pub secret: Option<String>,
    pub created_at: Timestamp,
    /// The name (or id) of the token that added it.
    pub created_by: String,
}

/// How far a webhook's delivery got through the event log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookDelivery {
    /// The `seq` of the last event delivered (or not wanted): delivery
    /// goes on after it.
    pub delivered_seq: i64,
    /// Failed attempts since the last success.
    pub failures: i64,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
}

/// A stored webhook with its delivery's progress ([`Store::webhooks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWebhook {
    pub webhook: WebhookRecord,
    pub delivery: WebhookDelivery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 of the secret, hex; the secret itself is never stored.
    pub hash: String,
    pub role: TokenRole,
    /// For agent tokens, the host they may check in as.
    pub host: Option<String>,
    pub name: Option<String>,
    pub created_at: Timestamp,
    /// For enrollment tokens, the selector an enrolling host's labels must
    /// match; for the tokens they made, the same selector, which the host's
    /// labels must keep matching.
    pub selector: Option<String>,
    /// The token is refused from then on; `None`: it does not expire.
    pub expires_at: Option<Timestamp>,
    /// For enrollment tokens, how many more hosts they may enroll (counted
    /// down by [`Store::enroll`], never by a batch).
    pub uses_left: Option<i64>,
    /// When it was last used, as last written (a batch only moves it later).
    pub last_used_at: Option<Timestamp>,
}

impl TokenRecord {
    /// A token of `role` created at `created_at`, with nothing else set.
    pub fn new(hash: String, role: TokenRole, created_at: Timestamp) -> TokenRecord {
        TokenRecord {
            hash,
            role,
            host: None,
            name: None,
            created_at,
            selector: None,
            expires_at: None,
            uses_left: None,
            last_used_at: None,
        }
    }
}

/// A host enrolling with an enrollment token ([`Store::enroll`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Enrollment {
    /// The hash of the enrollment token's secret.
    pub enroll_token: String,
    /// The host's new token (role agent, bound to its host and selector).
    pub token: TokenRecord,
    /// The event that records the enrollment.
    pub event: NewEvent,
    /// The audit entry of the enrollment (the enrollment token's use).
    pub audit: AuditRecord,
    /// The enrollment token must not have expired by then.
    pub now: Timestamp,
}

/// What [`Store::enroll`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    /// The host's token is stored; the enrollment token has this many uses left.
    Done { uses_left: i64 },
    /// No enrollment token has that hash (never made, or revoked).
    UnknownToken,
    /// The enrollment token expired then.
    Expired(Timestamp),
    /// The enrollment token has no use left.
    UsedUp,
    /// A token is already bound to the host.
    AlreadyEnrolled,
}

/// A signed-in dashboard session (table `dashboard_sessions`). Like a
/// token, it is kept by the hash of its secret (the cookie's value), never
/// the secret itself; the token it was signed in with is named by that
/// token's hash, so that the session acts with the token's role and name as
/// they are stored. Its CSRF token is derived from the secret, not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session's secret, hex. The server also keeps its
    /// one-time sign-in links as sessions not yet handed out, their hash
    /// prefixed `link:`; the store does not tell them apart.
    pub hash: String,
    /// The hash of the token the session was signed in with.
    pub token: String,
    pub created_at: Timestamp,
    /// The session ends then, signed out or not.
    pub expires_at: Timestamp,
}

/// How many hosts of a rollout reported each version at one moment: a point
/// of the dashboard's chart of hosts by version over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRecord {
    pub rollout: String,
    pub at: Timestamp,
    /// Version → hosts of the rollout reporting it (`unknown`: none yet).
    pub versions: BTreeMap<String, u64>,
}

/// How many hosts of a rollout were in each state at one moment: a point of
/// the retrospective's chart of hosts by state over time. Written with the
/// group commit ([`Write::StateSample`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSampleRecord {
    pub rollout: String,
    pub at: Timestamp,
    /// State → hosts of the rollout in it (the engine's names).
    pub counts: BTreeMap<String, u64>,
}

/// A part of what [`Store::load_parts`] reads, handed over as it is read,
/// in this order: the small tables (components, rollouts, the freeze,
/// tokens, dashboard sessions, the budget, pins), then the large ones a page at a time, each in key order —
/// hosts by id, host components by host and component, and the host
/// records of rollouts that are not terminal by rollout and host.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Components(Vec<ComponentRecord>),
    /// Every rollout, terminal ones included (they are few and small).
    Rollouts(Vec<RolloutRecord>),
    Freeze(Option<FreezeRecord>),
    Tokens(Vec<TokenRecord>),
    /// Every stored dashboard session, expired ones included: the store
    /// knows no clock; whoever loads them drops (and deletes) those past
    /// their expiry.
    Sessions(Vec<SessionRecord>),
    Budget(Option<BudgetRecord>),
    /// Every stored pin, expired ones included (the store knows no clock).
    Pins(Vec<PinRecord>),
    Hosts(Vec<HostRecord>),
    HostComponents(Vec<HostComponentRecord>),
    RolloutHosts(Vec<RolloutHostRecord>),
}

/// Everything the server holds in memory, as loaded at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub hosts: Vec<HostRecord>,
    pub host_components: Vec<HostComponentRecord>,
    pub components: Vec<ComponentRecord>,
    /// Every rollout, terminal ones included (they are few and small).
    pub rollouts: Vec<RolloutRecord>,
    /// Host records of rollouts that are not terminal.
    pub rollout_hosts: Vec<RolloutHostRecord>,
    pub freeze: Option<FreezeRecord>,
    pub tokens: Vec<TokenRecord>,
    pub sessions: Vec<SessionRecord>,
    pub budget: Option<BudgetRecord>,
    pub pins: Vec<PinRecord>,
}

impl Loaded {
    /// Adds a part of a load.
    pub fn absorb(&mut self, part: Part) {
        match part {
            Part::Components(rows) => self.components.extend(rows),
            Part::Rollouts(rows) => self.rollouts.extend(rows),
            Part::Freeze(freeze) => self.freeze = freeze,
            Part::Tokens(rows) => self.tokens.extend(rows),
            Part::Sessions(rows) => self.sessions.extend(rows),
            Part::Budget(budget) => self.budget = budget,
            Part::Pins(rows) => self.pins.extend(rows),
            Part::Hosts(rows) => self.hosts.extend(rows),
            Part::HostComponents(rows) => self.host_components.extend(rows),
            Part::RolloutHosts(rows) => self.rollout_hosts.extend(rows),
        }
    }

    /// The parts of this load, in the order [`Store::load_parts`] hands
    /// them over.
    pub fn into_parts(self) -> impl Iterator<Item = Part> {
        [
            Part::Components(self.components),
            Part::Rollouts(self.rollouts),
            Part::Freeze(self.freeze),
            Part::Tokens(self.tokens),
            Part::Sessions(self.sessions),
            Part::Budget(self.budget),
            Part::Pins(self.pins),
            Part::Hosts(self.hosts),
            Part::HostComponents(self.host_components),
            Part::RolloutHosts(self.rollout_hosts),
        ]
        .into_iter()
    }
}

/// Declares a closed set of names stored as text: `as_str` writes them,
/// `FromStr` reads them back and refuses anything else.
macro_rules! stored_names {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The name as stored.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(text: &str) -> Result<$name, UnknownName> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        found: text.to_owned(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_names! {
    /// What a host last reported about a component.
    ReportedState {
        Ok = "ok",
        Applying = "applying",
        Failed = "failed",
    }
}

stored_names! {
    /// What a token may do.
    TokenRole {
        Agent = "agent",
        Enroll = "enroll",
        Viewer = "viewer",
        Operator = "operator",
        Admin = "admin",
    }
}

/// A stored name that is none of those this sluice knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{found:?} is not one of {}", expected.join(", "))]
pub struct UnknownName {
    pub found: String,
    pub expected: &'static [&'static str],
}

/// What went wrong, in the terms a caller acts on: [`StoreError::is_transient`]
/// tells "try the same call again" from everything else.
///
/// Each backend translates its driver's errors in one function
/// (`sqlite::classify`, `postgres::classify`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Try again: the database cannot be reached, a connection was lost, it
    /// is busy or locked, a transaction lost a serialization conflict, no
    /// connection was free in time, or it ran out of disk or memory. A
    /// failed commit kept nothing, and the same batch may succeed later
    /// unchanged: a full disk is transient too, so that sluice recovers by
    /// itself once an operator frees space.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database will not take this batch as it is: a constraint (a
    /// rollout name already taken, a write naming a host or rollout that does
    /// not exist) or a value it rejects. The message names the kind of write
    /// and its key. The same batch would fail the same way; nothing of it
    /// was kept.
    #[error("storage refused the write: {0}")]
    Refused(String),
    /// A stored value cannot be read (a time, JSON, a role or a state that
    /// does not parse) or the database is damaged; the message names the
    /// table, the row's key and the column.
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    /// The database settings cannot be used (a URL that does not parse).
    #[error("database settings: {0}")]
    Config(String),
    /// The stored schema is newer than this binary knows.
    #[error(
        "the database schema is version {found}, this sluice knows up to {known}; upgrade sluice"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// A commit through a handle bound to a leader lease found the lease no
    /// longer held by that holder and epoch (another replica took over, or
    /// it expired): it wrote nothing, and the replica must stop leading.
    #[error("fenced: {0}")]
    Fenced(String),
}

impl StoreError {
    /// Whether the same call may succeed if tried again later (see
    /// [`StoreError::Unavailable`]). Everything else needs a change: a
    /// different batch, an operator, a newer sluice, or stepping down.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The durable state behind a sluice server.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads everything the server keeps in memory from one snapshot,
    /// handing it to `each` part by part as it is read (see [`Part`]), so
    /// that a million hosts are never held twice: the caller builds its
    /// memory from each page while the next one is read.
    async fn load_parts(&self, each: &mut (dyn FnMut(Part) + Send)) -> Result<(), StoreError>;

    /// Reads everything the server keeps in memory, at once.
    async fn load(&self) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded::default();
        self.load_parts(&mut |part| loaded.absorb(part)).await?;
        Ok(loaded)
    }

    /// Applies `batch` in one transaction, in order; returns once durable.
    async fn commit(&self, batch: &[Write]) -> Result<(), StoreError>;

    /// The stored token whose secret hashes to `hash`, as the database
    /// holds it now: a token written there by another process
    /// (`sluice token create --database-url`) is found at once, and a
    /// standby, which holds no tokens in memory, checks the callers of the
    /// endpoints it answers itself here.
    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Every stored token, oldest first (`sluice token list`): as the
    /// database holds them now, uses left and last uses included.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// A page of the stored tokens (`GET /v1/tokens`), ordered by hash: at
    /// most `limit`, of `role` if given, from `from` on.
    async fn tokens_page(&self, page: &TokenPage) -> Result<Vec<TokenRecord>, StoreError>;

    /// Enrolls a host, in one transaction (fenced like a commit): takes one
    /// use of the enrollment token if it has one left and has not expired,
    /// and stores the host's token and the event, unless a token is already
    /// bound to the host. Concurrent enrollments, through any process, never
    /// take more uses than the token had, nor bind two tokens to one host.
    /// Anything but [`Enrolled::Done`] writes nothing.
    async fn enroll(&self, enrollment: &Enrollment) -> Result<Enrolled, StoreError>;

    /// Audit entries matching `query`, oldest first, at most `limit`: from
    /// the oldest matching `since` and `after` when either is given, else
    /// the newest `limit` (the log's tail).
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError>;

    /// A rollout's events with `seq > after`, oldest first, at most `limit`.
    async fn events(
        &self,
        rollout: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every event with `seq > after` — all rollouts' and the fleet-wide
    /// ones — oldest first, at most `limit`: the whole log in commit order,
    /// for the events stream and webhooks, which page through it with the
    /// last number they read and never skip one.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;

    /// Events of the whole log matching `query`, oldest first, at most
    /// `limit`: from the oldest matching one above `after` when it is
    /// given, else the newest `limit` (the log's tail).
    async fn log_events(&self, query: &LogQuery) -> Result<Vec<StoredEvent>, StoreError>;

    /// Keeps samples of hosts by version (outside the group commit: they are
    /// a record for charts, not state). A sample with the same rollout and
    /// time as a stored one replaces it.
    async fn add_samples(&self, samples: &[SampleRecord]) -> Result<(), StoreError>;

    /// A rollout's samples, oldest first.
    async fn samples(&self, rollout: &str) -> Result<Vec<SampleRecord>, StoreError>;

    /// A rollout's samples of hosts by state ([`Write::StateSample`]),
    /// oldest first.
    async fn state_samples(&self, rollout: &str) -> Result<Vec<StateSampleRecord>, StoreError>;

    /// Every stored webhook with its delivery's progress, by id, as the
    /// database holds them now: the leader's delivery reads where each
    /// one's delivery stands when its term starts (and when one is added).
    async fn webhooks(&self) -> Result<Vec<StoredWebhook>, StoreError>;

    /// The schema version of the open database.
    async fn schema_version(&self) -> Result<i64, StoreError>;
}

/// The leader lease as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The replica holding (or last holding) the lease.
    pub holder: String,
    /// Where other replicas reach the holder (to forward requests).
    pub address: String,
    /// Grows at every acquisition; commits fenced by an older epoch fail.
    pub epoch: i64,
    pub acquired_at: Timestamp,
    pub renewed_at: Timestamp,
    /// The holder leads until then, by the database's clock.
    pub expires_at: Timestamp,
}

/// The lease and the database's clock, read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// `None` while no replica ever held it.
    pub lease: Option<Lease>,
    /// The database's `now()`, the clock every lease time is measured by.
    pub now: Timestamp,
}

impl LeaseState {
    /// The lease, if someone holds it now (it has not expired or been released).
    pub fn held(&self) -> Option<&Lease> {
        self.lease
            .as_ref()
            .filter(|lease| lease.expires_at > self.now)
    }
}

/// A replica's last sign of life, for `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub id: String,
    pub address: String,
    /// By the database's clock.
    pub last_heartbeat: Timestamp,
}

/// Leadership among replicas sharing one database: a lease row timed by the
/// database's clock, with an epoch that grows at every acquisition, and
/// store handles fenced by it. The database is a [`Store`] too, unfenced:
/// a standby reads tokens from it. Implemented by [`PgStore`]; an embedded
/// SQLite store has one server, always its own leader, and no lease.
///
/// A leader acquires, then renews well within the TTL; a renewal that
/// answers `None` means the lease is lost and the replica must stop deciding
/// at once. It commits only through [`Cluster::fenced`], so that a commit of
/// a leader that lost its lease (paused, partitioned) fails instead of
/// landing after a successor's.
#[async_trait::async_trait]
pub trait Cluster: Store {
    /// Takes the lease for `ttl` if nobody holds it or it expired (a holder
    /// whose own lease is still running waits for it like everyone else),
    /// with an epoch one above the last. `None`: someone else holds it.
    async fn acquire(
        &self,
        holder: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError>;

    /// Extends the lease to `ttl` from now if `holder` still holds it with
    /// `epoch` and it has not expired; `None` when it does not (the caller
    /// must stop leading).
    async fn renew(
        &self,
        holder: &str,
        epoch: i64,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError>;

    /// Ends `holder`'s lease of `epoch` at once (a clean shutdown hands over
    /// without waiting for the TTL). `false` when it no longer held it.
    async fn release(&self, holder: &str, epoch: i64) -> Result<bool, StoreError>;

    /// The lease as it stands, with the database's clock.
    async fn current(&self) -> Result<LeaseState, StoreError>;

    /// A store whose every commit (and sample) first checks, in its own
    /// transaction, that `holder` still holds the lease of `epoch`, and
    /// fails with [`StoreError::Fenced`] otherwise, writing nothing.
    fn fenced(&self, holder: &str, epoch: i64) -> std::sync::Arc<dyn Store>;

    /// Records that replica `id`, reachable at `address`, is alive (the
    /// database's now), and forgets replicas not heard from for a day.
    async fn heartbeat(&self, id: &str, address: &str) -> Result<(), StoreError>;

    /// Every replica heard from within the last day, by id.
    async fn replicas(&self) -> Result<Vec<ReplicaRecord>, StoreError>;

    /// The secret replicas prove forwarded requests with (table
    /// `forwarding_key`): `candidate` (fresh random text) is stored unless
    /// a key already is; either way the stored key is returned, the same
    /// for every replica.
    async fn forwarding_key(&self, candidate: &str) -> Result<String, StoreError>;
}
