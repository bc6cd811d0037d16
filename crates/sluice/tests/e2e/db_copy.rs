//! `sluice db copy`: a rollout under way on the embedded store moves to
//! PostgreSQL and finishes there. It reaches its second stage on SQLite
//! with agents checking in, some hosts of that stage in flight; the server
//! stops (SIGTERM), the copy runs (refused while the server ran, and once
//! the target holds the copy), and `sluice server --database-url` on the
//! copy finishes the rollout, each stage admitting exactly the hosts `sluice
//! plan preview` names, its events carrying on after the copied ones.

use sluice_api::host::ImportHost;
use sluice_api::rollout::{EventView, Phase, RolloutState};
use sluice_store::testing::TempPgDatabase;
use sluice_testkit::{wait_for, Amount, Plan, Sandbox, Stage, DEADLINE};

use crate::fleet::{fleet_10k, sandbox_with_fleet_10k, COMPONENT};
use crate::full_rollout::{detail, settle_stage, wait_for_stage, Sim, TARGET};

/// Roles of one site of the fixture: 263 hosts in 5 strata.
const ROLES: [&str; 5] = ["dns", "vault", "cache", "logs", "share"];

fn plan() -> Plan {
    Plan::new("e2e-db-copy", COMPONENT, TARGET)
        .selector(&format!("site=ash, role in ({})", ROLES.join(", ")))
        .spread(&["role", "site"])
        .max_in_flight(Amount::Percent(10))
        .stage(Stage::percent(5).named("canary").bake("1s"))
        .stage(Stage::percent(30).named("thirty").bake("1s").approve())
        .stage(Stage::percent(100).named("all"))
}

fn selected(host: &ImportHost) -> bool {
    let label = |name: &str| host.labels.get(name).map(String::as_str);
    label("site") == Some("ash") && label("role").is_some_and(|role| ROLES.contains(&role))
}

/// Every event of rollout `id` (far fewer than a page of 10,000).
async fn events(sandbox: &Sandbox, id: &str) -> Vec<EventView> {
    sandbox
        .client()
        .events(id, None, Some(10_000))
        .await
        .unwrap_or_else(|error| panic!("GET /v1/rollouts/{id}/events: {error}"))
        .events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_copied_to_postgresql_finishes_admitting_exactly_its_preview() {
    let db = TempPgDatabase::create().await;
    let (mut sandbox, fleet) = sandbox_with_fleet_10k().await;
    let plan = sandbox.write("plan.yaml", plan());
    let preview = sandbox.preview(&plan, &fleet_10k()).await.stages;
    assert_eq!(
        preview[2].len(),
        fleet.iter().filter(|h| selected(h)).count()
    );
    let id = sandbox.start_rollout(&plan, "e2e: CHG-4").await;
    let mut sim = Sim::new(sandbox.client().clone(), &fleet, selected);

    // On SQLite: the canary settles, the second stage starts and its first
    // hosts are told the target, without having applied it yet.
    settle_stage(&mut sim, &sandbox, &id, 0, &preview).await;
    wait_for_stage(&sandbox, &id, 1).await;
    sim.sweep().await;
    let before = detail(&sandbox, &id).await;
    assert_eq!(before.summary.stage, Some(1));
    assert!(before.in_flight > 0, "hosts of stage 2 are in flight");
    assert_eq!(before.summary.admitted, sim.told.len() as u64);
    assert!(sim.told.len() > preview[0].len() && sim.told.is_subset(&preview[1]));
    let events_before = events(&sandbox, &id).await;

    let data_dir = sandbox
        .data_dir()
        .to_str()
        .expect("a UTF-8 path")
        .to_owned();
    let copy = ["db", "copy", "--from", &data_dir, "--to", db.url()];
    let refused = sandbox.sluice(&copy).await.exits(2);
    assert!(
        refused.stderr().contains("in use by another process"),
        "{}",
        refused.stderr()
    );

    sandbox.stop().await;
    let copied = sandbox
        .sluice(&[&copy[..], &["--output", "json"]].concat())
        .await
        .ok()
        .json();
    let rows = |table: &str| {
        copied["tables"]
            .as_array()
            .and_then(|tables| tables.iter().find(|t| t["table"] == table))
            .and_then(|t| t["rows"].as_u64())
            .unwrap_or_else(|| panic!("no count of {table}: {copied}"))
    };
    assert_eq!(rows("hosts"), fleet.len() as u64, "{copied}");
    assert_eq!(rows("rollouts"), 1, "{copied}");
    assert!(rows("events") >= events_before.len() as u64, "{copied}");
    let again = sandbox.sluice(&copy).await.exits(2);
    assert!(
        again.stderr().contains("is not empty"),
        "{}",
        again.stderr()
    );

    // On PostgreSQL: the rollout stands where it stood, hosts in flight and
    // events included.
    sandbox.restart_with(&["--database-url", db.url()]).await;
    assert!(
        sandbox
            .log()
            .iter()
            .any(|line| line.contains("state in PostgreSQL")),
        "the server runs on PostgreSQL"
    );
    let after = detail(&sandbox, &id).await;
    assert_eq!(
        (after.summary.stage, after.summary.admitted, after.in_flight),
        (
            before.summary.stage,
            before.summary.admitted,
            before.in_flight
        )
    );
    assert_eq!(events(&sandbox, &id).await, events_before);

    // It finishes there, each stage admitting exactly its preview.
    settle_stage(&mut sim, &sandbox, &id, 1, &preview).await;
    wait_for("stage 2 to await approval", DEADLINE, || async {
        let now = detail(&sandbox, &id).await;
        (now.summary.phase == Some(Phase::AwaitingApproval)).then_some(())
    })
    .await;
    sandbox
        .rollout_action(&id, "approve", "e2e: stage 2 healthy on PostgreSQL")
        .await;
    settle_stage(&mut sim, &sandbox, &id, 2, &preview).await;
    wait_for("the rollout to complete", DEADLINE, || async {
        let now = detail(&sandbox, &id).await;
        (now.summary.state == RolloutState::Completed).then_some(())
    })
    .await;
    assert_eq!(sim.told, preview[2]);

    let events_after = events(&sandbox, &id).await;
    assert_eq!(events_after[..events_before.len()], events_before[..]);
    assert!(
        events_after.len() > events_before.len(),
        "the rollout went on"
    );
    for pair in events_after.windows(2) {
        assert!(pair[0].seq < pair[1].seq, "{pair:?}");
    }
}
