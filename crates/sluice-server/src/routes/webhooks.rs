//! Webhooks (`GET|POST /v1/webhooks`, `DELETE /v1/webhooks/{id}`,
//! `POST /v1/webhooks/{id}/test`), admin only and audited in the batch of
//! the change itself. The webhooks and their delivery's progress are read
//! from the store, where the leader's delivery ([`crate::webhooks`]) keeps
//! them; a listing never shows a secret.

use axum::extract::State;
use axum::http::StatusCode;
use sluice_api::error::ErrorBody;
use sluice_api::rollout::{EventView, Reason};
use sluice_api::vocabulary::{AuditKind, EventKind, WebhookFormat};
use sluice_api::webhook::{
    event_filter, WebhookList, WebhookRequest, WebhookTestResult, WebhookView, MAX_SECRET_LENGTH,
    MAX_URL_LENGTH,
};
use sluice_store::{StoredWebhook, WebhookRecord, Write};

use crate::auth::{Caller, Need};
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::{reason_text, required_reason};
use crate::state::AppState;
use crate::webhooks::{self, Delivery, FAILING_AFTER};

/// Every webhook, by id, with how its delivery goes (never the secret).
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "admin",
    responses((status = 200, body = WebhookList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<WebhookList>, ApiError> {
    caller.require(Need::Admin)?;
    let webhooks = stored(&state).await?.iter().map(view).collect();
    Ok(axum::Json(WebhookList { webhooks }))
}

/// Adds a webhook: every event of the log from now on that its `events`
/// want is POSTed to `url`, at least once, in order per rollout, signed
/// when a `secret` is given.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "admin",
    request_body = WebhookRequest,
    responses((status = 201, description = "added and durable; delivery starts after the last event of the log", body = WebhookView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<WebhookRequest>,
) -> Result<(StatusCode, axum::Json<WebhookView>), ApiError> {
    caller.require(Need::Admin)?;
    let url = check_url(&request.url)?;
    let events = event_filter(&request.events)
        .map_err(|error| ApiError::bad_field("events", error.to_string()))?;
    let secret = match request.secret {
        Some(secret) if secret.is_empty() => {
            return Err(ApiError::bad_field(
                "secret",
                "the secret is empty; give the key to sign bodies with, or leave it out",
            ))
        }
        Some(secret) if secret.chars().count() > MAX_SECRET_LENGTH => {
            return Err(ApiError::bad_field(
                "secret",
                format!("the secret is longer than {MAX_SECRET_LENGTH} characters"),
            ))
        }
        secret => secret,
    };
    let reason = reason_text(&request.reason, "add a webhook")?;
    let format = request.format.unwrap_or(WebhookFormat::Json);
    let id = new_id()?;
    let actor = caller.actor().to_owned();
    let ((), pending) = state.change(|_, now, writes| {
        let record = WebhookRecord {
            id: id.clone(),
            url: url.clone(),
            events: events.iter().map(|kind| kind.as_str().to_owned()).collect(),
            format: format.as_str().to_owned(),
            secret,
            created_at: now,
            created_by: actor.clone(),
        };
        let data = serde_json::json!({
            "url": webhooks::redacted(&url),
            "events": events,
            "format": format,
            "signed": record.secret.is_some(),
        });
        writes.push(Write::Webhook(record));
        writes.push(caller.audit(now, AuditKind::WebhookAdded, Some(&id), Some(&reason), data));
    });
    pending.durable().await?;
    state.wake_webhooks();
    tracing::info!(webhook = %id, receiver = %webhooks::redacted(&url), %actor, "webhook added");
    let added = find(&state, &id).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&added))))
}

/// Removes a webhook: its delivery stops.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "the webhook's id")),
    request_body = Reason,
    responses((status = 200, description = "removed, durable", body = WebhookView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(reason): Json<Reason>,
) -> Result<axum::Json<WebhookView>, ApiError> {
    caller.require(Need::Admin)?;
    let reason = required_reason(reason, "remove a webhook")?;
    let removed = find(&state, &id).await?;
    let ((), pending) = state.change(|_, now, writes| {
        writes.push(Write::WebhookRemoved(id.clone()));
        let data = serde_json::json!({ "url": webhooks::redacted(&removed.webhook.url) });
        writes.push(caller.audit(
            now,
            AuditKind::WebhookRemoved,
            Some(&id),
            Some(&reason),
            data,
        ));
    });
    pending.durable().await?;
    state.wake_webhooks();
    tracing::info!(webhook = %id, actor = %caller.actor(), "webhook removed");
    Ok(axum::Json(view(&removed)))
}

/// Sends one `webhook_test` delivery to the webhook now, signed like the
/// others, and answers with what the receiver made of it. The delivery of
/// the log is not affected.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/test",
    tag = "admin",
    params(("id" = String, Path, description = "the webhook's id")),
    responses((status = 200, description = "sent; `delivered` says whether the receiver answered 2xx", body = WebhookTestResult), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<WebhookTestResult>, ApiError> {
    caller.require(Need::Admin)?;
    let hook = find(&state, &id).await?;
    let now = state.now();
    let event = EventView {
        seq: 0,
        rollout: None,
        at: rfc3339(now),
        actor: Some(caller.actor().to_owned()),
        kind: "webhook_test".to_owned(),
        data: serde_json::json!({ "webhook": id }),
    };
    let body = if hook.webhook.format == WebhookFormat::Slack.as_str() {
        webhooks::slack(&webhooks::summary(&event))
    } else {
        serde_json::to_vec(&event).map_err(|error| ApiError::Internal(error.to_string()))?
    };
    let delivery = Delivery {
        event: event.kind,
        id: format!("{id}-test-{}", now.as_millisecond()),
        body,
    };
    let client = webhooks::WebhookSettings::new(webhooks::DEFAULT_RETRY_MAX)
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .client;
    let result = match webhooks::send(&client, &hook.webhook, &delivery).await {
        Ok(status) => WebhookTestResult {
            delivered: true,
            status: Some(status),
            error: None,
        },
        Err(sent) => WebhookTestResult {
            delivered: false,
            status: sent.status,
            error: Some(sent.error),
        },
    };
    let ((), pending) = state.change(|_, now, writes| {
        let data = serde_json::json!({
            "delivery": delivery.id,
            "delivered": result.delivered,
            "status": result.status,
            "error": result.error,
        });
        writes.push(caller.audit(now, AuditKind::WebhookTested, Some(&id), None, data));
    });
    pending.durable().await?;
    Ok(axum::Json(result))
}

/// The stored webhooks, once every change made before is durable.
async fn stored(state: &AppState) -> Result<Vec<StoredWebhook>, ApiError> {
    state.reveal(|_| ()).await?;
    state
        .store()
        .webhooks()
        .await
        .map_err(|error| ApiError::Unavailable(error.to_string()))
}

/// The webhook of `id`, or 404.
async fn find(state: &AppState, id: &str) -> Result<StoredWebhook, ApiError> {
    stored(state)
        .await?
        .into_iter()
        .find(|hook| hook.webhook.id == id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no webhook {id:?}; sluice webhook list shows them (GET /v1/webhooks)"
            ))
        })
}

/// An absolute `http` or `https` URL with a host, as given.
fn check_url(url: &str) -> Result<String, ApiError> {
    let url = url.trim();
    if url.chars().count() > MAX_URL_LENGTH {
        return Err(ApiError::bad_field(
            "url",
            format!("the URL is longer than {MAX_URL_LENGTH} characters"),
        ));
    }
    let parsed = reqwest::Url::parse(url).map_err(|error| {
        ApiError::bad_field(
            "url",
            format!("{url:?} is not an absolute URL ({error}); write http://HOST[:PORT]/PATH or https://…"),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::bad_field(
            "url",
            format!("{url:?} is not an http or https URL with a host; write http://HOST[:PORT]/PATH or https://…"),
        ));
    }
    Ok(url.to_owned())
}

/// A new webhook id: `wh-` and 12 random hex digits.
fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes)
        .map_err(|error| ApiError::Internal(format!("reading the OS random source: {error}")))?;
    Ok(format!("wh-{}", hex::encode(bytes)))
}

/// A webhook as the API shows it: never its secret.
fn view(hook: &StoredWebhook) -> WebhookView {
    let (webhook, delivery) = (&hook.webhook, &hook.delivery);
    WebhookView {
        id: webhook.id.clone(),
        url: webhook.url.clone(),
        events: webhook
            .events
            .iter()
            .filter_map(|kind| kind.parse::<EventKind>().ok())
            .collect(),
        format: webhook.format.parse().unwrap_or(WebhookFormat::Json),
        signed: webhook.secret.is_some(),
        created_at: rfc3339(webhook.created_at),
        created_by: webhook.created_by.clone(),
        delivered_seq: delivery.delivered_seq,
        failing: delivery.failures >= FAILING_AFTER,
        failures: delivery.failures,
        last_error: delivery.last_error.clone(),
        last_attempt_at: delivery.last_attempt_at.map(rfc3339),
        last_success_at: delivery.last_success_at.map(rfc3339),
    }
}
