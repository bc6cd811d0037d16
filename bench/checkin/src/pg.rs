//! A PostgreSQL database of the run's own: created with a fresh name
//! (`sluice_bench_<unix seconds>_<pid>`) on the server `--postgres` names,
//! dropped by [`Database::remove`] once the replicas are gone. A run that
//! is killed leaves it behind; its name is printed at the start.

use std::str::FromStr as _;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, Executor as _, PgConnection};

/// The default `--postgres`: the local server, trust authentication.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The run's database.
#[derive(Debug)]
pub struct Database {
    admin_url: String,
    pub name: String,
    /// Its URL, for `sluice server --database-url`.
    pub url: String,
}

impl Database {
    /// Creates an empty database on the server of `admin_url` (a database
    /// its user may create databases from).
    pub async fn create(admin_url: &str) -> anyhow::Result<Database> {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!("sluice_bench_{seconds}_{}", std::process::id());
        let mut admin = connect(admin_url).await?;
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = admin.close().await;
        let mut url = url::Url::parse(admin_url).context("--postgres is not a URL")?;
        url.set_path(&name);
        eprintln!("database {name} created (dropped at the end)");
        Ok(Database {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    /// Drops the database (with whatever still connects to it); says so
    /// when it cannot.
    pub async fn remove(self) {
        let dropped = async {
            let mut admin = connect(&self.admin_url).await?;
            admin
                .execute(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name).as_str())
                .await?;
            let _ = admin.close().await;
            anyhow::Ok(())
        };
        match dropped.await {
            Ok(()) => eprintln!("database {} dropped", self.name),
            Err(error) => eprintln!("could not drop database {}: {error:#}", self.name),
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    let options = PgConnectOptions::from_str(url).context("--postgres is not a PostgreSQL URL")?;
    options.connect().await.with_context(|| {
        format!(
            "connecting to PostgreSQL at {}:{} (start it, or pass --postgres URL)",
            options.get_host(),
            options.get_port()
        )
    })
}
