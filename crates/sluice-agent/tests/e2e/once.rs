//! `sluice-agent --once` (cron, a Puppet exec): one check-in, the apply it
//! asks for, the report of its outcome, then exit 0.

use std::collections::BTreeMap;
use std::process::Command;

use sluice_api::agent::ReportState;
use sluice_api::host::HostComponent;
use sluice_testkit::{wait_for, Plan, Sandbox, Stage, DEADLINE};

use crate::harness::{agent_bin, dead_urls, start_server, Host};

fn plan() -> Plan {
    Plan::new("e2e-once", "app", "2.0").stage(Stage::percent(100))
}

/// A host running app 1.0, labelled `role=cron`, whose agent talks to
/// `server` with a token of its own.
async fn cron_host(server: &Sandbox, id: &str) -> Host {
    let labels = BTreeMap::from([("role".to_owned(), "cron".to_owned())]);
    let token = server.agent_token_file(id).await;
    Host::new(id, &labels, "1.0", server.url(), &token, "")
}

/// What `server` knows of host `id`'s `app`.
async fn reported_app(server: &Sandbox, id: &str) -> HostComponent {
    server.host(id).await.expect("registered").components["app"].clone()
}

fn run_once(host: &Host) -> std::process::Output {
    Command::new(agent_bin())
        .arg("--once")
        .arg("--config")
        .arg(host.path("agent.toml"))
        .output()
        .expect("running sluice-agent --once")
}

fn once(host: &Host) {
    let output = run_once(host);
    assert!(
        output.status.success(),
        "sluice-agent --once failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_checks_in_applies_reports_and_exits() {
    let server = start_server().await;
    let host = cron_host(&server, "once.test").await;
    once(&host);
    let app = reported_app(&server, "once.test").await;
    assert_eq!(
        (app.version.as_str(), app.state),
        ("1.0", Some(ReportState::Ok))
    );

    server.start_plan(&plan(), "e2e").await;
    // Each run is one round; the host is admitted at one of its check-ins.
    wait_for("a --once run to apply 2.0", DEADLINE, || async {
        once(&host);
        (host.version() == "2.0").then_some(())
    })
    .await;
    assert_eq!(host.apply_runs(), 1);
    // That same run reported the outcome before it exited.
    let app = reported_app(&server, "once.test").await;
    assert_eq!(
        (app.version.as_str(), app.state),
        ("2.0", Some(ReportState::Ok))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_tries_each_server_in_turn() {
    let server = start_server().await;
    let host = cron_host(&server, "list.test").await;
    let [dead, also_dead] = dead_urls();
    host.set("server", &format!("[{dead:?}, {:?}]", server.url()));
    once(&host);
    let app = reported_app(&server, "list.test").await;
    assert_eq!(
        (app.version.as_str(), app.state),
        ("1.0", Some(ReportState::Ok))
    );

    // No server can be reached: the round fails, and says so.
    host.set("server", &format!("[{dead:?}, {also_dead:?}]"));
    let output = run_once(&host);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("from={dead} to={also_dead}"))
            && stderr.contains(&format!(
                "check-in failed, nothing changed: cannot reach the sluice server at {also_dead}"
            )),
        "{stderr}"
    );
}
