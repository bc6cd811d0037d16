//! Throwaway PostgreSQL databases for tests: [`TempPgDatabase::create`]
//! makes a database with a fresh random name on the test server, and
//! dropping it drops the database (also when the test failed: the guard's
//! `Drop` runs while a panic unwinds). Also [`execute`]: SQL run behind a
//! store's back, in either dialect.
//!
//! The server is `postgres://postgres@127.0.0.1:5432/postgres` (trust
//! authentication), or whatever [`URL_VAR`] says. An unreachable server
//! fails the test with a message saying how to start one: PostgreSQL tests
//! never skip silently. The first database a test process creates also
//! sweeps test databases older than an hour, left by a killed run.

use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::pool::PoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection, Database, Executor, PgConnection, Postgres};

use crate::postgres::redact;
use crate::StoreError;

/// Overrides the server the tests use: a URL of a database the user may
/// create databases from.
pub const URL_VAR: &str = "SLUICE_TEST_PG_URL";

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Test databases are named `sluice_test_<unix seconds>_<random>`.
const PREFIX: &str = "sluice_test_";

/// A leftover test database older than this is dropped by the sweep.
const SWEEP_AFTER_SECS: u64 = 3600;

static SWEPT: AtomicBool = AtomicBool::new(false);

/// A database of its own for one test, dropped with the guard.
#[derive(Debug)]
pub struct TempPgDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TempPgDatabase {
    /// Creates a fresh, empty database. Panics, saying how to start
    /// PostgreSQL, when the server cannot be reached.
    pub async fn create() -> TempPgDatabase {
        TempPgDatabase::create_with("").await
    }

    /// A database whose text sorts as ICU's `en-US` does (letters before
    /// punctuation's weight, case second), not byte by byte as the test
    /// server's default: how many production databases are made.
    pub async fn create_en_us() -> TempPgDatabase {
        TempPgDatabase::create_with(" LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0")
            .await
    }

    async fn create_with(options: &str) -> TempPgDatabase {
        let admin_url = std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let mut admin = connect(&admin_url).await;
        if !SWEPT.swap(true, Ordering::SeqCst) {
            sweep(&mut admin).await;
        }
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).expect("reading the OS random source");
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("{PREFIX}{}_{suffix}", unix_seconds());
        sqlx::query(&format!("CREATE DATABASE \"{name}\"{options}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url)
            .unwrap_or_else(|e| panic!("{URL_VAR} {}: {e}", redact(&admin_url)));
        url.set_path(&name);
        TempPgDatabase {
            name,
            url: url.to_string(),
            admin_url,
        }
    }

    /// The database's URL, for [`crate::PgStore::open`].
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection of its own, behind the store's back.
    pub async fn connect(&self) -> PgConnection {
        connect(&self.url).await
    }

    /// Runs `sql` on the database behind the store's back (see [`execute`]).
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        let options = PgConnectOptions::from_str(&self.url)
            .map_err(|e| StoreError::Config(format!("{}: {e}", redact(&self.url))))?;
        execute::<Postgres>(options, sql).await
    }
}

/// Runs `sql` (one statement or several) on a pool of one connection of
/// its own to the database `options` name, as a damaged or hand-edited
/// database would look to the store. A failure is [`StoreError::Unavailable`].
pub async fn execute<DB: Database>(
    options: <DB::Connection as Connection>::Options,
    sql: &str,
) -> Result<(), StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let failed = |e: sqlx::Error| StoreError::Unavailable(e.to_string());
    let pool = PoolOptions::<DB>::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(failed)?;
    sqlx::raw_sql(sql).execute(&pool).await.map_err(failed)?;
    pool.close().await;
    Ok(())
}

impl Drop for TempPgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // A runtime of its own on a thread of its own: the test's runtime
        // may be gone, or be the current-thread one this call blocks.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                // FORCE: the store under test may still hold connections.
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: the thread panicked",
                self.name
            ),
        }
    }
}

async fn connect(url: &str) -> PgConnection {
    let options = PgConnectOptions::from_str(url)
        .unwrap_or_else(|e| panic!("{URL_VAR} {}: {e}", redact(url)));
    options.connect().await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {}: {e}\n\
             The PostgreSQL tests need a server: start the local one \
             (`pg_ctlcluster 15 main start`, or `service postgresql start`; \
             ./scripts/test starts it), or set {URL_VAR} to the URL of one \
             whose user may create databases",
            redact(url)
        )
    })
}

/// Drops test databases older than [`SWEEP_AFTER_SECS`], left behind by a
/// run that was killed before its guards ran.
async fn sweep(admin: &mut PgConnection) {
    let names: Vec<String> =
        match sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{PREFIX}%"))
            .fetch_all(&mut *admin)
            .await
        {
            Ok(names) => names,
            Err(e) => {
                eprintln!("listing leftover test databases: {e}");
                return;
            }
        };
    let now = unix_seconds();
    for name in names {
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| now.saturating_sub(created) > SWEEP_AFTER_SECS) {
            if let Err(e) = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut *admin)
                .await
            {
                eprintln!("dropping leftover test database {name}: {e}");
            }
        }
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
