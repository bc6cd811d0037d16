//! `sluice db copy` at the store: an embedded install copied into a fresh
//! PostgreSQL database (one per test, see `sluice_store::testing`) holds
//! every row of every table as it was, events keep their numbers and new
//! ones follow, and whatever is refused (a target holding rows, a source
//! in use, at another schema version or missing, a row that does not
//! parse) leaves the target as it was.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sluice_store::conformance;
use sluice_store::copy::{self, Copied, CopyError};
use sluice_store::sqlite::{self, SqliteStore};
use sluice_store::testing::TempPgDatabase;
use sluice_store::{
    AuditQuery, AuditRecord, BudgetRecord, ComponentRecord, FreezeRecord, HostComponentRecord,
    HostRecord, NewEvent, PgStore, PinRecord, ReportedState, RolloutHostRecord, RolloutRecord,
    SampleRecord, SessionRecord, StateSampleRecord, Store, StoreError, Timestamp, TokenRecord,
    TokenRole, WebhookDelivery, WebhookRecord, Write,
};
use sluice_testkit::{wait_for, DEADLINE};
use sqlx::sqlite::{SqliteConnectOptions, SqliteLockingMode};
use sqlx::{ConnectOptions as _, Connection as _};

/// More hosts than a page holds twice over (pages are 10,000 rows), so
/// that every large table is read in several pages.
const HOSTS: usize = 20_001;
/// The same for events, whose pages go by number.
const EVENTS: usize = 20_001;
/// Audit entries of the fixture (more than one page of a statement).
const AUDIT: usize = 300;
/// Writes per commit while the fixture is written.
const BATCH: usize = 5_000;

fn at(second: i64) -> Timestamp {
    let start: Timestamp = "2026-03-01T09:30:00.123456Z".parse().expect("a time");
    start + jiff::SignedDuration::from_secs(second)
}

/// Closes `store` and waits until its database in `dir` is let go: sqlx
/// may close a pool's last connection in the background, after `close`
/// returned (a server process that stopped has let go of it for sure).
async fn let_go(store: SqliteStore, dir: &Path) {
    store.close().await;
    drop(store);
    wait_until_let_go(dir).await;
}

async fn wait_until_let_go(dir: &Path) {
    let options = SqliteConnectOptions::new()
        .filename(dir.join(sqlite::FILE_NAME))
        .locking_mode(SqliteLockingMode::Exclusive)
        .busy_timeout(Duration::ZERO);
    wait_for("the source to be let go", DEADLINE, || {
        let options = options.clone();
        async move {
            let mut conn = options.connect().await?;
            let locked = sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await;
            conn.close().await?;
            locked.map(drop)
        }
    })
    .await;
}

/// Runs `sql` on the database in `dir` behind the stores' back.
async fn sql(dir: &Path, sql: &str) {
    let options = SqliteConnectOptions::new().filename(dir.join(sqlite::FILE_NAME));
    sluice_store::testing::execute::<sqlx::Sqlite>(options, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    wait_until_let_go(dir).await;
}

fn host_id(i: usize) -> String {
    format!(
        "{}-playlist-{i:06}.example.net",
        ["sto", "ash", "lon"][i % 3]
    )
}

fn rollout(id: &str, state: &str) -> RolloutRecord {
    RolloutRecord {
        id: id.to_owned(),
        name: format!("docker {id}"),
        component: "docker-engine".to_owned(),
        state: state.to_owned(),
        plan: format!("name: docker {id}\ncomponent: docker-engine\nversion: 17.03.1\n"),
        header: json!({"stage": 1, "phase": "baking", "strata": ["role=playlist,site=sto"], "z": [1.5, null]}),
        created_at: at(0),
        updated_at: at(60),
    }
}

/// An embedded install in `dir`, closed again: two components, a running
/// rollout over every host and a completed one over a few, [`HOSTS`] hosts
/// with a component each, [`EVENTS`] events (of both rollouts, and
/// fleet-wide), the freeze, tokens of every role, dashboard sessions, and
/// samples.
async fn install(dir: &Path) {
    let store = SqliteStore::open(dir).await.expect("opening the source");
    let mut writes = vec![
        Write::Component(ComponentRecord {
            name: "docker-engine".to_owned(),
            stable_version: Some("1.12.6".to_owned()),
        }),
        Write::Component(ComponentRecord {
            name: "ntp".to_owned(),
            stable_version: None,
        }),
        Write::Rollout(rollout("r-1", "running")),
        Write::Rollout(rollout("r-2", "completed")),
        Write::Freeze(Some(FreezeRecord {
            actor: "alice".to_owned(),
            reason: "CHG-7: holiday freeze".to_owned(),
            since: at(7),
        })),
        Write::Budget(Some(BudgetRecord {
            max_in_flight: "2%".to_owned(),
            per_stratum: Some("10%".to_owned()),
            spread: vec!["role".to_owned(), "site".to_owned()],
            actor: "alice".to_owned(),
            reason: "CHG-9: many teams, one fleet".to_owned(),
            since: at(8),
        })),
    ];
    // One pin current, one expired: a copy keeps both as they are.
    for (i, expires) in [(1, 7_200), (2, -60)] {
        writes.push(Write::Pin(PinRecord {
            host: host_id(i),
            component: "docker-engine".to_owned(),
            version: "17.03.1".to_owned(),
            expires_at: at(expires),
            actor: "alice".to_owned(),
            reason: "taste-test".to_owned(),
            since: at(9),
        }));
    }
    for (i, role) in [
        TokenRole::Admin,
        TokenRole::Operator,
        TokenRole::Viewer,
        TokenRole::Agent,
        TokenRole::Enroll,
    ]
    .into_iter()
    .enumerate()
    {
        let enroll = role == TokenRole::Enroll;
        writes.push(Write::Token(TokenRecord {
            hash: format!("{i:064x}"),
            role,
            host: (role == TokenRole::Agent).then(|| host_id(1)),
            name: (i % 2 == 0).then(|| format!("token {i}")),
            created_at: at(i as i64),
            selector: enroll.then(|| "site in (sto, lon)".to_owned()),
            expires_at: enroll.then(|| at(86_400)),
            uses_left: enroll.then_some(4_999),
            last_used_at: enroll.then(|| at(60)),
        }));
    }
    // Signed in, the second one long ago: a copy keeps both as they are.
    for (i, expires) in [(0, 3_600), (1, -3_600)] {
        writes.push(Write::Session(SessionRecord {
            hash: format!("{:064x}", 100 + i),
            token: format!("{i:064x}"),
            created_at: at(i64::from(i)),
            expires_at: at(expires),
        }));
    }
    for i in 0..HOSTS {
        let id = host_id(i);
        writes.push(Write::Host(HostRecord {
            id: id.clone(),
            labels: BTreeMap::from([
                ("role".to_owned(), "playlist".to_owned()),
                ("site".to_owned(), id[..3].to_owned()),
            ]),
            last_seen: (i % 2 == 0).then(|| at(i as i64)),
        }));
        writes.push(Write::HostComponent(HostComponentRecord {
            host: id.clone(),
            component: "docker-engine".to_owned(),
            version: "1.12.6".to_owned(),
            state: [None, Some(ReportedState::Ok), Some(ReportedState::Failed)][i % 3],
            message: (i % 3 == 2).then(|| "exit 1: ü \"quoted\"\n".to_owned()),
            drifted: i % 5 == 1,
            at: at(i as i64),
        }));
        writes.push(Write::RolloutHost(RolloutHostRecord {
            rollout: "r-1".to_owned(),
            host: id.clone(),
            record: json!({"state": "admitted", "rank": u64::MAX - i as u64, "before": "1.12.6"})
                .to_string(),
        }));
        if i % 100 == 0 {
            writes.push(Write::RolloutHost(RolloutHostRecord {
                rollout: "r-2".to_owned(),
                host: id,
                record: json!({"state": "done", "weight": 0.1}).to_string(),
            }));
        }
    }
    for i in 0..EVENTS {
        writes.push(Write::Event(NewEvent {
            rollout: [Some("r-1"), Some("r-2"), None][i % 3].map(str::to_owned),
            at: at(i as i64),
            actor: (i % 2 == 0).then(|| "alice".to_owned()),
            kind: "host_updated".to_owned(),
            data: json!({"n": i, "host": host_id(i)}),
        }));
    }
    for i in 0..AUDIT {
        writes.push(Write::Audit(AuditRecord {
            source: (i % 2 == 0).then(|| "2001:db8::7".to_owned()),
            target: Some(format!("r-{i}")),
            ..conformance::audit_entry(["rollout_created", "freeze_on"][i % 2], "alice", i as u32)
        }));
    }
    for batch in writes.chunks(BATCH) {
        store.commit(batch).await.expect("writing the source");
    }
    let samples: Vec<SampleRecord> = (0..30)
        .map(|i| SampleRecord {
            rollout: ["r-1", "r-2"][i % 2].to_owned(),
            at: at(i as i64),
            versions: BTreeMap::from([
                ("1.12.6".to_owned(), 100 - i as u64),
                ("17.03.1".to_owned(), i as u64),
            ]),
        })
        .collect();
    store.add_samples(&samples).await.expect("writing samples");
    let state_samples: Vec<Write> = (0..20)
        .map(|i| {
            Write::StateSample(StateSampleRecord {
                rollout: ["r-1", "r-2"][i % 2].to_owned(),
                at: at(i as i64),
                counts: BTreeMap::from([
                    ("waiting".to_owned(), 100 - i as u64),
                    ("healthy".to_owned(), i as u64),
                ]),
            })
        })
        .collect();
    store
        .commit(&state_samples)
        .await
        .expect("writing state samples");
    // Two webhooks after the events: one signed, failing, whose delivery
    // got somewhere; one plain, at the end of the log.
    let webhook = |id: &str, secret: Option<&str>| WebhookRecord {
        id: id.to_owned(),
        url: format!("https://hooks.example.net/{id}"),
        events: if secret.is_some() {
            vec!["completed".to_owned()]
        } else {
            Vec::new()
        },
        format: ["json", "slack"][usize::from(secret.is_none())].to_owned(),
        secret: secret.map(str::to_owned),
        created_at: at(10),
        created_by: "alice".to_owned(),
    };
    store
        .commit(&[
            Write::Webhook(webhook("wh-1", Some("k3y"))),
            Write::Webhook(webhook("wh-2", None)),
            Write::WebhookDelivery {
                id: "wh-1".to_owned(),
                delivery: WebhookDelivery {
                    delivered_seq: 17,
                    failures: 4,
                    last_error: Some("the receiver answered 502 Bad Gateway".to_owned()),
                    last_attempt_at: Some(at(12)),
                    last_success_at: Some(at(11)),
                },
            },
        ])
        .await
        .expect("writing webhooks");
    let_go(store, dir).await;
}

/// A table as the tests compare it: its columns, the times among them.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    times: &'static [&'static str],
}

/// Every table a copy carries over.
const TABLES: &[Table] = &[
    Table {
        name: "components",
        columns: &["name", "stable_version"],
        times: &[],
    },
    Table {
        name: "rollouts",
        columns: &[
            "id",
            "name",
            "component",
            "state",
            "plan",
            "header",
            "created_at",
            "updated_at",
        ],
        times: &["created_at", "updated_at"],
    },
    Table {
        name: "freeze",
        columns: &["id", "actor", "reason", "since"],
        times: &["since"],
    },
    Table {
        name: "tokens",
        columns: &["hash", "role", "host", "name", "created_at"],
        times: &["created_at"],
    },
    Table {
        name: "dashboard_sessions",
        columns: &["hash", "token", "created_at", "expires_at"],
        times: &["created_at", "expires_at"],
    },
    Table {
        name: "fleet_budget",
        columns: &[
            "id",
            "max_in_flight",
            "per_stratum",
            "spread",
            "actor",
            "reason",
            "since",
        ],
        times: &["since"],
    },
    Table {
        name: "pins",
        columns: &[
            "host",
            "component",
            "version",
            "expires_at",
            "actor",
            "reason",
            "since",
        ],
        times: &["expires_at", "since"],
    },
    Table {
        name: "hosts",
        columns: &["id", "labels", "last_seen"],
        times: &["last_seen"],
    },
    Table {
        name: "host_components",
        columns: &["host", "component", "version", "state", "message", "at"],
        times: &["at"],
    },
    Table {
        name: "rollout_hosts",
        columns: &["rollout", "host", "record"],
        times: &[],
    },
    Table {
        name: "events",
        columns: &["seq", "rollout", "at", "actor", "kind", "data"],
        times: &["at"],
    },
    Table {
        name: "rollout_samples",
        columns: &["rollout", "at", "versions"],
        times: &["at"],
    },
    Table {
        name: "audit",
        columns: &[
            "seq",
            "at",
            "actor_id",
            "actor_name",
            "actor_role",
            "source",
            "kind",
            "target",
            "reason",
            "data",
        ],
        times: &["at"],
    },
    Table {
        name: "webhooks",
        columns: &[
            "id",
            "url",
            "events",
            "format",
            "secret",
            "created_at",
            "created_by",
            "delivered_seq",
            "failures",
            "last_error",
            "last_attempt_at",
            "last_success_at",
        ],
        times: &["created_at", "last_attempt_at", "last_success_at"],
    },
    Table {
        name: "rollout_state_samples",
        columns: &["rollout", "at", "counts"],
        times: &["at"],
    },
];

/// Tables a copy leaves out: sqlx's record of migrations (each database
/// has its own), and PostgreSQL's own event and audit numbering and
/// cluster (its lease, replicas and forwarding key).
const NOT_COPIED: &[&str] = &[
    "_sqlx_migrations",
    "audit_seq",
    "event_seq",
    "forwarding_key",
    "leader_lease",
    "replicas",
];

/// The statement reading every row of `table` as text; times in SQLite's
/// canonical form, which PostgreSQL's are printed in.
fn select(table: &Table, time: impl Fn(&str) -> String, text: impl Fn(&str) -> String) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|column| {
            if table.times.contains(column) {
                time(column)
            } else {
                text(column)
            }
        })
        .collect();
    format!("SELECT {} FROM \"{}\"", columns.join(", "), table.name)
}

type Rows = Vec<Vec<Option<String>>>;

async fn sqlite_rows(dir: &Path, table: &Table) -> Rows {
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.join(sqlite::FILE_NAME))
        .connect()
        .await
        .expect("connecting to the source");
    let sql = select(table, |c| c.to_owned(), |c| format!("CAST({c} AS TEXT)"));
    let rows = sqlx::query(&sql)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.expect("closing");
    texts(table, &rows)
}

async fn pg_rows(db: &TempPgDatabase, table: &Table) -> Rows {
    let mut conn = db.connect().await;
    let sql = select(
        table,
        |c| format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"),
        |c| format!("{c}::text"),
    );
    let rows = sqlx::query(&sql)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    texts(table, &rows)
}

/// The rows' columns as text, sorted (as text: the same in both databases,
/// whatever their collations).
fn texts<R: sqlx::Row>(table: &Table, rows: &[R]) -> Rows
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut texts: Rows = rows
        .iter()
        .map(|row| {
            (0..table.columns.len())
                .map(|i| row.try_get(i).expect("a text column"))
                .collect()
        })
        .collect();
    texts.sort_unstable();
    texts
}

async fn pg_tables(db: &TempPgDatabase) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
    )
    .fetch_all(&mut db.connect().await)
    .await
    .expect("listing tables")
}

async fn copy_into(dir: &Path, db: &TempPgDatabase) -> Result<Vec<Copied>, CopyError> {
    copy::sqlite_to_postgres(dir, db.url(), &mut |_| {}).await
}

#[tokio::test]
async fn every_row_of_every_table_is_copied_as_it_was() {
    let source = tempfile::tempdir().expect("a data dir");
    install(source.path()).await;
    let db = TempPgDatabase::create().await;

    let mut progress = Vec::new();
    let copied = copy::sqlite_to_postgres(source.path(), db.url(), &mut |table| {
        progress.push(table.clone())
    })
    .await
    .expect("copying");
    assert_eq!(
        progress, copied,
        "progress tells each table as it is written"
    );

    let counts: Vec<(&str, u64)> = copied.iter().map(|c| (c.table, c.rows)).collect();
    let hosts = HOSTS as u64;
    assert_eq!(
        counts,
        [
            ("components", 2),
            ("rollouts", 2),
            ("freeze", 1),
            ("tokens", 5),
            ("dashboard_sessions", 2),
            ("fleet_budget", 1),
            ("pins", 2),
            ("hosts", hosts),
            ("host_components", hosts),
            ("rollout_hosts", hosts + hosts.div_ceil(100)),
            ("events", EVENTS as u64),
            ("rollout_samples", 30),
            ("audit", AUDIT as u64),
            ("webhooks", 2),
            ("rollout_state_samples", 20),
        ]
    );
    for table in TABLES {
        let (from, to) = (
            sqlite_rows(source.path(), table).await,
            pg_rows(&db, table).await,
        );
        assert_eq!(from.len(), to.len(), "rows of {}", table.name);
        for (from, to) in from.iter().zip(&to) {
            assert_eq!(from, to, "a row of {}", table.name);
        }
    }

    // The copy's statistics were committed with it: the first load plans
    // with the tables' real sizes.
    let planned: f32 = sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = 'hosts'")
        .fetch_one(&mut db.connect().await)
        .await
        .expect("reading pg_class");
    assert_eq!(planned, HOSTS as f32);

    // The tables compared are every table both schemas have, but those a
    // copy leaves out.
    let mut compared: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    compared.extend(NOT_COPIED);
    compared.sort_unstable();
    assert_eq!(pg_tables(&db).await, compared, "PostgreSQL's tables");
    let mut conn = SqliteConnectOptions::new()
        .filename(source.path().join(sqlite::FILE_NAME))
        .connect()
        .await
        .expect("connecting to the source");
    let sqlite_tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("listing tables");
    let mut sqlite_compared: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    sqlite_compared.push("_sqlx_migrations");
    sqlite_compared.sort_unstable();
    assert_eq!(sqlite_tables, sqlite_compared, "SQLite's tables");

    // What the server loads on PostgreSQL is what it loaded on SQLite.
    let target = PgStore::open(db.url()).await.expect("opening the target");
    let embedded = SqliteStore::open(source.path())
        .await
        .expect("reopening the source");
    assert_eq!(
        conformance::sorted(target.load().await.expect("loading")),
        conformance::sorted(embedded.load().await.expect("loading"))
    );
    for rollout in ["r-1", "r-2"] {
        assert_eq!(
            target.samples(rollout).await.expect("samples"),
            embedded.samples(rollout).await.expect("samples")
        );
    }
}

#[tokio::test]
async fn events_keep_their_numbers_and_new_ones_follow_every_number_handed_out() {
    let source = tempfile::tempdir().expect("a data dir");
    let store = SqliteStore::open(source.path())
        .await
        .expect("opening the source");
    let event = |kind: &str| {
        Write::Event(NewEvent {
            rollout: Some("r-1".to_owned()),
            at: at(0),
            actor: None,
            kind: kind.to_owned(),
            data: json!({}),
        })
    };
    let mut batch = vec![Write::Rollout(rollout("r-1", "running"))];
    batch.extend(["created", "started", "stage_started", "deleted later"].map(event));
    store.commit(&batch).await.expect("writing the source");
    let before = store.events("r-1", 0, 100).await.expect("events");
    let_go(store, source.path()).await;
    // The newest event is gone from the table, but not its number: SQLite
    // never hands it out again, and neither may PostgreSQL.
    let last = before.last().expect("events").seq;
    sql(
        source.path(),
        &format!("DELETE FROM events WHERE seq = {last}"),
    )
    .await;

    let db = TempPgDatabase::create().await;
    copy_into(source.path(), &db).await.expect("copying");
    let target = PgStore::open(db.url()).await.expect("opening the target");
    assert_eq!(
        target.events("r-1", 0, 100).await.expect("events"),
        before[..3]
    );
    // A reader that had seen the second event goes on from there.
    assert_eq!(
        target
            .events("r-1", before[1].seq, 100)
            .await
            .expect("events"),
        before[2..3]
    );
    target.commit(&[event("paused")]).await.expect("appending");
    let after = target
        .events("r-1", before[2].seq, 100)
        .await
        .expect("events");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].event.kind, "paused");
    assert!(after[0].seq > last, "{} follows {last}", after[0].seq);
}

#[tokio::test]
async fn audit_entries_keep_their_numbers_and_new_ones_follow() {
    let source = tempfile::tempdir().expect("a data dir");
    let store = SqliteStore::open(source.path())
        .await
        .expect("opening the source");
    let entry = |kind: &str| Write::Audit(conformance::audit_entry(kind, "alice", 1));
    store
        .commit(&["rollout_created", "rollout_started", "freeze_on"].map(entry))
        .await
        .expect("writing the source");
    let all = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    let before = store.audit(&all).await.expect("audit");
    let_go(store, source.path()).await;
    let last = before.last().expect("entries").seq;
    sql(
        source.path(),
        &format!("DELETE FROM audit WHERE seq = {last}"),
    )
    .await;

    let db = TempPgDatabase::create().await;
    copy_into(source.path(), &db).await.expect("copying");
    let target = PgStore::open(db.url()).await.expect("opening the target");
    assert_eq!(target.audit(&all).await.expect("audit"), before[..2]);
    target
        .commit(&[entry("freeze_off")])
        .await
        .expect("appending");
    let after = target
        .audit(&AuditQuery {
            after: Some(before[1].seq),
            ..all
        })
        .await
        .expect("audit");
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].seq > last, "{} follows {last}", after[0].seq);
}

#[tokio::test]
async fn a_target_holding_rows_is_refused_and_left_as_it_was() {
    let source = tempfile::tempdir().expect("a data dir");
    install(source.path()).await;

    // A sluice database in use.
    let db = TempPgDatabase::create().await;
    let target = PgStore::open(db.url()).await.expect("opening the target");
    let mine = HostRecord {
        id: "already-here.example.net".to_owned(),
        labels: BTreeMap::new(),
        last_seen: None,
    };
    target
        .commit(&[Write::Host(mine.clone())])
        .await
        .expect("writing");
    let loaded = target.load().await.expect("loading");
    match copy_into(source.path(), &db).await {
        Err(CopyError::TargetNotEmpty { table, database }) => {
            assert_eq!(table, "hosts");
            assert_eq!(database, target.url());
        }
        other => panic!("a target with a host was not refused: {other:?}"),
    }
    assert_eq!(target.load().await.expect("loading"), loaded);
    assert_eq!(loaded.hosts, [mine]);

    // Some other application's database: refused before sluice's schema
    // is created in it.
    let other = TempPgDatabase::create().await;
    other
        .execute("CREATE TABLE invoices (id int PRIMARY KEY); INSERT INTO invoices VALUES (1)")
        .await
        .expect("an application's table");
    let refused = copy_into(source.path(), &other).await.expect_err("refused");
    assert!(
        matches!(&refused, CopyError::TargetNotEmpty { table, .. } if table == "invoices"),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("table invoices holds rows"),
        "{refused}"
    );
    assert_eq!(pg_tables(&other).await, ["invoices"]);
}

#[tokio::test]
async fn a_failed_copy_leaves_nothing_and_can_be_run_again() {
    let source = tempfile::tempdir().expect("a data dir");
    install(source.path()).await;
    sql(
        source.path(),
        "UPDATE events SET at = 'last tuesday' WHERE seq = 20000",
    )
    .await;
    let db = TempPgDatabase::create().await;
    let failed = copy_into(source.path(), &db)
        .await
        .expect_err("a damaged event");
    assert!(
        matches!(&failed, CopyError::Store(StoreError::Corrupt(message))
            if message.contains("events row 20000, column at")),
        "{failed:?}"
    );
    // Hosts and every table before the events were written, then rolled back.
    for table in TABLES {
        assert!(
            pg_rows(&db, table).await.is_empty(),
            "{} is empty",
            table.name
        );
    }

    sql(
        source.path(),
        "UPDATE events SET at = '2026-03-01T09:30:00.000000Z' WHERE seq = 20000",
    )
    .await;
    let copied = copy_into(source.path(), &db).await.expect("copying again");
    assert_eq!(
        copied.iter().find(|c| c.table == "events").map(|c| c.rows),
        Some(EVENTS as u64)
    );
}

#[tokio::test]
async fn a_source_in_use_is_refused_until_it_is_let_go() {
    let source = tempfile::tempdir().expect("a data dir");
    let server = SqliteStore::open(source.path())
        .await
        .expect("opening the source");
    server
        .commit(&[Write::Rollout(rollout("r-1", "running"))])
        .await
        .expect("writing");
    let db = TempPgDatabase::create().await;
    let refused = copy_into(source.path(), &db).await.expect_err("in use");
    assert!(
        matches!(refused, CopyError::SourceInUse { .. }),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(message.contains("in use by another process"), "{message}");
    assert!(message.contains("stop it first"), "{message}");
    assert_eq!(
        pg_tables(&db).await,
        Vec::<String>::new(),
        "the target is untouched"
    );

    let_go(server, source.path()).await;
    let copied = copy_into(source.path(), &db).await.expect("copying");
    assert_eq!(
        copied
            .iter()
            .find(|c| c.table == "rollouts")
            .map(|c| c.rows),
        Some(1)
    );
}

#[tokio::test]
async fn a_source_at_another_schema_version_or_missing_is_refused() {
    let db = TempPgDatabase::create().await;
    let missing = tempfile::tempdir().expect("a directory");
    let nowhere = missing.path().join("sluice-data");
    let refused = copy_into(&nowhere, &db).await.expect_err("no directory");
    assert!(matches!(refused, CopyError::NoSource(_)), "{refused:?}");
    assert!(
        refused.to_string().contains("is not a directory"),
        "{refused}"
    );
    let refused = copy_into(missing.path(), &db)
        .await
        .expect_err("no database");
    assert!(
        refused.to_string().contains("holds no sluice database"),
        "{refused}"
    );
    assert!(
        !missing.path().join(sqlite::FILE_NAME).exists(),
        "nothing was created"
    );

    let source = tempfile::tempdir().expect("a data dir");
    let created = SqliteStore::open(source.path()).await.expect("creating");
    let_go(created, source.path()).await;
    let known = sqlite::known_schema_version();
    sql(
        source.path(),
        &format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ({}, 'from a newer sluice', TRUE, x'00', 0)",
            known + 1
        ),
    )
    .await;
    let refused = copy_into(source.path(), &db).await.expect_err("newer");
    let message = refused.to_string();
    assert!(
        matches!(refused, CopyError::SourceSchema { found, .. } if found == known + 1),
        "{message}"
    );
    assert!(message.contains("upgrade this one"), "{message}");

    sql(
        source.path(),
        &format!("DELETE FROM _sqlx_migrations WHERE version >= {known}"),
    )
    .await;
    // The version before this binary's (versions may skip numbers: each
    // branch of the project takes its own).
    let previous: i64 = {
        let mut conn = SqliteConnectOptions::new()
            .filename(source.path().join(sqlite::FILE_NAME))
            .connect()
            .await
            .expect("opening the source");
        let previous = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .expect("the previous version");
        conn.close().await.expect("closing the source");
        previous
    };
    wait_until_let_go(source.path()).await;
    assert!(previous < known);
    let refused = copy_into(source.path(), &db).await.expect_err("older");
    let message = refused.to_string();
    assert!(
        matches!(refused, CopyError::SourceSchema { found, .. } if found == previous),
        "{message}"
    );
    assert!(message.contains("sluice server --data-dir"), "{message}");
    assert_eq!(
        pg_tables(&db).await,
        Vec::<String>::new(),
        "the target is untouched"
    );
}
