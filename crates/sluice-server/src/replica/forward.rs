//! Forwarding a request to the leader: a replica that does not lead passes
//! every request it does not answer itself on to the replica that does, and
//! its answer back, bodies streamed both ways through hyper's pooled client
//! (kept-alive connections to the leader, rustls for an https leader).
//!
//! A forwarded request carries [`FORWARDED_BY`]: a replica that receives one
//! and does not lead (the lease moved on meanwhile) answers 503 rather than
//! forwarding it again, so that a request never circles. It also carries
//! the client's address as this replica saw it, with the cluster's
//! forwarding key that makes the leader believe it (see [`crate::audit`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Uri, Version};
use axum::response::{IntoResponse, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

use crate::audit::{ForwardKey, Source, FORWARDED_FOR, FORWARD_KEY};
use crate::error::ApiError;

/// Names the replica that forwarded a request.
pub const FORWARDED_BY: &str = "x-sluice-forwarded-by";

/// How long forwarding waits for the leader to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The client replicas forward with, and the key that proves a forwarded
/// request's client address.
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    key: ForwardKey,
}

impl Forwarder {
    /// The cluster's forwarding key (`None` on the embedded store).
    pub fn key(&self) -> ForwardKey {
        self.key.clone()
    }

    /// Sends `request` as it is, on a kept-alive connection to its host.
    pub async fn send(
        &self,
        request: Request,
    ) -> Result<Response, hyper_util::client::legacy::Error> {
        let response = self.client.request(request).await?;
        Ok(response.map(Body::new))
    }
}

/// The forwarding client: trusts the system's roots, and `ca` (PEM) when
/// the leader serves HTTPS with a certificate of a private CA; proves the
/// client addresses it passes on with `key`.
pub fn client(ca: Option<&Path>, key: ForwardKey) -> anyhow::Result<Forwarder> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system root rustls cannot use is one the leader cannot use.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca {
        let pem = std::fs::read(path)
            .with_context(|| format!("--peer-ca-cert: cannot read {}", path.display()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("--peer-ca-cert {}: not PEM certificates", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "--peer-ca-cert {}: no certificate in it",
            path.display()
        );
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("--peer-ca-cert {}: unusable", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("the TLS settings of forwarding")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Forwarder {
        client: Client::builder(TokioExecutor::new()).build(connector),
        key,
    })
}

/// Headers that belong to one connection, not to the request.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::HOST,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
    ] {
        headers.remove(name);
    }
}

/// Sends `request` to the leader at `leader` (its advertised URL) and
/// returns its answer; 503 when the leader cannot be reached.
pub async fn forward(
    forwarder: &Forwarder,
    leader: &str,
    replica: &str,
    request: Request,
) -> Response {
    let unreachable = |error: &dyn std::fmt::Display| {
        tracing::warn!(%leader, %error, "forwarding to the leader failed");
        ApiError::Unavailable(format!(
            "this replica does not lead and the leader at {leader} cannot be reached ({error}); retry in a moment"
        ))
        .into_response()
    };
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    parts.uri = match format!("{}{path}", leader.trim_end_matches('/')).parse::<Uri>() {
        Ok(uri) => uri,
        Err(error) => return unreachable(&error),
    };
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    if let Ok(id) = HeaderValue::from_str(replica) {
        parts
            .headers
            .insert(HeaderName::from_static(FORWARDED_BY), id);
    }
    // `audit::resolve` removed any such headers the client sent.
    if let (Some(key), Some(source)) = (&forwarder.key, Source::of(&parts.extensions)) {
        if let (Ok(key), Ok(source)) = (
            HeaderValue::from_str(key),
            HeaderValue::from_str(&source.to_string()),
        ) {
            parts.headers.insert(FORWARD_KEY, key);
            parts.headers.insert(FORWARDED_FOR, source);
        }
    }
    match forwarder.send(Request::from_parts(parts, body)).await {
        Ok(answer) => {
            let (mut parts, body) = answer.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body)
        }
        Err(error) => unreachable(&error),
    }
}
