//! `GET /v1/rollouts/{id}/report`: each format with its content type, the
//! chart, a viewer may read it, and the errors name what is valid.

use reqwest::StatusCode;
use serde_json::Value;
use sluice_testkit::Stage;

use crate::helpers::{assert_error, fleet, plan, spawn_app};

#[tokio::test]
async fn every_format_of_a_report_with_its_content_type() {
    let app = spawn_app().await;
    assert_eq!(app.import(&fleet(10)).await.status(), StatusCode::OK);
    let id = app
        .rollout(plan("reported", [Stage::percent(10), Stage::percent(100)]))
        .await;
    app.action(&id, "start", "a reason").await;
    let viewer = app.token("viewer", None).await;
    for (format, kind, start) in [
        ("md", "text/markdown", "# Rollout r-1 — retrospective"),
        ("html", "text/html", "<!doctype html>"),
        ("json", "application/json", "{"),
        ("svg", "image/svg+xml", "<svg"),
    ] {
        let response = app
            .get(
                &format!("/v1/rollouts/{id}/report?format={format}"),
                &viewer,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{format}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("a content type")
            .to_owned();
        assert!(content_type.starts_with(kind), "{format}: {content_type}");
        let body = response.text().await.expect("a body");
        assert!(body.starts_with(start), "{format}: {body}");
    }
    let report: Value = app
        .get(&format!("/v1/rollouts/{id}/report?format=json"), &viewer)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(report["summary"]["outcome"], "running");
    assert_eq!(report["summary"]["started_by"], "admin");
    assert_eq!(report["summary"]["hosts_selected"], 10);
    assert_eq!(report["stages"][0]["quota"], 1);
    assert!(
        !report["chart"].as_array().expect("the chart").is_empty(),
        "the start's admissions are sampled"
    );
    let markdown = app
        .get(&format!("/v1/rollouts/{id}/report"), &viewer)
        .await
        .text()
        .await
        .expect("a body");
    assert!(markdown.contains("](r-1-chart.svg)"), "md is the default");

    let body = assert_error(
        app.get(&format!("/v1/rollouts/{id}/report?format=pdf"), &viewer)
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert_eq!(body["error"]["field"], "format");
    assert_error(
        app.get("/v1/rollouts/r-404/report", &viewer).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}
