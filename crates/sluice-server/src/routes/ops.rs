//! Health, metrics and the OpenAPI document; no token needed.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use crate::state::AppState;

/// Liveness: answers while the server serves.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses((status = 200, description = "serving", body = Object))
)]
pub async fn healthz(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    let hosts = state.peek(|world| world.host_count());
    axum::Json(serde_json::json!({ "status": "ok", "hosts": hosts }))
}

/// Prometheus metrics (OpenMetrics text): check-ins, latencies, group
/// commits, rollouts and hosts by state.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let gauges = state.peek(|world| world.gauges());
    let text = state.metrics().render(&gauges);
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "ops",
    responses((status = 200, description = "the OpenAPI document", body = Object))
)]
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        state.openapi().to_owned(),
    )
}
