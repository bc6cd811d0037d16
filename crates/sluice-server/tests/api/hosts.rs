//! The inventory: import, list with selectors, host detail, the desired map
//! and the Ansible inventory; drifted hosts.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_testkit::Stage;

use crate::helpers::{assert_error, fleet, host, metrics, plan, spawn_app, spawn_app_in, TestApp};

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

/// Checks in `id` reporting docker-engine 1.0 ok, drifted or not; a report
/// that leaves `drifted` out is an agent that predates it.
async fn report_drift(app: &TestApp, id: &str, drifted: Option<bool>) {
    let mut report = json!({"version": "1.0", "state": "ok"});
    if let Some(drifted) = drifted {
        report["drifted"] = json!(drifted);
    }
    app.checkin(
        id,
        json!({"role": "web"}),
        json!({ "docker-engine": report }),
    )
    .await;
}

#[tokio::test]
async fn drifted_hosts_are_listed_shown_counted_and_kept_across_a_restart() {
    let app = spawn_app().await;
    app.import(&fleet(3)).await;
    report_drift(&app, &host(0), None).await;
    report_drift(&app, &host(1), Some(true)).await;
    report_drift(&app, &host(2), Some(false)).await;

    let drifted: Value = app.json("/v1/hosts?drifted=true").await;
    assert_eq!(drifted["total"], 1);
    assert_eq!(drifted["hosts"][0]["id"], host(1));
    assert_eq!(
        drifted["hosts"][0]["components"]["docker-engine"],
        json!({"version": "1.0", "state": "ok", "drifted": true, "desired": "1.0"})
    );
    let in_component: Value = app
        .json("/v1/hosts?drifted=true&component=docker-engine")
        .await;
    assert_eq!(in_component["total"], 1);
    let elsewhere: Value = app.json("/v1/hosts?drifted=true&component=kernel").await;
    assert_eq!(elsewhere["total"], 0);
    let all: Value = app.json("/v1/hosts?drifted=false").await;
    assert_eq!(all["total"], 3);
    let steady: Value = app.json(&format!("/v1/hosts/{}", host(0))).await;
    assert!(
        steady["components"]["docker-engine"]
            .get("drifted")
            .is_none(),
        "not drifted: absent, as an older agent sends it"
    );
    let bad = app.get("/v1/hosts?drifted=maybe", &app.admin).await;
    assert_error(bad, StatusCode::BAD_REQUEST, "bad_request").await;

    let components: Value = app.json("/v1/components").await;
    assert_eq!(components["components"][0]["drifted"], 1);
    let metrics = metrics(&app).await;
    assert!(
        metrics.contains("sluice_hosts_drifted{component=\"docker-engine\"} 1"),
        "{metrics}"
    );

    // Kept by the store.
    let app = spawn_app_in(app.stop()).await;
    let drifted: Value = app.json("/v1/hosts?drifted=true").await;
    assert_eq!(drifted["total"], 1);
    assert_eq!(drifted["hosts"][0]["id"], host(1));
    let components: Value = app.json("/v1/components").await;
    assert_eq!(components["components"][0]["drifted"], 1);

    // Back at its desired version, its agent no longer says so.
    report_drift(&app, &host(1), None).await;
    let drifted: Value = app.json("/v1/hosts?drifted=true").await;
    assert_eq!(drifted["total"], 0);
    let components: Value = app.json("/v1/components").await;
    assert!(components["components"][0].get("drifted").is_none());
}
