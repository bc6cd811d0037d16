//! Rollouts: create from a plan, list, detail, the operator actions and
//! the event timeline.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use sluice_api::error::ErrorBody;
use sluice_api::rollout::{
    Action, Created, EventList, EventView, Reason, RolloutDetail, RolloutList, RolloutSummary,
};
use sluice_api::vocabulary::AuditKind;
use sluice_core::plan::{parse_plan, PlanErrors};
use sluice_store::StoredEvent;

use crate::auth::{Caller, Need};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query, Text};
use crate::routes::required_reason;
use crate::state::AppState;
use crate::vocabulary;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    /// RFC 3339 with an offset, e.g. `2026-12-07T09:00:00+01:00` (encode
    /// `+` as `%2B`; a space in its place is read as `+`): the rollout is
    /// scheduled and starts by itself then. Must be in the future.
    #[param(example = "2026-12-07T09:00:00+01:00")]
    start_at: Option<String>,
}

/// `start_at` as given, read.
fn start_at(query: &CreateQuery) -> Result<Option<jiff::Timestamp>, ApiError> {
    let Some(text) = &query.start_at else {
        return Ok(None);
    };
    // An unencoded `+` in a query string arrives as a space.
    let text = text.trim().replace(' ', "+");
    text.parse::<jiff::Timestamp>().map(Some).map_err(|error| {
        ApiError::bad_field(
            "start_at",
            format!("start_at {text:?} is not an RFC 3339 time with an offset, such as 2026-12-07T09:00:00+01:00 or 2026-12-07T08:00:00Z: {error}"),
        )
    })
}

/// Creates a pending rollout from a plan (YAML or JSON); with `start_at`,
/// or a plan that says `after: NAME`, it is scheduled and starts by itself.
#[utoipa::path(
    post,
    path = "/v1/rollouts",
    operation_id = "create_rollout",
    tag = "rollouts",
    params(CreateQuery),
    request_body(
        description = "the plan, YAML or JSON (the plan file format of the spec); every problem is answered at once (422)",
        content(
            (sluice_api::rollout::Plan = "application/yaml"),
            (sluice_api::rollout::Plan = "application/json"),
        ),
    ),
    responses(
        (status = 201, description = "created, pending; start it with /start, or it starts by itself when scheduled", body = Created),
        (status = 400, description = "the body is not UTF-8 text, or `start_at` is no time or not in the future", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "the name is taken, or an active rollout of the component overlaps", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "the plan is invalid: `field` is the first problem, the message lists all; or its `after` names no rollout, or one rolled back or aborted", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<CreateQuery>,
    Text(source): Text,
) -> Result<(StatusCode, axum::Json<Created>), ApiError> {
    caller.require(Need::Operate)?;
    let start_at = start_at(&query)?;
    let plan = parse_plan(&source).map_err(plan_error)?;
    let mut details = serde_json::json!({
        "name": plan.name,
        "component": plan.component,
        "version": plan.version,
    });
    if let Some(at) = start_at {
        details["start_at"] = crate::clock::rfc3339(at).into();
    }
    if let Some(after) = &plan.after {
        details["after"] = after.name.clone().into();
    }
    let (created, pending) = state.change(|world, now, writes| {
        let created = world.create_rollout(source, plan, start_at, now, writes);
        if let Ok(id) = &created {
            writes.push(caller.audit(now, AuditKind::RolloutCreated, Some(id), None, details));
        }
        created
    });
    let id = created?;
    pending.durable().await?;
    tracing::info!(rollout = %id, actor = %caller.actor(), "rollout created");
    Ok((StatusCode::CREATED, axum::Json(Created { id })))
}

/// 422 with the first problem's field and position, and every problem.
fn plan_error(errors: PlanErrors) -> ApiError {
    let field = match errors.0.first() {
        Some(first) if first.field.is_empty() => format!("plan at {}:{}", first.line, first.column),
        Some(first) => format!("{} at {}:{}", first.field, first.line, first.column),
        None => "plan".to_owned(),
    };
    let count = errors.0.len();
    let problems: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    ApiError::InvalidPlan {
        field,
        message: format!(
            "the plan has {count} problem{}: {}",
            if count == 1 { "" } else { "s" },
            problems.join("; ")
        ),
    }
}

/// Every rollout, oldest first.
#[utoipa::path(
    get,
    path = "/v1/rollouts",
    operation_id = "list_rollouts",
    tag = "rollouts",
    responses((status = 200, body = RolloutList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<RolloutList>, ApiError> {
    caller.require(Need::View)?;
    let rollouts = state.reveal(|world| world.rollout_list()).await?;
    Ok(axum::Json(RolloutList { rollouts }))
}

/// One rollout: state, stages, host counts, strata, gates and the plan.
#[utoipa::path(
    get,
    path = "/v1/rollouts/{id}",
    operation_id = "get_rollout",
    tag = "rollouts",
    params(("id" = String, Path, description = "rollout id, e.g. r-7")),
    responses((status = 200, body = RolloutDetail), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<RolloutDetail>, ApiError> {
    caller.require(Need::View)?;
    state
        .reveal(|world| world.rollout_detail(&id))
        .await?
        .map(axum::Json)
        .map_err(ApiError::from)
}

/// Applies an operator action and answers once it is durable.
pub(crate) async fn act(
    state: AppState,
    caller: Caller,
    id: String,
    action: Action,
    reason: Reason,
) -> Result<axum::Json<RolloutSummary>, ApiError> {
    caller.require(Need::Operate)?;
    let to = format!("{} a rollout", vocabulary::action(action).name());
    let reason = required_reason(reason, &to)?;
    let actor = caller.actor().to_owned();
    let (summary, pending) = state.change(|world, now, writes| {
        let summary = world.act(&id, action, &actor, &reason, now, writes);
        if summary.is_ok() {
            let kind = AuditKind::of_action(action);
            let data = serde_json::json!({});
            writes.push(caller.audit(now, kind, Some(&id), Some(&reason), data));
        }
        summary
    });
    let summary = summary?;
    pending.durable().await?;
    state.wake_controller();
    Ok(axum::Json(summary))
}

macro_rules! action {
    ($(#[$doc:meta])* $name:ident, $action:expr, $path:literal) => {
        $(#[$doc])*
        #[utoipa::path(
            post,
            path = $path,
            tag = "rollouts",
            params(("id" = String, Path, description = "rollout id, e.g. r-7")),
            request_body = Reason,
            responses(
                (status = 200, description = "done and durable; the rollout as it is now", body = RolloutSummary),
                (status = 400, description = "no reason, or a malformed body", body = ErrorBody),
                (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
                (status = 409, description = "the action does not apply to the rollout as it is", body = ErrorBody),
                (status = 503, body = ErrorBody),
            ),
            security(("bearer" = []))
        )]
        pub async fn $name(
            State(state): State<AppState>,
            caller: Caller,
            Path(id): Path<String>,
            Json(reason): Json<Reason>,
        ) -> Result<axum::Json<RolloutSummary>, ApiError> {
            act(state, caller, id, $action, reason).await
        }
    };
}

action!(
    /// Starts a pending rollout: its first stage admits hosts.
    start, Action::Start, "/v1/rollouts/{id}/start"
);
action!(
    /// Pauses a running rollout: no host is admitted until it is resumed.
    pause, Action::Pause, "/v1/rollouts/{id}/pause"
);
action!(
    /// Resumes a paused rollout, acknowledging the failures that paused it.
    resume, Action::Resume, "/v1/rollouts/{id}/resume"
);
action!(
    /// Skips the rest of the current stage's bake.
    advance, Action::Advance, "/v1/rollouts/{id}/advance"
);
action!(
    /// Approves a stage awaiting approval: the next stage starts.
    approve, Action::Approve, "/v1/rollouts/{id}/approve"
);
action!(
    /// Stops the rollout for good; admitted hosts keep the target.
    abort, Action::Abort, "/v1/rollouts/{id}/abort"
);
action!(
    /// Stops the rollout and returns admitted hosts to what they ran before.
    rollback, Action::Rollback, "/v1/rollouts/{id}/rollback"
);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events with a sequence number above this (default 0).
    after: Option<i64>,
    /// At most this many (default 1000, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// The rollout's timeline, oldest first; page with `after` = the last `seq`.
#[utoipa::path(
    get,
    path = "/v1/rollouts/{id}/events",
    tag = "rollouts",
    params(("id" = String, Path, description = "rollout id, e.g. r-7"), EventsQuery),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<axum::Json<EventList>, ApiError> {
    caller.require(Need::View)?;
    state.reveal(|world| world.has_rollout(&id)).await??;
    let limit = query.limit.unwrap_or(1000);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::bad_field(
            "limit",
            format!("limit {limit} is out of range; ask for 1 to 10000 events"),
        ));
    }
    let stored = state.events(&id, query.after.unwrap_or(0), limit).await?;
    let events = stored.into_iter().map(event_view).collect();
    Ok(axum::Json(EventList { events }))
}

/// A stored event as the API shows it, in a rollout's list, the events
/// stream and webhooks alike.
pub fn event_view(stored: StoredEvent) -> EventView {
    EventView {
        seq: stored.seq,
        rollout: stored.event.rollout,
        at: crate::clock::rfc3339(stored.event.at),
        actor: stored.event.actor,
        kind: stored.event.kind,
        data: stored.event.data,
    }
}
