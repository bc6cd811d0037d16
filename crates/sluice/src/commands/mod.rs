//! One module per `sluice` subcommand group.

pub mod plan;
