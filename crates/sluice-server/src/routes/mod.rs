//! The HTTP API (v1): the router, its OpenAPI document, and one module per
//! group of endpoints.
//!
//! Every handler carries a `#[utoipa::path]`, and routes are registered
//! through `utoipa-axum`, so that `/v1/openapi.json` lists exactly the
//! routes served. Body limits are per route ([`crate::config::limits`]).
//! Unknown paths and methods answer in the API's error format too.

pub mod admin;
pub mod agent;
pub mod audit;
pub mod cohorts;
pub mod events;
pub mod fleet;
pub mod hosts;
pub mod ops;
pub mod report;
pub mod rollouts;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use sluice_api::rollout::Reason;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::config::limits;
use crate::error::ApiError;
use crate::replica::Replica;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sluice",
        description = "Roll out fleet-wide infrastructure changes gradually, watched by health gates, stoppable and reversible at any moment."
    ),
    modifiers(&BearerAuth),
    // Listed for clients although no body names them: the states counted in
    // `RolloutDetail.hosts` and the actions of `/v1/rollouts/{id}/{action}`.
    components(schemas(sluice_api::rollout::HostState, sluice_api::rollout::Action)),
    tags(
        (name = "agent", description = "The one call an agent makes"),
        (name = "rollouts", description = "Plans, rollouts and operator actions"),
        (name = "hosts", description = "The inventory and pull-only integrations"),
        (name = "admin", description = "Components, the freeze, tokens, the change budget and webhooks"),
        (name = "dashboard", description = "Signing in to the dashboard"),
        (name = "ops", description = "Health, readiness, metrics, the cluster and this document"),
    )
)]
struct ApiDoc;

/// Declares the bearer token scheme the endpoints refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// A route with its own body limit.
fn limited(
    (schemas, paths, router): UtoipaMethodRouter<AppState>,
    bytes: usize,
) -> UtoipaMethodRouter<AppState> {
    (schemas, paths, router.layer(DefaultBodyLimit::max(bytes)))
}

/// The endpoints a leader's term answers (everything but [`ops_routes`]).
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(limited(routes!(agent::checkin), limits::CHECKIN))
        .routes(limited(routes!(agent::enroll), limits::CHECKIN))
        .routes(limited(
            routes!(rollouts::list, rollouts::create),
            limits::PLAN,
        ))
        .routes(routes!(rollouts::detail))
        .routes(routes!(rollouts::start))
        .routes(routes!(rollouts::pause))
        .routes(routes!(rollouts::resume))
        .routes(routes!(rollouts::advance))
        .routes(routes!(rollouts::approve))
        .routes(routes!(rollouts::abort))
        .routes(routes!(rollouts::rollback))
        .routes(routes!(rollouts::events))
        .routes(routes!(report::report))
        .routes(routes!(hosts::list))
        .routes(routes!(hosts::detail))
        .routes(routes!(hosts::desired))
        .routes(routes!(hosts::reenroll))
        .routes(limited(routes!(hosts::import), limits::IMPORT))
        .routes(routes!(hosts::ansible))
        .routes(routes!(admin::components))
        .routes(routes!(admin::set_stable))
        .routes(routes!(admin::freeze, admin::freeze_on, admin::freeze_off))
        .routes(routes!(admin::list_tokens, admin::create_token))
        .routes(routes!(admin::revoke_token))
        .routes(routes!(fleet::budget, fleet::set_budget))
        .routes(routes!(fleet::pin, fleet::unpin))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::remove))
        .routes(routes!(webhooks::test))
        .routes(routes!(audit::list))
        .routes(routes!(cohorts::cohorts))
        .routes(routes!(crate::dashboard::link::create))
}

/// The endpoints every replica answers itself, leader or not.
fn ops_routes() -> OpenApiRouter<Arc<Replica>> {
    OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(ops::cluster))
        .routes(routes!(events::events))
}

/// The OpenAPI document of everything served, as JSON.
pub fn document() -> String {
    let (_, mut openapi) = api_routes().split_for_parts();
    let (_, ops) = ops_routes().split_for_parts();
    openapi.merge(ops);
    document_rate_limit(&mut openapi);
    serde_json::to_string_pretty(&openapi).unwrap_or_else(|error| {
        tracing::error!(%error, "serialising the OpenAPI document");
        "{}".to_owned()
    })
}

/// Adds the 429 of the per-token rate ([`crate::admission::TokenRate`]) to
/// every operation that takes a token, but the agents'
/// (whose check-in documents its own 429, the check-in queue's).
fn document_rate_limit(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{header::Header, ContentBuilder, Object, Ref, ResponseBuilder, Type};
    let response = ResponseBuilder::new()
        .description("this token is past its rate of requests (sluice server --api-rate): come back after Retry-After")
        .header(
            "Retry-After",
            Header::new(Object::with_type(Type::Integer)),
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    for (path, item) in openapi.paths.paths.iter_mut() {
        if path.starts_with("/v1/agent/") {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                operation
                    .responses
                    .responses
                    .entry("429".to_owned())
                    .or_insert_with(|| response.clone().into());
            }
        }
    }
}

/// The API and the dashboard beside it, over a leader's memory.
pub fn api(state: AppState) -> Router {
    let (router, _) = api_routes().split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits::DEFAULT))
        .with_state(state.clone())
        .merge(crate::dashboard::router(state))
}

/// What a replica serves: its own endpoints, and everything else answered
/// by the leader ([`Replica::dispatch`]), each request's client address
/// resolved first ([`crate::audit::resolve`]). On the embedded store the one
/// term lasts as long as the process: its router is merged in, and requests
/// reach it without a dispatch.
pub fn front(replica: Arc<Replica>) -> Router {
    let (ops, _) = ops_routes().split_for_parts();
    let key = replica.forward_key();
    let router = match replica.lasting_term() {
        Some(term) => ops.with_state(replica).merge(term.router.clone()),
        None => ops
            .route(
                crate::replica::batch::PATH,
                axum::routing::post(crate::replica::batch::answer)
                    .layer(DefaultBodyLimit::max(crate::replica::batch::MAX_BODY)),
            )
            .fallback(crate::replica::dispatch)
            .with_state(replica),
    };
    // A 5xx is logged once, by `ApiError` with its cause, at WARN; the
    // layer's own line of it (ERROR by default) would double every one, a
    // flood while the database is away and every check-in is answered 503.
    // Spans leave out a sign-in link's nonce.
    router
        .layer(axum::middleware::from_fn_with_state(
            key,
            crate::audit::resolve,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(crate::dashboard::link::span::<axum::body::Body>)
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
}

/// The reason given for an operator action, trimmed; a blank one is refused,
/// since it goes in the event log. `to` says what it is for ("pause a
/// rollout").
pub(crate) fn required_reason(reason: Reason, to: &str) -> Result<String, ApiError> {
    reason_text(&reason.reason, to)
}

/// [`required_reason`] of a reason given as text (in a token's request, or
/// the `reason` parameter of an import).
pub(crate) fn reason_text(reason: &str, to: &str) -> Result<String, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::bad_field(
            "reason",
            format!("a reason is required to {to}: say why, it goes in the event log"),
        ));
    }
    Ok(reason.to_owned())
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no endpoint at {}; the API is described at /v1/openapi.json",
        uri.path()
    ))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} does not take {method}; see /v1/openapi.json for its methods",
        uri.path()
    ))
}
