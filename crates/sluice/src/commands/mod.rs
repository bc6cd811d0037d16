//! One module per `sluice` subcommand group.

pub mod admin;
pub mod audit;
pub mod budget;
pub mod cluster;
pub mod connect;
pub mod dashboard;
pub mod db;
pub mod demo;
pub mod events;
pub mod hosts;
pub mod output;
pub mod plan;
pub mod rollout;
pub mod server;
pub mod simulate;
pub mod webhook;
