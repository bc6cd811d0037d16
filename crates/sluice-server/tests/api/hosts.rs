//! The inventory: import, list with selectors, host detail, the desired map
//! and the Ansible inventory.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_testkit::Stage;

use crate::helpers::{assert_error, fleet, plan, spawn_app};

fn mixed_fleet() -> Value {
    json!([
        {"id": "web1.sto", "labels": {"role": "web", "site": "sto"}, "components": {"docker-engine": "1.0"}},
        {"id": "web2.lon", "labels": {"role": "web", "site": "lon"}, "components": {"docker-engine": "1.0"}},
        {"id": "db1.sto", "labels": {"role": "db", "site": "sto"}, "components": {"kernel": "6.1"}},
    ])
}

#[tokio::test]
async fn import_then_list_filter_and_page() {
    let app = spawn_app().await;
    let imported: Value = app.import(&mixed_fleet()).await.json().await.expect("json");
    assert_eq!(imported, json!({"imported": 3, "new": 3}));
    let again: Value = app.import(&mixed_fleet()).await.json().await.expect("json");
    assert_eq!(again, json!({"imported": 3, "new": 0}));

    let all: Value = app.json("/v1/hosts").await;
    assert_eq!(all["total"], 3);
    assert_eq!(all["hosts"][0]["id"], "db1.sto", "ordered by id");
    assert!(
        all["hosts"][0].get("last_seen").is_none(),
        "never checked in"
    );

    let sto: Value = app.json("/v1/hosts?selector=site%3Dsto").await;
    assert_eq!(sto["total"], 2);
    let docker: Value = app
        .get(
            "/v1/hosts?component=docker-engine&limit=1&offset=1",
            &app.admin,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(docker["total"], 2);
    assert_eq!(docker["hosts"].as_array().map(Vec::len), Some(1));
    assert_eq!(docker["hosts"][0]["id"], "web2.lon");

    let bad = app
        .get("/v1/hosts?selector=role%20%3D%3D%3D%20x", &app.admin)
        .await;
    let error = assert_error(bad, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(error["error"]["field"], "selector");
    let bad_limit = app.get("/v1/hosts?limit=0", &app.admin).await;
    assert_error(bad_limit, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn a_host_its_desired_versions_and_the_ansible_inventory() {
    let app = spawn_app().await;
    app.import(&mixed_fleet()).await;
    app.checkin(
        "web1.sto",
        json!({"role": "web", "site": "sto"}),
        json!({"docker-engine": {"version": "1.0", "state": "failed", "message": "boom"}}),
    )
    .await;

    let host: Value = app.json("/v1/hosts/web1.sto").await;
    assert_eq!(host["labels"], json!({"role": "web", "site": "sto"}));
    assert_eq!(
        host["components"]["docker-engine"],
        json!({"version": "1.0", "state": "failed", "message": "boom", "desired": "1.0"})
    );
    assert!(host["last_seen"].is_string());

    let desired: Value = app.json("/v1/hosts/db1.sto/desired").await;
    assert_eq!(desired, json!({"kernel": "6.1"}));
    let missing = app.get("/v1/hosts/nope/desired", &app.admin).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
    let missing = app.get("/v1/hosts/nope", &app.admin).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;

    let inventory: Value = app.json("/v1/inventory/ansible").await;
    assert_eq!(
        inventory["docker_engine_1_0"]["hosts"],
        json!(["web1.sto", "web2.lon"])
    );
    assert_eq!(inventory["kernel_6_1"]["hosts"], json!(["db1.sto"]));
    assert_eq!(
        inventory["_meta"]["hostvars"]["db1.sto"]["sluice_desired"],
        json!({"kernel": "6.1"})
    );
}

#[tokio::test]
async fn imported_hosts_join_active_rollouts() {
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let id = app.rollout(&plan("joiners", [Stage::percent(100)])).await;
    assert_eq!(app.detail(&id).await["selected"], 2);
    let more: Vec<Value> = (2..5)
        .map(|i| json!({"id": format!("h{i}.example.net"), "labels": {"role": "web"}}))
        .collect();
    assert_eq!(
        app.import(&Value::Array(more)).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.detail(&id).await["selected"], 5);
}

#[tokio::test]
async fn an_invalid_fleet_is_400() {
    let app = spawn_app().await;
    let duplicate = json!([{"id": "a"}, {"id": "a"}]);
    let error = assert_error(
        app.import(&duplicate).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert!(error["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("appears twice")));
    let bad_id = json!([{"id": "a b"}]);
    let error = assert_error(
        app.import(&bad_id).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert_eq!(error["error"]["field"], "[0].id");
}
