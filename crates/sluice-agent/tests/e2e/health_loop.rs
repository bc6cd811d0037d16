//! The loop's health checks, with a scripted host (`HostOps`) against the
//! real server: a health check that agrees with what the agent reports
//! costs no check-in, a change is reported at once (`ok` → `failed` with
//! the output, `failed` → `ok`) and survives a restart, and no health check
//! runs while an apply runs or while the host runs another version than the
//! desired one (its apply failed, or the host drifted).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sluice_agent::{
    Agent, AgentConfig, AgentError, ComponentConfig, Desired, Exit, Failure, HostOps, Mode,
};
use sluice_api::admin::Role;
use sluice_api::agent::ReportState;
use sluice_api::host::HostComponent;
use sluice_api::HostId;
use sluice_testkit::{wait_for, Amount, Plan, Sandbox, Stage, DEADLINE};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::harness::{start_server, start_server_with_checkin_interval};

/// A health check every 100 ms: many checks between two check-ins.
const OFTEN: Duration = Duration::from_millis(100);

/// One call the agent made to its host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    /// A health check of `version` while `installed` was installed.
    Health {
        version: String,
        installed: String,
    },
    ApplyStarted(String),
    ApplyEnded(String),
}

/// A host whose health checks and applies the test scripts.
#[derive(Debug)]
struct Scripted {
    installed: Mutex<String>,
    /// The versions whose health checks fail from now on, and how.
    unhealthy: Mutex<BTreeMap<String, Failure>>,
    /// Someone puts this version on the host by hand, right after the next
    /// health check (so that no host operation is half done when it does).
    drift: Mutex<Option<String>>,
    /// Whether applies succeed; a failed one changes nothing.
    apply_succeeds: bool,
    /// Applies wait until this is true.
    release: watch::Receiver<bool>,
    calls: Mutex<Vec<Call>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Scripted {
    fn new(version: &str, apply_succeeds: bool, release: watch::Receiver<bool>) -> Arc<Scripted> {
        Arc::new(Scripted {
            installed: Mutex::new(version.to_owned()),
            unhealthy: Mutex::new(BTreeMap::new()),
            drift: Mutex::new(None),
            apply_succeeds,
            release,
            calls: Mutex::new(Vec::new()),
        })
    }

    /// Health checks of `version` fail with `failure` from now on; `None`:
    /// they pass.
    fn set_health(&self, version: &str, failure: Option<&str>) {
        let mut unhealthy = lock(&self.unhealthy);
        match failure {
            Some(failure) => unhealthy.insert(version.to_owned(), failure.to_owned()),
            None => unhealthy.remove(version),
        };
    }

    fn drift_after_next_health_check(&self, version: &str) {
        *lock(&self.drift) = Some(version.to_owned());
    }

    fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    fn health_checks(&self) -> usize {
        self.calls()
            .iter()
            .filter(|call| matches!(call, Call::Health { .. }))
            .count()
    }

    fn record(&self, call: Call) {
        lock(&self.calls).push(call);
    }
}

impl HostOps for Scripted {
    async fn installed(&self, _: &ComponentConfig, _: Option<&Desired>) -> Result<String, Failure> {
        Ok(lock(&self.installed).clone())
    }

    async fn apply(
        &self,
        _: &ComponentConfig,
        desired: &Desired,
        _: Option<&Path>,
    ) -> Result<(), Failure> {
        self.record(Call::ApplyStarted(desired.version.clone()));
        let mut release = self.release.clone();
        // A dropped sender releases too.
        let _ = release.wait_for(|released| *released).await;
        self.record(Call::ApplyEnded(desired.version.clone()));
        if !self.apply_succeeds {
            return Err(format!(
                "E: version '{}' for 'app' was not found",
                desired.version
            ));
        }
        *lock(&self.installed) = desired.version.clone();
        Ok(())
    }

    async fn health(&self, _: &ComponentConfig, desired: &Desired) -> Result<(), Failure> {
        let installed = lock(&self.installed).clone();
        self.record(Call::Health {
            version: desired.version.clone(),
            installed,
        });
        if let Some(version) = lock(&self.drift).take() {
            *lock(&self.installed) = version;
        }
        match lock(&self.unhealthy).get(&desired.version) {
            Some(failure) => Err(failure.clone()),
            None => Ok(()),
        }
    }
}

/// An agent of `host` as `id`, running until the returned sender says stop.
async fn spawn_agent(
    server: &Sandbox,
    id: &str,
    host: &Arc<Scripted>,
    health_interval: Option<Duration>,
    state_file: Option<&Path>,
) -> (watch::Sender<bool>, JoinHandle<Result<Exit, AgentError>>) {
    let id: HostId = id.parse().expect("a host id");
    let token = server
        .client()
        .create_token(Role::Agent, Some(&id), None, "test agent")
        .await
        .expect("an agent token");
    let client = server
        .client()
        .with_token(&token.token)
        .expect("an agent client");
    let config = AgentConfig {
        servers: client.server_url().clone().into(),
        id,
        interval: Duration::from_secs(1),
        labels: BTreeMap::from([("role".to_owned(), "web".to_owned())]),
        components: vec![ComponentConfig {
            name: "app".into(),
            mode: Mode::Apply,
            timeout: Duration::from_secs(10),
            health_interval,
            enforce: false,
        }],
        state_file: state_file.map(Path::to_owned),
        artifacts: None,
    };
    let agent = Agent::new(config, client, Arc::clone(host)).expect("an agent");
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(agent.run(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    (stop, task)
}

async fn stop_agent((stop, task): (watch::Sender<bool>, JoinHandle<Result<Exit, AgentError>>)) {
    stop.send(true).expect("the agent listens");
    let result = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the agent stops")
        .expect("the agent task");
    assert!(result.is_ok(), "{result:?}");
}

/// What the server last heard from `id` about `app`.
async fn app(server: &Sandbox, id: &str) -> Option<HostComponent> {
    server.host(id).await?.components.get("app").cloned()
}

/// Waits until the server has answered `count` check-ins, and no more.
async fn checkins_reach(server: &Sandbox, count: u64, what: &str) {
    let answered = wait_for(what, DEADLINE, || async {
        let answered = server.checkins().await;
        (answered >= count).then_some(answered)
    })
    .await;
    assert_eq!(answered, count, "{what}");
}

/// Waits for `more` health checks after those done so far.
async fn more_health_checks(host: &Scripted, more: usize) {
    let seen = host.health_checks();
    wait_for(&format!("{more} more health checks"), DEADLINE, || async {
        (host.health_checks() >= seen + more).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_change_of_health_checks_in_and_it_does_at_once() {
    // The server wants a check-in an hour from now: any other check-in is
    // the agent reporting a change.
    let server = start_server_with_checkin_interval(3600).await;
    let state_dir = tempfile::tempdir().expect("temp dir");
    let state_file = state_dir.path().join("state.json");
    let (_release, release) = watch::channel(true);
    let host = Scripted::new("1.0", true, release);
    let id = "steady.test";
    let agent = spawn_agent(&server, id, &host, Some(OFTEN), Some(&state_file)).await;
    wait_for(
        "the first check-in to report app 1.0 ok",
        DEADLINE,
        || async {
            let app = app(&server, id).await?;
            (app.version == "1.0" && app.state == Some(ReportState::Ok)).then_some(())
        },
    )
    .await;
    checkins_reach(&server, 1, "the first check-in").await;

    more_health_checks(&host, 10).await;
    assert_eq!(
        server.checkins().await,
        1,
        "health checks that agree with the report cause no check-in"
    );

    host.set_health(
        "1.0",
        Some("docker info: cannot connect to the docker daemon"),
    );
    let reported = wait_for("the failure to be reported", DEADLINE, || async {
        let app = app(&server, id).await?;
        (app.state == Some(ReportState::Failed)).then_some(app)
    })
    .await;
    assert_eq!(reported.version, "1.0");
    assert_eq!(
        reported.message.as_deref(),
        Some("docker info: cannot connect to the docker daemon")
    );
    checkins_reach(&server, 2, "one check-in for the failure").await;
    more_health_checks(&host, 10).await;
    assert_eq!(
        server.checkins().await,
        2,
        "a failure that persists is not reported again"
    );

    // A restart keeps what the agent reported: its first check-in says
    // failed, so the failing checks after it agree and cost nothing.
    stop_agent(agent).await;
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("the state file")).expect("JSON");
    assert_eq!(state["components"]["app"]["state"], "failed", "{state}");
    let agent = spawn_agent(&server, id, &host, Some(OFTEN), Some(&state_file)).await;
    checkins_reach(&server, 3, "the restarted agent's first check-in").await;
    more_health_checks(&host, 10).await;
    assert_eq!(server.checkins().await, 3, "still failing: nothing new");
    assert_eq!(
        app(&server, id).await.and_then(|app| app.state),
        Some(ReportState::Failed)
    );

    host.set_health("1.0", None);
    wait_for("the recovery to be reported", DEADLINE, || async {
        let app = app(&server, id).await?;
        (app.state == Some(ReportState::Ok) && app.message.is_none()).then_some(())
    })
    .await;
    checkins_reach(&server, 4, "one check-in for the recovery").await;
    more_health_checks(&host, 10).await;
    assert_eq!(server.checkins().await, 4);
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_health_interval_each_checkin_checks_health_once() {
    let server = start_server().await;
    let (_release, release) = watch::channel(true);
    let host = Scripted::new("1.0", true, release);
    let id = "every-round.test";
    let agent = spawn_agent(&server, id, &host, None, None).await;
    wait_for("a few check-ins", DEADLINE, || async {
        (server.checkins().await >= 3).then_some(())
    })
    .await;
    host.set_health("1.0", Some("unhealthy"));
    wait_for("the failure to be reported", DEADLINE, || async {
        let app = app(&server, id).await?;
        (app.state == Some(ReportState::Failed)).then_some(())
    })
    .await;
    host.set_health("1.0", None);
    wait_for("the recovery to be reported", DEADLINE, || async {
        let app = app(&server, id).await?;
        (app.state == Some(ReportState::Ok)).then_some(())
    })
    .await;
    stop_agent(agent).await;
    let checks = host.health_checks() as u64;
    let checkins = server.checkins().await;
    // Each round checks, then checks in, but the first: the desired version
    // is not known before the first answer. The stop may cut the last
    // round between its check and its check-in.
    assert!(
        checks + 1 == checkins || checks == checkins,
        "{checks} health checks for {checkins} check-ins"
    );
}

fn plan() -> Plan {
    Plan::new("e2e-health-2.0", "app", "2.0")
        .max_in_flight(Amount::Percent(100))
        .stage(Stage::percent(100))
        .max_failed(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_health_check_runs_during_an_apply_or_at_another_version() {
    let server = start_server().await;
    let (release_slow, release) = watch::channel(false);
    let (_released, released) = watch::channel(true);
    // slow.test's apply waits until released; broken.test's fails, leaving
    // 1.0; the drifted hosts apply 2.0, are unhealthy at it, and then
    // someone puts 1.9 on them by hand (a failed version is not applied
    // again): one checked at every round, one every 100 ms.
    let slow = Scripted::new("1.0", true, release);
    let broken = Scripted::new("1.0", false, released.clone());
    let drifted = Scripted::new("1.0", true, released.clone());
    let drifted_often = Scripted::new("1.0", true, released);
    let hosts = [
        ("slow.test", &slow, Some(OFTEN)),
        ("broken.test", &broken, Some(OFTEN)),
        ("drifted.test", &drifted, None),
        ("drifted-often.test", &drifted_often, Some(OFTEN)),
    ];
    let mut agents = Vec::new();
    for (id, host, every) in hosts {
        host.set_health("2.0", (id != "slow.test").then_some("unhealthy at 2.0"));
        agents.push(spawn_agent(&server, id, host, every, None).await);
    }
    for (id, host, _) in hosts {
        wait_for(&format!("{id} to report 1.0 ok"), DEADLINE, || async {
            let app = app(&server, id).await?;
            (app.version == "1.0" && app.state == Some(ReportState::Ok)).then_some(())
        })
        .await;
        more_health_checks(host, 1).await;
    }

    server.start_plan(&plan(), "e2e").await;
    wait_for("slow.test to be applying 2.0", DEADLINE, || async {
        let app = app(&server, "slow.test").await?;
        (slow.calls().contains(&Call::ApplyStarted("2.0".into()))
            && app.state == Some(ReportState::Applying))
        .then_some(())
    })
    .await;
    for (id, version) in [
        ("broken.test", "1.0"),
        ("drifted.test", "2.0"),
        ("drifted-often.test", "2.0"),
    ] {
        wait_for(
            &format!("{id} to report {version} failed"),
            DEADLINE,
            || async {
                let app = app(&server, id).await?;
                (app.version == version && app.state == Some(ReportState::Failed)).then_some(())
            },
        )
        .await;
    }
    for (id, host) in [
        ("drifted.test", &drifted),
        ("drifted-often.test", &drifted_often),
    ] {
        host.drift_after_next_health_check("1.9");
        wait_for(&format!("{id} to report 1.9"), DEADLINE, || async {
            (app(&server, id).await?.version == "1.9").then_some(())
        })
        .await;
    }
    // Check-ins go on meanwhile (slow.test reports `applying`): time for
    // many health checks, had the loop allowed any.
    let answered = server.checkins().await;
    wait_for("eight more check-ins", DEADLINE, || async {
        (server.checkins().await >= answered + 8).then_some(())
    })
    .await;
    release_slow.send(true).expect("the apply waits");
    wait_for("slow.test to report 2.0 ok", DEADLINE, || async {
        let app = app(&server, "slow.test").await?;
        (app.version == "2.0" && app.state == Some(ReportState::Ok)).then_some(())
    })
    .await;
    more_health_checks(&slow, 3).await;
    for agent in agents {
        stop_agent(agent).await;
    }

    // Every health check was of the version installed at the time, and
    // every host applied once.
    for (id, host, _) in hosts {
        let calls = host.calls();
        for call in &calls {
            if let Call::Health { version, installed } = call {
                assert_eq!(version, installed, "{id}: {calls:?}");
            }
        }
        let applies = calls
            .iter()
            .filter(|call| matches!(call, Call::ApplyStarted(_)))
            .count();
        assert_eq!(applies, 1, "{id}: {calls:?}");
    }
    // slow.test: checks before and after its apply, none during it.
    let calls = slow.calls();
    let started = calls
        .iter()
        .position(|call| *call == Call::ApplyStarted("2.0".into()))
        .expect("the apply started");
    assert_eq!(
        calls.get(started + 1),
        Some(&Call::ApplyEnded("2.0".into())),
        "no health check during the apply: {calls:?}"
    );
    let after = calls[started..]
        .iter()
        .filter(|call| matches!(call, Call::Health { version, .. } if version == "2.0"))
        .count();
    assert!(after >= 3, "{calls:?}");
    // broken.test: 1.0 installed, 2.0 desired: no health check since.
    let calls = broken.calls();
    assert_eq!(
        calls.last(),
        Some(&Call::ApplyEnded("2.0".into())),
        "{calls:?}"
    );
}
