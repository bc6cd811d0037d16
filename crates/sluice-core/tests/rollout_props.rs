//! Property tests of the rollout state machine: random fleets, plans and
//! input sequences, with the selection invariants of the spec and those of
//! the canary analysis cohorts checked after every input, and every run
//! replayed (straight, and through a snapshot) to check it is
//! deterministic and restorable.

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use sluice_core::duration::Duration;
use sluice_core::fleet::Labels;
use sluice_core::percent::{Amount, Percent};
use sluice_core::plan::{
    Comparison, GateCommon, Gates, NoData, OnFailure, Plan, PrometheusGate, Stage,
    Strategy as SpreadStrategy, Threshold,
};
use sluice_core::rollout::{
    Action, EventKind, GateOutcome, GateResult, Health, HostState, Input, Outcome, Rejected,
    Rollout, Sighting, Snapshot, SnapshotHost, Status,
};
use sluice_core::selection::stage_quota;
use sluice_core::selector::Selector;

const TARGET: &str = "2.0";
const OLD: &str = "1.0";
const ROLES: [&str; 4] = ["web", "db", "cache", "edge"];
const SITES: [&str; 3] = ["sto", "lon", "ash"];

// ---- generators ---------------------------------------------------------

/// A host's labels: a role (or none) and a site.
#[derive(Debug, Clone, Copy)]
struct HostSpec {
    role: Option<usize>,
    site: usize,
}

fn host_spec() -> impl Strategy<Value = HostSpec> {
    (
        proptest::option::weighted(0.9, 0..ROLES.len()),
        0..SITES.len(),
    )
        .prop_map(|(role, site)| HostSpec { role, site })
}

fn labels_of(spec: HostSpec) -> Labels {
    let mut labels = Labels::from([("site".to_owned(), SITES[spec.site].to_owned())]);
    if let Some(role) = spec.role {
        labels.insert("role".to_owned(), ROLES[role].to_owned());
    }
    labels
}

#[derive(Debug, Clone)]
struct PlanSpec {
    spread: Vec<String>,
    min_per_stratum: u64,
    stages: Vec<(&'static str, u64, bool)>,
    max_in_flight: Option<Amount>,
    max_failed: Amount,
    host_timeout_minutes: u64,
    on_failure: OnFailure,
    reversible: bool,
    gate: Option<(u32, NoData, bool)>,
}

fn amount(
    counts: std::ops::Range<u64>,
    percents: &'static [&'static str],
) -> impl Strategy<Value = Amount> {
    prop_oneof![
        counts.prop_map(Amount::Count),
        proptest::sample::select(percents)
            .prop_map(|p| Amount::Percent(Percent::parse(p).expect("percent"))),
    ]
}

fn plan_spec() -> impl Strategy<Value = PlanSpec> {
    let spread = proptest::sample::select(vec![
        vec![],
        vec!["role".to_owned()],
        vec!["site".to_owned()],
        vec!["role".to_owned(), "site".to_owned()],
    ]);
    let percents =
        proptest::sample::subsequence(vec!["0.5", "1", "5", "10", "33.3", "50", "75"], 0..=3);
    let stage_extras = proptest::collection::vec(
        (
            proptest::sample::select(vec![0u64, 0, 10, 30, 90]),
            proptest::bool::weighted(0.25),
        ),
        4,
    );
    let no_data = proptest::sample::select(vec![NoData::Fail, NoData::Pass, NoData::Pause]);
    (
        spread,
        0u64..3,
        percents,
        stage_extras,
        proptest::option::weighted(0.7, amount(1..20, &["1%", "5%", "20%", "50%"])),
        amount(0..6, &["1%", "10%", "50%"]),
        5u64..60,
        proptest::bool::ANY,
        proptest::bool::weighted(0.8),
        proptest::option::weighted(0.5, (1u32..4, no_data, proptest::bool::weighted(0.2))),
    )
        .prop_map(
            |(
                spread,
                min_per_stratum,
                mut percents,
                extras,
                max_in_flight,
                max_failed,
                timeout,
                rollback,
                reversible,
                gate,
            )| {
                percents.push("100");
                let stages = percents
                    .into_iter()
                    .zip(extras)
                    .map(|(percent, (bake, approve))| (percent, bake, approve))
                    .collect();
                PlanSpec {
                    spread,
                    min_per_stratum,
                    stages,
                    max_in_flight,
                    max_failed,
                    host_timeout_minutes: timeout,
                    on_failure: if rollback {
                        OnFailure::Rollback
                    } else {
                        OnFailure::Pause
                    },
                    reversible,
                    gate,
                }
            },
        )
}

fn build_plan(spec: &PlanSpec) -> Plan {
    Plan {
        name: "prop".to_owned(),
        component: "docker-engine".to_owned(),
        version: TARGET.to_owned(),
        payload: None,
        selector: Selector::default(),
        strategy: SpreadStrategy {
            spread: spec.spread.clone(),
            min_per_stratum: spec.min_per_stratum,
            salt: None,
        },
        max_in_flight: spec.max_in_flight,
        stages: spec
            .stages
            .iter()
            .enumerate()
            .map(|(index, (percent, bake, approve))| Stage {
                name: format!("stage-{}", index + 1),
                percent: Percent::parse(percent).expect("percent"),
                bake: Duration::from_secs(bake * 60),
                approve: *approve,
            })
            .collect(),
        gates: Gates {
            max_failed: spec.max_failed,
            host_timeout: Duration::from_secs(spec.host_timeout_minutes * 60),
            prometheus: spec
                .gate
                .iter()
                .map(|(consecutive, no_data, report_only)| PrometheusGate {
                    common: GateCommon {
                        name: "g".to_owned(),
                        interval: Duration::from_secs(30),
                        consecutive: *consecutive,
                        no_data: *no_data,
                        report_only: *report_only,
                    },
                    url: "http://prometheus:9090".to_owned(),
                    query: "up".to_owned(),
                    fail_if: Threshold {
                        op: Comparison::Less,
                        value: 1.0,
                    },
                })
                .collect(),
            http: Vec::new(),
            compare: Vec::new(),
        },
        on_failure: spec.on_failure,
        reversible: spec.reversible,
        exclusive: true,
        windows: Vec::new(),
        after: None,
    }
}

/// What the test does next; resolved against the rollout's state into a
/// concrete [`Input`].
#[derive(Debug, Clone)]
enum Op {
    /// The n-th instructed or reverting host (modulo) reports ok.
    ReportOk(usize),
    /// The n-th admitted host (modulo) reports failed.
    ReportFailed(usize),
    /// The n-th host (modulo) reports ok at the version it runs.
    ReportStale(usize),
    /// The n-th admitted host (modulo) is found back at the old version,
    /// changed by hand: it reports ok there, drifted.
    ReportDrifted(usize),
    /// Every instructed and reverting host reports ok.
    ReportAllOk,
    Tick(i64),
    Join(HostSpec),
    /// A known host is seen again with other labels.
    Relabel(usize, HostSpec),
    Act(Action),
    Freeze(bool),
    Gate(GateOutcome),
}

fn op() -> impl Strategy<Value = Op> {
    let action = proptest::sample::select(vec![
        Action::Start,
        Action::Start,
        Action::Pause,
        Action::Resume,
        Action::Resume,
        Action::Advance,
        Action::Approve,
        Action::Approve,
        Action::Abort,
        Action::Rollback,
    ]);
    let gate = proptest::sample::select(vec![
        GateOutcome::Pass,
        GateOutcome::Fail,
        GateOutcome::NoData,
    ]);
    prop_oneof![
        8 => any::<usize>().prop_map(Op::ReportOk),
        2 => any::<usize>().prop_map(Op::ReportFailed),
        1 => any::<usize>().prop_map(Op::ReportStale),
        1 => any::<usize>().prop_map(Op::ReportDrifted),
        6 => Just(Op::ReportAllOk),
        6 => (1i64..120).prop_map(Op::Tick),
        2 => host_spec().prop_map(Op::Join),
        1 => (any::<usize>(), host_spec()).prop_map(|(n, spec)| Op::Relabel(n, spec)),
        3 => action.prop_map(Op::Act),
        1 => proptest::bool::ANY.prop_map(Op::Freeze),
        2 => gate.prop_map(Op::Gate),
    ]
}

// ---- the run --------------------------------------------------------------

/// One input as fed to the rollout, to replay.
type Step = (Timestamp, Input);

/// Runs `ops` against a fresh rollout, checking the invariants after each
/// input; returns the inputs fed and their results.
fn run(
    plan: &Plan,
    fleet: &[HostSpec],
    ops: &[Op],
    cohort_max: usize,
) -> (Vec<Step>, Vec<Result<Outcome, Rejected>>) {
    let mut rollout = Rollout::new("r-1".to_owned(), plan.clone(), t0());
    let mut now = t0();
    let mut checker = Checker {
        cohort_max,
        ..Checker::default()
    };
    let mut steps = Vec::new();
    let mut results = Vec::new();
    let mut joined = 0usize;
    let mut feed = |rollout: &mut Rollout, now: Timestamp, input: Input, checker: &mut Checker| {
        let before = rollout.snapshot();
        let was = (rollout.status().clone(), rollout.held().is_some());
        let result = rollout.handle(now, input.clone());
        checker.check(plan, rollout, &input, &was, &before, &result);
        steps.push((now, input));
        results.push(result);
    };
    for spec in fleet {
        let input = Input::Host {
            id: format!("h{joined}").into(),
            labels: labels_of(*spec),
            version: Some(OLD.into()),
        };
        joined += 1;
        feed(&mut rollout, now, input, &mut checker);
    }
    for op in ops {
        let mut inputs = Vec::new();
        let ids_in = |rollout: &Rollout, states: &[&str]| -> Vec<String> {
            rollout
                .hosts()
                .filter(|host| states.contains(&host.state.name()))
                .map(|host| host.id.to_owned())
                .collect()
        };
        let ok = |rollout: &Rollout, id: String| {
            let version = match rollout.host_state(&id) {
                Some(HostState::Reverting) => rollout.desired_version(&id).unwrap_or("stable"),
                _ => TARGET,
            }
            .to_owned();
            Input::Report {
                id,
                version,
                health: Health::Ok,
                message: None,
                drifted: false,
            }
        };
        match op {
            Op::ReportOk(n) => {
                let ids = ids_in(&rollout, &["instructed", "reverting"]);
                if !ids.is_empty() {
                    inputs.push(ok(&rollout, ids[n % ids.len()].clone()));
                }
            }
            Op::ReportAllOk => {
                for id in ids_in(&rollout, &["instructed", "reverting"]) {
                    inputs.push(ok(&rollout, id));
                }
            }
            Op::ReportFailed(n) => {
                let ids = ids_in(&rollout, &["instructed", "healthy", "failed", "reverting"]);
                if !ids.is_empty() {
                    inputs.push(Input::Report {
                        id: ids[n % ids.len()].clone(),
                        version: TARGET.to_owned(),
                        health: Health::Failed,
                        message: Some("exit 1".to_owned()),
                        drifted: false,
                    });
                }
            }
            Op::ReportStale(n) => {
                let ids: Vec<String> = rollout.hosts().map(|h| h.id.to_owned()).collect();
                if !ids.is_empty() {
                    let id = ids[n % ids.len()].clone();
                    let version = rollout
                        .host(&id)
                        .and_then(|h| h.version)
                        .unwrap_or(OLD)
                        .to_owned();
                    inputs.push(Input::Report {
                        id,
                        version,
                        health: Health::Ok,
                        message: None,
                        drifted: false,
                    });
                }
            }
            Op::ReportDrifted(n) => {
                let ids = ids_in(&rollout, &["instructed", "healthy", "failed", "reverting"]);
                if !ids.is_empty() {
                    inputs.push(Input::Report {
                        id: ids[n % ids.len()].clone(),
                        version: OLD.to_owned(),
                        health: Health::Ok,
                        message: None,
                        drifted: true,
                    });
                }
            }
            Op::Tick(minutes) => {
                now = now
                    .checked_add(SignedDuration::from_mins(*minutes))
                    .expect("time");
                inputs.push(Input::Tick);
            }
            Op::Join(spec) => {
                inputs.push(Input::Host {
                    id: format!("h{joined}").into(),
                    labels: labels_of(*spec),
                    version: Some(OLD.into()),
                });
                joined += 1;
            }
            Op::Relabel(n, spec) => {
                if joined > 0 {
                    inputs.push(Input::Host {
                        id: format!("h{}", n % joined).into(),
                        labels: labels_of(*spec),
                        version: None,
                    });
                }
            }
            Op::Act(action) => inputs.push(Input::Action {
                action: *action,
                actor: "prop".to_owned(),
                reason: "property test".to_owned(),
            }),
            Op::Freeze(on) => inputs.push(Input::Freeze {
                on: *on,
                actor: "prop".to_owned(),
                reason: "property test".to_owned(),
            }),
            Op::Gate(outcome) => {
                if !plan.gates.prometheus.is_empty() {
                    inputs.push(Input::Gate(GateResult {
                        name: "g".to_owned(),
                        outcome: *outcome,
                        evidence: "up=0 < 1".to_owned(),
                        comparison: None,
                    }));
                }
            }
        }
        for input in inputs {
            feed(&mut rollout, now, input, &mut checker);
        }
    }
    (steps, results)
}

fn t0() -> Timestamp {
    "2024-06-03T08:00:00Z".parse().expect("timestamp")
}

/// What the invariants remember from one input to the next.
#[derive(Default)]
struct Checker {
    /// Every host ever admitted, with the stage that admitted it.
    admitted: HashMap<String, usize>,
    /// The bound the cohorts are drawn with.
    cohort_max: usize,
    /// The baseline cohort after the last accepted input.
    baseline: HashSet<String>,
    /// Each host's rank, hashed once.
    ranks: HashMap<String, u64>,
}

impl Checker {
    fn check(
        &mut self,
        plan: &Plan,
        rollout: &Rollout,
        input: &Input,
        (was, was_held): &(Status, bool),
        before: &Snapshot,
        result: &Result<Outcome, Rejected>,
    ) {
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(_) => {
                assert_eq!(
                    &rollout.snapshot(),
                    before,
                    "a rejected input changed the rollout"
                );
                return;
            }
        };
        let min = plan.strategy.min_per_stratum;

        // (1) Per stratum, admitted ≤ the current stage's quota; and when a
        // stage completes, exactly its quota was admitted by it.
        if let Some(stage) = rollout.stage() {
            let percent = plan.stages[stage].percent;
            let mut total = 0;
            for stratum in rollout.strata() {
                let quota = stage_quota(percent, stratum.size, min);
                assert_eq!(stratum.quota, quota);
                assert!(
                    stratum.admitted <= quota,
                    "stratum {:?}: {} admitted, quota {quota}",
                    stratum.key,
                    stratum.admitted
                );
                total += quota;
            }
            assert_eq!(rollout.quota(), total);
        }
        for event in &outcome.events {
            if let EventKind::StageCompleted { index, .. } = event.kind {
                let percent = plan.stages[index].percent;
                let mut by_stratum: HashMap<&[String], (u64, u64)> = HashMap::new();
                for host in rollout.hosts() {
                    let entry = by_stratum.entry(&host.stratum.0).or_default();
                    entry.0 += 1;
                    if host.admitted_stage.is_some_and(|stage| stage <= index) {
                        entry.1 += 1;
                    }
                }
                for (key, (size, admitted)) in by_stratum {
                    assert_eq!(
                        admitted,
                        stage_quota(percent, size, min),
                        "stage {index} completed with stratum {key:?} at {admitted} of {size}"
                    );
                }
            }
        }

        // (2) Admission is sticky: admitted hosts stay admitted, at the stage
        // that admitted them.
        let mut admitted_now = 0;
        for host in rollout.hosts() {
            match (host.admitted_stage, self.admitted.get(host.id)) {
                (Some(stage), Some(&earlier)) => assert_eq!(stage, earlier, "{}", host.id),
                (Some(stage), None) => {
                    self.admitted.insert(host.id.to_owned(), stage);
                }
                (None, Some(_)) => panic!("host {} was un-admitted", host.id),
                (None, None) => assert_eq!(host.state, &HostState::Waiting),
            }
            if host.admitted_stage.is_some() {
                admitted_now += 1;
            }
        }
        assert_eq!(admitted_now, self.admitted.len());
        assert_eq!(rollout.counts().admitted(), admitted_now as u64);
        assert_eq!(rollout.counts().total(), rollout.selected());

        // (3) Bounded concurrency.
        assert!(rollout.in_flight() <= rollout.max_in_flight());
        assert_eq!(rollout.in_flight(), rollout.counts().instructed);

        // (4) Nothing is admitted unless running and not held afterwards, nor
        // by an input arriving while paused, pending, terminal or frozen,
        // unless that input is what lifts the halt.
        let admissions = outcome
            .hosts
            .iter()
            .filter(|change| matches!(change.state, HostState::Instructed { .. }))
            .count();
        if admissions > 0 {
            assert!(
                matches!(rollout.status(), Status::Running { .. }) && rollout.held().is_none(),
                "admitted {admissions} while {:?}, held {:?}",
                rollout.status(),
                rollout.held()
            );
            let lifts = match input {
                Input::Action { action, .. } => matches!(action, Action::Start | Action::Resume),
                Input::Freeze { on, .. } => !on,
                _ => false,
            };
            let halted = !matches!(was, Status::Running { .. }) || *was_held;
            assert!(
                !halted || lifts,
                "{input:?} admitted {admissions} while {was:?} (held: {was_held})"
            );
        }

        // (7) Cohorts: per stratum as many baseline as canary hosts; the
        // canary admitted and at the target, the baseline waiting and among
        // the hosts the current stage leaves waiting; each cohort within
        // its bound, the strata sharing it evenly.
        // Per stratum, the hosts the stage still admits: the best-ranked
        // `quota - admitted` waiting ones.
        let max = self.cohort_max;
        let cohorts = rollout.cohorts(max);
        let strata = rollout.strata();
        let mut admitted_next: HashSet<String> = HashSet::new();
        if cohorts.size() > 0 {
            let mut waiting: HashMap<&[String], Vec<(u64, &str)>> = HashMap::new();
            for host in rollout.hosts().filter(|h| h.admitted_stage.is_none()) {
                let rank = *self
                    .ranks
                    .entry(host.id.to_owned())
                    .or_insert_with(|| sluice_core::hash::rank(plan.salt(), host.id));
                waiting
                    .entry(&host.stratum.0)
                    .or_default()
                    .push((rank, host.id));
            }
            for progress in &strata {
                if let Some(hosts) = waiting.get_mut(&progress.key.0[..]) {
                    hosts.sort_unstable();
                    let still = (progress.quota - progress.admitted) as usize;
                    admitted_next.extend(hosts.iter().take(still).map(|(_, id)| (*id).to_owned()));
                }
            }
        }
        if rollout.stage().is_none() {
            assert_eq!(cohorts.size(), 0, "cohorts without a current stage");
        } else {
            assert!(cohorts.size() <= max);
            let offered: Vec<usize> = cohorts
                .strata
                .iter()
                .map(|s| (s.at_target.min(s.spare)) as usize)
                .collect();
            let shares: Vec<usize> = cohorts.strata.iter().map(|s| s.canary.len()).collect();
            let total: usize = offered.iter().sum();
            if total <= max {
                assert_eq!(shares, offered, "unbounded, every matched host");
            } else {
                assert_eq!(shares.iter().sum::<usize>(), max, "the bound is used");
                // In proportion: each share the floor or the ceiling of
                // its stratum's part of the bound.
                for (share, offer) in shares.iter().zip(&offered) {
                    let floor = offer * max / total;
                    assert!(
                        *share == floor || *share == floor + 1,
                        "shares {shares:?} of {offered:?}, bound {max}"
                    );
                }
            }
            for stratum in &cohorts.strata {
                assert_eq!(
                    stratum.canary.len(),
                    stratum.baseline.len(),
                    "{:?}",
                    stratum.key
                );
                let progress = strata
                    .iter()
                    .find(|p| p.key == stratum.key)
                    .expect("a stratum");
                assert_eq!(
                    stratum.spare,
                    (progress.size - progress.quota).min(progress.size - progress.admitted)
                );
                for host in &stratum.canary {
                    let view = rollout.host(host).expect("a canary host");
                    assert!(view.admitted_stage.is_some(), "canary {host} not admitted");
                    assert_eq!(view.version, Some(TARGET), "canary {host}");
                    assert_eq!(view.stratum, &stratum.key);
                    assert!(!matches!(
                        view.state,
                        HostState::Reverting | HostState::Reverted
                    ));
                }
                for host in &stratum.baseline {
                    let view = rollout.host(host).expect("a baseline host");
                    assert_eq!(view.state, &HostState::Waiting, "baseline {host}");
                    assert_eq!(view.stratum, &stratum.key);
                    assert!(
                        !admitted_next.contains(&**host),
                        "baseline {host} is among the hosts the stage admits next"
                    );
                }
            }
        }
        // No input but a joiner's (which may raise a quota) or a new
        // stage's admits a host that served as baseline before it.
        let stage_started = outcome
            .events
            .iter()
            .any(|event| matches!(event.kind, EventKind::StageStarted { .. }));
        if !matches!(input, Input::Host { .. }) && !stage_started {
            for change in &outcome.hosts {
                if matches!(change.state, HostState::Instructed { .. }) {
                    assert!(
                        !self.baseline.contains(&change.id),
                        "{input:?} admitted {} while it served as baseline",
                        change.id
                    );
                }
            }
        }
        self.baseline = cohorts.baseline().map(|host| host.to_string()).collect();

        // (5) Desired versions: the target once admitted; after a rollback,
        // the version each admitted host ran before.
        for host in rollout.hosts() {
            let desired = rollout.desired_version(host.id);
            match (host.admitted_stage, rollout.status()) {
                (None, _) => assert_eq!(desired, None),
                (Some(_), Status::RolledBack) => {
                    assert_eq!(desired, host.previous, "{}", host.id);
                    assert!(matches!(
                        host.state,
                        HostState::Reverting | HostState::Reverted
                    ));
                }
                (Some(_), _) => assert_eq!(desired, Some(TARGET)),
            }
        }
    }
}

/// How a replay restores its rollout at the split.
#[derive(Debug, Clone, Copy)]
enum Restore {
    /// From the whole snapshot.
    Whole,
    /// As the server does: an active rollout from the records of the hosts
    /// not waiting and of the waiting hosts relabelled since they joined
    /// (which keep the stratum they joined), then the inventory placed
    /// (`Rollout::place`) for the other waiting ones; a terminal one whole.
    Placing,
}

/// Feeds recorded inputs to a fresh rollout, through a snapshot (serialised
/// as JSON and restored) after `split` of them.
fn replay(
    plan: &Plan,
    steps: &[Step],
    split: usize,
    how: Restore,
) -> Vec<Result<Outcome, Rejected>> {
    let mut rollout = Rollout::new("r-1".to_owned(), plan.clone(), t0());
    let mut results = Vec::with_capacity(steps.len());
    // The inventory as the inputs so far showed it.
    let mut inventory: HashMap<String, Labels> = HashMap::new();
    let mut relabelled: HashSet<String> = HashSet::new();
    for (index, (now, input)) in steps.iter().enumerate() {
        if index == split {
            let json = serde_json::to_string(&rollout.snapshot()).expect("serialise");
            let mut snapshot: Snapshot = serde_json::from_str(&json).expect("deserialise");
            match how {
                Restore::Whole => {
                    rollout = Rollout::restore(plan.clone(), snapshot).expect("restore");
                }
                // A terminal rollout's record is its whole snapshot.
                _ if rollout.status().is_terminal() => {
                    rollout = Rollout::restore(plan.clone(), snapshot).expect("restore");
                }
                Restore::Placing => {
                    let (placed, kept) = snapshot.hosts.into_iter().partition(|host| {
                        host.admitted_stage.is_none() && !relabelled.contains(&host.id)
                    });
                    snapshot.hosts = kept;
                    rollout = Rollout::restore(plan.clone(), snapshot).expect("restore");
                    let placed: Vec<SnapshotHost> = placed;
                    rollout.place(placed.into_iter().map(|host| Sighting {
                        labels: inventory[&host.id].clone(),
                        id: host.id.into(),
                        version: host.version.map(Into::into),
                    }));
                }
            }
        }
        if let Input::Host { id, labels, .. } = input {
            let before = inventory.insert(id.to_string(), labels.clone());
            if before.is_some_and(|before| before != *labels) {
                relabelled.insert(id.to_string());
            }
        }
        results.push(rollout.handle(*now, input.clone()));
    }
    results
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn selection_invariants_hold_over_random_runs(
        fleet in proptest::collection::vec(host_spec(), 0..300),
        spec in plan_spec(),
        ops in proptest::collection::vec(op(), 0..120),
        split in any::<proptest::sample::Index>(),
        cohort_max in proptest::sample::select(vec![1usize, 3, usize::MAX]),
    ) {
        let plan = build_plan(&spec);
        let (steps, results) = run(&plan, &fleet, &ops, cohort_max);

        // (8) Cohorts follow from the state alone: a rollout restored from
        // its snapshot (its hosts learnt in another order) draws the same.
        let mut rollout = Rollout::new("r-1".to_owned(), plan.clone(), t0());
        for (now, input) in &steps {
            let _ = rollout.handle(*now, input.clone());
        }
        let mut snapshot = rollout.snapshot();
        snapshot.hosts.reverse();
        let restored = Rollout::restore(plan.clone(), snapshot).expect("restore");
        prop_assert_eq!(rollout.cohorts(cohort_max), restored.cohorts(cohort_max));

        // (6) Deterministic: the same inputs give the same outcomes, also
        // across a snapshot and restore at any point.
        prop_assert_eq!(&replay(&plan, &steps, usize::MAX, Restore::Whole), &results);
        let split = split.index(steps.len() + 1);
        prop_assert_eq!(&replay(&plan, &steps, split, Restore::Whole), &results);
        // The same without the waiting hosts' records, placed again from
        // the inventory.
        prop_assert_eq!(&replay(&plan, &steps, split, Restore::Placing), &results);
    }

    /// Runs that start, then mostly report and tick, so that rollouts get
    /// far: through stages, to completion, rollback or pause.
    #[test]
    fn invariants_hold_on_runs_that_go_far(
        fleet in proptest::collection::vec(host_spec(), 1..300),
        spec in plan_spec(),
        ops in proptest::collection::vec(
            prop_oneof![
                6 => Just(Op::ReportAllOk),
                4 => (1i64..60).prop_map(Op::Tick),
                1 => any::<usize>().prop_map(Op::ReportFailed),
                1 => host_spec().prop_map(Op::Join),
                1 => Just(Op::Act(Action::Approve)),
                1 => Just(Op::Act(Action::Resume)),
            ],
            0..80,
        ),
    ) {
        let plan = build_plan(&spec);
        let mut all = vec![Op::Act(Action::Start)];
        all.extend(ops);
        let (steps, results) = run(&plan, &fleet, &all, usize::MAX);
        for how in [Restore::Whole, Restore::Placing] {
            prop_assert_eq!(&replay(&plan, &steps, steps.len() / 2, how), &results);
        }
    }
}

/// A rollout with only healthy hosts always completes, with every host
/// healthy at the target.
#[test]
fn a_healthy_fleet_always_completes() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    runner
        .run(
            &(proptest::collection::vec(host_spec(), 0..300), plan_spec()),
            |(fleet, mut spec)| {
                // Hosts report within the 10 minutes between ticks.
                spec.host_timeout_minutes = 60;
                let plan = build_plan(&spec);
                let mut ops = vec![Op::Act(Action::Start)];
                for _ in 0..700 {
                    ops.push(Op::ReportAllOk);
                    ops.push(Op::Act(Action::Approve));
                    ops.push(Op::Tick(10));
                }
                let (steps, results) = run(&plan, &fleet, &ops, usize::MAX);
                let mut rollout = Rollout::new("r-1".to_owned(), plan.clone(), t0());
                for (now, input) in steps {
                    let _ = rollout.handle(now, input);
                }
                prop_assert_eq!(rollout.status(), &Status::Completed);
                prop_assert_eq!(rollout.counts().healthy, fleet.len() as u64);
                let failures = results
                    .iter()
                    .flatten()
                    .flat_map(|outcome| &outcome.events)
                    .filter(|e| matches!(e.kind, EventKind::HostFailed { .. }))
                    .count();
                prop_assert_eq!(failures, 0);
                Ok(())
            },
        )
        .expect("property holds");
}
