//! One-time sign-in links: signing in to the dashboard without pasting a
//! token. `POST /v1/signin-links` (any viewer, operator or admin token;
//! agent tokens cannot sign in) answers the path `/signin/link/NONCE`, a
//! random nonce that is not the token and says nothing of it; visiting it
//! once within [`LIFETIME`] opens a session exactly as the sign-in form
//! does, acting with the token that made the link, and redirects to the
//! overview. A second visit, or one too late, gets a page saying so and
//! how to get a new link (`sluice dashboard`).
//!
//! A link is state like a session, and stored as one: a row of
//! `dashboard_sessions` whose hash is [`PREFIX`] and the SHA-256 of the
//! nonce, expiring after [`LIFETIME`], made durable before the path is
//! answered, so that the link works through any replica (all forward to
//! the leader) and across a change of leader. The prefix keeps links and
//! sessions apart at load, and no cookie can ever name a link: a session is
//! found by the hash of its cookie, which is plain hex. Using a link takes
//! it from memory (so two visits at once cannot both sign in) and deletes
//! its row in the batch that stores the new session, before the cookie is
//! handed out.
//!
//! The nonce is a secret while the link lives, so the request spans
//! ([`span`]) show the path of a link without it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, SET_COOKIE};
use axum::http::{HeaderMap, Request, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use sluice_api::dashboard::SigninLink;
use sluice_api::error::ErrorBody;
use sluice_store::{SessionRecord, Write};

use super::session::{self, random_hex};
use super::{pages, DashError, Dashboard};
use crate::auth::{hash_secret, require, Caller, Need};
use crate::error::ApiError;
use crate::state::AppState;

/// How long a sign-in link stays valid.
pub const LIFETIME: Duration = Duration::from_secs(60);
/// What sets a link's stored hash apart from a session's.
pub const PREFIX: &str = "link:";
/// Where links live on the site; the nonce follows.
const PATH: &str = "/signin/link/";

/// Whether the stored hash `hash` is a sign-in link's (not a session's).
pub fn is_link(hash: &str) -> bool {
    hash.starts_with(PREFIX)
}

/// The stored hash of the link whose nonce is `nonce`.
fn link_hash(nonce: &str) -> String {
    format!("{PREFIX}{}", hash_secret(nonce))
}

/// Makes a one-time sign-in link for the caller's token.
#[utoipa::path(
    post,
    path = "/v1/signin-links",
    tag = "dashboard",
    responses(
        (status = 201, description = "a one-time sign-in link for the caller's token: visit `path` on the server (any replica) once, within `expires_in_s` seconds", body = SigninLink),
        (status = 401, body = ErrorBody),
        (status = 403, description = "agent tokens cannot sign in to the dashboard", body = ErrorBody),
        (status = 503, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<(StatusCode, axum::Json<SigninLink>), ApiError> {
    caller.require(Need::View).map_err(|_| {
        ApiError::Forbidden(format!(
            "{} tokens cannot sign in to the dashboard; use a viewer, operator or admin token",
            caller.role().as_str()
        ))
    })?;
    // The caller's extractor accepted this very header.
    let secret = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::Unauthorized("the authorization header must be Bearer TOKEN".to_owned())
        })?;
    let nonce = random_hex(32).map_err(|error| ApiError::Internal(error.message().to_owned()))?;
    let now = state.now();
    let expires_at = now
        .checked_add(LIFETIME)
        .map_err(|error| ApiError::Internal(format!("the link's expiry: {error}")))?;
    let record = SessionRecord {
        hash: link_hash(&nonce),
        token: hash_secret(secret),
        created_at: now,
        expires_at,
    };
    let ((), pending) = state.change(|_, now, writes| {
        writes.push(Write::SessionsExpired(now));
        writes.push(Write::Session(record.clone()));
    });
    pending.durable().await?;
    state.sessions().insert_link(&record, state.now());
    tracing::info!(actor = %caller.actor(), "dashboard sign-in link made");
    Ok((
        StatusCode::CREATED,
        axum::Json(SigninLink {
            path: format!("{PATH}{nonce}"),
            expires_in_s: LIFETIME.as_secs(),
        }),
    ))
}

/// `GET /signin/link/{nonce}`: the first visit within [`LIFETIME`] opens a
/// session and goes to the overview; any other gets a page saying why not.
pub async fn visit(
    State(dash): State<Dashboard>,
    Path(nonce): Path<String>,
) -> Result<Response, DashError> {
    let app = &dash.app;
    let hash = link_hash(&nonce);
    let Some(link) = app.sessions().take_link(&hash, app.now()) else {
        return gone(
            "this sign-in link was already used or has expired: a link works once, within a minute. \
             Run sluice dashboard (sluice dashboard --open opens it) for a new one, or sign in with a token at /signin",
        );
    };
    // The token as it stands now: revoked or expired since, it signs
    // nobody in.
    let token = app
        .tokens()
        .by_hash(&link.token)
        .filter(|token| token.check_usable(app.now()).is_ok());
    let Some(token) = token else {
        return gone(
            "the token this sign-in link was made with has expired or was revoked; \
             ask an admin for a new token, then run sluice dashboard",
        );
    };
    require(token.role, Need::View).map_err(|error| DashError::Forbidden(error.to_string()))?;
    // As the sign-in form: stored before the cookie is handed out, and the
    // link's row goes in the same batch.
    let (id, record) = session::new_session(&link.token, app.now())?;
    let ((), pending) = app.change(|_, now, writes| {
        writes.push(Write::SessionsExpired(now));
        writes.push(Write::SessionEnded(hash.clone()));
        writes.push(Write::Session(record.clone()));
    });
    pending.durable().await?;
    app.sessions()
        .insert(&record, Arc::clone(&token), app.now());
    tracing::info!(actor = %token.actor, "dashboard sign-in with a one-time link");
    let cookie = session::set_cookie(session::COOKIE_NAME, &id, session::LIFETIME, app.https());
    Ok(([(SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

/// The page of a link that cannot sign in (410 Gone).
fn gone(message: &str) -> Result<Response, DashError> {
    let html = pages::error_page(StatusCode::GONE, message)?;
    Ok((StatusCode::GONE, Html(html)).into_response())
}

/// The span of an HTTP request, as tower-http's default (`method`, `uri`,
/// `version`, at debug level) but with a sign-in link's nonce left out.
pub fn span<B>(request: &Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        uri = %redacted(request.uri()),
        version = ?request.version(),
    )
}

/// `uri`, or `/signin/link/…` for a sign-in link.
fn redacted(uri: &Uri) -> std::borrow::Cow<'_, str> {
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    if path.starts_with(PATH) {
        format!("{PATH}…").into()
    } else {
        path.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_told_from_sessions_by_their_stored_hash() {
        let hash = link_hash("abc");
        assert!(is_link(&hash));
        assert_eq!(hash, format!("link:{}", hash_secret("abc")));
        assert!(
            !is_link(&hash_secret("abc")),
            "a session's hash is plain hex"
        );
    }

    #[test]
    fn spans_leave_out_a_links_nonce() {
        let link: Uri = "/signin/link/0123abcd".parse().expect("uri");
        assert_eq!(redacted(&link), "/signin/link/…");
        let other: Uri = "/rollouts/r-1?tab=hosts".parse().expect("uri");
        assert_eq!(redacted(&other), "/rollouts/r-1?tab=hosts");
    }
}
