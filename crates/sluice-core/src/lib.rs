//! sluice-core: the pure engine of sluice.
//!
//! Layout:
//! - [`duration`], [`percent`]: the plan's small value types, valid by construction.
//! - [`selector`]: Kubernetes label selectors.
//! - [`plan`]: the plan model and its parser, with every error located.
//! - [`fleet`]: hosts and the fleet file format; [`strmap`]: their compact,
//!   shared label and component maps.
//! - [`hash`]: the stable rank that orders hosts inside a stratum.
//! - [`selection`]: strata, quotas, and the stage-by-stage preview.
//! - [`rollout`]: the rollout state machine, driven by events and an injected clock,
//!   and the cohorts of its canary analysis.
//! - [`compare`]: judging a comparison gate from the cohorts' per-host values.
//! - [`arbiter`]: admission across rollouts sharing a fleet: the change
//!   budget, one change per host at a time, pins.
//!
//! Architecture invariant: nothing here does IO, spawns tasks, reads the
//! clock or knows about HTTP or SQL. Time comes in with every event, so the
//! server and the simulator run exactly this code.

pub mod arbiter;
pub mod compare;
pub mod duration;
pub mod fleet;
pub mod hash;
pub mod percent;
pub mod plan;
pub mod rollout;
pub mod selection;
pub mod selector;
pub mod strmap;
