//! Prometheus gates against a real Prometheus (Debian's `prometheus`, which
//! `scripts/test` installs): it scrapes a metric the test sets, and the
//! controller queries it like any production Prometheus.

use serde_json::Value;
use sluice_testkit::prometheus::{Job, Prometheus};
use sluice_testkit::{Gate, OnFailure, Stage};

use crate::helpers::{fleet, plan, serve, spawn_app, start, wait_for, TestApp, DEADLINE};

/// A server with two hosts, and a Prometheus scraping an exporter whose
/// `container_restarts_rate` is `rate`.
async fn watched(rate: f64) -> (TestApp, Prometheus) {
    // The server first: it sets up TLS for every HTTP client of the process.
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let text = format!("container_restarts_rate{{host=\"a\"}} {rate}\n");
    let exporter = serve(axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { text.clone() }),
    ))
    .await;
    let prometheus = Prometheus::start(&[Job::new("docker", [exporter.to_string()])]).await;
    prometheus
        .wait_for_series("container_restarts_rate", 1)
        .await;
    (app, prometheus)
}

fn gate<'a>(detail: &'a Value, name: &str) -> &'a Value {
    detail["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("gate {name} in {detail}"))
}

#[tokio::test]
async fn a_failing_prometheus_gate_rolls_back_with_its_evidence() {
    let (app, prometheus) = watched(0.9).await;
    let source = plan(
        "gated",
        [Stage::percent(50).bake("1h"), Stage::percent(100)],
    )
    .gate(
        Gate::prometheus(
            "restarts",
            &prometheus.url,
            "max(container_restarts_rate)",
            "> 0.5",
        )
        .failing_for(2)
        .interval("1s"),
    )
    .on_failure(OnFailure::Rollback);
    let id = start(&app, source).await;
    let rolled_back = app.wait_for_state(&id, "rolled_back").await;
    assert_eq!(gate(&rolled_back, "restarts")["latest"]["outcome"], "fail");

    let events = app.events(&id).await;
    let failed = events
        .iter()
        .find(|e| e["kind"] == "gate_failed")
        .expect("a gate_failed event");
    assert_eq!(failed["data"]["gate"], "restarts");
    let evidence = failed["data"]["evidence"].as_str().expect("evidence");
    assert!(
        evidence.contains("max(container_restarts_rate)")
            && evidence.contains("0.9")
            && evidence.contains("> 0.5"),
        "{evidence}"
    );
}

/// Starts a rollout watched by one Prometheus gate named `name` on `query`.
async fn gated_rollout(app: &TestApp, prometheus: &Prometheus, name: &str, query: &str) -> String {
    let source = plan(name, [Stage::percent(50).bake("1h"), Stage::percent(100)])
        .gate(Gate::prometheus(name, &prometheus.url, query, "> 0.5").interval("1s"));
    let id = start(app, source).await;
    id
}

#[tokio::test]
async fn a_healthy_metric_passes_with_its_value_as_evidence() {
    let (app, prometheus) = watched(0.1).await;
    let id = gated_rollout(
        &app,
        &prometheus,
        "restarts",
        "max(container_restarts_rate)",
    )
    .await;
    let detail = wait_for("the gate's first result", DEADLINE, || async {
        let detail = app.detail(&id).await;
        (!gate(&detail, "restarts")["latest"].is_null()).then_some(detail)
    })
    .await;
    let restarts = gate(&detail, "restarts");
    assert_eq!(restarts["latest"]["outcome"], "pass", "{detail}");
    let evidence = restarts["latest"]["evidence"].as_str().expect("evidence");
    assert!(evidence.contains("0.1"), "{evidence}");
    assert_eq!(app.detail(&id).await["state"], "running");
}

#[tokio::test]
async fn a_missing_metric_is_a_failure() {
    let (app, prometheus) = watched(0.1).await;
    let id = gated_rollout(&app, &prometheus, "latency", "max(request_latency_seconds)").await;
    let paused = app.wait_for_state(&id, "paused").await;
    let latency = gate(&paused, "latency");
    assert_eq!(latency["latest"]["outcome"], "no_data", "{paused}");
    assert!(
        paused["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("latency")),
        "{paused}"
    );
}
