//! A change that does its harm later: six real agents, whose `app` 2.0
//! passes its health check right after the apply and fails it 20 s later.
//! The agents' periodic health checks (`health_interval = "2s"`) find it
//! during the stage's bake, the rollout stops and rolls back
//! (`on_failure: rollback`), and every admitted host ends back on 1.0.

use std::collections::{BTreeMap, BTreeSet};

use sluice_api::agent::ReportState;
use sluice_api::rollout::{Phase, RolloutState};
use sluice_testkit::{wait_for, Amount, OnFailure, Plan, Stage, DEADLINE};

use crate::harness::{start_server, wait_for_reports, Host};

const OLD: &str = "1.0";
const NEW: &str = "2.0";
const HOSTS: usize = 6;

fn plan() -> Plan {
    Plan::new("e2e-late-failure", "app", NEW)
        .spread(&["role"])
        .max_in_flight(Amount::Percent(100))
        .stage(Stage::percent(50).named("canary").bake("10m"))
        .stage(Stage::percent(100).named("all"))
        .max_failed(0)
        .on_failure(OnFailure::Rollback)
}

/// Fails at 2.0 once the apply of 2.0 is 20 s old: once the host's
/// `version` file, which the apply writes, is.
fn late_health_cmd(dir: &str) -> String {
    format!(
        "if [ \"$SLUICE_VERSION\" = {NEW} ] \
         && [ $(( $(date +%s) - $(stat -c %Y {dir}/version) )) -ge 20 ]; \
         then echo \"app {NEW} degraded 20s after its apply\"; exit 1; fi"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_breaks_after_its_apply_halts_and_rolls_back_the_rollout() {
    let server = start_server().await;
    let mut hosts = Vec::new();
    for i in 0..HOSTS {
        let id = format!("late-{i}.test");
        let labels = BTreeMap::from([("role".to_owned(), ["web", "db"][i % 2].to_owned())]);
        let token = server.agent_token_file(&id).await;
        let mut host = Host::new(&id, &labels, OLD, server.url(), &token, "");
        let dir = host.dir.path().display().to_string();
        host.set("health_cmd", &format!("{:?}", late_health_cmd(&dir)));
        host.set("health_interval", "\"2s\"");
        host.start();
        hosts.push(host);
    }
    wait_for_reports(&server, &hosts, OLD).await;

    let id = server.start_plan(&plan(), "e2e").await;
    // The canary stage settles: its hosts passed the health check after
    // their apply, and the bake begins.
    let admitted: BTreeSet<String> = wait_for("the canary stage to bake", DEADLINE, || async {
        let detail = server.client().rollout(&id).await.ok()?;
        (detail.summary.phase == Some(Phase::Baking)).then_some(())?;
        Some(
            hosts
                .iter()
                .filter(|host| host.version() == NEW)
                .map(|host| host.id.clone())
                .collect(),
        )
    })
    .await;
    assert_eq!(
        admitted.len(),
        4,
        "the canary: ceil(50 % of 3) hosts of each role"
    );
    for host in hosts.iter().filter(|host| admitted.contains(&host.id)) {
        let app = server
            .host(&host.id)
            .await
            .and_then(|view| view.components.get("app").cloned())
            .expect("reported");
        assert_eq!(
            (app.version.as_str(), app.state),
            (NEW, Some(ReportState::Ok)),
            "{} was healthy right after its apply",
            host.id
        );
    }

    wait_for("the rollout to roll back", DEADLINE, || async {
        let detail = server.client().rollout(&id).await.ok()?;
        (detail.summary.state == RolloutState::RolledBack).then_some(())
    })
    .await;
    // The timeline: the bake began, then an admitted host failed during
    // it, which exceeded max_failed and rolled the rollout back.
    let events = wait_for("the timeline to record the rollback", DEADLINE, || async {
        let events = server.client().events(&id, None, Some(1000)).await.ok()?;
        events
            .events
            .iter()
            .any(|event| event.kind == "rollback_started")
            .then_some(events.events)
    })
    .await;
    let position = |kind: &str| {
        events
            .iter()
            .position(|event| event.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} event: {events:#?}"))
    };
    let failed = &events[position("host_failed")];
    assert!(position("baking") < position("host_failed"), "{events:#?}");
    assert!(position("host_failed") < position("max_failed_exceeded"));
    assert!(position("max_failed_exceeded") < position("rollback_started"));
    assert_eq!(failed.data["stage"], 0, "{failed:?}");
    let failed_host = failed.data["host"].as_str().expect("a host").to_owned();
    assert!(admitted.contains(&failed_host), "{failed:?}");
    let reason = failed.data["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("app 2.0 degraded 20s after its apply"),
        "{reason}"
    );
    // Found by the periodic check, not by the one after the apply.
    let failing = hosts
        .iter()
        .find(|host| host.id == failed_host)
        .expect("the failed host");
    let log = std::fs::read_to_string(failing.path("agent.log")).expect("agent.log");
    assert!(log.contains("applied and healthy"), "{log}");
    assert!(log.contains("the health check failed"), "{log}");
    assert!(
        !log.contains("applied, but the health check failed"),
        "{log}"
    );

    // Every admitted host returns to 1.0 and reports it healthy; the others
    // were never touched.
    wait_for(
        "every admitted host to report 1.0 ok again",
        DEADLINE,
        || async {
            for host in &hosts {
                let app = server.host(&host.id).await?.components.get("app")?.clone();
                if host.version() != OLD || app.version != OLD || app.state != Some(ReportState::Ok)
                {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    for host in &hosts {
        let applies = if admitted.contains(&host.id) { 2 } else { 0 };
        assert_eq!(host.apply_runs(), applies, "{}", host.id);
    }
}
