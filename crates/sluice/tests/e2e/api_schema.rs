//! The OpenAPI document and the server agree: schemathesis (a schema-driven
//! API fuzzer, `pip install schemathesis==4.32.5`, which ./scripts/test
//! installs) reads `/v1/openapi.json` of a real `sluice server` holding a
//! small imported fleet and an active rollout, and sends every operation
//! requests generated from the document, valid and invalid. It checks all
//! it can (every check, set in `schemathesis.toml`): no 5xx; every status, content type and body as
//! the document says; requests valid by the document accepted (except where
//! `schemathesis.toml` says why JSON Schema cannot state the rules);
//! requests invalid by it refused; no answer without the token.
//!
//! A failure prints schemathesis's report: each operation at fault, what
//! was sent (a curl command) and the seed to replay the run with
//! `SCHEMATHESIS_SEED=N`.

use std::path::Path;
use std::process::{Command, Stdio};

use sluice_testkit::{Plan, Sandbox, Stage};

use crate::fleet::{fleet_10k_hosts, COMPONENT};

/// The version of schemathesis ./scripts/test installs.
const SCHEMATHESIS: &str = "4.32.5";
/// Requests per operation and phase: enough to hit every constraint of the
/// document in a run, bounded so that the test takes well under a minute.
const MAX_EXAMPLES: &str = "40";

/// One run of schemathesis against `sandbox`, on a blocking thread.
async fn run_schemathesis(sandbox: &Sandbox) -> std::process::Output {
    tokio::task::spawn_blocking({
        let command = schemathesis(sandbox);
        move || run(command)
    })
    .await
    .expect("the schemathesis thread")
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_made_from_the_openapi_document_are_answered_as_it_says() {
    // The generated requests come in a burst with one token: not limited,
    // so that every valid one is answered as valid (the 429 of the rate
    // is in the document, and checked by the API tests).
    let sandbox = Sandbox::builder().arg("--api-rate").arg("0").start().await;
    let hosts = &fleet_10k_hosts()[..20];
    let fleet = sandbox.write(
        "fleet.json",
        serde_json::to_string(hosts).expect("the fleet as JSON"),
    );
    let fleet = fleet.to_str().expect("a UTF-8 path");
    sandbox
        .sluice(&["hosts", "import", "--reason", "e2e", fleet])
        .await
        .ok();
    let plan = Plan::new("schema-test", COMPONENT, "17.03.1")
        .stages([Stage::percent(50).approve(), Stage::percent(100)]);
    sandbox.start_plan(&plan, "the schema test").await;

    let mut output = run_schemathesis(&sandbox).await;
    // A crash inside schemathesis's own generators (a "Runtime Error" with
    // its traceback, no check failed) says nothing of sluice: such a run
    // is made once more, and only a failed check or a second crash fails.
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() && text.contains("Runtime Error") && !text.contains("FAILURES") {
        eprintln!("schemathesis crashed by itself; running it once more:\n{text}");
        output = run_schemathesis(&sandbox).await;
    }
    assert!(
        output.status.success(),
        "schemathesis found the document and the server apart ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn schemathesis(sandbox: &Sandbox) -> Command {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/schemathesis.toml");
    let mut command = Command::new("st");
    command
        .arg("--config-file")
        .arg(config)
        .args([
            "run",
            &format!("{}/v1/openapi.json", sandbox.url()),
            "--max-examples",
            MAX_EXAMPLES,
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .env("SLUICE_SCHEMA_TEST_TOKEN", sandbox.admin_token())
        .current_dir(sandbox.data_dir())
        .stdin(Stdio::null());
    if let Ok(seed) = std::env::var("SCHEMATHESIS_SEED") {
        command.args(["--seed", &seed]);
    }
    command
}

fn run(mut command: Command) -> std::process::Output {
    command.output().unwrap_or_else(|error| {
        panic!(
            "cannot run schemathesis (`st`): {error}; install it with \
             `pip install schemathesis=={SCHEMATHESIS}` (./scripts/test does)"
        )
    })
}
