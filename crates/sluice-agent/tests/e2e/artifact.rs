//! Artifacts with real agents: a payload naming `url` and `sha256` makes
//! the agent download the file (from a file server in the test), verify it
//! and hand it to `apply_cmd` as `SLUICE_ARTIFACT`; a file whose digest
//! differs fails the apply, `apply_cmd` never runs, and the host reports
//! why.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sluice_api::agent::ReportState;
use sluice_testkit::{wait_for, Amount, FileServer, Plan, Stage, DEADLINE};

use crate::harness::{start_server, Host};

const OLD: &str = "1.0";
const NEW: &str = "2.0";

/// The SHA-256 of `bytes`, in lowercase hexadecimal.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_cmd_gets_the_verified_artifact_and_never_a_forged_one() {
    let server = start_server().await;
    let files = FileServer::start().await;
    let built = b"app 2.0, as built".to_vec();
    files.put("app_2.0.tar", built.clone());
    // What the file server hands out under the forged name is not what was
    // built.
    files.put("app_2.0-forged.tar", b"app 2.0, tampered with".to_vec());

    // apply_cmd keeps a copy of the artifact it was given.
    let keep = r#"cp \"$SLUICE_ARTIFACT\" \"$(dirname \"$SLUICE_ARTIFACT\")/../installed\""#;
    let mut hosts = Vec::new();
    for (id, role) in [("good.test", "good"), ("forged.test", "forged")] {
        let token = server.agent_token_file(id).await;
        let labels = BTreeMap::from([("role".to_owned(), role.to_owned())]);
        hosts.push(Host::new(id, &labels, OLD, server.url(), &token, keep));
    }
    for host in &mut hosts {
        host.start();
    }
    let plan = |role: &str, file: &str| {
        Plan::new(&format!("e2e-artifact-{role}"), "app", NEW)
            .selector(&format!("role={role}"))
            .payload_artifact(&files.url(file), &sha256(&built))
            .max_in_flight(Amount::Percent(100))
            .stage(Stage::percent(100))
    };
    for host in &hosts {
        wait_for(&format!("{} to check in", host.id), DEADLINE, || async {
            server.host(&host.id).await.map(drop)
        })
        .await;
    }
    server.start_plan(&plan("good", "app_2.0.tar"), "e2e").await;
    server
        .start_plan(&plan("forged", "app_2.0-forged.tar"), "e2e")
        .await;

    let (good, forged) = (&hosts[0], &hosts[1]);
    wait_for("good.test to report 2.0 ok", DEADLINE, || async {
        let app = server
            .host(&good.id)
            .await?
            .components
            .get("app")
            .cloned()?;
        (app.version == NEW && app.state == Some(ReportState::Ok)).then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read(good.path("installed")).expect("the installed artifact"),
        built
    );
    assert_eq!(
        good.artifacts(),
        [format!("{}-app_2.0.tar", sha256(&built))]
    );

    let reported = wait_for("forged.test to report failed", DEADLINE, || async {
        let app = server
            .host(&forged.id)
            .await?
            .components
            .get("app")
            .cloned()?;
        (app.state == Some(ReportState::Failed)).then_some(app)
    })
    .await;
    assert_eq!(reported.version, OLD, "nothing was installed");
    let message = reported.message.unwrap_or_default();
    assert!(
        message.contains(&format!(
            "has the sha256 {}, not {} as the payload says; apply_cmd was not run",
            sha256(b"app 2.0, tampered with"),
            sha256(&built)
        )),
        "{message}"
    );
    let answered = server.checkins().await;
    wait_for("three more check-ins", DEADLINE, || async {
        (server.checkins().await >= answered + 3).then_some(())
    })
    .await;
    assert_eq!(forged.apply_runs(), 0, "apply_cmd never ran");
    assert_eq!(forged.version(), OLD);
    assert!(!forged.path("installed").exists());
    assert!(forged.artifacts().is_empty(), "nothing unverified is kept");
    assert_eq!(files.requests("app_2.0.tar"), 1);
    assert_eq!(
        files.requests("app_2.0-forged.tar"),
        1,
        "a failed apply is not retried"
    );
}
