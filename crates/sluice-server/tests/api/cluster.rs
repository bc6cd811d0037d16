//! The replica's own endpoints: readiness, the cluster and the leadership
//! metrics, on the embedded store (the server leads for good) and on
//! PostgreSQL (a lone replica takes the lease, epoch 1).

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use sluice_store::testing::TempPgDatabase;
use tempfile::TempDir;

use crate::helpers::{assert_error, spawn_app, spawn_app_on, wait_for, TestApp, DEADLINE};

async fn text(app: &TestApp, path: &str) -> (StatusCode, String) {
    let response = app.client.get(app.url(path)).send().await.expect("sent");
    let status = response.status();
    (status, response.text().await.expect("text"))
}

/// What every lone server says of itself, with `epoch` its lease's.
async fn a_lone_server_leads(app: &TestApp, epoch: Option<i64>) {
    let (status, ready) = text(app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let ready: Value = serde_json::from_str(&ready).expect("json");
    assert_eq!(ready["role"], "leader");

    // A replica's first heartbeat may land just after it serves.
    let cluster: Value = wait_for("the replica's first heartbeat", DEADLINE, || async {
        let cluster: Value = app.json("/v1/cluster").await;
        let heard = cluster["replicas"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        heard.then_some(cluster)
    })
    .await;
    let replicas = cluster["replicas"].as_array().expect("replicas");
    assert_eq!(cluster["leader"], cluster["answered_by"], "{cluster}");
    assert_eq!(cluster["epoch"].as_i64(), epoch, "{cluster}");
    assert_eq!(replicas.len(), 1, "{cluster}");
    assert_eq!(replicas[0]["id"], cluster["leader"]);
    assert_eq!(replicas[0]["role"], "leader");
    assert!(
        replicas[0]["address"]
            .as_str()
            .is_some_and(|address| app.address == address),
        "{cluster} is not reached at {}",
        app.address
    );

    let (_, metrics) = text(app, "/metrics").await;
    assert!(metrics.contains("sluice_leader 1"), "{metrics}");
    let line = format!("sluice_leader_epoch {}", epoch.unwrap_or(0));
    assert!(metrics.contains(&line), "{line} missing from\n{metrics}");

    // The cluster is not for anybody: a token is needed, any reading role.
    let anonymous = app
        .client
        .get(app.url("/v1/cluster"))
        .send()
        .await
        .expect("sent");
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let agent = app.token("agent", Some("a.example.net")).await;
    let forbidden = app.get("/v1/cluster", &agent).await;
    assert_error(forbidden, StatusCode::FORBIDDEN, "forbidden").await;
    let viewer = app.token("viewer", None).await;
    assert_eq!(
        app.get("/v1/cluster", &viewer).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn on_the_embedded_store_the_server_leads_without_a_lease() {
    let app = spawn_app().await;
    a_lone_server_leads(&app, None).await;
}

#[tokio::test]
async fn a_lone_replica_on_postgresql_takes_the_lease() {
    let db = TempPgDatabase::create().await;
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let app = spawn_app_on(Arc::clone(&data_dir), Some(db.url())).await;
    a_lone_server_leads(&app, Some(1)).await;

    // A clean stop hands the lease over; the next replica takes the next
    // epoch at once.
    let app = spawn_app_on(app.stop(), Some(db.url())).await;
    let cluster: Value = app.json("/v1/cluster").await;
    assert_eq!(cluster["epoch"], 2, "{cluster}");
    assert_eq!(cluster["leader"], cluster["answered_by"], "{cluster}");
}
