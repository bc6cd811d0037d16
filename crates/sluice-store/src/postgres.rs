//! The shared backend: one PostgreSQL database behind any number of
//! replicas, `sluice server --database-url postgres://…`.
//!
//! Durability: every connection runs with `synchronous_commit=on`, so a
//! commit returns only once PostgreSQL flushed it to its write-ahead log
//! (and to synchronous standbys, where configured) — whatever the server's
//! default says.
//!
//! Writes: a batch is one transaction; each kind of write is one statement
//! over arrays (`INSERT … SELECT … FROM UNNEST($1, $2, …)`), so a batch costs
//! a handful of round trips whatever its size. A multi-row upsert may not
//! touch a row twice, so each kind keeps only the last write of a key (the
//! one that would win anyway). Events take their sequence numbers from the
//! one-row `event_seq` in commit order (see `migrations/postgres/0001`).
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

use std::collections::{BTreeMap, BTreeSet};
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
use sqlx::{Decode, Encode, PgPool, Postgres, Type};

use crate::batch::{self, describe, event_key, host_component_key, latest, rollout_host_key};
use crate::sqlite::{duplicate_name, token_key};
use crate::{
    Cluster, ComponentRecord, FreezeRecord, HostComponentRecord, HostRecord, Lease, LeaseState,
    Loaded, NewEvent, ReplicaRecord, ReportedState, RolloutHostRecord, RolloutRecord, SampleRecord,
    Store, StoreError, StoredEvent, Timestamp, TokenRecord, TokenRole, Write,
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

/// Rows per page when `load` reads a large table.
const LOAD_PAGE: i64 = 10_000;

/// Rollouts that are over: their host records are not loaded.
const TERMINAL_STATES: &str = "'completed', 'aborted', 'rolled_back'";

/// A replica not heard from for this long is forgotten.
const REPLICA_RETENTION: &str = "1 day";

/// A [`Store`] in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The database URL with its password replaced, for messages.
    url: String,
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

        let known = known_schema_version();
        let found = applied_schema_version(&pool)
            .await
            .map_err(|e| classify(e, format_args!("reading the schema version of {redacted}")))?;
        if found > known {
            pool.close().await;
            return Err(StoreError::SchemaTooNew { found, known });
        }
        // sqlx takes an advisory lock around the migrations, so replicas
        // starting together migrate once.
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => {
                classify(e, format_args!("migrating {redacted}"))
            }
            sqlx::migrate::MigrateError::ExecuteMigration(e, version) => classify(
                e,
                format_args!("migrating {redacted} to schema version {version}"),
            ),
            other => StoreError::Corrupt(format!("migrating {redacted}: {other}")),
        })?;
        Ok(PgStore {
            pool,
            url: redacted,
        })
    }

    /// `synchronous_commit` as the store's connections run with it (`on`),
    /// for a start-up log line and for tests that hold us to the
    /// durability promise.
    pub async fn synchronous_commit(&self) -> Result<String, StoreError> {
        sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&self.pool)
            .await
            .map_err(reading("synchronous_commit"))
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

    /// Commits `batch`, first checking the lease when `fence` names a
    /// holder and epoch.
    async fn commit_fenced(
        &self,
        batch: &[Write],
        fence: Option<(&str, i64)>,
    ) -> Result<(), StoreError> {
        if batch.is_empty() && fence.is_none() {
            return Ok(());
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| classify(e, "starting a commit"))?;
        let applied = match fence {
            Some((holder, epoch)) => match check_lease(&mut tx, holder, epoch).await {
                Ok(()) => apply(&mut tx, batch).await,
                Err(e) => Err(Failure::Store(e)),
            },
            None => apply(&mut tx, batch).await,
        };
        if let Err(failure) = applied {
            // A failed rollback is not worth reporting over the error that
            // caused it: the connection rolls back before it is next used.
            let _ = tx.rollback().await;
            return Err(self.explain(batch, failure).await);
        }
        match tx.commit().await {
            Ok(()) => Ok(()),
            Err(e) if sqlstate(&e).as_deref() == Some(FOREIGN_KEY_VIOLATION) => {
                Err(self.explain(batch, Failure::Dangling).await)
            }
            Err(e) => Err(classify(e, "committing")),
        }
    }

    /// The error of a failed batch, once its transaction is rolled back:
    /// for a taken rollout name, the rollout holding it; for a foreign key,
    /// the writes naming a host or rollout that does not exist.
    async fn explain(&self, batch: &[Write], failure: Failure<'_>) -> StoreError {
        match failure {
            Failure::Store(e) => e,
            Failure::DuplicateName(rollout) => {
                match sqlx::query_scalar::<_, String>("SELECT id FROM rollouts WHERE name = $1")
                    .bind(&rollout.name)
                    .fetch_optional(&self.pool)
                    .await
                {
                    Ok(holder) => StoreError::Refused(duplicate_name(rollout, holder.as_deref())),
                    Err(e) => classify(e, "reading rollouts"),
                }
            }
            Failure::Dangling => {
                let g = batch::group(batch);
                let (hosts, rollouts) = g.references();
                let missing_hosts = match self.missing("hosts", &hosts).await {
                    Ok(missing) => missing,
                    Err(e) => return e,
                };
                let missing_rollouts = match self.missing("rollouts", &rollouts).await {
                    Ok(missing) => missing,
                    Err(e) => return e,
                };
                StoreError::Refused(
                    g.dangling(&missing_hosts, &missing_rollouts)
                        .unwrap_or_else(|| {
                            "the batch refers to a host or rollout that does not exist \
                         (foreign key constraint failed)"
                                .to_owned()
                        }),
                )
            }
        }
    }

    /// Which of `ids` have no row in `table`.
    async fn missing<'a>(
        &self,
        table: &'static str,
        ids: &BTreeSet<&'a str>,
    ) -> Result<BTreeSet<&'a str>, StoreError> {
        let wanted: Vec<&str> = ids.iter().copied().collect();
        let found: Vec<String> =
            sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE id = ANY($1)"))
                .bind(&wanted)
                .fetch_all(&self.pool)
                .await
                .map_err(reading(table))?;
        let found: BTreeSet<&str> = found.iter().map(String::as_str).collect();
        Ok(ids
            .iter()
            .filter(|id| !found.contains(*id))
            .copied()
            .collect())
    }

    async fn add_samples_fenced(
        &self,
        samples: &[SampleRecord],
        fence: Option<(&str, i64)>,
    ) -> Result<(), StoreError> {
        if samples.is_empty() {
            return Ok(());
        }
        let samples: Vec<&SampleRecord> = samples.iter().collect();
        let samples = latest(&samples, |s| (s.rollout.clone(), PgTime::from(s.at)));
        let mut versions = Vec::with_capacity(samples.len());
        for sample in &samples {
            versions.push(serde_json::to_string(&sample.versions).map_err(|e| {
                StoreError::Refused(format!(
                    "encoding the sample of rollout {} at {}: {e}",
                    sample.rollout, sample.at
                ))
            })?);
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| classify(e, "starting to write samples"))?;
        if let Some((holder, epoch)) = fence {
            check_lease(&mut tx, holder, epoch).await?;
        }
        sqlx::query(
            "INSERT INTO rollout_samples (rollout, at, versions) \
             SELECT rollout, at, versions::json \
             FROM UNNEST($1::text[], $2::timestamptz[], $3::text[]) AS t (rollout, at, versions) \
             ON CONFLICT (rollout, at) DO UPDATE SET versions = excluded.versions",
        )
        .bind(
            samples
                .iter()
                .map(|s| s.rollout.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            samples
                .iter()
                .map(|s| PgTime::from(s.at))
                .collect::<Vec<_>>(),
        )
        .bind(versions)
        .execute(&mut *tx)
        .await
        .map_err(|e| classify(e, describe("sample", &samples, |s| s.rollout.clone())))?;
        tx.commit()
            .await
            .map_err(|e| classify(e, "committing samples"))
    }
}

/// Why applying a batch failed, before it is put in words.
enum Failure<'a> {
    Store(StoreError),
    /// The rollout's name is another rollout's.
    DuplicateName(&'a RolloutRecord),
    /// A foreign key failed: the batch names a host or rollout that does
    /// not exist.
    Dangling,
}

impl From<StoreError> for Failure<'_> {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// The newest schema version this binary knows.
pub fn known_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The newest migration recorded in the database; 0 for a new database.
async fn applied_schema_version(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !has_table {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
}

// ---- the lease ----

/// Fails with [`StoreError::Fenced`] unless `holder` holds the lease of
/// `epoch` and it has not expired. Locks the lease row `FOR SHARE` until
/// the transaction ends, so that a takeover waits for this commit.
async fn check_lease(conn: &mut PgConnection, holder: &str, epoch: i64) -> Result<(), StoreError> {
    let row: Option<(String, i64, bool)> = sqlx::query_as(
        "SELECT holder, epoch, expires_at > clock_timestamp() FROM leader_lease \
         WHERE id = 1 FOR SHARE",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(reading("leader_lease"))?;
    let mine = format!("{holder} (epoch {epoch})");
    match row {
        Some((h, e, true)) if h == holder && e == epoch => Ok(()),
        Some((h, e, false)) if h == holder && e == epoch => Err(StoreError::Fenced(format!(
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
    let time = |t: PgTime, column: &str| {
        t.timestamp()
            .map_err(|e| corrupt("leader_lease", "1", column, e))
    };
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
        // wait.
        let row: Option<LeaseRow> = sqlx::query_as(&format!(
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
        .fetch_optional(&self.pool)
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
            .map_err(reading("the database's clock"))?;
        let row: Option<LeaseRow> = sqlx::query_as(&format!(
            "SELECT {LEASE_COLUMNS} FROM leader_lease WHERE id = 1"
        ))
        .fetch_optional(&mut *tx)
        .await
        .map_err(reading("leader_lease"))?;
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
        Arc::new(FencedPgStore {
            store: self.clone(),
            holder: holder.to_owned(),
            epoch,
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
        .map_err(reading("replicas"))?;
        rows.into_iter()
            .map(|(id, address, at)| {
                let last_heartbeat = at
                    .timestamp()
                    .map_err(|e| corrupt("replicas", &id, "last_heartbeat", e))?;
                Ok(ReplicaRecord {
                    id,
                    address,
                    last_heartbeat,
                })
            })
            .collect()
    }
}

/// A [`PgStore`] whose commits and samples are fenced by a lease (see
/// [`Cluster::fenced`]); reads are the store's.
#[derive(Debug, Clone)]
struct FencedPgStore {
    store: PgStore,
    holder: String,
    epoch: i64,
}

#[async_trait::async_trait]
impl Store for FencedPgStore {
    async fn load(&self) -> Result<Loaded, StoreError> {
        self.store.load().await
    }

    /// Checks the lease even for an empty batch: a leader that commits
    /// nothing still learns that it was fenced.
    async fn commit(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.store
            .commit_fenced(batch, Some((&self.holder, self.epoch)))
            .await
    }

    async fn events(
        &self,
        rollout: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.events(rollout, after, limit).await
    }

    async fn add_samples(&self, samples: &[SampleRecord]) -> Result<(), StoreError> {
        self.store
            .add_samples_fenced(samples, Some((&self.holder, self.epoch)))
            .await
    }

    async fn samples(&self, rollout: &str) -> Result<Vec<SampleRecord>, StoreError> {
        self.store.samples(rollout).await
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        self.store.schema_version().await
    }
}

// ---- reads ----

#[async_trait::async_trait]
impl Store for PgStore {
    async fn load(&self) -> Result<Loaded, StoreError> {
        // One snapshot for every table.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(|e| classify(e, "starting to load"))?;
        let conn = &mut *tx;

        let hosts = load_hosts(conn).await?;
        let host_components = load_host_components(conn).await?;
        let components = sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT name, stable_version FROM components ORDER BY name",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(reading("components"))?
        .into_iter()
        .map(|(name, stable_version)| ComponentRecord {
            name,
            stable_version,
        })
        .collect();

        type RolloutRow = (
            String,
            String,
            String,
            String,
            String,
            String,
            PgTime,
            PgTime,
        );
        let rollouts = sqlx::query_as::<_, RolloutRow>(
            "SELECT id, name, component, state, plan, header::text, created_at, updated_at \
             FROM rollouts ORDER BY created_at, id",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(reading("rollouts"))?
        .into_iter()
        .map(
            |(id, name, component, state, plan, header, created_at, updated_at)| {
                let header = serde_json::from_str(&header)
                    .map_err(|e| corrupt("rollouts", &id, "header", e))?;
                let created_at = created_at
                    .timestamp()
                    .map_err(|e| corrupt("rollouts", &id, "created_at", e))?;
                let updated_at = updated_at
                    .timestamp()
                    .map_err(|e| corrupt("rollouts", &id, "updated_at", e))?;
                Ok(RolloutRecord {
                    id,
                    name,
                    component,
                    state,
                    plan,
                    header,
                    created_at,
                    updated_at,
                })
            },
        )
        .collect::<Result<_, StoreError>>()?;

        let rollout_hosts = load_rollout_hosts(conn).await?;
        let freeze = sqlx::query_as::<_, (String, String, PgTime)>(
            "SELECT actor, reason, since FROM \"freeze\" WHERE id = 1",
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(reading("freeze"))?
        .map(|(actor, reason, since)| {
            let since = since
                .timestamp()
                .map_err(|e| corrupt("freeze", "1", "since", e))?;
            Ok::<_, StoreError>(FreezeRecord {
                actor,
                reason,
                since,
            })
        })
        .transpose()?;

        let tokens = sqlx::query_as::<_, (String, String, Option<String>, Option<String>, PgTime)>(
            "SELECT hash, role, host, name, created_at FROM tokens ORDER BY created_at, hash",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(reading("tokens"))?
        .into_iter()
        .map(|(hash, role, host, name, created_at)| {
            let key = &hash[..hash.len().min(12)];
            let role = role
                .parse::<TokenRole>()
                .map_err(|e| corrupt("tokens", key, "role", e))?;
            let created_at = created_at
                .timestamp()
                .map_err(|e| corrupt("tokens", key, "created_at", e))?;
            Ok(TokenRecord {
                hash,
                role,
                host,
                name,
                created_at,
            })
        })
        .collect::<Result<_, StoreError>>()?;

        tx.rollback()
            .await
            .map_err(|e| classify(e, "ending the load"))?;
        Ok(Loaded {
            hosts,
            host_components,
            components,
            rollouts,
            rollout_hosts,
            freeze,
            tokens,
        })
    }

    async fn commit(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.commit_fenced(batch, None).await
    }

    async fn events(
        &self,
        rollout: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        type Row = (i64, Option<String>, PgTime, Option<String>, String, String);
        let rows = sqlx::query_as::<_, Row>(
            "SELECT seq, rollout, at, actor, kind, data::text FROM events \
             WHERE rollout = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(rollout)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(reading("events"))?;
        rows.into_iter()
            .map(|(seq, rollout, at, actor, kind, data)| {
                let key = seq.to_string();
                let data =
                    serde_json::from_str(&data).map_err(|e| corrupt("events", &key, "data", e))?;
                let at = at
                    .timestamp()
                    .map_err(|e| corrupt("events", &key, "at", e))?;
                Ok(StoredEvent {
                    seq,
                    event: NewEvent {
                        rollout,
                        at,
                        actor,
                        kind,
                        data,
                    },
                })
            })
            .collect()
    }

    async fn add_samples(&self, samples: &[SampleRecord]) -> Result<(), StoreError> {
        self.add_samples_fenced(samples, None).await
    }

    async fn samples(&self, rollout: &str) -> Result<Vec<SampleRecord>, StoreError> {
        let rows = sqlx::query_as::<_, (PgTime, String)>(
            "SELECT at, versions::text FROM rollout_samples WHERE rollout = $1 ORDER BY at",
        )
        .bind(rollout)
        .fetch_all(&self.pool)
        .await
        .map_err(reading("rollout_samples"))?;
        rows.into_iter()
            .map(|(at, versions)| {
                let key = format!("{rollout}/{at}");
                let versions = serde_json::from_str(&versions)
                    .map_err(|e| corrupt("rollout_samples", &key, "versions", e))?;
                let at = at
                    .timestamp()
                    .map_err(|e| corrupt("rollout_samples", &key, "at", e))?;
                Ok(SampleRecord {
                    rollout: rollout.to_owned(),
                    at,
                    versions,
                })
            })
            .collect()
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        applied_schema_version(&self.pool)
            .await
            .map_err(reading("_sqlx_migrations"))
    }
}

/// The comparison that starts a page after a key: `>=` from the empty
/// text (which sorts first in every collation) on the first page, so that
/// every page is one index range scan, `>` after that.
fn after(first: bool) -> &'static str {
    if first {
        ">="
    } else {
        ">"
    }
}

async fn load_hosts(conn: &mut PgConnection) -> Result<Vec<HostRecord>, StoreError> {
    let mut hosts: Vec<HostRecord> = Vec::new();
    loop {
        let last = hosts.last().map(|h| h.id.clone()).unwrap_or_default();
        let page: Vec<(String, String, Option<PgTime>)> = sqlx::query_as(&format!(
            "SELECT id, labels::text, last_seen FROM hosts \
             WHERE id {} $1 ORDER BY id LIMIT $2",
            after(hosts.is_empty())
        ))
        .bind(last)
        .bind(LOAD_PAGE)
        .fetch_all(&mut *conn)
        .await
        .map_err(reading("hosts"))?;
        if page.is_empty() {
            return Ok(hosts);
        }
        for (id, labels, last_seen) in page {
            let labels: BTreeMap<String, String> =
                serde_json::from_str(&labels).map_err(|e| corrupt("hosts", &id, "labels", e))?;
            let last_seen = last_seen
                .map(|t| {
                    t.timestamp()
                        .map_err(|e| corrupt("hosts", &id, "last_seen", e))
                })
                .transpose()?;
            hosts.push(HostRecord {
                id,
                labels,
                last_seen,
            });
        }
    }
}

async fn load_host_components(
    conn: &mut PgConnection,
) -> Result<Vec<HostComponentRecord>, StoreError> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        PgTime,
    );
    let mut rows: Vec<HostComponentRecord> = Vec::new();
    loop {
        let (host, component) = rows
            .last()
            .map(|c| (c.host.clone(), c.component.clone()))
            .unwrap_or_default();
        let page: Vec<Row> = sqlx::query_as(&format!(
            "SELECT host, component, version, state, message, at FROM host_components \
             WHERE (host, component) {} ($1, $2) \
             ORDER BY host, component LIMIT $3",
            after(rows.is_empty())
        ))
        .bind(host)
        .bind(component)
        .bind(LOAD_PAGE)
        .fetch_all(&mut *conn)
        .await
        .map_err(reading("host_components"))?;
        if page.is_empty() {
            return Ok(rows);
        }
        for (host, component, version, state, message, at) in page {
            let key = || format!("{host}/{component}");
            let state = state
                .map(|text| {
                    text.parse::<ReportedState>()
                        .map_err(|e| corrupt("host_components", &key(), "state", e))
                })
                .transpose()?;
            let at = at
                .timestamp()
                .map_err(|e| corrupt("host_components", &key(), "at", e))?;
            rows.push(HostComponentRecord {
                host,
                component,
                version,
                state,
                message,
                at,
            });
        }
    }
}

/// Host records of the rollouts that are not over.
async fn load_rollout_hosts(conn: &mut PgConnection) -> Result<Vec<RolloutHostRecord>, StoreError> {
    let mut rows: Vec<RolloutHostRecord> = Vec::new();
    loop {
        let (rollout, host) = rows
            .last()
            .map(|rh| (rh.rollout.clone(), rh.host.clone()))
            .unwrap_or_default();
        let page: Vec<(String, String, String)> = sqlx::query_as(&format!(
            "SELECT rh.rollout, rh.host, rh.record::text \
             FROM rollout_hosts rh JOIN rollouts r ON r.id = rh.rollout \
             WHERE r.state NOT IN ({TERMINAL_STATES}) \
               AND (rh.rollout, rh.host) {} ($1, $2) \
             ORDER BY rh.rollout, rh.host LIMIT $3",
            after(rows.is_empty())
        ))
        .bind(rollout)
        .bind(host)
        .bind(LOAD_PAGE)
        .fetch_all(&mut *conn)
        .await
        .map_err(reading("rollout_hosts"))?;
        if page.is_empty() {
            return Ok(rows);
        }
        for (rollout, host, record) in page {
            rows.push(RolloutHostRecord {
                rollout,
                host,
                record,
            });
        }
    }
}

// ---- writes: one statement per kind, over arrays ----

/// Writes a batch, grouped by kind (see [`batch`]), inside the caller's
/// transaction. Events go last: their sequence counter stays locked until
/// the commit, and so is held for as short a time as possible.
async fn apply<'a>(conn: &mut PgConnection, batch: &'a [Write]) -> Result<(), Failure<'a>> {
    let g = batch::group(batch);
    upsert_hosts(conn, &latest(&g.hosts, |h| h.id.as_str())).await?;
    upsert_host_components(
        conn,
        &latest(&g.host_components, |c| {
            (c.host.as_str(), c.component.as_str())
        }),
    )
    .await?;
    upsert_components(conn, &latest(&g.components, |c| c.name.as_str())).await?;
    for rollout in g.rollouts {
        upsert_rollout(conn, rollout).await?;
    }
    upsert_rollout_hosts(
        conn,
        &latest(&g.rollout_hosts, |rh| {
            (rh.rollout.as_str(), rh.host.as_str())
        }),
    )
    .await?;
    if let Some(freeze) = g.freeze {
        set_freeze(conn, freeze).await?;
    }
    upsert_tokens(conn, &latest(&g.tokens, |t| t.hash.as_str())).await?;
    insert_events(conn, &g.events).await?;
    Ok(())
}

async fn upsert_hosts(conn: &mut PgConnection, rows: &[&HostRecord]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let labels = chunk
            .iter()
            .map(|h| {
                serde_json::to_string(&h.labels).map_err(|e| {
                    StoreError::Refused(format!("encoding labels of host {}: {e}", h.id))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        sqlx::query(
            "INSERT INTO hosts (id, labels, last_seen) \
             SELECT id, labels::json, last_seen \
             FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS t (id, labels, last_seen) \
             ON CONFLICT (id) DO UPDATE SET \
                 labels = excluded.labels, last_seen = excluded.last_seen",
        )
        .bind(chunk.iter().map(|h| h.id.as_str()).collect::<Vec<_>>())
        .bind(labels)
        .bind(
            chunk
                .iter()
                .map(|h| h.last_seen.map(PgTime::from))
                .collect::<Vec<_>>(),
        )
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
            "INSERT INTO host_components (host, component, version, state, message, at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                  $6::timestamptz[]) \
             ON CONFLICT (host, component) DO UPDATE SET \
                 version = excluded.version, state = excluded.state, \
                 message = excluded.message, at = excluded.at",
        )
        .bind(chunk.iter().map(|c| c.host.as_str()).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|c| c.component.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|c| c.version.as_str()).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|c| c.state.map(ReportedState::as_str))
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|c| c.message.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|c| PgTime::from(c.at)).collect::<Vec<_>>())
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
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO components (name, stable_version) \
         SELECT * FROM UNNEST($1::text[], $2::text[]) \
         ON CONFLICT (name) DO UPDATE SET stable_version = excluded.stable_version",
    )
    .bind(rows.iter().map(|c| c.name.as_str()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|c| c.stable_version.as_deref())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await
    .map_err(|e| writing(e, || describe("component", rows, |c| c.name.clone())))?;
    Ok(())
}

/// One rollout per statement (they are few), in batch order, so that the
/// unique-name rule meets them in that order.
async fn upsert_rollout<'a>(
    conn: &mut PgConnection,
    r: &'a RolloutRecord,
) -> Result<(), Failure<'a>> {
    let result = sqlx::query(
        "INSERT INTO rollouts (id, name, component, state, plan, header, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6::json, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET \
         name = excluded.name, component = excluded.component, state = excluded.state, \
         plan = excluded.plan, header = excluded.header, \
         created_at = excluded.created_at, updated_at = excluded.updated_at",
    )
    .bind(r.id.as_str())
    .bind(r.name.as_str())
    .bind(r.component.as_str())
    .bind(r.state.as_str())
    .bind(r.plan.as_str())
    .bind(r.header.to_string())
    .bind(PgTime::from(r.created_at))
    .bind(PgTime::from(r.updated_at))
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        // The transaction is aborted: the caller rolls back, then looks up
        // which rollout holds the name.
        Err(e) if constraint(&e) == Some("rollouts_name_key") => Err(Failure::DuplicateName(r)),
        Err(e) => Err(Failure::Store(writing(e, || format!("rollout {}", r.id)))),
    }
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
        .bind(
            chunk
                .iter()
                .map(|rh| rh.rollout.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|rh| rh.host.as_str()).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|rh| rh.record.as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await
        .map_err(|e| writing(e, || describe("rollout host", chunk, rollout_host_key)))?;
    }
    Ok(())
}

/// Takes the next `rows.len()` sequence numbers from `event_seq` (locking
/// it until the commit: see `migrations/postgres/0001`) and numbers the
/// events in batch order.
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
        .bind(
            chunk
                .iter()
                .map(|e| e.rollout.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|e| PgTime::from(e.at)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.actor.as_deref()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.data.to_string()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map_err(|e| writing(e, || describe("event", chunk, event_key)))?;
    }
    Ok(())
}

async fn set_freeze(
    conn: &mut PgConnection,
    freeze: Option<&FreezeRecord>,
) -> Result<(), StoreError> {
    let query = match freeze {
        None => sqlx::query("DELETE FROM \"freeze\""),
        Some(f) => sqlx::query(
            "INSERT INTO \"freeze\" (id, actor, reason, since) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET \
             actor = excluded.actor, reason = excluded.reason, since = excluded.since",
        )
        .bind(f.actor.as_str())
        .bind(f.reason.as_str())
        .bind(PgTime::from(f.since)),
    };
    query
        .execute(&mut *conn)
        .await
        .map_err(|e| writing(e, || "the freeze".to_owned()))?;
    Ok(())
}

async fn upsert_tokens(conn: &mut PgConnection, rows: &[&TokenRecord]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO tokens (hash, role, host, name, created_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
         ON CONFLICT (hash) DO UPDATE SET role = excluded.role, host = excluded.host, \
             name = excluded.name, created_at = excluded.created_at",
    )
    .bind(rows.iter().map(|t| t.hash.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|t| t.role.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|t| t.host.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|t| t.name.as_deref()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|t| PgTime::from(t.created_at))
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await
    .map_err(|e| writing(e, || describe("token", rows, token_key)))?;
    Ok(())
}

// ---- times ----

/// `timestamptz` on the wire: microseconds since 2000-01-01 UTC. Read raw,
/// so that a value sluice cannot represent is reported with its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PgTime(i64);

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

impl PgTime {
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
    let message = match &e {
        sqlx::Error::Database(db) => {
            let detail = db
                .try_downcast_ref::<PgDatabaseError>()
                .and_then(PgDatabaseError::detail)
                .map(|detail| format!(" ({detail})"))
                .unwrap_or_default();
            format!("{doing}: {}{detail}", db.message())
        }
        other => format!("{doing}: {other}"),
    };
    match e {
        sqlx::Error::Database(db) => match code_kind(db.code().as_deref().unwrap_or("")) {
            Kind::Transient => StoreError::Unavailable(message),
            Kind::Refused => StoreError::Refused(message),
            Kind::Corrupt => StoreError::Corrupt(message),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => StoreError::Unavailable(message),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(message),
        sqlx::Error::Configuration(_) => StoreError::Config(message),
        _ => StoreError::Refused(message),
    }
}

/// [`classify`] for a failed write, naming the rows (`what`).
fn writing(e: sqlx::Error, what: impl Fn() -> String) -> StoreError {
    classify(e, format_args!("writing {}", what()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transient,
    Refused,
    Corrupt,
}

/// By SQLSTATE (PostgreSQL's appendix A).
fn code_kind(code: &str) -> Kind {
    match code {
        // Connection exceptions, insufficient resources (disk full, out of
        // memory, too many connections), system and I/O errors.
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("58") => Kind::Transient,
        // Serialization failure, deadlock, lock not available, object in
        // use, a canceled statement, shutdowns, "cannot connect now",
        // a read-only transaction (a standby after a failover).
        "40001" | "40P01" | "55P03" | "55006" | "57014" | "57P01" | "57P02" | "57P03" | "25006" => {
            Kind::Transient
        }
        // Credentials or a database that an operator may fix while sluice
        // keeps trying.
        c if c.starts_with("28") || c == "3D000" => Kind::Transient,
        "XX001" | "XX002" => Kind::Corrupt,
        // Constraints, data exceptions, SQL errors.
        _ => Kind::Refused,
    }
}

const FOREIGN_KEY_VIOLATION: &str = "23503";

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

fn constraint(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

fn reading(table: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| classify(e, format_args!("reading {table}"))
}

/// A stored value that does not parse: names the table, the row and the column.
fn corrupt(table: &str, key: &str, column: &str, e: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table} row {key}, column {column}: {e}"))
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
            "25006", "58030", "28P01", "3D000",
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
