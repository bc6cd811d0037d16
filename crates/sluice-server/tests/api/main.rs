//! The HTTP API, end to end in one process: each test spawns the server on
//! port 0 with its own data directory (see `helpers`) and drives it with
//! HTTP requests (the dashboard's pages and forms in `dashboard`; the same
//! server on PostgreSQL in `postgres`).

mod admin;
mod audit;
mod backpressure;
mod checkin;
mod cluster;
mod compare;
mod controller;
mod dashboard;
mod durability;
mod enroll;
mod errors;
mod events;
mod fleet_ops;
mod helpers;
mod hosts;
mod openapi;
mod postgres;
mod prometheus;
mod report;
mod rollouts;
mod schedules;
mod stable;
mod webhooks;
