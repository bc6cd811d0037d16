//! Issue 3, point 7: whole rollouts of the 10k fixture through the CLI
//! (import, create and start, approve, pause, resume, rollback, components)
//! with agents played over HTTP, checked against what `sluice plan preview`
//! says each stage admits — exactly that set of hosts, no more, no fewer.
//!
//! The agents play in rounds: every host checks in with what it runs
//! ("sweep"), then the hosts told another version apply it and report it
//! ("apply"). A stage only settles when its hosts report healthy, which
//! happens in "apply" alone, so after a sweep the hosts told the target are
//! exactly those admitted so far, whatever the controller does meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sluice_api::agent::{CheckinRequest, CheckinResponse, ReportState};
use sluice_api::host::ImportHost;
use sluice_api::rollout::{Phase, RolloutDetail, RolloutState};
use sluice_api::HostId;
use sluice_client::Client;
use sluice_testkit::{wait_for, Amount, Plan, Preview, Sandbox, Stage, DEADLINE};

use crate::fleet::{
    desired, fleet_10k, for_each_concurrent, report, sandbox_with_fleet_10k, COMPONENT,
    OLD_VERSION, WORKERS,
};

pub(crate) const TARGET: &str = "17.03.1";
/// Hosts of other sites that check in too, and must never be told the target.
const OUTSIDERS: usize = 100;

/// The agents of the hosts a test plays, and what they were told.
pub(crate) struct Sim {
    client: Client,
    /// The selected hosts first, then the outsiders.
    hosts: Arc<Vec<ImportHost>>,
    selected: usize,
    running: Vec<String>,
    /// What each host was last told to run.
    desired: Vec<Option<String>>,
    /// Selected hosts ever told the target.
    pub(crate) told: BTreeSet<String>,
}

impl Sim {
    /// The hosts of the fixture matching `selected`, and a few others.
    pub(crate) fn new(
        client: Client,
        fleet: &[ImportHost],
        selected: impl Fn(&ImportHost) -> bool,
    ) -> Sim {
        let (inside, outside): (Vec<&ImportHost>, Vec<&ImportHost>) =
            fleet.iter().partition(|host| selected(host));
        let hosts: Vec<ImportHost> = inside
            .iter()
            .chain(outside.iter().take(OUTSIDERS))
            .map(|host| (*host).clone())
            .collect();
        Sim {
            client,
            selected: inside.len(),
            running: vec![OLD_VERSION.to_owned(); hosts.len()],
            desired: vec![None; hosts.len()],
            hosts: Arc::new(hosts),
            told: BTreeSet::new(),
        }
    }

    /// Checks in `which` hosts with what they run; records and returns the answers.
    async fn checkin(&mut self, which: Vec<usize>) -> Vec<(usize, CheckinResponse)> {
        let requests: Arc<Vec<CheckinRequest>> = Arc::new(
            which
                .iter()
                .map(|&i| report(&self.hosts[i], &self.running[i], ReportState::Ok))
                .collect(),
        );
        let client = self.client.clone();
        let answers = for_each_concurrent(requests.len(), WORKERS, {
            let requests = Arc::clone(&requests);
            move |i| {
                let (client, requests) = (client.clone(), Arc::clone(&requests));
                async move {
                    let request = &requests[i];
                    client
                        .checkin(request)
                        .await
                        .unwrap_or_else(|error| panic!("check-in of {}: {error}", request.host))
                }
            }
        })
        .await;
        let answers: Vec<(usize, CheckinResponse)> = which.into_iter().zip(answers).collect();
        for (i, answer) in &answers {
            let version = desired(answer).map(str::to_owned);
            let id = &self.hosts[*i].id;
            if version.as_deref() == Some(TARGET) {
                assert!(
                    *i < self.selected,
                    "{id} does not match the selector and was told {TARGET}"
                );
                self.told.insert(id.to_string());
            }
            self.desired[*i] = version;
        }
        answers
    }

    /// Every host checks in with what it runs.
    pub(crate) async fn sweep(&mut self) -> Vec<(usize, CheckinResponse)> {
        self.checkin((0..self.hosts.len()).collect()).await
    }

    /// One check-in of every host, each told the version it ran before the
    /// rollout `id` (`when`: after what), the `admitted` ones by that rollout.
    async fn sweep_told_back(&mut self, admitted: &BTreeSet<String>, id: &str, when: &str) {
        for (i, answer) in self.sweep().await {
            let host = &self.hosts[i].id;
            let told = &answer.components[COMPONENT];
            assert_eq!(told.version, OLD_VERSION, "{host} {when}");
            if admitted.contains(host.as_str()) {
                assert_eq!(told.rollout.as_deref(), Some(id), "{host}");
            }
        }
    }

    /// The hosts told to run what they do not apply it and report it
    /// healthy; returns how many did.
    async fn apply(&mut self) -> usize {
        let pending: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| {
                self.desired[i]
                    .as_deref()
                    .is_some_and(|version| version != self.running[i])
            })
            .collect();
        for &i in &pending {
            self.running[i] = self.desired[i].clone().unwrap_or_default();
        }
        let count = pending.len();
        self.checkin(pending).await;
        count
    }
}

/// Each stage's quota over all strata, computed here from the fixture:
/// `ceil(p × n / 100)` hosts of a stratum of n, at least one, at most n.
fn quotas(hosts: &[ImportHost], percents: &[u64]) -> (usize, Vec<u64>) {
    let mut sizes: BTreeMap<(String, String), u64> = BTreeMap::new();
    for host in hosts {
        let label = |name: &str| host.labels.get(name).cloned().unwrap_or_default();
        *sizes.entry((label("role"), label("site"))).or_default() += 1;
    }
    let quotas = percents
        .iter()
        .map(|p| {
            sizes
                .values()
                .map(|&n| (p * n).div_ceil(100).max(1).min(n))
                .sum()
        })
        .collect();
    (sizes.len(), quotas)
}

/// `sluice components --output json`.
async fn list_components(sandbox: &Sandbox) -> serde_json::Value {
    sandbox
        .sluice(&["components", "--output", "json"])
        .await
        .ok()
        .json()
}

pub(crate) async fn detail(sandbox: &Sandbox, id: &str) -> RolloutDetail {
    sandbox
        .client()
        .rollout(id)
        .await
        .unwrap_or_else(|error| panic!("GET /v1/rollouts/{id}: {error}"))
}

/// Whether stage `stage` is settled: every host it admits is healthy, so it
/// bakes, awaits approval, or is already behind the rollout.
fn settled(detail: &RolloutDetail, stage: usize) -> bool {
    let summary = &detail.summary;
    summary.state == RolloutState::Completed
        || summary.stage.is_some_and(|current| current > stage)
        || (summary.stage == Some(stage) && summary.phase != Some(Phase::Progressing))
}

/// Waits until the rollout works on `stage` (the previous one baked).
pub(crate) async fn wait_for_stage(sandbox: &Sandbox, id: &str, stage: usize) {
    wait_for(
        &format!("rollout {id} to reach stage {}", stage + 1),
        DEADLINE,
        || async {
            let detail = detail(sandbox, id).await;
            (detail.summary.stage >= Some(stage)).then_some(())
        },
    )
    .await;
}

/// Plays rounds until stage `stage` settles, checking after each sweep that
/// no host beyond the current stage's preview was told the target, and at
/// the end that exactly the stage's preview was.
pub(crate) async fn settle_stage(
    sim: &mut Sim,
    sandbox: &Sandbox,
    id: &str,
    stage: usize,
    preview: &[BTreeSet<String>],
) -> RolloutDetail {
    loop {
        sim.sweep().await;
        let now = detail(sandbox, id).await;
        let current = now.summary.stage.unwrap_or(preview.len() - 1);
        let beyond: Vec<&String> = sim.told.difference(&preview[current]).collect();
        assert!(
            beyond.is_empty(),
            "at stage {}, hosts outside its preview were told {TARGET}: {beyond:?}",
            current + 1
        );
        let applied = sim.apply().await;
        let now = detail(sandbox, id).await;
        if settled(&now, stage) {
            assert_eq!(
                sim.told,
                preview[stage],
                "stage {} settled: the hosts told {TARGET} are exactly its preview",
                stage + 1
            );
            if now.summary.stage == Some(stage) {
                for stratum in &now.strata {
                    assert_eq!(stratum.admitted, stratum.quota, "{}", stratum.key);
                }
                assert_eq!(now.summary.admitted, preview[stage].len() as u64);
            }
            return now;
        }
        assert!(
            applied > 0 || now.summary.state != RolloutState::Running || now.in_flight > 0,
            "stage {} is stuck: {now:?}",
            stage + 1
        );
    }
}

/// docker 17.03.1 on one site of the fixture, spread over roles.
fn plan() -> Plan {
    Plan::new("e2e-docker-17.03.1", COMPONENT, TARGET)
        .payload_url("https://repo.example.net/docker-ce_17.03.1.deb")
        .selector("site=sto")
        .spread(&["role", "site"])
        .max_in_flight(Amount::Percent(20))
        .stage(Stage::percent(1).named("canary").bake("1s").approve())
        .stage(Stage::percent(10).named("ten").bake("1s"))
        .stage(Stage::percent(50).named("half").bake("1s"))
        .stage(Stage::percent(100).named("all"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stage_admits_exactly_its_preview_pause_holds_rollback_reverts() {
    let (mut sandbox, fleet) = sandbox_with_fleet_10k().await;

    let is_sto = |host: &ImportHost| host.labels.get("site").map(String::as_str) == Some("sto");
    let plan = sandbox.write("plan.yaml", plan());
    let Preview {
        strata,
        stages: preview,
    } = sandbox.preview(&plan, &fleet_10k()).await;
    let sto: Vec<ImportHost> = fleet.iter().filter(|host| is_sto(host)).cloned().collect();
    let (expected_strata, expected_quotas) = quotas(&sto, &[1, 10, 50, 100]);
    assert_eq!(strata, expected_strata as u64);
    let preview_sizes: Vec<u64> = preview.iter().map(|stage| stage.len() as u64).collect();
    assert_eq!(
        preview_sizes, expected_quotas,
        "the preview admits each stage's quota"
    );
    for pair in preview.windows(2) {
        assert!(pair[0].is_subset(&pair[1]), "admission is monotonic");
    }

    let id = sandbox.start_rollout(&plan, "e2e: CHG-1").await;
    let now = detail(&sandbox, &id).await;
    assert_eq!(now.summary.state, RolloutState::Running);
    assert_eq!(now.summary.selected, sto.len() as u64);
    let stage_quotas: Vec<u64> = now.stages.iter().map(|stage| stage.quota).collect();
    assert_eq!(stage_quotas, expected_quotas, "the server's quotas");
    let max_in_flight = now.max_in_flight as usize;

    let mut sim = Sim::new(sandbox.client().clone(), &fleet, is_sto);

    // Canary: exactly its preview, then it waits for approval, admitting no one.
    settle_stage(&mut sim, &sandbox, &id, 0, &preview).await;
    wait_for("the canary to await approval", DEADLINE, || async {
        let now = detail(&sandbox, &id).await;
        (now.summary.phase == Some(Phase::AwaitingApproval)).then_some(())
    })
    .await;
    sim.sweep().await;
    assert_eq!(
        sim.told, preview[0],
        "nothing is admitted while awaiting approval"
    );
    let approved = sandbox
        .rollout_action(&id, "approve", "e2e: canaries healthy")
        .await;
    assert_eq!(
        approved["stage"], 1,
        "approval starts the next stage: {approved}"
    );

    // 10 %: bakes, then moves on by itself.
    settle_stage(&mut sim, &sandbox, &id, 1, &preview).await;

    // 50 %: more than max_in_flight new hosts, so the first round admits
    // only max_in_flight of them; pause then, with the rest waiting.
    wait_for_stage(&sandbox, &id, 2).await;
    sim.sweep().await;
    assert_eq!(
        sim.told.len(),
        preview[1].len() + max_in_flight,
        "stage 3 admits max_in_flight hosts at first"
    );
    assert!(sim.told.len() < preview[2].len() && sim.told.is_subset(&preview[2]));
    let paused = sandbox
        .rollout_action(&id, "pause", "e2e: error rate up")
        .await;
    assert_eq!(paused["state"], "paused");
    let told_at_pause = sim.told.clone();
    // The hosts in flight report healthy, freeing every slot: still, no
    // new host is told the target, round after round.
    assert_eq!(sim.apply().await, max_in_flight);
    for _ in 0..2 {
        sim.sweep().await;
        assert_eq!(sim.told, told_at_pause, "a paused rollout admits no one");
    }
    let now = detail(&sandbox, &id).await;
    assert_eq!(
        (
            now.summary.state.as_str(),
            now.summary.admitted,
            now.in_flight
        ),
        ("paused", told_at_pause.len() as u64, 0)
    );
    sandbox
        .rollout_action(&id, "resume", "e2e: false alarm")
        .await;
    settle_stage(&mut sim, &sandbox, &id, 2, &preview).await;

    // 100 %: the first hosts are told; then roll back.
    wait_for_stage(&sandbox, &id, 3).await;
    sim.sweep().await;
    assert_eq!(sim.told.len(), preview[2].len() + max_in_flight);
    assert!(sim.told.is_subset(&preview[3]));
    let upgraded: usize = sim.running.iter().filter(|v| v.as_str() == TARGET).count();
    assert_eq!(
        upgraded,
        preview[2].len(),
        "the stage 4 hosts have not applied yet"
    );
    let rolled_back = sandbox
        .rollout_action(&id, "rollback", "e2e: containers orphaned")
        .await;
    assert_eq!(rolled_back["state"], "rolled_back");
    let admitted = sim.told.clone();
    // At its next check-in every admitted host is told what it ran before.
    sim.sweep_told_back(&admitted, &id, "after the rollback")
        .await;
    assert_eq!(
        sim.apply().await,
        preview[2].len(),
        "the upgraded hosts revert"
    );
    let now = detail(&sandbox, &id).await;
    assert_eq!(now.summary.state, RolloutState::RolledBack);
    assert_eq!(now.hosts.reverted, admitted.len() as u64, "{:?}", now.hosts);
    assert_eq!(now.hosts.reverting, 0, "{:?}", now.hosts);
    assert!(sim.running.iter().all(|version| version == OLD_VERSION));

    // A rollback sets no stable version.
    let components = list_components(&sandbox).await;
    assert_eq!(components["components"][0]["name"], COMPONENT);
    assert!(
        components["components"][0].get("stable_version").is_none(),
        "{components}"
    );

    // The rollback outlives a crash: after SIGKILL and a restart, every
    // admitted host is still told what it ran before, and is reverted.
    sandbox.kill9();
    sandbox.restart().await;
    let now = detail(&sandbox, &id).await;
    assert_eq!(
        (now.summary.state.as_str(), now.summary.admitted),
        ("rolled_back", admitted.len() as u64)
    );
    sim.sweep_told_back(&admitted, &id, "after the restart")
        .await;
    let now = detail(&sandbox, &id).await;
    assert_eq!(now.hosts.reverted, admitted.len() as u64, "{:?}", now.hosts);
}

fn complete_plan() -> Plan {
    Plan::new("e2e-complete", COMPONENT, TARGET)
        .selector("site=ash, role in (dns, ntp, vault)")
        .spread(&["role", "site"])
        .stage(Stage::percent(50).named("half").bake("1s"))
        .stage(Stage::percent(100).named("all"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_scoped_rollout_completes_without_touching_another_site() {
    let (mut sandbox, fleet) = sandbox_with_fleet_10k().await;
    let selected = |host: &ImportHost| {
        host.labels.get("site").map(String::as_str) == Some("ash")
            && matches!(
                host.labels.get("role").map(String::as_str),
                Some("dns" | "ntp" | "vault")
            )
    };
    let plan = sandbox.write("complete.yaml", complete_plan());
    let preview = sandbox.preview(&plan, &fleet_10k()).await.stages;
    let id = sandbox.start_rollout(&plan, "e2e: CHG-2").await;

    let components = list_components(&sandbox).await;
    assert!(
        components["components"][0].get("stable_version").is_none(),
        "{components}"
    );
    assert_eq!(
        components["components"][0]["active_rollouts"][0],
        id.as_str()
    );

    let mut sim = Sim::new(sandbox.client().clone(), &fleet, selected);
    settle_stage(&mut sim, &sandbox, &id, 0, &preview).await;
    wait_for_stage(&sandbox, &id, 1).await;
    settle_stage(&mut sim, &sandbox, &id, 1, &preview).await;
    let status = wait_for("the rollout to complete", DEADLINE, || async {
        let status = sandbox
            .sluice(&["rollout", "status", &id, "--output", "json"])
            .await
            .ok()
            .json();
        (status["state"] == "completed").then_some(status)
    })
    .await;
    assert_eq!(status["admitted"], preview[1].len());

    // It covered one site's hosts, not every host with the component: the
    // stable version stays unset, also after a crash.
    let stable =
        |components: &serde_json::Value| components["components"][0].get("stable_version").cloned();
    let components = list_components(&sandbox).await;
    assert_eq!(components["components"][0]["name"], COMPONENT);
    assert_eq!(stable(&components), None, "{components}");
    assert_eq!(
        components["components"][0]["active_rollouts"],
        serde_json::json!([])
    );
    sandbox.kill9();
    sandbox.restart().await;
    let components = list_components(&sandbox).await;
    assert_eq!(stable(&components), None, "after a restart: {components}");

    // Every host of the rollout keeps being told the target, and so is a
    // host that appears only now and matches its selector; hosts of other
    // sites (or roles) are told what they run, now as before.
    for (i, answer) in sim.checkin((0..sim.selected).collect()).await {
        assert_eq!(desired(&answer), Some(TARGET), "{}", sim.hosts[i].id);
    }
    let joiner = |id: &str, role: &str, site: &str| ImportHost {
        id: HostId::parse(id).expect("a host id"),
        labels: [("role", role), ("site", site)]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        components: BTreeMap::new(),
    };
    let inside = joiner("joiner-1.ash.example.net", "dns", "ash");
    let elsewhere = joiner("joiner-2.sto.example.net", "dns", "sto");
    let told = |answer: &CheckinResponse| {
        let told = &answer.components[COMPONENT];
        (told.version.clone(), told.rollout.clone())
    };
    let answer = sandbox
        .client()
        .checkin(&report(&inside, OLD_VERSION, ReportState::Ok))
        .await
        .expect("check-in");
    assert_eq!(told(&answer), (TARGET.to_owned(), Some(id.clone())));
    let outsiders: Vec<&ImportHost> = sim.hosts[sim.selected..]
        .iter()
        .chain([&elsewhere])
        .collect();
    for host in &outsiders {
        let answer = sandbox
            .client()
            .checkin(&report(host, OLD_VERSION, ReportState::Ok))
            .await
            .expect("check-in");
        assert_eq!(
            told(&answer),
            (OLD_VERSION.to_owned(), None),
            "{} is outside the rollout",
            host.id
        );
    }

    // Moving the stable version explicitly says first how many hosts it
    // changes at once, and changes nothing without --yes.
    // Every host on the old version but the joiner the rollout covers.
    let components = list_components(&sandbox).await;
    let unchanged = components["components"][0]["versions"][OLD_VERSION]
        .as_u64()
        .expect("hosts on the old version")
        - 1;
    let args = [
        "components",
        "set-stable",
        COMPONENT,
        TARGET,
        "--reason",
        "e2e: every site next",
    ];
    let asked = sandbox.sluice(&args).await;
    assert_eq!(asked.code(), Some(2), "{}", asked.stderr());
    assert!(
        asked.stdout().contains(&format!("tells {unchanged} hosts")),
        "{}",
        asked.stdout()
    );
    assert!(asked.stderr().contains("--yes"), "{}", asked.stderr());
    let answer = sandbox
        .client()
        .checkin(&report(outsiders[0], OLD_VERSION, ReportState::Ok))
        .await
        .expect("check-in");
    assert_eq!(told(&answer), (OLD_VERSION.to_owned(), None));
    let moved = sandbox
        .sluice(&[&args[..], &["--yes", "--output", "json"]].concat())
        .await
        .ok()
        .json();
    assert_eq!(moved["applied"], true, "{moved}");
    assert_eq!(moved["hosts_changed"], unchanged, "{moved}");
    let answer = sandbox
        .client()
        .checkin(&report(outsiders[0], OLD_VERSION, ReportState::Ok))
        .await
        .expect("check-in");
    assert_eq!(told(&answer), (TARGET.to_owned(), None));
}
