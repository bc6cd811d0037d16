//! The controller: stages advance through short bakes and approvals, the
//! freeze holds a rollout, host timeouts and failing gates stop it.

use std::net::SocketAddr;

use axum::http::StatusCode as AxumStatus;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{desired, fleet, host, plan, report, spawn_app, wait_for, TestApp};

/// Every host checks in once, applying what it is told: an agent's loop.
async fn agents_round(app: &TestApp, hosts: usize) {
    for i in 0..hosts {
        let answer = report(app, &host(i), "1.0", "ok").await;
        if desired(&answer) == "2.0" {
            report(app, &host(i), "2.0", "ok").await;
        }
    }
}

async fn state_of(app: &TestApp, id: &str) -> Value {
    app.detail(id).await
}

#[tokio::test]
async fn stages_advance_through_bakes_and_approval_to_completion() {
    let app = spawn_app().await;
    app.import(&fleet(4)).await;
    let id = app
        .rollout(&plan(
            "bakes",
            &[
                "{ percent: 25, bake: 1s }",
                "{ percent: 50, bake: 1s, approve: true }",
                "{ percent: 100 }",
            ],
        ))
        .await;
    app.action(&id, "start", "go").await;
    agents_round(&app, 4).await;
    let detail = state_of(&app, &id).await;
    assert_eq!(detail["admitted"], 1);
    assert_eq!(detail["phase"], "baking");
    assert!(detail["bake_until"].is_string());

    // The bake ends by itself; stage 2 admits a second host.
    wait_for("stage 2", || async {
        (state_of(&app, &id).await["stage"] == 1).then_some(())
    })
    .await;
    agents_round(&app, 4).await;
    let awaiting = wait_for("approval", || async {
        let detail = state_of(&app, &id).await;
        (detail["phase"] == "awaiting_approval").then_some(detail)
    })
    .await;
    assert_eq!(awaiting["admitted"], 2);
    assert_eq!(
        app.action(&id, "approve", "looks fine").await.status(),
        StatusCode::OK
    );
    agents_round(&app, 4).await;
    wait_for("completion", || async {
        (state_of(&app, &id).await["state"] == "completed").then_some(())
    })
    .await;
    let components: Value = app
        .get("/v1/components", &app.admin)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(components["components"][0]["stable_version"], "2.0");
}

#[tokio::test]
async fn advance_skips_the_rest_of_a_bake() {
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let id = app
        .rollout(&plan(
            "skip",
            &["{ percent: 50, bake: 1h }", "{ percent: 100 }"],
        ))
        .await;
    app.action(&id, "start", "go").await;
    agents_round(&app, 2).await;
    assert_eq!(state_of(&app, &id).await["phase"], "baking");
    assert_eq!(
        app.action(&id, "advance", "verified by hand")
            .await
            .status(),
        StatusCode::OK
    );
    wait_for("stage 2", || async {
        (state_of(&app, &id).await["stage"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_freeze_holds_a_rollout_until_lifted() {
    let app = spawn_app().await;
    app.import(&fleet(4)).await;
    let id = app.rollout(&plan("frozen", &["{ percent: 100 }"])).await;
    let freeze = app
        .client
        .put(app.url("/v1/freeze"))
        .bearer_auth(&app.admin)
        .json(&json!({"reason": "incident 7"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(freeze.status(), StatusCode::OK);
    app.action(&id, "start", "go").await;
    agents_round(&app, 4).await;
    let detail = state_of(&app, &id).await;
    assert_eq!(detail["state"], "running");
    assert_eq!(detail["admitted"], 0, "a frozen rollout admits nobody");
    assert!(detail["held"]
        .as_str()
        .is_some_and(|h| h.contains("incident 7")));
    for i in 0..4 {
        assert_eq!(desired(&report(&app, &host(i), "1.0", "ok").await), "1.0");
    }

    let lift = app
        .client
        .delete(app.url("/v1/freeze"))
        .bearer_auth(&app.admin)
        .json(&json!({"reason": "resolved"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(lift.status(), StatusCode::OK);
    assert_eq!(state_of(&app, &id).await["admitted"], 4);
    assert!(state_of(&app, &id).await.get("held").is_none());
}

#[tokio::test]
async fn a_silent_host_times_out_and_pauses_the_rollout() {
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let source = format!(
        "{}gates: {{ host_timeout: 1s }}\n",
        plan("silent", &["{ percent: 50 }", "{ percent: 100 }"])
    );
    let id = app.rollout(&source).await;
    app.action(&id, "start", "go").await;
    let paused = wait_for("pause", || async {
        let detail = state_of(&app, &id).await;
        (detail["state"] == "paused").then_some(detail)
    })
    .await;
    assert_eq!(paused["failed"], 1);
    assert!(paused["reason"]
        .as_str()
        .is_some_and(|r| r.contains("failed")));
}

/// A stand-in for an HTTP health endpoint and a Prometheus: `/ok` answers
/// 200, `/down` 503, `/api/v1/query` a vector with 0.9.
async fn fake_monitoring() -> SocketAddr {
    let router = axum::Router::new()
        .route("/ok", axum::routing::get(|| async { "ok" }))
        .route(
            "/down",
            axum::routing::get(|| async { (AxumStatus::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/api/v1/query",
            axum::routing::get(|| async {
                axum::Json(json!({"status": "success", "data": {"resultType": "vector",
                    "result": [{"metric": {"job": "docker"}, "value": [1.0, "0.9"]}]}}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

#[tokio::test]
async fn failing_gates_apply_on_failure_with_their_evidence() {
    let monitoring = fake_monitoring().await;
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let source = format!(
        "{}gates:\n  http:\n    - {{ name: slo, url: \"http://{monitoring}/ok\", interval: 1s }}\n  prometheus:\n    - {{ name: restarts, url: \"http://{monitoring}\", query: \"sum(rate(restarts[5m]))\", fail_if: \"> 0.5\", for: 2, interval: 1s }}\non_failure: rollback\n",
        plan("gated", &["{ percent: 50, bake: 1h }", "{ percent: 100 }"])
    );
    let id = app.rollout(&source).await;
    app.action(&id, "start", "go").await;
    let rolled_back = wait_for("rollback", || async {
        let detail = state_of(&app, &id).await;
        (detail["state"] == "rolled_back").then_some(detail)
    })
    .await;
    let gates = rolled_back["gates"].as_array().expect("gates");
    let restarts = gates
        .iter()
        .find(|g| g["name"] == "restarts")
        .expect("restarts gate");
    assert_eq!(restarts["latest"]["outcome"], "fail");
    let slo = gates.iter().find(|g| g["name"] == "slo").expect("slo gate");
    assert_eq!(slo["latest"]["outcome"], "pass");

    // Memory shows the rollback before its batch (and the events) is
    // durable; the events endpoint reads the store.
    let failed = wait_for("the gate_failed event", || async {
        let events: Value = app
            .get(&format!("/v1/rollouts/{id}/events"), &app.admin)
            .await
            .json()
            .await
            .expect("json");
        events["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["kind"] == "gate_failed")
            .cloned()
    })
    .await;
    assert_eq!(failed["data"]["gate"], "restarts");
    let evidence = failed["data"]["evidence"].as_str().expect("evidence");
    assert!(
        evidence.contains("0.9") && evidence.contains("> 0.5"),
        "{evidence}"
    );
}

#[tokio::test]
async fn an_unreachable_http_gate_fails() {
    let monitoring = fake_monitoring().await;
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let source = format!(
        "{}gates:\n  http:\n    - {{ name: slo, url: \"http://{monitoring}/down\", interval: 1s }}\n",
        plan("down", &["{ percent: 50 }", "{ percent: 100 }"])
    );
    let id = app.rollout(&source).await;
    app.action(&id, "start", "go").await;
    let paused = wait_for("pause", || async {
        let detail = state_of(&app, &id).await;
        (detail["state"] == "paused").then_some(detail)
    })
    .await;
    let reason = paused["reason"].as_str().expect("reason");
    assert!(reason.contains("503"), "{reason}");
}
