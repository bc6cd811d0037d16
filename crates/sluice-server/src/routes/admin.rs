//! Components, the fleet-wide freeze, and tokens.

use axum::extract::State;
use axum::http::StatusCode;
use sluice_api::admin::{
    ComponentList, FreezeView, StableChange, StableRequest, TokenCreated, TokenRequest,
};
use sluice_api::error::ErrorBody;
use sluice_api::rollout::Reason;

use crate::auth::{check_request, new_secret, token_writes, Caller, Need};
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::required_reason;
use crate::state::AppState;

/// Each component's stable version, the versions hosts report, and its
/// active rollouts.
#[utoipa::path(
    get,
    path = "/v1/components",
    tag = "admin",
    responses((status = 200, body = ComponentList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn components(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<ComponentList>, ApiError> {
    caller.require(Need::View)?;
    Ok(axum::Json(
        state.reveal(|world| world.component_list()).await?,
    ))
}

/// Moves a component's stable version: every host no rollout decides for
/// is told it at its next check-in, all at once, without stages or gates.
/// With `dry_run`, only says how many hosts that would change. Refused
/// (409) while a rollout of the component is active.
#[utoipa::path(
    put,
    path = "/v1/components/{name}/stable",
    tag = "admin",
    params(("name" = String, Path, description = "the component")),
    request_body = StableRequest,
    responses((status = 200, description = "moved and durable, or what a dry run would change", body = StableChange), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn set_stable(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(request): Json<StableRequest>,
) -> Result<axum::Json<StableChange>, ApiError> {
    caller.require(Need::Admin)?;
    let actor = caller.actor().to_owned();
    let (change, pending) = state.change(|world, now, writes| {
        world.set_stable(
            &name,
            &request.version,
            &actor,
            &request.reason,
            request.dry_run,
            now,
            writes,
        )
    });
    pending.durable().await?;
    Ok(axum::Json(change?))
}

/// Whether the fleet-wide freeze is on, who turned it on and why.
#[utoipa::path(
    get,
    path = "/v1/freeze",
    tag = "admin",
    responses((status = 200, body = FreezeView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn freeze(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<FreezeView>, ApiError> {
    caller.require(Need::View)?;
    Ok(axum::Json(state.reveal(|world| world.freeze_view()).await?))
}

/// Turns the freeze on: every rollout holds at once (no admission, no next
/// stage) until it is turned off. Already on: changes nothing.
#[utoipa::path(
    put,
    path = "/v1/freeze",
    tag = "admin",
    request_body = Reason,
    responses((status = 200, description = "frozen, durable", body = FreezeView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn freeze_on(
    State(state): State<AppState>,
    caller: Caller,
    Json(reason): Json<Reason>,
) -> Result<axum::Json<FreezeView>, ApiError> {
    set_freeze(state, caller, true, reason).await
}

/// Turns the freeze off: rollouts carry on. Already off: changes nothing.
#[utoipa::path(
    delete,
    path = "/v1/freeze",
    tag = "admin",
    request_body = Reason,
    responses((status = 200, description = "released, durable", body = FreezeView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn freeze_off(
    State(state): State<AppState>,
    caller: Caller,
    Json(reason): Json<Reason>,
) -> Result<axum::Json<FreezeView>, ApiError> {
    set_freeze(state, caller, false, reason).await
}

pub(crate) async fn set_freeze(
    state: AppState,
    caller: Caller,
    on: bool,
    reason: Reason,
) -> Result<axum::Json<FreezeView>, ApiError> {
    caller.require(Need::Admin)?;
    let to = if on {
        "turn the freeze on"
    } else {
        "turn the freeze off"
    };
    let reason = required_reason(reason, to)?;
    let actor = caller.actor().to_owned();
    let (view, pending) = state.change(|world, now, writes| {
        world.set_freeze(on, &actor, &reason, now, writes);
        world.freeze_view()
    });
    pending.durable().await?;
    state.wake_controller();
    Ok(axum::Json(view))
}

/// Creates a token; the secret is in the answer and nowhere else.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "admin",
    request_body = TokenRequest,
    responses((status = 201, description = "created; the secret is shown once", body = TokenCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<TokenRequest>,
) -> Result<(StatusCode, axum::Json<TokenCreated>), ApiError> {
    caller.require(Need::Admin)?;
    check_request(&request)?;
    let secret = new_secret().map_err(|error| ApiError::Internal(error.to_string()))?;
    let role = request.role.as_str();
    let actor = caller.actor().to_owned();
    let (record, pending) =
        state.change(|_, now, writes| token_writes(&secret, &request, &actor, now, writes));
    pending.durable().await?;
    state.tokens().insert(&record);
    tracing::info!(role, host = ?request.host, %actor, "token created");
    Ok((
        StatusCode::CREATED,
        axum::Json(TokenCreated {
            token: secret,
            role: request.role,
            host: request.host.map(String::from),
        }),
    ))
}
