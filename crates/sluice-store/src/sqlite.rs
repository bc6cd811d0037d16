//! The embedded backend: one SQLite file, `<data-dir>/sluice.db`.
//!
//! Durability: the journal is a write-ahead log and `synchronous=FULL`, so
//! every commit fsyncs the log before [`Store::commit`] returns. WAL with
//! `synchronous=NORMAL` (the usual pairing) survives a crash of the process
//! but not of the machine: the log is only synced at checkpoints, and a power
//! loss can take back transactions already acknowledged — which would break
//! the promise that an acknowledged check-in or operator action is never lost.
//!
//! Connections: SQLite has one writer at a time, so writes go through a
//! single connection (a pool of one, which also queues concurrent commits);
//! reads (`load`, `events`) use a small read-only pool, which WAL lets run
//! beside a write.
//!
//! Schema: the migrations in `migrations/sqlite/` are embedded in the binary
//! and applied at open; sqlx records them in `_sqlx_migrations`. A database
//! migrated by a newer sluice is refused rather than guessed at.
//!
//! Error translation from SQLite to [`StoreError`] lives here and nowhere
//! else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::error::ErrorKind;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use crate::batch;
use crate::{
    ComponentRecord, FreezeRecord, HostComponentRecord, HostRecord, Loaded, NewEvent,
    RolloutHostRecord, RolloutRecord, SampleRecord, Store, StoreError, StoredEvent, TokenRecord,
    Write,
};

/// The migrations of this dialect, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The database's file name inside the data directory.
pub const FILE_NAME: &str = "sluice.db";

/// How long a connection waits for a lock held by another connection (a
/// checkpoint, or another process poking at the file) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The writer's page cache: 64 MiB (negative: KiB). Readers keep SQLite's
/// default (2 MiB); `load` reads each page once.
const WRITER_CACHE: &str = "-65536";

/// Read connections: `load` at start, then event pages for the API.
const READERS: u32 = 4;

/// Rows per multi-row `INSERT`. Large enough that a statement's fixed cost
/// (a round trip to sqlx's connection thread) vanishes behind its rows, small
/// enough to stay far below SQLite's limit of 32,766 bound parameters.
const ROWS_PER_STATEMENT: usize = 256;

/// Rows per page when `load` reads a large table (see [`page`]).
const LOAD_PAGE: i64 = 10_000;

/// Rollouts that are over: their host records are not loaded.
const TERMINAL_STATES: &str = "'completed', 'aborted', 'rolled_back'";

/// A [`Store`] in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    writer: SqlitePool,
    readers: SqlitePool,
}

/// The connection settings in effect, as SQLite reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pragmas {
    /// `wal`.
    pub journal_mode: String,
    /// 2: `FULL`.
    pub synchronous: i64,
    /// 1: foreign keys enforced.
    pub foreign_keys: i64,
    /// Milliseconds.
    pub busy_timeout: i64,
}

impl SqliteStore {
    /// Opens `<data_dir>/sluice.db`, creating the directory and the database
    /// as needed, and brings its schema up to date.
    ///
    /// Fails with [`StoreError::SchemaTooNew`] when a newer sluice has
    /// migrated the database, and [`StoreError::Unavailable`] when the file
    /// cannot be opened or migrated.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "creating data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(FILE_NAME);
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let unavailable = |what: &str, e: sqlx::Error| {
            StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
        };

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // Idle or old, the one writer is kept: reconnecting buys nothing.
            .idle_timeout(None)
            .max_lifetime(None)
            // A big page cache for the writer: imports of many hosts
            // touch many pages.
            .connect_with(options.clone().pragma("cache_size", WRITER_CACHE))
            .await
            .map_err(|e| unavailable("opening", e))?;

        let known = known_schema_version();
        let found = applied_schema_version(&writer)
            .await
            .map_err(|e| unavailable("reading the schema version of", e))?;
        if found > known {
            writer.close().await;
            return Err(StoreError::SchemaTooNew { found, known });
        }
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating {}: {e}", path.display())))?;

        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| unavailable("opening", e))?;

        Ok(SqliteStore {
            path,
            writer,
            readers,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The settings of the writing connection, for a start-up log line and
    /// for tests that hold us to the durability promise.
    pub async fn pragmas(&self) -> Result<Pragmas, StoreError> {
        let mut conn = self.writer.acquire().await.map_err(unavailable)?;
        let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
        Ok(Pragmas {
            journal_mode,
            synchronous: pragma_int(&mut conn, "PRAGMA synchronous").await?,
            foreign_keys: pragma_int(&mut conn, "PRAGMA foreign_keys").await?,
            busy_timeout: pragma_int(&mut conn, "PRAGMA busy_timeout").await?,
        })
    }

    /// Closes every connection; the last one to close checkpoints the log
    /// into the database file. Dropping the store is safe too (every commit
    /// is already durable), this only tidies up.
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    /// Writes a batch, grouped by kind (see [`batch`]), inside the caller's
    /// transaction. Hosts and rollouts go first, as the rows others name.
    async fn apply(conn: &mut SqliteConnection, batch: &[Write]) -> Result<(), StoreError> {
        let g = batch::group(batch);
        upsert_hosts(conn, &g.hosts).await?;
        upsert_host_components(conn, &g.host_components).await?;
        upsert_components(conn, &g.components).await?;
        for rollout in g.rollouts {
            upsert_rollout(conn, rollout).await?;
        }
        upsert_rollout_hosts(conn, &g.rollout_hosts).await?;
        insert_events(conn, &g.events).await?;
        if let Some(freeze) = g.freeze {
            set_freeze(conn, freeze).await?;
        }
        upsert_tokens(conn, &g.tokens).await?;
        Ok(())
    }
}

/// One page of a large table, which SQLite hands over as a single JSON
/// array: a row at a time, sqlx's hop between its connection thread and the
/// caller costs several times what reading the row does, and `load` reads
/// every host at start.
async fn page<'q, T: serde::de::DeserializeOwned>(
    conn: &mut SqliteConnection,
    table: &'static str,
    query: sqlx::query::QueryScalar<'q, Sqlite, String, sqlx::sqlite::SqliteArguments<'q>>,
) -> Result<Vec<T>, StoreError> {
    let json = query.fetch_one(conn).await.map_err(reading(table))?;
    serde_json::from_str(&json)
        .map_err(|e| StoreError::Unavailable(format!("reading {table}: malformed page: {e}")))
}

/// The comparison that starts a page after `key`: `>=` from the empty
/// string (the least text) on the first page, `>` after that.
fn after(first: bool) -> &'static str {
    if first {
        ">="
    } else {
        ">"
    }
}

async fn load_hosts(conn: &mut SqliteConnection) -> Result<Vec<HostRecord>, StoreError> {
    let mut hosts = Vec::new();
    let mut last = String::new();
    loop {
        let page: Vec<(String, BTreeMap<String, String>, Option<String>)> = page(
            conn,
            "hosts",
            sqlx::query_scalar(&format!(
                "SELECT json_group_array(json_array(id, json(labels), last_seen) ORDER BY id) \
                 FROM (SELECT * FROM hosts WHERE id {} $1 ORDER BY id LIMIT $2)",
                after(hosts.is_empty())
            ))
            .bind(&last)
            .bind(LOAD_PAGE),
        )
        .await?;
        let Some((id, ..)) = page.last() else {
            return Ok(hosts);
        };
        last = id.clone();
        hosts.extend(page.into_iter().map(|(id, labels, last_seen)| HostRecord {
            id,
            labels,
            last_seen,
        }));
    }
}

async fn load_host_components(
    conn: &mut SqliteConnection,
) -> Result<Vec<HostComponentRecord>, StoreError> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
    );
    let mut rows = Vec::new();
    let mut last = (String::new(), String::new());
    loop {
        let page: Vec<Row> = page(
            conn,
            "host_components",
            sqlx::query_scalar(&format!(
                "SELECT json_group_array(\
                     json_array(host, component, version, state, message, at) \
                     ORDER BY host, component) \
                 FROM (SELECT * FROM host_components WHERE (host, component) {} ($1, $2) \
                       ORDER BY host, component LIMIT $3)",
                after(rows.is_empty())
            ))
            .bind(&last.0)
            .bind(&last.1)
            .bind(LOAD_PAGE),
        )
        .await?;
        let Some((host, component, ..)) = page.last() else {
            return Ok(rows);
        };
        last = (host.clone(), component.clone());
        rows.extend(
            page.into_iter()
                .map(
                    |(host, component, version, state, message, at)| HostComponentRecord {
                        host,
                        component,
                        version,
                        state,
                        message,
                        at,
                    },
                ),
        );
    }
}

/// Host records of the rollouts that are not over.
async fn load_rollout_hosts(
    conn: &mut SqliteConnection,
) -> Result<Vec<RolloutHostRecord>, StoreError> {
    let mut rows = Vec::new();
    let mut last = (String::new(), String::new());
    loop {
        let page: Vec<(String, String, serde_json::Value)> = page(
            conn,
            "rollout_hosts",
            sqlx::query_scalar(&format!(
                "SELECT json_group_array(json_array(rollout, host, json(record)) \
                     ORDER BY rollout, host) \
                 FROM (SELECT rh.* FROM rollout_hosts rh JOIN rollouts r ON r.id = rh.rollout \
                       WHERE r.state NOT IN ({TERMINAL_STATES}) \
                         AND (rh.rollout, rh.host) {} ($1, $2) \
                       ORDER BY rh.rollout, rh.host LIMIT $3)",
                after(rows.is_empty())
            ))
            .bind(&last.0)
            .bind(&last.1)
            .bind(LOAD_PAGE),
        )
        .await?;
        let Some((rollout, host, _)) = page.last() else {
            return Ok(rows);
        };
        last = (rollout.clone(), host.clone());
        rows.extend(
            page.into_iter()
                .map(|(rollout, host, record)| RolloutHostRecord {
                    rollout,
                    host,
                    record,
                }),
        );
    }
}

async fn pragma_int(conn: &mut SqliteConnection, pragma: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar(pragma)
        .fetch_one(conn)
        .await
        .map_err(unavailable)
}

/// The newest schema version this binary knows.
pub fn known_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The newest migration recorded in the database; 0 for a new database.
async fn applied_schema_version(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    let has_table: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(pool)
    .await?;
    if !has_table {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn load(&self) -> Result<Loaded, StoreError> {
        // One read transaction: every table from the same snapshot.
        let mut tx = self.readers.begin().await.map_err(unavailable)?;
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

        let rollouts = sqlx::query_as::<
            _,
            (
                String,
                String,
                String,
                String,
                String,
                String,
                String,
                String,
            ),
        >(
            "SELECT id, name, component, state, plan, header, created_at, updated_at \
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
        let freeze = sqlx::query_as::<_, (String, String, String)>(
            "SELECT actor, reason, since FROM freeze WHERE id = 1",
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(reading("freeze"))?
        .map(|(actor, reason, since)| FreezeRecord {
            actor,
            reason,
            since,
        });

        let tokens = sqlx::query_as::<_, (String, String, Option<String>, Option<String>, String)>(
            "SELECT hash, role, host, name, created_at FROM tokens ORDER BY created_at, hash",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(reading("tokens"))?
        .into_iter()
        .map(|(hash, role, host, name, created_at)| TokenRecord {
            hash,
            role,
            host,
            name,
            created_at,
        })
        .collect();

        tx.rollback().await.map_err(unavailable)?;
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
        if batch.is_empty() {
            return Ok(());
        }
        // IMMEDIATE takes the write lock at once, so a batch never fails
        // half-way for want of it.
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        if let Err(e) = SqliteStore::apply(&mut tx, batch).await {
            // The batch leaves nothing behind. A failed rollback is not
            // worth reporting over the error that caused it: sqlx rolls
            // back again before the connection is next used.
            let _ = tx.rollback().await;
            return Err(e);
        }
        tx.commit().await.map_err(|e| match classify(&e) {
            Some(ErrorKind::ForeignKeyViolation) => StoreError::Write(
                "the batch refers to a host or rollout that does not exist \
                 (foreign key constraint failed)"
                    .to_owned(),
            ),
            _ => write_failed(e),
        })
    }

    async fn events(
        &self,
        rollout: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        type Row = (i64, Option<String>, String, Option<String>, String, String);
        let rows = sqlx::query_as::<_, Row>(
            "SELECT seq, rollout, at, actor, kind, data FROM events \
             WHERE rollout = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(rollout)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(reading("events"))?;
        rows.into_iter()
            .map(|(seq, rollout, at, actor, kind, data)| {
                let data = serde_json::from_str(&data)
                    .map_err(|e| corrupt("events", &seq.to_string(), "data", e))?;
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
        if samples.is_empty() {
            return Ok(());
        }
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR REPLACE INTO rollout_samples (rollout, at, versions) ",
        );
        q.push_values(samples, |mut row, sample| {
            let versions =
                serde_json::to_string(&sample.versions).unwrap_or_else(|_| "{}".to_owned());
            row.push_bind(sample.rollout.as_str())
                .push_bind(sample.at.as_str())
                .push_bind(versions);
        });
        q.build()
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(write_failed)
    }

    async fn samples(&self, rollout: &str) -> Result<Vec<SampleRecord>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT at, versions FROM rollout_samples WHERE rollout = $1 ORDER BY at",
        )
        .bind(rollout)
        .fetch_all(&self.readers)
        .await
        .map_err(reading("rollout_samples"))?;
        rows.into_iter()
            .map(|(at, versions)| {
                let versions = serde_json::from_str(&versions)
                    .map_err(|e| corrupt("rollout_samples", &at, "versions", e))?;
                Ok(SampleRecord {
                    rollout: rollout.to_owned(),
                    at,
                    versions,
                })
            })
            .collect()
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        applied_schema_version(&self.readers)
            .await
            .map_err(reading("_sqlx_migrations"))
    }
}

// ---- writes: one function per kind, each in this dialect's SQL ----

async fn upsert_hosts(conn: &mut SqliteConnection, rows: &[&HostRecord]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let labels = chunk
            .iter()
            .map(|h| {
                serde_json::to_string(&h.labels).map_err(|e| {
                    StoreError::Write(format!("encoding labels of host {}: {e}", h.id))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO hosts (id, labels, last_seen) ");
        q.push_values(chunk.iter().zip(labels), |mut row, (h, labels)| {
            row.push_bind(h.id.as_str())
                .push_bind(labels)
                .push_bind(h.last_seen.as_deref());
        });
        q.push(
            " ON CONFLICT (id) DO UPDATE SET \
             labels = excluded.labels, last_seen = excluded.last_seen",
        );
        execute(conn, q, chunk.len()).await?;
    }
    Ok(())
}

async fn upsert_host_components(
    conn: &mut SqliteConnection,
    rows: &[&HostComponentRecord],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO host_components (host, component, version, state, message, at) ",
        );
        q.push_values(chunk, |mut row, c| {
            row.push_bind(c.host.as_str())
                .push_bind(c.component.as_str())
                .push_bind(c.version.as_str())
                .push_bind(c.state.as_deref())
                .push_bind(c.message.as_deref())
                .push_bind(c.at.as_str());
        });
        q.push(
            " ON CONFLICT (host, component) DO UPDATE SET \
             version = excluded.version, state = excluded.state, \
             message = excluded.message, at = excluded.at",
        );
        execute(conn, q, chunk.len()).await?;
    }
    Ok(())
}

/// One rollout per statement (they are few), so that a duplicate name is
/// reported with the rollout that has it.
async fn upsert_rollout(conn: &mut SqliteConnection, r: &RolloutRecord) -> Result<(), StoreError> {
    let result = sqlx::query(
        "INSERT INTO rollouts (id, name, component, state, plan, header, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
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
    .bind(r.created_at.as_str())
    .bind(r.updated_at.as_str())
    .execute(&mut *conn)
    .await;
    let Err(e) = result else { return Ok(()) };
    if classify(&e) != Some(ErrorKind::UniqueViolation) || !e.to_string().contains("rollouts.name")
    {
        return Err(write_failed(e));
    }
    // SQLite undid only the failed statement: the transaction can still say
    // which rollout holds the name.
    let holder: Option<String> = sqlx::query_scalar("SELECT id FROM rollouts WHERE name = $1")
        .bind(r.name.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(write_failed)?;
    Err(StoreError::Write(match holder {
        Some(holder) => format!(
            "a rollout named {:?} already exists ({holder}); cannot store rollout {} under that name",
            r.name, r.id
        ),
        None => format!("a rollout named {:?} already exists", r.name),
    }))
}

async fn upsert_rollout_hosts(
    conn: &mut SqliteConnection,
    rows: &[&RolloutHostRecord],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO rollout_hosts (rollout, host, record) ");
        q.push_values(chunk, |mut row, rh| {
            row.push_bind(rh.rollout.as_str())
                .push_bind(rh.host.as_str())
                .push_bind(rh.record.to_string());
        });
        q.push(" ON CONFLICT (rollout, host) DO UPDATE SET record = excluded.record");
        execute(conn, q, chunk.len()).await?;
    }
    Ok(())
}

/// Rows of one statement get their sequence numbers in row order.
async fn insert_events(conn: &mut SqliteConnection, rows: &[&NewEvent]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO events (rollout, at, actor, kind, data) ");
        q.push_values(chunk, |mut row, e| {
            row.push_bind(e.rollout.as_deref())
                .push_bind(e.at.as_str())
                .push_bind(e.actor.as_deref())
                .push_bind(e.kind.as_str())
                .push_bind(e.data.to_string());
        });
        execute(conn, q, chunk.len()).await?;
    }
    Ok(())
}

async fn upsert_components(
    conn: &mut SqliteConnection,
    rows: &[&ComponentRecord],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO components (name, stable_version) ");
        q.push_values(chunk, |mut row, c| {
            row.push_bind(c.name.as_str())
                .push_bind(c.stable_version.as_deref());
        });
        q.push(" ON CONFLICT (name) DO UPDATE SET stable_version = excluded.stable_version");
        execute(conn, q, chunk.len()).await?;
    }
    Ok(())
}

async fn set_freeze(
    conn: &mut SqliteConnection,
    freeze: Option<&FreezeRecord>,
) -> Result<(), StoreError> {
    let query = match freeze {
        None => sqlx::query("DELETE FROM freeze"),
        Some(f) => sqlx::query(
            "INSERT INTO freeze (id, actor, reason, since) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET \
             actor = excluded.actor, reason = excluded.reason, since = excluded.since",
        )
        .bind(f.actor.as_str())
        .bind(f.reason.as_str())
        .bind(f.since.as_str()),
    };
    query.execute(&mut *conn).await.map_err(write_failed)?;
    Ok(())
}

async fn upsert_tokens(
    conn: &mut SqliteConnection,
    rows: &[&TokenRecord],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO tokens (hash, role, host, name, created_at) ");
        q.push_values(chunk, |mut row, t| {
            row.push_bind(t.hash.as_str())
                .push_bind(t.role.as_str())
                .push_bind(t.host.as_deref())
                .push_bind(t.name.as_deref())
                .push_bind(t.created_at.as_str());
        });
        q.push(
            " ON CONFLICT (hash) DO UPDATE SET role = excluded.role, host = excluded.host, \
             name = excluded.name, created_at = excluded.created_at",
        );
        execute(conn, q, chunk.len()).await?;
    }
    Ok(())
}

/// Runs a multi-row statement of `rows` rows. Full-size statements are the
/// same text every time, so sqlx prepares them once per connection and
/// reuses them across chunks and batches; the shorter tail of a run is not
/// worth a place in the statement cache.
async fn execute(
    conn: &mut SqliteConnection,
    mut q: QueryBuilder<'_, Sqlite>,
    rows: usize,
) -> Result<(), StoreError> {
    q.build()
        .persistent(rows == ROWS_PER_STATEMENT)
        .execute(&mut *conn)
        .await
        .map_err(write_failed)?;
    Ok(())
}

// ---- error translation ----

fn classify(e: &sqlx::Error) -> Option<ErrorKind> {
    match e {
        sqlx::Error::Database(db) => Some(db.kind()),
        _ => None,
    }
}

/// A write that failed: refused by the database (a constraint, a full disk,
/// corruption), or unavailable when the database could not be reached or
/// stayed locked by another connection past the busy timeout.
fn write_failed(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if is_busy(db.code().as_deref()) => {
            StoreError::Unavailable(db.message().to_owned())
        }
        sqlx::Error::Database(db) => StoreError::Write(db.message().to_owned()),
        other => unavailable(other),
    }
}

/// `SQLITE_BUSY` or `SQLITE_LOCKED`, extended codes included.
fn is_busy(code: Option<&str>) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    code.and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn reading(table: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::Unavailable(format!("reading {table}: {e}"))
}

fn corrupt(table: &str, key: &str, column: &str, e: serde_json::Error) -> StoreError {
    StoreError::Unavailable(format!(
        "reading {table}: {column} of {key} is not valid JSON: {e}"
    ))
}
