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

/// Most labels and components one check-in may carry.
const MAX_LABELS: usize = 64;
const MAX_COMPONENTS: usize = 256;

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
    validate(&request)?;
    let next = state.next_checkin_s();
    let (response, pending) =
        state.change(|world, now, writes| world.checkin(&request, now, next, writes));
    pending.durable().await?;
    state.metrics().checkin(started.elapsed());
    tracing::debug!(host = %request.host, components = request.components.len(), "check-in");
    Ok(axum::Json(response))
}

fn validate(request: &CheckinRequest) -> Result<(), ApiError> {
    if request.labels.len() > MAX_LABELS {
        return Err(ApiError::bad_field(
            "labels",
            format!(
                "{} labels given; a host may have at most {MAX_LABELS}",
                request.labels.len()
            ),
        ));
    }
    for (key, value) in &request.labels {
        validate_name(key, || format!("labels.{key}"), "a label name", 253)?;
        if value.chars().count() > 253 || value.chars().any(char::is_control) {
            return Err(ApiError::bad_field(
                format!("labels.{key}"),
                "a label value must be at most 253 characters without control characters",
            ));
        }
    }
    if request.components.len() > MAX_COMPONENTS {
        return Err(ApiError::bad_field(
            "components",
            format!(
                "{} components given; a check-in may report at most {MAX_COMPONENTS}",
                request.components.len()
            ),
        ));
    }
    for (name, report) in &request.components {
        let field = || format!("components.{name}");
        validate_name(name, field, "a component name", 128)?;
        validate_name(
            &report.version,
            || format!("{}.version", field()),
            "a version",
            256,
        )?;
    }
    Ok(())
}

/// `field` names the field in an error; it is built only then (a check-in
/// is answered tens of thousands of times a second).
fn validate_name(
    text: &str,
    field: impl FnOnce() -> String,
    what: &str,
    max: usize,
) -> Result<(), ApiError> {
    let valid = !text.is_empty()
        && text.chars().count() <= max
        && !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            field(),
            format!("{text:?} is not {what}; write 1 to {max} characters without spaces"),
        ))
    }
}
