//! The audit log: who did what, when, from where and why.
//!
//! Every mutating action of an API caller writes one entry
//! ([`Caller::audit`]) in the same batch as the action's own writes, so the
//! group commit makes both durable in one transaction: no action without
//! its entry, no entry of an action that did not happen. The actor is the
//! token (its id, name and role; never its secret), the source the
//! client's IP address.
//!
//! The source is resolved once per request, by [`resolve`] in front of
//! every route, and kept as the request's [`Source`]: the peer address of
//! the connection, unless the request was forwarded by another replica,
//! which passes on the address it saw in [`FORWARDED_FOR`] together with
//! the cluster's forwarding key ([`FORWARD_KEY`], a secret every replica
//! reads from the database and no client knows). Without the right key the
//! header is ignored, so an agent or an API client cannot claim another
//! address; both headers are removed from every request before it goes on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Extensions, HeaderName};
use axum::middleware::Next;
use axum::response::Response;
use jiff::Timestamp;
use sluice_api::vocabulary::AuditKind;
use sluice_store::{AuditRecord, Write};

use crate::auth::Caller;
use crate::dashboard::session::constant_time_eq;
use crate::vocabulary;

/// The client's address, as a forwarding replica passes it on.
pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-sluice-forwarded-for");
/// The cluster's forwarding key, proving [`FORWARDED_FOR`] comes from a replica.
pub const FORWARD_KEY: HeaderName = HeaderName::from_static("x-sluice-forward-key");

/// The client's address of a request (an extension set by [`resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source(pub IpAddr);

impl Source {
    /// The request's client address, if [`resolve`] found one.
    pub fn of(extensions: &Extensions) -> Option<IpAddr> {
        extensions.get::<Source>().map(|source| source.0)
    }
}

/// Marks a request another replica of the cluster sent, proven with the
/// forwarding key (an extension set by [`resolve`]).
#[derive(Debug, Clone, Copy)]
pub struct FromReplica;

/// The key replicas prove forwarded requests with; `None` on the embedded
/// store, which has no replicas (and so believes no forwarded address).
pub type ForwardKey = Option<Arc<str>>;

/// Sets the request's [`Source`]: the address a replica that forwarded it
/// passed on, if it proved itself with the forwarding key, else the
/// connection's peer; marks a request so proven [`FromReplica`]. Removes
/// both headers from the request.
pub async fn resolve(State(key): State<ForwardKey>, mut request: Request, next: Next) -> Response {
    let headers = request.headers_mut();
    let claimed = headers.remove(FORWARDED_FOR);
    let proof = headers.remove(FORWARD_KEY);
    let proven = matches!((&key, &proof), (Some(key), Some(proof))
            if constant_time_eq(proof.as_bytes(), key.as_bytes()));
    let forwarded = claimed
        .filter(|_| proven)
        .and_then(|claimed| claimed.to_str().ok()?.parse::<IpAddr>().ok());
    if proven {
        request.extensions_mut().insert(FromReplica);
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(address) = forwarded.or(peer) {
        request.extensions_mut().insert(Source(address));
    }
    next.run(request).await
}

impl Caller {
    /// The audit write of an action of this caller: `kind`, on `target`,
    /// for `reason`, with details in `data`. Push it with the action's own
    /// writes, once the action succeeded.
    pub fn audit(
        &self,
        at: Timestamp,
        kind: AuditKind,
        target: Option<&str>,
        reason: Option<&str>,
        data: serde_json::Value,
    ) -> Write {
        Write::Audit(self.audit_entry(at, kind, target, reason, data))
    }

    /// The entry [`Caller::audit`] writes.
    pub fn audit_entry(
        &self,
        at: Timestamp,
        kind: AuditKind,
        target: Option<&str>,
        reason: Option<&str>,
        data: serde_json::Value,
    ) -> AuditRecord {
        let token = self.token();
        AuditRecord {
            at,
            actor_id: token.id(),
            actor_name: token.actor.clone(),
            actor_role: vocabulary::stored_role(token.role),
            source: self.1.map(|address| address.to_string()),
            kind: kind.as_str().to_owned(),
            target: target.map(str::to_owned),
            reason: reason.map(str::to_owned),
            data,
        }
    }
}
