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
//! Times are text in one canonical form, RFC 3339 in UTC with exactly six
//! fractional digits (`2026-03-01T09:30:00.000000Z`, see [`time_text`]):
//! every stored time has the same width and the fields run from the year
//! down, so ordering by the column is time order. Years before 0 (which
//! would start with a sign) are refused.
//!
//! Error translation from SQLite to [`StoreError`] lives here and nowhere
//! else ([`classify`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use crate::batch::{self, describe, event_key, host_component_key, rollout_host_key};
use crate::{
    ComponentRecord, FreezeRecord, HostComponentRecord, HostRecord, Loaded, NewEvent,
    ReportedState, RolloutHostRecord, RolloutRecord, SampleRecord, Store, StoreError, StoredEvent,
    Timestamp, TokenRecord, TokenRole, Write,
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
        let failed =
            |what: &str, e: sqlx::Error| classify(e, format_args!("{what} {}", path.display()));

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
            .map_err(|e| failed("opening", e))?;

        let known = known_schema_version();
        let found = applied_schema_version(&writer)
            .await
            .map_err(|e| failed("reading the schema version of", e))?;
        if found > known {
            writer.close().await;
            return Err(StoreError::SchemaTooNew { found, known });
        }
        MIGRATOR.run(&writer).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => failed("migrating", e),
            sqlx::migrate::MigrateError::ExecuteMigration(e, version) => {
                failed(&format!("migrating to schema version {version}"), e)
            }
            other => StoreError::Corrupt(format!("migrating {}: {other}", path.display())),
        })?;

        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| failed("opening", e))?;

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
        let mut conn = self
            .writer
            .acquire()
            .await
            .map_err(|e| classify(e, "connecting"))?;
        let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| classify(e, "reading PRAGMA journal_mode"))?;
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
/// every host at start. `None` when the page cannot be read that way (a
/// stored value that is not what its column promises): the caller then reads
/// the page again row by row, to say which row.
async fn page<'q, T: serde::de::DeserializeOwned>(
    conn: &mut SqliteConnection,
    query: sqlx::query::QueryScalar<'q, Sqlite, String, sqlx::sqlite::SqliteArguments<'q>>,
) -> Result<Option<Vec<T>>, sqlx::Error> {
    let json = match query.fetch_one(conn).await {
        Ok(json) => json,
        Err(sqlx::Error::Database(db)) if db.message().contains("JSON") => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(serde_json::from_str(&json).ok())
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
    type Row = (String, BTreeMap<String, String>, Option<String>);
    let mut hosts = Vec::new();
    let mut last = String::new();
    loop {
        let query = |columns: &str| {
            format!(
                "SELECT {columns} FROM (SELECT * FROM hosts WHERE id {} $1 ORDER BY id LIMIT $2)",
                after(hosts.is_empty())
            )
        };
        let fast = query("json_group_array(json_array(id, json(labels), last_seen) ORDER BY id)");
        let rows: Vec<Row> = match page(conn, sqlx::query_scalar(&fast).bind(&last).bind(LOAD_PAGE))
            .await
            .map_err(reading("hosts"))?
        {
            Some(rows) => rows,
            None => {
                let slow = query("id, labels, last_seen") + " ORDER BY id";
                let raw: Vec<(String, String, Option<String>)> = sqlx::query_as(&slow)
                    .bind(&last)
                    .bind(LOAD_PAGE)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(reading("hosts"))?;
                raw.into_iter()
                    .map(|(id, labels, last_seen)| {
                        let labels = serde_json::from_str(&labels)
                            .map_err(|e| corrupt("hosts", &id, "labels", e))?;
                        Ok((id, labels, last_seen))
                    })
                    .collect::<Result<_, StoreError>>()?
            }
        };
        let Some((id, ..)) = rows.last() else {
            return Ok(hosts);
        };
        last = id.clone();
        for (id, labels, last_seen) in rows {
            let last_seen = last_seen
                .map(|text| parse_time(&text).map_err(|e| corrupt("hosts", &id, "last_seen", e)))
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
        // Every column is text in a STRICT table: the page always reads.
        let page: Vec<Row> = page(
            conn,
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
        .await
        .map_err(reading("host_components"))?
        .ok_or_else(|| StoreError::Corrupt("reading host_components: malformed page".to_owned()))?;
        let Some((host, component, ..)) = page.last() else {
            return Ok(rows);
        };
        last = (host.clone(), component.clone());
        for (host, component, version, state, message, at) in page {
            let key = || format!("{host}/{component}");
            let state = state
                .map(|text| {
                    text.parse::<ReportedState>()
                        .map_err(|e| corrupt("host_components", &key(), "state", e))
                })
                .transpose()?;
            let at = parse_time(&at).map_err(|e| corrupt("host_components", &key(), "at", e))?;
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
async fn load_rollout_hosts(
    conn: &mut SqliteConnection,
) -> Result<Vec<RolloutHostRecord>, StoreError> {
    type Row = (String, String, String);
    let mut rows = Vec::new();
    let mut last = (String::new(), String::new());
    loop {
        let query = |columns: &str| {
            format!(
                "SELECT {columns} \
                 FROM (SELECT rh.* FROM rollout_hosts rh JOIN rollouts r ON r.id = rh.rollout \
                       WHERE r.state NOT IN ({TERMINAL_STATES}) \
                         AND (rh.rollout, rh.host) {} ($1, $2) \
                       ORDER BY rh.rollout, rh.host LIMIT $3)",
                after(rows.is_empty())
            )
        };
        let fast =
            query("json_group_array(json_array(rollout, host, record) ORDER BY rollout, host)");
        let page: Vec<Row> = match page(
            conn,
            sqlx::query_scalar(&fast)
                .bind(&last.0)
                .bind(&last.1)
                .bind(LOAD_PAGE),
        )
        .await
        .map_err(reading("rollout_hosts"))?
        {
            Some(page) => page,
            None => {
                let slow = query("rollout, host, record") + " ORDER BY rollout, host";
                let raw: Vec<(String, String, String)> = sqlx::query_as(&slow)
                    .bind(&last.0)
                    .bind(&last.1)
                    .bind(LOAD_PAGE)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(reading("rollout_hosts"))?;
                raw
            }
        };
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
        .map_err(|e| classify(e, format_args!("reading {pragma}")))
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
        let mut tx = self
            .readers
            .begin()
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
            String,
            String,
        );
        let rollouts = sqlx::query_as::<_, RolloutRow>(
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
                let created_at = parse_time(&created_at)
                    .map_err(|e| corrupt("rollouts", &id, "created_at", e))?;
                let updated_at = parse_time(&updated_at)
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
        let freeze = sqlx::query_as::<_, (String, String, String)>(
            "SELECT actor, reason, since FROM freeze WHERE id = 1",
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(reading("freeze"))?
        .map(|(actor, reason, since)| {
            let since = parse_time(&since).map_err(|e| corrupt("freeze", "1", "since", e))?;
            Ok::<_, StoreError>(FreezeRecord {
                actor,
                reason,
                since,
            })
        })
        .transpose()?;

        let tokens = sqlx::query_as::<_, (String, String, Option<String>, Option<String>, String)>(
            "SELECT hash, role, host, name, created_at FROM tokens ORDER BY created_at, hash",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(reading("tokens"))?
        .into_iter()
        .map(|(hash, role, host, name, created_at)| {
            // The hash is not a secret, but a prefix names the row well enough.
            let key = &hash[..hash.len().min(12)];
            let role = role
                .parse::<TokenRole>()
                .map_err(|e| corrupt("tokens", key, "role", e))?;
            let created_at =
                parse_time(&created_at).map_err(|e| corrupt("tokens", key, "created_at", e))?;
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
        if batch.is_empty() {
            return Ok(());
        }
        // IMMEDIATE takes the write lock at once, so a batch never fails
        // half-way for want of it.
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| classify(e, "starting a commit"))?;
        if let Err(e) = SqliteStore::apply(&mut tx, batch).await {
            // The batch leaves nothing behind. A failed rollback is not
            // worth reporting over the error that caused it: sqlx rolls
            // back again before the connection is next used.
            let _ = tx.rollback().await;
            return Err(e);
        }
        match tx.commit().await {
            Ok(()) => Ok(()),
            Err(e) if is_foreign_key_violation(&e) => Err(self.dangling(batch).await),
            Err(e) => Err(classify(e, "committing")),
        }
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
                let key = seq.to_string();
                let data =
                    serde_json::from_str(&data).map_err(|e| corrupt("events", &key, "data", e))?;
                let at = parse_time(&at).map_err(|e| corrupt("events", &key, "at", e))?;
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
        let rows = samples
            .iter()
            .map(|sample| {
                let key = || format!("sample of rollout {} at {}", sample.rollout, sample.at);
                let at = time_text(sample.at)
                    .map_err(|e| StoreError::Refused(format!("{}: {e}", key())))?;
                let versions = serde_json::to_string(&sample.versions)
                    .map_err(|e| StoreError::Refused(format!("encoding the {}: {e}", key())))?;
                Ok((sample.rollout.as_str(), at, versions))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR REPLACE INTO rollout_samples (rollout, at, versions) ",
        );
        q.push_values(rows, |mut row, (rollout, at, versions)| {
            row.push_bind(rollout).push_bind(at).push_bind(versions);
        });
        q.build()
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(|e| classify(e, "writing samples"))
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
                let key = format!("{rollout}/{at}");
                let versions = serde_json::from_str(&versions)
                    .map_err(|e| corrupt("rollout_samples", &key, "versions", e))?;
                let at = parse_time(&at).map_err(|e| corrupt("rollout_samples", &key, "at", e))?;
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

impl SqliteStore {
    /// Why a batch failed its foreign keys at commit (SQLite only says that
    /// some constraint failed): the writes naming a host or rollout that
    /// neither the batch nor the database has. The batch was rolled back,
    /// so the database is as it was before it.
    async fn dangling(&self, batch: &[Write]) -> StoreError {
        let g = batch::group(batch);
        let (hosts, rollouts) = g.references();
        let mut missing_hosts = hosts.clone();
        let mut missing_rollouts = rollouts.clone();
        for (table, names, missing) in [
            ("hosts", &hosts, &mut missing_hosts),
            ("rollouts", &rollouts, &mut missing_rollouts),
        ] {
            for id in names {
                let found: Result<Option<i64>, _> =
                    sqlx::query_scalar(&format!("SELECT 1 FROM {table} WHERE id = $1"))
                        .bind(*id)
                        .fetch_optional(&self.writer)
                        .await;
                match found {
                    Ok(Some(_)) => {
                        missing.remove(id);
                    }
                    Ok(None) => {}
                    Err(e) => return classify(e, format_args!("reading {table}")),
                }
            }
        }
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

// ---- writes: one function per kind, each in this dialect's SQL ----

/// The canonical text of a time (see the module's documentation), truncated
/// to the microsecond.
pub fn time_text(at: Timestamp) -> Result<String, String> {
    if at.to_zoned_datetime(jiff::tz::TimeZone::UTC).year() < 0 {
        return Err(format!(
            "{at} is before year 0, which the store cannot keep"
        ));
    }
    Ok(at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// Reads a stored time (any RFC 3339 text, the canonical form included).
fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.parse::<Timestamp>()
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))
}

/// The canonical texts of the times of `rows`, or an error naming the row
/// whose time cannot be kept.
fn time_texts<T>(
    rows: &[&T],
    column: &str,
    time: impl Fn(&T) -> Option<Timestamp>,
    describe_row: impl Fn(&T) -> String,
) -> Result<Vec<Option<String>>, StoreError> {
    rows.iter()
        .map(|row| {
            time(row)
                .map(time_text)
                .transpose()
                .map_err(|e| StoreError::Refused(format!("{} {column}: {e}", describe_row(row))))
        })
        .collect()
}

async fn upsert_hosts(conn: &mut SqliteConnection, rows: &[&HostRecord]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let labels = chunk
            .iter()
            .map(|h| {
                serde_json::to_string(&h.labels).map_err(|e| {
                    StoreError::Refused(format!("encoding labels of host {}: {e}", h.id))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let seen = time_texts(
            chunk,
            "last_seen",
            |h| h.last_seen,
            |h| format!("host {}", h.id),
        )?;
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO hosts (id, labels, last_seen) ");
        q.push_values(
            chunk.iter().zip(labels).zip(seen),
            |mut row, ((h, labels), seen)| {
                row.push_bind(h.id.as_str())
                    .push_bind(labels)
                    .push_bind(seen);
            },
        );
        q.push(
            " ON CONFLICT (id) DO UPDATE SET \
             labels = excluded.labels, last_seen = excluded.last_seen",
        );
        execute(conn, q, chunk.len(), || {
            describe("host", chunk, |h| h.id.clone())
        })
        .await?;
    }
    Ok(())
}

async fn upsert_host_components(
    conn: &mut SqliteConnection,
    rows: &[&HostComponentRecord],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let at = time_texts(
            chunk,
            "at",
            |c| Some(c.at),
            |c| format!("host component {}", host_component_key(c)),
        )?;
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO host_components (host, component, version, state, message, at) ",
        );
        q.push_values(chunk.iter().zip(at), |mut row, (c, at)| {
            row.push_bind(c.host.as_str())
                .push_bind(c.component.as_str())
                .push_bind(c.version.as_str())
                .push_bind(c.state.map(ReportedState::as_str))
                .push_bind(c.message.as_deref())
                .push_bind(at);
        });
        q.push(
            " ON CONFLICT (host, component) DO UPDATE SET \
             version = excluded.version, state = excluded.state, \
             message = excluded.message, at = excluded.at",
        );
        execute(conn, q, chunk.len(), || {
            describe("host component", chunk, host_component_key)
        })
        .await?;
    }
    Ok(())
}

/// One rollout per statement (they are few), so that a duplicate name is
/// reported with the rollout that has it.
async fn upsert_rollout(conn: &mut SqliteConnection, r: &RolloutRecord) -> Result<(), StoreError> {
    let text = |at: Timestamp, column: &str| {
        time_text(at).map_err(|e| StoreError::Refused(format!("rollout {} {column}: {e}", r.id)))
    };
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
    .bind(text(r.created_at, "created_at")?)
    .bind(text(r.updated_at, "updated_at")?)
    .execute(&mut *conn)
    .await;
    let Err(e) = result else { return Ok(()) };
    if !is_unique_violation(&e) || !e.to_string().contains("rollouts.name") {
        return Err(classify(e, format_args!("writing rollout {}", r.id)));
    }
    // SQLite undid only the failed statement: the transaction can still say
    // which rollout holds the name.
    let holder: Option<String> = sqlx::query_scalar("SELECT id FROM rollouts WHERE name = $1")
        .bind(r.name.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(reading("rollouts"))?;
    Err(StoreError::Refused(duplicate_name(r, holder.as_deref())))
}

/// What a refused rollout whose name is taken says.
pub(crate) fn duplicate_name(r: &RolloutRecord, holder: Option<&str>) -> String {
    match holder {
        Some(holder) => format!(
            "a rollout named {:?} already exists ({holder}); cannot store rollout {} under that name",
            r.name, r.id
        ),
        None => format!(
            "a rollout named {:?} already exists; cannot store rollout {} under that name",
            r.name, r.id
        ),
    }
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
                .push_bind(rh.record.as_str());
        });
        q.push(" ON CONFLICT (rollout, host) DO UPDATE SET record = excluded.record");
        execute(conn, q, chunk.len(), || {
            describe("rollout host", chunk, rollout_host_key)
        })
        .await?;
    }
    Ok(())
}

/// Rows of one statement get their sequence numbers in row order.
async fn insert_events(conn: &mut SqliteConnection, rows: &[&NewEvent]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let at = time_texts(
            chunk,
            "at",
            |e| Some(e.at),
            |e| format!("event {}", event_key(e)),
        )?;
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO events (rollout, at, actor, kind, data) ");
        q.push_values(chunk.iter().zip(at), |mut row, (e, at)| {
            row.push_bind(e.rollout.as_deref())
                .push_bind(at)
                .push_bind(e.actor.as_deref())
                .push_bind(e.kind.as_str())
                .push_bind(e.data.to_string());
        });
        execute(conn, q, chunk.len(), || describe("event", chunk, event_key)).await?;
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
        execute(conn, q, chunk.len(), || {
            describe("component", chunk, |c| c.name.clone())
        })
        .await?;
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
        .bind(
            time_text(f.since)
                .map_err(|e| StoreError::Refused(format!("the freeze's since: {e}")))?,
        ),
    };
    query
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(e, "writing the freeze"))?;
    Ok(())
}

async fn upsert_tokens(
    conn: &mut SqliteConnection,
    rows: &[&TokenRecord],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let created = time_texts(
            chunk,
            "created_at",
            |t| Some(t.created_at),
            |t| format!("token {}", token_key(t)),
        )?;
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO tokens (hash, role, host, name, created_at) ");
        q.push_values(chunk.iter().zip(created), |mut row, (t, created)| {
            row.push_bind(t.hash.as_str())
                .push_bind(t.role.as_str())
                .push_bind(t.host.as_deref())
                .push_bind(t.name.as_deref())
                .push_bind(created);
        });
        q.push(
            " ON CONFLICT (hash) DO UPDATE SET role = excluded.role, host = excluded.host, \
             name = excluded.name, created_at = excluded.created_at",
        );
        execute(conn, q, chunk.len(), || describe("token", chunk, token_key)).await?;
    }
    Ok(())
}

/// A token in messages: the start of its hash (not a secret, but short).
pub(crate) fn token_key(t: &TokenRecord) -> String {
    t.hash.chars().take(12).collect()
}

/// Runs a multi-row statement of `rows` rows. Full-size statements are the
/// same text every time, so sqlx prepares them once per connection and
/// reuses them across chunks and batches; the shorter tail of a run is not
/// worth a place in the statement cache. `what` names the rows for an error.
async fn execute(
    conn: &mut SqliteConnection,
    mut q: QueryBuilder<'_, Sqlite>,
    rows: usize,
    what: impl Fn() -> String,
) -> Result<(), StoreError> {
    q.build()
        .persistent(rows == ROWS_PER_STATEMENT)
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(e, format_args!("writing {}", what())))?;
    Ok(())
}

// ---- error translation ----

/// The one translation of sqlx's errors for SQLite into [`StoreError`];
/// `doing` says what failed ("writing 256 hosts, a … z").
pub(crate) fn classify(e: sqlx::Error, doing: impl std::fmt::Display) -> StoreError {
    let message = match &e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    };
    let message = format!("{doing}: {message}");
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(1);
            match code_kind(code) {
                Kind::Transient => StoreError::Unavailable(message),
                Kind::Refused => StoreError::Refused(message),
                Kind::Corrupt => StoreError::Corrupt(message),
            }
        }
        sqlx::Error::Io(_)
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transient,
    Refused,
    Corrupt,
}

/// By SQLite's primary result code (the low byte of an extended one).
fn code_kind(code: i32) -> Kind {
    const NOMEM: i32 = 7;
    const READONLY: i32 = 8;
    const INTERRUPT: i32 = 9;
    const IOERR: i32 = 10;
    const CORRUPT: i32 = 11;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    const PROTOCOL: i32 = 15;
    const SCHEMA: i32 = 17;
    const NOTADB: i32 = 26;
    match code & 0xff {
        // Busy and locked (past the busy timeout), out of memory or disk, an
        // I/O error, a file that cannot be opened or written right now, a
        // schema changed under a prepared statement: the same batch may go
        // through later, once the other connection, the disk or the
        // operator lets it.
        SQLITE_BUSY | SQLITE_LOCKED | NOMEM | READONLY | INTERRUPT | IOERR | FULL | CANTOPEN
        | PROTOCOL | SCHEMA => Kind::Transient,
        CORRUPT | NOTADB => Kind::Corrupt,
        // Constraints, type mismatches, values too big, SQL errors.
        _ => Kind::Refused,
    }
}

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
/// `SQLITE_CONSTRAINT_FOREIGNKEY`.
const CONSTRAINT_FOREIGNKEY: i32 = 787;
/// `SQLITE_CONSTRAINT_UNIQUE`.
const CONSTRAINT_UNIQUE: i32 = 2067;

fn extended_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(db) => db.code().and_then(|c| c.parse().ok()),
        _ => None,
    }
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    extended_code(e) == Some(CONSTRAINT_FOREIGNKEY)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    extended_code(e) == Some(CONSTRAINT_UNIQUE)
}

fn reading(table: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| classify(e, format_args!("reading {table}"))
}

/// A stored value that does not parse: names the table, the row and the column.
fn corrupt(table: &str, key: &str, column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table} row {key}, column {column}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_are_transient_refused_or_corrupt() {
        for transient in [5, 6, 517, 7, 8, 10, 266, 13, 14, 17] {
            assert_eq!(code_kind(transient), Kind::Transient, "code {transient}");
        }
        for refused in [1, 19, CONSTRAINT_FOREIGNKEY, CONSTRAINT_UNIQUE, 18, 20, 25] {
            assert_eq!(code_kind(refused), Kind::Refused, "code {refused}");
        }
        for corrupt in [11, 26] {
            assert_eq!(code_kind(corrupt), Kind::Corrupt, "code {corrupt}");
        }
    }

    #[test]
    fn times_are_written_in_one_width_and_read_back() {
        let at: Timestamp = "2026-03-01T09:30:00Z".parse().expect("time");
        assert_eq!(time_text(at).as_deref(), Ok("2026-03-01T09:30:00.000000Z"));
        let precise: Timestamp = "2026-03-01T09:30:00.123456789+01:00".parse().expect("time");
        assert_eq!(
            time_text(precise).as_deref(),
            Ok("2026-03-01T08:30:00.123456Z")
        );
        assert_eq!(parse_time("2026-03-01T09:30:00.000000Z"), Ok(at));
        assert!(parse_time("yesterday").is_err());
        let ancient: Timestamp = "-000001-01-01T00:00:00Z".parse().expect("time");
        assert!(time_text(ancient).is_err());
    }
}
