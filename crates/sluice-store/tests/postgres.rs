//! The PostgreSQL backend: the conformance suite on a fresh database per
//! test (see `sluice_store::testing`), then what only PostgreSQL has:
//! concurrent writers and the order of events, the leader lease and fenced
//! commits, replicas, and its errors.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_store::conformance::Backend;
use sluice_store::testing::TempPgDatabase;
use sluice_store::{
    Cluster, HostRecord, Lease, NewEvent, PgStore, RolloutRecord, Store, StoreError, Timestamp,
    Write,
};
use sluice_testkit::{wait_for, DEADLINE};
use sqlx::PgConnection;

/// A fresh database, opened as often as a case needs.
struct TempPg {
    db: TempPgDatabase,
}

impl TempPg {
    async fn new() -> TempPg {
        TempPg {
            db: TempPgDatabase::create().await,
        }
    }

    async fn store(&self) -> PgStore {
        PgStore::open(self.db.url())
            .await
            .expect("opening the store")
    }

    /// Runs `sql` behind the stores' back.
    async fn sql(&self, sql: &str) -> Result<(), StoreError> {
        self.db.execute(sql).await
    }

    /// A session of its own holding host a's row locked until it ends its
    /// transaction (`ROLLBACK`), so that a write of host a waits.
    async fn lock_host_a(&self) -> PgConnection {
        let mut blocker = self.db.connect().await;
        sqlx::query("BEGIN")
            .execute(&mut blocker)
            .await
            .expect("begin");
        sqlx::query("SELECT 1 FROM hosts WHERE id = 'a' FOR UPDATE")
            .execute(&mut blocker)
            .await
            .expect("locking host a");
        blocker
    }

    /// Waits until a session of the database waits for a lock, among the
    /// sessions `condition` (over `pg_stat_activity`) picks.
    async fn wait_for_a_lock_wait(&self, what: &str, condition: &str) {
        let watcher = sqlx::PgPool::connect(self.db.url())
            .await
            .expect("a watcher");
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND wait_event_type = 'Lock' AND {condition}"
        );
        wait_for(what, DEADLINE, || {
            let (watcher, sql) = (watcher.clone(), sql.clone());
            let name = self.db.name().to_owned();
            async move {
                let waiting: i64 = sqlx::query_scalar(&sql)
                    .bind(name)
                    .fetch_one(&watcher)
                    .await
                    .expect("reading pg_stat_activity");
                waiting > 0
            }
        })
        .await;
    }
}

#[async_trait::async_trait]
impl Backend for TempPg {
    async fn open(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(PgStore::open(self.db.url()).await?))
    }

    async fn record_schema_version(&self, version: i64) -> Result<(), StoreError> {
        self.sql(&format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ({version}, 'from a newer sluice', TRUE, '\\x00', 0)"
        ))
        .await
    }

    async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.sql(sql).await
    }
}

mod conformance {
    use super::*;

    sluice_store::store_conformance_suite!(TempPg::new());
}

fn time(text: &str) -> Timestamp {
    text.parse().expect("a time")
}

fn rollout(id: &str) -> RolloutRecord {
    RolloutRecord {
        id: id.to_owned(),
        name: format!("rollout {id}"),
        component: "docker-engine".to_owned(),
        state: "running".to_owned(),
        plan: String::new(),
        header: json!({}),
        created_at: time("2026-03-01T00:00:00Z"),
        updated_at: time("2026-03-01T00:00:00Z"),
    }
}

fn event(data: serde_json::Value) -> Write {
    Write::Event(NewEvent {
        rollout: Some("r-1".to_owned()),
        at: time("2026-03-01T00:00:00Z"),
        actor: None,
        kind: "host_updated".to_owned(),
        data,
    })
}

fn host(id: &str) -> Write {
    Write::Host(HostRecord {
        id: id.to_owned(),
        labels: Default::default(),
        last_seen: None,
    })
}

/// The ids of the hosts `store` loads.
async fn host_ids(store: &dyn Store) -> Vec<String> {
    let loaded = store.load().await.expect("load");
    loaded.hosts.into_iter().map(|h| h.id).collect()
}

/// Takes the lease for `holder` (at `holder:7070`), which must be free.
async fn take(store: &PgStore, holder: &str, ttl: Duration) -> Lease {
    store
        .acquire(holder, &format!("{holder}:7070"), ttl)
        .await
        .expect("acquire")
        .unwrap_or_else(|| panic!("{holder} takes the free lease"))
}

#[tokio::test]
async fn connections_commit_synchronously_whatever_the_server_default() {
    let pg = TempPg::new().await;
    pg.sql(&format!(
        "ALTER DATABASE \"{}\" SET synchronous_commit = off",
        pg.db.name()
    ))
    .await
    .expect("changing the database's default");
    let store = pg.store().await;
    assert_eq!(store.synchronous_commit().await.expect("reading it"), "on");
}

/// A database that sorts text by a language's rules, not byte by byte:
/// the load reads every host once, over several pages, whatever order the
/// database puts them in (upper and lower case, dots and dashes sort apart
/// from their bytes there).
#[tokio::test]
async fn a_load_pages_through_a_database_that_sorts_text_its_own_way() {
    let db = TempPgDatabase::create_en_us().await;
    let store = PgStore::open(db.url()).await.expect("opening the store");
    let ids: Vec<String> = (0..25_000)
        .map(|i| {
            let case = if i % 2 == 0 { "Web" } else { "web" };
            let sep = ["-", ".", "_"][i % 3];
            format!("{case}{sep}{i:05}.example.net")
        })
        .collect();
    let batch: Vec<Write> = ids
        .iter()
        .map(|id| {
            Write::Host(HostRecord {
                id: id.clone(),
                labels: Default::default(),
                last_seen: None,
            })
        })
        .collect();
    store.commit(&batch).await.expect("commit");
    let mut loaded = host_ids(&store).await;
    loaded.sort();
    let mut expected = ids;
    expected.sort();
    assert_eq!(loaded.len(), expected.len(), "every host once");
    assert_eq!(loaded, expected);
}

#[tokio::test]
async fn replicas_opening_a_new_database_together_migrate_it_once() {
    let pg = TempPg::new().await;
    let (a, b) = tokio::join!(PgStore::open(pg.db.url()), PgStore::open(pg.db.url()));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(
        a.schema_version().await.expect("version"),
        sluice_store::postgres::known_schema_version()
    );
    assert_eq!(
        b.schema_version().await.expect("version"),
        a.schema_version().await.expect("version")
    );
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_say_so_without_the_password() {
    match PgStore::open("postgres://sluice:s3cret@127.0.0.1:notaport/sluice").await {
        Err(error @ StoreError::Config(_)) => {
            assert!(!error.is_transient());
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
        other => panic!("expected a settings error, got {other:?}"),
    }
    // Port 1 on loopback: nothing listens there.
    match PgStore::open("postgres://sluice:s3cret@127.0.0.1:1/sluice").await {
        Err(error @ StoreError::Unavailable(_)) => {
            assert!(error.is_transient());
            let message = error.to_string();
            assert!(!message.contains("s3cret"), "{message}");
            assert!(message.contains("sluice:***@127.0.0.1:1"), "{message}");
        }
        other => panic!("expected an unreachable server, got {other:?}"),
    }
}

/// A connection lost in the middle of a commit (here: ended by the
/// server while the commit waits for a lock) is transient, and nothing of
/// the batch lands; the store goes on with a new connection.
#[tokio::test]
async fn a_connection_lost_mid_commit_is_transient_and_leaves_nothing() {
    let pg = TempPg::new().await;
    let store = pg.store().await;
    store.commit(&[host("a")]).await.expect("first commit");

    // Another session holds host a's row, so the commit below waits.
    let mut blocker = pg.lock_host_a().await;
    let commit = {
        let store = store.clone();
        tokio::spawn(async move { store.commit(&[host("b"), host("a")]).await })
    };
    pg.wait_for_a_lock_wait(
        "the commit to wait for the lock",
        "application_name = 'sluice'",
    )
    .await;
    pg.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'sluice' \
           AND wait_event_type = 'Lock'",
    )
    .await
    .expect("ending the waiting connection");

    let error = commit
        .await
        .expect("the commit task")
        .expect_err("the commit lost its connection");
    assert!(error.is_transient(), "{error:?}");
    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("rollback");

    assert_eq!(
        host_ids(&store).await,
        ["a"],
        "nothing of the failed batch landed"
    );
    store.commit(&[host("b")]).await.expect("the store goes on");
}

#[tokio::test]
async fn a_time_sluice_cannot_represent_fails_the_load_naming_the_row() {
    let pg = TempPg::new().await;
    let store = pg.store().await;
    store
        .commit(&[Write::Host(HostRecord {
            id: "a".to_owned(),
            labels: Default::default(),
            last_seen: Some(time("2026-03-01T00:00:00Z")),
        })])
        .await
        .expect("commit");
    pg.sql("UPDATE hosts SET last_seen = 'infinity'")
        .await
        .expect("damaging the row");
    match store.load().await {
        Err(error @ StoreError::Corrupt(_)) => {
            let message = error.to_string();
            for word in ["hosts", "row a", "last_seen", "infinity"] {
                assert!(message.contains(word), "{word} in: {message}");
            }
        }
        other => panic!("expected a corrupt row, got {other:?}"),
    }
}

/// Several stores on one database commit events at once while a reader
/// pages through them with `after`: the reader ends with every event
/// exactly once, in sequence order, although it read while later events
/// were committing — sequence numbers follow commit order.
#[tokio::test]
async fn concurrent_writers_never_make_a_paging_reader_skip_an_event() {
    const WRITERS: usize = 4;
    const BATCHES: usize = 40;
    let pg = TempPg::new().await;
    let first = pg.store().await;
    first
        .commit(&[Write::Rollout(rollout("r-1"))])
        .await
        .expect("the rollout");

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = pg.store().await;
        writers.push(tokio::spawn(async move {
            for batch in 0..BATCHES {
                // Batches of 1 to 3 events, with a host write first so
                // that transactions overlap for a while before they take
                // their numbers.
                let events: Vec<Write> = (0..1 + (writer + batch) % 3)
                    .map(|i| event(json!({"writer": writer, "batch": batch, "i": i})))
                    .collect();
                let mut writes = vec![host(&format!("w{writer}-{batch}"))];
                writes.extend(events);
                store.commit(&writes).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }

    let reader = pg.store().await;
    let mut seen = Vec::new();
    let mut after = 0;
    let mut writing = true;
    loop {
        let page = reader.events("r-1", after, 7).await.expect("a page");
        if let Some(last) = page.last() {
            after = last.seq;
            seen.extend(page);
        } else if !writing {
            break;
        } else {
            writing = !writers.iter().all(|w| w.is_finished());
            tokio::task::yield_now().await;
        }
    }
    for writer in writers {
        writer.await.expect("a writer task").expect("its commits");
    }

    let expected: usize = (0..WRITERS)
        .flat_map(|w| (0..BATCHES).map(move |b| 1 + (w + b) % 3))
        .sum();
    assert_eq!(seen.len(), expected, "every event, each once");
    for pair in seen.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "{} then {}",
            pair[0].seq,
            pair[1].seq
        );
    }
    let distinct: BTreeSet<String> = seen.iter().map(|e| e.event.data.to_string()).collect();
    assert_eq!(distinct.len(), expected);
    // Each batch's events are consecutive: numbered together at commit.
    for e in seen.windows(2) {
        let (a, b) = (&e[0].event.data, &e[1].event.data);
        if a["writer"] == b["writer"] && a["batch"] == b["batch"] {
            assert_eq!(e[1].seq, e[0].seq + 1);
        }
    }
}

// ---- the leader lease ----

const TTL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_lease_is_taken_once_renewed_by_its_holder_only_and_released() {
    let pg = TempPg::new().await;
    let (a, b) = (pg.store().await, pg.store().await);
    let state = a.current().await.expect("current");
    assert_eq!(state.lease, None, "nobody ever held it");

    let lease = a
        .acquire("a", "10.0.0.1:7070", TTL)
        .await
        .expect("acquire")
        .expect("a vacant lease is taken");
    assert_eq!(
        (lease.holder.as_str(), lease.address.as_str(), lease.epoch),
        ("a", "10.0.0.1:7070", 1)
    );
    let state = b.current().await.expect("current");
    assert_eq!(state.held(), Some(&lease));
    assert!(lease.expires_at > state.now);
    assert!(lease.expires_at <= state.now + jiff::SignedDuration::from_secs(30));

    // Held: nobody else takes it, and its holder does not take it again.
    assert_eq!(
        b.acquire("b", "10.0.0.2:7070", TTL).await.expect("acquire"),
        None
    );
    assert_eq!(
        a.acquire("a", "10.0.0.1:7070", TTL).await.expect("acquire"),
        None
    );

    // Renewal matches holder and epoch, never the name alone.
    let renewed = a
        .renew("a", 1, TTL)
        .await
        .expect("renew")
        .expect("still held");
    assert!(renewed.expires_at >= lease.expires_at);
    assert_eq!(renewed.epoch, 1);
    assert_eq!(b.renew("b", 1, TTL).await.expect("renew"), None);
    assert_eq!(a.renew("a", 2, TTL).await.expect("renew"), None);

    // Released: handed over at once, with a bigger epoch.
    assert!(
        !b.release("b", 1).await.expect("release"),
        "b never held it"
    );
    assert!(a.release("a", 1).await.expect("release"));
    assert!(!a.release("a", 1).await.expect("release"), "released once");
    assert_eq!(a.renew("a", 1, TTL).await.expect("renew"), None);
    assert_eq!(a.current().await.expect("current").held(), None);
    let taken = b
        .acquire("b", "10.0.0.2:7070", TTL)
        .await
        .expect("acquire")
        .expect("a released lease is taken");
    assert_eq!(taken.epoch, 2);

    // The old holder, back (say, restarted), waits, then gets a new epoch.
    assert!(b.release("b", 2).await.expect("release"));
    let again = a
        .acquire("a", "10.0.0.1:7070", TTL)
        .await
        .expect("acquire")
        .expect("taken again");
    assert_eq!(again.epoch, 3);
}

/// Oban's bug #1488 the other way round: a holder whose lease ran out
/// cannot renew it, even while nobody else has taken it, and the next
/// acquisition (its own included) raises the epoch.
#[tokio::test]
async fn an_expired_lease_cannot_be_renewed_and_is_taken_with_a_new_epoch() {
    let pg = TempPg::new().await;
    let (a, b) = (pg.store().await, pg.store().await);
    let lease = take(&a, "a", Duration::from_millis(200)).await;
    wait_for("the lease to expire", DEADLINE, || async {
        a.current().await.expect("current").held().is_none()
    })
    .await;
    assert_eq!(a.renew("a", lease.epoch, TTL).await.expect("renew"), None);
    let taken = take(&b, "b", TTL).await;
    assert_eq!(taken.epoch, lease.epoch + 1);
    assert_eq!(a.current().await.expect("current").held(), Some(&taken));
}

/// A standby's attempt to take an expired lease whose row a stalled commit
/// holds locked gives up within the lock timeout and says the lease is not
/// free, rather than waiting (and landing later, for a caller that stopped
/// waiting); once the lock is gone the lease is taken.
#[tokio::test]
async fn taking_the_lease_does_not_wait_behind_a_locked_row() {
    let pg = TempPg::new().await;
    let (a, b) = (pg.store().await, pg.store().await);
    take(&a, "a", Duration::from_millis(200)).await;
    wait_for("the lease to expire", DEADLINE, || async {
        b.current().await.expect("current").held().is_none()
    })
    .await;
    let mut blocker = pg.db.connect().await;
    sqlx::query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM leader_lease WHERE id = 1 FOR SHARE")
        .execute(&mut blocker)
        .await
        .expect("locking the lease row as a fenced commit does");
    let attempt = tokio::time::timeout(DEADLINE, b.acquire("b", "10.0.0.2:7070", TTL))
        .await
        .expect("the attempt gives up instead of waiting for the lock");
    assert_eq!(attempt.expect("not an error"), None);
    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("rollback");
    let taken = take(&b, "b", TTL).await;
    assert_eq!(taken.holder, "b");
}

/// After a takeover the old leader's fenced commit is refused as fenced
/// (not transient: it must step down) and nothing of it lands; the new
/// leader's fenced commits go through.
#[tokio::test]
async fn an_old_leader_cannot_commit_after_a_takeover() {
    let pg = TempPg::new().await;
    let (a, b) = (pg.store().await, pg.store().await);
    let old = take(&a, "a", Duration::from_millis(200)).await;
    let old_store = a.fenced("a", old.epoch);
    old_store
        .commit(&[host("before")])
        .await
        .expect("the leader commits");

    wait_for("the lease to expire", DEADLINE, || async {
        b.current().await.expect("current").held().is_none()
    })
    .await;
    // Expired but not yet taken: fenced too.
    match old_store.commit(&[host("expired")]).await {
        Err(StoreError::Fenced(message)) => assert!(message.contains("expired"), "{message}"),
        other => panic!("expected fenced, got {other:?}"),
    }
    let new = take(&b, "b", TTL).await;
    let new_store = b.fenced("b", new.epoch);

    let stale = [host("stale"), Write::Rollout(rollout("r-stale"))];
    match old_store.commit(&stale).await {
        Err(error @ StoreError::Fenced(_)) => {
            assert!(!error.is_transient());
            let message = error.to_string();
            assert!(message.contains("taken over by b (epoch 2)"), "{message}");
        }
        other => panic!("expected fenced, got {other:?}"),
    }
    match old_store.commit(&[]).await {
        Err(StoreError::Fenced(_)) => {}
        other => panic!("an empty commit learns it was fenced too: {other:?}"),
    }
    let samples = [sluice_store::SampleRecord {
        rollout: "r-1".to_owned(),
        at: time("2026-03-01T00:00:00Z"),
        versions: Default::default(),
    }];
    assert!(matches!(
        old_store.add_samples(&samples).await,
        Err(StoreError::Fenced(_))
    ));

    new_store
        .commit(&[host("after")])
        .await
        .expect("the new leader commits");
    new_store.add_samples(&samples).await.expect("and samples");
    assert_eq!(host_ids(&*new_store).await, ["after", "before"]);
    assert_eq!(new_store.load().await.expect("load").rollouts, vec![]);
}

/// A leader commits batches back to back while a standby takes over as
/// soon as the lease expires. Every batch of the old leader either landed
/// whole, numbered before the new leader's first event, or was fenced and
/// left nothing.
#[tokio::test]
async fn a_commit_racing_a_takeover_lands_whole_before_it_or_not_at_all() {
    let pg = TempPg::new().await;
    let (a, b) = (pg.store().await, pg.store().await);
    b.commit(&[Write::Rollout(rollout("r-1"))])
        .await
        .expect("the rollout");
    let old = take(&a, "a", Duration::from_millis(300)).await;
    let leader = a.fenced("a", old.epoch);
    let commits = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        for batch in 0.. {
            let writes = [
                host(&format!("h{batch}")),
                event(json!({"batch": batch, "i": 0})),
                event(json!({"batch": batch, "i": 1})),
            ];
            match leader.commit(&writes).await {
                Ok(()) => outcomes.push((batch, true)),
                Err(StoreError::Fenced(_)) => {
                    outcomes.push((batch, false));
                    break;
                }
                Err(other) => panic!("batch {batch}: {other:?}"),
            }
        }
        outcomes
    });
    let new = loop {
        if let Some(lease) = b.acquire("b", "b:7070", TTL).await.expect("acquire") {
            break lease;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let successor = b.fenced("b", new.epoch);
    successor
        .commit(&[event(json!({"successor": true}))])
        .await
        .expect("the successor commits");
    let outcomes = commits.await.expect("the old leader's task");

    let loaded = b.load().await.expect("load");
    let hosts: BTreeSet<String> = loaded.hosts.into_iter().map(|h| h.id).collect();
    let events = b.events("r-1", 0, 10_000).await.expect("events");
    let marker = events
        .iter()
        .find(|e| e.event.data["successor"] == true)
        .expect("the successor's event")
        .seq;
    for (batch, landed) in &outcomes {
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e.event.data["batch"] == *batch)
            .collect();
        if *landed {
            assert!(hosts.contains(&format!("h{batch}")), "batch {batch}'s host");
            assert_eq!(mine.len(), 2, "batch {batch}'s events");
            assert!(
                mine.iter().all(|e| e.seq < marker),
                "batch {batch} before the takeover"
            );
        } else {
            assert!(
                !hosts.contains(&format!("h{batch}")),
                "fenced batch {batch} left its host"
            );
            assert!(mine.is_empty(), "fenced batch {batch} left events");
        }
    }
    assert_eq!(outcomes.last().map(|(_, landed)| *landed), Some(false));
}

/// The takeover waits for a fenced commit in flight: the commit, held up
/// by a lock past the lease's expiry, still lands, and the successor's
/// lease begins after it.
#[tokio::test]
async fn a_takeover_waits_for_the_commit_in_flight() {
    let pg = TempPg::new().await;
    let (a, b) = (pg.store().await, pg.store().await);
    b.commit(&[host("a")]).await.expect("host a");
    let old = take(&a, "a", Duration::from_millis(500)).await;

    let mut blocker = pg.lock_host_a().await;
    let leader = a.fenced("a", old.epoch);
    let commit = tokio::spawn(async move { leader.commit(&[host("late"), host("a")]).await });
    wait_for("the lease to expire", DEADLINE, || async {
        b.current().await.expect("current").held().is_none()
    })
    .await;
    let takeover = {
        let b = b.clone();
        tokio::spawn(async move { b.acquire("b", "b:7070", TTL).await })
    };
    pg.wait_for_a_lock_wait(
        "the takeover to wait for the commit",
        "query LIKE 'INSERT INTO leader_lease%'",
    )
    .await;
    assert!(!takeover.is_finished());
    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("rollback");

    commit
        .await
        .expect("the commit task")
        .expect("the commit landed");
    let new = takeover
        .await
        .expect("the takeover task")
        .expect("acquire")
        .expect("taken after the commit");
    assert_eq!(new.epoch, old.epoch + 1);
    assert_eq!(host_ids(&b).await, ["a", "late"]);
}

#[tokio::test]
async fn replicas_report_their_heartbeats_and_old_ones_are_forgotten() {
    let pg = TempPg::new().await;
    let store = pg.store().await;
    assert_eq!(store.replicas().await.expect("replicas"), vec![]);
    store
        .heartbeat("b", "10.0.0.2:7070")
        .await
        .expect("heartbeat");
    store
        .heartbeat("a", "10.0.0.1:7070")
        .await
        .expect("heartbeat");
    let first = store.replicas().await.expect("replicas");
    let ids: Vec<(&str, &str)> = first
        .iter()
        .map(|r| (r.id.as_str(), r.address.as_str()))
        .collect();
    assert_eq!(ids, [("a", "10.0.0.1:7070"), ("b", "10.0.0.2:7070")]);
    let now = store.current().await.expect("current").now;
    assert!(first.iter().all(|r| r.last_heartbeat <= now));

    // a moves; b falls silent for two days.
    store
        .heartbeat("a", "10.0.0.9:7070")
        .await
        .expect("heartbeat");
    pg.sql("UPDATE replicas SET last_heartbeat = now() - interval '2 days' WHERE id = 'b'")
        .await
        .expect("aging b");
    let listed = store.replicas().await.expect("replicas");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].address, "10.0.0.9:7070");
    assert!(listed[0].last_heartbeat > first[0].last_heartbeat);
    store
        .heartbeat("a", "10.0.0.9:7070")
        .await
        .expect("heartbeat");
    let mut conn = pg.db.connect().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM replicas")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(rows, 1, "the heartbeat pruned b's row");
}

#[tokio::test]
async fn the_fenced_handle_reads_what_the_store_reads() {
    let pg = TempPg::new().await;
    let store = pg.store().await;
    let lease = take(&store, "a", TTL).await;
    let fenced: Arc<dyn Store> = store.fenced("a", lease.epoch);
    fenced
        .commit(&[Write::Rollout(rollout("r-1")), event(json!({"n": 1}))])
        .await
        .expect("commit");
    assert_eq!(
        fenced.load().await.expect("load"),
        store.load().await.expect("load")
    );
    assert_eq!(
        fenced.events("r-1", 0, 10).await.expect("events"),
        store.events("r-1", 0, 10).await.expect("events")
    );
    assert_eq!(
        fenced.schema_version().await.expect("version"),
        store.schema_version().await.expect("version")
    );
}
