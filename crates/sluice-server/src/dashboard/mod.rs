//! The dashboard: server-rendered HTML at `/`, embedded in the binary.
//!
//! Pages are askama templates (`templates/`, checked at compile time) filled
//! from read-only views of the server's memory ([`views`]); one small
//! script and one stylesheet (`static/`) are embedded with `include_str!`
//! and served under content-hashed names, so they can be cached for good.
//! Every view's state (filters, tab, page, selected rollout) lives in the
//! URL; the script refreshes the live parts of a page (`[data-live]`) by
//! fetching the same URL every few seconds and swapping them in, leaving
//! forms alone.
//!
//! Layout:
//! - [`session`]: sign-in with a bearer token, the sessions (stored like
//!   tokens, held in memory by the leader) behind an HttpOnly
//!   SameSite=Strict cookie, CSRF tokens;
//! - [`pages`]: the GET handlers and their templates (a rollout's Report
//!   tab and its downloads among them, made by [`crate::retro`]);
//! - [`actions`]: sign-in, sign-out and the POST forms (rollout actions and
//!   the freeze), which go through the API's own code paths;
//! - [`link`]: one-time sign-in links (`POST /v1/signin-links`, then
//!   `/signin/link/NONCE`), stored like sessions;
//! - [`views`]: what each page shows, computed from [`crate::world::World`];
//! - [`chart`]: the SVG chart of hosts by version over time;
//! - [`sampler`]: the task that samples hosts by version for that chart;
//! - [`assets`]: the embedded stylesheet and script.
//!
//! Architecture invariant: the dashboard never changes memory itself; every
//! action is the API's action, with the signed-in token's actor.

pub mod actions;
pub mod assets;
pub mod chart;
pub mod link;
pub mod pages;
pub mod sampler;
pub mod session;
pub mod views;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, RETRY_AFTER, VARY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// The Content-Security-Policy of every dashboard answer: scripts and
/// styles from this origin only (no inline script or style), no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The largest form the dashboard takes (a token, a reason, a CSRF token).
const FORM_LIMIT: usize = 16 * 1024;

/// What the dashboard's handlers share: the server's state, which holds
/// the sessions.
#[derive(Clone, Debug)]
pub struct Dashboard {
    pub app: AppState,
}

/// The dashboard's routes, to be merged beside the API.
pub fn router(app: AppState) -> Router {
    let dashboard = Dashboard { app };
    Router::new()
        .route("/", get(pages::overview))
        .route("/rollouts", get(pages::rollouts))
        .route("/rollouts/{id}", get(pages::rollout))
        .route("/rollouts/{id}/act/{action}", post(actions::act))
        .route(
            "/rollouts/{id}/report/{format}",
            get(pages::report_download),
        )
        .route("/hosts", get(pages::hosts))
        .route("/hosts/{id}", get(pages::host))
        .route("/audit", get(pages::audit))
        .route("/freeze", post(actions::freeze))
        .route("/signin", get(pages::signin).post(actions::signin))
        .route("/signin/link/{nonce}", get(link::visit))
        .route("/signout", post(actions::signout))
        .route("/static/{file}", get(assets::serve))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .layer(TraceLayer::new_for_http().make_span_with(link::span::<axum::body::Body>))
        .with_state(dashboard)
}

/// Sets the security headers on every dashboard answer, and `no-store` on
/// everything but the (content-hashed) assets.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !headers.contains_key(CACHE_CONTROL) {
        // A page depends on who asks.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.append(VARY, HeaderValue::from_static("cookie"));
    }
    response
}

/// Why a dashboard request failed, shown as a page (or, for a visitor who
/// has not signed in, a redirect to the sign-in page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DashError {
    /// Not signed in: sign in, then come back to `next`.
    SignIn {
        next: String,
    },
    BadRequest(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    /// The token's rate of requests is spent (429): come back after
    /// `retry_after_s` seconds (`Retry-After`).
    TooManyRequests {
        message: String,
        retry_after_s: u64,
    },
    Unavailable(String),
    Internal(String),
}

impl DashError {
    fn status(&self) -> StatusCode {
        match self {
            DashError::SignIn { .. } => StatusCode::SEE_OTHER,
            DashError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DashError::Forbidden(_) => StatusCode::FORBIDDEN,
            DashError::NotFound(_) => StatusCode::NOT_FOUND,
            DashError::Conflict(_) => StatusCode::CONFLICT,
            DashError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            DashError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DashError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown to the user.
    pub fn message(&self) -> &str {
        match self {
            DashError::SignIn { .. } => "sign in to see this page",
            DashError::BadRequest(m)
            | DashError::Forbidden(m)
            | DashError::NotFound(m)
            | DashError::Conflict(m)
            | DashError::TooManyRequests { message: m, .. }
            | DashError::Unavailable(m)
            | DashError::Internal(m) => m,
        }
    }
}

impl From<crate::error::ApiError> for DashError {
    fn from(error: crate::error::ApiError) -> DashError {
        use crate::error::ApiError;
        let message = error.to_string();
        match error {
            ApiError::BadRequest { .. } | ApiError::PayloadTooLarge(_) => {
                DashError::BadRequest(message)
            }
            ApiError::InvalidPlan { .. } | ApiError::MethodNotAllowed(_) => {
                DashError::BadRequest(message)
            }
            ApiError::Unauthorized(_) | ApiError::Forbidden(_) => DashError::Forbidden(message),
            ApiError::NotFound(_) => DashError::NotFound(message),
            ApiError::Conflict(_) => DashError::Conflict(message),
            ApiError::TooManyRequests { retry_after_s, .. } => DashError::TooManyRequests {
                message,
                retry_after_s,
            },
            ApiError::Unavailable(_) => DashError::Unavailable(message),
            ApiError::Internal(_) => DashError::Internal(message),
        }
    }
}

impl From<crate::commit::CommitError> for DashError {
    fn from(error: crate::commit::CommitError) -> DashError {
        crate::error::ApiError::from(error).into()
    }
}

impl From<crate::world::WorldError> for DashError {
    fn from(error: crate::world::WorldError) -> DashError {
        crate::error::ApiError::from(error).into()
    }
}

impl From<askama::Error> for DashError {
    fn from(error: askama::Error) -> DashError {
        DashError::Internal(format!("rendering the page: {error}"))
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        if let DashError::SignIn { next } = &self {
            return Redirect::to(&format!("/signin?next={}", views::encode(next))).into_response();
        }
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = self.message(), "dashboard request failed");
        }
        let mut response = match pages::error_page(status, self.message()) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, self.message().to_owned()).into_response(),
        };
        if let DashError::TooManyRequests { retry_after_s, .. } = self {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response
    }
}
