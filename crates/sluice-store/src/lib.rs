//! sluice-store: everything the control plane must not lose.
//!
//! The server keeps its working state in memory and answers from there; the
//! store is where that state becomes durable. Writes arrive in batches (the
//! server's group commit): [`Store::commit`] applies a batch in one
//! transaction and returns only once it is durable, so a check-in or an
//! operator action is acknowledged only after its batch committed. At start
//! the server rebuilds its memory from [`Store::load`].
//!
//! Layout: this file holds the trait and the records; [`sqlite`] the embedded
//! backend (its migrations in `migrations/sqlite/`); `batch` the part of a
//! commit every backend shares (a batch cut into runs of one kind, which each
//! backend writes in its own dialect); `conformance` the test suite every
//! backend must pass, wired into a backend's tests by
//! `store_conformance_suite!` (a PostgreSQL backend joins them later, with
//! `migrations/postgres/` beside the SQLite ones).
//!
//! Architecture invariant: the store knows nothing of the engine's rules. It
//! persists opaque JSON where the engine owns the shape (rollout headers,
//! event data), typed columns where the server queries.

use std::collections::BTreeMap;

mod batch;
#[doc(hidden)]
pub mod conformance;
pub mod sqlite;

pub use sqlite::SqliteStore;

/// Timestamps are RFC 3339 strings in UTC, as the engine writes them, so
/// that every backend stores and orders them the same way.
pub type Timestamp = String;

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
    /// `ok`, `applying`, `failed`; `None` for an imported version.
    pub state: Option<String>,
    pub message: Option<String>,
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
    /// The engine's per-host record (opaque to the store).
    pub record: serde_json::Value,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 of the secret, hex; the secret itself is never stored.
    pub hash: String,
    /// `agent`, `viewer`, `operator`, `admin`.
    pub role: String,
    /// For agent tokens, the host they may check in as.
    pub host: Option<String>,
    pub name: Option<String>,
    pub created_at: Timestamp,
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
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, migrated or reached.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The stored schema is newer than this binary knows.
    #[error(
        "the database schema is version {found}, this sluice knows up to {known}; upgrade sluice"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// A write was refused (constraint, corruption, disk full).
    #[error("storage write failed: {0}")]
    Write(String),
}

impl StoreError {
    /// Whether trying again may succeed (the database was unreachable or
    /// busy), as opposed to a refusal that retrying cannot change.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The durable state behind a sluice server.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads everything the server keeps in memory.
    async fn load(&self) -> Result<Loaded, StoreError>;

    /// Applies `batch` in one transaction, in order; returns once durable.
    async fn commit(&self, batch: &[Write]) -> Result<(), StoreError>;

    /// A rollout's events with `seq > after`, oldest first, at most `limit`.
    async fn events(
        &self,
        rollout: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Keeps samples of hosts by version (outside the group commit: they are
    /// a record for charts, not state). A sample with the same rollout and
    /// time as a stored one replaces it.
    async fn add_samples(&self, samples: &[SampleRecord]) -> Result<(), StoreError>;

    /// A rollout's samples, oldest first.
    async fn samples(&self, rollout: &str) -> Result<Vec<SampleRecord>, StoreError>;

    /// The schema version of the open database.
    async fn schema_version(&self) -> Result<i64, StoreError>;
}
