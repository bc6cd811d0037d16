//! The SQLite backend: the conformance suite on a temporary directory, then
//! what only SQLite has (its pragmas, its file) and an import-speed probe.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use sluice_store::conformance::Backend;
use sluice_store::sqlite::{self, SqliteStore};
use sluice_store::testing;
use sluice_store::{HostComponentRecord, HostRecord, Store, StoreError, Timestamp, Write};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

/// A SQLite database in a directory of its own, removed when dropped.
struct TempSqlite {
    dir: tempfile::TempDir,
}

impl TempSqlite {
    async fn new() -> TempSqlite {
        TempSqlite {
            dir: tempfile::tempdir().expect("creating a temporary directory"),
        }
    }
}

#[async_trait::async_trait]
impl Backend for TempSqlite {
    async fn open(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(SqliteStore::open(self.dir.path()).await?))
    }

    async fn record_schema_version(&self, version: i64) -> Result<(), StoreError> {
        let mut conn = connect(self.dir.path()).await?;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, 'from a newer sluice', TRUE, x'00', 0)",
        )
        .bind(version)
        .execute(&mut conn)
        .await
        .map_err(fail)?;
        conn.close().await.map_err(fail)
    }

    async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        testing::execute::<sqlx::Sqlite>(options(self.dir.path()), sql).await
    }
}

fn fail(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The database in `dir`, for connections behind the store's back.
fn options(dir: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new().filename(dir.join(sqlite::FILE_NAME))
}

/// A connection of its own to the database in `dir`.
async fn connect(dir: &Path) -> Result<sqlx::SqliteConnection, StoreError> {
    options(dir).connect().await.map_err(fail)
}

fn time(text: &str) -> Timestamp {
    text.parse().expect("a time")
}

mod conformance {
    use super::*;

    sluice_store::store_conformance_suite!(TempSqlite::new());
}

fn host(i: usize) -> HostRecord {
    let site = ["sto", "ash", "lon", "fra"][i % 4];
    HostRecord {
        id: format!("{site}-playlist-{i:07}.example.net"),
        labels: BTreeMap::from([
            ("role".to_owned(), "playlist".to_owned()),
            ("site".to_owned(), site.to_owned()),
            ("pool".to_owned(), ["a", "b"][i % 2].to_owned()),
        ]),
        last_seen: None,
    }
}

/// What `hosts import` writes for one host: the host and one component.
fn import_writes(i: usize) -> [Write; 2] {
    let h = host(i);
    let component = HostComponentRecord {
        host: h.id.clone(),
        component: "docker-engine".to_owned(),
        version: "1.12.6".to_owned(),
        state: None,
        message: None,
        drifted: false,
        at: time("2026-03-01T00:00:00Z"),
    };
    [Write::Host(h), Write::HostComponent(component)]
}

#[tokio::test]
async fn wal_and_synchronous_full_are_in_effect() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let store = SqliteStore::open(dir.path()).await?;
    let pragmas = store.pragmas().await?;
    assert_eq!(pragmas.journal_mode, "wal");
    assert_eq!(pragmas.synchronous, 2, "synchronous=FULL");
    assert_eq!(pragmas.foreign_keys, 1);
    assert!(pragmas.busy_timeout >= 1_000, "{pragmas:?}");

    store.commit(&import_writes(1)).await?;
    assert_eq!(store.path(), dir.path().join("sluice.db"));
    assert!(
        dir.path().join("sluice.db-wal").exists(),
        "writes go to the log"
    );
    Ok(())
}

#[tokio::test]
async fn open_creates_the_data_directory() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let data_dir = dir.path().join("nested").join("sluice-data");
    let store = SqliteStore::open(&data_dir).await?;
    store.commit(&import_writes(1)).await?;
    assert!(data_dir.join("sluice.db").is_file());
    Ok(())
}

#[tokio::test]
async fn reopen_after_drop_and_after_close() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let store = SqliteStore::open(dir.path()).await?;
    store.commit(&import_writes(1)).await?;
    // Dropped with its connections still open, as a crashing server would.
    drop(store);

    let store = SqliteStore::open(dir.path()).await?;
    store.commit(&import_writes(2)).await?;
    assert_eq!(store.load().await?.hosts.len(), 2);
    store.close().await;
    assert!(
        !dir.path().join("sluice.db-wal").exists(),
        "closing the last connection checkpoints the log into the database"
    );

    let store = SqliteStore::open(dir.path()).await?;
    assert_eq!(store.load().await?.hosts, vec![host(1), host(2)]);
    assert_eq!(
        store.schema_version().await?,
        sqlite::known_schema_version()
    );
    Ok(())
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_corrupt_not_transient() {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    std::fs::write(dir.path().join("sluice.db"), [b'x'; 4096]).expect("writing the file");
    match SqliteStore::open(dir.path()).await {
        Err(error @ StoreError::Corrupt(_)) => {
            assert!(!error.is_transient());
            assert!(error.to_string().contains("sluice.db"), "{error}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_duplicate_rollout_name_names_the_rollout_holding_it() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let store = SqliteStore::open(dir.path()).await?;
    let rollout = |id: &str| sluice_store::RolloutRecord {
        id: id.to_owned(),
        name: "docker-17".to_owned(),
        component: "docker-engine".to_owned(),
        state: "pending".to_owned(),
        plan: String::new(),
        header: serde_json::json!({}),
        created_at: time("2026-03-01T00:00:00Z"),
        updated_at: time("2026-03-01T00:00:00Z"),
    };
    store.commit(&[Write::Rollout(rollout("r-1"))]).await?;
    match store.commit(&[Write::Rollout(rollout("r-2"))]).await {
        Err(error @ StoreError::Refused(_)) => assert_eq!(
            error.to_string(),
            "storage refused the write: a rollout named \"docker-17\" already exists (r-1); \
             cannot store rollout r-2 under that name"
        ),
        other => panic!("expected a refused write, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn concurrent_commits_queue_for_the_one_writer() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let store = SqliteStore::open(dir.path()).await?;
    store
        .commit(&[Write::Rollout(sluice_store::RolloutRecord {
            id: "r-1".to_owned(),
            name: "one".to_owned(),
            component: "docker-engine".to_owned(),
            state: "running".to_owned(),
            plan: String::new(),
            header: serde_json::json!({}),
            created_at: time("2026-03-01T00:00:00Z"),
            updated_at: time("2026-03-01T00:00:00Z"),
        })])
        .await?;

    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let event = sluice_store::NewEvent {
                        rollout: Some("r-1".to_owned()),
                        at: time("2026-03-01T00:00:00Z"),
                        actor: None,
                        kind: "host_updated".to_owned(),
                        data: serde_json::json!({"task": task, "i": i}),
                    };
                    store.commit(&[Write::Event(event)]).await?;
                    // Reads run beside the writes.
                    store.events("r-1", 0, 10).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a commit task panicked")?;
    }

    let events = store.events("r-1", 0, 1_000).await?;
    assert_eq!(events.len(), 200);
    for task in 0..8 {
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e.event.data["task"] == task)
            .map(|e| e.event.data["i"].clone())
            .collect();
        let expected: Vec<_> = (0..25).map(|i| serde_json::json!(i)).collect();
        assert_eq!(mine, expected, "each task's commits keep their order");
    }
    Ok(())
}

/// What a damaged SQLite file can hold and PostgreSQL's types cannot: a
/// time or JSON that does not parse. Each fails the load (or the read),
/// naming the table, the row and the column, instead of loading as the
/// epoch or nothing.
#[tokio::test]
async fn unreadable_times_and_json_fail_naming_the_row() -> Result<(), StoreError> {
    let backend = TempSqlite::new().await;
    let store = backend.open().await?;
    store.commit(&import_writes(1)).await?;
    drop(store);
    let id = host(1).id;
    let cases = [
        (
            format!("UPDATE hosts SET last_seen = 'yesterday' WHERE id = '{id}'"),
            vec!["hosts", id.as_str(), "last_seen", "yesterday"],
        ),
        (
            format!(
                "UPDATE hosts SET last_seen = NULL, labels = '{{\"role\": 1}}' WHERE id = '{id}'"
            ),
            vec!["hosts", id.as_str(), "labels"],
        ),
        (
            format!("UPDATE hosts SET labels = '{{' WHERE id = '{id}'"),
            vec!["hosts", id.as_str(), "labels"],
        ),
        (
            format!(
                "UPDATE hosts SET labels = '{{}}'; \
                 UPDATE host_components SET at = '2026-13-01T00:00:00Z' WHERE host = '{id}'"
            ),
            vec!["host_components", "docker-engine", "at"],
        ),
    ];
    for (sql, words) in cases {
        backend.execute(&sql).await?;
        let store = backend.open().await?;
        match store.load().await {
            Err(error @ StoreError::Corrupt(_)) => {
                assert!(!error.is_transient());
                let message = error.to_string();
                for word in words {
                    assert!(message.contains(word), "{word} in: {message}");
                }
            }
            other => panic!("after {sql}: expected a corrupt row, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_time_before_year_zero_is_refused_naming_the_write() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let store = SqliteStore::open(dir.path()).await?;
    let ancient = HostRecord {
        last_seen: Some(time("-000001-06-01T00:00:00Z")),
        ..host(7)
    };
    match store.commit(&[Write::Host(ancient)]).await {
        Err(error @ StoreError::Refused(_)) => {
            let message = error.to_string();
            assert!(message.contains(&host(7).id), "{message}");
            assert!(message.contains("last_seen"), "{message}");
        }
        other => panic!("expected a refused write, got {other:?}"),
    }
    assert_eq!(store.load().await?.hosts, vec![]);
    Ok(())
}

/// Schema version 3 rewrites times of other widths into the canonical one,
/// so that a database written before it orders by time too.
#[tokio::test]
async fn the_migration_to_version_3_makes_every_time_canonical() -> Result<(), StoreError> {
    let backend = TempSqlite::new().await;
    let store = backend.open().await?;
    store.commit(&import_writes(1)).await?;
    drop(store);
    let id = host(1).id;
    backend
        .execute(&format!(
            "DELETE FROM _sqlx_migrations WHERE version = 3; \
             UPDATE hosts SET last_seen = '2026-03-01T09:30:00Z' WHERE id = '{id}'; \
             UPDATE host_components SET at = '2026-03-01T09:30:00.5Z'; \
             INSERT INTO rollout_samples (rollout, at, versions) VALUES \
                 ('r-1', '2026-03-01T10:00:00Z', '{{}}'), \
                 ('r-1', '2026-03-01T10:00:00.25Z', '{{}}'), \
                 ('r-1', '2026-03-01T10:00:00.123456789Z', '{{}}')"
        ))
        .await?;

    // Version 3 runs again; the schema is at the newest version after it.
    let store = backend.open().await?;
    assert_eq!(
        store.schema_version().await?,
        sqlite::known_schema_version()
    );
    let mut conn = connect(backend.dir.path()).await?;
    let texts: Vec<String> = sqlx::query_scalar(
        "SELECT last_seen FROM hosts UNION ALL SELECT at FROM host_components \
         UNION ALL SELECT at FROM (SELECT at FROM rollout_samples ORDER BY at)",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(fail)?;
    assert_eq!(
        texts,
        [
            "2026-03-01T09:30:00.000000Z",
            "2026-03-01T09:30:00.500000Z",
            "2026-03-01T10:00:00.000000Z",
            "2026-03-01T10:00:00.123456Z",
            "2026-03-01T10:00:00.250000Z",
        ]
    );
    let samples: Vec<Timestamp> = store
        .samples("r-1")
        .await?
        .into_iter()
        .map(|s| s.at)
        .collect();
    assert_eq!(
        samples,
        [
            time("2026-03-01T10:00:00Z"),
            time("2026-03-01T10:00:00.123456Z"),
            time("2026-03-01T10:00:00.25Z"),
        ]
    );
    Ok(())
}

/// Times one batch of 10,000 host writes, then imports `SLUICE_IMPORT_HOSTS`
/// hosts (default 1,000,000) in batches of 10,000 hosts (each with its
/// component report) and loads them back, printing the rates.
/// Run it in release: `cargo test -p sluice-store --release --test sqlite
/// -- --ignored --nocapture import_speed`.
#[tokio::test]
#[ignore = "a measurement, not a test: run it explicitly, in release"]
async fn import_speed() -> Result<(), StoreError> {
    const BATCH: usize = 10_000;
    let total: usize = std::env::var("SLUICE_IMPORT_HOSTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);

    // A batch of host writes alone, into an empty database.
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let store = SqliteStore::open(dir.path()).await?;
    let batch: Vec<Write> = (0..BATCH).map(|i| Write::Host(host(i))).collect();
    let t = Instant::now();
    store.commit(&batch).await?;
    let elapsed = t.elapsed();
    println!(
        "one batch of {BATCH} host writes: {:.1} ms, {:.0} rows/s",
        elapsed.as_secs_f64() * 1e3,
        BATCH as f64 / elapsed.as_secs_f64()
    );
    drop(store);

    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let store = SqliteStore::open(dir.path()).await?;
    let mut first = None;
    let start = Instant::now();
    for from in (0..total).step_by(BATCH) {
        let batch: Vec<Write> = (from..(from + BATCH).min(total))
            .flat_map(import_writes)
            .collect();
        let t = Instant::now();
        store.commit(&batch).await?;
        first.get_or_insert(t.elapsed());
    }
    let elapsed = start.elapsed();
    let first = first.unwrap_or_default();
    println!(
        "first batch of {BATCH} hosts (+{BATCH} components): {:.1} ms, {:.0} hosts/s",
        first.as_secs_f64() * 1e3,
        BATCH as f64 / first.as_secs_f64()
    );
    println!(
        "{total} hosts (+{total} components) in {:.2} s: {:.0} hosts/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );

    let start = Instant::now();
    let loaded = store.load().await?;
    println!(
        "load of {} hosts and {} components: {:.2} s; database {} MiB",
        loaded.hosts.len(),
        loaded.host_components.len(),
        start.elapsed().as_secs_f64(),
        file_mib(store.path())
    );
    assert_eq!(loaded.hosts.len(), total);
    Ok(())
}

fn file_mib(path: &Path) -> u64 {
    let wal = path.with_extension("db-wal");
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    (size(path) + size(&wal)) >> 20
}
