//! An agent killed in the middle of an apply does not apply twice blindly:
//! at start it reads the installed version first. A host that already runs
//! the version being applied is health-checked and reported, with no second
//! apply; one that does not gets exactly one more apply, because the server
//! still names that version.

use std::collections::BTreeMap;

use sluice_api::agent::ReportState;
use sluice_testkit::{wait_for, Amount, Plan, Stage, DEADLINE};

use crate::harness::{start_server, Host};

fn plan() -> Plan {
    Plan::new("e2e-interrupted", "app", "2.0")
        .max_in_flight(Amount::Percent(100))
        .stage(Stage::percent(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_apply_is_checked_before_it_is_run_again() {
    let server = start_server().await;
    let labels = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
    // A: the apply writes the version, then hangs until released.
    // B: the apply writes the version, then puts the old one back and
    //    hangs, the first time only (until released).
    let hang = |dir: &str| format!("while test ! -e {dir}/release; do sleep 0.1; done");
    let mut done = Host::new(
        "done.test",
        &labels,
        "1.0",
        server.url(),
        &server.agent_token_file("done.test").await,
        "",
    );
    let done_dir = done.dir.path().display().to_string();
    let mut undone = Host::new(
        "undone.test",
        &labels,
        "1.0",
        server.url(),
        &server.agent_token_file("undone.test").await,
        "",
    );
    let undone_dir = undone.dir.path().display().to_string();
    rewrite_apply_extra(&done, &hang(&done_dir));
    rewrite_apply_extra(
        &undone,
        &format!(
            "test -e {undone_dir}/release || {{ echo 1.0 > {undone_dir}/version; {}; }}",
            hang(&undone_dir)
        ),
    );
    done.start();
    undone.start();
    wait_for("both agents to report", DEADLINE, || async {
        let a = server.host("done.test").await?;
        let b = server.host("undone.test").await?;
        (a.components.contains_key("app") && b.components.contains_key("app")).then_some(())
    })
    .await;

    server.start_plan(&plan(), "e2e").await;
    for host in [&done, &undone] {
        wait_for(
            &format!("{} to be in the middle of its apply", host.id),
            DEADLINE,
            || async {
                let applying = host.path("state.json").exists()
                    && host.state()["components"]["app"]["applying"] == "2.0"
                    && host.apply_runs() == 1;
                applying.then_some(())
            },
        )
        .await;
    }
    wait_for("the server to see both applying", DEADLINE, || async {
        for id in ["done.test", "undone.test"] {
            let state = server.host(id).await?.components.get("app")?.state;
            if state != Some(ReportState::Applying) {
                return None;
            }
        }
        Some(())
    })
    .await;
    wait_for("B to have put the old version back", DEADLINE, || async {
        (undone.version() == "1.0").then_some(())
    })
    .await;
    done.kill9();
    undone.kill9();
    // Let the orphaned apply commands finish; the agents are gone.
    std::fs::write(done.path("release"), "").expect("release");
    std::fs::write(undone.path("release"), "").expect("release");

    done.start();
    undone.start();
    for host in [&done, &undone] {
        wait_for(
            &format!("{} to report 2.0 ok", host.id),
            DEADLINE,
            || async {
                let app = server.host(&host.id).await?.components.get("app")?.clone();
                (app.version == "2.0" && app.state == Some(ReportState::Ok)).then_some(())
            },
        )
        .await;
    }
    assert_eq!(done.apply_runs(), 1, "A already ran 2.0: no second apply");
    assert_eq!(undone.apply_runs(), 2, "B did not: exactly one more apply");
    let log = std::fs::read_to_string(undone.path("agent.log")).expect("log");
    assert!(
        log.contains("an interrupted apply did not complete"),
        "{log}"
    );
    let log = std::fs::read_to_string(done.path("agent.log")).expect("log");
    assert!(log.contains("an interrupted apply had completed"), "{log}");
    for host in [&done, &undone] {
        let state = host.state();
        assert!(
            state["components"]["app"].get("applying").is_none(),
            "{state}"
        );
    }
}

/// Replaces the tail of the host's apply_cmd (after the version is written).
fn rewrite_apply_extra(host: &Host, extra: &str) {
    let path = host.path("agent.toml");
    let config = std::fs::read_to_string(&path).expect("agent.toml");
    let dir = host.dir.path().display().to_string();
    let marker = format!("echo \\\"$SLUICE_VERSION\\\" > {dir}/version; ");
    let at = config.find(&marker).expect("the apply_cmd of the harness") + marker.len();
    let end = at + config[at..].find("\"\n").expect("end of apply_cmd");
    let extra = extra.replace('\\', "\\\\").replace('"', "\\\"");
    let config = format!("{}{}{}", &config[..at], extra, &config[end..]);
    std::fs::write(&path, config).expect("agent.toml");
}
