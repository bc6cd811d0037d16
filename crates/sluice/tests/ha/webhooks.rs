//! A webhook's delivery across a failover: two replicas on PostgreSQL, a
//! webhook added through the standby, a rollout paused and resumed over
//! and over; the receiver ([`WebhookReceiver`]) hangs on its third
//! delivery, and the leader is SIGKILLed while it waits for the answer.
//! The standby takes over and delivers from the cursor the old leader
//! stored: every wanted event arrives, in the log's order, signed, and
//! only the interrupted one twice.

use sluice_api::host::ImportHost;
use sluice_api::rollout::Action;
use sluice_api::HostId;
use sluice_store::testing::TempPgDatabase;
use sluice_testkit::receiver::{logged_events, pause_and_resume};
use sluice_testkit::{wait_for, Cluster, Plan, Stage, WebhookReceiver, DEADLINE};

use crate::support::{COMPONENT, LEASE_TTL};

const SECRET: &str = "ha-webhook-secret";
const HANG_AT: usize = 3;
const WANTED: &[&str] = &["started", "stage_started", "paused", "resumed", "aborted"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_taking_over_delivers_from_the_stored_cursor() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let db = TempPgDatabase::create().await;
    let mut cluster = Cluster::start(db.url(), 2, LEASE_TTL).await;
    let before = cluster.wait_for_leader(&[0, 1], None).await;
    let standby = 1 - before.leader;
    let hosts: Vec<ImportHost> = (0..4)
        .map(|i| ImportHost {
            id: HostId::parse(format!("hook-{i}.ash.example.net")).expect("a host id"),
            labels: [("role".to_owned(), "web".to_owned())].into(),
            components: [(COMPONENT.to_owned(), "1".to_owned())].into(),
        })
        .collect();
    cluster
        .client(standby)
        .import_hosts(&hosts, "ha")
        .await
        .expect("importing the hosts");
    let work = tempfile::TempDir::new().expect("temp dir");
    let receiver = WebhookReceiver::start(work.path(), 0, SECRET, HANG_AT).await;
    let secret = cluster.write("webhook.secret", SECRET);
    let add = receiver.add_args(WANTED, &secret, "ha: tell the receiver");
    let added = cluster
        .sluice(standby, &add.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .ok()
        .json();
    let hook = added["id"].as_str().expect("an id").to_owned();
    let plan = cluster.write(
        "plan.yaml",
        Plan::new("ha-hooked", COMPONENT, "2")
            .stage(Stage::percent(50))
            .stage(Stage::percent(100)),
    );
    let id = cluster.start_rollout(standby, &plan, "ha").await;

    // The leader sends the third delivery and waits for its answer, which
    // never comes: it is killed then.
    pause_and_resume(cluster.client(standby), &id, 5, "ha").await;
    wait_for("the receiver's third delivery", DEADLINE, || async {
        receiver.deliveries().len() >= HANG_AT
    })
    .await;
    cluster.replica_mut(before.leader).kill9();
    let kills = [receiver.deliveries().len()];
    assert_eq!(kills, [HANG_AT]);
    let after = cluster.wait_for_leader(&[standby], Some(&before)).await;
    assert_eq!(after.leader, standby);

    // The new leader delivers from the stored cursor (the receiver answers
    // again: its hung delivery was its third), and what follows.
    let client = cluster.client(standby);
    pause_and_resume(client, &id, 5, "ha").await;
    client
        .action(&id, Action::Abort, "ha over")
        .await
        .expect("aborting");
    let logged = logged_events(client, &id, WANTED).await;
    assert!(logged.len() >= 23, "{logged:?}");
    let deliveries = receiver
        .deliveries_through(&logged.last().expect("events")["seq"])
        .await;
    let delivered = WebhookReceiver::delivered_once(&deliveries, &hook, &kills);
    assert_eq!(delivered, logged, "none lost, none out of order");
}
