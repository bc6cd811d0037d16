//! `POST /v1/agent/checkin`: the one call an agent makes.
//!
//! Answered from memory, and only once the check-in's writes, and every
//! write queued before them, are durable.

use std::time::Instant;

use axum::extract::State;
use sluice_api::agent::{CheckinRequest, CheckinResponse};
use sluice_api::error::ErrorBody;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Json;
use crate::state::AppState;

/// Reports what the host runs and gets the desired version of every
/// component sluice manages for it.
#[utoipa::path(
    post,
    path = "/v1/agent/checkin",
    tag = "agent",
    request_body = CheckinRequest,
    responses(
        (status = 200, description = "the desired versions, once the report is durable", body = CheckinResponse),
        (status = 400, description = "malformed or invalid check-in", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 403, description = "the token may not check in as this host", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 503, description = "the store cannot take writes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn checkin(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CheckinRequest>,
) -> Result<axum::Json<CheckinResponse>, ApiError> {
    let started = Instant::now();
    caller.require_host(&request.host)?;
    request
        .validate()
        .map_err(|invalid| ApiError::bad_field(invalid.field, invalid.message))?;
    let next = state.next_checkin_s();
    let (response, pending) =
        state.change(|world, now, writes| world.checkin(&request, now, next, writes));
    pending.durable().await?;
    state.metrics().checkin(started.elapsed());
    tracing::debug!(host = %request.host, components = request.components.len(), "check-in");
    Ok(axum::Json(response))
}
