//! `GET /v1/metrics/cohorts`: the cohorts of comparison gates for
//! Prometheus to scrape ([`crate::cohorts`]). It names hosts, so it takes a
//! token like the other reads (Prometheus's `authorization` with a viewer
//! token), and it is answered by the leader like the rest of the API, so
//! scraping any replica (or the load balancer) gives the same series.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use sluice_api::error::ErrorBody;

use crate::auth::{Caller, Need};
use crate::error::ApiError;
use crate::state::AppState;

/// The canary and baseline cohorts of every rollout with a comparison gate
/// (running or paused), as `sluice_cohort{rollout, cohort, host, instance}
/// 1` in the Prometheus text format. Scrape it with `honor_labels: true`,
/// so that `instance` stays the host's exporter (the template of `sluice
/// server --cohort-instance`).
#[utoipa::path(
    get,
    path = "/v1/metrics/cohorts",
    tag = "ops",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "agent and enrollment tokens may not read it", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cohorts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Need::View)?;
    let settings = state.cohorts().clone();
    let text = state
        .reveal(|world| crate::cohorts::exposition(world, &settings))
        .await?;
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    ))
}
