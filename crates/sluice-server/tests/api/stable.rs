//! A completed rollout changes only the hosts it covered; the stable version
//! moves when a rollout covered every host with the component, or by
//! `PUT /v1/components/{name}/stable`, after a dry run says how many hosts
//! would change at once.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sluice_testkit::{Plan, Stage};

use crate::helpers::{assert_error, desired, spawn_app, TestApp};

/// Checks in `host` of `site` reporting docker-engine `version` in `state`.
async fn report_at(app: &TestApp, host: &str, site: &str, version: &str, state: &str) -> Value {
    app.checkin(
        host,
        json!({"role": "web", "site": site}),
        json!({"docker-engine": {"version": version, "state": state}}),
    )
    .await
}

/// Two hosts in `sto`, two in `lon`, all on 1.0; a rollout of 2.0 to `sto`
/// only, completed. Returns its id.
async fn sto_completed(app: &TestApp) -> String {
    for (host, site) in HOSTS {
        report_at(app, host, site, "1.0", "ok").await;
    }
    let plan = Plan::new("sto-only", "docker-engine", "2.0")
        .selector("site=sto")
        .stage(Stage::percent(100));
    let id = app.rollout(plan).await;
    assert_eq!(
        app.action(&id, "start", "CHG-1").await.status(),
        StatusCode::OK
    );
    for (host, site) in &HOSTS[..2] {
        let answer = report_at(app, host, site, "1.0", "ok").await;
        assert_eq!(desired(&answer), "2.0", "{host} is admitted");
        report_at(app, host, site, "2.0", "ok").await;
    }
    app.wait_for_state(&id, "completed").await;
    id
}

const HOSTS: [(&str, &str); 4] = [
    ("a.sto.example.net", "sto"),
    ("b.sto.example.net", "sto"),
    ("c.lon.example.net", "lon"),
    ("d.lon.example.net", "lon"),
];

async fn components(app: &TestApp) -> Value {
    app.json("/v1/components").await
}

async fn set_stable(app: &TestApp, body: Value) -> reqwest::Response {
    app.send(
        Method::PUT,
        "/v1/components/docker-engine/stable",
        &app.admin,
        &body,
    )
    .await
}

#[tokio::test]
async fn a_site_scoped_rollout_completes_without_touching_another_site() {
    let app = spawn_app().await;
    let id = sto_completed(&app).await;
    let component = &components(&app).await["components"][0];
    assert!(component.get("stable_version").is_none(), "{component}");
    // The other site keeps what it runs, now and at every later check-in.
    for (host, site) in &HOSTS[2..] {
        let answer = report_at(&app, host, site, "1.0", "ok").await;
        assert_eq!(
            answer["components"]["docker-engine"],
            json!({"version": "1.0"}),
            "{host} is outside the rollout"
        );
    }
    // The covered site keeps the target; a host joining it later gets it
    // too, one joining the other site does not.
    for (host, site) in [
        (HOSTS[0].0, "sto"),
        ("e.sto.example.net", "sto"),
        ("f.lon.example.net", "lon"),
    ] {
        let answer = report_at(&app, host, site, "1.0", "ok").await;
        let told = &answer["components"]["docker-engine"];
        if site == "sto" {
            assert_eq!(told["version"], "2.0", "{host}: {told}");
            assert_eq!(told["rollout"], id.as_str(), "{host}: {told}");
        } else {
            assert_eq!(told, &json!({"version": "1.0"}), "{host}");
        }
    }
    let desired: Value = app.json("/v1/hosts/c.lon.example.net/desired").await;
    assert_eq!(desired, json!({"docker-engine": "1.0"}));
}

#[tokio::test]
async fn set_stable_says_how_many_hosts_change_then_moves_them() {
    let app = spawn_app().await;
    sto_completed(&app).await;
    let preview = set_stable(
        &app,
        json!({"version": "2.0", "reason": "every site next", "dry_run": true}),
    )
    .await;
    assert_eq!(preview.status(), StatusCode::OK);
    let preview: Value = preview.json().await.expect("json");
    assert_eq!(
        preview,
        json!({"component": "docker-engine", "to": "2.0", "hosts_changed": 2, "hosts_with_component": 4, "applied": false})
    );
    // A dry run changes nothing.
    let answer = report_at(&app, HOSTS[2].0, "lon", "1.0", "ok").await;
    assert_eq!(desired(&answer), "1.0");

    let moved = set_stable(&app, json!({"version": "2.0", "reason": "every site next"})).await;
    assert_eq!(moved.status(), StatusCode::OK);
    let moved: Value = moved.json().await.expect("json");
    assert_eq!(moved["applied"], true);
    assert_eq!(moved["hosts_changed"], 2);
    assert_eq!(
        components(&app).await["components"][0]["stable_version"],
        "2.0"
    );
    let answer = report_at(&app, HOSTS[2].0, "lon", "1.0", "ok").await;
    assert_eq!(
        answer["components"]["docker-engine"],
        json!({"version": "2.0"}),
        "the stable version, from no rollout"
    );
}

#[tokio::test]
async fn set_stable_is_refused_while_a_rollout_of_the_component_is_active_and_needs_a_reason() {
    let app = spawn_app().await;
    for (host, site) in HOSTS {
        report_at(&app, host, site, "1.0", "ok").await;
    }
    let plan = Plan::new("slow", "docker-engine", "2.0")
        .stage(Stage::percent(50).approve())
        .stage(Stage::percent(100));
    let id = app.rollout(plan).await;
    let response = set_stable(&app, json!({"version": "2.0", "reason": "shortcut"})).await;
    let error = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&id) && m.contains("waiting hosts")),
        "{error}"
    );
    assert_eq!(
        app.action(&id, "abort", "not now").await.status(),
        StatusCode::OK
    );
    let response = set_stable(&app, json!({"version": "2.0", "reason": " "})).await;
    let error = assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(error["error"]["field"], "reason");
    let response = app
        .send(
            Method::PUT,
            "/v1/components/kernel/stable",
            &app.admin,
            &json!({"version": "6.1", "reason": "r"}),
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let viewer = app.token("viewer", None).await;
    let response = app
        .send(
            Method::PUT,
            "/v1/components/docker-engine/stable",
            &viewer,
            &json!({"version": "2.0", "reason": "r"}),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}
