//! The server on PostgreSQL (`--database-url`): a fresh database per test
//! (`sluice_store::testing`), the same API as on SQLite, and the same
//! state after a restart or a crash.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
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
