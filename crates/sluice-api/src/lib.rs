//! sluice's HTTP API (v1) wire types: what travels between the server, the
//! agent, the CLI and the tests, as JSON.
//!
//! These types are the public contract of `/v1`; they deliberately do not
//! reuse `sluice-core`'s internal types, so that the engine can change
//! without changing the wire. Timestamps are RFC 3339 strings (UTC).
//!
//! Layout: [`agent`] (the check-in), [`rollout`] (operators' view and
//! actions), [`host`] (inventory), [`admin`] (components, freeze, tokens),
//! [`audit`] (the audit log), [`fleet`] (the change budget and pins),
//! [`webhook`] (notifications), [`cluster`] (the replicas and their leader), [`dashboard`] (one-time
//! sign-in links),
//! [`error`] (the error body every endpoint shares), [`vocabulary`] (the
//! closed sets of words: states, phases, actions, roles). Re-exported from
//! `sluice-types`: [`HostId`] and [`duration`], the one duration grammar of
//! plans and the agent's configuration.

pub mod admin;
pub mod agent;
pub mod audit;
pub mod cluster;
pub mod dashboard;
pub mod error;
pub mod fleet;
pub mod host;
pub mod rollout;
pub mod schema;
pub mod vocabulary;
pub mod webhook;

pub use sluice_types::{duration, HostId};

/// Derives the schema for the OpenAPI document when the `openapi` feature is on.
macro_rules! wire {
    ($item:item) => {
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        $item
    };
}
pub(crate) use wire;
