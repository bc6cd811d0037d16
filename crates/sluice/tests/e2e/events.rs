//! Issue 16, point 4: `sluice events --follow --output json` tails every
//! rollout's events live. The real CLI follows a real server while events
//! are made; the server is killed with SIGKILL, restarted on the same data
//! dir, then stopped gracefully (SIGTERM, with the stream open) and started
//! again, events made each time it is back; the follower carries on by
//! itself and ends up having printed every event of the log exactly once,
//! in seq order — the log as `GET /v1/events` pages it. On PostgreSQL the
//! follower tails a standby, which serves the stream from the database
//! itself, and goes on through the leader's SIGKILL and the standby's
//! takeover; a standby counts each token's rate (`--api-rate`) on what it
//! answers itself.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use sluice_api::rollout::EventView;
use sluice_client::{Client, EventFilter};
use sluice_store::testing::TempPgDatabase;
use sluice_testkit::{wait_for, Cluster, Plan, Sandbox, Stage, DEADLINE};

/// `sluice events --follow --output json` as a process, its lines kept.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    /// Runs `command`, which is `sluice events --follow --output json`
    /// against some server.
    fn start(mut command: Command) -> Follower {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sluice events --follow");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let keep = |stream: Box<dyn std::io::Read + Send>, into: &Arc<Mutex<Vec<String>>>| {
            let into = Arc::clone(into);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    into.lock().expect("lines").push(line);
                }
            });
        };
        keep(Box::new(child.stdout.take().expect("stdout")), &lines);
        keep(Box::new(child.stderr.take().expect("stderr")), &errors);
        Follower {
            child,
            lines,
            errors,
        }
    }

    /// The events printed so far.
    fn printed(&self) -> Vec<EventView> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|error| {
                    panic!("sluice events printed {line:?}, not an event: {error}")
                })
            })
            .collect()
    }

    /// Waits until the follower printed exactly the whole log; returns it.
    async fn caught_up(&mut self, client: &Client) -> Vec<EventView> {
        let errors = Arc::clone(&self.errors);
        let child = &mut self.child;
        let lines = &self.lines;
        wait_for("the follower to print the whole log", DEADLINE, || {
            let running = child.try_wait().ok().flatten().is_none();
            let printed = lines.lock().expect("lines").len();
            let errors = errors.lock().expect("errors").join("\n");
            async move {
                assert!(running, "sluice events --follow exited: {errors}");
                let log = whole_log(client).await.map_err(|error| error.to_string())?;
                if printed == log.len() {
                    Ok(log)
                } else {
                    Err(format!("printed {printed} of {} events", log.len()))
                }
            }
        })
        .await
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /v1/events` paged from the start.
async fn whole_log(client: &Client) -> Result<Vec<EventView>, sluice_client::ClientError> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .log_events(&EventFilter {
                after: Some(after),
                limit: Some(2),
                ..EventFilter::default()
            })
            .await?;
        let Some(last) = page.events.last() else {
            return Ok(all);
        };
        after = last.seq;
        all.extend(page.events);
    }
}

/// Makes events: a rollout of a component of its own (`created`), the
/// freeze turned on and off (fleet-wide).
async fn make_events(client: &Client, round: usize) {
    let plan = Plan::new(
        &format!("round-{round}"),
        &format!("component-{round}"),
        "2.0",
    )
    .stages([Stage::percent(100)]);
    client
        .create_rollout(&plan.to_string())
        .await
        .expect("creating a rollout");
    client
        .freeze_on(&format!("round {round}"))
        .await
        .expect("freezing");
    client
        .freeze_off(&format!("round {round} over"))
        .await
        .expect("lifting the freeze");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_follower_prints_every_event_once_in_order_across_server_restarts() {
    let mut sandbox = Sandbox::start().await;
    make_events(sandbox.client(), 0).await;
    let mut follower =
        Follower::start(sandbox.command(&["events", "--follow", "--output", "json"]));
    // The newest events first, then what is made while it follows.
    follower.caught_up(sandbox.client()).await;
    make_events(sandbox.client(), 1).await;
    follower.caught_up(sandbox.client()).await;

    sandbox.kill9();
    sandbox.restart().await;
    make_events(sandbox.client(), 2).await;
    follower.caught_up(sandbox.client()).await;

    // A graceful stop ends the open stream instead of waiting for it.
    sandbox.stop().await;
    sandbox.restart().await;
    make_events(sandbox.client(), 3).await;
    let log = follower.caught_up(sandbox.client()).await;

    assert_eq!(follower.printed(), log, "every event once, in seq order");
    let kinds: Vec<&str> = log.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|kind| **kind == "created").count(),
        4,
        "{kinds:?}"
    );
    assert!(log.windows(2).all(|pair| pair[0].seq < pair[1].seq));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_serves_the_stream_itself_and_it_outlives_the_leader() {
    let db = TempPgDatabase::create().await;
    let mut cluster = Cluster::start(db.url(), 2, "2s").await;
    let leadership = cluster.wait_for_leader(&[0, 1], None).await;
    let (leader, standby) = (leadership.leader, 1 - leadership.leader);
    make_events(cluster.client(leader), 0).await;
    let mut follower =
        Follower::start(cluster.command(standby, &["events", "--follow", "--output", "json"]));
    follower.caught_up(cluster.client(standby)).await;
    // Written by the leader, read by the standby from the database.
    make_events(cluster.client(leader), 1).await;
    follower.caught_up(cluster.client(standby)).await;

    cluster.replica_mut(leader).kill9();
    let taken = cluster.wait_for_leader(&[standby], Some(&leadership)).await;
    assert_eq!(taken.leader, standby);
    make_events(cluster.client(standby), 2).await;
    let log = follower.caught_up(cluster.client(standby)).await;
    assert_eq!(follower.printed(), log, "every event once, in seq order");
    assert_eq!(
        follower.errors.lock().expect("errors").len(),
        0,
        "the standby's stream was never cut: {:?}",
        follower.errors.lock().expect("errors")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_counts_each_tokens_rate_on_what_it_answers_itself() {
    let db = TempPgDatabase::create().await;
    let (_leader, standby) =
        crate::leader_and_standby(db.url(), |replica| replica.arg("--api-rate").arg("1")).await;
    let client = standby.client();

    // One request a second, in bursts of two, counted by the standby
    // itself for what it answers itself: the log, and the cluster.
    for what in ["the event log", "the cluster"] {
        let mut refused = None;
        for _ in 0..50 {
            let answer = match what {
                "the event log" => client.log_events(&EventFilter::default()).await.map(|_| ()),
                _ => client.cluster().await.map(|_| ()),
            };
            if let Err(error) = answer {
                refused = Some(error);
                break;
            }
        }
        let refused = refused.unwrap_or_else(|| panic!("{what}: never past the rate"));
        assert_eq!(refused.status(), Some(429), "{what}: {refused}");
        assert!(
            refused
                .retry_after()
                .is_some_and(|wait| wait.as_secs() >= 1),
            "{what}: {refused}"
        );
    }
}
