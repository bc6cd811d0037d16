//! sluice-sim: rehearse a plan against a virtual fleet in virtual time.
//!
//! The simulator runs sluice-core's [`Rollout`](sluice_core::rollout::Rollout)
//! — the very engine the server runs — fed the way the server feeds it
//! (inventory, check-ins, controller ticks, approvals), while simulated
//! agents check in with jitter, apply what they are told and misbehave as
//! the [`Fault`]s say. It reports what would happen: the stages over time,
//! hosts changed and failed (the blast radius) by role, and how long sluice
//! takes to detect a failure and to halt.
//!
//! Layout:
//! - [`fault`]: `SELECTOR:KIND[:p=SHARE]` faults.
//! - `gates`: comparison and Prometheus gates on a simulated metric.
//! - [`run`]: the discrete-event loop and its [`Config`].
//! - [`report`]: the [`Report`] and its text rendering.
//! - [`push`]: a change pushed to every selected host at once, the loop's
//!   figures without the loop ([`push_at_once`]).
//! - [`retro`]: the rollout retrospective (`sluice rollout report`), of a
//!   real rollout or of a simulation ([`rehearse`]).
//!
//! Architecture invariant: pure, like sluice-core — no IO, no clock, no
//! threads; the same plan, fleet and config give the same report.

pub mod fault;
mod gates;
pub mod push;
pub mod report;
pub mod retro;
pub mod run;

pub use fault::{Fault, FaultError, FaultKind};
pub use push::{push_at_once, Push};
pub use report::Report;
pub use run::{rehearse, simulate, Config, Rehearsal};
