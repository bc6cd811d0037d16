//! Issue 16, point 5: schedules and order, through the real binary. A
//! rollout created with `sluice rollout create --start-at T` starts by
//! itself at T, also when the server was SIGKILLed and restarted before T;
//! a chain of plans with `after:` starts one by one as each completes, and
//! a rollout after one that was rolled back never starts and says why in
//! `sluice rollout list` and `status`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use sluice_api::agent::{CheckinRequest, ComponentReport, ReportState};
use sluice_api::host::ImportHost;
use sluice_api::rollout::{EventView, RolloutState};
use sluice_client::Client;
use sluice_testkit::{wait_for, Plan, Sandbox, Stage, DEADLINE};

/// Three hosts: two web hosts for docker-engine, one db host for the kernel.
fn hosts() -> Vec<ImportHost> {
    serde_json::from_value(serde_json::json!([
        {"id": "web1.example.net", "labels": {"role": "web"}, "components": {"docker-engine": "1.0", "kernel": "5.10"}},
        {"id": "web2.example.net", "labels": {"role": "web"}, "components": {"docker-engine": "1.0", "kernel": "5.10"}},
        {"id": "db1.example.net", "labels": {"role": "db"}, "components": {"docker-engine": "1.0", "kernel": "5.10"}},
    ]))
    .expect("a fleet")
}

fn docker(name: &str, version: &str) -> Plan {
    Plan::new(name, "docker-engine", version)
        .selector("role=web")
        .stage(Stage::percent(100))
}

/// Agents that apply at once what they are told: each round checks every
/// host in, reporting what it runs, and takes the answer's versions.
struct Agents {
    hosts: Vec<ImportHost>,
    running: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl Agents {
    fn new(hosts: &[ImportHost]) -> Agents {
        Agents {
            hosts: hosts.to_vec(),
            running: Mutex::new(
                hosts
                    .iter()
                    .map(|host| (host.id.to_string(), host.components.clone()))
                    .collect(),
            ),
        }
    }

    fn running(&self, host: &str, component: &str) -> Option<String> {
        let running = self.running.lock().expect("agents");
        running.get(host)?.get(component).cloned()
    }

    async fn round(&self, client: &Client) {
        for host in &self.hosts {
            let running = self.running.lock().expect("agents")[host.id.as_str()].clone();
            let request = CheckinRequest {
                host: host.id.clone(),
                labels: host.labels.clone(),
                components: running
                    .iter()
                    .map(|(component, version)| {
                        let report = ComponentReport {
                            version: version.clone(),
                            state: ReportState::Ok,
                            message: None,
                            drifted: false,
                        };
                        (component.clone(), report)
                    })
                    .collect(),
            };
            let answer = client.checkin(&request).await.expect("check-in");
            let mut running = self.running.lock().expect("agents");
            let components = running.entry(host.id.to_string()).or_default();
            for (component, desired) in answer.components {
                components.insert(component, desired.version);
            }
        }
    }
}

async fn create(sandbox: &Sandbox, plan: &Plan, extra: &[&str]) -> String {
    let path = sandbox.write(&format!("{}.yaml", plan.name()), plan);
    let path = path.to_str().expect("a UTF-8 path");
    let mut args = vec!["rollout", "create", "-f", path, "--output", "json"];
    args.extend_from_slice(extra);
    let created = sandbox.sluice(&args).await.ok().json();
    created["id"].as_str().expect("an id").to_owned()
}

async fn state(client: &Client, id: &str) -> RolloutState {
    client.rollout(id).await.expect("the rollout").summary.state
}

async fn started(client: &Client, id: &str) -> Option<EventView> {
    let events = client.events(id, None, None).await.ok()?;
    events
        .events
        .into_iter()
        .find(|event| event.kind == "started")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_created_with_start_at_starts_by_itself_across_a_sigkill() {
    let mut sandbox = Sandbox::start().await;
    sandbox
        .client()
        .import_hosts(&hosts(), "e2e")
        .await
        .expect("import");
    // In Stockholm's winter offset, as an operator there would write it.
    let at = Timestamp::now() + SignedDuration::from_secs(15);
    let local = at + SignedDuration::from_hours(1);
    let at_text = format!("{}+01:00", local.strftime("%Y-%m-%dT%H:%M:%S"));
    let at: Timestamp = at_text.parse().expect("start_at");
    let id = create(
        &sandbox,
        &docker("docker-2.0", "2.0"),
        &["--start-at", &at_text],
    )
    .await;
    let list = sandbox.sluice(&["rollout", "list"]).await.ok().stdout();
    assert!(list.contains("pending (queued)"), "{list}");
    assert!(list.contains("queue of docker-engine:"), "{list}");
    assert!(
        list.contains(&format!("1. {id} docker-2.0: starts at ")),
        "{list}"
    );
    let status = sandbox
        .sluice(&["rollout", "status", &id])
        .await
        .ok()
        .stdout();
    assert!(status.contains("starts at "), "{status}");

    // Killed before its time, restarted: the new process starts it by
    // itself. Still pending just before the kill, or the test would prove
    // nothing of a restart.
    let client = sandbox.client().clone();
    assert_eq!(
        state(&client, &id).await,
        RolloutState::Pending,
        "the CLI runs above took the 15 s before the start time"
    );
    sandbox.kill9();
    sandbox.restart().await;
    let client = sandbox.client().clone();
    let event = wait_for("the scheduled start", DEADLINE, || started(&client, &id)).await;
    assert_eq!(event.actor, None, "sluice started it: {event:?}");
    let reason = event.data["reason"].as_str().expect("a reason");
    assert!(reason.starts_with("scheduled for "), "{reason}");
    let when: Timestamp = event.at.parse().expect("a time");
    assert!(when >= at, "started at {when}, scheduled for {at}");
    assert_eq!(state(&client, &id).await, RolloutState::Running);
    let list = sandbox.sluice(&["rollout", "list"]).await.ok().stdout();
    assert!(!list.contains("queue of"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_after_chain_starts_in_turn_and_a_rolled_back_first_blocks_the_next() {
    let sandbox = Sandbox::start().await;
    let client = sandbox.client().clone();
    let fleet = hosts();
    client.import_hosts(&fleet, "e2e").await.expect("import");
    let agents = Agents::new(&fleet);

    // The blocked chain: kernel-6.2 after kernel-6.1, which is rolled back.
    let kernel = |name: &str, version: &str| {
        Plan::new(name, "kernel", version)
            .selector("role=db")
            .stage(Stage::percent(100))
    };
    let first = create(
        &sandbox,
        &kernel("kernel-6.1", "6.1"),
        &["--start", "--reason", "e2e"],
    )
    .await;
    let blocked = create(
        &sandbox,
        &kernel("kernel-6.2", "6.2").after("kernel-6.1"),
        &[],
    )
    .await;
    sandbox
        .rollout_action(&first, "rollback", "bad kernel")
        .await;
    let list = sandbox.sluice(&["rollout", "list"]).await.ok().stdout();
    let why = format!("after kernel-6.1 ({first}), which was rolled back");
    assert!(
        list.contains(&format!("{blocked} kernel-6.2: blocked: {why}")),
        "{list}"
    );
    assert!(list.contains("pending (blocked)"), "{list}");

    // The chain that goes: docker-3.0 after docker-2.0, docker-4.0 after docker-3.0.
    let a = create(
        &sandbox,
        &docker("docker-2.0", "2.0"),
        &["--start", "--reason", "e2e"],
    )
    .await;
    let b = create(
        &sandbox,
        &docker("docker-3.0", "3.0").after("docker-2.0"),
        &[],
    )
    .await;
    let c = create(
        &sandbox,
        &docker("docker-4.0", "4.0").after("docker-3.0"),
        &[],
    )
    .await;
    let list = sandbox.sluice(&["rollout", "list"]).await.ok().stdout();
    assert!(
        list.contains(&format!(
            "1. {b} docker-3.0: after docker-2.0 ({a}, running)"
        )),
        "{list}"
    );
    assert!(
        list.contains(&format!(
            "2. {c} docker-4.0: after docker-3.0 ({b}, pending)"
        )),
        "{list}"
    );

    let chain = [
        (&a, "docker-2.0", Some(&b)),
        (&b, "docker-3.0", Some(&c)),
        (&c, "docker-4.0", None),
    ];
    for (id, name, next) in chain {
        // Nothing starts the next one early: it waits for this one.
        if let Some(next) = next {
            assert_eq!(state(&client, next).await, RolloutState::Pending);
        }
        wait_for(&format!("{id} completed"), DEADLINE, || async {
            agents.round(&client).await;
            (state(&client, id).await == RolloutState::Completed).then_some(())
        })
        .await;
        if let Some(next) = next {
            let event = wait_for(&format!("{next} started"), DEADLINE, || {
                started(&client, next)
            })
            .await;
            assert_eq!(event.actor, None, "{event:?}");
            assert_eq!(
                event.data["reason"],
                format!("after {name} ({id}) completed")
            );
        }
    }
    for host in ["web1.example.net", "web2.example.net"] {
        assert_eq!(
            agents.running(host, "docker-engine").as_deref(),
            Some("4.0")
        );
    }

    // Every tick since the rollback passed it by: still pending, blocked.
    assert_eq!(state(&client, &blocked).await, RolloutState::Pending);
    assert!(started(&client, &blocked).await.is_none());
    let status = sandbox
        .sluice(&["rollout", "status", &blocked])
        .await
        .ok()
        .stdout();
    assert!(status.contains(&format!("blocked: {why}")), "{status}");
}
