//! PostgreSQL restarted under load, with three `sluice server` replicas on
//! it and agents checking in through all of them: while the database is
//! down every replica answers 503 (`/readyz` too) and the agents fail
//! static; once it is back the replicas recover by themselves — the same
//! processes, none restarted — one leads, the rollout moves on, and every
//! report acknowledged before, during or after is in the database.
//!
//! A binary of its own: it stops the test server's PostgreSQL
//! (`pg_ctlcluster VERSION NAME stop`, then `start`), which no other test
//! running beside it in the same binary could survive. It needs the right
//! to do so (root or the postgres user on the machine PostgreSQL runs on),
//! and says so when it lacks it.

// Shared with `tests/ha`, which uses all of it.
#[allow(dead_code)]
#[path = "ha/support.rs"]
mod support;

use std::process::Command;
use std::sync::Arc;

use sluice_store::testing::TempPgDatabase;
use sluice_testkit::{wait_for, Agents, Stage, DEADLINE};

use crate::support::{detail, progress, wait_for_progress};

const ALL: [usize; 3] = [0, 1, 2];

/// The PostgreSQL cluster (`pg_lsclusters`) serving the test database.
struct PgCluster {
    version: String,
    name: String,
    /// Stopped by this test and not started again yet.
    down: bool,
}

impl PgCluster {
    /// The cluster listening on the port of `url`.
    fn serving(url: &str) -> PgCluster {
        // postgres://USER@HOST:PORT/DB
        let authority = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default();
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let port = host
            .rsplit_once(':')
            .map_or("5432", |(_, port)| port)
            .to_owned();
        let listed = Command::new("pg_lsclusters")
            .arg("--no-header")
            .output()
            .unwrap_or_else(|error| {
                panic!("this test restarts PostgreSQL with pg_ctlcluster, but pg_lsclusters cannot run: {error}")
            });
        let text = String::from_utf8_lossy(&listed.stdout);
        let found = text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [version, name, p, ..] if p == port => Some((version.to_owned(), name.to_owned())),
                _ => None,
            }
        });
        let (version, name) = found.unwrap_or_else(|| {
            panic!("no PostgreSQL cluster of pg_lsclusters listens on port {port}, the test database's:\n{text}")
        });
        PgCluster {
            version,
            name,
            down: false,
        }
    }

    fn ctl(&self, action: &[&str]) {
        let output = Command::new("pg_ctlcluster")
            .args([self.version.as_str(), self.name.as_str()])
            .args(action)
            .output()
            .unwrap_or_else(|error| panic!("running pg_ctlcluster: {error}"));
        assert!(
            output.status.success(),
            "pg_ctlcluster {} {} {}: {}\n{}{}",
            self.version,
            self.name,
            action.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops PostgreSQL, ending every connection at once.
    fn stop(&mut self) {
        self.down = true;
        self.ctl(&["stop", "--mode", "fast"]);
    }

    fn start(&mut self) {
        self.ctl(&["start"]);
        self.down = false;
    }
}

impl Drop for PgCluster {
    /// A failing test never leaves PostgreSQL down for the tests after it.
    fn drop(&mut self) {
        if self.down {
            self.start();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_answer_503_while_postgresql_restarts_and_recover_by_themselves() {
    let db = TempPgDatabase::create().await;
    let mut postgres = PgCluster::serving(db.url());
    let (mut cluster, fleet) = support::cluster_with_fleet(&db).await;
    let plan = cluster.write(
        "plan.yaml",
        support::plan(
            "ha-postgres-restart",
            [
                Stage::percent(30).named("thirty"),
                Stage::percent(100).named("all"),
            ],
        ),
    );
    let preview = cluster.preview(&plan, &support::fleet_10k()).await.stages;
    let id = cluster.start_rollout(2, &plan, "ha: CHG-3").await;
    let agents = Arc::new(support::agents(&cluster, &fleet));
    let watch = agents.watch(support::clients(&cluster, &ALL), &id, preview.clone());
    let playing = agents.start();
    wait_for_progress(&cluster, &ALL, &id, 20, "the rollout to get going").await;
    let pids: Vec<Option<u32>> = ALL.iter().map(|&i| cluster.replica(i).pid()).collect();
    let before = cluster.leadership(&ALL).await.expect("a leader");

    // Down: every replica says it cannot serve, and answers check-ins 503;
    // the agents fail static.
    let unavailable = |agents: &Agents| -> Vec<u64> {
        agents
            .tally()
            .iter()
            .map(|tally| tally.unavailable)
            .collect()
    };
    let before_503 = unavailable(&agents);
    postgres.stop();
    wait_for(
        "every replica to answer 503 while PostgreSQL is down",
        DEADLINE,
        || async {
            let mut seen = Vec::new();
            for index in ALL {
                match cluster.get(index, "/readyz").await {
                    Some((503, _)) => {}
                    other => seen.push((index, other)),
                }
            }
            if seen.is_empty() {
                Ok(())
            } else {
                Err(seen)
            }
        },
    )
    .await;
    wait_for(
        "check-ins through every replica to be answered 503",
        DEADLINE,
        || async {
            let now = unavailable(&agents);
            if now.iter().zip(&before_503).all(|(now, then)| now > then) {
                Ok(())
            } else {
                Err(now)
            }
        },
    )
    .await;
    let told_while_down = agents.told();

    // Back: the same processes serve again, one of them leads, the rollout
    // moves on.
    postgres.start();
    let recovered = cluster.wait_for_leader(&ALL, None).await;
    assert!(
        recovered.epoch >= before.epoch,
        "{recovered:?} after {before:?}"
    );
    wait_for("every replica to be ready again", DEADLINE, || async {
        let mut seen = Vec::new();
        for index in ALL {
            if let Err(why) = cluster.readiness(index).await {
                seen.push((index, why));
            }
        }
        if seen.is_empty() {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;
    for index in ALL {
        let server = cluster.replica_mut(index);
        assert!(server.is_running(), "{} exited", server.name());
    }
    let pids_after: Vec<Option<u32>> = ALL.iter().map(|&i| cluster.replica(i).pid()).collect();
    assert_eq!(pids_after, pids, "no replica was restarted");
    let moved = progress(&detail(&cluster, &ALL, &id).await.expect("the rollout"));
    wait_for_progress(
        &cluster,
        &ALL,
        &id,
        moved,
        "the rollout to move after the restart",
    )
    .await;
    agents.wait_rounds(1).await;
    playing.stop().await;
    let watched = watch.stop().await;
    watched.assert_within_stages();
    assert!(told_while_down.is_subset(&agents.told()));
    support::no_acknowledged_report_lost(&agents, &db, &id).await;
    eprintln!(
        "postgres restart: {before:?} then {recovered:?}; {} rounds, per replica: {:?}",
        agents.rounds(),
        agents.tally()
    );
}
