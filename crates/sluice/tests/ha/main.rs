//! Faults of a highly available control plane, with real processes and a
//! real PostgreSQL: three `sluice server` replicas on one fresh database,
//! the 10k fixture imported, simulated agents checking in through every
//! replica in turn (`sluice_testkit::Agents`), operators acting through
//! standbys, and real signals to the leader.
//!
//! - `failover`: every stage tells exactly its quota, never more at any
//!   sample, through any replica; a pause acknowledged by a standby admits
//!   no further host; SIGKILL of the leader: a standby takes over and the
//!   rollout moves again, no acknowledged report lost; the killed replica,
//!   restarted, rejoins as a standby;
//! - `stalled`: SIGSTOP of the leader in the middle of a commit, past its
//!   lease: a successor takes over; SIGCONT: the old leader steps down and
//!   nothing it tries to write lands;
//! - `webhooks`: the leader killed mid-delivery: the standby taking over
//!   delivers from the stored cursor, nothing lost, one duplicate.
//!
//! Restarting PostgreSQL under load is `tests/postgres_restart.rs`, a
//! binary of its own so that it never pulls the database from under the
//! tests of another binary. The tests here run one at a time: each runs
//! three replicas and their agents, and a 2-second lease wants the CPU it
//! was promised.
//!
//! `TEST_LOG=1` shows the replicas' logs.

mod failover;
mod stalled;
mod support;
mod webhooks;

/// Held by each test for its whole run (see the crate's documentation).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
