//! End-to-end tests of the real `sluice` binary: each test starts
//! `sluice server` in a [`sluice_testkit::Sandbox`] (port 0, temp data dir), plays
//! agents over HTTP with the typed client (`fleet`), drives rollouts with
//! the CLI, and crashes the server with SIGKILL where durability is the
//! point.
//!
//! - `durability`: acknowledged check-ins survive SIGKILL;
//! - `crash_rollout`: a rollout survives SIGKILL at random moments without
//!   admitting beyond a quota or forgetting a host it told the target;
//! - `full_rollout`: each stage admits exactly the preview's hosts, pause
//!   holds, rollback reverts, a completed rollout changes only the hosts it covered;
//! - `dashboard`: the dashboard in headless Chromium: links, sign-in, the
//!   pause button, live updates, screenshots;
//! - `report`: the retrospective of a rollout with failures in one role, a
//!   failing gate, a pause, a SIGKILL and a rollback equals what its event
//!   log says;
//! - `forwarding_secrets`: a standby forwards check-ins, operator calls and
//!   a one-time sign-in link to the leader, and no log shows a secret;
//! - `audit`: the client's address in the audit log through a standby
//!   replica on PostgreSQL, and a client that claims another one;
//! - `checkin_batches`: a standby forwards the check-ins that arrive
//!   together as one batch, and each agent gets its own answer (its desired
//!   versions, or its own refusal), its report durable on the leader;
//! - `events`: `sluice events --follow` prints every event once, in order,
//!   across a SIGKILL and a graceful restart of the server;
//! - `db_copy`: a rollout under way moves from SQLite to PostgreSQL with
//!   `sluice db copy` and finishes there, each stage admitting exactly the
//!   preview's hosts;
//! - `schedules`: a rollout created with `--start-at` starts by itself,
//!   across a SIGKILL and restart before its time; an `after:` chain starts
//!   in turn, and a rollout after a rolled-back one never starts and says why;
//! - `api_schema`: schemathesis sends requests generated from
//!   `/v1/openapi.json`: those valid by the document are accepted, every
//!   answer is as the document says, none is a 5xx;
//! - `webhooks`: deliveries to a real receiver, killed and restarted
//!   mid-stream, and through a SIGKILL of the server: none lost, none out
//!   of order, every one signed, duplicates only after a kill.
//!
//! `TEST_LOG=1` shows the servers' logs; `E2E_SEED=N` replays the random
//! crash moments of a failed run.

mod api_schema;
mod audit;
mod checkin_batches;
mod crash_rollout;
mod dashboard;
mod db_copy;
mod durability;
mod events;
mod fleet;
mod forwarding_secrets;
mod full_rollout;
mod report;
mod schedules;
mod webhooks;

use sluice_testkit::sandbox::SandboxBuilder;
use sluice_testkit::{wait_for, Sandbox, DEADLINE};

/// Two `sluice server` replicas on the PostgreSQL database at `url`: `a`,
/// which starts first and leads, and `b`, with `a`'s admin token, returned
/// once it answers as `a`'s standby. `configure` adds to each one's
/// arguments.
async fn leader_and_standby(
    url: &str,
    configure: impl Fn(SandboxBuilder) -> SandboxBuilder,
) -> (Sandbox, Sandbox) {
    let replica = |id: &str| {
        configure(
            Sandbox::builder()
                .arg("--database-url")
                .arg(url)
                .arg("--replica-id")
                .arg(id),
        )
    };
    let leader = replica("a").start().await;
    let standby = replica("b").data_from(leader.data_dir()).start().await;
    let client = standby.client();
    // A standby may answer 429 past `--api-rate`: one more "not yet".
    wait_for("b to answer as a standby of a", DEADLINE, || async {
        match client.cluster().await {
            Ok(view) if view.answered_by == "b" && view.leader.as_deref() == Some("a") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    (leader, standby)
}
