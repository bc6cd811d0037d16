//! Components, the fleet-wide freeze, and tokens.

use axum::extract::State;
use axum::http::StatusCode;
use sluice_api::admin::{
    ComponentList, FreezeView, Role, StableChange, StableRequest, TokenCreated, TokenList,
    TokenRequest, TokenRevoked, TokenView,
};
use sluice_api::error::ErrorBody;
use sluice_api::rollout::Reason;
use sluice_api::vocabulary::AuditKind;

use sluice_store::{NewEvent, TokenPage, TokenRecord, TokenRole, Write};

use crate::auth::{
    check_request, created, looks_like_id, new_secret, token_id, token_writes, Caller, Need,
};
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};
use crate::routes::required_reason;
use crate::state::AppState;
use crate::vocabulary;

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
        let change = world.set_stable(
            &name,
            &request.version,
            &actor,
            &request.reason,
            request.dry_run,
            now,
            writes,
        );
        if let Some(change) = change.as_ref().ok().filter(|change| change.applied) {
            let data = serde_json::json!({
                "from": change.from,
                "to": change.to,
                "hosts_changed": change.hosts_changed,
            });
            let reason = Some(request.reason.as_str());
            writes.push(caller.audit(now, AuditKind::StableSet, Some(&name), reason, data));
        }
        change
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
    let kind = if on {
        AuditKind::FreezeOn
    } else {
        AuditKind::FreezeOff
    };
    let (view, pending) = state.change(|world, now, writes| {
        let was = world.freeze_view().frozen;
        world.set_freeze(on, &actor, &reason, now, writes);
        let data = serde_json::json!({ "changed": was != on });
        writes.push(caller.audit(now, kind, None, Some(&reason), data));
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
    let token = check_request(&request, state.now())?;
    let secret = new_secret().map_err(|error| ApiError::Internal(error.to_string()))?;
    let actor = caller.actor().to_owned();
    let revocations = state.tokens().revocations();
    let (record, pending) = state.change(|_, now, writes| {
        let record = token_writes(&secret, &token, &actor, now, writes);
        let data = serde_json::json!({
            "role": token.role,
            "name": token.name,
            "host": token.host,
            "selector": token.selector,
            "uses": token.uses,
            "expires_at": token.expires_at.map(rfc3339),
        });
        let id = token_id(&record.hash);
        let reason = Some(token.reason.as_str());
        writes.push(caller.audit(now, AuditKind::TokenCreated, Some(&id), reason, data));
        record
    });
    pending.durable().await?;
    // A host's reenrollment committed meanwhile may have deleted it.
    state.tokens().insert_unless_revoked(&record, revocations);
    tracing::info!(id = %token_id(&record.hash), role = %token.role, host = ?token.host, %actor, "token created");
    Ok((StatusCode::CREATED, axum::Json(created(secret, &record))))
}

/// Tokens per answer unless `limit` says otherwise, and at most.
pub const TOKENS_PER_PAGE: u32 = 1000;

/// `GET /v1/tokens` query.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// Only tokens of this role.
    pub role: Option<Role>,
    /// Only tokens whose id sorts after this one: the `next` of the page
    /// before (the last id read).
    #[param(pattern = "^[0-9a-f]{16}$", min_length = 16, max_length = 16)]
    pub after: Option<String>,
    /// At most this many tokens (default and most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl TokenQuery {
    /// The store's page — `limit` and one more, to tell whether another
    /// page follows — and `limit`; `None` after the last id there can be.
    fn page(&self) -> Result<Option<(TokenPage, usize)>, ApiError> {
        let limit = self.limit.unwrap_or(TOKENS_PER_PAGE);
        if limit == 0 || limit > TOKENS_PER_PAGE {
            return Err(ApiError::bad_field(
                "limit",
                format!("limit {limit} is out of range; ask for 1 to {TOKENS_PER_PAGE} tokens"),
            ));
        }
        let from = match self.after.as_deref() {
            None => None,
            Some(after) if looks_like_id(after) => match successor(after) {
                Some(from) => Some(from),
                None => return Ok(None),
            },
            Some(after) => {
                return Err(ApiError::bad_field(
                    "after",
                    format!("after {after:?} is not a token id (16 lowercase hex digits); give the next of the page before"),
                ))
            }
        };
        let page = TokenPage {
            role: self.role.map(vocabulary::stored_role),
            from,
            limit: limit + 1,
        };
        Ok(Some((page, limit as usize)))
    }
}

/// The id right after `id` (16 hex digits), as hex of the same length:
/// every hash that sorts at or after it has an id above `id`. `None` past
/// the last id.
fn successor(id: &str) -> Option<String> {
    let value = u64::from_str_radix(id, 16).ok()?.checked_add(1)?;
    Some(format!("{value:016x}"))
}

/// The tokens, a page at a time in the order of their ids: id, name, role,
/// binding, times, uses left — never the secret, which is not stored.
/// Follow `next` (as `after`) until it is absent for them all.
#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "admin",
    params(TokenQuery),
    responses((status = 200, body = TokenList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<TokenQuery>,
) -> Result<axum::Json<TokenList>, ApiError> {
    caller.require(Need::Admin)?;
    let Some((page, limit)) = query.page()? else {
        return Ok(axum::Json(TokenList {
            tokens: Vec::new(),
            next: None,
        }));
    };
    let now = state.now();
    let mut records = state
        .store()
        .tokens_page(&page)
        .await
        .map_err(|error| ApiError::Unavailable(format!("reading the tokens: {error}")))?;
    let more = records.len() > limit;
    records.truncate(limit);
    let next = records
        .last()
        .filter(|_| more)
        .map(|record| token_id(&record.hash));
    let tokens = records
        .into_iter()
        .map(|record| {
            // Memory knows the last use to the second; the store within minutes.
            let used = state
                .tokens()
                .by_hash(&record.hash)
                .and_then(|t| t.last_used());
            TokenView {
                id: token_id(&record.hash),
                name: record.name,
                role: vocabulary::wire_role(record.role),
                host: record.host,
                selector: record.selector,
                created_at: rfc3339(record.created_at),
                expires_at: record.expires_at.map(rfc3339),
                expired: record.expires_at.is_some_and(|at| at <= now),
                last_used_at: record.last_used_at.max(used).map(rfc3339),
                uses_left: record.uses_left.and_then(|uses| u64::try_from(uses).ok()),
            }
        })
        .collect();
    Ok(axum::Json(TokenList { tokens, next }))
}

async fn stored_tokens(state: &AppState) -> Result<Vec<TokenRecord>, ApiError> {
    state
        .store()
        .tokens()
        .await
        .map_err(|error| ApiError::Unavailable(format!("reading the tokens: {error}")))
}

/// Revokes a token, by id or else by name, for the reason in the body:
/// from the answer on, it is refused on every replica, and the dashboard
/// sessions signed in with it are over. The tokens an enrollment token
/// made stay (revoke them, or `POST /v1/hosts/{id}/reenroll`). The last
/// admin token that has not expired cannot be revoked.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "the token's id (sluice token list) or its name", min_length = 1, max_length = 128)),
    request_body = Reason,
    responses((status = 200, description = "revoked, durable", body = TokenRevoked), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "several tokens have that name, or it is the last admin token", body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(reason): Json<Reason>,
) -> Result<axum::Json<TokenRevoked>, ApiError> {
    caller.require(Need::Admin)?;
    let reason = required_reason(reason, "revoke a token")?;
    let records = stored_tokens(&state).await?;
    let by_id: Vec<&TokenRecord> = records
        .iter()
        .filter(|record| looks_like_id(&id) && token_id(&record.hash) == id)
        .collect();
    let found = if by_id.is_empty() {
        records
            .iter()
            .filter(|record| record.name.as_deref() == Some(id.as_str()))
            .collect()
    } else {
        by_id
    };
    let record = match found.as_slice() {
        [] => {
            return Err(ApiError::NotFound(format!(
                "no token has the id or name {id:?}; sluice token list shows them"
            )))
        }
        [one] => (*one).clone(),
        several => {
            let ids: Vec<String> = several.iter().map(|r| token_id(&r.hash)).collect();
            return Err(ApiError::Conflict(format!(
                "{} tokens are named {id:?}; revoke one by its id: {}",
                several.len(),
                ids.join(", ")
            )));
        }
    };
    let now = state.now();
    let lasting_admin =
        |r: &&TokenRecord| r.role == TokenRole::Admin && r.expires_at.is_none_or(|at| at > now);
    if lasting_admin(&&record) && records.iter().filter(lasting_admin).count() == 1 {
        return Err(ApiError::Conflict(
            "this is the last admin token that has not expired; create another first (sluice token create --role admin)".to_owned(),
        ));
    }
    let sessions = state.sessions().of_token(&record.hash);
    let actor = caller.actor().to_owned();
    let id = token_id(&record.hash);
    let role = vocabulary::wire_role(record.role);
    let ((), pending) = state.change(|_, now, writes| {
        writes.push(Write::TokenRevoked(record.hash.clone()));
        writes.extend(sessions.iter().cloned().map(Write::SessionEnded));
        writes.push(Write::Event(NewEvent {
            rollout: None,
            at: now,
            actor: Some(actor.clone()),
            kind: "token_revoked".to_owned(),
            data: serde_json::json!({
                "id": id,
                "role": role.as_str(),
                "name": record.name,
                "host": record.host,
                "reason": reason,
            }),
        }));
        let data = serde_json::json!({
            "role": role,
            "name": record.name,
            "host": record.host,
            "sessions_ended": sessions.len(),
        });
        let reason = Some(reason.as_str());
        writes.push(caller.audit(now, AuditKind::TokenRevoked, Some(&id), reason, data));
    });
    pending.durable().await?;
    state.tokens().revoke(std::slice::from_ref(&record.hash));
    state.sessions().end(&sessions);
    tracing::info!(%id, role = %role, %actor, "token revoked");
    Ok(axum::Json(TokenRevoked {
        id,
        name: record.name,
        role,
        host: record.host,
        sessions_ended: sessions.len() as u64,
    }))
}
