//! Body limits per route: a plan or an import may be larger than a reason.

use reqwest::StatusCode;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn bodies_over_the_route_limit_are_413() {
    let app = spawn_app().await;
    let reason = format!("{{\"reason\": \"{}\"}}", "x".repeat(100 * 1024));
    let response = app
        .client
        .post(app.url("/v1/rollouts/r-1/pause"))
        .bearer_auth(&app.admin)
        .body(reason)
        .send()
        .await
        .expect("sent");
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let plan = format!("# {}\nname: x\n", "x".repeat(2 * 1024 * 1024));
    let response = app.create_rollout(&plan).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}
