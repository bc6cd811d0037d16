//! Components, the freeze, tokens (one stored by another process too),
//! health and metrics.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_api::admin::{Role, TokenRequest};
use sluice_server::auth::{check_request, new_secret, token_writes};
use sluice_store::{SqliteStore, Store, Timestamp};
use tempfile::TempDir;

use crate::helpers::{assert_error, metrics, report, spawn_app, spawn_app_in};

#[tokio::test]
async fn the_freeze_is_set_and_lifted_by_admins_with_a_reason() {
    let app = spawn_app().await;
    let view: Value = app.json("/v1/freeze").await;
    assert_eq!(view, json!({"frozen": false}));

    let no_reason = app.freeze("").await;
    let error = assert_error(no_reason, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(error["error"]["field"], "reason");

    let operator = app.token("operator", None).await;
    let forbidden = app
        .send(
            reqwest::Method::PUT,
            "/v1/freeze",
            &operator,
            &json!({"reason": "incident"}),
        )
        .await;
    assert_error(forbidden, StatusCode::FORBIDDEN, "forbidden").await;

    let frozen: Value = app.freeze("incident 7").await.json().await.expect("json");
    assert_eq!(frozen["frozen"], true);
    assert_eq!(frozen["actor"], "admin");
    assert_eq!(frozen["reason"], "incident 7");

    let lifted: Value = app.unfreeze("resolved").await.json().await.expect("json");
    assert_eq!(lifted, json!({"frozen": false}));
}

#[tokio::test]
async fn tokens_carry_roles() {
    let app = spawn_app().await;
    let viewer = app.token("viewer", None).await;
    assert!(viewer.starts_with("slc_"));
    assert_eq!(
        app.get("/v1/rollouts", &viewer).await.status(),
        StatusCode::OK
    );
    let create = app
        .client
        .post(app.url("/v1/rollouts"))
        .bearer_auth(&viewer)
        .body("name: x")
        .send()
        .await
        .expect("sent");
    assert_error(create, StatusCode::FORBIDDEN, "forbidden").await;
    let token = app
        .post(
            "/v1/tokens",
            &viewer,
            &json!({"role": "viewer", "reason": "test"}),
        )
        .await;
    assert_error(token, StatusCode::FORBIDDEN, "forbidden").await;

    let operator = app.token("operator", None).await;
    let import = app
        .post("/v1/hosts/import?reason=test", &operator, &json!([]))
        .await;
    assert_error(import, StatusCode::FORBIDDEN, "forbidden").await;

    let unbound = app
        .post(
            "/v1/tokens",
            &app.admin,
            &json!({"role": "agent", "reason": "test"}),
        )
        .await;
    let error = assert_error(unbound, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(error["error"]["field"], "host");
    let bound_viewer = app
        .post(
            "/v1/tokens",
            &app.admin,
            &json!({"role": "viewer", "host": "a", "reason": "test"}),
        )
        .await;
    assert_error(bound_viewer, StatusCode::BAD_REQUEST, "bad_request").await;
    let bad_role = app
        .post(
            "/v1/tokens",
            &app.admin,
            &json!({"role": "root", "reason": "test"}),
        )
        .await;
    assert_error(bad_role, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn missing_or_unknown_tokens_are_401() {
    let app = spawn_app().await;
    let none = app
        .client
        .get(app.url("/v1/rollouts"))
        .send()
        .await
        .expect("sent");
    assert_error(none, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let unknown = app.get("/v1/rollouts", "slc_nope").await;
    assert_error(unknown, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let basic = app
        .client
        .get(app.url("/v1/rollouts"))
        .basic_auth("admin", Some(&app.admin))
        .send()
        .await
        .expect("sent");
    assert_error(basic, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

/// A token another process stores in the server's database while it runs
/// (here the store opened beside it) works at its first use, with its role
/// and name; one the store does not know stays refused.
#[tokio::test]
async fn a_token_stored_by_another_process_works_at_once() {
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let app = spawn_app_in(Arc::clone(&data_dir)).await;
    let unknown = new_secret().expect("a secret");
    let refused = app.get("/v1/rollouts", &unknown).await;
    assert_error(refused, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let secret = new_secret().expect("a secret");
    let request = TokenRequest {
        role: Role::Viewer,
        host: None,
        name: Some("from afar".to_owned()),
        selector: None,
        uses: None,
        expires: None,
        reason: "test".to_owned(),
    };
    let mut writes = Vec::new();
    let now = Timestamp::now();
    let token = check_request(&request, now).expect("valid");
    token_writes(&secret, &token, "test", now, &mut writes);
    let store = SqliteStore::open(data_dir.path()).await.expect("the store");
    store.commit(&writes).await.expect("stored");
    store.close().await;

    assert_eq!(
        app.get("/v1/rollouts", &secret).await.status(),
        StatusCode::OK
    );
    let more = app
        .post(
            "/v1/tokens",
            &secret,
            &json!({"role": "admin", "reason": "test"}),
        )
        .await;
    let error = assert_error(more, StatusCode::FORBIDDEN, "forbidden").await;
    let message = error["error"]["message"].as_str().expect("message");
    assert!(!message.contains(&secret), "{message}");
    let refused = app.get("/v1/rollouts", &unknown).await;
    assert_error(refused, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn components_healthz_and_metrics() {
    let app = spawn_app().await;
    report(&app, "a.example.net", "1.0", "ok").await;
    report(&app, "b.example.net", "1.1", "failed").await;
    let components: Value = app.json("/v1/components").await;
    assert_eq!(
        components,
        json!({"components": [{"name": "docker-engine", "versions": {"1.0": 1, "1.1": 1}, "active_rollouts": []}]})
    );

    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), StatusCode::OK);

    let metrics = metrics(&app).await;
    for line in [
        "sluice_checkins_total 2",
        "sluice_checkin_duration_seconds_count 2",
        "sluice_commit_batch_writes_count",
        "sluice_rollouts{state=\"pending\"} 0",
        "sluice_hosts{component=\"docker-engine\",state=\"failed\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_the_error_format() {
    let app = spawn_app().await;
    let missing = app.get("/v1/nothing", &app.admin).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
    let method = app
        .client
        .delete(app.url("/v1/rollouts"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("sent");
    assert_error(method, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}
