//! Test support for the sluice workspace, in one place: a dev-dependency of
//! every crate whose tests run against a server, never a normal dependency.
//!
//! - [`server`]: the real `sluice` binary as a server process (port 0, temp
//!   data dir) and real signals to it: SIGKILL, SIGTERM, SIGSTOP, SIGCONT,
//!   restart on the same port;
//! - [`sandbox`]: one server with a client and the CLI pointed at it, and
//!   [`Run`], a finished CLI run;
//! - [`cluster`]: several replicas on one PostgreSQL database, who leads,
//!   their readiness;
//! - [`agents`]: simulated agents checking in through several servers in
//!   turn, remembering what they were told and which reports were
//!   acknowledged;
//! - [`app`] (feature `app`): the server in process, `sluice_server::Application`
//!   in a runtime of its own, and [`app::TestApp`], whose methods are requests;
//! - [`store`] (feature `app`): [`store::Hooked`], a real store whose commits
//!   a test holds or refuses, everything else delegated;
//! - [`browse`]: [`browse::visit`], a link followed as a browser would;
//! - [`chromium`] (feature `chromium`): headless Chromium through a real
//!   `chromedriver`, and the dashboard's sign-in form;
//! - [`wait`]: [`wait_for`] and [`wait_for_blocking`], polling with a
//!   deadline instead of sleeping;
//! - [`plan`]: [`Plan`], a typed builder of plan files;
//! - [`files`]: [`FileServer`], a small HTTP server of files (artifacts);
//! - [`receiver`]: [`WebhookReceiver`], a webhook receiver in its own
//!   process that records every delivery and can hang on one;
//! - [`prometheus`] (feature `prometheus`): a real Prometheus scraping
//!   the jobs a test gives it;
//! - [`tls`]: a private CA and a server certificate for the HTTPS tests.
//!
//! Without `app` the kit needs only the wire types and the client, so the
//! agent's tests do not build the server, the store or a database driver.

pub mod agents;
#[cfg(feature = "app")]
pub mod app;
pub mod browse;
#[cfg(feature = "chromium")]
pub mod chromium;
pub mod cluster;
pub mod files;
pub mod plan;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod receiver;
pub mod sandbox;
pub mod server;
#[cfg(feature = "app")]
pub mod store;
pub mod tls;
pub mod wait;

pub use agents::Agents;
pub use cluster::Cluster;
pub use files::FileServer;
pub use plan::{Amount, Gate, OnFailure, Plan, Stage};
pub use receiver::WebhookReceiver;
pub use sandbox::{Preview, Run, Sandbox};
pub use server::Server;
pub use wait::{wait_for, wait_for_blocking, DEADLINE};
