//! SIGSTOP of the leader while agents check in, in the middle of a commit
//! (its transaction open in PostgreSQL, the lease row locked), for longer
//! than its lease:
//! a standby takes over and the rollout moves on; paused then through the
//! third replica, with the agents stopped, the database holds still. SIGCONT:
//! the old leader, which had check-ins and commits under way when it was
//! stopped, steps down, and the database is as it was — no event, no host
//! record, no rollout record of the old epoch lands after the takeover. It
//! then serves as a standby, forwarding to the new leader.

use std::sync::Arc;
use std::time::Duration;

use sluice_store::testing::TempPgDatabase;
use sluice_testkit::cluster::replica_id;
use sluice_testkit::{wait_for, Cluster, Stage, DEADLINE};

use crate::support::{self, detail, progress, stored, wait_for_progress};

const ALL: [usize; 3] = [0, 1, 2];

/// Stops replica `leader` in the middle of a commit, its transaction open
/// in the database and the lease row it checked locked: SIGSTOP, and if
/// PostgreSQL has no such transaction, SIGCONT and again a moment later.
/// The leader commits check-ins all the time, so a few tries do.
async fn stop_mid_commit(cluster: &Cluster, leader: usize, db: &TempPgDatabase) {
    let mut conn = db.connect().await;
    for _ in 0..ATTEMPTS {
        cluster.replica(leader).sigstop();
        if lease_held_by_idle_transaction(&mut conn).await {
            return;
        }
        cluster.replica(leader).sigcont();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("in {ATTEMPTS} tries, the leader was never stopped in the middle of a commit");
}

/// Whether a transaction that waits for its client's next statement holds
/// the lease row locked: the row cannot be locked at once, and a session
/// of sluice idles in a transaction that wrote or locked something.
async fn lease_held_by_idle_transaction(conn: &mut sqlx::PgConnection) -> bool {
    use sqlx::Connection as _;
    let idle: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'sluice' \
           AND state = 'idle in transaction' AND backend_xid IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("reading pg_stat_activity");
    if idle == 0 {
        return false;
    }
    let mut tx = conn.begin().await.expect("a transaction");
    let locked = sqlx::query("SELECT 1 FROM leader_lease WHERE id = 1 FOR UPDATE NOWAIT")
        .execute(&mut *tx)
        .await;
    tx.rollback().await.expect("rolling back");
    match locked {
        Ok(_) => false,
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("55P03") => true,
        Err(error) => panic!("locking the lease row: {error}"),
    }
}

/// Tries of [`stop_mid_commit`].
const ATTEMPTS: u32 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_is_replaced_and_nothing_it_writes_after_lands() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let db = TempPgDatabase::create().await;
    let (cluster, fleet) = support::cluster_with_fleet(&db).await;
    let plan = cluster.write(
        "plan.yaml",
        support::plan(
            "ha-stalled",
            [
                Stage::percent(30).named("thirty"),
                Stage::percent(100).named("all"),
            ],
        ),
    );
    let preview = cluster.preview(&plan, &support::fleet_10k()).await.stages;
    let id = cluster.start_rollout(1, &plan, "ha: CHG-2").await;
    let agents = Arc::new(support::agents(&cluster, &fleet));
    let playing = agents.start();

    // Under way: hosts admitted, some of them healthy.
    wait_for_progress(&cluster, &ALL, &id, 20, "the rollout to get going").await;
    let before = cluster.leadership(&ALL).await.expect("a leader");
    let stopped = before.leader;
    let others: Vec<usize> = ALL.into_iter().filter(|&i| i != stopped).collect();
    let watch = agents.watch(support::clients(&cluster, &others), &id, preview.clone());
    stop_mid_commit(&cluster, stopped, &db).await;

    // A successor takes over and the rollout moves on under it.
    let after = cluster.wait_for_leader(&others, Some(&before)).await;
    let third = others
        .iter()
        .copied()
        .find(|&i| i != after.leader)
        .expect("a third replica");
    let moved = progress(&detail(&cluster, &others, &id).await.expect("the rollout"));
    wait_for_progress(
        &cluster,
        &others,
        &id,
        moved,
        "the rollout to move under the successor",
    )
    .await;

    // Paused through the third replica, agents stopped: the successor has
    // nothing more to write.
    let paused = cluster
        .rollout_action(third, &id, "pause", "ha: leader stalled")
        .await;
    assert_eq!(paused["state"], "paused", "{paused}");
    playing.stop().await;
    let watched = watch.stop().await;
    watched.assert_within_stages();
    let (loaded, events) = stored(&db, &id).await;

    // SIGCONT: the old leader steps down, and nothing it still held lands.
    cluster.replica(stopped).sigcont();
    wait_for("the old leader to step down", DEADLINE, || async {
        let server = cluster.replica(stopped);
        if server.logged_since_start("stepped down") {
            Ok(())
        } else {
            Err(cluster.readiness(stopped).await)
        }
    })
    .await;
    let (loaded_after, events_after) = stored(&db, &id).await;
    assert_eq!(
        events_after.len(),
        events.len(),
        "events written after the takeover: {:#?}",
        &events_after[events.len().min(events_after.len())..]
    );
    assert_eq!(events_after, events);
    assert_eq!(loaded_after.rollouts, loaded.rollouts, "rollout records");
    assert_eq!(
        loaded_after.rollout_hosts, loaded.rollout_hosts,
        "host records of the rollout"
    );
    assert_eq!(
        loaded_after.host_components, loaded.host_components,
        "hosts' reports"
    );
    assert_eq!(loaded_after.hosts, loaded.hosts, "hosts");
    assert_eq!(loaded_after, loaded);
    assert!(events.len() > 2, "the rollout has events: {events:?}");
    support::no_acknowledged_report_lost(&agents, &db, &id).await;

    // The lease stayed with the successor; the old leader serves as a
    // standby: a resume through it is forwarded, and the rollout moves on.
    let now = cluster.leadership(&ALL).await.expect("a leader");
    assert_eq!(now, after, "the successor still leads, in its epoch");
    wait_for("the old leader to serve as a standby", DEADLINE, || async {
        cluster.readiness(stopped).await.and_then(|role| {
            if role == "standby" {
                Ok(())
            } else {
                Err(role)
            }
        })
    })
    .await;
    let resumed = cluster
        .rollout_action(stopped, &id, "resume", "ha: leader replaced")
        .await;
    assert_eq!(resumed["state"], "running", "{resumed}");
    let playing = agents.start();
    let watch = agents.watch(support::clients(&cluster, &ALL), &id, preview.clone());
    let moved = progress(&detail(&cluster, &ALL, &id).await.expect("the rollout"));
    wait_for_progress(
        &cluster,
        &ALL,
        &id,
        moved,
        "the rollout to move after the resume",
    )
    .await;
    playing.stop().await;
    watch.stop().await.assert_within_stages();
    support::no_acknowledged_report_lost(&agents, &db, &id).await;
    eprintln!(
        "stalled: {} stopped at epoch {}, {} led at epoch {}; {} rounds, per replica: {:?}",
        replica_id(stopped),
        before.epoch,
        replica_id(after.leader),
        after.epoch,
        agents.rounds(),
        agents.tally()
    );
}
