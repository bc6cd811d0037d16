//! `POST /v1/agent/checkin`: the one call an agent makes; and
//! `POST /v1/agent/enroll`, its first call when it has an enrollment token.
//!
//! A check-in is answered from memory, and only once its writes, and every
//! write queued before them, are durable. An enrollment is one transaction
//! of the store (`Store::enroll`): the enrollment token's use is counted
//! there, so that no two replicas or requests take more than it has.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use sluice_api::admin::Role;
use sluice_api::agent::{CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse};
use sluice_api::error::ErrorBody;
use sluice_store::{Enrolled, Enrollment, NewEvent, StoreError, TokenRecord, TokenRole};

use crate::auth::{check_labels, hash_secret, new_secret, token_id, Caller};
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
        (status = 403, description = "the token may not check in as this host, or a label leaves the host's enrollment selector", body = ErrorBody),
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
    if let (Role::Agent, Some(selector)) = (caller.role(), &caller.token().selector) {
        check_labels(selector, &request.labels, "the host's enrollment")?;
    }
    let next = state.next_checkin_s();
    let (response, pending) =
        state.change(|world, now, writes| world.checkin(&request, now, next, writes));
    pending.durable().await?;
    state.metrics().checkin(started.elapsed());
    tracing::debug!(host = %request.host, components = request.components.len(), "check-in");
    Ok(axum::Json(response))
}

/// Enrolls a host with an enrollment token: if the token has not expired,
/// has a use left and the host's labels match its selector, and no token
/// is bound to the host yet, creates the host's own token — bound to the
/// host and to the enrollment's selector — and answers it, once. The
/// agent keeps it (`token_file`) and checks in with it from then on.
#[utoipa::path(
    post,
    path = "/v1/agent/enroll",
    tag = "agent",
    request_body = EnrollRequest,
    responses(
        (status = 201, description = "enrolled: the host's token, shown once (durable)", body = EnrollResponse),
        (status = 400, description = "malformed or invalid request", body = ErrorBody),
        (status = 401, description = "missing, unknown, revoked, expired or used-up token", body = ErrorBody),
        (status = 403, description = "not an enrollment token, a label outside its selector, or the host is already enrolled (sluice hosts reenroll)", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 503, description = "the store cannot take writes", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn enroll(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<EnrollRequest>,
) -> Result<(StatusCode, axum::Json<EnrollResponse>), ApiError> {
    let token = caller.token();
    if token.role != Role::Enroll {
        return Err(ApiError::Forbidden(format!(
            "enrolling needs an enrollment token (sluice token create --role enroll); the token given has the {} role",
            token.role.as_str()
        )));
    }
    sluice_api::agent::validate_labels(&request.labels)
        .map_err(|invalid| ApiError::bad_field(invalid.field, invalid.message))?;
    let Some(selector) = &token.selector else {
        return Err(ApiError::Internal(
            "this enrollment token has no selector".to_owned(),
        ));
    };
    check_labels(selector, &request.labels, "the enrollment token's")?;
    let host = request.host.to_string();
    // A host the inventory places outside the selector is not the
    // enrollment token's to enroll, whatever labels it claims now.
    // (Read as durable: the answer reveals what memory holds.)
    let outside = state
        .reveal(|world| world.known_labels_outside(&host, selector))
        .await?;
    if let Some((key, value, _)) = outside {
        let label = match value {
            Some(value) => format!("label {key}={value}"),
            None => format!("no label {key}"),
        };
        return Err(ApiError::Forbidden(format!(
            "host {host} is in the inventory with {label}, outside the enrollment token's selector {selector}; an admin may import it with its labels (sluice hosts import) or give it a token (sluice token create --role agent --host {host})"
        )));
    }
    let secret = new_secret().map_err(|error| ApiError::Internal(error.to_string()))?;
    let now = state.now();
    let record = TokenRecord {
        host: Some(host.clone()),
        selector: Some(selector.to_string()),
        ..TokenRecord::new(hash_secret(&secret), TokenRole::Agent, now)
    };
    let id = token_id(&record.hash);
    let enrollment = Enrollment {
        enroll_token: token.hash.clone(),
        token: record.clone(),
        event: NewEvent {
            rollout: None,
            at: now,
            actor: Some(token.actor.clone()),
            kind: "host_enrolled".to_owned(),
            data: serde_json::json!({
                "host": host,
                "labels": request.labels,
                "token": id,
                "enrollment": token.id(),
            }),
        },
        now,
    };
    let revocations = state.tokens().revocations();
    let outcome = state.store().enroll(&enrollment).await.map_err(|error| {
        // Fenced: this replica no longer leads; another one will answer.
        if error.is_transient() || matches!(error, StoreError::Fenced(_)) {
            ApiError::Unavailable(format!("enrolling: {error}"))
        } else {
            ApiError::Internal(format!("enrolling: {error}"))
        }
    })?;
    match outcome {
        Enrolled::Done { uses_left } => {
            state.tokens().insert_unless_revoked(&record, revocations);
            tracing::info!(%host, token = %id, enrollment = %token.id(), uses_left, "host enrolled");
            Ok((
                StatusCode::CREATED,
                axum::Json(EnrollResponse {
                    token: secret,
                    id,
                    host,
                    selector: selector.to_string(),
                }),
            ))
        }
        Enrolled::UnknownToken => Err(ApiError::Unauthorized(
            "this enrollment token was revoked; ask an admin for a new one".to_owned(),
        )),
        Enrolled::Expired(at) => Err(ApiError::Unauthorized(format!(
            "this enrollment token expired at {}; ask an admin for a new one (sluice token create --role enroll)",
            crate::clock::rfc3339(at)
        ))),
        Enrolled::UsedUp => Err(ApiError::Unauthorized(
            "this enrollment token is used up: it enrolled as many hosts as its uses allowed; ask an admin for a new one (sluice token create --role enroll --uses N)".to_owned(),
        )),
        Enrolled::AlreadyEnrolled => Err(ApiError::Forbidden(format!(
            "host {host} is already enrolled (a token is bound to it); an admin may let it enroll again with sluice hosts reenroll {host}"
        ))),
    }
}
