//! `sluice db copy`: an embedded install (SQLite in a data directory)
//! copied into an empty PostgreSQL database, where its rollouts go on.
//!
//! What is copied: every row of every table the server keeps — components,
//! rollouts, the freeze, tokens, dashboard sessions, the change budget, pins, webhooks, hosts, host components, the host records
//! of every rollout (terminal ones too, which `load` leaves out), events,
//! samples and the audit log — as the store's records, so that every stored value is
//! parsed on the way (one that does not parse fails the copy naming its
//! table, row and column) and the engine's JSON is kept, not interpreted.
//! Not copied: the leader lease and the replicas, which only PostgreSQL
//! has; the servers of the new cluster elect their leader.
//!
//! Events keep their sequence numbers, so that a reader paging a rollout's
//! events with `after` carries on where it was, and the PostgreSQL event
//! sequence (`event_seq`) continues after the greatest number SQLite ever
//! handed out (`sqlite_sequence`, which never goes back). The audit log
//! likewise keeps its numbers, and `audit_seq` continues after them.
//!
//! Memory stays bounded whatever the size of the install: each table is
//! read in pages in key order ([`Sql::pages`], SQLite's pages as one JSON
//! document), a page written while the next one is read. Afterwards each
//! table's rows in the target are counted against those read, and the
//! tables analyzed, so that the first server to load them plans with their
//! real sizes.
//!
//! The source must be alone: it is opened with `locking_mode=EXCLUSIVE`
//! (see [`sqlite::open_alone`]), which fails at once while a server (any
//! process) has the database open, and keeps any server from opening it
//! until the copy ends. It is neither created nor migrated: its schema
//! version must be this binary's (an older one is migrated by starting
//! this sluice's server on it once, a newer one needs a newer sluice).
//!
//! The target is all or nothing: one PostgreSQL transaction. A target with
//! rows in any table (sluice's or not) is refused before its schema is
//! touched; then it is migrated, and the copy's transaction locks every
//! table and checks again, so that two copies, or a server starting on the
//! target meanwhile, wait for the copy instead of mixing with it.

use std::path::Path;
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection as _;

use crate::postgres::{self, PgTime};
use crate::read::StoredTime as _;
use crate::sql::{self, page_key, Dialect, Key, Paged, Sink, Sql};
use crate::sqlite::{self, SqliteStore};
use crate::{
    batch, read, ComponentRecord, HostComponentRecord, HostRecord, PgStore, RolloutHostRecord,
    RolloutRecord, SampleRecord, SessionRecord, StateSampleRecord, StoreError, StoredAudit,
    StoredEvent, TokenRecord,
};

/// How long the copy waits for the target's tables (another copy, a
/// server's transaction) before giving up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// What a copy wrote into one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: &'static str,
    pub rows: u64,
}

/// Why a copy did not happen; nothing was written to the target.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// There is no embedded install to copy where the caller said.
    #[error("{0}")]
    NoSource(String),
    /// Another process (a server) has the source database open.
    #[error(
        "{} is in use by another process, such as a sluice server running on {}; \
         stop it first: the copy needs the database to itself",
        path.display(),
        data_dir.display()
    )]
    SourceInUse {
        path: std::path::PathBuf,
        data_dir: std::path::PathBuf,
    },
    /// The source's schema is not this binary's.
    #[error("{}", schema_mismatch(path, *found, *known))]
    SourceSchema {
        path: std::path::PathBuf,
        found: i64,
        known: i64,
    },
    /// The target holds rows.
    #[error(
        "{database} is not empty: table {table} holds rows; \
         copy into an empty database (CREATE DATABASE a new one)"
    )]
    TargetNotEmpty { database: String, table: String },
    /// Reading the source or writing the target failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn schema_mismatch(path: &Path, found: i64, known: i64) -> String {
    let path = path.display();
    if found < known {
        format!(
            "{path} is at schema version {found}, this sluice's is {known}: start this \
             sluice's server on it once (sluice server --data-dir DIR) to migrate it, stop it, \
             then copy"
        )
    } else {
        format!(
            "{path} was migrated by a newer sluice (schema version {found}, this one knows up \
             to {known}): copy with that sluice, or upgrade this one"
        )
    }
}

/// Copies the embedded install in `data_dir` into the empty PostgreSQL
/// database at `url` (see the module's documentation), calling `progress`
/// as each table is written (not yet committed); returns what it copied,
/// table by table, once committed. Messages name the database without its
/// password.
pub async fn sqlite_to_postgres(
    data_dir: &Path,
    url: &str,
    progress: &mut (dyn FnMut(&Copied) + Send),
) -> Result<Vec<Copied>, CopyError> {
    let mut source = open_source(data_dir).await?;
    let copied = match PgStore::connect(url).await {
        Ok(target) => {
            let copied = copy_into(&mut source, &target, progress).await;
            target.close().await;
            copied
        }
        Err(e) => Err(e.into()),
    };
    // Ends the read and lets the database go (the last connection's close
    // checkpoints its log, changing nothing it holds).
    let closed = async {
        sqlx::query("ROLLBACK").execute(&mut source).await?;
        source.close().await
    };
    let closed = closed
        .await
        .map_err(|e| sqlite::classify(e, "closing the source"));
    let copied = copied?;
    closed?;
    Ok(copied)
}

/// The source database in `data_dir`, held alone, at this binary's schema.
async fn open_source(data_dir: &Path) -> Result<SqliteConnection, CopyError> {
    if !data_dir.is_dir() {
        return Err(CopyError::NoSource(format!(
            "{} is not a directory; name the data directory of the embedded install \
             (sluice server --data-dir)",
            data_dir.display()
        )));
    }
    let path = data_dir.join(sqlite::FILE_NAME);
    if !path.is_file() {
        return Err(CopyError::NoSource(format!(
            "{} holds no sluice database ({} does not exist); name the data directory \
             of the embedded install (sluice server --data-dir)",
            data_dir.display(),
            sqlite::FILE_NAME
        )));
    }
    let refused = |e: sqlx::Error| {
        if sqlite::is_busy(&e) {
            CopyError::SourceInUse {
                path: path.clone(),
                data_dir: data_dir.to_path_buf(),
            }
        } else {
            sqlite::classify(e, format_args!("opening {}", path.display())).into()
        }
    };
    let mut conn = sqlite::open_alone(&path).await.map_err(refused)?;
    let found = Sql::<SqliteStore>::applied_on(&mut conn).await;
    let known = sqlite::known_schema_version();
    match found {
        Ok(found) if found == known => Ok(conn),
        found => {
            // Lets the database go before saying why, so that the caller
            // may act on it at once.
            let _ = conn.close().await;
            Err(match found {
                Ok(found) => CopyError::SourceSchema { path, found, known },
                Err(e) => refused(e),
            })
        }
    }
}

/// Copies the source into `target`: refuses a target with rows, migrates
/// it, then writes everything in one transaction.
async fn copy_into(
    source: &mut SqliteConnection,
    target: &PgStore,
    progress: &mut (dyn FnMut(&Copied) + Send),
) -> Result<Vec<Copied>, CopyError> {
    let database = target.url();
    {
        let mut conn = target
            .writer()
            .acquire()
            .await
            .map_err(|e| postgres::classify(e, format_args!("connecting to {database}")))?;
        let tables = tables(&mut conn, database).await?;
        refuse_rows(&mut conn, database, &tables).await?;
    }
    target.migrate().await?;

    let mut tx =
        target.writer().begin().await.map_err(|e| {
            postgres::classify(e, format_args!("starting the copy into {database}"))
        })?;
    lock(&mut tx, database).await?;
    let copied = every_table(source, &mut tx, progress).await?;
    // Statistics of the tables as they are now, committed with them, so
    // that the first server to load them plans with their real sizes.
    // Quoted: FREEZE is a keyword in PostgreSQL.
    let tables: Vec<String> = copied.iter().map(|c| format!("\"{}\"", c.table)).collect();
    sqlx::query(&format!("ANALYZE {}", tables.join(", ")))
        .execute(&mut *tx)
        .await
        .map_err(|e| postgres::classify(e, format_args!("analyzing the copy in {database}")))?;
    tx.commit()
        .await
        .map_err(|e| postgres::classify(e, format_args!("committing the copy into {database}")))?;
    Ok(copied)
}

/// Copies every table, in the target's transaction.
async fn every_table(
    source: &mut SqliteConnection,
    tx: &mut PgConnection,
    progress: &mut (dyn FnMut(&Copied) + Send),
) -> Result<Vec<Copied>, StoreError> {
    let mut copied = Vec::new();
    let mut done = |table: Copied| {
        progress(&table);
        copied.push(table);
    };
    let component = read::component;
    let name = |c: &ComponentRecord| Ok(vec![Key::Text(c.name.clone())]);
    done(table(source, tx, &COMPONENTS, component, component, name).await?);
    let rollout = read::rollout::<String>;
    let id = |r: &RolloutRecord| Ok(vec![Key::Text(r.id.clone())]);
    done(table(source, tx, &ROLLOUTS, rollout, rollout, id).await?);
    done(freeze(source, tx).await?);
    let token = read::token::<String>;
    let hash = |t: &TokenRecord| Ok(vec![Key::Text(t.hash.clone())]);
    done(table(source, tx, &TOKENS, token, token, hash).await?);
    let session = read::session::<String>;
    let hash = |s: &SessionRecord| Ok(vec![Key::Text(s.hash.clone())]);
    done(table(source, tx, &SESSIONS, session, session, hash).await?);
    done(fleet_operations_budget(source, tx).await?);
    done(pins(source, tx).await?);
    // A document's times are text, which `String` reads as SQLite keeps it.
    let (host, labelled) = (read::host::<String>, read::host_with_labels::<String>);
    done(table(source, tx, &sql::HOSTS, host, labelled, page_key::host).await?);
    let component = read::host_component::<String>;
    let key = page_key::host_component;
    done(table(source, tx, &sql::HOST_COMPONENTS, component, component, key).await?);
    let (record, key) = (read::rollout_host, page_key::rollout_host);
    done(table(source, tx, &ROLLOUT_HOSTS, record, record, key).await?);
    let event = read::event::<String>;
    let seq = |e: &StoredEvent| Ok(vec![Key::Int(e.seq)]);
    done(table(source, tx, &EVENTS, event, event, seq).await?);
    continue_events(source, tx).await?;
    let sample = read::sample::<String>;
    done(table(source, tx, &SAMPLES, sample, sample, sample_key).await?);
    let entry = read::audit::<String>;
    let seq = |e: &StoredAudit| Ok(vec![Key::Int(e.seq)]);
    done(table(source, tx, &AUDIT, entry, entry, seq).await?);
    continue_audit(source, tx).await?;
    done(webhooks(source, tx).await?);
    let state_sample = read::state_sample::<String>;
    let key = state_sample_key;
    done(table(source, tx, &STATE_SAMPLES, state_sample, state_sample, key).await?);
    Ok(copied)
}

// ---- the target: empty, locked ----

/// Every table of the target's schema, its name and its name quoted for
/// SQL, but sqlx's record of migrations, `event_seq` and `audit_seq` (one
/// row each from the start; [`continue_events`] and [`continue_audit`] set
/// them).
async fn tables(
    conn: &mut PgConnection,
    database: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    sqlx::query_as(
        "SELECT tablename::text, format('%I', tablename) FROM pg_catalog.pg_tables \
         WHERE schemaname = current_schema() AND tablename NOT IN ('_sqlx_migrations', 'event_seq', 'audit_seq') \
         ORDER BY tablename",
    )
    .fetch_all(conn)
    .await
    .map_err(|e| postgres::classify(e, format_args!("listing the tables of {database}")))
}

/// Refuses a target with a row in any of `tables`.
async fn refuse_rows(
    conn: &mut PgConnection,
    database: &str,
    tables: &[(String, String)],
) -> Result<(), CopyError> {
    for (table, quoted) in tables {
        let any: bool = sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM {quoted})"))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| postgres::classify(e, format_args!("reading {table} of {database}")))?;
        if any {
            return Err(CopyError::TargetNotEmpty {
                database: database.to_owned(),
                table: table.clone(),
            });
        }
    }
    Ok(())
}

/// Locks every table of the migrated target until the copy ends, then
/// checks that none holds a row.
async fn lock(tx: &mut PgConnection, database: &str) -> Result<(), CopyError> {
    let tables = tables(tx, database).await?;
    let quoted: Vec<&str> = tables.iter().map(|(_, quoted)| quoted.as_str()).collect();
    let locking = |e| {
        postgres::classify(
            e,
            format_args!(
                "locking the tables of {database} (another copy, or a server, is using it)"
            ),
        )
    };
    sqlx::query(&format!(
        "SET LOCAL lock_timeout = '{}ms'",
        LOCK_TIMEOUT.as_millis()
    ))
    .execute(&mut *tx)
    .await
    .map_err(locking)?;
    sqlx::query(&format!(
        "LOCK TABLE {}, event_seq, audit_seq IN ACCESS EXCLUSIVE MODE",
        quoted.join(", ")
    ))
    .execute(&mut *tx)
    .await
    .map_err(locking)?;
    refuse_rows(tx, database, &tables).await
}

// ---- the tables ----

const COMPONENTS: Paged = Paged {
    table: "components",
    columns: "name, stable_version",
    from: "components",
    filter: None,
    key: &["name"],
    document: "name, stable_version",
};

const ROLLOUTS: Paged = Paged {
    table: "rollouts",
    columns: "id, name, component, state, plan, CAST(header AS TEXT) AS header, \
              created_at, updated_at",
    from: "rollouts",
    filter: None,
    key: &["id"],
    document: "id, name, component, state, plan, header, created_at, updated_at",
};

const TOKENS: Paged = Paged {
    table: "tokens",
    columns: sql::token_columns!(),
    from: "tokens",
    filter: None,
    key: &["hash"],
    document: sql::token_columns!(),
};

/// Expired ones too, as they are: the server deletes them.
const SESSIONS: Paged = Paged {
    table: "dashboard_sessions",
    columns: "hash, token, created_at, expires_at",
    from: "dashboard_sessions",
    filter: None,
    key: &["hash"],
    document: "hash, token, created_at, expires_at",
};

/// The host records of every rollout, over or not.
const ROLLOUT_HOSTS: Paged = Paged {
    table: "rollout_hosts",
    columns: "rollout, host, CAST(record AS TEXT) AS record",
    from: "rollout_hosts",
    filter: None,
    key: &["rollout", "host"],
    document: "rollout, host, record",
};

const EVENTS: Paged = Paged {
    table: "events",
    columns: "seq, rollout, at, actor, kind, CAST(data AS TEXT) AS data",
    from: "events",
    filter: None,
    key: &["seq"],
    document: "seq, rollout, at, actor, kind, data",
};

const SAMPLES: Paged = Paged {
    table: "rollout_samples",
    columns: "rollout, at, CAST(versions AS TEXT) AS versions",
    from: "rollout_samples",
    filter: None,
    key: &["rollout", "at"],
    document: "rollout, at, versions",
};

const AUDIT: Paged = Paged {
    table: "audit",
    columns: sql::audit_columns!(),
    from: "audit",
    filter: None,
    key: &["seq"],
    document: "seq, at, actor_id, actor_name, actor_role, source, kind, target, reason, data",
};

/// A sample's key as SQLite stores it: its time as canonical text.
fn sample_key(s: &SampleRecord) -> Result<Vec<Key>, StoreError> {
    let at = sqlite::time_text(s.at).map_err(read::corrupt(
        "rollout_samples",
        &format!("{}/{}", s.rollout, s.at),
        "at",
    ))?;
    Ok(vec![Key::Text(s.rollout.clone()), Key::Text(at)])
}

const STATE_SAMPLES: Paged = Paged {
    table: "rollout_state_samples",
    columns: "rollout, at, CAST(counts AS TEXT) AS counts",
    from: "rollout_state_samples",
    filter: None,
    key: &["rollout", "at"],
    document: "rollout, at, counts",
};

/// A state sample's key as SQLite stores it: its time as canonical text.
fn state_sample_key(s: &StateSampleRecord) -> Result<Vec<Key>, StoreError> {
    let at = sqlite::time_text(s.at).map_err(read::corrupt(
        "rollout_state_samples",
        &format!("{}/{}", s.rollout, s.at),
        "at",
    ))?;
    Ok(vec![Key::Text(s.rollout.clone()), Key::Text(at)])
}

/// Copies one table, page by page; checks that the target then holds as
/// many rows as were read.
async fn table<P, J, T: Target>(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    table: &Paged,
    row: impl Fn(P) -> Result<T, StoreError>,
    document: impl Fn(J) -> Result<T, StoreError>,
    key: impl Fn(&T) -> Result<Vec<Key>, StoreError>,
) -> Result<Copied, StoreError>
where
    P: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    J: serde::de::DeserializeOwned,
{
    let mut writer = Writer {
        conn: &mut *target,
        rows: 0,
    };
    Sql::<SqliteStore>::pages(source, table, row, document, key, &mut writer).await?;
    let rows = writer.rows;
    let name = table.table;
    let held: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {name}"))
        .fetch_one(&mut *target)
        .await
        .map_err(PgStore::reading(name))?;
    if u64::try_from(held).ok() != Some(rows) {
        return Err(StoreError::Refused(format!(
            "{name}: {rows} rows were read from the source, but the target holds {held}"
        )));
    }
    Ok(Copied { table: name, rows })
}

/// The fleet-wide freeze, if it is on.
async fn freeze(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
) -> Result<Copied, StoreError> {
    let freeze =
        Sql::<SqliteStore>::all(source, sql::FREEZE, "freeze", read::freeze::<String>).await?;
    if let Some(freeze) = freeze.first() {
        Sql::<PgStore>::set_freeze(target, Some(freeze)).await?;
    }
    Ok(Copied {
        table: "freeze",
        rows: freeze.len() as u64,
    })
}

/// The fleet-wide change budget, if one is set.
async fn fleet_operations_budget(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
) -> Result<Copied, StoreError> {
    let budget =
        Sql::<SqliteStore>::all(source, sql::BUDGET, "fleet_budget", read::budget::<String>)
            .await?;
    if let Some(budget) = budget.first() {
        Sql::<PgStore>::set_budget(target, Some(budget)).await?;
    }
    Ok(Copied {
        table: "fleet_budget",
        rows: budget.len() as u64,
    })
}

/// Every pin (a few), expired ones too: the server drops those at start.
async fn pins(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
) -> Result<Copied, StoreError> {
    let pins = Sql::<SqliteStore>::all(source, sql::PINS, "pins", read::pin::<String>).await?;
    for pin in &pins {
        Sql::<PgStore>::write_pin(target, batch::PinChange::Set(pin)).await?;
    }
    Ok(Copied {
        table: "pins",
        rows: pins.len() as u64,
    })
}

/// Every webhook (a few) with its delivery's progress, after the events,
/// whose numbers its cursor names.
async fn webhooks(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
) -> Result<Copied, StoreError> {
    let hooks =
        Sql::<SqliteStore>::all(source, sql::WEBHOOKS, "webhooks", read::webhook::<String>).await?;
    for hook in &hooks {
        let id = hook.webhook.id.as_str();
        Sql::<PgStore>::write_webhook(target, batch::WebhookChange::Added(&hook.webhook)).await?;
        Sql::<PgStore>::write_delivery(target, id, &hook.delivery).await?;
    }
    Ok(Copied {
        table: "webhooks",
        rows: hooks.len() as u64,
    })
}

/// Makes the target's next event number follow every number the source
/// handed out, the events copied and any deleted since.
async fn continue_events(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
) -> Result<(), StoreError> {
    let handed_out: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(seq), 0) FROM \
         (SELECT seq FROM sqlite_sequence WHERE name = 'events' UNION ALL SELECT seq FROM events)",
    )
    .fetch_one(source)
    .await
    .map_err(SqliteStore::reading("sqlite_sequence"))?;
    postgres::continue_events_after(target, handed_out).await
}

/// Makes the target's next audit number follow every number the source
/// handed out.
async fn continue_audit(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
) -> Result<(), StoreError> {
    let handed_out: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(seq), 0) FROM \
         (SELECT seq FROM sqlite_sequence WHERE name = 'audit' UNION ALL SELECT seq FROM audit)",
    )
    .fetch_one(source)
    .await
    .map_err(SqliteStore::reading("sqlite_sequence"))?;
    postgres::continue_audit_after(target, handed_out).await
}

/// Where [`Sql::pages`] hands a table's pages: into the target.
struct Writer<'c> {
    conn: &'c mut PgConnection,
    rows: u64,
}

#[async_trait::async_trait]
impl<T: Target> Sink<T> for Writer<'_> {
    async fn take(&mut self, page: Vec<T>) -> Result<(), StoreError> {
        T::write(self.conn, &page).await?;
        self.rows += page.len() as u64;
        Ok(())
    }
}

/// How a page of a table's records is written into PostgreSQL: by the
/// statements of the store's commits, but for events, which keep their
/// numbers.
#[async_trait::async_trait]
trait Target: Send + Sync + Sized + 'static {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError>;
}

fn refs<T>(rows: &[T]) -> Vec<&T> {
    rows.iter().collect()
}

#[async_trait::async_trait]
impl Target for ComponentRecord {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError> {
        PgStore::upsert_components(conn, &refs(rows)).await
    }
}

#[async_trait::async_trait]
impl Target for RolloutRecord {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError> {
        for rollout in rows {
            Sql::<PgStore>::upsert_rollout(conn, rollout)
                .await
                .map_err(sql::Failure::plain)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Target for TokenRecord {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError> {
        PgStore::upsert_tokens(conn, &refs(rows)).await
    }
}

#[async_trait::async_trait]
impl Target for SessionRecord {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError> {
        Sql::<PgStore>::write_sessions(conn, &refs(rows), &[], None).await
    }
}

#[async_trait::async_trait]
impl Target for HostRecord {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError> {
        PgStore::upsert_hosts(conn, &refs(rows)).await
    }
}

#[async_trait::async_trait]
impl Target for HostComponentRecord {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError> {
        PgStore::upsert_host_components(conn, &refs(rows)).await
    }
}

#[async_trait::async_trait]
impl Target for RolloutHostRecord {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError> {
        PgStore::upsert_rollout_hosts(conn, &refs(rows)).await
    }
}

#[async_trait::async_trait]
impl Target for StoredEvent {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError> {
        postgres::insert_numbered_events(conn, &refs(rows)).await
    }
}

#[async_trait::async_trait]
impl Target for StoredAudit {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError> {
        let numbered: Vec<_> = rows.iter().map(|e| (e.seq, &e.entry)).collect();
        postgres::insert_numbered_audit(conn, &numbered).await
    }
}

#[async_trait::async_trait]
impl Target for StateSampleRecord {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError> {
        Sql::<postgres::PgStore>::write_state_samples(conn, &refs(rows)).await
    }
}

#[async_trait::async_trait]
impl Target for SampleRecord {
    async fn write(conn: &mut PgConnection, rows: &[Self]) -> Result<(), StoreError> {
        let rows = batch::samples(rows, PgTime::store)?;
        postgres::insert_samples(conn, &rows).await
    }
}
