//! Facts mode with the real Puppet: version → server → agent → facts file →
//! `puppet apply` → agent report → server. The agent runs as a Puppet exec
//! would run it, `sluice-agent --once`; Puppet reads the external fact from
//! the test's own directory (`--pluginfactdest`, where `puppet apply` loads
//! external facts from).

use std::path::Path;
use std::process::{Command, Output};

use sluice_api::agent::ReportState;
use sluice_api::rollout::RolloutState;
use sluice_testkit::{wait_for, Amount, Plan, Stage, DEADLINE};

use crate::harness::{agent_bin, start_server};

fn plan() -> Plan {
    Plan::new("e2e-motd-2.0", "motd", "2.0")
        .max_in_flight(Amount::Percent(100))
        .stage(Stage::percent(100))
}

const MANIFEST: &str = r#"# Puts on the host the version sluice wants, read from the `sluice` fact.
$wanted = $facts.dig('sluice', 'motd', 'version')
if $wanted {
  file { "${facts['sluice_test_dir']}/motd.version":
    content => "${wanted}\n",
  }
}
"#;

fn once(config: &Path) -> Output {
    Command::new(agent_bin())
        .arg("--once")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .output()
        .expect("running sluice-agent --once")
}

fn puppet_apply(dir: &Path) -> Output {
    let puppet = which("puppet").unwrap_or_else(|| {
        panic!(
            "this test runs the real Puppet: install Debian's `puppet` package (scripts/test does)"
        )
    });
    let sub = |name: &str| dir.join("puppet").join(name);
    Command::new(puppet)
        .arg("apply")
        .args(["--color", "false"])
        .arg("--confdir")
        .arg(sub("conf"))
        .arg("--vardir")
        .arg(sub("var"))
        .arg("--codedir")
        .arg(sub("code"))
        .arg("--logdir")
        .arg(sub("log"))
        .arg("--rundir")
        .arg(sub("run"))
        .arg("--pluginfactdest")
        .arg(dir.join("facts.d"))
        .arg(dir.join("motd.pp"))
        // A fact telling the manifest where this host's files are.
        .env("FACTER_sluice_test_dir", dir)
        .output()
        .expect("running puppet apply")
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puppet_applies_what_the_agent_writes_as_facts_and_the_agent_reports_it() {
    let server = start_server().await;
    let token = server.agent_token_file("puppet.test").await;
    let host = tempfile::tempdir().expect("a host dir");
    let dir = host.path();
    std::fs::write(dir.join("motd.version"), "1.0\n").expect("motd.version");
    std::fs::write(dir.join("motd.pp"), MANIFEST).expect("manifest");
    let facts = dir.join("facts.d/sluice.json");
    let config = |server: &str| {
        format!(
            r#"server = "{server}"
token_file = "{token}"
id = "puppet.test"
labels = {{ role = "edge" }}
state_file = "{dir}/state.json"

[[component]]
name = "motd"
mode = "facts"
facts_file = "{facts}"
version_cmd = "cat {dir}/motd.version"
"#,
            token = token.display(),
            dir = dir.display(),
            facts = facts.display(),
        )
    };
    let agent_toml = dir.join("agent.toml");
    std::fs::write(&agent_toml, config(server.url())).expect("agent.toml");

    // The host registers at 1.0.
    let run = once(&agent_toml);
    assert!(run.status.success(), "{}", text(&run));
    server.start_plan(&plan(), "e2e").await;

    // The agent learns 2.0 and writes it as a fact; it changes nothing itself.
    wait_for(
        "the agent to write 2.0 to the facts file",
        DEADLINE,
        || async {
            let run = once(&agent_toml);
            assert!(run.status.success(), "{}", text(&run));
            let facts: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&facts).ok()?).ok()?;
            (facts["sluice"]["motd"]["version"] == "2.0").then_some(facts)
        },
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(dir.join("motd.version")).expect("read"),
        "1.0\n"
    );
    let run = once(&agent_toml);
    assert!(run.status.success(), "{}", text(&run));
    let view = server.host("puppet.test").await.expect("the host is known");
    assert_eq!(
        (
            view.components["motd"].version.as_str(),
            view.components["motd"].state
        ),
        ("1.0", Some(ReportState::Applying)),
        "until config management converges the agent reports applying"
    );

    // Puppet converges the host from the fact.
    let applied = puppet_apply(dir);
    assert!(
        applied.status.success(),
        "puppet apply failed: {}",
        text(&applied)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("motd.version")).expect("read"),
        "2.0\n"
    );

    // The agent reports what version_cmd now says; the rollout completes.
    wait_for(
        "the rollout to complete on the agent's report",
        DEADLINE,
        || async {
            let run = once(&agent_toml);
            assert!(run.status.success(), "{}", text(&run));
            let rollouts = server.client().rollouts().await.ok()?;
            let view = server.host("puppet.test").await?;
            let motd = view.components.get("motd")?;
            let done = rollouts.rollouts.first()?.state == RolloutState::Completed;
            (done && motd.version == "2.0" && motd.state == Some(ReportState::Ok)).then_some(())
        },
    )
    .await;

    // Fail static: with the server unreachable, --once fails and the facts
    // Puppet reads stay as they were.
    let before = std::fs::read_to_string(&facts).expect("facts");
    std::fs::write(&agent_toml, config("http://127.0.0.1:1")).expect("agent.toml");
    let run = once(&agent_toml);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        text(&run).contains("check-in failed, nothing changed"),
        "{}",
        text(&run)
    );
    assert_eq!(std::fs::read_to_string(&facts).expect("facts"), before);
}
