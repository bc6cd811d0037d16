//! What the SQL backends share: the one [`Store`](crate::Store)
//! implementation both run ([`Sql`], made each backend's by [`store!`]),
//! over a [`Dialect`] that says where each of them differs (after flipt's
//! `internal/storage/sql`: shared SQL, per-dialect error translation).
//!
//! Most of a backend is the same SQL in SQLite and PostgreSQL: the reads of
//! the small tables, events and samples, a token by its hash, the pages of
//! the large tables, the rollout, freeze and dashboard session writes, the schema version, and finding out which
//! write of a refused batch named what. That SQL lives here, once, written
//! so that both dialects take it (`CAST(… AS TEXT)` for PostgreSQL's `json`
//! columns, a quoted `"freeze"`, a page's key as a row comparison). A
//! dialect (`sqlite.rs`, `postgres.rs`) keeps what differs: its pools and
//! how a commit starts, the multi-row writes (SQLite's `VALUES` lists,
//! PostgreSQL's `UNNEST` over arrays), how it stores a time, SQLite's
//! pages as one JSON document, and which of its error codes mean what.
//!
//! Shared too: a commit's flow. The batch is grouped by kind (see `batch`),
//! each kind written in its dialect, and a refused batch is put in words
//! after its transaction is rolled back: a taken rollout name with the
//! rollout that holds it, a failed foreign key with the writes naming a
//! host or rollout that does not exist.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::marker::PhantomData;

use sqlx::error::DatabaseError;
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Transaction,
    Type,
};

use crate::batch::{self, latest, token_key};
use crate::read::{self, StoredTime};
use crate::{
    AuditQuery, AuditRecord, BudgetRecord, ComponentRecord, Enrolled, Enrollment, FreezeRecord,
    HostComponentRecord, HostRecord, LogQuery, NewEvent, Part, RolloutHostRecord, RolloutRecord,
    SampleRecord, SessionRecord, StateSampleRecord, StoreError, StoredAudit, StoredEvent,
    StoredWebhook, Timestamp, TokenPage, TokenRecord, TokenRole, WebhookDelivery, Write,
};

/// A dialect's connection.
pub(crate) type Conn<D> = <<D as Dialect>::Db as Database>::Connection;

/// Where a backend's dialect differs from the shared SQL; [`store!`] makes
/// it a [`Store`](crate::Store).
#[async_trait::async_trait]
pub(crate) trait Dialect: Send + Sync + 'static {
    type Db: Database;

    /// A time as this dialect stores it.
    type Time: StoredTime
        + for<'q> Encode<'q, Self::Db>
        + for<'r> Decode<'r, Self::Db>
        + Type<Self::Db>
        + Send
        + Sync
        + Unpin
        + 'static;

    /// Starts `load`'s read transaction, which sees every table in one
    /// snapshot.
    const BEGIN_LOAD: &'static str;

    /// One row, one integer: 1 when sqlx's `_sqlx_migrations` table exists
    /// (the database was migrated before), 0 when not.
    const MIGRATIONS_TABLE: &'static str;

    /// Follows a bound text parameter written to a JSON column: what makes
    /// it JSON.
    const AS_JSON: &'static str;

    /// Where `load`, `events` and `samples` read.
    fn readers(&self) -> &Pool<Self::Db>;

    /// Where commits and samples are written.
    fn writer(&self) -> &Pool<Self::Db>;

    /// The dialect's one translation of its driver's errors; `doing` says
    /// what failed ("writing 256 hosts, a … z").
    fn classify(e: sqlx::Error, doing: impl fmt::Display) -> StoreError;

    /// [`Dialect::classify`] for a failed read of `table`.
    fn reading(table: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
        move |e| Self::classify(e, format_args!("reading {table}"))
    }

    /// A foreign key failed (at commit: the keys are deferred).
    fn is_foreign_key_violation(e: &sqlx::Error) -> bool;

    /// A rollout's name is another rollout's.
    fn is_taken_name(e: &sqlx::Error) -> bool;

    /// Starts the transaction that commits `batch`, after any check this
    /// handle makes first; `None` when there is nothing to do.
    async fn begin(
        &self,
        batch: &[Write],
    ) -> Result<Option<Transaction<'static, Self::Db>>, StoreError>;

    /// A page of a table as one JSON document: `page` is the statement
    /// that reads its rows (the key `after` bound first, none on the first
    /// page, then the page's length), the document an array of one array
    /// per row of `table.document`'s columns, times as text. `None` where the dialect
    /// reads its pages as plain rows (the default), or where the page
    /// cannot be read as a document (a stored value that is not what its
    /// column promises): the page is then read as plain rows, which name
    /// the row that does not parse.
    async fn document(
        _conn: &mut Conn<Self>,
        _table: &Paged,
        _page: &str,
        _after: &[Key],
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    async fn upsert_hosts(conn: &mut Conn<Self>, rows: &[&HostRecord]) -> Result<(), StoreError>;

    async fn upsert_host_components(
        conn: &mut Conn<Self>,
        rows: &[&HostComponentRecord],
    ) -> Result<(), StoreError>;

    async fn upsert_components(
        conn: &mut Conn<Self>,
        rows: &[&ComponentRecord],
    ) -> Result<(), StoreError>;

    async fn upsert_rollout_hosts(
        conn: &mut Conn<Self>,
        rows: &[&RolloutHostRecord],
    ) -> Result<(), StoreError>;

    async fn upsert_tokens(conn: &mut Conn<Self>, rows: &[&TokenRecord]) -> Result<(), StoreError>;

    /// Makes concurrent enrollments of `host` (with any enrollment token)
    /// wait for each other until the end of the transaction, so that
    /// neither misses the token the other binds to it. Nothing by default:
    /// SQLite's one writer runs one transaction at a time.
    async fn lock_enrollment(_conn: &mut Conn<Self>, _host: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Appends events, numbered in the order of `rows`.
    async fn insert_events(conn: &mut Conn<Self>, rows: &[&NewEvent]) -> Result<(), StoreError>;

    /// Appends audit entries, numbered in the order of `rows`, in commit
    /// order (as events are).
    async fn insert_audit(conn: &mut Conn<Self>, rows: &[&AuditRecord]) -> Result<(), StoreError>;

    /// Writes samples (rollout, time, versions as JSON text), each key once;
    /// one with a stored sample's key replaces it.
    async fn write_samples(&self, rows: &[(&str, Self::Time, String)]) -> Result<(), StoreError>;
}

/// How the rows of a page come.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// By key, as the database orders it (`ORDER BY`).
    Sorted,
    /// In any order (an aggregated document, SQLite only).
    Unsorted,
}

/// A table read in pages, in key order: the large tables of `load`, and
/// every table of a copy (`copy`).
#[derive(Debug)]
pub(crate) struct Paged {
    /// For messages.
    pub table: &'static str,
    /// A row's columns, each named as itself.
    pub columns: &'static str,
    /// Where the rows come from.
    pub from: &'static str,
    /// Which of them are read, if not all.
    pub filter: Option<&'static str>,
    /// The key's columns, in order.
    pub key: &'static [&'static str],
    /// A row's columns as the items of a JSON array, for
    /// [`Dialect::document`] (SQLite's JSON functions: `json(labels)` keeps
    /// the labels an object rather than a string holding one).
    pub document: &'static str,
}

/// One column of a page's key, as it is bound: the key of the last row
/// read, which the next page starts after.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    Text(String),
    Int(i64),
}

pub(crate) const HOSTS: Paged = Paged {
    table: "hosts",
    columns: "id, CAST(labels AS TEXT) AS labels, last_seen",
    from: "hosts",
    filter: None,
    key: &["id"],
    document: "id, json(labels), last_seen",
};

pub(crate) const HOST_COMPONENTS: Paged = Paged {
    table: "host_components",
    columns: "host, component, version, state, message, drifted, at",
    from: "host_components",
    filter: None,
    key: &["host", "component"],
    // A JSON boolean, as the row's `bool` reads it (SQLite keeps 0 or 1).
    document: "host, component, version, state, message, \
               json(CASE drifted WHEN 0 THEN 'false' ELSE 'true' END), at",
};

/// The host records of rollouts that are not over.
const ACTIVE_ROLLOUT_HOSTS: Paged = Paged {
    table: "rollout_hosts",
    columns: "rollout, host, CAST(record AS TEXT) AS record",
    from: "rollout_hosts JOIN rollouts ON rollouts.id = rollout_hosts.rollout",
    filter: Some("rollouts.state NOT IN ('completed', 'aborted', 'rolled_back')"),
    key: &["rollout", "host"],
    document: "rollout, host, record",
};

impl Paged {
    /// The statement of a page: the rows whose key is greater than the one
    /// bound first (`after`; the first page starts at the smallest key), at
    /// most as many as the last parameter says.
    fn page(&self, after: bool) -> String {
        let key = self.key.join(", ");
        let mut conditions: Vec<String> = self.filter.iter().map(|f| (*f).to_owned()).collect();
        let mut limit = 1;
        if after {
            let params: Vec<String> = (1..=self.key.len()).map(|i| format!("${i}")).collect();
            conditions.push(format!("({key}) > ({})", params.join(", ")));
            limit += self.key.len();
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        format!(
            "SELECT {} FROM {}{filter} ORDER BY {key} LIMIT ${limit}",
            self.columns, self.from
        )
    }
}

/// The keys of records as [`Sql::pages`] takes them, for the tables both
/// `load` and `copy` read.
pub(crate) mod page_key {
    use super::Key;
    use crate::{HostComponentRecord, HostRecord, RolloutHostRecord, StoreError};

    pub(crate) fn host(h: &HostRecord) -> Result<Vec<Key>, StoreError> {
        Ok(vec![Key::Text(h.id.clone())])
    }

    pub(crate) fn host_component(c: &HostComponentRecord) -> Result<Vec<Key>, StoreError> {
        Ok(vec![
            Key::Text(c.host.clone()),
            Key::Text(c.component.clone()),
        ])
    }

    pub(crate) fn rollout_host(rh: &RolloutHostRecord) -> Result<Vec<Key>, StoreError> {
        Ok(vec![
            Key::Text(rh.rollout.clone()),
            Key::Text(rh.host.clone()),
        ])
    }
}

/// Where [`Sql::pages`] hands the pages it reads, each while the next one
/// is read.
#[async_trait::async_trait]
pub(crate) trait Sink<T>: Send {
    async fn take(&mut self, page: Vec<T>) -> Result<(), StoreError>;
}

/// `load`'s sink: each page handed to the caller as a [`Part`].
struct Handing<'e, T> {
    each: &'e mut (dyn FnMut(Part) + Send),
    part: fn(Vec<T>) -> Part,
}

#[async_trait::async_trait]
impl<T: Send + 'static> Sink<T> for Handing<'_, T> {
    async fn take(&mut self, page: Vec<T>) -> Result<(), StoreError> {
        // Lets the read of the next page start first.
        tokio::task::yield_now().await;
        (self.each)((self.part)(page));
        Ok(())
    }
}

const COMPONENTS: &str = "SELECT name, stable_version FROM components ORDER BY name";

const ROLLOUTS: &str = "SELECT id, name, component, state, plan, CAST(header AS TEXT), \
                        created_at, updated_at \
                        FROM rollouts ORDER BY created_at, id";

pub(crate) const FREEZE: &str = "SELECT actor, reason, since FROM \"freeze\" WHERE id = 1";

pub(crate) const BUDGET: &str = "SELECT max_in_flight, per_stratum, spread, actor, reason, since \
                                 FROM fleet_budget WHERE id = 1";

pub(crate) const PINS: &str = "SELECT host, component, version, expires_at, actor, reason, since \
                               FROM pins ORDER BY host, component";

pub(crate) const WEBHOOKS: &str =
    "SELECT id, url, events, format, secret, created_at, created_by, delivered_seq, failures, \
     last_error, last_attempt_at, last_success_at FROM webhooks ORDER BY id";

/// A token's columns, as `read::token` takes them.
macro_rules! token_columns {
    () => {
        "hash, role, host, name, created_at, selector, expires_at, uses_left, last_used_at"
    };
}
pub(crate) use token_columns;

const TOKENS: &str = concat!(
    "SELECT ",
    token_columns!(),
    " FROM tokens ORDER BY created_at, hash"
);

/// A page of tokens by hash: the role (ignored when NULL), where the page
/// starts (likewise), at most so many.
const TOKENS_PAGE: &str = concat!(
    "SELECT ",
    token_columns!(),
    " FROM tokens WHERE ($1 IS NULL OR role = $1) AND ($2 IS NULL OR hash >= $2) \
     ORDER BY hash LIMIT $3"
);

/// One token, by the hash of its secret.
const TOKEN: &str = concat!("SELECT ", token_columns!(), " FROM tokens WHERE hash = $1");

const SESSIONS: &str = "SELECT hash, token, created_at, expires_at FROM dashboard_sessions \
                        ORDER BY created_at, hash";

const EVENTS: &str = "SELECT seq, rollout, at, actor, kind, CAST(data AS TEXT) FROM events \
                      WHERE rollout = $1 AND seq > $2 ORDER BY seq LIMIT $3";

const EVENTS_AFTER: &str = "SELECT seq, rollout, at, actor, kind, CAST(data AS TEXT) FROM events \
                            WHERE seq > $1 ORDER BY seq LIMIT $2";

/// The whole log, filtered (rollout, after) each ignored when NULL; the
/// kinds, `ORDER` and the limit follow.
const LOG_EVENTS: &str = "SELECT seq, rollout, at, actor, kind, CAST(data AS TEXT) FROM events \
                          WHERE ($1 IS NULL OR rollout = $1) AND ($2 IS NULL OR seq > $2) ";

/// The audit log's columns, as `read::audit` takes them.
macro_rules! audit_columns {
    () => {
        "seq, at, actor_id, actor_name, actor_role, source, kind, target, reason, \
         CAST(data AS TEXT) AS data"
    };
}
pub(crate) use audit_columns;

/// Audit entries: the filters (actor, kind, since, after) each ignored when
/// NULL; `ORDER` and the limit follow.
const AUDIT: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM audit \
     WHERE ($1 IS NULL OR actor_id = $1 OR actor_name = $1) \
     AND ($2 IS NULL OR kind = $2) \
     AND ($3 IS NULL OR at >= $3) \
     AND ($4 IS NULL OR seq > $4) "
);

const SAMPLES: &str = "SELECT rollout, at, CAST(versions AS TEXT) FROM rollout_samples \
                       WHERE rollout = $1 ORDER BY at";

const STATE_SAMPLES: &str = "SELECT rollout, at, CAST(counts AS TEXT) FROM rollout_state_samples \
                             WHERE rollout = $1 ORDER BY at";

const SCHEMA_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";

/// Ids per statement when looking for the rows a refused batch names.
const IDS_PER_STATEMENT: usize = 1_000;

/// Why applying a batch failed, before it is put in words.
pub(crate) enum Failure<'a> {
    Store(StoreError),
    /// The rollout's name is another rollout's.
    TakenName(&'a RolloutRecord),
    /// A foreign key failed: the batch names a host or rollout that does
    /// not exist.
    Dangling,
}

impl From<StoreError> for Failure<'_> {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl Failure<'_> {
    /// The failure in words, outside a batch (where [`Sql::explain`] finds
    /// more to say).
    pub(crate) fn plain(self) -> StoreError {
        match self {
            Failure::Store(e) => e,
            Failure::TakenName(rollout) => StoreError::Refused(batch::taken_name(rollout, None)),
            Failure::Dangling => StoreError::Refused(DANGLING.to_owned()),
        }
    }
}

/// A failed foreign key, when nothing more is known.
const DANGLING: &str =
    "the batch refers to a host or rollout that does not exist (foreign key constraint failed)";

/// What a failure means for the caller, before it is put in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Try again: [`StoreError::Unavailable`].
    Transient,
    Refused,
    Corrupt,
}

/// The translation both dialects share: an error of the database itself as
/// `database` says (by its result code or SQLSTATE, with any detail to add
/// to its message), every other one by what sqlx says went wrong.
pub(crate) fn classify(
    e: sqlx::Error,
    doing: impl fmt::Display,
    database: impl FnOnce(&dyn DatabaseError) -> (Kind, String),
) -> StoreError {
    let (kind, message) = match &e {
        sqlx::Error::Database(db) => {
            let (kind, detail) = database(db.as_ref());
            (kind, format!("{doing}: {}{detail}", db.message()))
        }
        other => {
            let message = format!("{doing}: {other}");
            let kind = match other {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::BeginFailed => Kind::Transient,
                sqlx::Error::ColumnDecode { .. }
                | sqlx::Error::Decode(_)
                | sqlx::Error::ColumnNotFound(_)
                | sqlx::Error::ColumnIndexOutOfBounds { .. }
                | sqlx::Error::TypeNotFound { .. } => Kind::Corrupt,
                sqlx::Error::Configuration(_) => return StoreError::Config(message),
                _ => Kind::Refused,
            };
            (kind, message)
        }
    };
    match kind {
        Kind::Transient => StoreError::Unavailable(message),
        Kind::Refused => StoreError::Refused(message),
        Kind::Corrupt => StoreError::Corrupt(message),
    }
}

/// The newest schema version `migrator` knows.
pub(crate) fn newest(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The statements both dialects run, over one dialect's database.
#[derive(Debug)]
pub(crate) struct Sql<D>(PhantomData<D>);

impl<D: Dialect> Sql<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
    String: for<'q> Encode<'q, D::Db> + for<'r> Decode<'r, D::Db> + Type<D::Db>,
    i64: for<'q> Encode<'q, D::Db> + for<'r> Decode<'r, D::Db> + Type<D::Db>,
    bool: for<'r> Decode<'r, D::Db> + Type<D::Db>,
{
    /// Refuses a database migrated by a newer sluice, then brings the
    /// schema up to date. `database` names it in messages.
    pub async fn migrate(
        pool: &Pool<D::Db>,
        migrator: &Migrator,
        database: &str,
    ) -> Result<(), StoreError>
    where
        Conn<D>: Migrate,
    {
        let known = newest(migrator);
        let found = Self::applied(pool).await.map_err(|e| {
            D::classify(e, format_args!("reading the schema version of {database}"))
        })?;
        if found > known {
            pool.close().await;
            return Err(StoreError::SchemaTooNew { found, known });
        }
        migrator.run(pool).await.map_err(|e| match e {
            MigrateError::Execute(e) => D::classify(e, format_args!("migrating {database}")),
            MigrateError::ExecuteMigration(e, version) => D::classify(
                e,
                format_args!("migrating {database} to schema version {version}"),
            ),
            other => StoreError::Corrupt(format!("migrating {database}: {other}")),
        })
    }

    /// The newest migration recorded in the database; 0 for a new database.
    async fn applied(pool: &Pool<D::Db>) -> Result<i64, sqlx::Error> {
        Self::applied_on(&mut *pool.acquire().await?).await
    }

    /// [`Sql::applied`] on a connection.
    pub(crate) async fn applied_on(conn: &mut Conn<D>) -> Result<i64, sqlx::Error> {
        let migrated: i64 = sqlx::query_scalar(D::MIGRATIONS_TABLE)
            .fetch_one(&mut *conn)
            .await?;
        if migrated == 0 {
            return Ok(0);
        }
        sqlx::query_scalar(SCHEMA_VERSION).fetch_one(conn).await
    }

    /// Every row of a statement, each made a record by `record`.
    pub(crate) async fn all<R, T>(
        conn: &mut Conn<D>,
        sql: &str,
        table: &'static str,
        record: impl Fn(R) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError>
    where
        R: for<'r> FromRow<'r, <D::Db as Database>::Row> + Send + Unpin,
    {
        let rows = sqlx::query_as(sql)
            .fetch_all(conn)
            .await
            .map_err(D::reading(table))?;
        read::each(rows, record)
    }

    /// Reads a table page by page in key order, handing each page to
    /// `sink` while the next one is read (the database works on the next
    /// page while the sink takes this one in). A page is one document where
    /// the dialect reads it so (`document` turns a row of it into a
    /// record), else plain rows (`row` does); `key` is a record's key as
    /// the table stores it.
    pub(crate) async fn pages<P, J, T>(
        conn: &mut Conn<D>,
        table: &Paged,
        row: impl Fn(P) -> Result<T, StoreError>,
        document: impl Fn(J) -> Result<T, StoreError>,
        key: impl Fn(&T) -> Result<Vec<Key>, StoreError>,
        sink: &mut (dyn Sink<T> + '_),
    ) -> Result<(), StoreError>
    where
        P: for<'r> FromRow<'r, <D::Db as Database>::Row> + Send + Unpin,
        J: serde::de::DeserializeOwned,
        T: Send,
    {
        // Each page after the first starts after the greatest key read, so
        // that every page is one index range scan.
        let mut after: Option<Vec<Key>> = None;
        let mut read = None;
        loop {
            let sql = table.page(after.is_some());
            let next = Self::page(
                conn,
                table,
                &sql,
                after.as_deref().unwrap_or_default(),
                &row,
                &document,
            );
            let take = async {
                match read.take() {
                    Some(page) => sink.take(page).await,
                    None => Ok(()),
                }
            };
            let (page, taken) = tokio::join!(next, take);
            taken?;
            let (page, order) = page?;
            let greatest = match order {
                // The last row is the greatest as the database orders keys
                // (its collation, which need not be byte order).
                Order::Sorted => page.last().map(&key).transpose()?,
                // A document's rows may come in any order; SQLite compares
                // text byte by byte, as `Key` does.
                Order::Unsorted => {
                    let mut greatest = None;
                    for record in &page {
                        let key = key(record)?;
                        if greatest.as_ref().is_none_or(|greatest| key > *greatest) {
                            greatest = Some(key);
                        }
                    }
                    greatest
                }
            };
            let Some(greatest) = greatest else {
                return Ok(());
            };
            after = Some(greatest);
            read = Some(page);
        }
    }

    /// One page of a table (see [`Sql::pages`]), and how its rows come.
    async fn page<P, J, T>(
        conn: &mut Conn<D>,
        table: &Paged,
        sql: &str,
        after: &[Key],
        row: &impl Fn(P) -> Result<T, StoreError>,
        document: &impl Fn(J) -> Result<T, StoreError>,
    ) -> Result<(Vec<T>, Order), StoreError>
    where
        P: for<'r> FromRow<'r, <D::Db as Database>::Row> + Send + Unpin,
        J: serde::de::DeserializeOwned,
    {
        let rows = D::document(conn, table, sql, after)
            .await?
            .and_then(|text| serde_json::from_str::<Vec<J>>(&text).ok());
        if let Some(rows) = rows {
            return Ok((read::each(rows, document)?, Order::Unsorted));
        }
        let mut query = sqlx::query_as::<_, P>(sql);
        for key in after {
            query = match key {
                Key::Text(text) => query.bind(text.clone()),
                Key::Int(number) => query.bind(*number),
            };
        }
        let rows = query
            .bind(read::PAGE)
            .fetch_all(&mut *conn)
            .await
            .map_err(D::reading(table.table))?;
        Ok((read::each(rows, row)?, Order::Sorted))
    }

    pub async fn load_parts(
        store: &D,
        each: &mut (dyn FnMut(Part) + Send),
    ) -> Result<(), StoreError> {
        let mut tx = store
            .readers()
            .begin_with(D::BEGIN_LOAD)
            .await
            .map_err(|e| D::classify(e, "starting to load"))?;
        let conn = &mut *tx;
        let components = Self::all(conn, COMPONENTS, "components", read::component).await?;
        each(Part::Components(components));
        let rollouts = Self::all(conn, ROLLOUTS, "rollouts", read::rollout::<D::Time>).await?;
        each(Part::Rollouts(rollouts));
        let freeze = Self::all(conn, FREEZE, "freeze", read::freeze::<D::Time>).await?;
        each(Part::Freeze(freeze.into_iter().next()));
        let tokens = Self::all(conn, TOKENS, "tokens", read::token::<D::Time>).await?;
        each(Part::Tokens(tokens));
        let sessions = Self::all(
            conn,
            SESSIONS,
            "dashboard_sessions",
            read::session::<D::Time>,
        )
        .await?;
        each(Part::Sessions(sessions));
        let budget = Self::all(conn, BUDGET, "fleet_budget", read::budget::<D::Time>).await?;
        each(Part::Budget(budget.into_iter().next()));
        let pins = Self::all(conn, PINS, "pins", read::pin::<D::Time>).await?;
        each(Part::Pins(pins));
        // A document's times are text, which `String` reads as SQLite keeps it.
        Self::pages(
            conn,
            &HOSTS,
            read::host::<D::Time>,
            read::host_with_labels::<String>,
            page_key::host,
            &mut Handing {
                each: &mut *each,
                part: Part::Hosts,
            },
        )
        .await?;
        Self::pages(
            conn,
            &HOST_COMPONENTS,
            read::host_component::<D::Time>,
            read::host_component::<String>,
            page_key::host_component,
            &mut Handing {
                each: &mut *each,
                part: Part::HostComponents,
            },
        )
        .await?;
        Self::pages(
            conn,
            &ACTIVE_ROLLOUT_HOSTS,
            read::rollout_host,
            read::rollout_host,
            page_key::rollout_host,
            &mut Handing {
                each: &mut *each,
                part: Part::RolloutHosts,
            },
        )
        .await?;
        tx.rollback()
            .await
            .map_err(|e| D::classify(e, "ending the load"))?;
        Ok(())
    }

    pub async fn commit(store: &D, batch: &[Write]) -> Result<(), StoreError> {
        let Some(mut tx) = store.begin(batch).await? else {
            return Ok(());
        };
        if let Err(failure) = Self::apply(&mut tx, batch).await {
            // The batch leaves nothing behind. A failed rollback is not
            // worth reporting over the error that caused it: sqlx rolls back
            // again before the connection is next used.
            let _ = tx.rollback().await;
            return Err(Self::explain(store.writer(), batch, failure).await);
        }
        match tx.commit().await {
            Ok(()) => Ok(()),
            Err(e) if D::is_foreign_key_violation(&e) => {
                Err(Self::explain(store.writer(), batch, Failure::Dangling).await)
            }
            Err(e) => Err(D::classify(e, "committing")),
        }
    }

    pub async fn token(store: &D, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row: Option<read::TokenRow<D::Time>> = sqlx::query_as(TOKEN)
            .bind(hash.to_owned())
            .fetch_optional(store.readers())
            .await
            .map_err(D::reading("tokens"))?;
        row.map(read::token).transpose()
    }

    pub async fn tokens(store: &D) -> Result<Vec<TokenRecord>, StoreError> {
        let rows: Vec<read::TokenRow<D::Time>> = sqlx::query_as(TOKENS)
            .fetch_all(store.readers())
            .await
            .map_err(D::reading("tokens"))?;
        read::each(rows, read::token::<D::Time>)
    }

    pub async fn tokens_page(store: &D, page: &TokenPage) -> Result<Vec<TokenRecord>, StoreError>
    where
        Option<String>: for<'q> Encode<'q, D::Db> + Type<D::Db>,
    {
        let rows: Vec<read::TokenRow<D::Time>> = sqlx::query_as(TOKENS_PAGE)
            .bind(page.role.map(|role| role.as_str().to_owned()))
            .bind(page.from.clone())
            .bind(i64::from(page.limit))
            .fetch_all(store.readers())
            .await
            .map_err(D::reading("tokens"))?;
        read::each(rows, read::token::<D::Time>)
    }

    /// See [`Store::enroll`](crate::Store::enroll). The use is taken first
    /// (the UPDATE locks the enrollment token's row, so enrollments with one
    /// token take their turns and each sees the count the last one left),
    /// and given back by the rollback when the host turns out enrolled.
    pub async fn enroll(store: &D, e: &Enrollment) -> Result<Enrolled, StoreError> {
        let host = e.token.host.as_deref().ok_or_else(|| {
            StoreError::Refused("an enrollment's token must be bound to a host".to_owned())
        })?;
        let batch = [
            Write::Token(e.token.clone()),
            Write::Event(e.event.clone()),
            Write::Audit(e.audit.clone()),
        ];
        let Some(mut tx) = store.begin(&batch).await? else {
            return Err(StoreError::Refused(
                "an enrollment writes a token".to_owned(),
            ));
        };
        let outcome = Self::enrolling(&mut tx, e, host, &batch).await;
        match outcome {
            Ok(Enrolled::Done { uses_left }) => {
                tx.commit()
                    .await
                    .map_err(|err| D::classify(err, "committing an enrollment"))?;
                Ok(Enrolled::Done { uses_left })
            }
            other => {
                // A failed rollback is not worth reporting over the outcome:
                // sqlx rolls back again before the connection is next used.
                let _ = tx.rollback().await;
                other
            }
        }
    }

    async fn enrolling(
        conn: &mut Conn<D>,
        e: &Enrollment,
        host: &str,
        batch: &[Write],
    ) -> Result<Enrolled, StoreError> {
        D::lock_enrollment(conn, host).await?;
        let now = D::Time::store(e.now)
            .map_err(|err| StoreError::Refused(format!("an enrollment's time: {err}")))?;
        let taken: Option<i64> = sqlx::query_scalar(
            "UPDATE tokens SET uses_left = uses_left - 1, last_used_at = $2 \
             WHERE hash = $1 AND role = 'enroll' AND uses_left > 0 \
             AND (expires_at IS NULL OR expires_at > $2) RETURNING uses_left",
        )
        .bind(e.enroll_token.clone())
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|err| D::classify(err, "taking a use of an enrollment token"))?;
        let Some(uses_left) = taken else {
            // Why not: read the token as it stands.
            let row: Option<read::TokenRow<D::Time>> = sqlx::query_as(TOKEN)
                .bind(e.enroll_token.clone())
                .fetch_optional(&mut *conn)
                .await
                .map_err(D::reading("tokens"))?;
            let Some(token) = row.map(read::token).transpose()? else {
                return Ok(Enrolled::UnknownToken);
            };
            return Ok(match token {
                t if t.role != TokenRole::Enroll => Enrolled::UnknownToken,
                TokenRecord {
                    expires_at: Some(at),
                    ..
                } if at <= e.now => Enrolled::Expired(at),
                _ => Enrolled::UsedUp,
            });
        };
        let bound: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE host = $1")
            .bind(host.to_owned())
            .fetch_one(&mut *conn)
            .await
            .map_err(D::reading("tokens"))?;
        if bound > 0 {
            return Ok(Enrolled::AlreadyEnrolled);
        }
        if let Err(failure) = Self::apply(conn, batch).await {
            return Err(match failure {
                Failure::Store(err) => err,
                Failure::TakenName(_) | Failure::Dangling => {
                    StoreError::Refused(format!("enrolling host {host}"))
                }
            });
        }
        Ok(Enrolled::Done { uses_left })
    }

    pub async fn events(
        store: &D,
        rollout: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query_as(EVENTS)
            .bind(rollout.to_owned())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(store.readers())
            .await
            .map_err(D::reading("events"))?;
        read::each(rows, read::event::<D::Time>)
    }

    pub async fn events_after(
        store: &D,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query_as(EVENTS_AFTER)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(store.readers())
            .await
            .map_err(D::reading("events"))?;
        read::each(rows, read::event::<D::Time>)
    }

    pub async fn log_events(store: &D, query: &LogQuery) -> Result<Vec<StoredEvent>, StoreError>
    where
        Option<String>: for<'q> Encode<'q, D::Db> + Type<D::Db>,
        Option<i64>: for<'q> Encode<'q, D::Db> + Type<D::Db>,
    {
        let mut sql = LOG_EVENTS.to_owned();
        if !query.kinds.is_empty() {
            let places: Vec<String> = (0..query.kinds.len())
                .map(|index| format!("${}", index + 4))
                .collect();
            sql.push_str(&format!("AND kind IN ({}) ", places.join(", ")));
        }
        // Without a starting point, the newest events: read newest first,
        // handed back oldest first.
        let tail = query.after.is_none();
        let order = if tail { "DESC" } else { "ASC" };
        sql.push_str(&format!("ORDER BY seq {order} LIMIT $3"));
        let mut statement = sqlx::query_as(&sql)
            .bind(query.rollout.clone())
            .bind(query.after)
            .bind(i64::from(query.limit));
        for kind in &query.kinds {
            statement = statement.bind(kind.clone());
        }
        let rows = statement
            .fetch_all(store.readers())
            .await
            .map_err(D::reading("events"))?;
        let mut events = read::each(rows, read::event::<D::Time>)?;
        if tail {
            events.reverse();
        }
        Ok(events)
    }

    pub async fn audit(store: &D, query: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError>
    where
        Option<String>: for<'q> Encode<'q, D::Db> + Type<D::Db>,
        Option<i64>: for<'q> Encode<'q, D::Db> + Type<D::Db>,
        Option<D::Time>: for<'q> Encode<'q, D::Db> + Type<D::Db>,
    {
        let since = query
            .since
            .map(D::Time::store)
            .transpose()
            .map_err(|e| StoreError::Refused(format!("the audit's since: {e}")))?;
        // Without a starting point, the newest entries: read newest first,
        // handed back oldest first.
        let tail = query.since.is_none() && query.after.is_none();
        let order = if tail { "DESC" } else { "ASC" };
        let sql = format!("{AUDIT}ORDER BY seq {order} LIMIT $5");
        let rows = sqlx::query_as(&sql)
            .bind(query.actor.clone())
            .bind(query.kind.clone())
            .bind(since)
            .bind(query.after)
            .bind(i64::from(query.limit))
            .fetch_all(store.readers())
            .await
            .map_err(D::reading("audit"))?;
        let mut entries = read::each(rows, read::audit::<D::Time>)?;
        if tail {
            entries.reverse();
        }
        Ok(entries)
    }

    pub async fn add_samples(store: &D, samples: &[SampleRecord]) -> Result<(), StoreError> {
        if samples.is_empty() {
            return Ok(());
        }
        let rows = batch::samples(samples, D::Time::store)?;
        store.write_samples(&rows).await
    }

    pub async fn samples(store: &D, rollout: &str) -> Result<Vec<SampleRecord>, StoreError> {
        let rows = sqlx::query_as(SAMPLES)
            .bind(rollout.to_owned())
            .fetch_all(store.readers())
            .await
            .map_err(D::reading("rollout_samples"))?;
        read::each(rows, read::sample::<D::Time>)
    }

    pub async fn webhooks(store: &D) -> Result<Vec<StoredWebhook>, StoreError> {
        let rows: Vec<read::WebhookRow<D::Time>> = sqlx::query_as(WEBHOOKS)
            .fetch_all(store.readers())
            .await
            .map_err(D::reading("webhooks"))?;
        read::each(rows, read::webhook::<D::Time>)
    }

    pub async fn schema_version(store: &D) -> Result<i64, StoreError> {
        Self::applied(store.readers())
            .await
            .map_err(D::reading("_sqlx_migrations"))
    }

    /// Writes a batch, grouped by kind (see [`batch`]), inside the caller's
    /// transaction; each kind keeps the last write of a key (a multi-row
    /// upsert may not touch a row twice in PostgreSQL, and the last write
    /// wins anyway). Events and audit entries go last: PostgreSQL's numbers
    /// of both stay locked until the commit, so for as short a time as
    /// possible.
    async fn apply<'a>(conn: &mut Conn<D>, batch: &'a [Write]) -> Result<(), Failure<'a>> {
        let g = batch::group(batch);
        D::upsert_hosts(conn, &latest(&g.hosts, |h| h.id.as_str())).await?;
        let host_components = latest(&g.host_components, |c| {
            (c.host.as_str(), c.component.as_str())
        });
        D::upsert_host_components(conn, &host_components).await?;
        D::upsert_components(conn, &latest(&g.components, |c| c.name.as_str())).await?;
        // One rollout per statement (they are few), in batch order, so that
        // the unique-name rule meets them in that order.
        for rollout in &g.rollouts {
            Self::upsert_rollout(conn, rollout).await?;
        }
        let rollout_hosts = latest(&g.rollout_hosts, |rh| {
            (rh.rollout.as_str(), rh.host.as_str())
        });
        D::upsert_rollout_hosts(conn, &rollout_hosts).await?;
        if let Some(freeze) = g.freeze {
            Self::set_freeze(conn, freeze).await?;
        }
        D::upsert_tokens(conn, &latest(&g.tokens, |t| t.hash.as_str())).await?;
        Self::write_token_changes(conn, &g).await?;
        Self::write_sessions(conn, &g.sessions, &g.ended_sessions, g.sessions_expired).await?;
        let state_samples = latest(&g.state_samples, |s| (s.rollout.as_str(), s.at));
        Self::write_state_samples(conn, &state_samples).await?;
        if let Some(budget) = g.budget {
            Self::set_budget(conn, budget).await?;
        }
        for change in &g.pins {
            Self::write_pin(conn, *change).await?;
        }
        for change in &g.webhooks {
            Self::write_webhook(conn, *change).await?;
        }
        D::insert_events(conn, &g.events).await?;
        D::insert_audit(conn, &g.audit).await?;
        Ok(())
    }

    /// Tokens used (their last use moved later only), then revoked ones
    /// deleted, one by one (a batch holds a few), then those of revoked hosts.
    async fn write_token_changes(
        conn: &mut Conn<D>,
        g: &batch::Grouped<'_>,
    ) -> Result<(), StoreError> {
        for (hash, at) in &g.tokens_used {
            let at = D::Time::store(*at).map_err(|e| {
                StoreError::Refused(format!("token {} last_used_at: {e}", token_key(hash)))
            })?;
            sqlx::query(
                "UPDATE tokens SET last_used_at = $2 \
                 WHERE hash = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
            )
            .bind((*hash).to_owned())
            .bind(at)
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                D::classify(
                    e,
                    format_args!("writing the use of token {}", token_key(hash)),
                )
            })?;
        }
        for hash in &g.revoked_tokens {
            sqlx::query("DELETE FROM tokens WHERE hash = $1")
                .bind((*hash).to_owned())
                .execute(&mut *conn)
                .await
                .map_err(|e| D::classify(e, format_args!("revoking token {}", token_key(hash))))?;
        }
        for host in &g.revoked_hosts {
            sqlx::query("DELETE FROM tokens WHERE host = $1")
                .bind((*host).to_owned())
                .execute(&mut *conn)
                .await
                .map_err(|e| D::classify(e, format_args!("revoking the tokens of host {host}")))?;
        }
        Ok(())
    }

    /// Samples of hosts by state, one statement each (a batch holds one per
    /// rollout it changed); one with a stored sample's key replaces it.
    pub(crate) async fn write_state_samples(
        conn: &mut Conn<D>,
        samples: &[&StateSampleRecord],
    ) -> Result<(), StoreError> {
        for s in samples {
            let key = || format!("state sample of rollout {} at {}", s.rollout, s.at);
            let at = D::Time::store(s.at)
                .map_err(|e| StoreError::Refused(format!("{} at: {e}", key())))?;
            let counts = serde_json::to_string(&s.counts)
                .map_err(|e| StoreError::Refused(format!("encoding {}: {e}", key())))?;
            sqlx::query(&format!(
                "INSERT INTO rollout_state_samples (rollout, at, counts) VALUES ($1, $2, $3{}) \
                 ON CONFLICT (rollout, at) DO UPDATE SET counts = excluded.counts",
                D::AS_JSON
            ))
            .bind(s.rollout.clone())
            .bind(at)
            .bind(counts)
            .execute(&mut *conn)
            .await
            .map_err(|e| D::classify(e, format_args!("writing {}", key())))?;
        }
        Ok(())
    }

    pub async fn state_samples(
        store: &D,
        rollout: &str,
    ) -> Result<Vec<StateSampleRecord>, StoreError> {
        let rows = sqlx::query_as(STATE_SAMPLES)
            .bind(rollout.to_owned())
            .fetch_all(store.readers())
            .await
            .map_err(D::reading("rollout_state_samples"))?;
        read::each(rows, read::state_sample::<D::Time>)
    }

    /// The dashboard's sessions: the new ones, one statement each (a batch
    /// holds a sign-in or two), then the ended ones deleted, then those
    /// expired by `expired` (see `batch`).
    pub(crate) async fn write_sessions(
        conn: &mut Conn<D>,
        sessions: &[&SessionRecord],
        ended: &[&str],
        expired: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        for s in latest(sessions, |s| s.hash.as_str()) {
            let key = || format!("session {}", token_key(&s.hash));
            let time = |at, column: &str| {
                D::Time::store(at)
                    .map_err(|e| StoreError::Refused(format!("{} {column}: {e}", key())))
            };
            sqlx::query(
                "INSERT INTO dashboard_sessions (hash, token, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (hash) DO UPDATE SET token = excluded.token, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at",
            )
            .bind(s.hash.clone())
            .bind(s.token.clone())
            .bind(time(s.created_at, "created_at")?)
            .bind(time(s.expires_at, "expires_at")?)
            .execute(&mut *conn)
            .await
            .map_err(|e| D::classify(e, format_args!("writing {}", key())))?;
        }
        for hash in ended {
            sqlx::query("DELETE FROM dashboard_sessions WHERE hash = $1")
                .bind((*hash).to_owned())
                .execute(&mut *conn)
                .await
                .map_err(|e| D::classify(e, format_args!("ending session {}", token_key(hash))))?;
        }
        if let Some(at) = expired {
            let before = D::Time::store(at).map_err(|e| {
                StoreError::Refused(format!("the expiry of dashboard sessions: {e}"))
            })?;
            sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
                .bind(before)
                .execute(&mut *conn)
                .await
                .map_err(|e| D::classify(e, "deleting expired dashboard sessions"))?;
        }
        Ok(())
    }

    pub(crate) async fn upsert_rollout<'a>(
        conn: &mut Conn<D>,
        r: &'a RolloutRecord,
    ) -> Result<(), Failure<'a>> {
        let time = |at, column: &str| {
            D::Time::store(at)
                .map_err(|e| StoreError::Refused(format!("rollout {} {column}: {e}", r.id)))
        };
        let result = sqlx::query(&format!(
            "INSERT INTO rollouts (id, name, component, state, plan, header, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6{}, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET \
             name = excluded.name, component = excluded.component, state = excluded.state, \
             plan = excluded.plan, header = excluded.header, \
             created_at = excluded.created_at, updated_at = excluded.updated_at",
            D::AS_JSON
        ))
        .bind(r.id.clone())
        .bind(r.name.clone())
        .bind(r.component.clone())
        .bind(r.state.clone())
        .bind(r.plan.clone())
        .bind(r.header.to_string())
        .bind(time(r.created_at, "created_at")?)
        .bind(time(r.updated_at, "updated_at")?)
        .execute(&mut *conn)
        .await;
        match result {
            Ok(_) => Ok(()),
            // The caller rolls back, then looks up which rollout holds the name.
            Err(e) if D::is_taken_name(&e) => Err(Failure::TakenName(r)),
            Err(e) => Err(Failure::Store(D::classify(
                e,
                format_args!("writing rollout {}", r.id),
            ))),
        }
    }

    pub(crate) async fn set_freeze(
        conn: &mut Conn<D>,
        freeze: Option<&FreezeRecord>,
    ) -> Result<(), StoreError> {
        let query = match freeze {
            None => sqlx::query("DELETE FROM \"freeze\""),
            Some(f) => sqlx::query(
                "INSERT INTO \"freeze\" (id, actor, reason, since) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET \
                 actor = excluded.actor, reason = excluded.reason, since = excluded.since",
            )
            .bind(f.actor.clone())
            .bind(f.reason.clone())
            .bind(
                D::Time::store(f.since)
                    .map_err(|e| StoreError::Refused(format!("the freeze's since: {e}")))?,
            ),
        };
        query
            .execute(&mut *conn)
            .await
            .map_err(|e| D::classify(e, "writing the freeze"))?;
        Ok(())
    }

    pub(crate) async fn set_budget(
        conn: &mut Conn<D>,
        budget: Option<&BudgetRecord>,
    ) -> Result<(), StoreError> {
        let query = match budget {
            None => sqlx::query("DELETE FROM fleet_budget"),
            Some(b) => sqlx::query(
                "INSERT INTO fleet_budget (id, max_in_flight, per_stratum, spread, actor, reason, since) \
                 VALUES (1, $1, NULLIF($2, ''), $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET \
                 max_in_flight = excluded.max_in_flight, per_stratum = excluded.per_stratum, \
                 spread = excluded.spread, actor = excluded.actor, reason = excluded.reason, \
                 since = excluded.since",
            )
            .bind(b.max_in_flight.clone())
            // `None` as the empty text, which no amount is (the generic
            // dialect binds no optional text).
            .bind(b.per_stratum.clone().unwrap_or_default())
            .bind(
                serde_json::to_string(&b.spread)
                    .map_err(|e| StoreError::Refused(format!("the budget's spread: {e}")))?,
            )
            .bind(b.actor.clone())
            .bind(b.reason.clone())
            .bind(
                D::Time::store(b.since)
                    .map_err(|e| StoreError::Refused(format!("the budget's since: {e}")))?,
            ),
        };
        query
            .execute(&mut *conn)
            .await
            .map_err(|e| D::classify(e, "writing the budget"))?;
        Ok(())
    }

    /// Sets or removes one pin (a batch holds a few).
    pub(crate) async fn write_pin(
        conn: &mut Conn<D>,
        change: batch::PinChange<'_>,
    ) -> Result<(), StoreError> {
        let (query, what) = match change {
            batch::PinChange::Removed(host, component) => (
                sqlx::query("DELETE FROM pins WHERE host = $1 AND component = $2")
                    .bind(host.to_owned())
                    .bind(component.to_owned()),
                format!("removing the pin of {host}/{component}"),
            ),
            batch::PinChange::Set(p) => {
                let key = format!("{}/{}", p.host, p.component);
                let time = |at, column: &str| {
                    D::Time::store(at)
                        .map_err(|e| StoreError::Refused(format!("pin {key} {column}: {e}")))
                };
                let expires_at = time(p.expires_at, "expires_at")?;
                let since = time(p.since, "since")?;
                (
                    sqlx::query(
                        "INSERT INTO pins (host, component, version, expires_at, actor, reason, since) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (host, component) DO UPDATE SET \
                         version = excluded.version, expires_at = excluded.expires_at, \
                         actor = excluded.actor, reason = excluded.reason, since = excluded.since",
                    )
                    .bind(p.host.clone())
                    .bind(p.component.clone())
                    .bind(p.version.clone())
                    .bind(expires_at)
                    .bind(p.actor.clone())
                    .bind(p.reason.clone())
                    .bind(since),
                    format!("writing pin {key}"),
                )
            }
        };
        query
            .execute(&mut *conn)
            .await
            .map_err(|e| D::classify(e, what))?;
        Ok(())
    }

    /// Adds or removes a webhook, or records its delivery's progress (a
    /// batch holds a few). A webhook is added with its delivery after the
    /// last event stored: the batch's own events are written after it.
    pub(crate) async fn write_webhook(
        conn: &mut Conn<D>,
        change: batch::WebhookChange<'_>,
    ) -> Result<(), StoreError> {
        let (query, what) = match change {
            batch::WebhookChange::Removed(id) => (
                sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id.to_owned()),
                format!("removing webhook {id}"),
            ),
            batch::WebhookChange::Added(w) => {
                let created_at = D::Time::store(w.created_at).map_err(|e| {
                    StoreError::Refused(format!("webhook {} created_at: {e}", w.id))
                })?;
                let events = serde_json::to_string(&w.events)
                    .map_err(|e| StoreError::Refused(format!("webhook {} events: {e}", w.id)))?;
                (
                    sqlx::query(
                        "INSERT INTO webhooks (id, url, events, format, secret, created_at, \
                         created_by, delivered_seq, failures) \
                         VALUES ($1, $2, $3, $4, NULLIF($5, ''), $6, $7, \
                         (SELECT COALESCE(MAX(seq), 0) FROM events), 0)",
                    )
                    .bind(w.id.clone())
                    .bind(w.url.clone())
                    .bind(events)
                    .bind(w.format.clone())
                    // `None` as the empty text, which no secret is (the
                    // generic dialect binds no optional text here).
                    .bind(w.secret.clone().unwrap_or_default())
                    .bind(created_at)
                    .bind(w.created_by.clone()),
                    format!("writing webhook {}", w.id),
                )
            }
            batch::WebhookChange::Delivery(id, d) => {
                return Self::write_delivery(conn, id, d).await;
            }
        };
        query
            .execute(&mut *conn)
            .await
            .map_err(|e| D::classify(e, what))?;
        Ok(())
    }

    /// A webhook's delivery state: the cursor and failures, then each of the
    /// optional columns set or cleared by a statement of its own (the
    /// generic dialect binds no optional value here).
    pub(crate) async fn write_delivery(
        conn: &mut Conn<D>,
        id: &str,
        d: &WebhookDelivery,
    ) -> Result<(), StoreError> {
        let what = || format!("writing the delivery of webhook {id}");
        let time = |at: Timestamp| {
            D::Time::store(at)
                .map_err(|e| StoreError::Refused(format!("webhook {id} delivery time: {e}")))
        };
        sqlx::query(
            "UPDATE webhooks SET delivered_seq = $2, failures = $3, \
             last_error = NULLIF($4, '') WHERE id = $1",
        )
        .bind(id.to_owned())
        .bind(d.delivered_seq)
        .bind(d.failures)
        .bind(d.last_error.clone().unwrap_or_default())
        .execute(&mut *conn)
        .await
        .map_err(|e| D::classify(e, what()))?;
        let times = [
            ("last_attempt_at", d.last_attempt_at),
            ("last_success_at", d.last_success_at),
        ];
        for (column, at) in times {
            let set = format!("UPDATE webhooks SET {column} = $2 WHERE id = $1");
            let clear = format!("UPDATE webhooks SET {column} = NULL WHERE id = $1");
            let query = match at {
                Some(at) => sqlx::query(&set).bind(id.to_owned()).bind(time(at)?),
                None => sqlx::query(&clear).bind(id.to_owned()),
            };
            query
                .execute(&mut *conn)
                .await
                .map_err(|e| D::classify(e, what()))?;
        }
        Ok(())
    }

    /// The error of a failed batch, once its transaction is rolled back:
    /// for a taken rollout name, the rollout holding it; for a foreign key,
    /// the writes naming a host or rollout that does not exist.
    async fn explain(pool: &Pool<D::Db>, batch: &[Write], failure: Failure<'_>) -> StoreError {
        match failure {
            Failure::Store(e) => e,
            Failure::TakenName(rollout) => {
                match sqlx::query_scalar::<_, String>("SELECT id FROM rollouts WHERE name = $1")
                    .bind(rollout.name.clone())
                    .fetch_optional(pool)
                    .await
                {
                    Ok(holder) => {
                        StoreError::Refused(batch::taken_name(rollout, holder.as_deref()))
                    }
                    Err(e) => D::classify(e, "reading rollouts"),
                }
            }
            Failure::Dangling => {
                let g = batch::group(batch);
                let (hosts, rollouts) = g.references();
                let missing_hosts = match Self::missing(pool, "hosts", &hosts).await {
                    Ok(missing) => missing,
                    Err(e) => return e,
                };
                let missing_rollouts = match Self::missing(pool, "rollouts", &rollouts).await {
                    Ok(missing) => missing,
                    Err(e) => return e,
                };
                StoreError::Refused(
                    g.dangling(&missing_hosts, &missing_rollouts)
                        .unwrap_or_else(|| DANGLING.to_owned()),
                )
            }
        }
    }

    /// Which of `ids` have no row in `table`.
    async fn missing<'a>(
        pool: &Pool<D::Db>,
        table: &'static str,
        ids: &BTreeSet<&'a str>,
    ) -> Result<BTreeSet<&'a str>, StoreError> {
        let wanted: Vec<&str> = ids.iter().copied().collect();
        let mut found = HashSet::new();
        for chunk in wanted.chunks(IDS_PER_STATEMENT) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT id FROM {table} WHERE id IN ({})", params.join(", "));
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for id in chunk {
                query = query.bind((*id).to_owned());
            }
            let rows = query.fetch_all(pool).await.map_err(D::reading(table))?;
            found.extend(rows);
        }
        Ok(wanted
            .into_iter()
            .filter(|id| !found.contains(*id))
            .collect())
    }
}

/// Implements [`Store`](crate::Store) for a [`Dialect`] by the statements
/// of [`Sql`]. A macro rather than a generic impl: that would state sqlx's
/// bounds a second time, as Rust does not carry them over from `Sql`'s impl.
macro_rules! store {
    ($dialect:ty) => {
        #[async_trait::async_trait]
        impl $crate::Store for $dialect {
            async fn load_parts(
                &self,
                each: &mut (dyn FnMut($crate::Part) + Send),
            ) -> Result<(), $crate::StoreError> {
                $crate::sql::Sql::load_parts(self, each).await
            }

            async fn commit(&self, batch: &[$crate::Write]) -> Result<(), $crate::StoreError> {
                $crate::sql::Sql::commit(self, batch).await
            }

            async fn token(
                &self,
                hash: &str,
            ) -> Result<Option<$crate::TokenRecord>, $crate::StoreError> {
                $crate::sql::Sql::token(self, hash).await
            }

            async fn tokens(&self) -> Result<Vec<$crate::TokenRecord>, $crate::StoreError> {
                $crate::sql::Sql::tokens(self).await
            }

            async fn tokens_page(
                &self,
                page: &$crate::TokenPage,
            ) -> Result<Vec<$crate::TokenRecord>, $crate::StoreError> {
                $crate::sql::Sql::tokens_page(self, page).await
            }

            async fn enroll(
                &self,
                enrollment: &$crate::Enrollment,
            ) -> Result<$crate::Enrolled, $crate::StoreError> {
                $crate::sql::Sql::enroll(self, enrollment).await
            }

            async fn audit(
                &self,
                query: &$crate::AuditQuery,
            ) -> Result<Vec<$crate::StoredAudit>, $crate::StoreError> {
                $crate::sql::Sql::audit(self, query).await
            }

            async fn events(
                &self,
                rollout: &str,
                after: i64,
                limit: u32,
            ) -> Result<Vec<$crate::StoredEvent>, $crate::StoreError> {
                $crate::sql::Sql::events(self, rollout, after, limit).await
            }

            async fn events_after(
                &self,
                after: i64,
                limit: u32,
            ) -> Result<Vec<$crate::StoredEvent>, $crate::StoreError> {
                $crate::sql::Sql::events_after(self, after, limit).await
            }

            async fn log_events(
                &self,
                query: &$crate::LogQuery,
            ) -> Result<Vec<$crate::StoredEvent>, $crate::StoreError> {
                $crate::sql::Sql::log_events(self, query).await
            }

            async fn add_samples(
                &self,
                samples: &[$crate::SampleRecord],
            ) -> Result<(), $crate::StoreError> {
                $crate::sql::Sql::add_samples(self, samples).await
            }

            async fn samples(
                &self,
                rollout: &str,
            ) -> Result<Vec<$crate::SampleRecord>, $crate::StoreError> {
                $crate::sql::Sql::samples(self, rollout).await
            }

            async fn state_samples(
                &self,
                rollout: &str,
            ) -> Result<Vec<$crate::StateSampleRecord>, $crate::StoreError> {
                $crate::sql::Sql::state_samples(self, rollout).await
            }

            async fn webhooks(&self) -> Result<Vec<$crate::StoredWebhook>, $crate::StoreError> {
                $crate::sql::Sql::webhooks(self).await
            }

            async fn schema_version(&self) -> Result<i64, $crate::StoreError> {
                $crate::sql::Sql::schema_version(self).await
            }
        }
    };
}

pub(crate) use store;
