//! Test support for the sluice workspace, in one place: a dev-dependency of
//! every crate whose tests run against a server, never a normal dependency.
//!
//! - [`sandbox`]: the real `sluice` binary as a server process (port 0, temp
//!   data dir, SIGKILL and restart), the CLI pointed at it, and [`Run`], a
//!   finished CLI run;
//! - [`app`] (feature `app`): the server in process, `sluice_server::Application`
//!   in a runtime of its own, and [`app::TestApp`], whose methods are requests;
//! - [`browse`]: [`browse::visit`], a link followed as a browser would;
//! - [`wait`]: [`wait_for`] and [`wait_for_blocking`], polling with a
//!   deadline instead of sleeping;
//! - [`plan`]: [`Plan`], a typed builder of plan files;
//! - [`files`]: [`FileServer`], a small HTTP server of files (artifacts);
//! - [`tls`]: a private CA and a server certificate for the HTTPS tests.
//!
//! Without `app` the kit needs only the wire types and the client, so the
//! agent's tests do not build the server, the store or a database driver.

#[cfg(feature = "app")]
pub mod app;
pub mod browse;
pub mod files;
pub mod plan;
pub mod sandbox;
pub mod tls;
pub mod wait;

pub use files::FileServer;
pub use plan::{Amount, Gate, OnFailure, Plan, Stage};
pub use sandbox::{Preview, Run, Sandbox};
pub use wait::{wait_for, wait_for_blocking, DEADLINE};
