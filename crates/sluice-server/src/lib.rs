//! sluice-server: the control plane behind `sluice server`.
//!
//! It keeps the fleet, the components, the rollouts and the freeze in memory
//! ([`world`]), answers agents' check-ins and operators' requests from there
//! ([`routes`]), and makes every change durable through one writer task that
//! commits batches to the [`sluice_store::Store`] (group commit, [`commit`])
//! before any answer that depends on it is sent. The [`controller`] drives
//! the rollouts through time: ticks, bakes, timeouts, windows and the
//! external gates ([`gates`]).
//!
//! Layout:
//! - [`startup`]: [`Application::build`] opens the store, binds the
//!   listener and makes the process a [`replica::Replica`];
//!   [`Application::run_until_stopped`] serves until the shutdown future
//!   resolves, then drains and flushes.
//! - [`replica`]: the one replica that leads holds memory in a term and
//!   makes every decision; the others forward to it; the lease is kept by
//!   [`replica::leadership`].
//! - [`config`]: the server's settings; [`clock`]: the injectable clock.
//! - [`world`]: the in-memory state and every change to it, each change
//!   returning the store writes that make it durable.
//! - [`persist`]: how a rollout is split into a header and per-host records
//!   in the store, and put back together at start.
//! - [`commit`]: the group-commit writer.
//! - [`retro`]: the rollout retrospective: samples of hosts by state
//!   written with the group commit, and a rollout's record gathered for
//!   `sluice_sim::retro`.
//! - [`controller`] and [`gates`]: the loop that drives rollouts, and the
//!   Prometheus and HTTP gate evaluations.
//! - [`webhooks`]: the leader's delivery of the event log to webhooks.
//! - [`admission`]: back-pressure, the bound of the check-in queue.
//! - [`routes`]: the HTTP API, with [`auth`] (bearer tokens and roles),
//!   [`audit`] (the audit log's entries and the client's address),
//!   [`error`] (the one error type and its status mapping), [`extract`]
//!   (request extractors that fail with that error) and [`metrics`];
//!   [`follow`]: the events streams, which read the store on any replica.
//!
//! Architecture invariant: memory is changed and the matching writes are
//! queued under one lock, so the writer commits changes in the order they
//! happened; nothing is revealed to an agent before the writes it depends
//! on are durable.

pub mod admission;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod cohorts;
pub mod commit;
pub mod config;
pub mod controller;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod follow;
pub mod gates;
pub mod metrics;
pub mod persist;
pub mod replica;
pub mod retro;
pub mod routes;
pub mod startup;
pub mod state;
#[cfg(test)]
mod test_store;
pub mod vocabulary;
pub mod webhooks;
pub mod world;

use std::path::{Path, PathBuf};

pub use clock::{Clock, SystemClock};
pub use config::{Config, DatabaseUrl, ReplicaConfig, TlsFiles};
pub use startup::Application;

/// Where the first start writes the admin token: `<data-dir>/admin.token`.
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}
