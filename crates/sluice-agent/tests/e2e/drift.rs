//! Drift with real agents: a host changed by hand after it reached its
//! desired version is reported drifted — on the host's view, in `GET
//! /v1/hosts?drifted=true` and `sluice hosts list --drifted` — and the
//! rollout that had it healthy counts it failed. Its agent does not change
//! it back until its component says `enforce = true`; then it re-applies the
//! desired version, and the host is healthy and no longer drifted.

use std::collections::BTreeMap;

use sluice_api::agent::ReportState;
use sluice_api::host::HostComponent;
use sluice_api::rollout::{Phase, RolloutState};
use sluice_client::HostQuery;
use sluice_testkit::{wait_for, Amount, Plan, Sandbox, Stage, DEADLINE};

use crate::harness::{start_server, wait_for_reports, Host};

const OLD: &str = "1.0";
const NEW: &str = "2.0";

/// What the server last heard from `id` about `app`.
async fn app(server: &Sandbox, id: &str) -> Option<HostComponent> {
    server.host(id).await?.components.get("app").cloned()
}

/// The ids `GET /v1/hosts?drifted=true` lists.
async fn drifted(server: &Sandbox) -> Vec<String> {
    let query = HostQuery {
        drifted: true,
        ..HostQuery::default()
    };
    let list = server
        .client()
        .hosts_page(&query)
        .await
        .expect("GET /v1/hosts?drifted=true");
    assert_eq!(list.total, list.hosts.len() as u64);
    list.hosts.into_iter().map(|host| host.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_changed_by_hand_is_reported_drifted_and_changed_back_only_when_enforced() {
    let server = start_server().await;
    let labels = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
    let mut hosts = Vec::new();
    for id in ["steady.test", "tampered.test"] {
        let token = server.agent_token_file(id).await;
        hosts.push(Host::new(id, &labels, OLD, server.url(), &token, ""));
    }
    for host in &mut hosts {
        host.start();
    }
    wait_for_reports(&server, &hosts, OLD).await;

    // The last stage awaits approval: the rollout still listens.
    let plan = Plan::new("e2e-drift-2.0", "app", NEW)
        .max_in_flight(Amount::Percent(100))
        .stage(Stage::percent(100).approve())
        .max_failed(1);
    let id = server.start_plan(&plan, "e2e").await;
    wait_for_reports(&server, &hosts, NEW).await;
    wait_for("the rollout to await approval", DEADLINE, || async {
        let detail = server.client().rollout(&id).await.ok()?;
        (detail.summary.phase == Some(Phase::AwaitingApproval) && detail.summary.healthy == 2)
            .then_some(())
    })
    .await;
    assert!(drifted(&server).await.is_empty());

    // Someone puts the old version back on one host by hand.
    let tampered = &hosts[1];
    std::fs::write(tampered.path("version"), format!("{OLD}\n")).expect("version file");
    let reported = wait_for("the drift to be reported", DEADLINE, || async {
        let app = app(&server, &tampered.id).await?;
        app.drifted.then_some(app)
    })
    .await;
    assert_eq!(reported.version, OLD);
    assert_eq!(reported.desired.as_deref(), Some(NEW));
    assert_eq!(reported.state, Some(ReportState::Ok));
    assert_eq!(drifted(&server).await, ["tampered.test"]);
    let listed = server.sluice(&["hosts", "list", "--drifted"]).await.ok();
    let listed = listed.stdout();
    assert!(
        listed.contains("tampered.test") && listed.contains("app=1.0→2.0(drifted)"),
        "{listed}"
    );
    assert!(!listed.contains("steady.test"), "{listed}");
    let listed = server
        .sluice(&["hosts", "list", "--drifted", "--component", "app"])
        .await
        .ok()
        .stdout();
    assert!(listed.contains("ok, drifted"), "{listed}");
    let steady = app(&server, &hosts[0].id).await.expect("steady.test");
    assert!(!steady.drifted);

    // The rollout had it healthy at 2.0: it lost the change, a failure.
    let events = wait_for("the rollout to record the failure", DEADLINE, || async {
        let events = server.client().events(&id, None, Some(1000)).await.ok()?;
        events
            .events
            .into_iter()
            .find(|event| event.kind == "host_failed")
    })
    .await;
    assert_eq!(events.data["host"], "tampered.test");
    let reason = events.data["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("drifted: found at 1.0 after reporting healthy at 2.0"),
        "{reason}"
    );
    let detail = server.client().rollout(&id).await.expect("the rollout");
    assert_eq!(
        (detail.summary.state, detail.summary.failed),
        (RolloutState::Running, 1),
        "one failure is within max_failed"
    );

    // The agent leaves the host as it found it, check-in after check-in.
    let answered = server.checkins().await;
    wait_for("five more check-ins", DEADLINE, || async {
        (server.checkins().await >= answered + 5).then_some(())
    })
    .await;
    assert_eq!(tampered.version(), OLD);
    assert_eq!(tampered.apply_runs(), 1, "applied 2.0 once, never again");
    assert!(app(&server, &tampered.id).await.is_some_and(|a| a.drifted));
    let log = std::fs::read_to_string(tampered.path("agent.log")).expect("the log");
    assert!(log.contains("not re-applying it (enforce is off)"), "{log}");

    // With enforce = true the agent changes it back.
    let tampered = &mut hosts[1];
    tampered.kill9();
    tampered.set("enforce", "true");
    tampered.start();
    wait_for("the enforced host to run 2.0 again", DEADLINE, || async {
        let app = app(&server, &tampered.id).await?;
        (app.version == NEW && app.state == Some(ReportState::Ok) && !app.drifted).then_some(())
    })
    .await;
    assert_eq!(tampered.version(), NEW);
    assert_eq!(tampered.apply_runs(), 2);
    let log = std::fs::read_to_string(tampered.path("agent.log")).expect("the log");
    assert!(
        log.contains("re-applying the desired version over a drift (enforce = true)"),
        "{log}"
    );
    assert!(drifted(&server).await.is_empty());
    wait_for(
        "the rollout to have both hosts healthy",
        DEADLINE,
        || async {
            let detail = server.client().rollout(&id).await.ok()?;
            (detail.summary.healthy == 2 && detail.summary.failed == 0).then_some(())
        },
    )
    .await;
}
