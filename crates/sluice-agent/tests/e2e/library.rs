//! The library as `sluice demo` uses it: many agents on one tokio runtime,
//! one shared HTTP connection pool (each agent with the token bound to its
//! host), a simulated host behind `HostOps`, against the real server.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_agent::{Agent, AgentConfig, ComponentConfig, Desired, Failure, HostOps, Mode};
use sluice_api::admin::Role;
use sluice_api::agent::ReportState;
use sluice_api::rollout::RolloutState;
use sluice_api::HostId;
use sluice_testkit::{wait_for, Amount, Plan, Stage, DEADLINE};
use tokio::sync::watch;

use crate::harness::start_server;

const AGENTS: usize = 40;

fn plan() -> Plan {
    Plan::new("e2e-sim-2.0", "app", "2.0")
        .spread(&["role"])
        .max_in_flight(Amount::Percent(25))
        .stage(Stage::percent(50))
        .stage(Stage::percent(100))
}

/// A host that installs a version by remembering it.
#[derive(Debug)]
struct SimHost {
    version: Mutex<String>,
    applies: Mutex<Vec<String>>,
}

impl HostOps for SimHost {
    async fn installed(&self, _: &ComponentConfig, _: Option<&Desired>) -> Result<String, Failure> {
        Ok(self.version.lock().map_err(|_| "poisoned")?.clone())
    }

    async fn apply(
        &self,
        _: &ComponentConfig,
        desired: &Desired,
        _: Option<&Path>,
    ) -> Result<(), Failure> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.applies
            .lock()
            .map_err(|_| "poisoned")?
            .push(desired.version.clone());
        *self.version.lock().map_err(|_| "poisoned")? = desired.version.clone();
        Ok(())
    }

    async fn health(&self, _: &ComponentConfig, _: &Desired) -> Result<(), Failure> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_simulated_agents_share_one_pool_and_follow_a_rollout() {
    let server = start_server().await;
    let admin = server.client().clone();
    let (stop, stopped) = watch::channel(false);
    let mut agents = tokio::task::JoinSet::new();
    let mut hosts = Vec::new();
    for i in 0..AGENTS {
        let id = HostId::parse(format!("sim-{i:02}.test")).expect("a host id");
        let token = admin
            .create_token(Role::Agent, Some(&id), None, "test agent")
            .await
            .expect("an agent token");
        let client = admin
            .with_token(&token.token)
            .expect("a client sharing the pool");
        let host = Arc::new(SimHost {
            version: Mutex::new("1.0".into()),
            applies: Mutex::new(Vec::new()),
        });
        hosts.push((id.to_string(), Arc::clone(&host)));
        let config = AgentConfig {
            servers: client.server_url().clone().into(),
            id,
            interval: Duration::from_secs(1),
            labels: BTreeMap::from([("role".to_owned(), ["a", "b"][i % 2].to_owned())]),
            components: vec![ComponentConfig {
                name: "app".into(),
                mode: Mode::Apply,
                timeout: Duration::from_secs(10),
                health_interval: None,
                enforce: false,
            }],
            state_file: None,
            artifacts: None,
        };
        let agent = Agent::new(config, client, host)
            .expect("an agent")
            .with_seed(i as u64);
        let mut stopped = stopped.clone();
        agents.spawn(agent.run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
    }
    wait_for("every simulated agent to report", DEADLINE, || async {
        let list = admin.hosts(None, Some("app")).await.ok()?;
        (list.total == AGENTS as u64).then_some(())
    })
    .await;
    server.start_plan(&plan(), "e2e").await;
    wait_for("the rollout to complete", DEADLINE, || async {
        let list = admin.rollouts().await.ok()?;
        (list.rollouts.first()?.state == RolloutState::Completed).then_some(())
    })
    .await;
    for (id, host) in &hosts {
        let applies = host.applies.lock().expect("lock").clone();
        assert_eq!(applies, vec!["2.0".to_owned()], "{id} applied 2.0 once");
        let view = admin.host(id).await.expect("the host");
        let app = &view.components["app"];
        if app.version != "2.0" || app.state != Some(ReportState::Ok) {
            // Reported on the next check-in after the rollout completed.
            wait_for(&format!("{id} to report 2.0 ok"), DEADLINE, || async {
                let app = admin.host(id).await.ok()?.components.get("app")?.clone();
                (app.version == "2.0" && app.state == Some(ReportState::Ok)).then_some(())
            })
            .await;
        }
    }
    // Shutdown: every agent's loop returns.
    stop.send(true).expect("agents listen");
    let results = tokio::time::timeout(Duration::from_secs(30), agents.join_all())
        .await
        .expect("every agent stops on shutdown");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}
