//! Fleet operations with real processes: the `sluice` server and real
//! `sluice-agent`s, each host with two components (`kernel` and `docker`),
//! whose applies take a moment so that changes are seen in flight.
//!
//! - the fleet-wide change budget, set with `sluice budget set`: two
//!   rollouts that would each change every host at once together never
//!   have more than the budget in flight, one of them waits for fleet
//!   budget (in its status and its events), and both complete;
//! - one change per host: without a budget, a host in flight for the
//!   kernel rollout is not admitted by the docker rollout until its kernel
//!   change settled, and both complete;
//! - a pin, set with `sluice hosts pin`, tells one host another version,
//!   shows in `sluice hosts list --pinned`, and reverts by itself once it
//!   expires, the expiry passing while the server is down.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sluice_api::fleet::BudgetView;
use sluice_api::rollout::RolloutState;
use sluice_testkit::{wait_for, Amount, Plan, Sandbox, Stage, DEADLINE};

use crate::harness::{start_server, wait_for_component, Host};

const OLD: &str = "1";
const NEW: &str = "2";
const HOSTS: usize = 4;

/// A `[[component]]` table for `name`, installed by writing the version to
/// `name` in the host's dir after `sleep` seconds.
fn component(path: &str, name: &str, sleep: &str) -> String {
    format!(
        r#"name = "{name}"
version_cmd = "cat {path}/{name}"
apply_cmd = "sleep {sleep}; echo \"$SLUICE_VERSION\" > {path}/{name}"
health_cmd = "true"
timeout = "60s"
"#
    )
}

async fn hosts(server: &Sandbox, sleep: &str) -> Vec<Host> {
    let mut hosts = Vec::new();
    for i in 0..HOSTS {
        let id = format!("fleet-{i}.test");
        let labels = BTreeMap::from([
            ("role".to_owned(), "web".to_owned()),
            ("site".to_owned(), format!("s{}", i % 2)),
        ]);
        let token = server.agent_token_file(&id).await;
        let mut host = Host::with_component(&id, &labels, server.url(), &token, |path| {
            format!(
                "{}\n[[component]]\n{}",
                component(path, "kernel", sleep),
                component(path, "docker", sleep)
            )
        });
        std::fs::write(host.path("kernel"), format!("{OLD}\n")).expect("kernel");
        std::fs::write(host.path("docker"), format!("{OLD}\n")).expect("docker");
        host.start();
        hosts.push(host);
    }
    wait_for_component(server, &hosts, "kernel", OLD).await;
    wait_for_component(server, &hosts, "docker", OLD).await;
    hosts
}

/// A plan taking `component` to `NEW` on every host at once.
fn all_at_once(component: &str) -> Plan {
    Plan::new(&format!("{component}-{NEW}"), component, NEW)
        .max_in_flight(Amount::Percent(100))
        .stage(Stage::percent(100))
}

/// Samples, until both rollouts complete, the hosts in flight over both
/// rollouts, from one read of the budget's view (both rollouts at the same
/// moment); returns the largest sum seen and the waits seen (rollout: what
/// for).
async fn follow(server: &Sandbox, ids: &[&str]) -> (u64, Vec<String>) {
    let most = AtomicU64::new(0);
    let waits = Mutex::new(Vec::new());
    wait_for("both rollouts to complete", DEADLINE, || async {
        let view = server.client().budget().await.expect("GET the budget");
        let in_flight: u64 = view.in_flight_by_component.values().sum();
        most.fetch_max(in_flight, Ordering::Relaxed);
        {
            let mut waits = waits.lock().unwrap_or_else(PoisonError::into_inner);
            waits.extend(
                view.waiting
                    .iter()
                    .map(|waiting| format!("{}: {}", waiting.id, waiting.waiting)),
            );
        }
        let mut done = true;
        for id in ids {
            let detail = server.client().rollout(id).await.expect("GET the rollout");
            done &= detail.summary.state == RolloutState::Completed;
        }
        done.then_some(())
    })
    .await;
    let waits = waits.into_inner().unwrap_or_else(PoisonError::into_inner);
    (most.into_inner(), waits)
}

async fn event_types(server: &Sandbox, id: &str) -> Vec<String> {
    let events = server
        .client()
        .events(id, None, None)
        .await
        .expect("GET the events");
    events
        .events
        .iter()
        .map(|event| event.kind.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_budget_holds_two_rollouts_and_the_wait_shows() {
    let server = start_server().await;
    let hosts = hosts(&server, "1").await;
    server
        .sluice(&[
            "budget",
            "set",
            "--max-in-flight",
            "1",
            "--reason",
            "e2e: one host at a time",
        ])
        .await
        .ok();
    let shown = server
        .sluice(&["budget", "show", "--output", "json"])
        .await
        .ok();
    let view: BudgetView = serde_json::from_value(shown.json()).expect("the budget");
    assert_eq!(view.limit, Some(1));
    assert_eq!(view.fleet, HOSTS as u64);

    let kernel = server.start_plan(&all_at_once("kernel"), "e2e").await;
    let docker = server.start_plan(&all_at_once("docker"), "e2e").await;
    let (most, waits) = follow(&server, &[&kernel, &docker]).await;
    assert!(most <= 1, "at most the budget in flight, saw {most}");
    assert!(
        waits
            .iter()
            .any(|wait| wait.contains("waiting for fleet budget")),
        "a rollout was seen waiting for fleet budget: {waits:?}"
    );
    let events = event_types(&server, &docker).await;
    assert!(events.iter().any(|kind| kind == "waiting"), "{events:?}");
    assert!(events.iter().any(|kind| kind == "wait_over"), "{events:?}");
    for host in &hosts {
        assert_eq!(
            std::fs::read_to_string(host.path("kernel"))
                .expect("kernel")
                .trim(),
            NEW
        );
        assert_eq!(
            std::fs::read_to_string(host.path("docker"))
                .expect("docker")
                .trim(),
            NEW
        );
    }
    let audit = server
        .sluice(&["audit", "--output", "json"])
        .await
        .ok()
        .stdout();
    assert!(
        audit.contains("budget_set"),
        "the budget is audited: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_per_host_at_a_time() {
    let server = start_server().await;
    let hosts = hosts(&server, "2").await;
    let kernel = server.start_plan(&all_at_once("kernel"), "e2e").await;
    let docker = server.start_plan(&all_at_once("docker"), "e2e").await;
    let (most, waits) = follow(&server, &[&kernel, &docker]).await;
    assert!(
        most <= HOSTS as u64,
        "each host in flight for one rollout at most: {most} changes in flight over {HOSTS} hosts"
    );
    assert!(
        waits.iter().any(|wait| wait.contains("hosts busy")),
        "the second rollout waited for hosts busy with the first: {waits:?}"
    );
    for host in &hosts {
        assert_eq!(
            std::fs::read_to_string(host.path("kernel"))
                .expect("kernel")
                .trim(),
            NEW
        );
        assert_eq!(
            std::fs::read_to_string(host.path("docker"))
                .expect("docker")
                .trim(),
            NEW
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_reverts_by_itself_even_across_a_server_restart() {
    let mut server = start_server().await;
    let hosts = hosts(&server, "0").await;
    let pinned = &hosts[0];
    server
        .sluice(&[
            "components",
            "set-stable",
            "kernel",
            OLD,
            "--yes",
            "--reason",
            "e2e",
        ])
        .await
        .ok();
    server
        .sluice(&[
            "hosts",
            "pin",
            &pinned.id,
            "--component",
            "kernel",
            "--version",
            "3",
            "--for",
            "20s",
            "--reason",
            "e2e: taste-test",
        ])
        .await
        .ok();
    // The server's clock started the pin before this instant.
    let pinned_at = Instant::now();
    wait_for_component(&server, std::slice::from_ref(pinned), "kernel", "3").await;
    let listed = server
        .sluice(&["hosts", "list", "--pinned"])
        .await
        .ok()
        .stdout();
    assert!(
        listed.contains(&pinned.id) && listed.contains("kernel"),
        "{listed}"
    );
    assert!(!listed.contains(&hosts[1].id), "{listed}");
    let view = server.host(&pinned.id).await.expect("the host");
    assert_eq!(view.pins.len(), 1, "{:?}", view.pins);
    // Other hosts keep the stable version.
    for host in &hosts[1..] {
        assert_eq!(
            std::fs::read_to_string(host.path("kernel"))
                .expect("kernel")
                .trim(),
            OLD
        );
    }

    // The server is down when the pin expires; it lifts it when it comes back.
    server.kill9();
    wait_for("the pin's end to pass", DEADLINE, || async {
        (pinned_at.elapsed() > Duration::from_secs(20)).then_some(())
    })
    .await;
    server.restart().await;
    wait_for_component(&server, std::slice::from_ref(pinned), "kernel", OLD).await;
    let view = server.host(&pinned.id).await.expect("the host");
    assert!(view.pins.is_empty(), "the pin is gone: {:?}", view.pins);
    let listed = server
        .sluice(&["hosts", "list", "--pinned"])
        .await
        .ok()
        .stdout();
    assert!(listed.contains("no host is pinned"), "{listed}");
    let audit = server
        .sluice(&["audit", "--kind", "host_pinned", "--output", "json"])
        .await
        .ok()
        .stdout();
    assert!(audit.contains(&pinned.id), "the pin is audited: {audit}");
}
