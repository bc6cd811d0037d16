//! The audit log: `GET /v1/audit`.

use axum::extract::State;
use serde::Deserialize;
use sluice_api::audit::{AuditActor, AuditEntry, AuditList};
use sluice_api::error::ErrorBody;
use sluice_api::vocabulary::AuditKind;
use sluice_store::{AuditQuery, StoredAudit};

use crate::auth::{Caller, Need};
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::extract::Query;
use crate::state::AppState;
use crate::vocabulary;

/// Entries per answer unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most entries one answer holds.
pub const MAX_LIMIT: u32 = 1000;

/// `GET /v1/audit` query.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only the actions of this token: its id or its name.
    #[param(min_length = 1, max_length = 128)]
    pub actor: Option<String>,
    /// Only entries of this kind.
    #[param(value_type = Option<AuditKind>, inline)]
    pub kind: Option<String>,
    /// Only entries at or after this time (RFC 3339, e.g. 2026-12-07T09:00:00Z).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Only entries numbered above this: the last `seq` read, to follow the log.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many entries (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl AuditParams {
    /// The store's query, every parameter checked.
    pub fn query(&self) -> Result<AuditQuery, ApiError> {
        let actor = match self.actor.as_deref() {
            Some("") => {
                return Err(ApiError::bad_field(
                    "actor",
                    "actor is empty; give a token's id or name, or leave it out",
                ))
            }
            Some(actor) if actor.chars().count() > 128 => {
                return Err(ApiError::bad_field(
                    "actor",
                    "actor is longer than 128 characters; give a token's id or name",
                ))
            }
            other => other.map(str::to_owned),
        };
        let since = self
            .since
            .as_deref()
            .map(|text| {
                text.parse::<jiff::Timestamp>().map_err(|error| {
                    ApiError::bad_field(
                        "since",
                        format!(
                            "since {text:?} is not an RFC 3339 time such as 2026-12-07T09:00:00Z: {error}"
                        ),
                    )
                })
            })
            .transpose()?;
        if let Some(after) = self.after.filter(|after| *after < 0) {
            return Err(ApiError::bad_field(
                "after",
                format!("after {after} is negative; give the last seq read, or 0"),
            ));
        }
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_field(
                "limit",
                format!("limit {limit} is out of range; ask for 1 to {MAX_LIMIT} entries"),
            ));
        }
        let kind = self
            .kind
            .as_deref()
            .map(|kind| {
                kind.parse::<AuditKind>()
                    .map_err(|error| ApiError::bad_field("kind", error.to_string()))
            })
            .transpose()?;
        Ok(AuditQuery {
            actor,
            kind: kind.map(|kind| kind.as_str().to_owned()),
            since,
            after: self.after,
            limit,
        })
    }
}

/// The audit log: every mutating action (rollouts and their actions, the
/// freeze, imports, stable versions, tokens created, used to enroll and
/// revoked, hosts re-enrolled) with its actor, time, source address and
/// reason. Oldest first: from `since` or `after` when given, else the
/// newest `limit` entries. Viewers, operators and admins may read it.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "admin",
    params(AuditParams),
    responses(
        (status = 200, body = AuditList),
        (status = 400, description = "a parameter is invalid: `field` names it", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "agent and enrollment tokens may not read the audit log", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<AuditParams>,
) -> Result<axum::Json<AuditList>, ApiError> {
    caller.require(Need::View)?;
    let query = params.query()?;
    Ok(axum::Json(AuditList {
        entries: read(&state, &query).await?,
    }))
}

/// The entries `query` asks for, as the API shows them, once every change
/// made before is durable (the log never lags what an answer has shown).
pub async fn read(state: &AppState, query: &AuditQuery) -> Result<Vec<AuditEntry>, ApiError> {
    state.reveal(|_| ()).await?;
    let stored = state
        .store()
        .audit(query)
        .await
        .map_err(|error| ApiError::Unavailable(format!("reading the audit log: {error}")))?;
    Ok(stored.into_iter().map(entry).collect())
}

fn entry(stored: StoredAudit) -> AuditEntry {
    let StoredAudit { seq, entry } = stored;
    AuditEntry {
        seq,
        at: rfc3339(entry.at),
        actor: AuditActor {
            id: entry.actor_id,
            name: entry.actor_name,
            role: vocabulary::wire_role(entry.actor_role),
        },
        source: entry.source,
        kind: entry.kind,
        target: entry.target,
        reason: entry.reason,
        data: entry.data,
    }
}
