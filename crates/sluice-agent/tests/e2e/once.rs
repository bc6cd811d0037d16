//! `sluice-agent --once` (cron, a Puppet exec): one check-in, the apply it
//! asks for, the report of its outcome, then exit 0.

use std::collections::BTreeMap;
use std::process::Command;

use sluice_api::agent::ReportState;
use sluice_testkit::{wait_for, Plan, Stage, DEADLINE};

use crate::harness::{agent_bin, start_server, Host};

fn plan() -> Plan {
    Plan::new("e2e-once", "app", "2.0").stage(Stage::percent(100))
}

fn once(host: &Host) {
    let output = Command::new(agent_bin())
        .arg("--once")
        .arg("--config")
        .arg(host.path("agent.toml"))
        .output()
        .expect("running sluice-agent --once");
    assert!(
        output.status.success(),
        "sluice-agent --once failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_checks_in_applies_reports_and_exits() {
    let server = start_server().await;
    let labels = BTreeMap::from([("role".to_owned(), "cron".to_owned())]);
    let token = server.agent_token_file("once.test").await;
    let host = Host::new("once.test", &labels, "1.0", server.url(), &token, "");
    once(&host);
    let app = server
        .host("once.test")
        .await
        .expect("registered")
        .components["app"]
        .clone();
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
    let app = server.host("once.test").await.expect("known").components["app"].clone();
    assert_eq!(
        (app.version.as_str(), app.state),
        ("2.0", Some(ReportState::Ok))
    );
}
