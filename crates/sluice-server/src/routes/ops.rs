//! What every replica answers itself, leader or not: liveness, readiness,
//! metrics, the cluster, the OpenAPI document. Only `GET /v1/cluster` needs
//! a token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use sluice_api::cluster::ClusterView;
use sluice_api::error::ErrorBody;

use crate::auth::Need;
use crate::error::ApiError;
use crate::replica::Replica;

/// Liveness: answers while the process serves, whatever its role.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses((status = 200, description = "serving", body = Object))
)]
pub async fn healthz(State(replica): State<Arc<Replica>>) -> Json<serde_json::Value> {
    let term = replica.term();
    let role = if term.is_some() { "leader" } else { "standby" };
    let hosts = term.map_or(0, |term| term.state.peek(|world| world.host_count()));
    Json(serde_json::json!({ "status": "ok", "role": role, "hosts": hosts }))
}

/// Readiness, for a load balancer: 200 when this replica can serve — it
/// leads with a fresh lease and its state loaded, or it follows a leader
/// and hears from the database — else 503 saying why.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "ready to serve", body = Object),
        (status = 503, description = "not ready: no leader, or the database cannot be reached", body = ErrorBody),
    )
)]
pub async fn readyz(State(replica): State<Arc<Replica>>) -> axum::response::Response {
    match replica.ready() {
        Ok(role) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready", "role": role })),
        )
            .into_response(),
        Err(why) => ApiError::Unavailable(format!("not ready: {why}")).into_response(),
    }
}

/// Prometheus metrics (OpenMetrics text): check-ins, latencies, group
/// commits, rollouts and hosts by state, and whether this replica leads.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"))
)]
pub async fn metrics(State(replica): State<Arc<Replica>>) -> impl IntoResponse {
    let text = replica.metrics().render(&replica.gauges());
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
pub async fn openapi(State(replica): State<Arc<Replica>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        replica.openapi().to_owned(),
    )
}

/// The replicas sharing the database: each with its address, role and last
/// heartbeat, and the lease's epoch. Any replica answers, also while none
/// leads.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the cluster", body = ClusterView),
        (status = 401, description = "no token or an unknown one", body = ErrorBody),
        (status = 403, description = "an agent or enroll token", body = ErrorBody),
        (status = 503, description = "the database cannot be reached", body = ErrorBody),
    )
)]
pub async fn cluster(
    State(replica): State<Arc<Replica>>,
    headers: HeaderMap,
) -> Result<Json<ClusterView>, ApiError> {
    replica.admit(&headers, Need::View).await?;
    Ok(Json(replica.cluster_view().await?))
}
