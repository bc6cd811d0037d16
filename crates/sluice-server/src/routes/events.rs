//! The whole event log — every rollout's events and the fleet-wide ones —
//! as a page (`GET /v1/events`) or a live stream of server-sent events
//! (`GET /v1/events?follow=true`, [`crate::follow`]). Every replica answers
//! it itself from the database: nothing is forwarded to the leader, so a
//! stream is cut by no forwarding timeout and survives a change of leader.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::header::{HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sluice_api::error::ErrorBody;
use sluice_api::rollout::EventList;
use sluice_api::vocabulary::EventKind;
use sluice_store::LogQuery;

use crate::auth::Need;
use crate::error::ApiError;
use crate::extract::Query;
use crate::follow::{self, Filter, Slot};
use crate::replica::Replica;
use crate::routes::rollouts::event_view;

/// Events per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most events one page holds.
pub const MAX_LIMIT: u32 = 10_000;
/// How long a client refused for too many streams is asked to wait.
const RETRY_AFTER_S: u64 = 5;

/// `GET /v1/events` query.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    /// Only this rollout's events (e.g. r-7); fleet-wide events have none.
    #[param(min_length = 1, max_length = 128)]
    pub rollout: Option<String>,
    /// Only events of these kinds, comma-separated (e.g.
    /// `stage_started,paused,completed`).
    #[param(min_length = 1)]
    pub kind: Option<String>,
    /// Only events numbered above this: the last `seq` read. A page
    /// without it holds the newest `limit` events; a stream without it (nor
    /// `Last-Event-ID`) starts at the log's end.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many events in the page (default 100); not with
    /// `follow`.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
    /// Stream events as they are written (`text/event-stream`) instead of
    /// answering a page.
    pub follow: Option<bool>,
}

impl EventsParams {
    /// The filter, every parameter checked.
    fn filter(&self) -> Result<Filter, ApiError> {
        let rollout = match self.rollout.as_deref() {
            Some("") => {
                return Err(ApiError::bad_field(
                    "rollout",
                    "rollout is empty; give a rollout's id (r-7), or leave it out",
                ))
            }
            Some(rollout) if rollout.chars().count() > 128 => {
                return Err(ApiError::bad_field(
                    "rollout",
                    "rollout is longer than 128 characters; give a rollout's id (r-7)",
                ))
            }
            other => other.map(str::to_owned),
        };
        let kinds = match self.kind.as_deref() {
            None => Vec::new(),
            Some(kinds) => parse_kinds(kinds)?,
        };
        Ok(Filter { rollout, kinds })
    }

    fn after(&self) -> Result<Option<i64>, ApiError> {
        match self.after {
            Some(after) if after < 0 => Err(ApiError::bad_field(
                "after",
                format!("after {after} is negative; give the last seq read, or 0"),
            )),
            after => Ok(after),
        }
    }
}

/// `kind`: comma-separated kinds, each one of the API's [`EventKind`]s
/// (every kind the log holds).
fn parse_kinds(text: &str) -> Result<Vec<String>, ApiError> {
    let mut kinds = Vec::new();
    for kind in text.split(',').map(str::trim) {
        if kind.parse::<EventKind>().is_err() {
            let shown = if kind.is_empty() { "(empty)" } else { kind };
            let valid: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
            return Err(ApiError::bad_field(
                "kind",
                format!(
                    "kind {shown:?} is not a kind of event; give one or more of {}, comma-separated",
                    valid.join(", ")
                ),
            ));
        }
        if !kinds.iter().any(|known| known == kind) {
            kinds.push(kind.to_owned());
        }
    }
    Ok(kinds)
}

/// Where a stream starts: after `Last-Event-ID` (a reconnecting client's
/// last event) when sent, else after `after`.
fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let refuse = || {
        ApiError::bad_field(
            "Last-Event-ID",
            "Last-Event-ID is not an event's seq; send the id of the last event received (a number, 0 or more)",
        )
    };
    let text = value.to_str().map_err(|_| refuse())?.trim();
    match text.parse::<i64>() {
        Ok(seq) if seq >= 0 => Ok(Some(seq)),
        _ => Err(refuse()),
    }
}

/// The whole event log: a page, or with `follow=true` a live stream.
///
/// Every rollout's events and the fleet-wide ones (the freeze, the budget,
/// pins, tokens), oldest first, each with its rollout when it has one. A
/// page holds the events numbered above `after` (from the oldest), or
/// without `after` the newest `limit` (default 100, at most 10000); page on
/// with `after` = the last `seq` until a page comes back empty. `rollout`
/// and `kind` filter either: the newest `limit` are then the newest that
/// match.
///
/// With `follow=true` the answer is a stream of server-sent events
/// (`text/event-stream`) that does not end: each event as `id: <seq>`,
/// `event: <kind>` and `data: <the event as JSON>`, and a comment line
/// every 15 s of silence. It starts after the `Last-Event-ID` header when
/// sent (a reconnecting client), else after `after`, else at the log's end
/// (only events written from then on). Any replica serves it from the
/// database, leader or standby; it ends when the server shuts down.
/// At most 100 streams are open per server; one more is answered 429.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "list_events",
    tag = "rollouts",
    params(
        EventsParams,
        ("Last-Event-ID" = Option<String>, Header, description = "with follow=true: start after this event's seq (sent by a reconnecting client; takes precedence over `after`)"),
    ),
    responses(
        (status = 200, description = "a page of events (JSON), or with follow=true a stream of server-sent events", content(
            (EventList = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, description = "a parameter is invalid: `field` names it (an unknown kind is answered with every valid one)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "agent and enrollment tokens may not read the event log", body = ErrorBody),
        (status = 429, description = "too many streams are open on this server, or this token is past its rate of requests (sluice server --api-rate): come back after Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "the database cannot be reached", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(replica): State<Arc<Replica>>,
    _: Viewer,
    headers: HeaderMap,
    Query(params): Query<EventsParams>,
) -> Result<Response, ApiError> {
    let filter = params.filter()?;
    let after = params.after()?;
    if params.follow != Some(true) {
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_field(
                "limit",
                format!("limit {limit} is out of range; ask for 1 to {MAX_LIMIT} events"),
            ));
        }
        let query = LogQuery {
            rollout: filter.rollout,
            kinds: filter.kinds,
            after,
            limit,
        };
        let stored = replica.log_events(&query).await?;
        let events = stored.into_iter().map(event_view).collect();
        return Ok(axum::Json(EventList { events }).into_response());
    }
    if params.limit.is_some() {
        return Err(ApiError::bad_field(
            "limit",
            "limit bounds a page; a stream (follow=true) sends every event: leave limit out",
        ));
    }
    let start = match last_event_id(&headers)?.or(after) {
        Some(seq) => seq,
        None => log_end(&replica).await?,
    };
    let slot = Slot::take(&replica).ok_or_else(|| ApiError::TooManyRequests {
        message: format!(
            "{} events streams are open on this server, its most; close one or come back later",
            replica.streams().open()
        ),
        retry_after_s: RETRY_AFTER_S,
    })?;
    let stream = follow::events(slot, filter, start, &headers);
    let mut response = Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(follow::KEEP_ALIVE)
                .text("keep-alive"),
        )
        .into_response();
    // Proxies (nginx) would otherwise hold events back in a buffer.
    response.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// A caller whose token may read the log, checked before anything else of
/// the request (an unauthenticated request is 401 whatever its query).
#[derive(Debug)]
pub struct Viewer;

impl FromRequestParts<Arc<Replica>> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        replica: &Arc<Replica>,
    ) -> Result<Viewer, ApiError> {
        replica.admit(&parts.headers, Need::View).await?;
        Ok(Viewer)
    }
}

/// The seq of the newest event, 0 when the log is empty.
async fn log_end(replica: &Replica) -> Result<i64, ApiError> {
    let newest = replica
        .log_events(&LogQuery {
            limit: 1,
            ..LogQuery::default()
        })
        .await?;
    Ok(newest.last().map_or(0, |event| event.seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_checked_one_by_one_and_kept_once() {
        assert_eq!(
            parse_kinds("stage_started, paused,stage_started").ok(),
            Some(vec!["stage_started".to_owned(), "paused".to_owned()])
        );
        let error = parse_kinds("paused,halted").expect_err("halted is no kind");
        assert_eq!(error.field(), Some("kind"));
        assert!(error.to_string().contains("\"halted\""), "{error}");
        assert!(error.to_string().contains("freeze_on"), "{error}");
        assert_eq!(
            parse_kinds("paused,").map_err(|error| error.field().map(str::to_owned)),
            Err(Some("kind".to_owned()))
        );
    }
}
