//! Scenario tests of the rollout state machine: each test reads as a fleet,
//! a plan, and what happens as time passes and hosts report.

use std::collections::BTreeSet;

use jiff::Timestamp;
use sluice_core::duration::Duration;
use sluice_core::fleet::Labels;
use sluice_core::percent::{Amount, Percent};
use sluice_core::plan::{
    Comparison, Days, GateCommon, Gates, HttpGate, NoData, OnFailure, Plan, PrometheusGate, Stage,
    Strategy, Threshold, Window,
};
use sluice_core::rollout::{
    Action, EventKind, GateOutcome, GateResult, Health, HoldReason, HostState, Input, Outcome,
    Phase, Rejected, Rollout, Snapshot, Status,
};
use sluice_core::selector::Selector;

// ---- harness -----------------------------------------------------------

const TARGET: &str = "17.03.1";
const OLD: &str = "1.12.6";

/// A plan with sensible defaults, changed field by field.
struct PlanBuilder(Plan);

fn plan(stages: &[(&str, u64, bool)]) -> PlanBuilder {
    PlanBuilder(Plan {
        name: "docker-17.03.1".to_owned(),
        component: "docker-engine".to_owned(),
        version: TARGET.to_owned(),
        payload: None,
        selector: Selector::default(),
        strategy: Strategy {
            spread: vec!["role".to_owned()],
            min_per_stratum: 1,
            salt: None,
        },
        max_in_flight: None,
        stages: stages
            .iter()
            .enumerate()
            .map(|(index, (percent, bake_minutes, approve))| Stage {
                name: format!("stage-{}", index + 1),
                percent: Percent::parse(percent).expect("percent"),
                bake: Duration::from_secs(bake_minutes * 60),
                approve: *approve,
            })
            .collect(),
        gates: Gates {
            max_failed: Amount::Count(0),
            host_timeout: Duration::from_secs(15 * 60),
            prometheus: Vec::new(),
            http: Vec::new(),
            compare: Vec::new(),
        },
        on_failure: OnFailure::Pause,
        reversible: true,
        exclusive: true,
        windows: Vec::new(),
        after: None,
    })
}

impl PlanBuilder {
    fn spread(mut self, labels: &[&str]) -> Self {
        self.0.strategy.spread = labels.iter().map(|l| l.to_string()).collect();
        self
    }
    fn min_per_stratum(mut self, n: u64) -> Self {
        self.0.strategy.min_per_stratum = n;
        self
    }
    fn max_in_flight(mut self, amount: &str) -> Self {
        self.0.max_in_flight = Some(Amount::parse(amount).expect("amount"));
        self
    }
    fn max_failed(mut self, amount: &str) -> Self {
        self.0.gates.max_failed = Amount::parse(amount).expect("amount");
        self
    }
    fn host_timeout_minutes(mut self, minutes: u64) -> Self {
        self.0.gates.host_timeout = Duration::from_secs(minutes * 60);
        self
    }
    fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.0.on_failure = on_failure;
        self
    }
    fn irreversible(mut self) -> Self {
        self.0.reversible = false;
        self
    }
    fn selector(mut self, selector: &str) -> Self {
        self.0.selector = Selector::parse(selector).expect("selector");
        self
    }
    fn prometheus(
        mut self,
        name: &str,
        consecutive: u32,
        no_data: NoData,
        report_only: bool,
    ) -> Self {
        self.0.gates.prometheus.push(PrometheusGate {
            common: common(name, consecutive, no_data, report_only),
            url: "http://prometheus:9090".to_owned(),
            query: "sum(rate(container_restarts_total[5m]))".to_owned(),
            fail_if: Threshold {
                op: Comparison::Greater,
                value: 0.5,
            },
        });
        self
    }
    fn http(mut self, name: &str) -> Self {
        self.0.gates.http.push(HttpGate {
            common: common(name, 1, NoData::Fail, false),
            url: "http://slo.example.net/ok".to_owned(),
            timeout: Duration::from_secs(10),
        });
        self
    }
    fn window(mut self, days: &str, hours: &str, tz: &str) -> Self {
        let (tz, tz_name) = Window::parse_tz(tz).expect("tz");
        self.0.windows.push(Window::new(
            Days::parse(days).expect("days"),
            Some(Window::parse_hours(hours).expect("hours")),
            tz,
            tz_name,
        ));
        self
    }
    fn build(self) -> Plan {
        self.0
    }
}

fn common(name: &str, consecutive: u32, no_data: NoData, report_only: bool) -> GateCommon {
    GateCommon {
        name: name.to_owned(),
        interval: Duration::from_secs(30),
        consecutive,
        no_data,
        report_only,
    }
}

/// `(role, count)` → hosts `role-0 … role-{count-1}` running the old version.
fn fleet(roles: &[(&str, usize)]) -> Vec<(String, Labels)> {
    roles
        .iter()
        .flat_map(|(role, count)| (0..*count).map(move |i| (format!("{role}-{i}"), labels(role))))
        .collect()
}

fn labels(role: &str) -> Labels {
    Labels::from([
        ("role".to_owned(), role.to_owned()),
        ("site".to_owned(), "sto".to_owned()),
    ])
}

fn t0() -> Timestamp {
    // A Monday, 08:00 UTC (10:00 in Stockholm in summer).
    "2024-06-03T08:00:00Z".parse().expect("timestamp")
}

/// A rollout, a virtual clock, and everything it said.
struct Sim {
    rollout: Rollout,
    now: Timestamp,
    events: Vec<EventKind>,
    /// Instructed hosts that stay silent.
    silent: BTreeSet<String>,
}

impl Sim {
    fn new(plan: Plan, hosts: &[(String, Labels)]) -> Sim {
        let mut sim = Sim {
            rollout: Rollout::new("r-7".to_owned(), plan, t0()),
            now: t0(),
            events: Vec::new(),
            silent: BTreeSet::new(),
        };
        for (id, labels) in hosts {
            sim.join(id, labels.clone());
        }
        sim
    }

    fn started(plan: Plan, hosts: &[(String, Labels)]) -> Sim {
        let mut sim = Sim::new(plan, hosts);
        sim.act(Action::Start);
        sim
    }

    fn try_input(&mut self, input: Input) -> Result<Outcome, Rejected> {
        let outcome = self.rollout.handle(self.now, input)?;
        self.events
            .extend(outcome.events.iter().map(|event| event.kind.clone()));
        Ok(outcome)
    }

    fn input(&mut self, input: Input) -> Outcome {
        self.try_input(input).expect("input accepted")
    }

    fn join(&mut self, id: &str, labels: Labels) -> Outcome {
        self.input(Input::Host {
            id: id.into(),
            labels,
            version: Some(OLD.into()),
        })
    }

    fn try_act(&mut self, action: Action) -> Result<Outcome, Rejected> {
        self.try_input(Input::Action {
            action,
            actor: "alice".to_owned(),
            reason: format!("testing {action}"),
        })
    }

    fn act(&mut self, action: Action) -> Outcome {
        self.try_act(action).expect("action accepted")
    }

    fn freeze(&mut self, on: bool) -> Outcome {
        self.input(Input::Freeze {
            on,
            actor: "oncall".to_owned(),
            reason: "incident 4711".to_owned(),
        })
    }

    fn tick_minutes(&mut self, minutes: i64) -> Outcome {
        self.now = self
            .now
            .checked_add(jiff::SignedDuration::from_mins(minutes))
            .expect("time");
        self.input(Input::Tick)
    }

    fn report(&mut self, id: &str, version: &str, health: Health) -> Outcome {
        self.input(Input::Report {
            id: id.to_owned(),
            version: version.to_owned(),
            health,
            message: (health == Health::Failed).then(|| "docker info: exit 1".to_owned()),
            drifted: false,
        })
    }

    /// The host's agent found it at `version`, changed by hand after it ran
    /// what it was told.
    fn report_drifted(&mut self, id: &str, version: &str) -> Outcome {
        self.input(Input::Report {
            id: id.to_owned(),
            version: version.to_owned(),
            health: Health::Ok,
            message: None,
            drifted: true,
        })
    }

    fn report_failed(&mut self, id: &str) -> Outcome {
        self.report(id, TARGET, Health::Failed)
    }

    /// Every instructed host (but the silent ones) reports healthy at the
    /// target, in id order; repeats until none is left, since each healthy
    /// host frees a slot for the next.
    fn report_all_ok(&mut self) {
        loop {
            let pending: Vec<String> = self
                .in_state("instructed")
                .into_iter()
                .filter(|id| !self.silent.contains(id))
                .collect();
            if pending.is_empty() {
                return;
            }
            for id in pending {
                self.report(&id, TARGET, Health::Ok);
            }
        }
    }

    /// Drives the rollout to the end: hosts report ok, bakes pass, stages
    /// that wait for approval are approved.
    fn run_to_end(&mut self) {
        for _ in 0..1000 {
            self.report_all_ok();
            match self.rollout.status() {
                Status::Running {
                    phase: Phase::AwaitingApproval { approved: false },
                    ..
                } => {
                    self.act(Action::Approve);
                }
                Status::Running { .. } => {
                    self.tick_minutes(10);
                }
                _ => return,
            }
        }
        panic!("the rollout did not finish: {:?}", self.rollout.status());
    }

    fn gate(&mut self, name: &str, outcome: GateOutcome) -> Outcome {
        self.input(Input::Gate(GateResult {
            name: name.to_owned(),
            outcome,
            evidence: "sum(rate(container_restarts_total[5m]))=0.7 > 0.5".to_owned(),
            comparison: None,
        }))
    }

    fn in_state(&self, state: &str) -> Vec<String> {
        self.rollout
            .hosts()
            .filter(|host| host.state.name() == state)
            .map(|host| host.id.to_owned())
            .collect()
    }

    fn admitted(&self) -> BTreeSet<String> {
        self.rollout
            .hosts()
            .filter(|host| host.admitted_stage.is_some())
            .map(|host| host.id.to_owned())
            .collect()
    }

    fn phase(&self) -> Option<Phase> {
        self.rollout.phase()
    }

    fn stage(&self) -> Option<usize> {
        self.rollout.stage()
    }

    fn saw(&self, matches: impl Fn(&EventKind) -> bool) -> bool {
        self.events.iter().any(matches)
    }

    fn paused_reason(&self) -> String {
        match self.rollout.status() {
            Status::Paused { reason, .. } => reason.clone(),
            other => panic!("not paused: {other:?}"),
        }
    }
}

fn minutes(m: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_mins(m)
}

// ---- lifecycle ---------------------------------------------------------

#[test]
fn a_new_rollout_is_pending_and_admits_nobody() {
    let mut sim = Sim::new(plan(&[("100", 0, false)]).build(), &fleet(&[("web", 5)]));
    assert_eq!(sim.rollout.status(), &Status::Pending);
    assert_eq!(sim.rollout.selected(), 5);
    sim.tick_minutes(60);
    assert!(sim.admitted().is_empty());
    assert_eq!(sim.rollout.desired_version("web-0"), None);
    let created = sim.rollout.created_event();
    assert_eq!(created.at, t0());
    assert!(matches!(created.kind, EventKind::Created { ref rollout, .. } if rollout == "r-7"));
}

#[test]
fn start_admits_a_canary_in_every_stratum() {
    let plan = plan(&[("1", 30, false), ("100", 0, false)]).build();
    let mut sim = Sim::new(plan, &fleet(&[("web", 50), ("db", 3), ("cache", 10)]));
    let outcome = sim.act(Action::Start);
    assert_eq!(outcome.hosts.len(), 3, "one canary per role");
    let roles: BTreeSet<_> = outcome
        .hosts
        .iter()
        .map(|change| change.id.split('-').next().expect("role").to_owned())
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from(["cache".into(), "db".into(), "web".into()])
    );
    assert!(sim.saw(|e| matches!(e, EventKind::Started { reason } if reason == "testing start")));
    assert!(sim.saw(|e| matches!(
        e,
        EventKind::StageStarted {
            index: 0,
            quota: 3,
            ..
        }
    )));
    assert_eq!(
        sim.rollout.status(),
        &Status::Running {
            stage: 0,
            phase: Phase::Progressing
        }
    );
    for change in &outcome.hosts {
        assert_eq!(change.state, HostState::Instructed { since: t0() });
        assert_eq!(sim.rollout.desired_version(&change.id), Some(TARGET));
    }
}

#[test]
fn a_happy_rollout_bakes_each_stage_then_completes() {
    let plan = plan(&[("10", 30, false), ("50", 60, false), ("100", 0, false)]).build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 20), ("db", 10)]));
    assert_eq!(sim.admitted().len(), 3); // ceil(2) + ceil(1)
    sim.report_all_ok();
    let until = t0() + minutes(30);
    assert_eq!(sim.phase(), Some(Phase::Baking { until }));
    assert!(sim.saw(|e| matches!(e, EventKind::Baking { stage: 0, until: u } if *u == until)));

    sim.tick_minutes(29);
    assert_eq!(
        sim.stage(),
        Some(0),
        "still baking one minute before the end"
    );
    assert_eq!(sim.admitted().len(), 3);
    sim.tick_minutes(1);
    assert_eq!(
        sim.stage(),
        Some(1),
        "next stage exactly when the bake ends"
    );
    assert_eq!(sim.admitted().len(), 15);
    assert!(sim.saw(|e| matches!(e, EventKind::StageCompleted { index: 0, .. })));

    sim.report_all_ok();
    sim.tick_minutes(60);
    assert_eq!(sim.stage(), Some(2));
    sim.report_all_ok();
    assert_eq!(sim.rollout.status(), &Status::Completed);
    assert!(sim.saw(|e| matches!(e, EventKind::Completed)));
    assert_eq!(sim.rollout.counts().healthy, 30);
    assert_eq!(sim.rollout.desired_version("db-9"), Some(TARGET));
}

#[test]
fn a_stage_without_bake_goes_straight_through() {
    let plan = plan(&[("50", 0, false), ("100", 0, false)]).build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4)]));
    sim.report_all_ok();
    assert_eq!(sim.rollout.status(), &Status::Completed);
    assert!(!sim.saw(|e| matches!(e, EventKind::Baking { .. })));
}

#[test]
fn an_empty_fleet_completes_once_started() {
    let sim = Sim::started(plan(&[("50", 0, false), ("100", 0, false)]).build(), &[]);
    assert_eq!(sim.rollout.status(), &Status::Completed);
}

#[test]
fn approval_holds_the_stage_until_approved() {
    let plan = plan(&[("10", 30, true), ("100", 0, false)]).build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 10)]));
    sim.report_all_ok();
    sim.tick_minutes(30);
    assert_eq!(
        sim.phase(),
        Some(Phase::AwaitingApproval { approved: false })
    );
    assert!(sim.saw(|e| matches!(e, EventKind::AwaitingApproval { stage: 0 })));
    assert!(
        !sim.rollout.gates_active(),
        "gates rest while waiting for a person"
    );
    sim.tick_minutes(24 * 60);
    assert_eq!(sim.stage(), Some(0), "waits as long as it takes");

    sim.act(Action::Approve);
    assert_eq!(sim.stage(), Some(1));
    assert!(sim.saw(|e| matches!(e, EventKind::Approved { stage: 0, .. })));
    sim.run_to_end();
    assert_eq!(sim.rollout.status(), &Status::Completed);
}

#[test]
fn approval_with_zero_bake_waits_right_away() {
    let plan = plan(&[("10", 0, true), ("100", 0, false)]).build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 10)]));
    sim.report_all_ok();
    assert_eq!(
        sim.phase(),
        Some(Phase::AwaitingApproval { approved: false })
    );
}

#[test]
fn advance_skips_the_rest_of_the_bake() {
    let plan = plan(&[("10", 120, false), ("100", 0, false)]).build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 10)]));
    sim.report_all_ok();
    sim.tick_minutes(5);
    sim.act(Action::Advance);
    assert_eq!(sim.stage(), Some(1));
    assert!(sim.saw(|e| matches!(e, EventKind::Advanced { stage: 0, .. })));
}

#[test]
fn pause_halts_admission_at_once_and_resume_continues() {
    let plan = plan(&[("100", 0, false)]).max_in_flight("2").build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 10)]));
    assert_eq!(sim.admitted().len(), 2);
    sim.act(Action::Pause);
    assert!(matches!(
        sim.rollout.status(),
        Status::Paused { reason, stage: 0, phase: Phase::Progressing } if reason == "testing pause"
    ));
    sim.report_all_ok();
    assert_eq!(
        sim.admitted().len(),
        2,
        "healthy hosts free slots, but nobody is admitted"
    );
    assert_eq!(
        sim.rollout.counts().healthy,
        2,
        "reports still count while paused"
    );
    sim.act(Action::Resume);
    assert_eq!(sim.admitted().len(), 4);
    sim.run_to_end();
    assert_eq!(sim.rollout.status(), &Status::Completed);
}

#[test]
fn a_resumed_bake_starts_over() {
    let plan = plan(&[("10", 60, false), ("100", 0, false)]).build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 10)]));
    sim.report_all_ok();
    sim.tick_minutes(50);
    sim.act(Action::Pause);
    sim.tick_minutes(30);
    sim.act(Action::Resume);
    assert_eq!(
        sim.phase(),
        Some(Phase::Baking {
            until: sim.now + minutes(60)
        })
    );
}

#[test]
fn abort_stops_and_admitted_hosts_keep_the_target() {
    let plan = plan(&[("50", 60, false), ("100", 0, false)])
        .max_in_flight("1")
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4)]));
    sim.report_all_ok();
    let admitted = sim.admitted();
    assert_eq!(admitted.len(), 2);
    sim.act(Action::Abort);
    assert_eq!(sim.rollout.status(), &Status::Aborted);
    sim.report_all_ok();
    sim.tick_minutes(60);
    assert_eq!(sim.admitted(), admitted);
    for id in &admitted {
        assert_eq!(sim.rollout.desired_version(id), Some(TARGET));
    }
    assert!(sim.saw(|e| matches!(e, EventKind::Aborted { reason } if reason == "testing abort")));
}

// ---- rejected actions --------------------------------------------------

fn rejection(sim: &mut Sim, action: Action) -> String {
    sim.try_act(action).expect_err("rejected").to_string()
}

#[test]
fn resuming_a_completed_rollout_says_what_to_do_instead() {
    let mut sim = Sim::started(plan(&[("100", 0, false)]).build(), &fleet(&[("web", 2)]));
    sim.report_all_ok();
    assert_eq!(
        rejection(&mut sim, Action::Resume),
        "cannot resume rollout r-7: it is completed; a completed rollout cannot change — create a new rollout to change the version again"
    );
}

#[test]
fn advance_while_progressing_is_rejected_with_the_progress() {
    let plan = plan(&[("1", 30, false), ("10", 30, false), ("100", 0, false)])
        .spread(&[])
        .max_in_flight("34")
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 1200)]));
    sim.report_all_ok();
    sim.tick_minutes(30);
    assert_eq!(sim.stage(), Some(1));
    assert_eq!(
        rejection(&mut sim, Action::Advance),
        "cannot advance rollout r-7: stage 2 (10%) is progressing, 46 of 120 hosts admitted; advance skips the rest of a bake"
    );
}

#[test]
fn every_invalid_action_is_rejected_and_changes_nothing() {
    let mut sim = Sim::new(
        plan(&[("10", 30, true), ("100", 0, false)]).build(),
        &fleet(&[("web", 10)]),
    );
    for (action, expected) in [
        (
            Action::Pause,
            "it is pending; a pending rollout admits no host",
        ),
        (Action::Resume, "a pending rollout is started, not resumed"),
        (Action::Advance, "advance skips the rest of a bake"),
        (
            Action::Approve,
            "approve applies to a stage awaiting approval",
        ),
        (
            Action::Rollback,
            "no host has been admitted yet; abort it instead",
        ),
    ] {
        let message = rejection(&mut sim, action);
        assert!(message.contains(expected), "{action}: {message}");
    }
    sim.act(Action::Start);
    let before = sim.rollout.snapshot();
    assert!(rejection(&mut sim, Action::Start).contains("it has already started"));
    assert!(rejection(&mut sim, Action::Resume).contains("only a paused rollout can be resumed"));
    assert!(rejection(&mut sim, Action::Approve)
        .contains("stage 1 (10%) is progressing, 1 of 1 hosts admitted"));
    assert_eq!(
        sim.rollout.snapshot(),
        before,
        "a rejected action changes nothing"
    );

    sim.report_all_ok();
    assert!(rejection(&mut sim, Action::Approve).contains("is baking until"));
    sim.tick_minutes(30);
    assert!(rejection(&mut sim, Action::Advance).contains("this stage waits for approve"));
    sim.act(Action::Pause);
    assert!(rejection(&mut sim, Action::Pause).contains("it is already paused"));
    sim.act(Action::Abort);
    for action in [
        Action::Start,
        Action::Pause,
        Action::Resume,
        Action::Approve,
        Action::Advance,
        Action::Abort,
    ] {
        let message = rejection(&mut sim, action);
        assert!(
            message.contains("it is aborted; an aborted rollout can only be rolled back"),
            "{message}"
        );
    }
    sim.act(Action::Rollback);
    assert!(rejection(&mut sim, Action::Rollback).contains("a rolled-back rollout cannot change"));
}

#[test]
fn an_action_needs_a_reason() {
    let mut sim = Sim::new(plan(&[("100", 0, false)]).build(), &fleet(&[("web", 1)]));
    let error = sim
        .try_input(Input::Action {
            action: Action::Start,
            actor: "alice".to_owned(),
            reason: "  ".to_owned(),
        })
        .expect_err("empty reason");
    assert!(matches!(error, Rejected::EmptyReason { .. }));
    assert_eq!(
        error.to_string(),
        "cannot start rollout r-7 without a reason; say why, it goes in the event log"
    );
    assert_eq!(sim.rollout.status(), &Status::Pending);
    let freeze = sim.try_input(Input::Freeze {
        on: true,
        actor: "oncall".to_owned(),
        reason: String::new(),
    });
    assert!(matches!(freeze, Err(Rejected::EmptyReason { .. })));
}

// ---- concurrency and timeouts --------------------------------------------

#[test]
fn max_in_flight_throttles_admission() {
    let plan = plan(&[("100", 0, false)]).max_in_flight("10%").build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 30), ("db", 20)]));
    assert_eq!(sim.rollout.max_in_flight(), 5);
    assert_eq!(sim.rollout.in_flight(), 5);
    let first = sim.in_state("instructed");
    sim.report(&first[0], TARGET, Health::Ok);
    assert_eq!(
        sim.rollout.in_flight(),
        5,
        "a healthy host frees a slot for the next"
    );
    assert_eq!(sim.admitted().len(), 6);
    sim.report(&first[1], OLD, Health::Ok);
    assert_eq!(
        sim.rollout.in_flight(),
        5,
        "ok at the old version is not applied yet"
    );
    assert_eq!(sim.admitted().len(), 6);
    sim.run_to_end();
    assert_eq!(sim.rollout.counts().healthy, 50);
}

#[test]
fn strata_advance_in_step() {
    // One slot: the stratum furthest behind its quota gets each next host.
    let plan = plan(&[("100", 0, false)])
        .max_in_flight("1")
        .min_per_stratum(0)
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4), ("db", 2)]));
    let mut order = Vec::new();
    for _ in 0..6 {
        let instructed = sim.in_state("instructed");
        assert_eq!(instructed.len(), 1);
        order.push(instructed[0].split('-').next().expect("role").to_owned());
        sim.report(&instructed[0], TARGET, Health::Ok);
    }
    // Ratios: db 0/2 = web 0/4 → db (key order); web 0/4; db 1/2 > web 1/4 → web;
    // db 1/2 = web 2/4 → db; web 2/4 < db 2/2 → web; web.
    assert_eq!(order, ["db", "web", "web", "db", "web", "web"]);
}

#[test]
fn a_silent_host_fails_after_host_timeout() {
    let plan = plan(&[("100", 0, false)])
        .max_failed("1")
        .host_timeout_minutes(15)
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 3)]));
    sim.silent.insert("web-1".to_owned());
    sim.report_all_ok();
    sim.tick_minutes(14);
    assert!(matches!(
        sim.rollout.host_state("web-1"),
        Some(HostState::Instructed { .. })
    ));
    let outcome = sim.tick_minutes(1);
    assert_eq!(
        sim.rollout.host_state("web-1"),
        Some(&HostState::Failed {
            reason: "silent for 15m (host_timeout)".to_owned()
        })
    );
    assert_eq!(outcome.hosts.len(), 1);
    assert!(sim.saw(
        |e| matches!(e, EventKind::HostFailed { host, stage: Some(0), .. } if host == "web-1")
    ));
    assert_eq!(
        sim.rollout.status(),
        &Status::Completed,
        "one failure is within max_failed"
    );
}

// ---- host health gate ----------------------------------------------------

#[test]
fn max_failed_as_a_count_pauses_the_stage() {
    let plan = plan(&[("100", 0, false)]).max_failed("2").build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 10)]));
    sim.report_failed("web-0");
    sim.report_failed("web-1");
    assert!(matches!(sim.rollout.status(), Status::Running { .. }));
    sim.report_failed("web-2");
    assert_eq!(
        sim.paused_reason(),
        "stage 1 (100%): 3 hosts failed, 2 allowed (max_failed: 2)"
    );
    assert!(sim.saw(|e| matches!(
        e,
        EventKind::MaxFailedExceeded {
            stage: 0,
            failed: 3,
            allowed: 2
        }
    )));
    assert_eq!(
        sim.rollout.host_state("web-0"),
        Some(&HostState::Failed {
            reason: "reported failed: docker info: exit 1".to_owned()
        })
    );
}

#[test]
fn max_failed_as_a_percentage_of_the_stage_quota() {
    // 10% of a 40-host stage quota allows 4 failures.
    let plan = plan(&[("40", 0, false), ("100", 0, false)])
        .max_failed("10%")
        .spread(&[])
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 100)]));
    assert_eq!(sim.rollout.quota(), 40);
    assert_eq!(sim.rollout.allowed_failures(), 4);
    let instructed = sim.in_state("instructed");
    for id in &instructed[..4] {
        sim.report_failed(id);
    }
    assert!(matches!(sim.rollout.status(), Status::Running { .. }));
    sim.report_failed(&instructed[4]);
    assert!(matches!(sim.rollout.status(), Status::Paused { .. }));
}

#[test]
fn a_late_failure_counts_for_the_current_stage() {
    let plan = plan(&[("50", 60, false), ("100", 0, false)]).build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4)]));
    sim.report_all_ok();
    let healthy = sim.in_state("healthy");
    sim.tick_minutes(10);
    sim.report_failed(&healthy[0]);
    assert!(matches!(
        sim.rollout.status(),
        Status::Paused {
            stage: 0,
            phase: Phase::Baking { .. },
            ..
        }
    ));
    assert_eq!(sim.rollout.stage_failures(0), 1);
}

#[test]
fn resume_acknowledges_the_failures_that_paused() {
    let plan = plan(&[("100", 0, false)]).max_failed("1").build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 10)]));
    sim.report_failed("web-0");
    sim.report_failed("web-1");
    assert!(matches!(sim.rollout.status(), Status::Paused { .. }));
    sim.act(Action::Resume);
    assert!(sim.saw(|e| matches!(
        e,
        EventKind::Resumed {
            acknowledged_failures: 2,
            ..
        }
    )));
    assert_eq!(sim.rollout.stage_failures(0), 0);
    sim.report_failed("web-2");
    assert!(
        matches!(sim.rollout.status(), Status::Running { .. }),
        "one new failure is allowed"
    );
    sim.report_failed("web-3");
    assert!(matches!(sim.rollout.status(), Status::Paused { .. }));
}

#[test]
fn a_failed_host_that_recovers_is_healthy_but_still_counted() {
    let plan = plan(&[("100", 0, false)]).max_failed("1").build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 3)]));
    sim.report_failed("web-0");
    sim.report("web-0", TARGET, Health::Ok);
    assert_eq!(sim.rollout.host_state("web-0"), Some(&HostState::Healthy));
    assert_eq!(sim.rollout.stage_failures(0), 1);
}

// A healthy host that reports failed later (an agent's periodic health
// check found it broken) counts against `max_failed` like any failure: in
// the stage that is current when it reports, whatever the phase.

#[test]
fn a_late_failure_while_awaiting_approval_counts_and_rolls_back() {
    let plan = plan(&[("50", 0, true), ("100", 0, false)])
        .on_failure(OnFailure::Rollback)
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4)]));
    sim.report_all_ok();
    assert_eq!(
        sim.phase(),
        Some(Phase::AwaitingApproval { approved: false })
    );
    let healthy = sim.in_state("healthy");
    assert_eq!(healthy.len(), 2);
    sim.report_failed(&healthy[0]);
    assert!(sim.saw(|e| matches!(
        e,
        EventKind::MaxFailedExceeded {
            stage: 0,
            failed: 1,
            allowed: 0
        }
    )));
    assert_eq!(sim.rollout.status(), &Status::RolledBack);
    assert_eq!(sim.in_state("reverting").len(), 2);
}

#[test]
fn a_late_failure_counts_once_the_stage_quota_is_admitted() {
    // The whole quota is admitted; one host is still in flight when a
    // healthy one breaks.
    let plan = plan(&[("100", 0, false)]).max_failed("1").build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 3)]));
    assert_eq!(sim.admitted().len(), 3);
    sim.report("web-0", TARGET, Health::Ok);
    sim.report("web-1", TARGET, Health::Ok);
    sim.report_failed("web-0");
    assert_eq!(sim.rollout.stage_failures(0), 1);
    assert_eq!(sim.phase(), Some(Phase::Progressing));
    sim.report_failed("web-1");
    assert_eq!(
        sim.paused_reason(),
        "stage 1 (100%): 2 hosts failed, 1 allowed (max_failed: 1)"
    );
}

#[test]
fn a_host_of_an_earlier_stage_that_breaks_counts_for_the_current_stage() {
    let plan = plan(&[("50", 0, false), ("100", 60, false)])
        .max_failed("1")
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4)]));
    let early = sim.admitted();
    sim.report_all_ok();
    assert_eq!(sim.stage(), Some(1));
    assert!(matches!(sim.phase(), Some(Phase::Baking { .. })));
    let mut early = early.into_iter();
    let first = early.next().expect("an early host");
    sim.tick_minutes(10);
    sim.report_failed(&first);
    assert_eq!(sim.rollout.stage_failures(0), 0);
    assert_eq!(sim.rollout.stage_failures(1), 1);
    assert!(sim.saw(
        |e| matches!(e, EventKind::HostFailed { host, stage: Some(1), .. } if *host == first)
    ));
    assert!(matches!(sim.rollout.status(), Status::Running { .. }));
    sim.report_failed(&early.next().expect("another early host"));
    assert!(matches!(
        sim.rollout.status(),
        Status::Paused {
            stage: 1,
            phase: Phase::Baking { .. },
            ..
        }
    ));
}

#[test]
fn a_host_that_keeps_reporting_failed_counts_once_and_a_flapping_one_each_time() {
    let plan = plan(&[("100", 60, false)]).max_failed("2").build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4)]));
    sim.report_all_ok();
    // An agent reports its state at every check-in.
    for _ in 0..3 {
        sim.report_failed("web-0");
    }
    assert_eq!(sim.rollout.stage_failures(0), 1);
    sim.report("web-0", TARGET, Health::Ok);
    assert_eq!(sim.rollout.host_state("web-0"), Some(&HostState::Healthy));
    sim.report_failed("web-0");
    assert_eq!(sim.rollout.stage_failures(0), 2);
    assert!(matches!(sim.rollout.status(), Status::Running { .. }));
    sim.report("web-0", TARGET, Health::Ok);
    sim.report_failed("web-0");
    assert!(matches!(
        sim.rollout.status(),
        Status::Paused {
            phase: Phase::Baking { .. },
            ..
        }
    ));
}

// Drift: an agent found its host at another version than it was told,
// outside an apply (someone changed it by hand).

#[test]
fn a_healthy_host_found_back_at_the_old_version_is_a_failure_of_the_rollout() {
    let plan = plan(&[("100", 60, false)]).max_failed("1").build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4)]));
    sim.report_all_ok();
    assert!(matches!(sim.phase(), Some(Phase::Baking { .. })));
    sim.report_drifted("web-2", OLD);
    assert_eq!(
        sim.rollout.host_state("web-2"),
        Some(&HostState::Failed {
            reason: format!(
                "drifted: found at {OLD} after reporting healthy at {TARGET}, changed outside sluice"
            )
        })
    );
    assert!(sim.saw(
        |e| matches!(e, EventKind::HostFailed { host, stage: Some(0), .. } if host == "web-2")
    ));
    assert_eq!(sim.rollout.stage_failures(0), 1);
    assert_eq!(sim.rollout.host("web-2").and_then(|h| h.version), Some(OLD));
    // It keeps saying so at every check-in: one failure.
    sim.report_drifted("web-2", OLD);
    assert_eq!(sim.rollout.stage_failures(0), 1);
    // Back at the target (an agent with `enforce` re-applied it): healthy.
    sim.report("web-2", TARGET, Health::Ok);
    assert_eq!(sim.rollout.host_state("web-2"), Some(&HostState::Healthy));
    // A second drift exceeds max_failed: the stage halts.
    sim.report_drifted("web-3", "1.12.5");
    assert_eq!(
        sim.paused_reason(),
        "stage 1 (100%): 2 hosts failed, 1 allowed (max_failed: 1)"
    );
}

#[test]
fn drift_decides_nothing_for_a_host_that_never_reported_healthy() {
    let plan = plan(&[("100", 0, false)])
        .max_failed("0")
        .host_timeout_minutes(15)
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 3)]));
    sim.report_drifted("web-0", OLD);
    assert!(
        matches!(
            sim.rollout.host_state("web-0"),
            Some(HostState::Instructed { .. })
        ),
        "an instructed host is waited for; its timeout still runs"
    );
    sim.report_failed("web-1");
    sim.report_drifted("web-1", OLD);
    assert_eq!(
        sim.rollout.stage_failures(0),
        1,
        "a failed host counts once"
    );
    // A report at another version that does not say it drifted (an apply
    // not begun yet, an agent that predates drift) decides nothing.
    sim.report("web-2", TARGET, Health::Ok);
    sim.report("web-2", OLD, Health::Ok);
    assert_eq!(sim.rollout.host_state("web-2"), Some(&HostState::Healthy));
    assert_eq!(sim.rollout.stage_failures(0), 1);
    sim.tick_minutes(15);
    assert!(matches!(
        sim.rollout.host_state("web-0"),
        Some(HostState::Failed { reason }) if reason == "silent for 15m (host_timeout)"
    ));
}

#[test]
fn drift_of_a_waiting_or_rolled_back_host_is_not_the_rollouts_business() {
    let plan = plan(&[("50", 60, false), ("100", 0, false)])
        .spread(&[])
        .max_failed("0")
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4)]));
    sim.report_all_ok();
    let waiting = sim.in_state("waiting");
    assert_eq!(waiting.len(), 2);
    sim.report_drifted(&waiting[0], "1.12.5");
    assert_eq!(sim.in_state("waiting").len(), 2);
    assert!(matches!(sim.rollout.status(), Status::Running { .. }));
    sim.act(Action::Rollback);
    let reverting = sim.in_state("reverting");
    sim.report(&reverting[0], OLD, Health::Ok);
    assert_eq!(
        sim.rollout.host_state(&reverting[0]),
        Some(&HostState::Reverted)
    );
    sim.report_drifted(&reverting[0], TARGET);
    sim.report_drifted(&reverting[1], TARGET);
    assert_eq!(
        sim.rollout.host_state(&reverting[0]),
        Some(&HostState::Reverted)
    );
    assert_eq!(
        sim.rollout.host_state(&reverting[1]),
        Some(&HostState::Reverting)
    );
    assert_eq!(sim.rollout.stage_failures(0), 0);
}

#[test]
fn on_failure_rollback_returns_every_admitted_host_to_its_previous_version() {
    let plan = plan(&[("50", 60, false), ("100", 0, false)])
        .on_failure(OnFailure::Rollback)
        .spread(&[])
        .max_in_flight("2")
        .build();
    let mut sim = Sim::new(plan, &fleet(&[("web", 8)]));
    // One host reported another version while waiting: that is its previous.
    sim.report("web-3", "1.12.5", Health::Ok);
    sim.act(Action::Start);
    sim.report_all_ok();
    let admitted = sim.admitted();
    assert_eq!(admitted.len(), 4);
    let victim = sim.in_state("healthy")[0].clone();
    let outcome = sim.report_failed(&victim);
    assert_eq!(sim.rollout.status(), &Status::RolledBack);
    assert_eq!(
        outcome
            .hosts
            .iter()
            .filter(|c| c.state == HostState::Reverting)
            .count(),
        4
    );
    assert!(sim.saw(|e| matches!(
        e,
        EventKind::RollbackStarted {
            hosts: 4,
            not_reversible: false,
            ..
        }
    )));
    for host in sim.rollout.hosts() {
        let expected = if admitted.contains(host.id) {
            Some(if host.id == "web-3" { "1.12.5" } else { OLD })
        } else {
            None
        };
        assert_eq!(
            sim.rollout.desired_version(host.id),
            expected,
            "{}",
            host.id
        );
        assert_eq!(host.previous, expected);
    }
    // Hosts report their old version back: reverted.
    for id in &admitted {
        let previous = sim
            .rollout
            .desired_version(id)
            .expect("previous")
            .to_owned();
        sim.report(id, &previous, Health::Ok);
        assert_eq!(sim.rollout.host_state(id), Some(&HostState::Reverted));
    }
    assert_eq!(sim.rollout.counts().reverted, 4);
}

#[test]
fn an_irreversible_plan_pauses_instead_of_rolling_back() {
    let plan = plan(&[("100", 0, false)])
        .on_failure(OnFailure::Rollback)
        .irreversible()
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 3)]));
    sim.report_failed("web-0");
    assert!(matches!(sim.rollout.status(), Status::Paused { .. }));
    assert!(sim.saw(
        |e| matches!(e, EventKind::RollbackSkipped { why } if why.contains("not reversible"))
    ));
    assert_eq!(sim.rollout.desired_version("web-0"), Some(TARGET));
    // An operator may still roll it back, and that is on the record.
    sim.act(Action::Rollback);
    assert_eq!(sim.rollout.status(), &Status::RolledBack);
    assert!(sim.saw(|e| matches!(
        e,
        EventKind::RollbackStarted {
            not_reversible: true,
            ..
        }
    )));
    assert_eq!(sim.rollout.desired_version("web-0"), Some(OLD));
}

#[test]
fn a_rolled_back_host_without_a_known_previous_version_has_no_desired_version() {
    let plan = plan(&[("100", 0, false)]).build();
    let mut sim = Sim::new(plan, &[]);
    sim.input(Input::Host {
        id: "bare".into(),
        labels: labels("web"),
        version: None,
    });
    sim.act(Action::Start);
    sim.act(Action::Rollback);
    assert_eq!(sim.rollout.host_state("bare"), Some(&HostState::Reverting));
    assert_eq!(sim.rollout.desired_version("bare"), None);
    sim.report("bare", TARGET, Health::Ok);
    assert_eq!(sim.rollout.host_state("bare"), Some(&HostState::Reverting));
    sim.report("bare", "stable", Health::Ok);
    assert_eq!(sim.rollout.host_state("bare"), Some(&HostState::Reverted));
}

// ---- external gates ------------------------------------------------------

#[test]
fn a_gate_fails_after_for_consecutive_failing_results() {
    let plan = plan(&[("100", 0, false)])
        .prometheus("container-restarts", 3, NoData::Fail, false)
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 3)]));
    assert!(sim.rollout.gates_active());
    sim.gate("container-restarts", GateOutcome::Fail);
    sim.gate("container-restarts", GateOutcome::Fail);
    sim.gate("container-restarts", GateOutcome::Pass);
    assert_eq!(sim.rollout.gates()[0].streak, 0, "a pass resets the streak");
    sim.gate("container-restarts", GateOutcome::Fail);
    sim.gate("container-restarts", GateOutcome::Fail);
    assert!(matches!(sim.rollout.status(), Status::Running { .. }));
    sim.gate("container-restarts", GateOutcome::Fail);
    assert_eq!(
        sim.paused_reason(),
        "gate container-restarts failed 3 evaluations in a row: sum(rate(container_restarts_total[5m]))=0.7 > 0.5"
    );
    assert!(sim.saw(|e| matches!(e, EventKind::GateFailed { failures: 3, .. })));
    let evaluated = sim
        .events
        .iter()
        .filter(|e| matches!(e, EventKind::GateEvaluated { .. }))
        .count();
    assert_eq!(evaluated, 6);
    let latest = sim.rollout.gates()[0].latest.clone().expect("latest");
    assert_eq!(latest.outcome, GateOutcome::Fail);
    assert!(latest.evidence.contains("0.7 > 0.5"));

    // Resume resets the streak: one more failure does not fail the gate.
    sim.act(Action::Resume);
    assert!(sim.saw(|e| matches!(e, EventKind::Resumed { reset_gates, .. } if reset_gates == &["container-restarts".to_owned()])));
    sim.gate("container-restarts", GateOutcome::Fail);
    assert!(matches!(sim.rollout.status(), Status::Running { .. }));
}

#[test]
fn a_failing_gate_rolls_back_when_the_plan_says_so() {
    let plan = plan(&[("100", 0, false)])
        .http("slo-check")
        .on_failure(OnFailure::Rollback)
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 3)]));
    sim.gate("slo-check", GateOutcome::Fail);
    assert_eq!(sim.rollout.status(), &Status::RolledBack);
}

#[test]
fn no_data_counts_as_the_gate_says() {
    let gated = |no_data| {
        let plan = plan(&[("100", 0, false)])
            .prometheus("g", 2, no_data, false)
            .build();
        Sim::started(plan, &fleet(&[("web", 3)]))
    };
    let mut fail = gated(NoData::Fail);
    fail.gate("g", GateOutcome::NoData);
    fail.gate("g", GateOutcome::NoData);
    assert!(matches!(fail.rollout.status(), Status::Paused { .. }));

    let mut pass = gated(NoData::Pass);
    pass.gate("g", GateOutcome::Fail);
    pass.gate("g", GateOutcome::NoData);
    pass.gate("g", GateOutcome::Fail);
    assert!(
        matches!(pass.rollout.status(), Status::Running { .. }),
        "no data passed and reset the streak"
    );

    let mut pause = gated(NoData::Pause);
    pause.gate("g", GateOutcome::NoData);
    assert!(pause
        .paused_reason()
        .starts_with("gate g has no data (no_data: pause)"));
}

#[test]
fn a_report_only_gate_is_recorded_but_never_acts() {
    let plan = plan(&[("100", 0, false)])
        .prometheus("trial", 1, NoData::Pause, true)
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 3)]));
    for _ in 0..5 {
        sim.gate("trial", GateOutcome::Fail);
    }
    sim.gate("trial", GateOutcome::NoData);
    assert!(matches!(sim.rollout.status(), Status::Running { .. }));
    assert!(sim.saw(|e| matches!(
        e,
        EventKind::GateEvaluated {
            report_only: true,
            ..
        }
    )));
    assert!(!sim.saw(|e| matches!(e, EventKind::GateFailed { .. })));
    assert_eq!(sim.rollout.gates()[0].streak, 5);
}

#[test]
fn gate_results_count_only_while_progressing_or_baking() {
    let plan = plan(&[("100", 0, true)])
        .prometheus("g", 1, NoData::Fail, false)
        .build();
    let mut sim = Sim::new(plan, &fleet(&[("web", 3)]));
    assert!(!sim.rollout.gates_active());
    let ignored = sim.gate("g", GateOutcome::Fail);
    assert!(ignored.is_empty(), "ignored while pending");
    sim.act(Action::Start);
    sim.report_all_ok();
    assert_eq!(
        sim.phase(),
        Some(Phase::AwaitingApproval { approved: false })
    );
    sim.gate("g", GateOutcome::Fail);
    assert!(matches!(sim.rollout.status(), Status::Running { .. }));
    let unknown = sim.try_input(Input::Gate(GateResult {
        name: "nope".to_owned(),
        outcome: GateOutcome::Pass,
        evidence: String::new(),
        comparison: None,
    }));
    assert_eq!(
        unknown.expect_err("unknown gate").to_string(),
        "rollout r-7 has no gate named \"nope\"; its gates are: g"
    );
}

// ---- holds -----------------------------------------------------------------

#[test]
fn a_freeze_holds_admission_and_stage_changes_until_released() {
    let plan = plan(&[("50", 30, false), ("100", 0, false)])
        .max_in_flight("1")
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4)]));
    sim.freeze(true);
    assert!(
        matches!(sim.rollout.held(), Some(HoldReason::Frozen { actor, .. }) if actor == "oncall")
    );
    assert!(
        matches!(sim.rollout.status(), Status::Running { .. }),
        "held is not a status"
    );
    sim.report_all_ok();
    assert_eq!(sim.admitted().len(), 1, "no admission while frozen");
    sim.tick_minutes(120);
    assert_eq!(
        sim.phase(),
        Some(Phase::Progressing),
        "no stage change while frozen"
    );
    assert_eq!(
        sim.freeze(true).events.len(),
        0,
        "freezing twice changes nothing"
    );

    let released = sim.freeze(false);
    assert_eq!(released.hosts.len(), 1, "admission resumes at once");
    assert!(released.events.iter().any(|e| matches!(
        &e.kind,
        EventKind::Released { hold: HoldReason::Frozen { .. }, reason: Some(reason) } if reason == "incident 4711"
    ) && e.actor.as_deref() == Some("oncall")));
    assert!(sim.rollout.held().is_none());
    sim.run_to_end();
    assert_eq!(sim.rollout.status(), &Status::Completed);
}

#[test]
fn timers_still_count_while_held() {
    let plan = plan(&[("100", 0, false)]).max_failed("0").build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 2)]));
    sim.freeze(true);
    sim.tick_minutes(15);
    assert_eq!(sim.rollout.counts().failed, 2);
    assert!(
        matches!(sim.rollout.status(), Status::Paused { .. }),
        "failures act while held"
    );
}

#[test]
fn a_window_holds_the_rollout_outside_its_hours() {
    // Mon-thu 09:00-16:00 Stockholm (UTC+2 in June): 07:00Z-14:00Z.
    let plan = plan(&[("50", 0, false), ("100", 0, false)])
        .max_in_flight("1")
        .window("mon-thu", "09:00-16:00", "Europe/Stockholm")
        .build();
    let mut sim = Sim::new(plan, &fleet(&[("web", 100)]));
    sim.now = "2024-06-03T06:30:00Z".parse().expect("time"); // 08:30 in Stockholm
    sim.act(Action::Start);
    let opening: Timestamp = "2024-06-03T07:00:00Z".parse().expect("time");
    assert_eq!(
        sim.rollout.held(),
        Some(&HoldReason::OutsideWindow {
            next_opening: Some(opening)
        })
    );
    assert!(sim.admitted().is_empty());
    sim.tick_minutes(30); // 09:00 in Stockholm
    assert!(sim.rollout.held().is_none());
    assert_eq!(sim.admitted().len(), 1);
    assert!(sim.saw(|e| matches!(
        e,
        EventKind::Released {
            hold: HoldReason::OutsideWindow { .. },
            ..
        }
    )));

    // At 16:00 Stockholm the window closes until Tuesday 09:00.
    sim.now = "2024-06-03T13:59:00Z".parse().expect("time");
    let instructed = sim.in_state("instructed");
    sim.report(&instructed[0], TARGET, Health::Ok);
    let admitted = sim.admitted().len();
    assert_eq!(admitted, 2);
    sim.tick_minutes(1);
    let tuesday: Timestamp = "2024-06-04T07:00:00Z".parse().expect("time");
    assert_eq!(
        sim.rollout.held(),
        Some(&HoldReason::OutsideWindow {
            next_opening: Some(tuesday)
        })
    );
    sim.report_all_ok();
    assert_eq!(
        sim.admitted().len(),
        admitted,
        "nothing admitted after hours"
    );
}

// ---- hosts -------------------------------------------------------------------

#[test]
fn a_joiner_is_admitted_when_its_stratum_quota_allows() {
    let plan = plan(&[("50", 60, false), ("100", 0, false)]).build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4)]));
    sim.report_all_ok();
    assert_eq!(sim.admitted().len(), 2);
    // 5 web hosts: ceil(2.5) = 3, so the joiner's stratum owes one more.
    let outcome = sim.join("web-new", labels("web"));
    assert_eq!(outcome.hosts.len(), 2, "placed, then admitted: {outcome:?}");
    assert_eq!(sim.admitted().len(), 3);
    // A joiner in a new stratum gets its min_per_stratum canary.
    sim.join("db-new", labels("db"));
    assert!(sim.admitted().contains("db-new"));
    sim.run_to_end();
    assert_eq!(sim.rollout.counts().healthy, 6);
}

#[test]
fn a_joiner_during_a_bake_holds_the_next_stage_until_healthy() {
    let plan = plan(&[("50", 30, false), ("75", 30, false), ("100", 0, false)]).build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4)]));
    sim.report_all_ok();
    sim.tick_minutes(20);
    // 5 web hosts: ceil(2.5) = 3, so the joiner is admitted during the bake.
    sim.join("web-new", labels("web"));
    assert!(matches!(
        sim.rollout.host_state("web-new"),
        Some(HostState::Instructed { .. })
    ));
    sim.tick_minutes(10);
    assert_eq!(
        sim.stage(),
        Some(0),
        "the bake is over but a host is in flight"
    );
    sim.report("web-new", TARGET, Health::Ok);
    assert_eq!(sim.stage(), Some(1));
}

#[test]
fn hosts_outside_the_selector_take_no_part() {
    let plan = plan(&[("100", 0, false)])
        .selector("role notin (build)")
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 2), ("build", 2)]));
    assert_eq!(sim.rollout.selected(), 2);
    assert_eq!(sim.rollout.host_state("build-0"), None);
    assert_eq!(sim.rollout.desired_version("build-0"), None);
    sim.report_all_ok();
    assert_eq!(sim.rollout.status(), &Status::Completed);
}

#[test]
fn changing_labels_does_not_move_a_host() {
    let plan = plan(&[("100", 0, false)]).build();
    let mut sim = Sim::new(plan, &fleet(&[("web", 2)]));
    sim.join("web-0", labels("db"));
    let host = sim.rollout.host("web-0").expect("host");
    assert_eq!(host.stratum.0, vec!["web".to_owned()]);
    assert_eq!(sim.rollout.strata().len(), 1);
}

#[test]
fn per_stratum_progress_is_reported() {
    let plan = plan(&[("50", 0, false), ("100", 0, false)])
        .max_in_flight("1")
        .max_failed("1")
        .build();
    let mut sim = Sim::started(plan, &fleet(&[("web", 4), ("db", 2)]));
    let db = sim.in_state("instructed")[0].clone();
    sim.report_failed(&db);
    let strata = sim.rollout.strata();
    assert_eq!(strata.len(), 2);
    assert_eq!(strata[0].key.0, vec!["db".to_owned()]);
    assert_eq!(
        (
            strata[0].size,
            strata[0].quota,
            strata[0].admitted,
            strata[0].failed
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(
        (strata[1].size, strata[1].quota, strata[1].admitted),
        (4, 2, 1)
    );
}

// ---- snapshots and events ----------------------------------------------------

#[test]
fn a_restored_rollout_behaves_identically() {
    let plan = || {
        plan(&[("10", 30, true), ("50", 60, false), ("100", 0, false)])
            .spread(&["role", "site"])
            .max_in_flight("3")
            .max_failed("2")
            .prometheus("g", 2, NoData::Fail, false)
            .build()
    };
    let mut sim = Sim::started(plan(), &fleet(&[("web", 20), ("db", 7), ("cache", 5)]));
    sim.report_all_ok();
    sim.tick_minutes(30);
    sim.act(Action::Approve);
    sim.report_failed(&sim.in_state("instructed")[0].clone());
    sim.gate("g", GateOutcome::Fail);
    sim.silent.insert(sim.in_state("instructed")[0].clone());

    let json = serde_json::to_string(&sim.rollout.snapshot()).expect("serialise");
    let snapshot: Snapshot = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(snapshot, sim.rollout.snapshot());
    let mut twin = Sim {
        rollout: Rollout::restore(plan(), snapshot).expect("restore"),
        now: sim.now,
        events: Vec::new(),
        silent: sim.silent.clone(),
    };
    assert_eq!(twin.rollout.snapshot(), sim.rollout.snapshot());

    let script = |sim: &mut Sim| {
        let mut outcomes = Vec::new();
        outcomes.push(sim.join("web-new", labels("web")));
        for _ in 0..30 {
            let instructed: Vec<String> = sim
                .in_state("instructed")
                .into_iter()
                .filter(|id| !sim.silent.contains(id))
                .collect();
            for id in &instructed {
                outcomes.push(sim.report(id, TARGET, Health::Ok));
            }
            outcomes.push(sim.tick_minutes(10));
            outcomes.push(sim.gate("g", GateOutcome::Pass));
        }
        outcomes
    };
    assert_eq!(script(&mut sim), script(&mut twin));
    assert_eq!(twin.rollout.snapshot(), sim.rollout.snapshot());
    assert_eq!(sim.rollout.status(), &Status::Completed);
}

#[test]
fn restore_rejects_a_snapshot_that_does_not_fit_the_plan() {
    let mut sim = Sim::started(
        plan(&[("50", 0, false), ("100", 0, false)]).build(),
        &fleet(&[("web", 2)]),
    );
    sim.tick_minutes(1);
    let error = Rollout::restore(plan(&[("100", 0, false)]).build(), sim.rollout.snapshot())
        .expect_err("stages differ");
    assert_eq!(
        error.to_string(),
        "cannot restore rollout r-7: the snapshot counts failures for 2 stages, the plan has 1"
    );
    let mut broken = sim.rollout.snapshot();
    broken.hosts[0].stratum = 9;
    let error = Rollout::restore(plan(&[("50", 0, false), ("100", 0, false)]).build(), broken)
        .expect_err("bad stratum");
    assert!(error.to_string().contains("is in stratum 9"), "{error}");
}

#[test]
fn events_serialise_with_a_type_tag() {
    let mut sim = Sim::new(plan(&[("100", 30, false)]).build(), &fleet(&[("web", 1)]));
    let outcome = sim.act(Action::Start);
    let json = serde_json::to_value(&outcome.events).expect("json");
    assert_eq!(
        json,
        serde_json::json!([
            {"at": "2024-06-03T08:00:00Z", "actor": "alice", "type": "started", "reason": "testing start"},
            {"at": "2024-06-03T08:00:00Z", "type": "stage_started", "index": 0, "name": "stage-1", "percent": 100.0, "quota": 1},
        ])
    );
    let back: Vec<sluice_core::rollout::Event> = serde_json::from_value(json).expect("read back");
    assert_eq!(back, outcome.events);
}
