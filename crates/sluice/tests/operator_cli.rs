//! End-to-end tests of the operator commands: the real `sluice server` on
//! port 0 with a temp data dir, driven through the real `sluice` binary —
//! exit codes, what goes to stdout for scripts, what the errors say.
//!
//! The CLI finds the server through `SLUICE_SERVER` and the admin token
//! through `SLUICE_DATA_DIR`, as an operator beside the server would.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sluice_api::admin::Role;
use sluice_api::agent::{CheckinRequest, ComponentReport, ReportState};
use sluice_api::HostId;
use sluice_client::Client;
use sluice_store::testing::TempPgDatabase;
use sluice_testkit::tls::private_ca;
use sluice_testkit::{wait_for_blocking, Plan, Run, Sandbox, Stage, DEADLINE};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn path(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Four hosts in two strata (role edge and api, one site).
const FLEET: &str = r#"[
  {"id": "edge-1.sto.example.net", "labels": {"role": "edge", "site": "sto"}, "components": {"docker-engine": "1.12.6"}},
  {"id": "edge-2.sto.example.net", "labels": {"role": "edge", "site": "sto"}, "components": {"docker-engine": "1.12.6"}},
  {"id": "api-1.sto.example.net", "labels": {"role": "api", "site": "sto"}, "components": {"docker-engine": "1.12.6"}},
  {"id": "api-2.sto.example.net", "labels": {"role": "api", "site": "sto"}, "components": {"docker-engine": "1.12.6"}}
]"#;

fn plan() -> Plan {
    Plan::new("docker-e2e", "docker-engine", "17.03.1")
        .spread(&["role"])
        .max_in_flight(4)
        .stage(Stage::percent(50).named("canary").approve())
        .stage(Stage::percent(100))
}

fn import_fleet(server: &Sandbox) {
    let fleet = server.write("fleet.json", FLEET);
    let run = server
        .sluice_blocking(&["hosts", "import", "--reason", "e2e", path(&fleet)])
        .ok();
    assert!(
        run.stdout().starts_with("imported 4 hosts from") && run.stdout().contains("(4 new"),
        "{}",
        run.stdout()
    );
}

fn create(server: &Sandbox, plan: &Plan, extra: &[&str]) -> String {
    let plan = server.write("plan.yaml", plan);
    let mut args = vec!["rollout", "create", "-f", path(&plan), "--output", "json"];
    args.extend_from_slice(extra);
    let run = server.sluice_blocking(&args).ok();
    let json = run.json();
    let id = json["id"].as_str().expect("an id").to_owned();
    assert_eq!(run.stdout().trim(), format!("{{\"id\": \"{id}\"}}"));
    id
}

fn status_json(server: &Sandbox, id: &str) -> serde_json::Value {
    server
        .sluice_blocking(&["rollout", "status", id, "--output", "json"])
        .ok()
        .json()
}

#[test]
fn create_start_pause_resume_through_the_cli() {
    let server = Sandbox::start_blocking();
    import_fleet(&server);

    // Text mode prints the id alone on stdout, and a note on stderr.
    let id = create(&server, &plan(), &[]);
    let status = status_json(&server, &id);
    assert_eq!(status["state"], "pending", "{status}");

    // A reason is required for every action, before anything is sent.
    let run = server.sluice_blocking(&["rollout", "start", &id]).exits(2);
    assert!(
        run.stderr().contains("--reason is required")
            && run.stderr().contains("e.g. sluice rollout start"),
        "{}",
        run.stderr()
    );
    let run = server
        .sluice_blocking(&["rollout", "start", &id, "--reason", "e2e: CHG-1"])
        .ok();
    assert!(
        run.stdout()
            .starts_with(&format!("started rollout {id}: now running")),
        "{}",
        run.stdout()
    );

    let run = server.sluice_blocking(&["rollout", "status", &id]).ok();
    let text = run.stdout();
    assert!(
        text.starts_with(&format!(
            "rollout {id}: docker-e2e (docker-engine → 17.03.1)"
        )),
        "{text}"
    );
    assert!(
        text.contains("state      running, stage 1/2 canary (50%)"),
        "{text}"
    );
    assert!(text.contains("recent events"), "{text}");

    let run = server
        .sluice_blocking(&[
            "rollout",
            "pause",
            &id,
            "--reason",
            "e2e: looking at errors",
            "--output",
            "json",
        ])
        .ok();
    assert_eq!(run.json()["state"], "paused");
    // Pausing twice does not apply: the server's 409 is a failed operation.
    let run = server
        .sluice_blocking(&["rollout", "pause", &id, "--reason", "again"])
        .exits(1);
    assert!(
        run.stderr()
            .starts_with(&format!("error: pausing rollout {id}: ")),
        "{}",
        run.stderr()
    );

    server
        .sluice_blocking(&["rollout", "resume", &id, "--reason", "e2e: false alarm"])
        .ok();
    assert_eq!(status_json(&server, &id)["state"], "running");

    let list = server
        .sluice_blocking(&["rollout", "list", "--output", "json"])
        .ok()
        .json();
    assert_eq!(list["rollouts"][0]["id"], id.as_str());
    let run = server.sluice_blocking(&["rollout", "list"]).ok();
    assert!(run.stdout().starts_with("ID "), "{}", run.stdout());
    assert!(run.stdout().contains("docker-e2e"), "{}", run.stdout());

    let run = server.sluice_blocking(&["rollout", "events", &id]).ok();
    for kind in ["paused", "resumed"] {
        assert!(run.stdout().contains(kind), "{kind}: {}", run.stdout());
    }
    let events = server
        .sluice_blocking(&["rollout", "events", &id, "--output", "json"])
        .ok()
        .json();
    assert!(
        events["events"].as_array().is_some_and(|e| e.len() >= 3),
        "{events}"
    );

    // An unknown rollout is the user's input: exit 2.
    let run = server
        .sluice_blocking(&["rollout", "status", "r-999"])
        .exits(2);
    assert!(run.stderr().contains("r-999"), "{}", run.stderr());

    let run = server
        .sluice_blocking(&["rollout", "abort", &id, "--reason", "e2e done"])
        .ok();
    assert!(run.stdout().contains("aborted"), "{}", run.stdout());
}

#[test]
fn invalid_input_exits_2_with_what_would_be_valid() {
    let server = Sandbox::start_blocking();
    // A plan with problems is refused before it is sent, every problem located.
    let broken = server.write(
        "broken.yaml",
        "name: x\ncomponent: c\nversion: \"1\"\nstages:\n  - { percent: 150 }\n",
    );
    let run = server
        .sluice_blocking(&["rollout", "create", "-f", path(&broken)])
        .exits(2);
    assert!(run.stderr().contains("broken.yaml:5:"), "{}", run.stderr());
    let run = server
        .sluice_blocking(&["rollout", "create", "-f", "/no/such/plan.yaml"])
        .exits(2);
    assert!(
        run.stderr().contains("/no/such/plan.yaml"),
        "{}",
        run.stderr()
    );

    let bad_fleet = server.write("bad.json", "[{\"id\": \"a\", \"lables\": {}}]");
    let run = server
        .sluice_blocking(&["hosts", "import", "--reason", "e2e", path(&bad_fleet)])
        .exits(2);
    assert!(
        run.stderr().contains("unknown field `lables`"),
        "{}",
        run.stderr()
    );

    let run = server
        .sluice_blocking(&["hosts", "list", "--selector", "role in ("])
        .exits(2);
    assert!(run.stderr().contains("--selector"), "{}", run.stderr());

    let run = server
        .sluice_blocking(&["rollout", "list", "--server", "127.0.0.1:7070"])
        .exits(2);
    assert!(
        run.stderr().contains("expected http://HOST:PORT"),
        "{}",
        run.stderr()
    );
}

#[test]
fn tokens_roles_and_discovery() {
    let server = Sandbox::start_blocking();
    // The first start says where it wrote the admin token.
    let token_file = server.data_dir().join("admin.token");
    wait_for_blocking(
        "the server to say where the admin token is",
        DEADLINE,
        || {
            server.log().iter().any(|line| {
                line.contains(&token_file.display().to_string()) && line.contains("0600")
            })
        },
    );

    // The admin token is found beside the server; a new token is the last line.
    let run = server
        .sluice_blocking(&[
            "token",
            "create",
            "--reason",
            "e2e",
            "--role",
            "viewer",
            "--name",
            "e2e-viewer",
        ])
        .ok();
    let viewer = run
        .stdout()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(
        !viewer.is_empty() && !viewer.contains(' '),
        "{}",
        run.stdout()
    );
    assert!(run.stderr().contains("viewer token"), "{}", run.stderr());
    let json = server
        .sluice_blocking(&[
            "token", "create", "--reason", "e2e", "--role", "operator", "--output", "json",
        ])
        .ok()
        .json();
    assert_eq!(json["role"], "operator");

    // A viewer may read but not freeze: 403 is a failed operation, with a hint.
    server
        .sluice_blocking(&["rollout", "list", "--token", &viewer])
        .ok();
    let run = server
        .sluice_blocking(&["freeze", "on", "--reason", "nope", "--token", &viewer])
        .exits(1);
    assert!(run.stderr().contains("lacks the role"), "{}", run.stderr());

    // SLUICE_TOKEN beats the admin token in the data dir.
    let run = Run::of(
        server
            .command(&["freeze", "on", "--reason", "nope"])
            .env("SLUICE_TOKEN", &viewer),
    );
    assert_eq!(run.code(), Some(1), "{}", run.stderr());

    // No token anywhere: the server says 401 and the CLI says where to look.
    let run = Run::of(
        server
            .command(&["rollout", "list"])
            .env_remove("SLUICE_DATA_DIR"),
    );
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr().contains("no token was sent"),
        "{}",
        run.stderr()
    );

    // A wrong token: refused, naming where it came from.
    let run = server
        .sluice_blocking(&["components", "--token", "slc_wrong"])
        .exits(1);
    assert!(
        run.stderr()
            .contains("did not accept the token from --token"),
        "{}",
        run.stderr()
    );

    // A named data dir without admin.token is the user's mistake.
    let empty = tempfile::tempdir().expect("temp dir");
    let run = server
        .sluice_blocking(&["rollout", "list", "--data-dir", path(empty.path())])
        .exits(2);
    assert!(
        run.stderr().contains("no admin token at"),
        "{}",
        run.stderr()
    );
}

/// `sluice token create --database-url` writes the token straight into the
/// database, no server involved, and the leader running on that database
/// accepts it at once, with its role. The URL may come from
/// `SLUICE_DATABASE_URL`; its password never shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_created_in_the_database_works_at_once_against_its_server() {
    let db = TempPgDatabase::create().await;
    let server = Sandbox::builder()
        .arg("--database-url")
        .arg(db.url())
        .start()
        .await;
    let run = server
        .sluice(&[
            "token",
            "create",
            "--reason",
            "e2e",
            "--role",
            "operator",
            "--name",
            "bootstrap",
            "--database-url",
            db.url(),
        ])
        .await
        .ok();
    let operator = run.stdout().trim().to_owned();
    assert!(operator.starts_with("slc_"), "{}", run.stdout());
    assert!(
        run.stderr().contains("created an operator token ")
            && run.stderr().contains(" (bootstrap) in the database"),
        "{}",
        run.stderr()
    );
    server
        .sluice(&["rollout", "list", "--token", &operator])
        .await
        .ok();
    let run = server
        .sluice(&["freeze", "on", "--reason", "nope", "--token", &operator])
        .await
        .exits(1);
    assert!(run.stderr().contains("lacks the role"), "{}", run.stderr());

    // From the environment (the sandbox names the server in SLUICE_SERVER,
    // not with --server), as JSON.
    let mut command = server.command(&[
        "token", "create", "--reason", "e2e", "--role", "admin", "--output", "json",
    ]);
    command.env("SLUICE_DATABASE_URL", db.url());
    let run = tokio::task::spawn_blocking(move || Run::of(&mut command).ok())
        .await
        .expect("the CLI thread");
    let admin = run.json()["token"].as_str().expect("a token").to_owned();
    server
        .sluice(&[
            "freeze",
            "on",
            "--reason",
            "bootstrap check",
            "--token",
            &admin,
        ])
        .await
        .ok();

    // Through a server or straight into a database, not both.
    let run = server
        .sluice(&[
            "token",
            "create",
            "--reason",
            "e2e",
            "--role",
            "viewer",
            "--database-url",
            db.url(),
            "--server",
            server.url(),
        ])
        .await
        .exits(2);
    assert!(run.stderr().contains("--database-url"), "{}", run.stderr());

    // A database that cannot be used is named with its password redacted.
    let (scheme, rest) = db.url().split_once("://").expect("a URL");
    let (user, place) = rest.split_once('@').expect("a user");
    let user = user.split(':').next().unwrap_or(user);
    let (address, _) = place.rsplit_once('/').expect("a database");
    let wrong = format!("{scheme}://{user}:s3cret@{address}/sluice_no_such_database");
    let run = server
        .sluice(&[
            "token",
            "create",
            "--reason",
            "e2e",
            "--role",
            "admin",
            "--database-url",
            &wrong,
        ])
        .await
        .exits(1);
    assert!(
        run.stderr().contains("***") && !run.stderr().contains("s3cret"),
        "{}",
        run.stderr()
    );
}

/// `sluice token create --role enroll` and its flags, `token list`,
/// `token revoke` and `hosts reenroll`: what is shown, what is refused
/// (exit 2 naming the flag, before any request) and that a revoked token is
/// refused at once.
#[test]
fn the_token_lifecycle_through_the_cli() {
    let server = Sandbox::start_blocking();
    for (flags, says) in [
        (&["--role", "enroll", "--uses", "5"][..], "--selector"),
        (
            &["--role", "enroll", "--selector", "site=sto"][..],
            "--uses N",
        ),
        (
            &["--role", "enroll", "--selector", "site in (", "--uses", "5"][..],
            "--selector \"site in (\"",
        ),
        (
            &["--role", "viewer", "--selector", "site=sto"][..],
            "--role enroll",
        ),
        (
            &["--role", "viewer", "--expires", "tomorrow"][..],
            "--expires",
        ),
        (&["--role", "viewer"][..], "--reason is required"),
        (
            &["--role", "viewer", "--reason", " "][..],
            "--reason is empty",
        ),
    ] {
        let mut args = vec!["token", "create"];
        args.extend_from_slice(flags);
        let run = server.sluice_blocking(&args).exits(2);
        assert!(run.stderr().contains(says), "{flags:?}: {}", run.stderr());
    }

    let run = server
        .sluice_blocking(&[
            "token",
            "create",
            "--reason",
            "e2e",
            "--role",
            "enroll",
            "--selector",
            "site in (sto, lon)",
            "--uses",
            "3",
            "--expires",
            "24h",
            "--name",
            "rack-42",
        ])
        .ok();
    assert!(
        run.stderr()
            .contains("enrolling up to 3 hosts matching site in (lon, sto)"),
        "{}",
        run.stderr()
    );
    let secret = run.stdout().trim().to_owned();
    let enroller = server.client().with_token(&secret).expect("a token");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let enrolled = runtime
        .block_on(enroller.enroll(&sluice_api::agent::EnrollRequest {
            host: HostId::parse("edge-1.sto.example.net").expect("an id"),
            labels: [("site".to_owned(), "sto".to_owned())].into(),
        }))
        .expect("enrolled");

    let table = server.sluice_blocking(&["token", "list"]).ok().stdout();
    for column in [
        "ID",
        "NAME",
        "ROLE",
        "BINDING",
        "EXPIRES",
        "LAST USED",
        "USES LEFT",
    ] {
        assert!(table.contains(column), "{table}");
    }
    assert!(
        table.contains("rack-42") && table.contains("host edge-1.sto.example.net"),
        "{table}"
    );
    assert!(
        !table.contains(&secret) && !table.contains(&enrolled.token),
        "{table}"
    );
    let enroll = server
        .sluice_blocking(&["token", "list", "--role", "enroll", "--output", "json"])
        .ok()
        .json();
    assert_eq!(enroll["tokens"][0]["uses_left"], 2, "{enroll}");

    let reenroll = server
        .sluice_blocking(&[
            "hosts",
            "reenroll",
            "--reason",
            "e2e",
            "edge-1.sto.example.net",
        ])
        .ok();
    assert!(
        reenroll
            .stdout()
            .contains("revoked 1 token bound to host edge-1.sto.example.net"),
        "{}",
        reenroll.stdout()
    );
    let own = server
        .client()
        .with_token(&enrolled.token)
        .expect("a token");
    let refused = runtime
        .block_on(own.desired("edge-1.sto.example.net"))
        .expect_err("revoked");
    assert_eq!(refused.status(), Some(401), "{refused}");

    let revoke = server
        .sluice_blocking(&["token", "revoke", "--reason", "e2e", "rack-42"])
        .ok();
    assert!(revoke.stdout().contains("(rack-42)"), "{}", revoke.stdout());
    let unknown = server
        .sluice_blocking(&["token", "revoke", "--reason", "e2e", "rack-42"])
        .exits(2);
    assert!(
        unknown.stderr().contains("no token has the id or name"),
        "{}",
        unknown.stderr()
    );
    // Each change of tokens and hosts says why, before any request.
    for args in [
        &["token", "revoke", "rack-42"][..],
        &["hosts", "reenroll", "edge-1.sto.example.net"][..],
        &["hosts", "import", "no-such-fleet.json"][..],
    ] {
        let run = server.sluice_blocking(args).exits(2);
        assert!(
            run.stderr().contains("--reason is required"),
            "{args:?}: {}",
            run.stderr()
        );
    }
    let audit = server
        .sluice_blocking(&["audit", "--output", "json"])
        .ok()
        .json();
    let reasons: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().expect("kind"),
                e["reason"].as_str().unwrap_or("none"),
            )
        })
        .collect();
    for kind in ["token_created", "host_reenrolled", "token_revoked"] {
        assert!(reasons.contains(&(kind, "e2e")), "{kind}: {reasons:?}");
    }
}

/// `sluice token list` reads every page of `GET /v1/tokens` (a thousand
/// tokens a page), and shows them oldest first.
#[test]
fn token_list_reads_every_page() {
    let server = Sandbox::start_blocking();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let made = runtime.block_on(async {
        let mut made = tokio::task::JoinSet::new();
        for i in 0..1003 {
            let client = server.client().clone();
            made.spawn(async move {
                client
                    .create_token(Role::Viewer, None, Some(&format!("page-{i}")), "e2e")
                    .await
                    .expect("a token")
                    .id
            });
        }
        made.join_all().await
    });
    assert_eq!(made.len(), 1003);
    let list = server
        .sluice_blocking(&["token", "list", "--output", "json"])
        .ok()
        .json();
    let tokens = list["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 1004, "1003 viewers and the admin");
    assert_eq!(list.get("next"), None, "every page read");
    assert_eq!(tokens[0]["role"], "admin", "oldest first");
    let mut ids: Vec<&str> = tokens
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1004, "each once");
}

#[test]
fn freeze_holds_everything_and_says_so() {
    let server = Sandbox::start_blocking();
    let run = server.sluice_blocking(&["freeze", "on"]).exits(2);
    assert!(
        run.stderr().contains("--reason is required"),
        "{}",
        run.stderr()
    );

    let run = server
        .sluice_blocking(&["freeze", "on", "--reason", "INC-42: registry outage"])
        .ok();
    assert!(run.stdout().starts_with("FROZEN"), "{}", run.stdout());
    assert!(
        run.stdout().contains("INC-42: registry outage"),
        "{}",
        run.stdout()
    );
    let json = server
        .sluice_blocking(&["freeze", "status", "--output", "json"])
        .ok()
        .json();
    assert_eq!(json["frozen"], true);
    assert_eq!(json["reason"], "INC-42: registry outage");

    let run = server
        .sluice_blocking(&["freeze", "off", "--reason", "INC-42 resolved"])
        .ok();
    assert!(run.stdout().starts_with("not frozen"), "{}", run.stdout());
    let json = server
        .sluice_blocking(&["freeze", "status", "--output", "json"])
        .ok()
        .json();
    assert_eq!(json["frozen"], false);
}

#[test]
fn budget_and_pins_through_the_cli() {
    let server = Sandbox::start_blocking();
    import_fleet(&server);
    // What is refused, and why, naming the flag.
    let run = server
        .sluice_blocking(&["budget", "set", "--max-in-flight", "2%"])
        .exits(2);
    assert!(
        run.stderr().contains("--reason is required"),
        "{}",
        run.stderr()
    );
    let run = server
        .sluice_blocking(&["budget", "set", "--max-in-flight", "lots", "--reason", "r"])
        .exits(2);
    assert!(run.stderr().contains("--max-in-flight"), "{}", run.stderr());
    let run = server
        .sluice_blocking(&["budget", "set", "--reason", "r"])
        .exits(2);
    assert!(run.stderr().contains("--max-in-flight"), "{}", run.stderr());

    let run = server
        .sluice_blocking(&[
            "budget",
            "set",
            "--max-in-flight",
            "50%",
            "--per-stratum",
            "1",
            "--spread",
            "role",
            "--reason",
            "CHG-9: many teams",
        ])
        .ok();
    assert!(
        run.stdout()
            .starts_with("budget: 0 in flight of at most 2 (50% of 4 hosts)"),
        "{}",
        run.stdout()
    );
    let json = server
        .sluice_blocking(&["budget", "show", "--output", "json"])
        .ok()
        .json();
    assert_eq!(json["limit"], 2, "{json}");
    assert_eq!(
        json["budget"]["spread"],
        serde_json::json!(["role"]),
        "{json}"
    );
    assert_eq!(json["strata"].as_array().map(Vec::len), Some(2), "{json}");
    let run = server
        .sluice_blocking(&["budget", "set", "--off", "--reason", "over"])
        .ok();
    assert!(run.stdout().starts_with("no budget"), "{}", run.stdout());

    // Pins.
    let host = "edge-1.sto.example.net";
    let run = server
        .sluice_blocking(&[
            "hosts",
            "pin",
            host,
            "--component",
            "docker-engine",
            "--version",
            "18.0",
            "--for",
            "soon",
            "--reason",
            "r",
        ])
        .exits(2);
    assert!(run.stderr().contains("--for"), "{}", run.stderr());
    let run = server
        .sluice_blocking(&[
            "hosts",
            "pin",
            "nobody.example.net",
            "--component",
            "docker-engine",
            "--version",
            "18.0",
            "--for",
            "2h",
            "--reason",
            "r",
        ])
        .exits(2);
    assert!(run.stderr().contains("no host"), "{}", run.stderr());
    let run = server
        .sluice_blocking(&[
            "hosts",
            "pin",
            host,
            "--component",
            "docker-engine",
            "--version",
            "18.0",
            "--for",
            "2h",
            "--reason",
            "taste-test",
        ])
        .ok();
    assert!(
        run.stdout()
            .starts_with(&format!("pinned {host} docker-engine to 18.0 until")),
        "{}",
        run.stdout()
    );
    let run = server.sluice_blocking(&["hosts", "list", "--pinned"]).ok();
    let stdout = run.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("HOST"), "{stdout}");
    assert!(
        lines[1].starts_with(host) && lines[1].contains("18.0") && lines[1].contains("taste-test"),
        "{}",
        run.stdout()
    );
    assert_eq!(lines.last(), Some(&"1 host"), "{}", run.stdout());
    let json = server
        .sluice_blocking(&["hosts", "list", "--pinned", "--output", "json"])
        .ok()
        .json();
    assert_eq!(json["hosts"][0]["pins"][0]["version"], "18.0", "{json}");
    let run = server
        .sluice_blocking(&[
            "hosts",
            "unpin",
            host,
            "--component",
            "docker-engine",
            "--reason",
            "tasted",
        ])
        .ok();
    assert!(
        run.stdout().starts_with(&format!("unpinned {host}")),
        "{}",
        run.stdout()
    );
    let run = server.sluice_blocking(&["hosts", "list", "--pinned"]).ok();
    assert!(
        run.stdout().starts_with("no host is pinned"),
        "{}",
        run.stdout()
    );
}

#[test]
fn hosts_and_components_show_the_inventory() {
    let server = Sandbox::start_blocking();
    import_fleet(&server);
    // Importing again updates: nothing new.
    let fleet = server.write("fleet.json", FLEET);
    let json = server
        .sluice_blocking(&[
            "hosts",
            "import",
            "--reason",
            "e2e",
            path(&fleet),
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(
        (json["imported"].as_u64(), json["new"].as_u64()),
        (Some(4), Some(0))
    );

    let run = server
        .sluice_blocking(&["hosts", "list", "--selector", "role=edge"])
        .ok();
    let text = run.stdout();
    assert!(text.starts_with("HOST "), "{text}");
    assert!(
        text.contains("edge-1.sto.example.net") && !text.contains("api-1"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("2 hosts"), "{text}");
    let json = server
        .sluice_blocking(&[
            "hosts",
            "list",
            "--component",
            "docker-engine",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(json["total"], 4);

    let run = server.sluice_blocking(&["components"]).ok();
    assert!(run.stdout().contains("docker-engine"), "{}", run.stdout());
    assert!(run.stdout().contains("1.12.6:4"), "{}", run.stdout());
    let json = server
        .sluice_blocking(&["components", "--output", "json"])
        .ok()
        .json();
    assert_eq!(json["components"][0]["name"], "docker-engine");
}

#[test]
fn watch_follows_a_rollout_to_completion() {
    let server = Sandbox::start_blocking();
    import_fleet(&server);
    let plan = Plan::new("docker-watch", "docker-engine", "17.03.1")
        .max_in_flight(4)
        .stage(Stage::percent(100));
    let id = create(&server, &plan, &["--start", "--reason", "e2e watch"]);

    // Not a terminal: one line per change on stderr.
    let mut watch = server
        .command(&["rollout", "status", &id, "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the watch");
    // Its lines as they come, so that the agents start only once it watches.
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let stderr = watch.stderr.take().expect("the watch's stderr");
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        })
    };
    let running = format!("{id} docker-watch: running");
    wait_for_blocking("the watch to show the rollout running", DEADLINE, || {
        lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|line| line.contains(&running))
    });

    // Play the four agents: report the old version, get told the new one,
    // report it healthy.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::builder(server.url())
        .token(server.admin_token())
        .build()
        .expect("client");
    let hosts: Vec<serde_json::Value> = serde_json::from_str(FLEET).expect("fleet");
    let checkin = |host: &serde_json::Value, version: &str| {
        let request = CheckinRequest {
            host: HostId::parse(host["id"].as_str().unwrap_or_default()).expect("a host id"),
            labels: serde_json::from_value(host["labels"].clone()).unwrap_or_default(),
            components: [(
                "docker-engine".to_owned(),
                ComponentReport {
                    version: version.to_owned(),
                    state: ReportState::Ok,
                    message: None,
                    drifted: false,
                },
            )]
            .into(),
        };
        runtime
            .block_on(client.checkin(&request))
            .expect("check-in")
    };
    wait_for_blocking("every host to be told 17.03.1", DEADLINE, || {
        hosts.iter().all(|host| {
            let answer = checkin(host, "1.12.6");
            answer
                .components
                .get("docker-engine")
                .map(|d| d.version.as_str())
                == Some("17.03.1")
        })
    });
    for host in &hosts {
        checkin(host, "17.03.1");
    }
    wait_for_blocking("the rollout to complete", DEADLINE, || {
        status_json(&server, &id)["state"] == "completed"
    });

    let output = wait_with_timeout(watch, Duration::from_secs(20));
    Run::new("sluice rollout status --watch", output).ok();
    reader.join().expect("the watch's reader");
    let stderr = lines
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .join("\n");
    assert!(
        stderr.contains(&format!(
            "rollout {id} completed: its {} hosts run docker-engine 17.03.1",
            hosts.len()
        )),
        "{stderr}"
    );
    let run = server.sluice_blocking(&["components"]).ok();
    assert!(
        run.stdout().contains("docker-engine  17.03.1"),
        "{}",
        run.stdout()
    );
}

#[test]
fn an_unreachable_server_is_a_failed_operation_with_a_hint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let work = tempfile::tempdir().expect("work dir");
    let output = Command::new(BIN)
        .args(["rollout", "list", "--server", &url])
        .current_dir(work.path())
        .env_remove("SLUICE_TOKEN")
        .env_remove("SLUICE_DATA_DIR")
        .output()
        .expect("running sluice");
    let run = Run::new("sluice rollout list", output).exits(1);
    assert_eq!(
        run.stderr().trim_end(),
        format!(
            "error: listing rollouts: cannot reach the sluice server at {url}: connection refused; start it with `sluice server` or set SLUICE_SERVER / --server (this URL came from --server)"
        )
    );
}

fn wait_with_timeout(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("collecting output"),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("collecting output");
                panic!(
                    "the watch did not end: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
}

#[test]
fn https_with_a_private_ca() {
    let certs = tempfile::tempdir().expect("certs dir");
    let tls = private_ca(certs.path());
    let server = Sandbox::builder().tls(&tls).start_blocking();
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "{}",
        server.url()
    );

    // Trusted through --ca-cert, or SLUICE_CA_CERT.
    server
        .sluice_blocking(&["components", "--ca-cert", path(&tls.ca)])
        .ok();
    let run = Run::of(
        server
            .command(&["freeze", "on", "--reason", "over TLS"])
            .env("SLUICE_CA_CERT", &tls.ca),
    )
    .ok();
    assert!(run.stdout().contains("FROZEN"), "{}", run.stdout());

    // Not trusted without the CA: a failed operation that says why.
    let refused = server.sluice_blocking(&["components"]).exits(1);
    assert!(
        refused.stderr().to_lowercase().contains("certificate"),
        "{}",
        refused.stderr()
    );
    // Plain HTTP to the HTTPS port gets no answer.
    let http = server.url().replacen("https://", "http://", 1);
    server
        .sluice_blocking(&["components", "--server", &http])
        .exits(1);
}

#[test]
fn unusable_tls_files_are_invalid_input_naming_the_flag() {
    let certs = tempfile::tempdir().expect("certs dir");
    let tls = private_ca(certs.path());
    let data_dir = tempfile::tempdir().expect("data dir");
    let serve = |cert: &Path, key: &Path| {
        Run::of(
            Command::new(BIN)
                .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(data_dir.path())
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key)
                .env("RUST_LOG", "error")
                .stdin(Stdio::null()),
        )
    };
    let missing = serve(&tls.cert, &certs.path().join("nowhere.key")).exits(2);
    assert!(
        missing.stderr().contains("--tls-key") && missing.stderr().contains("nowhere.key"),
        "{}",
        missing.stderr()
    );
    // A certificate where the key should be.
    let wrong = serve(&tls.cert, &tls.ca).exits(2);
    assert!(
        wrong.stderr().contains("--tls-key") && wrong.stderr().contains("PEM private key"),
        "{}",
        wrong.stderr()
    );
    // Only one of the pair.
    let alone = Run::of(
        Command::new(BIN)
            .args(["server", "--tls-cert"])
            .arg(&tls.cert),
    )
    .exits(2);
    assert!(alone.stderr().contains("--tls-key"), "{}", alone.stderr());
}

/// `plan preview --fleet` and `hosts import` read fleet files with one
/// parser: they refuse exactly the same files, with the same message.
#[test]
fn preview_and_import_refuse_exactly_the_same_fleets() {
    let server = Sandbox::start_blocking();
    let plan = server.write("preview.yaml", plan());
    let cases = [
        ("[{\"id\": \"a b.example.net\"}]", "is not a host id"),
        ("[{\"id\": \"\"}]", "is not a host id"),
        ("[{\"id\": \"a/b\"}]", "is not a host id"),
        ("[{\"id\": \"a\"}, {\"id\": \"a\"}]", "appears twice"),
        ("[{\"id\": \"a\", \"colour\": \"red\"}]", "unknown field"),
    ];
    for (index, (fleet, expected)) in cases.into_iter().enumerate() {
        let file = server.write(&format!("bad-{index}.json"), fleet);
        let preview =
            server.sluice_blocking(&["plan", "preview", "-f", path(&plan), "--fleet", path(&file)]);
        let import = server.sluice_blocking(&["hosts", "import", "--reason", "e2e", path(&file)]);
        for (what, run) in [("preview", &preview), ("import", &import)] {
            assert_eq!(run.code(), Some(2), "{what} of {fleet}: {}", run.stderr());
            assert!(
                run.stderr().contains(expected),
                "{what} of {fleet}: {}",
                run.stderr()
            );
        }
    }
    let good = server.write(
        "good.json",
        "[{\"id\": \"fe80::1\"}, {\"id\": \"web_1.example.net\"}]",
    );
    server
        .sluice_blocking(&["plan", "preview", "-f", path(&plan), "--fleet", path(&good)])
        .ok();
    server
        .sluice_blocking(&["hosts", "import", "--reason", "e2e", path(&good)])
        .ok();
}

#[test]
fn the_event_log_through_the_cli_as_lines_or_one_document_filtered() {
    let server = Sandbox::start_blocking();
    import_fleet(&server);
    let id = create(&server, &plan(), &[]);
    server
        .sluice_blocking(&["freeze", "on", "--reason", "CHG-1: holiday"])
        .ok();

    let run = server.sluice_blocking(&["events"]).ok();
    let stdout = run.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    let kinds: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.split_whitespace().nth(4))
        .collect();
    assert!(
        kinds.starts_with(&["hosts_imported", "created"]) && kinds.contains(&"freeze_on"),
        "{stdout}"
    );
    let created = lines[1];
    assert!(
        created.contains(&format!("  {id} ")) && created.contains("component=docker-engine"),
        "{created}"
    );
    let freeze = lines
        .iter()
        .find(|line| line.contains("freeze_on"))
        .expect("the freeze's line");
    assert!(
        freeze.contains("  -  ") && freeze.ends_with("by admin  reason=\"CHG-1: holiday\""),
        "{freeze}"
    );

    let json = server
        .sluice_blocking(&["events", "--rollout", &id, "--output", "json"])
        .ok()
        .json();
    let events = json["events"].as_array().expect("events");
    assert!(
        !events.is_empty() && events.iter().all(|e| e["rollout"] == id.as_str()),
        "{json}"
    );
    let json = server
        .sluice_blocking(&[
            "events",
            "--kind",
            "freeze_on,created",
            "--limit",
            "1",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(json["events"].as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json["events"][0]["kind"], "freeze_on", "the newest: {json}");

    let bad = server
        .sluice_blocking(&["events", "--kind", "freeze_maybe"])
        .exits(2);
    assert!(
        bad.stderr().contains("kind") && bad.stderr().contains("stage_started"),
        "{}",
        bad.stderr()
    );
    server.sluice_blocking(&["events", "--limit", "0"]).exits(2);
}

#[test]
fn the_audit_log_through_the_cli_and_follow_picks_up_new_entries() {
    let server = Sandbox::start_blocking();
    import_fleet(&server);
    server
        .sluice_blocking(&["freeze", "on", "--reason", "CHG-1: holiday"])
        .ok();

    let run = server.sluice_blocking(&["audit"]).ok();
    let stdout = run.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains("hosts_imported  by admin (admin, "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("freeze_on  by admin (admin, ")
            && lines[1].ends_with("from 127.0.0.1: CHG-1: holiday"),
        "{}",
        lines[1]
    );
    let json = server
        .sluice_blocking(&["audit", "--kind", "freeze_on", "--output", "json"])
        .ok()
        .json();
    let entries = json["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{json}");
    assert_eq!(entries[0]["reason"], "CHG-1: holiday");
    assert_eq!(entries[0]["actor"]["role"], "admin");
    let bad = server
        .sluice_blocking(&["audit", "--kind", "freeze_maybe"])
        .exits(2);
    assert!(bad.stderr().contains("freeze_on"), "{}", bad.stderr());
    let bad = server
        .sluice_blocking(&["audit", "--since", "yesterday"])
        .exits(2);
    assert!(bad.stderr().contains("--since"), "{}", bad.stderr());

    // Following: the entries so far, then each new one as it is written,
    // one JSON object per line.
    let mut follow = server
        .command(&["audit", "--follow", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the follow");
    let stdout = follow.stdout.take().expect("stdout");
    let (lines, received) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let read_until = |kind: &str, seen: &mut Vec<serde_json::Value>| {
        wait_for_blocking(&format!("the follow to print {kind}"), DEADLINE, || {
            while let Ok(line) = received.try_recv() {
                seen.push(serde_json::from_str(&line).expect("a JSON line"));
            }
            seen.iter().any(|entry| entry["kind"] == kind)
        });
    };
    read_until("freeze_on", &mut seen);
    server
        .sluice_blocking(&["freeze", "off", "--reason", "CHG-1: over"])
        .ok();
    read_until("freeze_off", &mut seen);
    let kinds: Vec<&str> = seen.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["hosts_imported", "freeze_on", "freeze_off"]);
    assert_eq!(seen[2]["reason"], "CHG-1: over");
    follow.kill().expect("stopping the follow");
    follow.wait().expect("reaping the follow");
    reader.join().expect("the reader");
}

#[test]
fn webhooks_through_the_cli() {
    let server = Sandbox::start_blocking();
    // What is refused, and why, naming the flag or field.
    let url = "http://127.0.0.1:9/hook";
    let run = server.sluice_blocking(&["webhook", "add", url]).exits(2);
    assert!(
        run.stderr().contains("--reason is required"),
        "{}",
        run.stderr()
    );
    let run = server
        .sluice_blocking(&[
            "webhook",
            "add",
            url,
            "--events",
            "started,done",
            "--reason",
            "r",
        ])
        .exits(2);
    assert!(
        run.stderr().contains("--events")
            && run
                .stderr()
                .contains("or halted (paused, rollback_started, aborted)"),
        "{}",
        run.stderr()
    );
    let empty = server.write("empty.key", "\n");
    let run = server
        .sluice_blocking(&[
            "webhook",
            "add",
            url,
            "--secret-file",
            empty.to_str().expect("a UTF-8 path"),
            "--reason",
            "r",
        ])
        .exits(2);
    assert!(run.stderr().contains("--secret-file"), "{}", run.stderr());
    let run = server
        .sluice_blocking(&[
            "webhook",
            "add",
            "ftp://hooks.example.net/x",
            "--reason",
            "r",
        ])
        .exits(2);
    assert!(run.stderr().contains("http or https"), "{}", run.stderr());

    // Added (nothing listens there), listed, tested, removed.
    let run = server
        .sluice_blocking(&[
            "webhook", "add", url, "--events", "halted", "--format", "slack", "--reason", "CHG-12",
        ])
        .ok();
    assert!(
        run.stdout().starts_with("added webhook wh-"),
        "{}",
        run.stdout()
    );
    let json = server
        .sluice_blocking(&["webhook", "list", "--output", "json"])
        .ok()
        .json();
    let hook = &json["webhooks"][0];
    let id = hook["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        hook["events"],
        serde_json::json!(["paused", "rollback_started", "aborted"]),
        "{json}"
    );
    assert_eq!(
        (&hook["format"], &hook["signed"]),
        (&"slack".into(), &false.into())
    );
    let run = server.sluice_blocking(&["webhook", "list"]).ok();
    assert!(
        run.stdout().contains(&id) && run.stdout().contains("paused,rollback_started,aborted"),
        "{}",
        run.stdout()
    );
    let run = server.sluice_blocking(&["webhook", "test", &id]).exits(1);
    assert!(
        run.stdout().starts_with("not delivered: cannot connect"),
        "{}",
        run.stdout()
    );
    server.sluice_blocking(&["webhook", "remove", &id]).exits(2);
    server
        .sluice_blocking(&["webhook", "remove", &id, "--reason", "done"])
        .ok();
    let run = server.sluice_blocking(&["webhook", "list"]).ok();
    assert!(run.stdout().starts_with("no webhooks"), "{}", run.stdout());
    let run = server
        .sluice_blocking(&["webhook", "remove", &id, "--reason", "again"])
        .exits(2);
    assert!(run.stderr().contains("no webhook"), "{}", run.stderr());
}
