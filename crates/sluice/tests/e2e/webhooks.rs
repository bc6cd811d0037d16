//! Issue 16, points 4 and 7: webhook deliveries against a real HTTP
//! receiver in its own process ([`WebhookReceiver`]: Python's
//! `http.server`, which records each delivery, with the HMAC it computes
//! with the secret, before answering 200, and hangs on its third). While
//! an operator pauses and resumes a rollout over and over, the receiver is
//! SIGKILLed mid-delivery and restarted on the same port, then the server
//! is SIGKILLed mid-delivery and restarted on the same data dir. In the
//! end every wanted event of the log was delivered, in the log's order,
//! every signature verifies, and an event was delivered twice only when a
//! kill fell between its delivery and the cursor's write.

use sluice_api::host::ImportHost;
use sluice_api::rollout::Action;
use sluice_api::HostId;
use sluice_testkit::receiver::{logged_events, pause_and_resume};
use sluice_testkit::{wait_for, Plan, Sandbox, Stage, WebhookReceiver, DEADLINE};

use crate::fleet::COMPONENT;

const SECRET: &str = "e2e-webhook-secret";

/// Each run of the receiver records its third delivery and never answers it.
const HANG_AT: usize = 3;

/// The kinds the webhook wants.
const WANTED: &[&str] = &[
    "started",
    "stage_started",
    "paused",
    "resumed",
    "rollback_started",
    "aborted",
    "completed",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_a_receiver_and_a_server_killed_mid_stream() {
    let mut sandbox = Sandbox::builder()
        .arg("--webhook-retry-max")
        .arg("1s")
        .start()
        .await;
    let work = tempfile::TempDir::new().expect("temp dir");
    let mut receiver = WebhookReceiver::start(work.path(), 0, SECRET, HANG_AT).await;
    let secret = sandbox.write("webhook.secret", format!("{SECRET}\n"));
    let add = receiver.add_args(WANTED, &secret, "e2e: tell the receiver");
    let added = sandbox
        .sluice(&add.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .ok()
        .json();
    let hook = added["id"].as_str().expect("an id").to_owned();
    assert_eq!(added["signed"], true, "{added}");

    let hosts: Vec<ImportHost> = (0..4)
        .map(|i| ImportHost {
            id: HostId::parse(format!("hook-{i}.sto.example.net")).expect("a host id"),
            labels: [("role".to_owned(), "web".to_owned())].into(),
            components: [(COMPONENT.to_owned(), "1".to_owned())].into(),
        })
        .collect();
    sandbox
        .client()
        .import_hosts(&hosts, "e2e")
        .await
        .expect("importing the hosts");
    // The hosts never check in: the rollout stays in its first stage while
    // it is paused and resumed.
    let plan = Plan::new("hooked", COMPONENT, "2")
        .stage(Stage::percent(50))
        .stage(Stage::percent(100));
    let id = sandbox.start_plan(&plan, "e2e").await;

    // Mid-stream: events wait to be delivered while the receiver hangs on
    // its third delivery, recorded but not answered; it is killed then.
    pause_and_resume(sandbox.client(), &id, 10, "e2e").await;
    wait_for("the receiver's third delivery", DEADLINE, || async {
        receiver.deliveries().len() >= HANG_AT
    })
    .await;
    receiver.kill9();
    let mut kills = vec![receiver.deliveries().len()];
    assert_eq!(kills, [HANG_AT]);
    // Events keep coming while it is down; the webhook is marked failing.
    pause_and_resume(sandbox.client(), &id, 5, "e2e").await;
    wait_for("the webhook marked failing", DEADLINE, || async {
        let listed = sandbox
            .sluice(&["webhook", "list", "--output", "json"])
            .await
            .ok()
            .json();
        listed["webhooks"][0]["failing"] == true
    })
    .await;
    let listed = sandbox.sluice(&["webhook", "list"]).await.ok().stdout();
    assert!(listed.contains("FAILING"), "{listed}");
    // It comes back on its port and hangs again on its third delivery:
    // then the server is killed, mid-send, and restarted.
    receiver.restart(HANG_AT).await;
    wait_for(
        "the restarted receiver's third delivery",
        DEADLINE,
        || async { receiver.deliveries().len() >= 2 * HANG_AT },
    )
    .await;
    sandbox.kill9();
    kills.push(receiver.deliveries().len());
    assert_eq!(kills, [HANG_AT, 2 * HANG_AT]);
    sandbox.restart().await;
    pause_and_resume(sandbox.client(), &id, 5, "e2e").await;
    sandbox
        .client()
        .action(&id, Action::Abort, "e2e over")
        .await
        .expect("aborting");

    let logged = logged_events(sandbox.client(), &id, WANTED).await;
    assert!(
        logged.len() >= 42,
        "20 pauses and resumes, a start, a stage, an abort: {logged:?}"
    );
    let deliveries = receiver
        .deliveries_through(&logged.last().expect("events")["seq"])
        .await;

    // Each delivery is signed with the secret and names its event, and
    // one was received twice per kill: the one it interrupted.
    let first_copies = WebhookReceiver::delivered_once(&deliveries, &hook, &kills);
    for event in &first_copies {
        assert_eq!(event["rollout"], id.as_str(), "{event}");
    }
    // None lost, none out of order: the first copies are the log's wanted
    // events, in its order.
    assert_eq!(first_copies, logged);

    let listed = sandbox
        .sluice(&["webhook", "list", "--output", "json"])
        .await
        .ok()
        .json();
    let shown = &listed["webhooks"][0];
    assert_eq!(shown["id"], hook.as_str(), "{listed}");
    assert_eq!(shown["failing"], false, "{listed}");
    assert!(
        !listed.to_string().contains(SECRET),
        "no secret in a listing: {listed}"
    );
    let tested = sandbox.sluice(&["webhook", "test", &hook]).await.ok();
    assert!(
        tested
            .stdout()
            .contains("delivered: the receiver answered 200"),
        "{}",
        tested.stdout()
    );
    assert!(
        receiver
            .deliveries()
            .iter()
            .any(|d| d["event"] == "webhook_test" && d["signature"] == d["expected"]),
        "the test delivery arrived, signed"
    );
    sandbox
        .sluice(&["webhook", "remove", &hook, "--reason", "e2e done"])
        .await
        .ok();
    let listed = sandbox
        .sluice(&["webhook", "list", "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(listed["webhooks"], serde_json::json!([]), "{listed}");
}
