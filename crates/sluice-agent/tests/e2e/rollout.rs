//! A real rollout over 20 real agents: a server, 20 `sluice-agent`
//! processes, each with a temp dir standing in for its host.
//!
//! Per stage exactly the hosts `sluice plan preview` admits change; the
//! server is killed mid-rollout for a while and the agents change nothing,
//! keep their state, back off and come back; hosts whose health check fails
//! halt the rollout, which rolls back as the plan says, returning every
//! admitted host to the old version.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sluice_api::rollout::{Action, Phase, RolloutState};
use sluice_testkit::{wait_for, Amount, OnFailure, Plan, Sandbox, Stage, DEADLINE};

use crate::harness::{start_server, wait_for_reports, Host};

const OLD: &str = "1.0";
const NEW: &str = "2.0";
const HOSTS: usize = 20;

fn plan() -> Plan {
    Plan::new("e2e-app-2.0", "app", NEW)
        .spread(&["role"])
        .max_in_flight(Amount::Percent(100))
        .stage(Stage::percent(10).named("canary").approve())
        .stage(Stage::percent(50).named("half").approve())
        .stage(Stage::percent(100).named("all"))
        .max_failed(1)
        .on_failure(OnFailure::Rollback)
}

fn labels(i: usize) -> BTreeMap<String, String> {
    let role = if i.is_multiple_of(2) { "web" } else { "db" };
    BTreeMap::from([
        ("role".to_owned(), role.to_owned()),
        ("site".to_owned(), format!("s{}", i % 3)),
    ])
}

/// The hosts running each version, read from their dirs.
fn running(hosts: &[Host], version: &str) -> BTreeSet<String> {
    hosts
        .iter()
        .filter(|host| host.version() == version)
        .map(|host| host.id.clone())
        .collect()
}

/// What `sluice plan preview --json` admits per stage, for these hosts.
async fn preview(server: &Sandbox) -> Vec<BTreeSet<String>> {
    let fleet: Vec<serde_json::Value> = (0..HOSTS)
        .map(|i| {
            serde_json::json!({
                "id": format!("host-{i:02}.test"),
                "labels": labels(i),
                "components": {"app": OLD},
            })
        })
        .collect();
    let fleet = server.write("fleet.json", serde_json::Value::from(fleet));
    let plan = server.write("plan.yaml", plan());
    server.preview(&plan, &fleet).await.stages
}

async fn phase(server: &Sandbox, id: &str) -> (RolloutState, Option<usize>, Option<Phase>) {
    let detail = server.client().rollout(id).await.expect("GET the rollout");
    (
        detail.summary.state,
        detail.summary.stage,
        detail.summary.phase,
    )
}

/// Waits until the rollout awaits approval after stage `stage`, then checks
/// that exactly `admitted` run the new version (and keep doing so).
async fn stage_settles(
    server: &Sandbox,
    hosts: &[Host],
    id: &str,
    stage: usize,
    admitted: &BTreeSet<String>,
) {
    wait_for(
        &format!("stage {} to await approval", stage + 1),
        DEADLINE,
        || async {
            let (state, current, phase) = phase(server, id).await;
            assert_eq!(state, RolloutState::Running, "the rollout runs");
            (current == Some(stage) && phase == Some(Phase::AwaitingApproval)).then_some(())
        },
    )
    .await;
    assert_eq!(
        &running(hosts, NEW),
        admitted,
        "after stage {} exactly its preview runs {NEW}",
        stage + 1
    );
    for host in hosts {
        if admitted.contains(&host.id) {
            assert_eq!(host.apply_runs(), 1, "{} applied once", host.id);
        } else {
            assert_eq!(host.apply_runs(), 0, "{} was not touched", host.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_agents_follow_a_rollout_survive_the_server_and_roll_back() {
    let mut server = start_server().await;
    let mut hosts = Vec::new();
    for i in 0..HOSTS {
        let id = format!("host-{i:02}.test");
        let token = server.agent_token_file(&id).await;
        hosts.push(Host::new(&id, &labels(i), OLD, server.url(), &token, ""));
    }
    for host in &mut hosts {
        host.start();
    }
    wait_for_reports(&server, &hosts, OLD).await;

    let preview = preview(&server).await;
    assert_eq!(preview.len(), 3);
    assert_eq!((preview[0].len(), preview[1].len()), (2, 10));
    // Two hosts only the last stage admits fail their health check at 2.0.
    let bad: Vec<usize> = (0..HOSTS)
        .filter(|&i| !preview[1].contains(&hosts[i].id))
        .take(2)
        .collect();
    for &i in &bad {
        std::fs::write(hosts[i].path(&format!("bad-{NEW}")), "").expect("bad marker");
    }

    let id = server.start_plan(&plan(), "e2e").await;

    // Canary, then half: exactly the preview's hosts change.
    stage_settles(&server, &hosts, &id, 0, &preview[0]).await;
    server
        .client()
        .action(&id, Action::Approve, "e2e: canary ok")
        .await
        .expect("approve");
    stage_settles(&server, &hosts, &id, 1, &preview[1]).await;

    // The server goes away for a while: nothing changes on any host, every
    // agent keeps running and keeps the desired state it was told.
    server.kill9();
    let before: Vec<(String, usize)> = hosts
        .iter()
        .map(|h| (h.version(), h.apply_runs()))
        .collect();
    let mut outage_failures = 0;
    wait_for("the agents to notice the outage", DEADLINE, || {
        let failing = hosts
            .iter()
            .filter(|host| {
                std::fs::read_to_string(host.path("agent.log"))
                    .is_ok_and(|log| log.contains("check-in failed, changing nothing"))
            })
            .count();
        outage_failures = failing;
        async move { (failing == HOSTS).then_some(()) }
    })
    .await;
    assert_eq!(outage_failures, HOSTS);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (host, before) in hosts.iter_mut().zip(&before) {
        assert!(
            host.running(),
            "{} keeps running without its server",
            host.id
        );
        assert_eq!(
            &(host.version(), host.apply_runs()),
            before,
            "{} changed nothing",
            host.id
        );
        let state = host.state();
        let desired = state["components"]["app"]["desired"]["version"].as_str();
        let expected = if preview[1].contains(&host.id) {
            NEW
        } else {
            OLD
        };
        assert_eq!(
            desired,
            Some(expected),
            "{} keeps its last desired version",
            host.id
        );
    }
    server.restart().await;
    // Back: the agents check in again (each reports as it came back).
    wait_for(
        "every agent to check in with the restarted server",
        DEADLINE,
        || async {
            let (state, current, phase) = phase(&server, &id).await;
            (state == RolloutState::Running
                && current == Some(1)
                && phase == Some(Phase::AwaitingApproval))
            .then_some(())
        },
    )
    .await;
    // Each agent checks in again: its last_seen moves past what the
    // restarted server restored from its store.
    let mut restored = BTreeMap::new();
    for host in &hosts {
        let seen = server.host(&host.id).await.and_then(|view| view.last_seen);
        restored.insert(host.id.clone(), seen);
    }
    wait_for("every agent to resume checking in", DEADLINE, || async {
        for host in &hosts {
            let seen = server.host(&host.id).await?.last_seen;
            if seen == restored[&host.id] {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert_eq!(
        running(&hosts, NEW),
        preview[1],
        "nothing moved during the outage"
    );

    // All: the bad hosts fail their health check, the rollout rolls back.
    server
        .client()
        .action(&id, Action::Approve, "e2e: half ok")
        .await
        .expect("approve");
    wait_for("the rollout to roll back", DEADLINE, || async {
        let (state, _, _) = phase(&server, &id).await;
        (state == RolloutState::RolledBack).then_some(())
    })
    .await;
    // The timeline names exactly the bad hosts as failed, with the output
    // of their health check that the agents reported.
    // (The timeline is read from the store, which may lag the rollout's
    // state by a group commit.)
    let events = wait_for("the timeline to record the halt", DEADLINE, || async {
        let events = server.client().events(&id, None, Some(1000)).await.ok()?;
        events
            .events
            .iter()
            .any(|event| event.kind == "max_failed_exceeded")
            .then_some(events)
    })
    .await;
    let failed: BTreeMap<String, String> = events
        .events
        .iter()
        .filter(|event| event.kind == "host_failed")
        .map(|event| {
            (
                event.data["host"].as_str().unwrap_or_default().to_owned(),
                event.data["reason"].to_string(),
            )
        })
        .collect();
    let bad_ids: BTreeSet<String> = bad.iter().map(|&i| hosts[i].id.clone()).collect();
    assert_eq!(
        failed.keys().cloned().collect::<BTreeSet<_>>(),
        bad_ids,
        "{events:#?}"
    );
    for reason in failed.values() {
        assert!(reason.contains("unhealthy at 2.0"), "{reason}");
    }
    wait_for(
        "every host to run the old version again",
        DEADLINE,
        || async { (running(&hosts, OLD).len() == HOSTS).then_some(()) },
    )
    .await;
    wait_for_reports(&server, &hosts, OLD).await;
    // The bad hosts reported why, with the health check's output.
    for &i in &bad {
        let log = std::fs::read_to_string(hosts[i].path("agent.log")).expect("log");
        assert!(log.contains("unhealthy at 2.0"), "{}: {log}", hosts[i].id);
    }
}
