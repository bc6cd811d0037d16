//! The inventory: list and show hosts, import a fleet file, and the
//! pull-only integrations (a host's desired versions, an Ansible inventory).
//!
//! The integrations reveal desired versions, so they answer only once
//! everything queued before them is durable, like a check-in.

use axum::extract::State;
use serde::Deserialize;
use sluice_api::error::ErrorBody;
use sluice_api::host::{DesiredMap, HostList, HostView, ImportHost, ImportResult, Reenrolled};
use sluice_api::rollout::Reason;
use sluice_api::vocabulary::AuditKind;
use sluice_api::HostId;
use sluice_core::fleet::parse_fleet;
use sluice_core::selector::Selector;

use sluice_store::{NewEvent, Write};

use crate::auth::{token_id, Caller, Need};
use crate::error::ApiError;
use crate::extract::{Body, Json, Path, Query};
use crate::routes::{reason_text, required_reason};
use crate::state::AppState;
use crate::world::HostFilter;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HostsQuery {
    /// A label selector (`role=edge,site in (sto, lon)`); empty is every host.
    #[param(schema_with = sluice_api::schema::selector)]
    selector: Option<String>,
    /// Only hosts that report (or were imported with) this component.
    component: Option<String>,
    /// `true`: only hosts whose agent reports a component (this
    /// `component`, if given) drifted from its desired version.
    drifted: Option<bool>,
    /// `true`: only hosts with a component pinned to a version
    /// (`sluice hosts pin`).
    pinned: Option<bool>,
    /// At most this many hosts (default 1000, at most 100000).
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<usize>,
    /// Skip this many matching hosts (hosts are ordered by id).
    #[param(minimum = 0, maximum = 4294967295_u64)]
    offset: Option<u32>,
}

/// Hosts, ordered by id, filtered by selector, component, drift and pins, a
/// page at a time.
#[utoipa::path(
    get,
    path = "/v1/hosts",
    operation_id = "list_hosts",
    tag = "hosts",
    params(HostsQuery),
    responses((status = 200, body = HostList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HostsQuery>,
) -> Result<axum::Json<HostList>, ApiError> {
    caller.require(Need::View)?;
    let selector = Selector::parse(query.selector.as_deref().unwrap_or("")).map_err(|error| {
        ApiError::bad_field(
            "selector",
            format!("invalid selector: {error}; write e.g. role=edge,site in (sto, lon)"),
        )
    })?;
    let limit = query.limit.unwrap_or(1000);
    if limit == 0 || limit > 100_000 {
        return Err(ApiError::bad_field(
            "limit",
            format!("limit {limit} is out of range; ask for 1 to 100000 hosts"),
        ));
    }
    let offset = usize::try_from(query.offset.unwrap_or(0)).unwrap_or(usize::MAX);
    let filter = HostFilter {
        selector: &selector,
        component: query.component.as_deref(),
        drifted: query.drifted.unwrap_or(false),
        pinned: query.pinned.unwrap_or(false),
    };
    let hosts = state
        .reveal(|world| world.host_list(&filter, offset, limit))
        .await?;
    Ok(axum::Json(hosts))
}

/// One host: labels, and per component what it reports and should run.
#[utoipa::path(
    get,
    path = "/v1/hosts/{id}",
    operation_id = "get_host",
    tag = "hosts",
    params(("id" = String, Path, description = "the host's id (FQDN)")),
    responses((status = 200, body = HostView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<HostView>, ApiError> {
    caller.require(Need::View)?;
    state
        .reveal(|world| world.host(&id))
        .await?
        .map(axum::Json)
        .ok_or_else(|| unknown_host(&id))
}

fn unknown_host(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no host {id:?}; hosts appear when their agent checks in or when imported (POST /v1/hosts/import)"
    ))
}

/// Component → desired version, for a Puppet function, a Hiera backend or
/// a facts script. Readable by viewers and by the host's own agent token.
#[utoipa::path(
    get,
    path = "/v1/hosts/{id}/desired",
    tag = "hosts",
    params(("id" = String, Path, description = "the host's id (FQDN)")),
    responses((status = 200, description = "component → desired version", body = BTreeMap<String, String>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn desired(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<DesiredMap>, ApiError> {
    if caller.require(Need::View).is_err() {
        caller.require_host(&id)?;
    }
    state
        .reveal(|world| world.desired_map(&id))
        .await?
        .map(axum::Json)
        .ok_or_else(|| unknown_host(&id))
}

/// Lets a host enroll again: revokes every token bound to it (effective at
/// once), so that its agent, given an enrollment token, may enroll anew.
/// A host with no token is answered as it is (nothing revoked).
#[utoipa::path(
    post,
    path = "/v1/hosts/{id}/reenroll",
    tag = "hosts",
    params(("id" = String, Path, description = "the host's id (FQDN)", pattern = "^[A-Za-z0-9._:-]{1,253}$", min_length = 1, max_length = 253)),
    request_body = Reason,
    responses((status = 200, description = "its tokens revoked, durable", body = Reenrolled), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn reenroll(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(reason): Json<Reason>,
) -> Result<axum::Json<Reenrolled>, ApiError> {
    caller.require(Need::Admin)?;
    let host =
        HostId::parse(id.as_str()).map_err(|error| ApiError::bad_field("id", error.to_string()))?;
    let reason = required_reason(reason, "let a host enroll again")?;
    let bound: Vec<String> = state
        .store()
        .tokens()
        .await
        .map_err(|error| ApiError::Unavailable(format!("reading the tokens: {error}")))?
        .into_iter()
        .filter(|record| record.host.as_deref() == Some(host.as_str()))
        .map(|record| record.hash)
        .collect();
    let actor = caller.actor().to_owned();
    let ids: Vec<String> = bound.iter().map(|hash| token_id(hash)).collect();
    let ((), pending) = state.change(|_, now, writes| {
        writes.push(Write::HostTokensRevoked(host.to_string()));
        writes.push(Write::Event(NewEvent {
            rollout: None,
            at: now,
            actor: Some(actor.clone()),
            kind: "host_reenrolled".to_owned(),
            data: serde_json::json!({
                "host": host.as_str(),
                "tokens_revoked": ids,
                "reason": reason,
            }),
        }));
        let data = serde_json::json!({ "tokens_revoked": ids });
        writes.push(caller.audit(
            now,
            AuditKind::HostReenrolled,
            Some(host.as_str()),
            Some(&reason),
            data,
        ));
    });
    pending.durable().await?;
    // Memory may know a token the listing did not show yet: let go of
    // every token bound to the host.
    let mut revoked = bound;
    revoked.extend(
        state
            .tokens()
            .all()
            .into_iter()
            .filter(|token| token.host.as_deref() == Some(host.as_str()))
            .map(|token| token.hash.clone()),
    );
    revoked.sort();
    revoked.dedup();
    state.tokens().revoke(&revoked);
    tracing::info!(host = %host, tokens = revoked.len(), %actor, "host may enroll again");
    Ok(axum::Json(Reenrolled {
        host: host.to_string(),
        tokens_revoked: revoked.len() as u64,
    }))
}

/// `POST /v1/hosts/import` query: the body is the fleet itself.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Why the hosts are imported (required, not blank): recorded with the
    /// actor in the audit log.
    // The pattern is `sluice_api::schema::NOT_BLANK` (a literal here; the
    // OpenAPI tests compare them).
    #[param(
        min_length = 1,
        pattern = r"[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    reason: String,
}

/// Registers hosts from a fleet file (a JSON array of `{"id", "labels",
/// "components"}`) for the `reason` given in the query; they join active
/// rollouts like any new host. Versions fill in only components the host's
/// agent has not reported.
#[utoipa::path(
    post,
    path = "/v1/hosts/import",
    tag = "hosts",
    params(ImportQuery),
    request_body = Vec<ImportHost>,
    responses((status = 200, description = "imported and durable", body = ImportResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ImportQuery>,
    Body(body): Body,
) -> Result<axum::Json<ImportResult>, ApiError> {
    caller.require(Need::Admin)?;
    let reason = reason_text(&query.reason, "import hosts")?;
    let hosts = parse_fleet(&body).map_err(|error| {
        let message = format!("invalid fleet: {error}");
        match error.field() {
            Some(field) => ApiError::bad_field(field, message),
            None => ApiError::bad_request(message),
        }
    })?;
    let actor = caller.actor().to_owned();
    let (result, pending) = state.change(|world, now, writes| {
        let result = world.import(hosts, &actor, now, writes);
        let data = serde_json::json!({ "imported": result.imported, "new": result.new });
        writes.push(caller.audit(now, AuditKind::HostsImported, None, Some(&reason), data));
        result
    });
    pending.durable().await?;
    tracing::info!(imported = result.imported, new = result.new, actor = %caller.actor(), "hosts imported");
    Ok(axum::Json(result))
}

/// An Ansible dynamic inventory: a group per component and desired version
/// (`docker_engine_17_03_1`), labels and desired versions in `_meta.hostvars`.
#[utoipa::path(
    get,
    path = "/v1/inventory/ansible",
    tag = "hosts",
    responses((status = 200, description = "Ansible dynamic-inventory JSON", body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn ansible(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(Need::View)?;
    Ok(axum::Json(
        state.reveal(|world| world.ansible_inventory()).await?,
    ))
}
