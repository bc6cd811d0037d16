//! No secret in a log or an error: a server and agents
//! logging at debug level through a rollout, an agent whose token the
//! server does not know, operator commands with a wrong token, and a
//! dashboard sign-in through a one-time link; then every line the server,
//! the agents and the CLI wrote is searched for every token, the link's
//! nonce and the session's cookie.

use std::collections::BTreeMap;
use std::process::Command;

use sluice_testkit::browse::{set_cookie, visit};
use sluice_testkit::{wait_for, Plan, Sandbox, Stage, DEADLINE};

use crate::harness::{agent_bin, Host};

/// `sluice-agent --once` logging at debug level; returns what it wrote.
fn once(host: &Host) -> (bool, String) {
    let output = Command::new(agent_bin())
        .arg("--once")
        .arg("--config")
        .arg(host.path("agent.toml"))
        .env("RUST_LOG", "debug")
        .output()
        .expect("running sluice-agent --once");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// Asserts that none of `secrets` (what each is, its value) is in `text`.
fn assert_no_secret(whose: &str, text: &str, secrets: &[(&str, &str)]) {
    for (what, secret) in secrets {
        assert!(
            !text.contains(secret),
            "{whose} shows {what}:\n{}",
            text.lines()
                .filter(|line| line.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_or_an_error() {
    let server = Sandbox::builder()
        .arg("--checkin-interval")
        .arg("1")
        .log_filter("debug")
        .start()
        .await;
    let labels = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
    let token_file = server.agent_token_file("secret.test").await;
    let agent_token = std::fs::read_to_string(&token_file)
        .expect("the agent's token")
        .trim()
        .to_owned();
    let host = Host::new("secret.test", &labels, "1.0", server.url(), &token_file, "");
    let mut agent_log = String::new();

    // A rollout the agent takes part in, checking in at debug level.
    server
        .start_plan(
            &Plan::new("e2e-secrets", "app", "2.0").stage(Stage::percent(100)),
            "e2e",
        )
        .await;
    wait_for("the agent to apply 2.0", DEADLINE, || {
        let (ok, text) = once(&host);
        agent_log.push_str(&text);
        std::future::ready((ok && host.version() == "2.0").then_some(()))
    })
    .await;

    // An agent whose token the server does not know fails, without
    // showing the token it sent.
    let unknown = format!("slc_{}", "5e".repeat(32));
    let stranger_token = server.write("stranger.token", format_args!("{unknown}\n"));
    let stranger = Host::new(
        "stranger.test",
        &labels,
        "1.0",
        server.url(),
        &stranger_token,
        "",
    );
    let (ok, text) = once(&stranger);
    assert!(!ok, "an unknown token is refused: {text}");
    assert!(
        text.contains("401") || text.contains("unknown token"),
        "{text}"
    );
    agent_log.push_str(&text);

    // Operator commands refused with a wrong token say so without it.
    let refused = server
        .sluice(&["hosts", "list", "--token", &unknown])
        .await
        .exits(1);
    let mut cli_log = refused.stderr();
    let refused = server
        .sluice(&["rollout", "list", "--token", "slc_not valid"])
        .await;
    cli_log.push_str(&refused.stderr());

    // A dashboard sign-in through a one-time link, used twice.
    let dashboard = server.sluice(&["dashboard"]).await.ok();
    cli_log.push_str(&dashboard.stderr());
    let link = dashboard.stdout().trim().to_owned();
    let path = link
        .strip_prefix(server.url())
        .expect("a link on the server")
        .to_owned();
    let nonce = path
        .strip_prefix("/signin/link/")
        .expect("a sign-in link")
        .to_owned();
    let first = visit(server.url(), &path);
    assert!(first.starts_with("HTTP/1.1 303"), "{first}");
    let session = set_cookie(&first, "sluice_session")
        .expect("a session cookie")
        .to_owned();
    let second = visit(server.url(), &path);
    assert!(second.starts_with("HTTP/1.1 410"), "{second}");

    let admin = server.admin_token().to_owned();
    let secrets = [
        ("the admin token", admin.as_str()),
        ("an agent's token", agent_token.as_str()),
        ("an unknown token", unknown.as_str()),
        ("a sign-in link's nonce", nonce.as_str()),
        ("a session's cookie", session.as_str()),
    ];
    let server_log = server.log().join("\n");
    assert!(
        server_log.contains("DEBUG"),
        "the server logged at debug level"
    );
    assert!(server_log.contains("/signin/link/…"), "{server_log}");
    assert_no_secret("the server's log", &server_log, &secrets);
    assert!(
        agent_log.contains("DEBUG"),
        "the agent logged at debug level"
    );
    assert_no_secret("the agents' logs", &agent_log, &secrets);
    assert_no_secret("the CLI's errors", &cli_log, &secrets);
}
