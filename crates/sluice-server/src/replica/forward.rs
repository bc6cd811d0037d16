//! Forwarding a request to the leader: a replica that does not lead passes
//! every request it does not answer itself on to the replica that does, and
//! its answer back, bodies streamed both ways.
//!
//! A forwarded request carries [`FORWARDED_BY`]: a replica that receives one
//! and does not lead (the lease moved on meanwhile) answers 503 rather than
//! forwarding it again, so that a request never circles.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderName};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Names the replica that forwarded a request.
pub const FORWARDED_BY: &str = "x-sluice-forwarded-by";

/// How long forwarding waits for the leader to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP client replicas forward with: kept-alive connections to the
/// leader, trusting `ca` (PEM) besides the system's roots when the leader
/// serves HTTPS with a certificate of a private CA.
pub fn client(ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("sluice-server/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca {
        let pem = std::fs::read(path)
            .with_context(|| format!("--peer-ca-cert: cannot read {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--peer-ca-cert {}: not PEM certificates", path.display()))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .context("building the HTTP client that forwards to the leader")
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::HOST,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

/// Sends `request` to the leader at `leader` (its advertised URL) and
/// returns its answer; 503 when the leader cannot be reached.
pub async fn forward(
    client: &reqwest::Client,
    leader: &str,
    replica: &str,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let url = format!("{}{path}", leader.trim_end_matches('/'));
    let mut outgoing = client.request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let sent = outgoing
        .header(FORWARDED_BY, replica)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(%leader, %error, "forwarding to the leader failed");
            return ApiError::Unavailable(format!(
                "this replica does not lead and the leader at {leader} cannot be reached ({error}); retry in a moment"
            ))
            .into_response();
        }
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|error| {
            ApiError::Internal(format!("relaying the leader's answer: {error}")).into_response()
        })
}
