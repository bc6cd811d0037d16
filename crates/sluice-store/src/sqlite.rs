//! The embedded backend: one SQLite file, `<data-dir>/sluice.db`. What it
//! shares with PostgreSQL is in `sql` (a [`Store`](crate::Store) over this
//! file's `Dialect`); what is SQLite's own is here.
//!
//! Durability: the journal is a write-ahead log and `synchronous=FULL`, so
//! every commit fsyncs the log before `Store::commit` returns. WAL with
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
//! Writes: multi-row `INSERT … VALUES` of 256 rows. Reads: `load` reads a
//! page of a large table as one JSON document (`Dialect::document`).
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

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteLockingMode,
    SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions as _;
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

use crate::batch::{self, describe, event_key, host_component_key, rollout_host_key, token_key};
use crate::read::{self, StoredTime};
use crate::sql::{self, Dialect, Key, Kind, Paged, Sql};
use crate::{
    ComponentRecord, HostComponentRecord, HostRecord, NewEvent, ReportedState, RolloutHostRecord,
    StoreError, Timestamp, TokenRecord, Write,
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

/// A [`Store`](crate::Store) in a SQLite file.
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
        let opening = |e| classify(e, format_args!("opening {}", path.display()));

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
            .map_err(opening)?;
        Sql::<SqliteStore>::migrate(&writer, &MIGRATOR, &path.display().to_string()).await?;

        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await
            .map_err(opening)?;

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
}

async fn pragma_int(conn: &mut SqliteConnection, pragma: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar(pragma)
        .fetch_one(conn)
        .await
        .map_err(|e| classify(e, format_args!("reading {pragma}")))
}

/// The newest schema version this binary knows.
pub fn known_schema_version() -> i64 {
    sql::newest(&MIGRATOR)
}

/// Opens the database file `path` (which must exist) as the one
/// connection to it, in a transaction that holds it until the connection
/// closes, for `copy`: nothing is created or migrated. With
/// `locking_mode=EXCLUSIVE`, the transaction's lock is kept; a database in
/// WAL mode, as sluice keeps it, is even locked exclusively at its first
/// read. Any other process's open connection (a running server's, which
/// holds a shared lock on the file for as long as it is open) prevents
/// that: the open then fails at once as busy (see [`is_busy`]) rather than
/// waiting.
pub(crate) async fn open_alone(path: &Path) -> Result<SqliteConnection, sqlx::Error> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .locking_mode(SqliteLockingMode::Exclusive)
        .busy_timeout(Duration::ZERO)
        .connect()
        .await?;
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await?;
    // The lock of a WAL database is taken at its first read.
    sqlx::query("SELECT COUNT(*) FROM sqlite_master")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

sql::store!(SqliteStore);

#[async_trait::async_trait]
impl Dialect for SqliteStore {
    type Db = Sqlite;
    /// The canonical text (see the module's documentation).
    type Time = String;

    const BEGIN_LOAD: &'static str = "BEGIN";
    const MIGRATIONS_TABLE: &'static str =
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
    /// JSON is text in SQLite.
    const AS_JSON: &'static str = "";

    fn readers(&self) -> &SqlitePool {
        &self.readers
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn classify(e: sqlx::Error, doing: impl std::fmt::Display) -> StoreError {
        classify(e, doing)
    }

    fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
        extended_code(e) == Some(CONSTRAINT_FOREIGNKEY)
    }

    fn is_taken_name(e: &sqlx::Error) -> bool {
        extended_code(e) == Some(CONSTRAINT_UNIQUE) && e.to_string().contains("rollouts.name")
    }

    async fn begin(
        &self,
        batch: &[Write],
    ) -> Result<Option<Transaction<'static, Sqlite>>, StoreError> {
        if batch.is_empty() {
            return Ok(None);
        }
        // IMMEDIATE takes the write lock at once, so a batch never fails
        // half-way for want of it.
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map(Some)
            .map_err(|e| classify(e, "starting a commit"))
    }

    /// SQLite hands a page over as a single JSON array: a row at a time,
    /// sqlx's hop between its connection thread and the caller costs several
    /// times what reading the row does, and `load` reads every host at start.
    async fn document(
        conn: &mut SqliteConnection,
        table: &Paged,
        page: &str,
        after: &[Key],
    ) -> Result<Option<String>, StoreError> {
        // No ORDER BY inside the aggregate: it would sort the page again in
        // a temporary b-tree; `Sql::pages` takes the rows in any order.
        let sql = format!(
            "SELECT json_group_array(json_array({})) FROM ({page})",
            table.document
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for key in after {
            query = match key {
                Key::Text(text) => query.bind(text.as_str()),
                Key::Int(number) => query.bind(*number),
            };
        }
        match query.bind(read::PAGE).fetch_one(conn).await {
            Ok(json) => Ok(Some(json)),
            // A column `json()` cannot read: the page is read row by row.
            Err(sqlx::Error::Database(db)) if db.message().contains("JSON") => Ok(None),
            Err(e) => Err(SqliteStore::reading(table.table)(e)),
        }
    }

    async fn upsert_hosts(
        conn: &mut SqliteConnection,
        rows: &[&HostRecord],
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let labels = batch::labels(chunk)?;
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
                "INSERT INTO host_components (host, component, version, state, message, drifted, at) ",
            );
            q.push_values(chunk.iter().zip(at), |mut row, (c, at)| {
                row.push_bind(c.host.as_str())
                    .push_bind(c.component.as_str())
                    .push_bind(c.version.as_str())
                    .push_bind(c.state.map(ReportedState::as_str))
                    .push_bind(c.message.as_deref())
                    .push_bind(c.drifted)
                    .push_bind(at);
            });
            q.push(
                " ON CONFLICT (host, component) DO UPDATE SET \
                 version = excluded.version, state = excluded.state, \
                 message = excluded.message, drifted = excluded.drifted, at = excluded.at",
            );
            execute(conn, q, chunk.len(), || {
                describe("host component", chunk, host_component_key)
            })
            .await?;
        }
        Ok(())
    }

    async fn upsert_components(
        conn: &mut SqliteConnection,
        rows: &[&ComponentRecord],
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut q =
                QueryBuilder::<Sqlite>::new("INSERT INTO components (name, stable_version) ");
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

    async fn upsert_tokens(
        conn: &mut SqliteConnection,
        rows: &[&TokenRecord],
    ) -> Result<(), StoreError> {
        let key = |t: &TokenRecord| token_key(&t.hash);
        let describe_row = |t: &TokenRecord| format!("token {}", key(t));
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let created = time_texts(chunk, "created_at", |t| Some(t.created_at), describe_row)?;
            let expires = time_texts(chunk, "expires_at", |t| t.expires_at, describe_row)?;
            let used = time_texts(chunk, "last_used_at", |t| t.last_used_at, describe_row)?;
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO tokens (hash, role, host, name, created_at, selector, expires_at, \
                 uses_left, last_used_at) ",
            );
            let times = created.into_iter().zip(expires).zip(used);
            q.push_values(
                chunk.iter().zip(times),
                |mut row, (t, ((created, expires), used))| {
                    row.push_bind(t.hash.as_str())
                        .push_bind(t.role.as_str())
                        .push_bind(t.host.as_deref())
                        .push_bind(t.name.as_deref())
                        .push_bind(created)
                        .push_bind(t.selector.as_deref())
                        .push_bind(expires)
                        .push_bind(t.uses_left)
                        .push_bind(used);
                },
            );
            // The uses left and the last use are the store's to count.
            q.push(
                " ON CONFLICT (hash) DO UPDATE SET role = excluded.role, host = excluded.host, \
                 name = excluded.name, created_at = excluded.created_at, \
                 selector = excluded.selector, expires_at = excluded.expires_at",
            );
            execute(conn, q, chunk.len(), || describe("token", chunk, key)).await?;
        }
        Ok(())
    }

    /// Rows of one statement get their sequence numbers in row order.
    async fn insert_events(
        conn: &mut SqliteConnection,
        rows: &[&NewEvent],
    ) -> Result<(), StoreError> {
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

    async fn write_samples(&self, rows: &[(&str, String, String)]) -> Result<(), StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR REPLACE INTO rollout_samples (rollout, at, versions) ",
        );
        q.push_values(rows, |mut row, (rollout, at, versions)| {
            row.push_bind(*rollout)
                .push_bind(at.as_str())
                .push_bind(versions.as_str());
        });
        q.build()
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(|e| classify(e, "writing samples"))
    }
}

// ---- times ----

/// SQLite keeps a time as its canonical text.
impl StoredTime for String {
    fn store(at: Timestamp) -> Result<String, String> {
        time_text(at)
    }

    fn timestamp(self) -> Result<Timestamp, String> {
        parse_time(&self)
    }
}

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

/// The one translation of sqlx's errors for SQLite into [`StoreError`], by
/// result code; `doing` says what failed ("writing 256 hosts, a … z").
pub(crate) fn classify(e: sqlx::Error, doing: impl std::fmt::Display) -> StoreError {
    sql::classify(e, doing, |db| {
        let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(1);
        (code_kind(code), String::new())
    })
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

/// Whether `e` says that another connection holds the database locked.
pub(crate) fn is_busy(e: &sqlx::Error) -> bool {
    extended_code(e).is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}

fn extended_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(db) => db.code().and_then(|c| c.parse().ok()),
        _ => None,
    }
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
