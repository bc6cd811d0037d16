//! Issue 3, point 3: rollout state survives SIGKILL at any point. Agents
//! play the hosts of a staged rollout while the server is killed with
//! SIGKILL at random moments and restarted on the same data dir; after
//! every restart, and at the end, no stratum has more hosts admitted than
//! its quota (neither as the server counts them nor as the agents were
//! told), and every host ever told the target is still admitted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_api::agent::ReportState;
use sluice_api::host::ImportHost;
use sluice_api::rollout::Action;
use sluice_api::rollout::{RolloutDetail, RolloutState};
use sluice_client::{Client, HostQuery};
use sluice_testkit::{wait_for, Amount, Plan, Sandbox, Stage};

use crate::fleet::{
    checkin_retrying, desired, fleet_10k_hosts, for_each_concurrent, report, Rng, COMPONENT,
    OLD_VERSION, WORKERS,
};

const TARGET: &str = "17.03.1";
const SELECTOR: &str = "site=lon";
fn plan() -> Plan {
    Plan::new("e2e-crash", COMPONENT, TARGET)
        .selector(SELECTOR)
        .spread(&["role", "site"])
        .max_in_flight(Amount::Percent(10))
        .stage(Stage::percent(1).named("canary").bake("1s"))
        .stage(Stage::percent(10).named("ten").bake("1s"))
        .stage(Stage::percent(30).named("thirty").bake("1s"))
        .stage(Stage::percent(100).named("all"))
}

/// The simulated agents' shared view.
#[derive(Default)]
struct Agents {
    /// Hosts running the target (told it, applied it, reported it).
    upgraded: Mutex<HashSet<String>>,
    /// Hosts ever told the target, in the order they were told.
    told: Mutex<Vec<String>>,
    /// Hosts told the target and later told something else.
    forgotten: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// The stratum key as the server shows it: `role=edge,site=lon`.
fn stratum_key(host: &ImportHost) -> String {
    let label = |name: &str| host.labels.get(name).cloned().unwrap_or_default();
    format!("role={},site={}", label("role"), label("site"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_state_survives_sigkill_without_exceeding_quotas() {
    let mut rng = Rng::from_env("rollout_state_survives_sigkill_without_exceeding_quotas");
    let mut sandbox = Sandbox::start().await;
    let fleet = fleet_10k_hosts();
    sandbox
        .client()
        .import_hosts(&fleet, "e2e")
        .await
        .expect("importing the 10k fleet");
    let selected: Arc<Vec<ImportHost>> = Arc::new(
        fleet
            .iter()
            .filter(|host| host.labels.get("site").map(String::as_str) == Some("lon"))
            .cloned()
            .collect(),
    );
    let stratum_of: HashMap<String, String> = selected
        .iter()
        .map(|host| (host.id.to_string(), stratum_key(host)))
        .collect();

    let id = sandbox
        .client()
        .create_rollout(&plan().to_string())
        .await
        .expect("creating the rollout")
        .id;
    sandbox
        .client()
        .action(&id, Action::Start, "e2e: crash test")
        .await
        .expect("starting the rollout");

    let agents = Arc::new(Agents::default());
    let playing = tokio::spawn(play(
        sandbox.client().clone(),
        Arc::clone(&selected),
        Arc::clone(&agents),
        rng.clone(),
    ));

    // One kill in each stage: once a random share of the stage's new hosts
    // has been told, and a random moment later (maybe in its bake).
    let quotas: Vec<u64> = sandbox
        .client()
        .rollout(&id)
        .await
        .expect("GET the rollout")
        .stages
        .iter()
        .map(|stage| stage.quota)
        .collect();
    let mut previous = 0;
    for (stage, &quota) in quotas.iter().enumerate() {
        let threshold = rng.range(previous + 1, quota) as usize;
        previous = quota;
        wait_for(
            &format!("{threshold} hosts told {TARGET}"),
            Duration::from_secs(120),
            || {
                let told = agents.told.lock().expect("agents").len();
                async move { (told >= threshold).then_some(()) }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.range(0, 1_500))).await;
        sandbox.kill9();
        let told_before = agents.told.lock().expect("agents").len();
        sandbox.restart().await;
        let detail = check(&sandbox, &id, &agents, &stratum_of).await;
        eprintln!(
            "kill {}: {told_before} hosts told {TARGET} before it; restarted {} at stage {} ({}), {} admitted",
            stage + 1,
            detail.summary.state,
            detail.summary.stage.map_or("-".to_owned(), |stage| (stage + 1).to_string()),
            detail.summary.phase.map_or("-", |phase| phase.as_str()),
            detail.summary.admitted
        );
    }

    let client = sandbox.client().clone();
    let done = wait_for(
        "the rollout to complete after the crashes",
        Duration::from_secs(120),
        || {
            let client = client.clone();
            let id = id.clone();
            async move {
                let detail = client.rollout(&id).await.ok()?;
                (detail.summary.state == RolloutState::Completed).then_some(detail)
            }
        },
    )
    .await;
    agents.stop.store(true, Ordering::SeqCst);
    playing.await.expect("the agents");

    let detail = check(&sandbox, &id, &agents, &stratum_of).await;
    for stratum in &detail.strata {
        assert_eq!(stratum.admitted, stratum.size, "{} at the end", stratum.key);
    }
    let told: HashSet<String> = agents
        .told
        .lock()
        .expect("agents")
        .iter()
        .cloned()
        .collect();
    assert_eq!(
        told.len(),
        selected.len(),
        "every selected host was told the target once it completed"
    );
    assert_eq!(done.summary.admitted, selected.len() as u64);
    let forgotten = agents.forgotten.lock().expect("agents").clone();
    assert!(
        forgotten.is_empty(),
        "hosts told {TARGET} and later told otherwise: {forgotten:?}"
    );
}

/// The agents of the selected hosts, until told to stop: each round every
/// host not yet upgraded checks in (in random order) with what it runs; a
/// host told the target applies it and reports it at once. While the server
/// is down they retry, changing nothing.
async fn play(client: Client, hosts: Arc<Vec<ImportHost>>, agents: Arc<Agents>, mut rng: Rng) {
    while !agents.stop.load(Ordering::SeqCst) {
        let mut round: Vec<usize> = {
            let upgraded = agents.upgraded.lock().expect("agents");
            (0..hosts.len())
                .filter(|&i| !upgraded.contains(hosts[i].id.as_str()))
                .collect()
        };
        if round.is_empty() {
            // Everyone runs the target; keep checking in a few hosts.
            round = (0..hosts.len().min(WORKERS)).collect();
        }
        rng.shuffle(&mut round);
        let round = Arc::new(round);
        let told_now = for_each_concurrent(round.len(), WORKERS, {
            let (client, hosts, agents, round) = (
                client.clone(),
                Arc::clone(&hosts),
                Arc::clone(&agents),
                Arc::clone(&round),
            );
            move |i| {
                let (client, hosts, agents) =
                    (client.clone(), Arc::clone(&hosts), Arc::clone(&agents));
                let host = round[i];
                async move { play_host(&client, &hosts[host], &agents).await }
            }
        })
        .await;
        if !told_now.contains(&true) {
            // Nothing new (a stage baking): the next round a little later.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One host's check-in; true if it was told the target for the first time.
async fn play_host(client: &Client, host: &ImportHost, agents: &Agents) -> bool {
    let upgraded = agents
        .upgraded
        .lock()
        .expect("agents")
        .contains(host.id.as_str());
    let running = if upgraded { TARGET } else { OLD_VERSION };
    let answer = checkin_retrying(client, &report(host, running, ReportState::Ok)).await;
    match desired(&answer) {
        Some(TARGET) if !upgraded => {
            agents
                .told
                .lock()
                .expect("agents")
                .push(host.id.to_string());
            // Apply, then report the result.
            let answer = checkin_retrying(client, &report(host, TARGET, ReportState::Ok)).await;
            if desired(&answer) != Some(TARGET) {
                agents.forgotten.lock().expect("agents").push(format!(
                    "{} told {TARGET}, then {:?} right after",
                    host.id,
                    desired(&answer)
                ));
            }
            agents
                .upgraded
                .lock()
                .expect("agents")
                .insert(host.id.to_string());
            true
        }
        Some(TARGET) => false,
        other => {
            if upgraded {
                agents
                    .forgotten
                    .lock()
                    .expect("agents")
                    .push(format!("{} told {TARGET}, later {other:?}", host.id));
            }
            false
        }
    }
}

/// The invariants, against a server that may be busy with the agents: what
/// the agents were told is taken first, the server's view after, and both
/// only grow until a stage moves on.
async fn check(
    sandbox: &Sandbox,
    id: &str,
    agents: &Agents,
    stratum_of: &HashMap<String, String>,
) -> RolloutDetail {
    let told: Vec<String> = agents.told.lock().expect("agents").clone();
    let client = sandbox.client();
    let detail = client.rollout(id).await.expect("GET the rollout");

    // The server's own counts: never beyond the current stage's quota.
    // A completed rollout has no current stage: its last one admitted all.
    let completed = detail.summary.state == RolloutState::Completed;
    let mut quota_of: BTreeMap<&str, u64> = BTreeMap::new();
    for stratum in &detail.strata {
        let quota = if completed {
            stratum.size
        } else {
            stratum.quota
        };
        assert!(
            stratum.admitted <= quota,
            "stratum {} has {} admitted, its quota at stage {:?} is {quota}",
            stratum.key,
            stratum.admitted,
            detail.summary.stage,
        );
        quota_of.insert(&stratum.key, quota);
    }
    // What the agents were told: never beyond the quota either.
    let mut told_per_stratum: BTreeMap<&str, u64> = BTreeMap::new();
    for host in &told {
        *told_per_stratum
            .entry(stratum_of[host].as_str())
            .or_default() += 1;
    }
    for (key, count) in &told_per_stratum {
        let quota = quota_of.get(key).copied().unwrap_or(0);
        assert!(
            *count <= quota,
            "{count} hosts of stratum {key} were told {TARGET}, its quota at stage {:?} is {quota}",
            detail.summary.stage
        );
    }

    // Every host told the target is still admitted: the restarted server
    // still names the target for it, as this rollout's.
    let mut admitted: HashSet<String> = HashSet::new();
    let mut offset = 0;
    loop {
        let page = client
            .hosts_page(&HostQuery {
                selector: Some(SELECTOR),
                component: Some(COMPONENT),
                offset: Some(offset),
                limit: Some(1000),
                ..HostQuery::default()
            })
            .await
            .expect("GET /v1/hosts");
        offset += page.hosts.len();
        for host in &page.hosts {
            let component = &host.components[COMPONENT];
            if component.desired.as_deref() == Some(TARGET)
                && component.rollout.as_deref() == Some(id)
            {
                admitted.insert(host.id.clone());
            }
        }
        if page.hosts.is_empty() || offset as u64 >= page.total {
            break;
        }
    }
    let unadmitted: Vec<&String> = told.iter().filter(|id| !admitted.contains(*id)).collect();
    assert!(
        unadmitted.is_empty(),
        "{} hosts were told {TARGET} and are no longer admitted after the restart: {:?}",
        unadmitted.len(),
        unadmitted.iter().take(20).collect::<Vec<_>>()
    );
    detail
}
