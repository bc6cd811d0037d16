//! An agent and an HTTPS server whose certificate a private CA signed: the
//! agent trusts it through `ca_file`, and only then.

use std::path::Path;
use std::process::{Command, Output};

use sluice_testkit::tls::private_ca;
use sluice_testkit::{Run, Sandbox};

use crate::harness::agent_bin;

fn once(config: &Path) -> Output {
    Command::new(agent_bin())
        .arg("--once")
        .arg("--config")
        .arg(config)
        .output()
        .expect("running sluice-agent --once")
}

#[test]
fn an_agent_trusts_a_private_ca_through_ca_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let tls = private_ca(d);
    let server = Sandbox::builder().tls(&tls).start_blocking();
    let url = server.url();
    assert!(url.starts_with("https://"), "{url}");

    let token = Run::of(
        server
            .command(&[
                "token", "create", "--reason", "e2e", "--role", "agent", "--host", "tls.test",
            ])
            .arg("--ca-cert")
            .arg(&tls.ca),
    )
    .ok()
    .stdout();
    std::fs::write(
        d.join("agent.token"),
        token.lines().last().unwrap_or_default(),
    )
    .expect("agent.token");

    let config = |ca_file: &str| {
        format!(
            "server = \"{url}\"\ntoken_file = \"{token}\"\n{ca_file}id = \"tls.test\"\n\
             state_file = \"{state}\"\n\n[[component]]\nname = \"app\"\nversion_cmd = \"echo 1.0\"\n\
             apply_cmd = \"true\"\n",
            token = d.join("agent.token").display(),
            state = d.join("state.json").display(),
        )
    };
    std::fs::write(d.join("untrusting.toml"), config("")).expect("config");
    let refused = once(&d.join("untrusting.toml"));
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("certificate"),
        "{refused:?}"
    );

    let ca_file = format!("ca_file = \"{}\"\n", tls.ca.display());
    std::fs::write(d.join("agent.toml"), config(&ca_file)).expect("config");
    let checked_in = once(&d.join("agent.toml"));
    assert!(checked_in.status.success(), "{checked_in:?}");
    let hosts = Run::of(
        server
            .command(&["hosts", "list", "--output", "json"])
            .arg("--ca-cert")
            .arg(&tls.ca),
    )
    .ok();
    let listed = hosts.stdout();
    assert!(
        listed.contains("tls.test") && listed.contains("1.0"),
        "{listed}"
    );
}
