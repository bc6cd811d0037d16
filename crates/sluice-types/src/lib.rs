//! sluice-types: the small value types every sluice crate shares, each valid
//! by construction (parse, don't validate), so that the fleet file, the API,
//! the CLI and the agent accept and refuse exactly the same inputs.
//!
//! Layout: [`host_id`] (a host's id, its FQDN); [`duration`] (the one
//! duration grammar of plans and the agent's configuration).
//!
//! Architecture invariant: this crate depends on nothing of sluice's and
//! does no IO; the engine (`sluice-core`), the wire types (`sluice-api`) and
//! through them the agent all depend on it.

pub mod duration;
pub mod host_id;

pub use host_id::{HostId, InvalidHostId};
