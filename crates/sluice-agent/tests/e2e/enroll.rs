//! Enrollment end to end: real agents given only an enrollment token (made
//! with `sluice token create --role enroll`) enroll at first contact, keep
//! the token they get in `token_file` (mode 0600) and check in with it; a
//! host whose labels leave the selector is refused naming the label; a
//! used-up or expired enrollment token is refused; `sluice token revoke`
//! takes effect at once.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sluice_api::admin::Role;
use sluice_testkit::{wait_for, Sandbox, DEADLINE};

use crate::harness::{agent_bin, start_server, Host};

/// `sluice token create ARGS` through the CLI; the secret (its last line).
async fn create_token(server: &Sandbox, args: &[&str]) -> String {
    let mut all = vec!["token", "create", "--reason", "test enrollment"];
    all.extend_from_slice(args);
    let run = server.sluice(&all).await.ok();
    run.stdout().trim().to_owned()
}

/// A host at `site` whose agent has only the enrollment token in
/// `enroll_token` and a `token_file` that does not exist yet.
fn enrolling_host(server: &Sandbox, id: &str, site: &str, enroll_token: &Path) -> Host {
    let labels = BTreeMap::from([
        ("role".to_owned(), "web".to_owned()),
        ("site".to_owned(), site.to_owned()),
    ]);
    let placeholder = Path::new("TOKEN_FILE");
    let host = Host::new(id, &labels, "1.0", server.url(), placeholder, "");
    // The token file lives in the host's dir and does not exist yet; the
    // enrollment token goes beside it, at the top of agent.toml.
    let config = std::fs::read_to_string(host.path("agent.toml")).expect("agent.toml");
    let config = config.replacen(
        "token_file = \"TOKEN_FILE\"",
        &format!(
            "token_file = \"{}\"\nenroll_token_file = \"{}\"",
            host.path("agent.token").display(),
            enroll_token.display()
        ),
        1,
    );
    std::fs::write(host.path("agent.toml"), config).expect("agent.toml");
    host
}

fn once(host: &Host) -> std::process::Output {
    Command::new(agent_bin())
        .arg("--once")
        .arg("--config")
        .arg(host.path("agent.toml"))
        .output()
        .expect("running sluice-agent --once")
}

fn agent_log(host: &Host) -> String {
    std::fs::read_to_string(host.path("agent.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_enroll_with_an_enrollment_token_and_check_in_with_their_own() {
    let server = start_server().await;
    let secret = create_token(
        &server,
        &[
            "--role",
            "enroll",
            "--selector",
            "site in (sto, lon)",
            "--uses",
            "2",
            "--expires",
            "24h",
            "--name",
            "fleet",
        ],
    )
    .await;
    assert!(secret.starts_with("slc_"), "{secret}");
    let enroll_file = server.write("enroll.token", format_args!("{secret}\n"));

    let mut hosts = [
        enrolling_host(&server, "a.enroll.test", "sto", &enroll_file),
        enrolling_host(&server, "b.enroll.test", "lon", &enroll_file),
    ];
    for host in &mut hosts {
        host.start();
    }
    for host in &hosts {
        wait_for("the enrolled host to check in", DEADLINE, async || {
            server
                .host(&host.id)
                .await
                .filter(|view| view.last_seen.is_some())
        })
        .await;
        let token_file = host.path("agent.token");
        let mode = std::fs::metadata(&token_file)
            .expect("the token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", host.id);
        let token = std::fs::read_to_string(&token_file).expect("the token");
        assert!(token.trim().starts_with("slc_") && token.trim() != secret);
        let leftovers: Vec<String> = std::fs::read_dir(host.dir.path())
            .expect("the host dir")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            // The token file's own temporary file (the state file's may be
            // in the middle of its own atomic write).
            .filter(|name| name.contains("agent.token") && name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    // Labels outside the selector: refused, naming the label, no token.
    let mut outside = enrolling_host(&server, "p.enroll.test", "par", &enroll_file);
    outside.start();
    wait_for("the refusal in the agent's log", DEADLINE, async || {
        agent_log(&outside).contains("label site=par is outside")
    })
    .await;
    assert!(!outside.path("agent.token").exists());
    assert!(server.host("p.enroll.test").await.is_none());
    outside.kill9();

    // Both uses are taken: a third host in the selector is refused.
    let late = enrolling_host(&server, "c.enroll.test", "sto", &enroll_file);
    let refused = once(&late);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("used up"), "{stderr}");
    assert!(!late.path("agent.token").exists());

    // The enrollment token as the CLI lists it: uses left, never the secret.
    let list = server
        .sluice(&["token", "list", "--role", "enroll", "--output", "json"])
        .await
        .ok();
    assert!(!list.stdout().contains(&secret));
    let listed = list.json();
    assert_eq!(listed["tokens"][0]["uses_left"], 0, "{listed}");
    assert_eq!(listed["tokens"][0]["name"], "fleet");
    let table = server.sluice(&["token", "list"]).await.ok().stdout();
    assert!(
        table.contains("host a.enroll.test, site in (lon, sto)") && table.contains("fleet"),
        "{table}"
    );

    // Revoking a host's token is effective at once.
    let agents = server
        .client()
        .tokens(Some(Role::Agent))
        .await
        .expect("tokens");
    let a = agents
        .tokens
        .iter()
        .find(|token| token.host.as_deref() == Some("a.enroll.test"))
        .expect("a's token");
    let revoke = server
        .sluice(&["token", "revoke", "--reason", "e2e", &a.id])
        .await
        .ok();
    assert!(
        revoke.stdout().contains("refused from now on"),
        "{}",
        revoke.stdout()
    );
    let a_token = std::fs::read_to_string(hosts[0].path("agent.token")).expect("the token");
    let refused = server
        .client()
        .with_token(a_token.trim())
        .expect("a token")
        .desired("a.enroll.test")
        .await
        .expect_err("revoked");
    assert_eq!(refused.status(), Some(401), "{refused}");
    let b_token = std::fs::read_to_string(hosts[1].path("agent.token")).expect("the token");
    let b = server.client().with_token(b_token.trim()).expect("a token");
    assert!(
        b.desired("b.enroll.test").await.is_ok(),
        "b is not affected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_enrollment_token_is_refused() {
    let server = start_server().await;
    let secret = create_token(
        &server,
        &[
            "--role",
            "enroll",
            "--selector",
            "site=sto",
            "--uses",
            "10",
            "--expires",
            "1s",
        ],
    )
    .await;
    let enroll_file = server.write("enroll.token", format_args!("{secret}\n"));
    wait_for("the enrollment token to expire", DEADLINE, async || {
        let list = server
            .sluice(&["token", "list", "--role", "enroll", "--output", "json"])
            .await
            .ok();
        list.json()["tokens"][0]["expired"] == true
    })
    .await;
    let host = enrolling_host(&server, "x.enroll.test", "sto", &enroll_file);
    let refused = once(&host);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("expired at"), "{stderr}");
    assert!(!stderr.contains(&secret), "{stderr}");
    assert!(!host.path("agent.token").exists());
}
