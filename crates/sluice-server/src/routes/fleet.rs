//! Fleet operations: the fleet-wide change budget (`GET|PUT /v1/budget`)
//! and pins (`PUT|DELETE /v1/hosts/{id}/pins/{component}`). Both are
//! audited, in the batch of the change itself.

use axum::extract::State;
use sluice_api::error::ErrorBody;
use sluice_api::fleet::{BudgetRequest, BudgetView, PinRequest, PinView};
use sluice_api::rollout::Reason;
use sluice_api::vocabulary::AuditKind;
use sluice_api::HostId;

use crate::auth::{Caller, Need};
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::required_reason;
use crate::state::AppState;

/// The fleet-wide change budget, the hosts in flight against it (in all,
/// per component and, with a per-stratum budget, per stratum) and the
/// rollouts waiting for room, longest waiting first.
#[utoipa::path(
    get,
    path = "/v1/budget",
    tag = "admin",
    responses((status = 200, body = BudgetView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn budget(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<BudgetView>, ApiError> {
    caller.require(Need::View)?;
    Ok(axum::Json(state.reveal(|world| world.budget_view()).await?))
}

/// Sets the fleet-wide change budget: across all rollouts at most
/// `max_in_flight` of the fleet (and `per_stratum` of any stratum) in
/// flight at once; rollouts wait for room, the longest waiting first.
/// Without `max_in_flight`, lifts it.
#[utoipa::path(
    put,
    path = "/v1/budget",
    tag = "admin",
    request_body = BudgetRequest,
    responses((status = 200, description = "set (or lifted) and durable", body = BudgetView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn set_budget(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<BudgetRequest>,
) -> Result<axum::Json<BudgetView>, ApiError> {
    caller.require(Need::Admin)?;
    let actor = caller.actor().to_owned();
    let (view, pending) = state.change(|world, now, writes| {
        let view = world.set_budget(&request, &actor, now, writes)?;
        let data = serde_json::json!({
            "max_in_flight": request.max_in_flight,
            "per_stratum": request.per_stratum,
            "spread": view.budget.as_ref().map(|budget| &budget.spread),
        });
        let reason = Some(request.reason.as_str());
        writes.push(caller.audit(now, AuditKind::BudgetSet, None, reason, data));
        Ok::<_, crate::world::WorldError>(view)
    });
    pending.durable().await?;
    state.wake_controller();
    Ok(axum::Json(view?))
}

fn host_id(id: &str) -> Result<HostId, ApiError> {
    HostId::parse(id).map_err(|error| ApiError::bad_field("id", error.to_string()))
}

/// Pins a host's component to a version for a while: the host is told
/// that version at its next check-in, whatever its rollouts or the stable
/// version say, and no rollout of the component admits it until the pin
/// expires (by itself) or is lifted. Refused (409) while a rollout of the
/// component has the host admitted.
#[utoipa::path(
    put,
    path = "/v1/hosts/{id}/pins/{component}",
    tag = "hosts",
    params(
        ("id" = String, Path, description = "the host's id (FQDN)", pattern = "^[A-Za-z0-9._:-]{1,253}$", min_length = 1, max_length = 253),
        ("component" = String, Path, description = "the component"),
    ),
    request_body = PinRequest,
    responses((status = 200, description = "pinned and durable", body = PinView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn pin(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, component)): Path<(String, String)>,
    Json(request): Json<PinRequest>,
) -> Result<axum::Json<PinView>, ApiError> {
    caller.require(Need::Operate)?;
    let host = host_id(&id)?;
    let actor = caller.actor().to_owned();
    let (pin, pending) = state.change(|world, now, writes| {
        let pin = world.pin(host.as_str(), &component, &request, &actor, now, writes)?;
        let data = serde_json::json!({
            "component": pin.component,
            "version": pin.version,
            "expires_at": pin.expires_at,
        });
        let reason = Some(request.reason.as_str());
        writes.push(caller.audit(
            now,
            AuditKind::HostPinned,
            Some(host.as_str()),
            reason,
            data,
        ));
        Ok::<_, crate::world::WorldError>(pin)
    });
    pending.durable().await?;
    Ok(axum::Json(pin?))
}

/// Lifts a host's pin: the host returns to its desired version at its next
/// check-in, and the component's rollouts may admit it again.
#[utoipa::path(
    delete,
    path = "/v1/hosts/{id}/pins/{component}",
    tag = "hosts",
    params(
        ("id" = String, Path, description = "the host's id (FQDN)", pattern = "^[A-Za-z0-9._:-]{1,253}$", min_length = 1, max_length = 253),
        ("component" = String, Path, description = "the component"),
    ),
    request_body = Reason,
    responses((status = 200, description = "the pin lifted, durable", body = PinView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn unpin(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, component)): Path<(String, String)>,
    Json(reason): Json<Reason>,
) -> Result<axum::Json<PinView>, ApiError> {
    caller.require(Need::Operate)?;
    let host = host_id(&id)?;
    let reason = required_reason(reason, "unpin a host")?;
    let actor = caller.actor().to_owned();
    let (pin, pending) = state.change(|world, now, writes| {
        let pin = world.unpin(host.as_str(), &component, &actor, &reason, now, writes)?;
        let data = serde_json::json!({ "component": pin.component, "version": pin.version });
        writes.push(caller.audit(
            now,
            AuditKind::HostUnpinned,
            Some(host.as_str()),
            Some(&reason),
            data,
        ));
        Ok::<_, crate::world::WorldError>(pin)
    });
    pending.durable().await?;
    Ok(axum::Json(pin?))
}
