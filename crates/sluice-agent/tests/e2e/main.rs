//! End-to-end tests of `sluice-agent` with real processes: the `sluice`
//! server, many agents, real shell commands, Puppet, dpkg, and Prometheus.

mod artifact;
mod canary;
mod dpkg;
mod drift;
mod enroll;
mod fleet_ops;
mod harness;
mod health_loop;
mod late_failure;
mod library;
mod once;
mod puppet;
mod restart;
mod rollout;
mod secrets;
mod self_upgrade;
mod servers;
mod tls;
