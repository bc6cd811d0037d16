//! Webhooks through the API (`GET|POST /v1/webhooks`, `DELETE
//! /v1/webhooks/{id}`, `POST /v1/webhooks/{id}/test`): validation, admin
//! only, audited, never a secret in an answer; deliveries signed, in order,
//! and a receiver that keeps failing marked failing while the rollout goes
//! on. A receiver here is an HTTP server in this process; the real-process
//! test (a receiver killed mid-stream, the server SIGKILLed) is the e2e
//! suite's `webhooks`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{
    agents_round, assert_error, fleet, metrics, plan, serve, wait_for, TestApp, DEADLINE,
};
use sluice_testkit::app::spawn_app_configured;
use sluice_testkit::Stage;

const SECRET: &str = "s3cret-key-of-the-receiver";

/// One delivery as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    event: String,
    delivery: String,
    signature: Option<String>,
    body: Bytes,
}

/// An HTTP receiver recording every delivery, answering 200.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = Arc::clone(&got);
            move |headers: HeaderMap, body: Bytes| async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned)
                };
                got.lock().expect("lock").push(Received {
                    event: header("x-sluice-event").unwrap_or_default(),
                    delivery: header("x-sluice-delivery").unwrap_or_default(),
                    signature: header("x-sluice-signature"),
                    body,
                });
                StatusCode::OK
            }
        }),
    );
    let address = serve(router).await;
    (format!("http://{address}/hook"), got)
}

/// A URL where nothing listens.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{address}/hook")
}

fn sign(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn app() -> TestApp {
    let dir = Arc::new(tempfile::TempDir::new().expect("temp dir"));
    spawn_app_configured(dir, None, |config| {
        config.webhook_retry_max = Duration::from_secs(1);
    })
    .await
}

async fn add(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.post("/v1/webhooks", token, &body).await
}

async fn webhook(app: &TestApp, id: &str) -> Value {
    let list = app.json("/v1/webhooks").await;
    list["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|hook| hook["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn webhooks_are_validated_admin_only_audited_and_never_show_their_secret() {
    let app = app().await;
    let (url, _) = receiver().await;
    let operator = app.token("operator", None).await;
    let body = json!({"url": url, "events": ["stage_started", "halted"], "secret": SECRET, "reason": "tell #infra"});
    assert_error(
        add(&app, &operator, body.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        app.get("/v1/webhooks", &operator).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for (wrong, field) in [
        (
            json!({"url": "ftp://hooks.example.net/x", "reason": "r"}),
            "url",
        ),
        (json!({"url": "hooks.example.net/x", "reason": "r"}), "url"),
        (json!({"url": "/relative", "reason": "r"}), "url"),
        (json!({"url": "http://", "reason": "r"}), "url"),
        (
            json!({"url": url, "events": ["stage_begun"], "reason": "r"}),
            "events",
        ),
        (json!({"url": url, "secret": "", "reason": "r"}), "secret"),
        (json!({"url": url, "reason": " "}), "reason"),
    ] {
        let error = assert_error(
            add(&app, &app.admin, wrong.clone()).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
        assert_eq!(error["error"]["field"], field, "{wrong}: {error}");
    }
    let error = assert_error(
        add(
            &app,
            &app.admin,
            json!({"url": url, "events": ["done"], "reason": "r"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("stage_started")
            && message.contains("halted (paused, rollback_started, aborted)"),
        "an unknown kind lists the valid ones: {message}"
    );

    let response = add(&app, &app.admin, body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let text = response.text().await.expect("text");
    assert!(
        !text.contains(SECRET),
        "the answer shows the secret: {text}"
    );
    let added: Value = serde_json::from_str(&text).expect("json");
    let id = added["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        added["events"],
        json!(["stage_started", "paused", "rollback_started", "aborted"]),
        "halted is paused, rollback_started and aborted: {added}"
    );
    assert_eq!(added["signed"], true);
    assert_eq!(added["format"], "json");
    assert_eq!(added["failing"], false);
    let listed = app
        .get("/v1/webhooks", &app.admin)
        .await
        .text()
        .await
        .expect("text");
    assert!(
        !listed.contains(SECRET),
        "the listing shows the secret: {listed}"
    );
    assert_eq!(webhook(&app, &id).await["url"], url);

    let audit = app.json("/v1/audit?kind=webhook_added").await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["target"], id.as_str(), "{audit}");
    assert_eq!(entry["reason"], "tell #infra", "{audit}");
    assert_eq!(
        entry["data"]["url"],
        url.replace("/hook", "/…"),
        "the audit log (which viewers read) names the receiver without its path: {audit}"
    );
    assert!(
        !audit.to_string().contains(SECRET),
        "the audit log shows the secret"
    );

    let path = format!("/v1/webhooks/{id}");
    assert_error(
        app.send(Method::DELETE, &path, &app.admin, &json!({"reason": " "}))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert_error(
        app.send(Method::DELETE, &path, &operator, &json!({"reason": "r"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let response = app
        .send(
            Method::DELETE,
            &path,
            &app.admin,
            &json!({"reason": "channel archived"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(webhook(&app, &id).await, Value::Null, "removed");
    let audit = app.json("/v1/audit?kind=webhook_removed").await;
    assert_eq!(audit["entries"][0]["reason"], "channel archived", "{audit}");
    assert_error(
        app.send(
            Method::DELETE,
            &path,
            &app.admin,
            &json!({"reason": "again"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        app.post(&format!("{path}/test"), &app.admin, &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn events_are_delivered_signed_in_order_and_a_failing_receiver_never_holds_the_rollout() {
    let app = app().await;
    let (url, got) = receiver().await;
    let closed = closed_port().await;
    assert_eq!(app.import(&fleet(4)).await.status(), StatusCode::OK);
    let signed = add(
        &app,
        &app.admin,
        json!({"url": url, "events": ["stage_started", "halted", "completed"], "secret": SECRET, "reason": "r"}),
    )
    .await;
    assert_eq!(signed.status(), StatusCode::CREATED);
    let signed: Value = signed.json().await.expect("json");
    let failing = add(&app, &app.admin, json!({"url": closed, "reason": "r"})).await;
    assert_eq!(failing.status(), StatusCode::CREATED);
    let failing: Value = failing.json().await.expect("json");
    let failing_id = failing["id"].as_str().expect("id").to_owned();

    let id = app
        .rollout(plan("hooked", [Stage::percent(50), Stage::percent(100)]))
        .await;
    assert_eq!(
        app.action(&id, "start", "go").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.action(&id, "pause", "look").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.action(&id, "resume", "fine").await.status(),
        StatusCode::OK
    );
    wait_for("the rollout to complete", DEADLINE, || async {
        agents_round(&app, 4).await;
        app.detail(&id).await["state"] == "completed"
    })
    .await;

    let deliveries = wait_for("the completed event delivered", DEADLINE, || async {
        let got = got.lock().expect("lock").clone();
        if got.iter().any(|d| d.event == "completed") {
            Ok(got)
        } else {
            Err(got.iter().map(|d| d.event.clone()).collect::<Vec<_>>())
        }
    })
    .await;
    let wanted = [
        "stage_started",
        "paused",
        "rollback_started",
        "aborted",
        "completed",
    ];
    let logged: Vec<Value> = app
        .events(&id)
        .await
        .into_iter()
        .filter(|event| wanted.iter().any(|kind| event["kind"] == *kind))
        .collect();
    let delivered: Vec<Value> = deliveries
        .iter()
        .map(|d| serde_json::from_slice(&d.body).expect("an event"))
        .collect();
    assert_eq!(
        delivered, logged,
        "the wanted events of the log, once each, in its order"
    );
    let mut last = 0;
    for delivery in &deliveries {
        assert_eq!(
            delivery.signature.as_deref(),
            Some(sign(&delivery.body).as_str()),
            "{delivery:?}"
        );
        let event: Value = serde_json::from_slice(&delivery.body).expect("an event");
        assert_eq!(event["rollout"], id.as_str(), "{event}");
        assert_eq!(event["kind"], delivery.event.as_str(), "{event}");
        let seq = event["seq"].as_i64().expect("seq");
        assert!(seq > last, "in order: {deliveries:?}");
        last = seq;
        assert_eq!(
            delivery.delivery,
            format!("{}-{seq}", signed["id"].as_str().expect("id"))
        );
    }

    let marked = wait_for(
        "the closed port's webhook marked failing",
        DEADLINE,
        || async {
            let hook = webhook(&app, &failing_id).await;
            if hook["failing"] == true {
                Ok(hook)
            } else {
                Err(hook)
            }
        },
    )
    .await;
    assert!(marked["failures"].as_i64().unwrap_or(0) >= 3, "{marked}");
    assert!(
        marked["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("connect")),
        "{marked}"
    );
    assert!(marked.get("last_success_at").is_none(), "{marked}");
    let text = metrics(&app).await;
    assert!(
        text.contains(&format!(
            "sluice_webhook_failing{{webhook=\"{failing_id}\"}} 1"
        )),
        "{text}"
    );

    let path = format!("/v1/webhooks/{}/test", signed["id"].as_str().expect("id"));
    let result: Value = app
        .post(&path, &app.admin, &json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(result, json!({"delivered": true, "status": 200}));
    let test = got
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a test delivery");
    assert_eq!(test.event, "webhook_test");
    assert_eq!(test.signature.as_deref(), Some(sign(&test.body).as_str()));
    let result: Value = app
        .post(
            &format!("/v1/webhooks/{failing_id}/test"),
            &app.admin,
            &json!({}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(result["delivered"], false, "{result}");
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|e| e.contains("connect")),
        "{result}"
    );
    let audit = app.json("/v1/audit?kind=webhook_tested").await;
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(2),
        "{audit}"
    );

    // Removed: its delivery stops, and the metric forgets it.
    let response = app
        .send(
            Method::DELETE,
            &format!("/v1/webhooks/{failing_id}"),
            &app.admin,
            &json!({"reason": "nobody listens"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    wait_for(
        "the removed webhook's delivery to stop",
        DEADLINE,
        || async {
            let text = metrics(&app).await;
            if text.contains(&failing_id) {
                Err(text)
            } else {
                Ok(())
            }
        },
    )
    .await;
}
