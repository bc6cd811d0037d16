//! The fixtures of the API tests: the server in process comes from the
//! testkit ([`spawn_app`] and its kin return a [`TestApp`] whose methods are
//! requests); here are a fleet of web hosts running docker-engine 1.0, plans
//! taking it to 2.0, check-ins as those hosts, the error body's shape, and
//! a tiny HTTP server for monitoring endpoints.

use std::net::SocketAddr;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
pub use sluice_testkit::app::{spawn_app, spawn_app_in, spawn_app_on, spawn_app_with, TestApp};
pub use sluice_testkit::{wait_for, DEADLINE};
use sluice_testkit::{Plan, Stage};

/// Asserts the error body: status, code, and (if given) field.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(!message.is_empty() && !message.ends_with('.'), "{message}");
    body
}

/// A fleet of `n` hosts `h{i}.example.net` with role `web`, running
/// docker-engine 1.0.
/// The seconds a refusal's `Retry-After` asks to wait, if it says.
pub fn retry_after(response: &Response) -> Option<u64> {
    response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
}

pub fn fleet(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({
                    "id": host(i),
                    "labels": {"role": "web"},
                    "components": {"docker-engine": "1.0"}
                })
            })
            .collect(),
    )
}

/// The id of host `i` of [`fleet`].
pub fn host(i: usize) -> String {
    format!("h{i}.example.net")
}

/// A plan for docker-engine 2.0 (with a payload) in `stages`.
pub fn plan(name: &str, stages: impl IntoIterator<Item = Stage>) -> Plan {
    Plan::new(name, "docker-engine", "2.0")
        .payload_url("https://repo.example.net/docker-2.0.deb")
        .stages(stages)
}

/// Checks in host `id` reporting docker-engine `version` in `state`.
pub async fn report(app: &TestApp, id: &str, version: &str, state: &str) -> Value {
    app.checkin(
        id,
        json!({"role": "web"}),
        json!({"docker-engine": {"version": version, "state": state}}),
    )
    .await
}

/// Creates a rollout of `plan` and starts it; returns its id.
pub async fn start(app: &TestApp, plan: Plan) -> String {
    let id = app.rollout(plan).await;
    app.action(&id, "start", "go").await;
    id
}

/// Checks in hosts `0..hosts` of [`fleet`] at docker-engine 1.0; returns
/// those told 2.0.
pub async fn told_2(app: &TestApp, hosts: usize) -> Vec<usize> {
    let mut told = Vec::new();
    for i in 0..hosts {
        if desired(&report(app, &host(i), "1.0", "ok").await) == "2.0" {
            told.push(i);
        }
    }
    told
}

/// One round of the agents of hosts `0..hosts`: each checks in at 1.0, and
/// those told 2.0 apply it and report it healthy; returns them.
pub async fn agents_round(app: &TestApp, hosts: usize) -> Vec<usize> {
    let told = told_2(app, hosts).await;
    for &i in &told {
        report(app, &host(i), "2.0", "ok").await;
    }
    told
}

/// What `GET /metrics` answers (no token needed).
pub async fn metrics(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text")
}

/// The desired docker-engine version in a check-in answer.
pub fn desired(answer: &Value) -> &str {
    answer["components"]["docker-engine"]["version"]
        .as_str()
        .unwrap_or("")
}

/// Serves `router` on a free port of 127.0.0.1 (monitoring endpoints and
/// exporters for the gates).
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}
