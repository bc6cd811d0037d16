//! The server on PostgreSQL (`--database-url`): a fresh database per test
//! (`sluice_store::testing`), the same API as on SQLite, and the same
//! state after a restart or a crash; a cluster bootstrapped with a token
//! created straight in its database.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use sluice_api::admin::{Role, TokenRequest};
use sluice_server::{admin_token_path, auth, Application, Config, DatabaseUrl};
use sluice_store::testing::TempPgDatabase;
use sluice_testkit::Stage;
use tempfile::TempDir;

use crate::helpers::{agents_round, desired, fleet, host, plan, report, spawn_app_on, start};

#[tokio::test]
async fn a_server_on_postgresql_keeps_its_rollouts_across_restarts() {
    let db = TempPgDatabase::create().await;
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let app = spawn_app_on(Arc::clone(&data_dir), Some(db.url())).await;
    assert_eq!(app.import(&fleet(10)).await.status(), StatusCode::OK);
    let id = start(
        &app,
        plan(
            "on-postgres",
            [Stage::percent(30).approve(), Stage::percent(100)],
        ),
    )
    .await;
    let admitted = agents_round(&app, 10).await;
    assert_eq!(admitted.len(), 3);
    let before = app.detail(&id).await;
    let events_before = app.events(&id).await;
    let hosts_before: Value = app.json("/v1/hosts").await;
    let viewer = app.token("viewer", None).await;
    let data_dir = app.stop();
    assert!(
        !data_dir.path().join("sluice.db").exists(),
        "nothing went to SQLite"
    );

    let app = spawn_app_on(data_dir, Some(db.url())).await;
    let after = app.detail(&id).await;
    assert_eq!(after["state"], "running");
    assert_eq!(after["admitted"], 3);
    assert_eq!(after["stages"], before["stages"]);
    assert_eq!(app.events(&id).await, events_before);
    let hosts_after: Value = app.json("/v1/hosts").await;
    assert_eq!(hosts_after, hosts_before);
    for i in 0..10 {
        let (current, expected) = if admitted.contains(&i) {
            ("2.0", "2.0")
        } else {
            ("1.0", "1.0")
        };
        assert_eq!(
            desired(&report(&app, &host(i), current, "ok").await),
            expected
        );
    }
    assert_eq!(
        app.get("/v1/rollouts", &viewer).await.status(),
        StatusCode::OK,
        "tokens live in the database"
    );

    // The next stage after a crash: its admissions were durable before
    // they were answered, so the restarted server admits no one twice.
    app.action(&id, "approve", "stage looks good").await;
    let mut second = Vec::new();
    for i in 0..10 {
        let current = if admitted.contains(&i) { "2.0" } else { "1.0" };
        if current == "1.0" && desired(&report(&app, &host(i), current, "ok").await) == "2.0" {
            second.push(i);
        }
    }
    assert_eq!(second.len(), 7, "the last stage admits everyone left");
    let data_dir = app.crash();
    let app = spawn_app_on(data_dir, Some(db.url())).await;
    assert_eq!(app.detail(&id).await["admitted"], 10);
}

/// `sluice token create --database-url`'s way: an admin token created in an
/// empty database, before any replica ran on it. The first replica then
/// finds an admin token, writes no `admin.token`, and accepts the one
/// created; the database URL's password never shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_bootstrapped_with_a_token_in_its_database_writes_no_admin_token() {
    let db = TempPgDatabase::create().await;
    let request = TokenRequest {
        role: Role::Admin,
        host: None,
        name: Some("bootstrap".to_owned()),
        selector: None,
        uses: None,
        expires: None,
        reason: "test".to_owned(),
    };
    let created = auth::create_in_database(&DatabaseUrl::new(db.url()), &request, "cli:test")
        .await
        .expect("created in the database");
    assert!(created.token.starts_with("slc_"));

    let data_dir = TempDir::new().expect("temp dir");
    let mut config = Config::new("127.0.0.1:0".parse().expect("address"), data_dir.path());
    config.database_url = Some(DatabaseUrl::new(db.url()));
    let app = Application::build(config).await.expect("built");
    assert_eq!(app.new_admin_token(), None);
    assert!(!admin_token_path(data_dir.path()).exists());
    let url = app.url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let answer = client
        .get(format!("{url}/v1/rollouts"))
        .bearer_auth(&created.token)
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status(), StatusCode::OK);
    let _ = stop.send(());
    server.await.expect("server task").expect("server stopped");

    // A password in the URL is named redacted when the database cannot be
    // used (this one does not exist).
    let (scheme, rest) = db.url().split_once("://").expect("a URL");
    let (user, place) = rest.split_once('@').expect("a user");
    let user = user.split(':').next().unwrap_or(user);
    let (server, _) = place.rsplit_once('/').expect("a database");
    let wrong = format!("{scheme}://{user}:s3cret@{server}/sluice_no_such_database");
    let error = auth::create_in_database(&DatabaseUrl::new(wrong), &request, "cli:test")
        .await
        .expect_err("no such database");
    let message = format!("{error:#}");
    assert!(!message.contains("s3cret"), "{message}");
    assert!(message.contains("***"), "{message}");
}

/// On PostgreSQL too, enrollments running at once never take more than the
/// enrollment token's uses, and each host is bound once; what the leader
/// enrolled survives a restart, the uses it took included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollments_on_postgresql_never_exceed_the_uses() {
    let db = TempPgDatabase::create().await;
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let app = spawn_app_on(Arc::clone(&data_dir), Some(db.url())).await;
    let created = app
        .post(
            "/v1/tokens",
            &app.admin,
            &serde_json::json!({"role": "enroll", "selector": "role=web", "uses": 4, "reason": "test"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let secret = created["token"].as_str().expect("token").to_owned();
    let mut requests = tokio::task::JoinSet::new();
    // Twelve hosts, one of them three times over.
    for i in [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9] {
        let request = app
            .client
            .post(app.url("/v1/agent/enroll"))
            .bearer_auth(&secret)
            .json(&serde_json::json!({"host": host(i), "labels": {"role": "web"}}));
        requests.spawn(async move { request.send().await.expect("sent").status() });
    }
    let statuses = requests.join_all().await;
    let created = statuses
        .iter()
        .filter(|status| **status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 4, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [
            StatusCode::CREATED,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN
        ]
        .contains(s)),
        "{statuses:?}"
    );
    let admin = app.admin.clone();
    let data_dir = app.stop();
    let app = spawn_app_on(data_dir, Some(db.url())).await;
    let listed = app.get("/v1/tokens?role=agent", &admin).await;
    let listed: Value = listed.json().await.expect("json");
    let hosts: std::collections::BTreeSet<&str> = listed["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|token| token["host"].as_str())
        .collect();
    assert_eq!(hosts.len(), 4, "{listed}");
    let enroll: Value = app
        .get("/v1/tokens?role=enroll", &admin)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(enroll["tokens"][0]["uses_left"], 0, "{enroll}");
}
