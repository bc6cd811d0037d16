//! The rollout retrospective of a real rollout: agents check in with the
//! real server, the `db` role fails, an HTTP gate fails and pauses the
//! rollout, the server is killed with SIGKILL and restarted, an operator
//! resumes and then rolls back. Every figure of `sluice rollout report
//! --format json` is then computed again here from `GET
//! /v1/rollouts/{id}/events` and compared; the chart's samples from before
//! the SIGKILL are still there; `-o` writes the Markdown and its chart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use sluice_api::agent::{CheckinRequest, ComponentReport, ReportState};
use sluice_api::host::ImportHost;
use sluice_api::rollout::EventView;
use sluice_client::Client;
use sluice_testkit::{
    wait_for, Amount, FileServer, Gate, OnFailure, Plan, Sandbox, Stage, DEADLINE,
};

use crate::fleet::{checkin_retrying, desired, COMPONENT, OLD_VERSION};

const TARGET: &str = "17.03.1";
const FAILURE: &str = "dockerd: failed to start daemon: invalid storage driver";

fn fleet() -> Vec<ImportHost> {
    let mut hosts = Vec::new();
    for role in ["web", "db"] {
        for site in ["sto", "lon"] {
            for n in 1..=5 {
                hosts.push(ImportHost {
                    id: format!("{role}-{site}-{n}.example.net")
                        .parse()
                        .expect("a host id"),
                    labels: BTreeMap::from([
                        ("role".to_owned(), role.to_owned()),
                        ("site".to_owned(), site.to_owned()),
                    ]),
                    components: BTreeMap::from([(COMPONENT.to_owned(), OLD_VERSION.to_owned())]),
                });
            }
        }
    }
    hosts
}

/// Simulated agents: every host checks in every 100 ms; told a version, it
/// runs it at its next check-in — the `db` hosts report the target failed.
fn play(
    client: Client,
    hosts: Vec<ImportHost>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut running: HashMap<String, String> = hosts
            .iter()
            .map(|h| (h.id.to_string(), OLD_VERSION.to_owned()))
            .collect();
        while !stop.load(Ordering::Relaxed) {
            for host in &hosts {
                let id = host.id.to_string();
                let version = running[&id].clone();
                let failing = version == TARGET && host.labels["role"] == "db";
                let request = CheckinRequest {
                    host: host.id.clone(),
                    labels: host.labels.clone(),
                    components: BTreeMap::from([(
                        COMPONENT.to_owned(),
                        ComponentReport {
                            version: version.clone(),
                            state: if failing {
                                ReportState::Failed
                            } else {
                                ReportState::Ok
                            },
                            message: failing.then(|| FAILURE.to_owned()),
                            drifted: false,
                        },
                    )]),
                };
                let answer = checkin_retrying(&client, &request).await;
                if let Some(told) = desired(&answer) {
                    running.insert(id, told.to_owned());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn events(sandbox: &Sandbox, id: &str) -> Vec<EventView> {
    sandbox
        .client()
        .events(id, None, Some(10_000))
        .await
        .expect("GET events")
        .events
}

async fn wait_for_event(sandbox: &Sandbox, id: &str, kind: &str) {
    wait_for(&format!("a {kind} event of {id}"), DEADLINE, || async {
        events(sandbox, id).await.iter().any(|e| e.kind == kind)
    })
    .await;
}

fn time(text: &str) -> Timestamp {
    text.parse().expect("an RFC 3339 time")
}

/// A time of the report is the time of the event (whatever the digits).
fn assert_time(shown: &Value, logged: &str) {
    let shown = shown
        .as_str()
        .unwrap_or_else(|| panic!("{shown} is not a time"));
    assert_eq!(time(shown), time(logged), "{shown} is not {logged}");
}

fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64()
}

/// A duration of the report is the log's, to the microsecond the store
/// keeps.
fn assert_seconds(shown: &Value, expected: f64) {
    let shown = shown
        .as_f64()
        .unwrap_or_else(|| panic!("{shown} is not a number"));
    assert!(
        (shown - expected).abs() < 1e-6,
        "{shown} s is not {expected} s"
    );
}

/// A rollout played to the end of its rollback, and what it left.
pub(crate) struct RolledBack {
    pub sandbox: Sandbox,
    pub id: String,
    /// The HTTP gate's probe.
    pub probe: FileServer,
    /// The log as it stood when the server was killed.
    pub before_kill: Vec<EventView>,
    /// `sluice rollout report --format json`, once it saw the recovery.
    pub report: Value,
}

/// Twenty hosts over `role` × `site`; the `db` hosts fail the target; the
/// gate's probe fails once the first stage bakes, which pauses the rollout;
/// SIGKILL and restart; resume; rollback; every host back.
pub(crate) async fn rolled_back() -> RolledBack {
    let mut sandbox = Sandbox::start().await;
    let hosts = fleet();
    sandbox
        .client()
        .import_hosts(&hosts, "e2e")
        .await
        .expect("importing the fleet");
    let probe = FileServer::start().await;
    probe.put("ok", "ok");
    let plan = Plan::new("docker-report", COMPONENT, TARGET)
        .spread(&["role", "site"])
        .max_in_flight(Amount::Hosts(4))
        .max_failed(Amount::Hosts(100))
        .host_timeout("10m")
        .stage(Stage::percent(50).named("half").bake("1h"))
        .stage(Stage::percent(100).named("all"))
        .gate(Gate::http("slo", &probe.url("ok")).interval("1s"))
        .on_failure(OnFailure::Pause);
    let id = sandbox.start_plan(&plan, "ship docker 17").await;

    let stop = Arc::new(AtomicBool::new(false));
    let agents = play(sandbox.client().clone(), hosts.clone(), Arc::clone(&stop));
    // Three of each stratum of five upgraded (the db hosts failing), then the bake.
    wait_for_event(&sandbox, &id, "baking").await;
    // The SLO probe fails: the gate pauses the rollout.
    probe.remove("ok");
    wait_for_event(&sandbox, &id, "paused").await;
    let before_kill = events(&sandbox, &id).await;

    sandbox.kill9();
    sandbox.restart().await;
    probe.put("ok", "ok");
    sandbox
        .rollout_action(&id, "resume", "the SLO probe was restarted")
        .await;
    sandbox
        .rollout_action(&id, "rollback", "db hosts cannot start dockerd")
        .await;
    wait_for(
        "every admitted host back on its previous version",
        DEADLINE,
        || async {
            let detail = sandbox.client().rollout(&id).await.expect("detail");
            let h = &detail.hosts;
            if h.reverted == 12 && h.reverting == 0 && h.failed == 0 && h.instructed == 0 {
                Ok(())
            } else {
                Err(format!("{:?}: {h:?}", detail.summary.state))
            }
        },
    )
    .await;
    // The chart counts the last change by the second after it.
    let recovered = wait_for("the report to see the recovery", DEADLINE, || async {
        let run = sandbox
            .sluice(&["rollout", "report", &id, "--format", "json"])
            .await
            .ok();
        let report = run.json();
        (!report["times"]["recovered_at"].is_null()).then_some(report)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    agents.await.expect("the agents");
    RolledBack {
        sandbox,
        id,
        probe,
        before_kill,
        report: recovered,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_rolled_back_rollout_tells_what_its_events_say() {
    let RolledBack {
        sandbox,
        id,
        probe,
        before_kill,
        report,
    } = rolled_back().await;
    let log = events(&sandbox, &id).await;
    assert!(
        log.len() >= before_kill.len() && log[..before_kill.len()] == before_kill[..],
        "the log before the SIGKILL is kept as it was"
    );
    let of = |kind: &'static str| log.iter().filter(move |e| e.kind == kind);
    let first = |kind: &'static str| of(kind).next().unwrap_or_else(|| panic!("no {kind} event"));

    // Summary.
    let started = first("started");
    let summary = &report["summary"];
    assert_eq!(summary["outcome"], "rolled_back");
    assert_eq!(
        summary["started_by"],
        started.actor.clone().expect("an actor")
    );
    assert_time(&summary["started_at"], &started.at);
    assert_eq!(summary["start_reason"], "ship docker 17");
    assert_time(&summary["ended_at"], &first("rollback_started").at);
    assert_eq!(
        summary["from"],
        serde_json::json!([{"version": OLD_VERSION, "hosts": 12}])
    );
    assert_eq!(summary["to"], TARGET);
    assert_eq!(summary["hosts_selected"], 20);
    assert_eq!(summary["hosts_admitted"], 12);
    let started_at = time(&started.at);

    // Stages: quota as each started, failures as the log counts them.
    let stages = report["stages"].as_array().expect("stages");
    for (index, stage) in stages.iter().enumerate() {
        let started = of("stage_started").find(|e| e.data["index"] == index);
        let failed = of("host_failed")
            .filter(|e| e.data["stage"] == index)
            .count();
        assert_eq!(stage["failed"], failed, "failures of stage {}", index + 1);
        match started {
            Some(e) => {
                assert_eq!(stage["quota"], e.data["quota"]);
                assert_time(&stage["started_at"], &e.at);
            }
            None => assert!(stage["quota"].is_null()),
        }
    }
    assert_eq!(stages[0]["admitted"], 12);
    assert_time(&stages[0]["settled_at"], &first("baking").at);
    assert_eq!(stages[0]["bake_planned_s"], 3600);

    // Failures: the db role, every admitted db host, with its last message.
    let failed_hosts: BTreeSet<String> = of("host_failed")
        .map(|e| e.data["host"].as_str().expect("a host").to_owned())
        .collect();
    assert_eq!(failed_hosts.len(), 6);
    assert!(failed_hosts.iter().all(|h| h.starts_with("db-")));
    let failures = &report["failures"];
    assert_eq!(
        failures["by_role"],
        serde_json::json!([{"value": "db", "failed": 6, "admitted": 6, "selected": 10}])
    );
    let by_site: u64 = failures["by_site"]
        .as_array()
        .expect("by site")
        .iter()
        .map(|g| g["failed"].as_u64().expect("a count"))
        .sum();
    assert_eq!(by_site, 6);
    let reported: BTreeSet<String> = failures["hosts"]
        .as_array()
        .expect("failed hosts")
        .iter()
        .map(|h| {
            assert_eq!(h["last_message"], FAILURE, "{h}");
            h["host"].as_str().expect("a host").to_owned()
        })
        .collect();
    assert_eq!(reported, failed_hosts);

    // Gates: every evaluation, the one that acted and what followed.
    let evaluations = report["gates"]["evaluations"]
        .as_array()
        .expect("evaluations");
    assert_eq!(evaluations.len(), of("gate_evaluated").count());
    for (shown, logged) in evaluations.iter().zip(of("gate_evaluated")) {
        assert_time(&shown["at"], &logged.at);
        assert_eq!(shown["outcome"], logged.data["outcome"]);
        assert_eq!(shown["evidence"], logged.data["evidence"]);
        assert_eq!(shown["query"], format!("GET {}", probe.url("ok")));
        // The probe answers 200, or 404 once it went away.
        let status = if logged.data["outcome"] == "pass" {
            200.0
        } else {
            404.0
        };
        assert_eq!(shown["value"], status, "{shown}");
    }
    let acted = report["gates"]["acted"].as_array().expect("acted");
    assert_eq!(acted.len(), of("gate_failed").count());
    assert_eq!(acted[0]["gate"], "slo");
    assert_eq!(acted[0]["then"], "paused");

    // Holds: the gate's pause, released by the operator's resume.
    let resumed = first("resumed");
    let pause = report["holds"]
        .as_array()
        .expect("holds")
        .iter()
        .find(|h| h["kind"] == "pause")
        .expect("the pause is a hold");
    assert_time(&pause["from"], &first("paused").at);
    assert_time(&pause["to"], &resumed.at);
    assert_eq!(pause["by"], "sluice");
    assert_eq!(
        pause["released_by"],
        resumed.actor.clone().expect("an actor")
    );
    assert_eq!(pause["released_why"], "the SLO probe was restarted");

    // Times: detect at the first failure seen, halt at the first pause or
    // rollback after it.
    let detected = log
        .iter()
        .find(|e| {
            e.kind == "host_failed"
                || (e.kind == "gate_evaluated"
                    && e.data["outcome"] == "fail"
                    && e.data["report_only"] == false)
        })
        .expect("a failure");
    let halted = log
        .iter()
        .find(|e| {
            (e.kind == "paused" || e.kind == "rollback_started")
                && time(&e.at) >= time(&detected.at)
        })
        .expect("a halt");
    let times = &report["times"];
    assert_time(&times["first_failure_at"], &detected.at);
    assert_seconds(
        &times["time_to_detect_s"],
        seconds(started_at, time(&detected.at)),
    );
    assert_time(&times["halted_at"], &halted.at);
    assert_seconds(
        &times["time_to_halt_s"],
        seconds(started_at, time(&halted.at)),
    );
    let recovered_at = time(times["recovered_at"].as_str().expect("recovered"));
    assert!(recovered_at >= time(&first("rollback_started").at));

    // Blast radius: against the plan's bound and everything at once (every
    // db host, since every admitted db host failed and no web host did).
    let blast = &report["blast_radius"];
    assert_eq!(blast["hosts_failed"], failed_hosts.len());
    assert_eq!(blast["bound"], 4 + 100);
    assert_eq!(blast["within_bound"], true);
    assert_eq!(blast["all_at_once"]["hosts_failed"], 10);
    assert_eq!(blast["all_at_once"]["hosts_changed"], 20);

    // The chart: samples from before the SIGKILL survived it (the failed db
    // hosts were counted before the pause), and it ends recovered.
    let chart = report["chart"].as_array().expect("chart");
    let paused_at = time(&first("paused").at);
    assert!(
        chart.iter().any(|s| s["failed"] == 6
            && time(s["at"].as_str().expect("a time"))
                <= paused_at + jiff::SignedDuration::from_secs(1)),
        "no sample from before the SIGKILL counts the failed hosts: {chart:?}"
    );
    let last = chart.last().expect("samples");
    assert_eq!(
        (last["reverted"].clone(), last["failed"].clone()),
        (12.into(), 0.into())
    );

    // The Markdown and its chart, written beside each other.
    let out = tempfile::tempdir().expect("a temp dir");
    let md = out.path().join("retro.md");
    sandbox
        .sluice(&["rollout", "report", &id, "-o", md.to_str().expect("a path")])
        .await
        .ok();
    let text = std::fs::read_to_string(&md).expect("the report");
    let chart_file = format!("{id}-chart.svg");
    assert!(text.contains(&format!("]({chart_file})")));
    assert!(text.contains("| db | 6 | 6 | 10 |"), "{text}");
    let svg = std::fs::read_to_string(out.path().join(&chart_file)).expect("the chart");
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
}
