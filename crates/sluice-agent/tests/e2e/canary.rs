//! Comparison gates end to end: real `sluice-agent` processes apply a
//! change, one tiny exporter per host (in this process, on the host's own
//! loopback address: host `127.0.0.N`'s exporter is `127.0.0.N:PORT`, the
//! server's `--cohort-instance {host}:PORT`) serves
//! `container_restarts_total`, a counter growing at a rate that depends on
//! the version the host runs (read from its dir), and a real Prometheus
//! scrapes every exporter and the server's cohorts
//! (`/v1/metrics/cohorts`, `honor_labels`).
//!
//! Two strata of five hosts: `web` restarting once a second, `db` three
//! times: a fleet of 20 restarts a second. A change that doubles the rate
//! of the hosts running it is stopped at the canary stage (one host per
//! stratum) by a comparison gate (`ratio > 1.5`: 4 against 2), while a
//! fleet-wide threshold of the spec's kind (`sum(rate(...)) > 30`: 24
//! with the canaries doubled) lets the canary stage pass. A healthy change
//! passes both. A stratum whose one host is the canary has no baseline:
//! no data, which the gate's `no_data` decides.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use sluice_api::rollout::{Phase, RolloutState};
use sluice_testkit::prometheus::{Job, Prometheus};
use sluice_testkit::{wait_for, Gate, OnFailure, Plan, Sandbox, Stage, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{wait_for_reports, Host};

const OLD: &str = "1.0";
/// The change that doubles the restart rate of the hosts that run it.
const SLOW: &str = "2.0-slow";
/// The change that leaves it alone.
const GOOD: &str = "2.0";

const RESTARTS: &str = "rate(container_restarts_total[5s])";
const FLEET_RESTARTS: &str = "sum(rate(container_restarts_total[5s]))";

/// Restarts a second of a host of `role` running `version`.
fn restart_rate(role: &str, version: &str) -> f64 {
    let usual = if role == "db" { 3.0 } else { 1.0 };
    if version == SLOW {
        usual * 2.0
    } else {
        usual
    }
}

/// A fleet: its server, its hosts (agents running), their exporters and a
/// Prometheus scraping them all.
struct Fleet {
    server: Sandbox,
    hosts: Vec<Host>,
    prometheus: Prometheus,
}

/// An exporter for the host whose dir is `dir`: a loopback listener
/// serving its counter, which grows at the rate of the version the host
/// runs now.
async fn exporter(listener: TcpListener, dir: PathBuf, role: String) {
    // (when last read, restarts so far)
    let counter = Arc::new(Mutex::new((Instant::now(), 0.0_f64)));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let counter = Arc::clone(&counter);
        let dir = dir.clone();
        let role = role.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let version = std::fs::read_to_string(dir.join("version")).unwrap_or_default();
            let rate = restart_rate(&role, version.trim());
            let total = {
                let mut counter = counter.lock().expect("the counter");
                let now = Instant::now();
                counter.1 += rate * now.duration_since(counter.0).as_secs_f64();
                counter.0 = now;
                counter.1
            };
            let body = format!(
                "# TYPE container_restarts_total counter\ncontainer_restarts_total {total}\n"
            );
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        });
    }
}

/// Listeners on `127.0.0.{first}` … `127.0.0.{first + count - 1}`, all on
/// one port.
async fn listeners(first: u8, count: u8) -> (u16, Vec<TcpListener>) {
    'port: for _ in 0..20 {
        let probe = TcpListener::bind((Ipv4Addr::new(127, 0, 0, first), 0))
            .await
            .expect("binding a loopback address");
        let port = probe.local_addr().expect("its address").port();
        let mut bound = vec![probe];
        for n in 1..count {
            match TcpListener::bind((Ipv4Addr::new(127, 0, 0, first + n), port)).await {
                Ok(listener) => bound.push(listener),
                Err(_) => continue 'port,
            }
        }
        return (port, bound);
    }
    panic!("no port free on every loopback address");
}

impl Fleet {
    /// Hosts `127.0.0.{first}…`, with these roles, running `OLD`.
    async fn start(first: u8, roles: &[&str]) -> Fleet {
        let (port, bound) = listeners(first, roles.len() as u8).await;
        let server = Sandbox::builder()
            .arg("--checkin-interval")
            .arg("1")
            .arg("--cohort-instance")
            .arg(format!("{{host}}:{port}"))
            .start()
            .await;
        let mut hosts = Vec::new();
        let mut targets = Vec::new();
        for (listener, role) in bound.into_iter().zip(roles) {
            let address: SocketAddr = listener.local_addr().expect("the exporter's address");
            let id = address.ip().to_string();
            let labels = BTreeMap::from([("role".to_owned(), (*role).to_owned())]);
            let token = server.agent_token_file(&id).await;
            let mut host = Host::new(&id, &labels, OLD, server.url(), &token, "");
            host.start();
            tokio::spawn(exporter(
                listener,
                host.dir.path().to_owned(),
                (*role).to_owned(),
            ));
            targets.push(address.to_string());
            hosts.push(host);
        }
        wait_for_reports(&server, &hosts, OLD).await;
        let sluice = server
            .url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let prometheus = Prometheus::start(&[
            Job::new("node", targets),
            Job::new("sluice", [sluice])
                .path("/v1/metrics/cohorts")
                .bearer(server.admin_token())
                .honor_labels(),
        ])
        .await;
        prometheus.wait_for_series(RESTARTS, roles.len()).await;
        Fleet {
            server,
            hosts,
            prometheus,
        }
    }

    fn running(&self, version: &str) -> BTreeSet<String> {
        (self.hosts.iter())
            .filter(|host| host.version() == version)
            .map(|host| host.id.clone())
            .collect()
    }

    async fn detail(&self, id: &str) -> sluice_api::rollout::RolloutDetail {
        self.server
            .client()
            .rollout(id)
            .await
            .expect("GET the rollout")
    }

    async fn wait_for_state(
        &self,
        id: &str,
        state: RolloutState,
    ) -> sluice_api::rollout::RolloutDetail {
        wait_for(&format!("{id} to be {state:?}"), DEADLINE, || async {
            let detail = self.detail(id).await;
            if detail.summary.state == state {
                Ok(detail)
            } else {
                Err(format!("{:?} {:?}", detail.summary.state, detail.reason))
            }
        })
        .await
    }

    /// The events of `id` of type `kind`, as JSON data.
    async fn events(&self, id: &str, kind: &str) -> Vec<Value> {
        let events = self
            .server
            .client()
            .events(id, None, None)
            .await
            .expect("GET the events");
        (events.events.into_iter())
            .filter(|event| event.kind == kind)
            .map(|event| event.data)
            .collect()
    }

    /// The cohorts the server exports now: `(cohort, host, instance)`.
    async fn cohorts(&self) -> BTreeSet<(String, String, String)> {
        let text = self
            .server
            .client()
            .cohorts()
            .await
            .expect("GET the cohorts");
        (text.lines())
            .filter(|line| line.starts_with("sluice_cohort{"))
            .map(|line| {
                let label = |name: &str| {
                    let start = line.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
                    let end = start + line[start..].find('"').expect("a closing quote");
                    line[start..end].to_owned()
                };
                (label("cohort"), label("host"), label("instance"))
            })
            .collect()
    }
}

fn roles() -> Vec<&'static str> {
    let mut roles = vec!["web"; 5];
    roles.extend(["db"; 5]);
    roles
}

/// Canary (one host per stratum), baking long enough for gates to read
/// the canaries, then awaiting approval; then everything.
fn plan(name: &str, version: &str) -> Plan {
    Plan::new(name, "app", version)
        .spread(&["role"])
        .stage(Stage::percent(20).named("canary").bake("20s").approve())
        .stage(Stage::percent(100))
        .on_failure(OnFailure::Rollback)
}

fn compare_gate(prometheus: &Prometheus) -> Gate {
    // At the start of a bake Prometheus may not have scraped the new
    // cohorts yet: no data, which passes here.
    Gate::compare(
        "restarts-vs-baseline",
        &prometheus.url,
        RESTARTS,
        "ratio > 1.5",
    )
    .min_hosts(2)
    .no_data("pass")
    .failing_for(3)
    .interval("1s")
}

fn threshold_gate(prometheus: &Prometheus) -> Gate {
    Gate::prometheus("fleet-restarts", &prometheus.url, FLEET_RESTARTS, "> 30")
        .failing_for(2)
        .interval("1s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doubled_metric_halts_the_canary_that_a_fleet_wide_threshold_lets_pass() {
    let fleet = Fleet::start(11, &roles()).await;

    // The comparison gate: the canary stage never completes.
    let plan_compare = plan("slow-compared", SLOW).gate(compare_gate(&fleet.prometheus));
    let id = fleet
        .server
        .start_plan(&plan_compare, "e2e: compared")
        .await;
    // While the canaries run, the cohorts are one host per stratum each,
    // the canaries admitted, the baseline not, each `instance` the host's
    // exporter.
    let cohorts = wait_for("both cohorts exported", DEADLINE, || async {
        let cohorts = fleet.cohorts().await;
        (cohorts.len() == 4).then_some(cohorts)
    })
    .await;
    let canaries: BTreeSet<String> = (cohorts.iter())
        .filter(|(cohort, _, _)| cohort == "canary")
        .map(|(_, host, _)| host.clone())
        .collect();
    assert_eq!(canaries, fleet.running(SLOW), "the canaries run the change");
    for (cohort, host, instance) in &cohorts {
        assert!(instance.starts_with(&format!("{host}:")), "{instance}");
        let admitted = fleet.running(SLOW).contains(host);
        assert_eq!(admitted, cohort == "canary", "{cohort} {host}");
    }
    let role_of = |host: &str| {
        let n: usize = host
            .rsplit('.')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("127.0.0.N");
        roles()[n - 11]
    };
    let strata = |cohort: &str| -> Vec<&str> {
        let mut strata: Vec<&str> = (cohorts.iter())
            .filter(|(c, _, _)| c == cohort)
            .map(|(_, host, _)| role_of(host))
            .collect();
        strata.sort_unstable();
        strata
    };
    assert_eq!(strata("canary"), ["db", "web"]);
    assert_eq!(strata("baseline"), ["db", "web"]);

    let halted = fleet.wait_for_state(&id, RolloutState::RolledBack).await;
    assert_eq!(halted.summary.admitted, 2, "halted at the canary stage");
    let failed = fleet.events(&id, "gate_failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["gate"], "restarts-vs-baseline");
    let evaluated = fleet.events(&id, "gate_evaluated").await;
    let last = (evaluated.iter())
        .rev()
        .find(|e| e["outcome"] == "fail")
        .expect("a failing evaluation");
    let comparison = &last["comparison"];
    let figure = |name: &str| comparison[name].as_f64().unwrap_or(f64::NAN);
    assert_eq!(
        (
            comparison["canary_hosts"].as_u64(),
            comparison["baseline_hosts"].as_u64()
        ),
        (Some(2), Some(2)),
        "{last}"
    );
    // Canaries 2 + 6 against 1 + 3: the means 4 and 2.
    assert!((3.0..5.0).contains(&figure("canary")), "{last}");
    assert!((1.6..2.4).contains(&figure("baseline")), "{last}");
    assert!(figure("ratio") > 1.5, "{last}");
    let query = comparison["query"].as_str().expect("the query sent");
    assert!(
        query.contains(RESTARTS) && query.contains(&format!("sluice_cohort{{rollout=\"{id}\"}}")),
        "{query}"
    );
    assert!(
        last["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("ratio")),
        "{last}"
    );
    wait_for("the canaries to roll back", DEADLINE, || async {
        fleet.running(SLOW).is_empty().then_some(())
    })
    .await;
    wait_for_reports(&fleet.server, &fleet.hosts, OLD).await;

    // The same change behind the fleet-wide threshold: the canary stage
    // passes (it bakes with the canaries doubled and awaits approval).
    let plan_threshold = plan("slow-thresholded", SLOW).gate(threshold_gate(&fleet.prometheus));
    let id = fleet
        .server
        .start_plan(&plan_threshold, "e2e: thresholded")
        .await;
    let passed = wait_for("the canary stage to pass", DEADLINE, || async {
        let detail = fleet.detail(&id).await;
        assert_eq!(
            detail.summary.state,
            RolloutState::Running,
            "{:?}",
            detail.reason
        );
        (detail.summary.phase == Some(Phase::AwaitingApproval)).then_some(detail)
    })
    .await;
    assert_eq!(passed.summary.admitted, 2);
    assert_eq!(fleet.running(SLOW).len(), 2);
    let evaluated = fleet.events(&id, "gate_evaluated").await;
    assert!(
        evaluated.iter().all(|e| e["outcome"] == "pass"),
        "{evaluated:?}"
    );
    // It did read the doubled canaries: 20 restarts a second became 24.
    let values: Vec<f64> = (evaluated.iter())
        .filter_map(|e| e["evidence"].as_str())
        .filter_map(|e| e.split(" = ").nth(1)?.split(',').next()?.parse().ok())
        .collect();
    assert!(values.iter().any(|v| *v > 22.0), "{values:?}");
    fleet
        .server
        .client()
        .action(&id, sluice_api::rollout::Action::Rollback, "e2e: done")
        .await
        .expect("roll back");
    fleet.wait_for_state(&id, RolloutState::RolledBack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_change_passes_both_gates_and_a_stratum_without_baseline_is_no_data() {
    let mut roles = roles();
    roles.push("solo");
    let fleet = Fleet::start(31, &roles).await;

    // Both gates pass the canary stage; the last one, without a bake, is
    // not compared (it would leave no baseline).
    let healthy = plan("healthy", GOOD)
        .selector("role in (web, db)")
        .gate(threshold_gate(&fleet.prometheus))
        .gate(compare_gate(&fleet.prometheus));
    let id = fleet.server.start_plan(&healthy, "e2e: healthy").await;
    wait_for("the canary stage to pass", DEADLINE, || async {
        let detail = fleet.detail(&id).await;
        assert_eq!(
            detail.summary.state,
            RolloutState::Running,
            "{:?}",
            detail.reason
        );
        (detail.summary.phase == Some(Phase::AwaitingApproval)).then_some(())
    })
    .await;
    let evaluated = fleet.events(&id, "gate_evaluated").await;
    let compared: Vec<&Value> = (evaluated.iter())
        .filter(|e| e["gate"] == "restarts-vs-baseline" && e["outcome"] == "pass")
        .collect();
    assert!(!compared.is_empty(), "{evaluated:?}");
    for evaluation in &compared {
        let ratio = evaluation["comparison"]["ratio"].as_f64().expect("a ratio");
        assert!((0.7..1.3).contains(&ratio), "{evaluation}");
    }
    assert!(
        (evaluated.iter()).all(|e| e["outcome"] != "fail"),
        "{evaluated:?}"
    );
    fleet
        .server
        .client()
        .action(&id, sluice_api::rollout::Action::Approve, "e2e: canary ok")
        .await
        .expect("approve");
    fleet.wait_for_state(&id, RolloutState::Completed).await;
    assert_eq!(fleet.running(GOOD).len(), 10);

    // The `solo` stratum's one host is its canary: no baseline, so no
    // data, and `no_data: pause` pauses.
    let solo = Plan::new("solo", "app", GOOD)
        .selector("role=solo")
        .spread(&["role"])
        .stage(Stage::percent(50).bake("1m"))
        .stage(Stage::percent(100))
        .gate(
            compare_gate(&fleet.prometheus)
                .min_hosts(1)
                .no_data("pause"),
        );
    let id = fleet.server.start_plan(&solo, "e2e: solo").await;
    let paused = fleet.wait_for_state(&id, RolloutState::Paused).await;
    let reason = paused.reason.unwrap_or_default();
    assert!(
        reason.contains("restarts-vs-baseline has no data"),
        "{reason}"
    );
    assert_eq!(
        paused.gates[0].latest.as_ref().map(|r| r.outcome),
        Some(sluice_api::rollout::GateOutcome::NoData)
    );
    assert!(
        fleet
            .cohorts()
            .await
            .iter()
            .all(|(_, host, _)| host != "127.0.0.41"),
        "a canary without a baseline is not exported"
    );
}
