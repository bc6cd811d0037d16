//! sluice-agent: the agent that runs on every host. It checks in with the
//! sluice server, applies the desired version of each component it manages
//! (or, in facts mode, hands it to Puppet/Facter), first downloading and
//! verifying the artifact its payload names, runs the health check after
//! the apply and again while the version runs, and reports the outcome (a
//! change of health at once), and drift: a host found at another version
//! than the desired one it ran, outside an apply (re-applied only with
//! `enforce`). It upgrades itself: the component named
//! [`AGENT_COMPONENT`] (`sluice-agent`) is its own package, whose apply
//! outlives the agent the package restarts, and is taken over by the next
//! agent ([`OwnApply`]); an agent whose binary that apply replaced runs the
//! new one ([`Exit::Replaced`]).
//!
//! The binary reads `agent.toml` ([`FileConfig`]) and runs one [`Agent`]
//! with [`ShellOps`]. The library also serves `sluice demo`, which runs
//! hundreds of simulated agents in one process: build an [`AgentConfig`] in
//! memory (no file, `state_file: None`), share one [`Client`] among all
//! agents, and plug in a simulated host by implementing [`HostOps`]. An
//! agent checks in with the [`Servers`] of its config, through the client's
//! pool, token and timeouts. An agent with only an enrollment token first
//! gets a token of its own ([`enroll`]).
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::path::Path;
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use sluice_agent::{Agent, AgentConfig, ComponentConfig, Desired, Failure, HostOps, Mode};
//! use sluice_client::Client;
//!
//! /// A host that "installs" a version by remembering it.
//! #[derive(Debug)]
//! struct SimulatedHost(Mutex<String>);
//!
//! impl HostOps for SimulatedHost {
//!     async fn installed(&self, _: &ComponentConfig, _: Option<&Desired>) -> Result<String, Failure> {
//!         Ok(self.0.lock().map_err(|_| "poisoned".to_owned())?.clone())
//!     }
//!     async fn apply(&self, _: &ComponentConfig, desired: &Desired, _: Option<&Path>) -> Result<(), Failure> {
//!         tokio::time::sleep(Duration::from_millis(500)).await;
//!         *self.0.lock().map_err(|_| "poisoned".to_owned())? = desired.version.clone();
//!         Ok(())
//!     }
//!     async fn health(&self, _: &ComponentConfig, _: &Desired) -> Result<(), Failure> {
//!         Ok(())
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // One HTTP client (one connection pool) for every simulated agent.
//! let client = Client::builder("http://127.0.0.1:7070").token("agent-token").build()?;
//! let mut agents = tokio::task::JoinSet::new();
//! for i in 0..300 {
//!     let config = AgentConfig {
//!         servers: client.server_url().clone().into(),
//!         id: format!("sim-{i}.example.net").parse()?,
//!         interval: Duration::from_secs(5),
//!         labels: BTreeMap::from([("role".to_owned(), "web".to_owned())]),
//!         components: vec![ComponentConfig {
//!             name: "docker-engine".into(),
//!             mode: Mode::Apply,
//!             timeout: Duration::from_secs(60),
//!             health_interval: None,
//!             enforce: false,
//!         }],
//!         state_file: None,
//!         // Nothing to download: the simulated payloads name no artifact.
//!         artifacts: None,
//!     };
//!     let host = Arc::new(SimulatedHost(Mutex::new("1.12.6".into())));
//!     let agent = Agent::new(config, client.clone(), host)?.with_seed(i);
//!     agents.spawn(agent.run(std::future::pending()));
//! }
//! agents.join_all().await;
//! # Ok(()) }
//! ```
//!
//! Architecture invariant: the agent depends on the wire types and the HTTP
//! client only — no store, server, engine or database driver — and it never
//! applies a version the server did not name in its latest answer.

mod agent;
mod artifact;
pub mod cli;
pub mod config;
pub mod enroll;
mod facts;
mod ops;
mod state;
mod upgrade;

pub use agent::{backoff_delay, Agent, AgentError, Exit};
pub use artifact::{Artifacts, DEFAULT_ARTIFACT_DIR, DEFAULT_MAX_SIZE};
pub use config::{
    AgentConfig, Commands, ComponentConfig, ConfigError, FileConfig, Mode, Servers, ServersError,
};
pub use facts::{facts_json, write_facts};
pub use ops::{environment, run_shell, Failure, HostOps, Run, ShellOps, TAIL_BYTES, TAIL_LINES};
pub use sluice_api::agent::{Desired, ReportState};
pub use sluice_client::{Client, ServerUrl};
pub use state::{write_atomically, AgentState, ComponentState, StateError};
pub use upgrade::{Binary, OwnApply, AGENT_COMPONENT};
