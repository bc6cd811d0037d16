//! The retrospective's golden files: a fixed timeline (a freeze, an
//! approval, a failing gate and its pause, a resume, failures in one role
//! and a rollback) and a seeded simulation, each written as Markdown and
//! JSON and compared with `tests/golden/` (`UPDATE_EXPECT=1` rewrites them).

use expect_test::expect_file;
use jiff::Timestamp;
use sluice_core::fleet::{Labels, StrMap};
use sluice_core::plan::parse_plan;
use sluice_core::rollout::{Event, EventKind, GateOutcome, HoldReason, HostCounts};
use sluice_sim::retro::{self, render, HostFacts, Record, Report, Source, StateSample};
use sluice_sim::{rehearse, Config, Fault};

const PLAN: &str = r#"
name: docker-17
component: docker-engine
version: "17.03.1"
strategy: { spread: [role, site] }
max_in_flight: 2
stages:
  - { name: canary, percent: 25, bake: 10m, approve: true }
  - { name: half, percent: 50, bake: 30m }
  - { name: all, percent: 100 }
gates:
  max_failed: 1
  host_timeout: 15m
  prometheus:
    - { name: errors, url: "http://prometheus:9090", query: "sum(rate(errors[5m]))", fail_if: "> 0.5" }
on_failure: rollback
"#;

const T0: i64 = 1_767_600_000;

fn at(offset: i64) -> Timestamp {
    Timestamp::from_second(T0 + offset).expect("a time")
}

fn event(offset: i64, actor: Option<&str>, kind: EventKind) -> Event {
    Event {
        at: at(offset),
        actor: actor.map(str::to_owned),
        kind,
    }
}

fn labels(role: &str, site: &str) -> Labels {
    [("role", role), ("site", site)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn timeline() -> Vec<Event> {
    use EventKind::*;
    let failed = |offset, host: &str| {
        event(
            offset,
            None,
            HostFailed {
                host: host.to_owned(),
                reason: "reported failed: dockerd did not start".to_owned(),
                stage: Some(1),
            },
        )
    };
    vec![
        event(
            0,
            None,
            Created {
                rollout: "r-7".into(),
                plan: "docker-17".into(),
                component: "docker-engine".into(),
                version: "17.03.1".into(),
            },
        ),
        event(
            60,
            Some("alice"),
            Started {
                reason: "ship docker 17".into(),
            },
        ),
        event(
            60,
            None,
            StageStarted {
                index: 0,
                name: "canary".into(),
                percent: 25.0,
                quota: 4,
            },
        ),
        event(
            200,
            None,
            Baking {
                stage: 0,
                until: at(800),
            },
        ),
        event(
            300,
            Some("bob"),
            Held {
                hold: HoldReason::Frozen {
                    actor: "bob".into(),
                    reason: "incident 42".into(),
                },
            },
        ),
        event(
            500,
            Some("bob"),
            Released {
                hold: HoldReason::Frozen {
                    actor: "bob".into(),
                    reason: "incident 42".into(),
                },
                reason: Some("incident 42 resolved".into()),
            },
        ),
        event(800, None, AwaitingApproval { stage: 0 }),
        event(
            1100,
            Some("carol"),
            Approved {
                stage: 0,
                reason: "canary clean".into(),
            },
        ),
        event(
            1100,
            None,
            StageCompleted {
                index: 0,
                name: "canary".into(),
            },
        ),
        event(
            1100,
            None,
            StageStarted {
                index: 1,
                name: "half".into(),
                percent: 50.0,
                quota: 8,
            },
        ),
        event(
            1200,
            None,
            GateEvaluated {
                gate: "errors".into(),
                outcome: GateOutcome::Pass,
                evidence: "sum(rate(errors[5m])) = 0.1, fail_if > 0.5".into(),
                report_only: false,
                comparison: None,
            },
        ),
        failed(1300, "db-sto-2"),
        event(
            1330,
            None,
            GateEvaluated {
                gate: "errors".into(),
                outcome: GateOutcome::Fail,
                evidence: "sum(rate(errors[5m])) = 0.9, fail_if > 0.5".into(),
                report_only: false,
                comparison: None,
            },
        ),
        event(
            1330,
            None,
            GateFailed {
                gate: "errors".into(),
                failures: 1,
                evidence: "sum(rate(errors[5m])) = 0.9, fail_if > 0.5".into(),
            },
        ),
        event(
            1330,
            None,
            Paused {
                reason: "gate errors failed".into(),
            },
        ),
        event(
            1500,
            Some("alice"),
            Resumed {
                reason: "probe was flaky".into(),
                acknowledged_failures: 1,
                reset_gates: vec!["errors".into()],
            },
        ),
        failed(1600, "db-lon-2"),
        failed(1620, "db-lon-1"),
        event(
            1620,
            None,
            MaxFailedExceeded {
                stage: 1,
                failed: 2,
                allowed: 1,
            },
        ),
        event(
            1620,
            None,
            RollbackStarted {
                reason: "stage 2: 2 hosts failed, 1 allowed".into(),
                hosts: 8,
                not_reversible: false,
            },
        ),
    ]
}

fn hosts() -> Vec<HostFacts> {
    let mut hosts = Vec::new();
    for role in ["web", "db"] {
        for site in ["sto", "lon"] {
            for n in 1..=3 {
                let id = format!("{role}-{site}-{n}");
                let (stage, state) = match n {
                    1 => (Some(0), "reverted"),
                    2 => (Some(1), "reverted"),
                    _ => (None, "waiting"),
                };
                let failed = role == "db" && (n == 2 || (n == 1 && site == "lon"));
                hosts.push(HostFacts {
                    message: failed.then(|| "Job for docker.service failed".to_owned()),
                    id,
                    labels: labels(role, site),
                    state,
                    previous: Some("1.12.6".to_owned()),
                    admitted_stage: stage,
                });
            }
        }
    }
    hosts
}

fn samples() -> Vec<StateSample> {
    let sample = |offset, waiting, instructed, healthy, failed, reverting, reverted| StateSample {
        at: at(offset),
        counts: HostCounts {
            waiting,
            instructed,
            healthy,
            failed,
            reverting,
            reverted,
        },
    };
    vec![
        sample(0, 12, 0, 0, 0, 0, 0),
        sample(60, 10, 2, 0, 0, 0, 0),
        sample(150, 8, 2, 2, 0, 0, 0),
        sample(200, 8, 0, 4, 0, 0, 0),
        sample(1100, 6, 2, 4, 0, 0, 0),
        sample(1300, 4, 1, 6, 1, 0, 0),
        sample(1600, 4, 0, 5, 3, 0, 0),
        sample(1620, 4, 0, 0, 0, 8, 0),
        sample(1700, 4, 0, 0, 0, 3, 5),
        sample(1800, 4, 0, 0, 0, 0, 8),
    ]
}

/// The report of the fixed timeline, as the server builds it.
fn fixed_report() -> Report {
    let plan = parse_plan(PLAN).expect("the test plan");
    let (events, hosts, samples) = (timeline(), hosts(), samples());
    retro::build(&Record {
        rollout: "r-7",
        plan: &plan,
        events: &events,
        hosts: &hosts,
        samples: &samples,
        source: Source::Server,
        now: at(3600),
    })
}

#[test]
fn a_fixed_timeline_reads_as_its_golden_files() {
    let report = fixed_report();
    // The figures the timeline dictates, whatever the rendering.
    assert_eq!(report.summary.outcome, "rolled_back");
    assert_eq!(report.blast_radius.hosts_failed, 3);
    assert_eq!(report.blast_radius.bound, Some(2 + 1));
    assert_eq!(report.stages[1].failed, 3);
    assert_eq!(
        report.stages[0].approval.as_ref().and_then(|a| a.wait_s),
        Some(300.0)
    );
    assert_eq!(report.times.time_to_detect_s, Some(1240.0));
    assert_eq!(report.times.time_to_halt_s, Some(1270.0));
    assert_eq!(report.times.time_to_recover_s, Some(1740.0));
    assert_eq!(report.failures.by_role[0].value, "db");
    assert_eq!(report.gates.acted.len(), 2);
    assert_eq!(report.gates.evaluations[1].value, Some(0.9));
    expect_file!["golden/timeline.md"].assert_eq(&render::markdown(&report, "timeline.svg"));
    expect_file!["golden/timeline.json"].assert_eq(&render::json(&report));
    expect_file!["golden/timeline.svg"].assert_eq(&render::chart(&report));
}

#[test]
fn a_seeded_simulation_reads_as_its_golden_files() {
    let plan = parse_plan(PLAN).expect("the test plan");
    let mut fleet = Vec::new();
    for role in ["web", "db"] {
        for site in ["sto", "lon"] {
            for n in 1..=10 {
                let components: StrMap = [("docker-engine".to_owned(), "1.12.6".to_owned())]
                    .into_iter()
                    .collect();
                fleet.push(sluice_core::fleet::Host {
                    id: sluice_core::fleet::HostId::parse(format!("{role}-{site}-{n}"))
                        .expect("a host id"),
                    labels: labels(role, site),
                    components,
                });
            }
        }
    }
    let config = Config {
        seed: 7,
        faults: vec![Fault::parse("role=db:fail:p=0.5").expect("a fault")],
        ..Config::default()
    };
    let rehearsal = rehearse(&plan, &fleet, &config);
    let report = retro::of_rehearsal(&plan, &fleet, &config, &rehearsal);
    assert_eq!(report.summary.outcome, rehearsal.report.final_state);
    assert_eq!(
        report.times.time_to_detect_s,
        rehearsal.report.time_to_detect_s
    );
    assert_eq!(report.times.time_to_halt_s, rehearsal.report.time_to_halt_s);
    assert!(report.failures.by_role.iter().all(|g| g.value == "db"));
    expect_file!["golden/simulation.md"].assert_eq(&render::markdown(&report, "simulation.svg"));
    expect_file!["golden/simulation.json"].assert_eq(&render::json(&report));
}

#[test]
fn html_is_one_self_contained_page() {
    let report = fixed_report();
    let html = render::html(&report);
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(html.contains("@media print"));
    for external in ["src=", "href=", "<script", "<link"] {
        assert!(
            !html.contains(external),
            "the page refers to something outside it: {external}"
        );
    }
}

/// Waiting for the fleet's change budget or for hosts busy with another
/// rollout's change is a hold like a freeze: the report says how long each
/// wait lasted, and a wait still open when the rollout ended closes there.
#[test]
fn waits_for_other_rollouts_are_holds() {
    use sluice_core::rollout::Wait;
    use EventKind::*;
    let plan = parse_plan(PLAN).expect("the test plan");
    let started = |offset| {
        event(
            offset,
            None,
            StageStarted {
                index: 0,
                name: "canary".to_owned(),
                percent: 25.0,
                quota: 1,
            },
        )
    };
    let events = vec![
        event(
            0,
            Some("alice"),
            Started {
                reason: "go".to_owned(),
            },
        ),
        started(0),
        event(
            60,
            None,
            Waiting {
                wait: Wait::FleetBudget,
            },
        ),
        event(
            660,
            None,
            WaitOver {
                wait: Wait::FleetBudget,
            },
        ),
        event(
            700,
            None,
            Waiting {
                wait: Wait::HostsBusy,
            },
        ),
        event(
            1000,
            Some("bob"),
            Aborted {
                reason: "enough".to_owned(),
            },
        ),
    ];
    let report = retro::build(&Record {
        rollout: "r-8",
        plan: &plan,
        events: &events,
        hosts: &hosts(),
        samples: &[],
        source: Source::Server,
        now: at(3600),
    });
    let holds: Vec<_> = report
        .holds
        .iter()
        .map(|h| (h.kind, h.stage, h.duration_s, h.why.as_str()))
        .collect();
    assert_eq!(
        holds,
        [
            ("budget", Some(0), Some(600.0), "waiting for fleet budget"),
            (
                "busy hosts",
                Some(0),
                Some(300.0),
                "waiting for hosts busy with another change (in flight for another rollout, or pinned)"
            ),
        ]
    );
    let markdown = render::markdown(&report, "r-8.svg");
    assert!(markdown.contains("| budget |"), "{markdown}");
}
