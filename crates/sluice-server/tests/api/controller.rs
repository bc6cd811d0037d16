//! The controller: stages advance through short bakes and approvals, the
//! freeze holds a rollout, host timeouts and failing gates stop it.

use std::net::SocketAddr;

use axum::http::StatusCode as AxumStatus;
use reqwest::StatusCode;
use serde_json::Value;
use sluice_testkit::{Gate, Stage};

use crate::helpers::{
    agents_round, desired, fleet, host, plan, report, serve, spawn_app, start, wait_for, DEADLINE,
};

#[tokio::test]
async fn stages_advance_through_bakes_and_approval_to_completion() {
    let app = spawn_app().await;
    app.import(&fleet(4)).await;
    let id = start(
        &app,
        plan(
            "bakes",
            [
                Stage::percent(25).bake("1s"),
                Stage::percent(50).bake("1s").approve(),
                Stage::percent(100),
            ],
        ),
    )
    .await;
    agents_round(&app, 4).await;
    let detail = app.detail(&id).await;
    assert_eq!(detail["admitted"], 1);
    assert_eq!(detail["phase"], "baking");
    assert!(detail["bake_until"].is_string());

    // The bake ends by itself; stage 2 admits a second host.
    wait_for("stage 2", DEADLINE, || async {
        (app.detail(&id).await["stage"] == 1).then_some(())
    })
    .await;
    agents_round(&app, 4).await;
    let awaiting = wait_for("approval", DEADLINE, || async {
        let detail = app.detail(&id).await;
        (detail["phase"] == "awaiting_approval").then_some(detail)
    })
    .await;
    assert_eq!(awaiting["admitted"], 2);
    assert_eq!(
        app.action(&id, "approve", "looks fine").await.status(),
        StatusCode::OK
    );
    agents_round(&app, 4).await;
    wait_for("completion", DEADLINE, || async {
        (app.detail(&id).await["state"] == "completed").then_some(())
    })
    .await;
    let components: Value = app.json("/v1/components").await;
    assert_eq!(components["components"][0]["stable_version"], "2.0");
}

#[tokio::test]
async fn advance_skips_the_rest_of_a_bake() {
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let id = start(
        &app,
        plan("skip", [Stage::percent(50).bake("1h"), Stage::percent(100)]),
    )
    .await;
    agents_round(&app, 2).await;
    assert_eq!(app.detail(&id).await["phase"], "baking");
    assert_eq!(
        app.action(&id, "advance", "verified by hand")
            .await
            .status(),
        StatusCode::OK
    );
    wait_for("stage 2", DEADLINE, || async {
        (app.detail(&id).await["stage"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_freeze_holds_a_rollout_until_lifted() {
    let app = spawn_app().await;
    app.import(&fleet(4)).await;
    let id = app.rollout(&plan("frozen", [Stage::percent(100)])).await;
    let freeze = app.freeze("incident 7").await;
    assert_eq!(freeze.status(), StatusCode::OK);
    app.action(&id, "start", "go").await;
    agents_round(&app, 4).await;
    let detail = app.detail(&id).await;
    assert_eq!(detail["state"], "running");
    assert_eq!(detail["admitted"], 0, "a frozen rollout admits nobody");
    assert!(detail["held"]
        .as_str()
        .is_some_and(|h| h.contains("incident 7")));
    for i in 0..4 {
        assert_eq!(desired(&report(&app, &host(i), "1.0", "ok").await), "1.0");
    }

    let lift = app.unfreeze("resolved").await;
    assert_eq!(lift.status(), StatusCode::OK);
    assert_eq!(app.detail(&id).await["admitted"], 4);
    assert!(app.detail(&id).await.get("held").is_none());
}

#[tokio::test]
async fn a_silent_host_times_out_and_pauses_the_rollout() {
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let source = plan("silent", [Stage::percent(50), Stage::percent(100)]).host_timeout("1s");
    let id = start(&app, source).await;
    let paused = app.wait_for_state(&id, "paused").await;
    assert_eq!(paused["failed"], 1);
    assert!(paused["reason"]
        .as_str()
        .is_some_and(|r| r.contains("failed")));
}

/// An HTTP health endpoint: `/ok` answers 200, `/down` 503. (Prometheus
/// gates run against a real Prometheus: `prometheus.rs`.)
async fn health_endpoint() -> SocketAddr {
    let router = axum::Router::new()
        .route("/ok", axum::routing::get(|| async { "ok" }))
        .route(
            "/down",
            axum::routing::get(|| async { (AxumStatus::SERVICE_UNAVAILABLE, "down") }),
        );
    serve(router).await
}

#[tokio::test]
async fn a_passing_http_gate_records_its_evidence() {
    let monitoring = health_endpoint().await;
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let source = plan(
        "gated",
        [Stage::percent(50).bake("1h"), Stage::percent(100)],
    )
    .gate(Gate::http("slo", &format!("http://{monitoring}/ok")).interval("1s"));
    let id = start(&app, source).await;
    let slo = wait_for("the gate's first result", DEADLINE, || async {
        let detail = app.detail(&id).await;
        let gates = detail["gates"].as_array()?.clone();
        let slo = gates.into_iter().find(|g| g["name"] == "slo")?;
        (!slo["latest"].is_null()).then_some(slo)
    })
    .await;
    assert_eq!(slo["latest"]["outcome"], "pass");
    assert!(
        slo["latest"]["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("200")),
        "{slo}"
    );
    assert_eq!(app.detail(&id).await["state"], "running");
}

#[tokio::test]
async fn an_unreachable_http_gate_fails() {
    let monitoring = health_endpoint().await;
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let source = plan("down", [Stage::percent(50), Stage::percent(100)])
        .gate(Gate::http("slo", &format!("http://{monitoring}/down")).interval("1s"));
    let id = start(&app, source).await;
    let paused = app.wait_for_state(&id, "paused").await;
    let reason = paused["reason"].as_str().expect("reason");
    assert!(reason.contains("503"), "{reason}");
}
