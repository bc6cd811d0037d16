//! The shared backend: one PostgreSQL database behind any number of
//! replicas, `sluice server --database-url postgres://…`. What it shares
//! with SQLite is in `sql` (a [`Store`] over this file's `Dialect`); what
//! is PostgreSQL's own is here.
//!
//! Durability: every connection runs with `synchronous_commit=on`, so a
//! commit returns only once PostgreSQL flushed it to its write-ahead log
//! (and to synchronous standbys, where configured) — whatever the server's
//! default says.
//!
//! Writes: a batch is one transaction; each kind of write is one statement
//! over arrays (`INSERT … SELECT … FROM UNNEST($1, $2, …)`), so a batch costs
//! a handful of round trips whatever its size. Events take their sequence
//! numbers from the one-row `event_seq` in commit order (see
//! `migrations/postgres/0001`); a copy (`copy`) writes events with the
//! numbers they had and moves `event_seq` past them. `load` reads in one
//! repeatable-read snapshot.
//!
//! Leadership: [`PgStore`] implements [`Cluster`]: the lease row of
//! `migrations/postgres/0003`, timed by the database's clock, and
//! [`Cluster::fenced`] store handles whose commits check the lease first.
//!
//! Times: `timestamptz` in binary, microseconds since 2000-01-01, read raw
//! so that a value outside what sluice can represent (`infinity`) fails the
//! load naming its row.
//!
//! Error translation from PostgreSQL to [`StoreError`] lives here and
//! nowhere else ([`classify`], by SQLSTATE). Database URLs appear in
//! messages only with their password replaced ([`redact`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgConnection, PgDatabaseError, PgHasArrayType,
    PgPoolOptions, PgTypeInfo, PgValueFormat, PgValueRef,
};
use sqlx::{Decode, Encode, PgPool, Postgres, Transaction, Type};

use crate::batch::{self, describe, event_key, host_component_key, rollout_host_key, token_key};
use crate::read::{corrupt, StoredTime};
use crate::sql::{self, Dialect, Kind, Sql};
use crate::{
    Cluster, ComponentRecord, HostComponentRecord, HostRecord, Lease, LeaseState, NewEvent,
    ReplicaRecord, ReportedState, RolloutHostRecord, Store, StoreError, StoredEvent, Timestamp,
    TokenRecord, Write,
};

/// The migrations of this dialect, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per store: the group commit uses one at a time; the rest
/// serve event pages, samples and the lease.
const CONNECTIONS: u32 = 8;

/// How long a caller waits for a free connection before the call fails as
/// transient.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows per statement: arrays this long keep a statement's size reasonable
/// while costing few round trips.
const ROWS_PER_STATEMENT: usize = 10_000;

/// A replica not heard from for this long is forgotten.
const REPLICA_RETENTION: &str = "1 day";

/// A [`Store`] in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The database URL with its password replaced, for messages.
    url: String,
    /// The lease a handle of [`Cluster::fenced`] writes under.
    fence: Option<Fence>,
}

/// A lease holder and epoch.
#[derive(Debug, Clone)]
struct Fence {
    holder: String,
    epoch: i64,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`)
    /// and brings its schema up to date.
    ///
    /// Fails with [`StoreError::Config`] for a URL that does not parse,
    /// [`StoreError::SchemaTooNew`] when a newer sluice migrated the
    /// database, and otherwise as [`classify`] says (an unreachable server
    /// is [`StoreError::Unavailable`]). Messages name the URL without its
    /// password.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let store = PgStore::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to the database at `url`, leaving its schema as it is.
    pub(crate) async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let redacted = redact(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("database url {redacted}: {e}")))?
            .application_name("sluice")
            .options([("synchronous_commit", "on"), ("timezone", "UTC")]);
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| classify(e, format_args!("connecting to {redacted}")))?;
        Ok(PgStore {
            pool,
            url: redacted,
            fence: None,
        })
    }

    /// Refuses a database migrated by a newer sluice, then brings its
    /// schema up to date.
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        // sqlx takes an advisory lock around the migrations, so replicas
        // starting together migrate once.
        Sql::<PgStore>::migrate(&self.pool, &MIGRATOR, &self.url).await
    }

    /// `synchronous_commit` as the store's connections run with it (`on`),
    /// for a start-up log line and for tests that hold us to the
    /// durability promise.
    pub async fn synchronous_commit(&self) -> Result<String, StoreError> {
        sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&self.pool)
            .await
            .map_err(PgStore::reading("synchronous_commit"))
    }

    /// The database URL, its password replaced.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes every connection. Dropping the store is safe too (every commit
    /// is already durable), this only tidies up.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The newest schema version this binary knows.
pub fn known_schema_version() -> i64 {
    sql::newest(&MIGRATOR)
}

// ---- the lease ----

/// How long a fenced commit may leave the database waiting for its next
/// statement before PostgreSQL ends its session. A commit holds the lease
/// row (and the event sequence) locked until it ends, so a leader stalled
/// in the middle of one (SIGSTOP, a VM paused, a partition) would keep
/// every successor from taking the lease for as long as it stalls; this
/// bounds the wait, and the stalled leader's commit then fails. A commit
/// sends its statements back to back, so a healthy leader never comes
/// near it; one that does merely retries the commit.
const FENCED_IDLE_TIMEOUT: &str = "1s";

/// How long taking the lease waits for the lease row's lock: well below
/// the second a standby waits for the answer (`replica::leadership`).
const ACQUIRE_LOCK_TIMEOUT: &str = "500ms";

/// Fails with [`StoreError::Fenced`] unless the fence's holder holds the
/// lease of its epoch and it has not expired. Locks the lease row `FOR
/// SHARE` until the transaction ends, so that a takeover waits for this
/// commit — for at most [`FENCED_IDLE_TIMEOUT`] of silence from this side,
/// set here for the rest of the transaction.
async fn check_lease(conn: &mut PgConnection, fence: &Fence) -> Result<(), StoreError> {
    let Fence { holder, epoch } = fence;
    sqlx::query(&format!(
        "SET LOCAL idle_in_transaction_session_timeout = '{FENCED_IDLE_TIMEOUT}'"
    ))
    .execute(&mut *conn)
    .await
    .map_err(|e| classify(e, "bounding the commit's idle time"))?;
    let row: Option<(String, i64, bool)> = sqlx::query_as(
        "SELECT holder, epoch, expires_at > clock_timestamp() FROM leader_lease \
         WHERE id = 1 FOR SHARE",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(PgStore::reading("leader_lease"))?;
    let mine = format!("{holder} (epoch {epoch})");
    match row {
        Some((h, e, true)) if h == *holder && e == *epoch => Ok(()),
        Some((h, e, false)) if h == *holder && e == *epoch => Err(StoreError::Fenced(format!(
            "the leader lease of {mine} has expired"
        ))),
        Some((h, e, _)) => Err(StoreError::Fenced(format!(
            "the leader lease of {mine} was taken over by {h} (epoch {e})"
        ))),
        None => Err(StoreError::Fenced(format!(
            "{mine} does not hold the leader lease: nobody ever took it"
        ))),
    }
}

const LEASE_COLUMNS: &str = "holder, address, epoch, acquired_at, renewed_at, expires_at";

type LeaseRow = (String, String, i64, PgTime, PgTime, PgTime);

fn lease(row: LeaseRow) -> Result<Lease, StoreError> {
    let (holder, address, epoch, acquired_at, renewed_at, expires_at) = row;
    let time =
        |t: PgTime, column: &str| t.timestamp().map_err(corrupt("leader_lease", "1", column));
    Ok(Lease {
        acquired_at: time(acquired_at, "acquired_at")?,
        renewed_at: time(renewed_at, "renewed_at")?,
        expires_at: time(expires_at, "expires_at")?,
        holder,
        address,
        epoch,
    })
}

/// A TTL in microseconds, as the lease statements take it.
fn ttl_micros(ttl: Duration) -> Result<i64, StoreError> {
    i64::try_from(ttl.as_micros())
        .map_err(|_| StoreError::Refused(format!("a lease of {ttl:?} is too long")))
}

#[async_trait::async_trait]
impl Cluster for PgStore {
    async fn acquire(
        &self,
        holder: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        // ON CONFLICT locks the row (waiting for fenced commits in flight)
        // and then checks the expiry against the clock as it is after the
        // wait. The wait is bounded by `lock_timeout`, below the time a
        // standby waits for this answer: a statement that outlived its
        // caller could otherwise take the lease for a replica that never
        // learns it, and no one would lead until that lease ran out.
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| classify(e, "acquiring the leader lease"))?;
        sqlx::query(&format!(
            "SET LOCAL lock_timeout = '{ACQUIRE_LOCK_TIMEOUT}'"
        ))
        .execute(&mut *tx)
        .await
        .map_err(|e| classify(e, "acquiring the leader lease"))?;
        let row: Option<LeaseRow> = match sqlx::query_as(&format!(
            "INSERT INTO leader_lease (id, {LEASE_COLUMNS}) \
             VALUES (1, $1, $2, 1, clock_timestamp(), clock_timestamp(), \
                     clock_timestamp() + $3 * interval '1 microsecond') \
             ON CONFLICT (id) DO UPDATE SET \
                 holder = excluded.holder, address = excluded.address, \
                 epoch = leader_lease.epoch + 1, \
                 acquired_at = clock_timestamp(), renewed_at = clock_timestamp(), \
                 expires_at = clock_timestamp() + $3 * interval '1 microsecond' \
             WHERE leader_lease.expires_at <= clock_timestamp() \
             RETURNING {LEASE_COLUMNS}"
        ))
        .bind(holder)
        .bind(address)
        .bind(ttl_micros(ttl)?)
        .fetch_optional(&mut *tx)
        .await
        {
            Ok(row) => row,
            // The row is locked by a commit of the leader in flight: the
            // leader is alive, the lease is not free.
            Err(e) if is_lock_not_available(&e) => return Ok(None),
            Err(e) => return Err(classify(e, "acquiring the leader lease")),
        };
        tx.commit()
            .await
            .map_err(|e| classify(e, "acquiring the leader lease"))?;
        row.map(lease).transpose()
    }

    async fn renew(
        &self,
        holder: &str,
        epoch: i64,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let row: Option<LeaseRow> = sqlx::query_as(&format!(
            "UPDATE leader_lease SET renewed_at = clock_timestamp(), \
                 expires_at = clock_timestamp() + $3 * interval '1 microsecond' \
             WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > clock_timestamp() \
             RETURNING {LEASE_COLUMNS}"
        ))
        .bind(holder)
        .bind(epoch)
        .bind(ttl_micros(ttl)?)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| classify(e, "renewing the leader lease"))?;
        row.map(lease).transpose()
    }

    async fn release(&self, holder: &str, epoch: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE leader_lease SET expires_at = clock_timestamp() \
             WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > clock_timestamp()",
        )
        .bind(holder)
        .bind(epoch)
        .execute(&self.pool)
        .await
        .map_err(|e| classify(e, "releasing the leader lease"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn current(&self) -> Result<LeaseState, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| classify(e, "reading the leader lease"))?;
        let now: PgTime = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&mut *tx)
            .await
            .map_err(PgStore::reading("the database's clock"))?;
        let row: Option<LeaseRow> = sqlx::query_as(&format!(
            "SELECT {LEASE_COLUMNS} FROM leader_lease WHERE id = 1"
        ))
        .fetch_optional(&mut *tx)
        .await
        .map_err(PgStore::reading("leader_lease"))?;
        tx.rollback()
            .await
            .map_err(|e| classify(e, "reading the leader lease"))?;
        Ok(LeaseState {
            lease: row.map(lease).transpose()?,
            now: now
                .timestamp()
                .map_err(|e| StoreError::Corrupt(format!("the database's clock: {e}")))?,
        })
    }

    fn fenced(&self, holder: &str, epoch: i64) -> Arc<dyn Store> {
        Arc::new(PgStore {
            fence: Some(Fence {
                holder: holder.to_owned(),
                epoch,
            }),
            ..self.clone()
        })
    }

    async fn heartbeat(&self, id: &str, address: &str) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| classify(e, "starting a heartbeat"))?;
        sqlx::query(
            "INSERT INTO replicas (id, address, last_heartbeat) VALUES ($1, $2, clock_timestamp()) \
             ON CONFLICT (id) DO UPDATE SET \
                 address = excluded.address, last_heartbeat = excluded.last_heartbeat",
        )
        .bind(id)
        .bind(address)
        .execute(&mut *tx)
        .await
        .map_err(|e| classify(e, format_args!("writing the heartbeat of replica {id}")))?;
        sqlx::query(&format!(
            "DELETE FROM replicas \
             WHERE last_heartbeat < clock_timestamp() - interval '{REPLICA_RETENTION}'"
        ))
        .execute(&mut *tx)
        .await
        .map_err(|e| classify(e, "forgetting replicas"))?;
        tx.commit()
            .await
            .map_err(|e| classify(e, format_args!("committing the heartbeat of replica {id}")))
    }

    async fn replicas(&self) -> Result<Vec<ReplicaRecord>, StoreError> {
        let rows: Vec<(String, String, PgTime)> = sqlx::query_as(&format!(
            "SELECT id, address, last_heartbeat FROM replicas \
             WHERE last_heartbeat >= clock_timestamp() - interval '{REPLICA_RETENTION}' \
             ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(PgStore::reading("replicas"))?;
        rows.into_iter()
            .map(|(id, address, at)| {
                let last_heartbeat =
                    at.timestamp()
                        .map_err(corrupt("replicas", &id, "last_heartbeat"))?;
                Ok(ReplicaRecord {
                    id,
                    address,
                    last_heartbeat,
                })
            })
            .collect()
    }
}

// ---- the dialect: how a commit starts, the writes over arrays ----

sql::store!(PgStore);

#[async_trait::async_trait]
impl Dialect for PgStore {
    type Db = Postgres;
    type Time = PgTime;

    /// One snapshot for every table.
    const BEGIN_LOAD: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    const MIGRATIONS_TABLE: &'static str = "SELECT COUNT(to_regclass('_sqlx_migrations'))";
    const AS_JSON: &'static str = "::json";

    fn readers(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn classify(e: sqlx::Error, doing: impl fmt::Display) -> StoreError {
        classify(e, doing)
    }

    fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(FOREIGN_KEY_VIOLATION))
    }

    fn is_taken_name(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(db) if db.constraint() == Some("rollouts_name_key"))
    }

    /// A fenced handle checks its lease first, even for an empty batch: a
    /// leader that commits nothing still learns that it was fenced.
    async fn begin(
        &self,
        batch: &[Write],
    ) -> Result<Option<Transaction<'static, Postgres>>, StoreError> {
        if batch.is_empty() && self.fence.is_none() {
            return Ok(None);
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| classify(e, "starting a commit"))?;
        if let Some(fence) = &self.fence {
            if let Err(e) = check_lease(&mut tx, fence).await {
                // A failed rollback is not worth reporting over the error
                // that caused it: the connection rolls back before it is
                // next used.
                let _ = tx.rollback().await;
                return Err(e);
            }
        }
        Ok(Some(tx))
    }

    async fn upsert_hosts(conn: &mut PgConnection, rows: &[&HostRecord]) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            sqlx::query(
                "INSERT INTO hosts (id, labels, last_seen) \
                 SELECT id, labels::json, last_seen \
                 FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS t (id, labels, last_seen) \
                 ON CONFLICT (id) DO UPDATE SET \
                     labels = excluded.labels, last_seen = excluded.last_seen",
            )
            .bind(column(chunk, |h| h.id.as_str()))
            .bind(batch::labels(chunk)?)
            .bind(column(chunk, |h| h.last_seen.map(PgTime::from)))
            .execute(&mut *conn)
            .await
            .map_err(|e| writing(e, || describe("host", chunk, |h| h.id.clone())))?;
        }
        Ok(())
    }

    async fn upsert_host_components(
        conn: &mut PgConnection,
        rows: &[&HostComponentRecord],
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            sqlx::query(
                "INSERT INTO host_components \
                     (host, component, version, state, message, drifted, at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                      $6::boolean[], $7::timestamptz[]) \
                 ON CONFLICT (host, component) DO UPDATE SET \
                     version = excluded.version, state = excluded.state, \
                     message = excluded.message, drifted = excluded.drifted, at = excluded.at",
            )
            .bind(column(chunk, |c| c.host.as_str()))
            .bind(column(chunk, |c| c.component.as_str()))
            .bind(column(chunk, |c| c.version.as_str()))
            .bind(column(chunk, |c| c.state.map(ReportedState::as_str)))
            .bind(column(chunk, |c| c.message.as_deref()))
            .bind(column(chunk, |c| c.drifted))
            .bind(column(chunk, |c| PgTime::from(c.at)))
            .execute(&mut *conn)
            .await
            .map_err(|e| writing(e, || describe("host component", chunk, host_component_key)))?;
        }
        Ok(())
    }

    async fn upsert_components(
        conn: &mut PgConnection,
        rows: &[&ComponentRecord],
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            sqlx::query(
                "INSERT INTO components (name, stable_version) \
                 SELECT * FROM UNNEST($1::text[], $2::text[]) \
                 ON CONFLICT (name) DO UPDATE SET stable_version = excluded.stable_version",
            )
            .bind(column(chunk, |c| c.name.as_str()))
            .bind(column(chunk, |c| c.stable_version.as_deref()))
            .execute(&mut *conn)
            .await
            .map_err(|e| writing(e, || describe("component", chunk, |c| c.name.clone())))?;
        }
        Ok(())
    }

    async fn upsert_rollout_hosts(
        conn: &mut PgConnection,
        rows: &[&RolloutHostRecord],
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            sqlx::query(
                "INSERT INTO rollout_hosts (rollout, host, record) \
                 SELECT rollout, host, record::json \
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t (rollout, host, record) \
                 ON CONFLICT (rollout, host) DO UPDATE SET record = excluded.record",
            )
            .bind(column(chunk, |rh| rh.rollout.as_str()))
            .bind(column(chunk, |rh| rh.host.as_str()))
            .bind(column(chunk, |rh| rh.record.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(|e| writing(e, || describe("rollout host", chunk, rollout_host_key)))?;
        }
        Ok(())
    }

    async fn upsert_tokens(
        conn: &mut PgConnection,
        rows: &[&TokenRecord],
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            // The uses left and the last use are the store's to count.
            sqlx::query(
                "INSERT INTO tokens (hash, role, host, name, created_at, selector, expires_at, \
                                     uses_left, last_used_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                                      $5::timestamptz[], $6::text[], $7::timestamptz[], \
                                      $8::bigint[], $9::timestamptz[]) \
                 ON CONFLICT (hash) DO UPDATE SET role = excluded.role, host = excluded.host, \
                     name = excluded.name, created_at = excluded.created_at, \
                     selector = excluded.selector, expires_at = excluded.expires_at",
            )
            .bind(column(chunk, |t| t.hash.as_str()))
            .bind(column(chunk, |t| t.role.as_str()))
            .bind(column(chunk, |t| t.host.as_deref()))
            .bind(column(chunk, |t| t.name.as_deref()))
            .bind(column(chunk, |t| PgTime::from(t.created_at)))
            .bind(column(chunk, |t| t.selector.as_deref()))
            .bind(column(chunk, |t| t.expires_at.map(PgTime::from)))
            .bind(column(chunk, |t| t.uses_left))
            .bind(column(chunk, |t| t.last_used_at.map(PgTime::from)))
            .execute(&mut *conn)
            .await
            .map_err(|e| writing(e, || describe("token", chunk, |t| token_key(&t.hash))))?;
        }
        Ok(())
    }

    /// A transaction-scoped advisory lock on the host's name: released at
    /// commit or rollback, so it is safe behind transaction pooling.
    async fn lock_enrollment(conn: &mut PgConnection, host: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("sluice enroll {host}"))
            .execute(&mut *conn)
            .await
            .map_err(|e| classify(e, format_args!("locking the enrollment of host {host}")))?;
        Ok(())
    }

    /// Takes the next `rows.len()` sequence numbers from `event_seq`
    /// (locking it until the commit: see `migrations/postgres/0001`) and
    /// numbers the events in the order of `rows`.
    async fn insert_events(conn: &mut PgConnection, rows: &[&NewEvent]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let count = i64::try_from(rows.len())
            .map_err(|_| StoreError::Refused(format!("{} events in one batch", rows.len())))?;
        let first: i64 = sqlx::query_scalar(
            "UPDATE event_seq SET next = next + $1 WHERE id = 1 RETURNING next - $1",
        )
        .bind(count)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| writing(e, || "the event sequence".to_owned()))?;
        for (offset, chunk) in (0..)
            .step_by(ROWS_PER_STATEMENT)
            .zip(rows.chunks(ROWS_PER_STATEMENT))
        {
            sqlx::query(
                "INSERT INTO events (seq, rollout, at, actor, kind, data) \
                 SELECT $1 + n - 1, rollout, at, actor, kind, data::json \
                 FROM UNNEST($2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[]) \
                      WITH ORDINALITY AS t (rollout, at, actor, kind, data, n)",
            )
            .bind(first + offset)
            .bind(column(chunk, |e| e.rollout.as_deref()))
            .bind(column(chunk, |e| PgTime::from(e.at)))
            .bind(column(chunk, |e| e.actor.as_deref()))
            .bind(column(chunk, |e| e.kind.as_str()))
            .bind(column(chunk, |e| e.data.to_string()))
            .execute(&mut *conn)
            .await
            .map_err(|e| writing(e, || describe("event", chunk, event_key)))?;
        }
        Ok(())
    }

    /// A fenced handle checks its lease first, in the same transaction.
    async fn write_samples(&self, rows: &[(&str, PgTime, String)]) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| classify(e, "starting to write samples"))?;
        if let Some(fence) = &self.fence {
            check_lease(&mut tx, fence).await?;
        }
        insert_samples(&mut tx, rows).await?;
        tx.commit()
            .await
            .map_err(|e| classify(e, "committing samples"))
    }
}

/// Writes samples (rollout, time, versions as JSON text), each key once;
/// one with a stored sample's key replaces it.
pub(crate) async fn insert_samples(
    conn: &mut PgConnection,
    rows: &[(&str, PgTime, String)],
) -> Result<(), StoreError> {
    let rows: Vec<&(&str, PgTime, String)> = rows.iter().collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        sqlx::query(
            "INSERT INTO rollout_samples (rollout, at, versions) \
             SELECT rollout, at, versions::json \
             FROM UNNEST($1::text[], $2::timestamptz[], $3::text[]) AS t (rollout, at, versions) \
             ON CONFLICT (rollout, at) DO UPDATE SET versions = excluded.versions",
        )
        .bind(column(chunk, |s| s.0))
        .bind(column(chunk, |s| s.1))
        .bind(column(chunk, |s| s.2.as_str()))
        .execute(&mut *conn)
        .await
        .map_err(|e| writing(e, || describe("sample", chunk, |s| s.0.to_owned())))?;
    }
    Ok(())
}

/// Writes events with the sequence numbers they already have (a copy's),
/// leaving `event_seq` as it is: see [`continue_events_after`].
pub(crate) async fn insert_numbered_events(
    conn: &mut PgConnection,
    rows: &[&StoredEvent],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        sqlx::query(
            "INSERT INTO events (seq, rollout, at, actor, kind, data) \
             SELECT seq, rollout, at, actor, kind, data::json \
             FROM UNNEST($1::bigint[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], \
                         $6::text[]) AS t (seq, rollout, at, actor, kind, data)",
        )
        .bind(column(chunk, |e| e.seq))
        .bind(column(chunk, |e| e.event.rollout.as_deref()))
        .bind(column(chunk, |e| PgTime::from(e.event.at)))
        .bind(column(chunk, |e| e.event.actor.as_deref()))
        .bind(column(chunk, |e| e.event.kind.as_str()))
        .bind(column(chunk, |e| e.event.data.to_string()))
        .execute(&mut *conn)
        .await
        .map_err(|e| writing(e, || describe("event", chunk, |e| e.seq.to_string())))?;
    }
    Ok(())
}

/// Makes the next event's sequence number greater than `last` (and than
/// every number handed out before), so that events appended later follow
/// events written by [`insert_numbered_events`].
pub(crate) async fn continue_events_after(
    conn: &mut PgConnection,
    last: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE event_seq SET next = GREATEST(next, $1 + 1) WHERE id = 1")
        .bind(last)
        .execute(conn)
        .await
        .map(drop)
        .map_err(|e| writing(e, || "the event sequence".to_owned()))
}

/// One column of `rows`, as an array parameter.
fn column<'a, T, V>(rows: &[&'a T], value: impl Fn(&'a T) -> V) -> Vec<V> {
    rows.iter().map(|row| value(row)).collect()
}

// ---- times ----

/// `timestamptz` on the wire: microseconds since 2000-01-01 UTC. Read raw,
/// so that a value sluice cannot represent is reported with its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PgTime(i64);

/// 2000-01-01T00:00:00Z in Unix microseconds.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl From<Timestamp> for PgTime {
    /// Truncates to the microsecond, down (also before 1970), as the
    /// SQLite backend's text does.
    fn from(at: Timestamp) -> PgTime {
        // jiff's range (years -9999 to 9999) fits in i64 microseconds.
        let micros = at.as_nanosecond().div_euclid(1_000) as i64;
        PgTime(micros - PG_EPOCH_MICROS)
    }
}

impl StoredTime for PgTime {
    fn store(at: Timestamp) -> Result<PgTime, String> {
        Ok(PgTime::from(at))
    }

    fn timestamp(self) -> Result<Timestamp, String> {
        self.0
            .checked_add(PG_EPOCH_MICROS)
            .and_then(|micros| Timestamp::from_microsecond(micros).ok())
            .ok_or_else(|| format!("{self} is not a time sluice can represent"))
    }
}

impl fmt::Display for PgTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            i64::MAX => f.write_str("infinity"),
            i64::MIN => f.write_str("-infinity"),
            micros => match micros
                .checked_add(PG_EPOCH_MICROS)
                .and_then(|m| Timestamp::from_microsecond(m).ok())
            {
                Some(at) => write!(f, "{at}"),
                None => write!(f, "{micros} µs after 2000-01-01"),
            },
        }
    }
}

/// `timestamptz` and `timestamptz[]`: built-in types with fixed OIDs.
const TIMESTAMPTZ: Oid = Oid(1184);
const TIMESTAMPTZ_ARRAY: Oid = Oid(1185);

impl Type<Postgres> for PgTime {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(TIMESTAMPTZ)
    }
}

impl PgHasArrayType for PgTime {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(TIMESTAMPTZ_ARRAY)
    }
}

impl Encode<'_, Postgres> for PgTime {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for PgTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => Ok(PgTime(<i64 as Decode<Postgres>>::decode(value)?)),
            PgValueFormat::Text => {
                Err("timestamptz in text format: sluice reads it in binary".into())
            }
        }
    }
}

// ---- error translation ----

/// The one translation of sqlx's errors for PostgreSQL into [`StoreError`],
/// by SQLSTATE; `doing` says what failed.
pub(crate) fn classify(e: sqlx::Error, doing: impl fmt::Display) -> StoreError {
    sql::classify(e, doing, |db| {
        let detail = db
            .try_downcast_ref::<PgDatabaseError>()
            .and_then(PgDatabaseError::detail)
            .map(|detail| format!(" ({detail})"))
            .unwrap_or_default();
        (code_kind(db.code().as_deref().unwrap_or("")), detail)
    })
}

/// [`classify`] for a failed write, naming the rows (`what`).
fn writing(e: sqlx::Error, what: impl Fn() -> String) -> StoreError {
    classify(e, format_args!("writing {}", what()))
}

/// By SQLSTATE (PostgreSQL's appendix A).
fn code_kind(code: &str) -> Kind {
    match code {
        // Connection exceptions, insufficient resources (disk full, out of
        // memory, too many connections), system and I/O errors.
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("58") => Kind::Transient,
        // Serialization failure, deadlock, lock not available, object in
        // use, a canceled statement, shutdowns, "cannot connect now",
        // a read-only transaction (a standby after a failover), a
        // transaction or session ended for idling (a stalled commit, see
        // `FENCED_IDLE_TIMEOUT`).
        "40001" | "40P01" | "55P03" | "55006" | "57014" | "57P01" | "57P02" | "57P03" | "25006"
        | "25P03" | "57P05" => Kind::Transient,
        // Credentials or a database that an operator may fix while sluice
        // keeps trying.
        c if c.starts_with("28") || c == "3D000" => Kind::Transient,
        "XX001" | "XX002" => Kind::Corrupt,
        // Constraints, data exceptions, SQL errors.
        _ => Kind::Refused,
    }
}

const FOREIGN_KEY_VIOLATION: &str = "23503";
const LOCK_NOT_AVAILABLE: &str = "55P03";

fn is_lock_not_available(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(LOCK_NOT_AVAILABLE))
}

/// `url` with its password replaced by `***`, for messages and logs; a
/// URL that does not parse is shown as `postgres://…` (it may hold a
/// password anywhere).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
                return "postgres://…".to_owned();
            }
            // Query parameters may carry a password too (`?password=`).
            if parsed.query_pairs().any(|(key, _)| key == "password") {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(key, value)| {
                        let value = if key == "password" {
                            "***".into()
                        } else {
                            value
                        };
                        (key.into_owned(), value.into_owned())
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "postgres://…".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_transient_refused_or_corrupt() {
        for transient in [
            "08006", "08001", "40001", "40P01", "53100", "53200", "53300", "57P01", "57014",
            "25006", "25P03", "57P05", "58030", "28P01", "3D000",
        ] {
            assert_eq!(code_kind(transient), Kind::Transient, "{transient}");
        }
        for refused in ["23505", "23503", "22P02", "22021", "42601", "42P01"] {
            assert_eq!(code_kind(refused), Kind::Refused, "{refused}");
        }
        assert_eq!(code_kind("XX001"), Kind::Corrupt);
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://sluice:s3cret@db.example.net:5432/sluice"),
            "postgres://sluice:***@db.example.net:5432/sluice"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/sluice"),
            "postgres://postgres@127.0.0.1/sluice"
        );
        let query = redact("postgres://db/sluice?user=a&password=s3cret&sslmode=require");
        assert!(!query.contains("s3cret"), "{query}");
        assert!(query.contains("sslmode=require"), "{query}");
        assert_eq!(redact("not a url s3cret"), "postgres://…");
    }

    #[test]
    fn times_go_to_microseconds_since_2000_and_back() {
        let at: Timestamp = "2000-01-01T00:00:01.000002Z".parse().expect("time");
        assert_eq!(PgTime::from(at), PgTime(1_000_002));
        assert_eq!(PgTime(1_000_002).timestamp(), Ok(at));
        let precise: Timestamp = "1969-12-31T23:59:59.9999999Z".parse().expect("time");
        let truncated: Timestamp = "1969-12-31T23:59:59.999999Z".parse().expect("time");
        assert_eq!(PgTime::from(precise).timestamp(), Ok(truncated));
        assert!(PgTime(i64::MAX).timestamp().is_err());
        assert_eq!(PgTime(i64::MAX).to_string(), "infinity");
    }
}
