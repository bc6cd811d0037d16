//! The simulator against the 10k-host fixture fleet and the example plans:
//! the bounds that follow from a plan hold, faults hit whom they say, and
//! the same seed gives the same report.

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use sluice_core::duration::Duration;
use sluice_core::fleet::{parse_fleet, Host};
use sluice_core::plan::{parse_plan, Plan};
use sluice_core::rollout::EventKind;
use sluice_sim::{simulate, Config, Fault, Report};

fn repo_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn fleet() -> &'static [Host] {
    static FLEET: OnceLock<Vec<Host>> = OnceLock::new();
    FLEET.get_or_init(|| {
        parse_fleet(repo_file("examples/fleet-10k.json").as_bytes()).expect("the fixture fleet")
    })
}

fn example(name: &str) -> Plan {
    parse_plan(&repo_file(&format!("examples/{name}"))).expect("an example plan")
}

fn plan(yaml: &str) -> Plan {
    parse_plan(yaml).expect("a valid test plan")
}

fn run(plan: &Plan, faults: &[&str], seed: u64) -> Report {
    let config = Config {
        seed,
        faults: faults
            .iter()
            .map(|spec| Fault::parse(spec).expect("a valid fault"))
            .collect(),
        ..Config::default()
    };
    let report = simulate(plan, fleet(), &config);
    assert_eq!(
        report.refused,
        [],
        "the engine refused the simulation's inputs"
    );
    report
}

/// The most hosts that can fail with every host failing: `max_in_flight`
/// plus the failures the halting stage tolerates, plus the hosts of the
/// stages before it (a stage whose every host failed still completes when
/// `max_failed` tolerates its whole quota).
fn all_fail_bound(report: &Report) -> u64 {
    let stage = report.halt_stage.expect("the rollout halted in a stage");
    let allowed = report.stages[stage]
        .allowed_failures
        .expect("the halting stage started");
    let before = match stage {
        0 => 0,
        _ => report.stages[stage - 1]
            .quota
            .expect("earlier stage started"),
    };
    report.max_in_flight.unwrap_or(u64::MAX) + allowed + before
}

#[test]
fn a_clean_run_completes_with_every_selected_host_changed() {
    for name in ["plan-docker.yaml", "plan-all-at-once.yaml"] {
        let report = run(&example(name), &[], 1);
        assert_eq!(report.final_state, "completed", "{name}");
        assert!(report.hosts_selected > 1_000, "{name}");
        assert_eq!(report.hosts_changed, report.hosts_selected, "{name}");
        assert_eq!(report.hosts_admitted, report.hosts_selected, "{name}");
        assert_eq!(report.hosts_failed, 0, "{name}");
        assert!(report.failed_by_role.is_empty(), "{name}");
        assert_eq!(report.time_to_detect_s, None, "{name}");
        assert_eq!(report.time_to_halt_s, None, "{name}");
        let mut previous = 0.0;
        for stage in &report.stages {
            let started = stage.started_s.expect("every stage started");
            let completed = stage.completed_s.expect("every stage completed");
            assert!(
                previous <= started && started <= completed,
                "{name}: {stage:?}"
            );
            previous = completed;
        }
        assert_eq!(report.duration_s, previous, "{name}");
    }
}

#[test]
fn bakes_and_windows_are_honoured_in_virtual_time() {
    let report = run(&example("plan-docker.yaml"), &[], 1);
    // Canary bakes 30m, then 2h, then 4h, one after the other.
    let stages = &report.stages;
    let at = |i: usize| stages[i].started_s.expect("started");
    assert!(at(1) - at(0) >= 30.0 * 60.0, "{stages:?}");
    assert!(at(2) - at(1) >= 2.0 * 3_600.0, "{stages:?}");
    assert!(at(3) - at(2) >= 4.0 * 3_600.0, "{stages:?}");
    // The window closes at 16:00 Stockholm (15:00 UTC, 7h after the start)
    // and the last stage finishes the next morning at 09:00 at the earliest.
    let held = (report.timeline.iter()).any(|entry| matches!(entry.event, EventKind::Held { .. }));
    assert!(held, "{:?}", report.timeline);
    assert!(report.duration_s >= 24.0 * 3_600.0, "{}", report.duration_s);
}

#[test]
fn approvals_wait_for_approve_after_and_windows_for_the_start() {
    let plan = example("plan-docker.yaml");
    let prompt = run(&plan, &[], 1);
    let config = Config {
        seed: 1,
        approve_after: Duration::from_secs(3_600),
        ..Config::default()
    };
    let patient = simulate(&plan, fleet(), &config);
    let awaited = |report: &Report| {
        let canary = &report.stages[0];
        report.stages[1].started_s.expect("stage 2 started") - canary.started_s.expect("started")
    };
    assert!(
        awaited(&patient) >= awaited(&prompt) + 3_600.0 - 1.0,
        "{} vs {}",
        awaited(&patient),
        awaited(&prompt)
    );

    // Started on a Friday, the Monday-to-Thursday plan admits no host
    // before Monday 09:00 in Stockholm (08:00 UTC), 3 days later.
    let friday = Config {
        seed: 1,
        start: "2026-01-09T08:00:00Z".parse().expect("timestamp"),
        ..Config::default()
    };
    let report = simulate(&plan, fleet(), &friday);
    assert_eq!(report.final_state, "completed");
    assert!(matches!(
        report.timeline.iter().find(|e| matches!(e.event, EventKind::Held { .. })),
        Some(entry) if entry.at_s == 0.0
    ));
    let released = (report.timeline.iter())
        .find(|e| matches!(e.event, EventKind::Released { .. }))
        .expect("released");
    assert_eq!(released.at_s, 3.0 * 86_400.0);
    let baking = (report.timeline.iter())
        .find(|e| matches!(e.event, EventKind::Baking { .. }))
        .expect("the canary bakes");
    assert!(baking.at_s > released.at_s);
}

#[test]
fn all_fail_halts_within_max_in_flight_plus_max_failed() {
    // The example plan (max_in_flight 5 % of 7004 = 351, max_failed 2,
    // rollback), and one where max_in_flight binds: a 10 % canary of 700
    // hosts, 5 in flight at a time, 2 failures tolerated, pause.
    let tight = plan(
        "name: tight\ncomponent: docker-engine\nversion: '2'\nmax_in_flight: 5\n\
         stages: [{percent: 10}, {percent: 100}]\ngates: {max_failed: 2}\n",
    );
    for (plan, state, bound) in [
        (example("plan-docker.yaml"), "rolled_back", 351 + 2),
        (tight, "paused", 5 + 2),
    ] {
        let report = run(&plan, &["all:fail"], 3);
        assert_eq!(report.final_state, state, "{}", plan.name);
        assert_eq!(report.halt_stage, Some(0), "{}", plan.name);
        assert_eq!(all_fail_bound(&report), bound, "{}", plan.name);
        let allowed = report.stages[0].allowed_failures.expect("stage 1 started");
        assert!(report.hosts_failed > allowed, "{}", plan.name);
        assert!(
            report.hosts_failed <= bound,
            "{}: {} failed, bound {bound}",
            plan.name,
            report.hosts_failed
        );
        assert!(report.hosts_admitted <= bound, "{}", plan.name);
        assert!(report.time_to_detect_s <= report.time_to_halt_s);
    }
}

#[test]
fn the_naive_plan_changes_and_breaks_every_host() {
    let report = run(&example("plan-all-at-once.yaml"), &["all:fail"], 1);
    assert_eq!(report.hosts_failed, report.hosts_selected);
    assert_eq!(report.final_state, "paused");
}

#[test]
fn a_role_fault_fails_only_that_role() {
    for plan in [
        example("plan-docker.yaml"),
        example("plan-all-at-once.yaml"),
    ] {
        let report = run(&plan, &["role=edge:fail"], 5);
        let roles: Vec<&str> = report.failed_by_role.keys().map(String::as_str).collect();
        assert_eq!(roles, ["edge"], "{}", plan.name);
        assert!(report.hosts_failed > 0, "{}", plan.name);
        assert!(report.time_to_halt_s.is_some(), "{}", plan.name);
    }
}

#[test]
fn a_shared_fault_hits_about_that_share_of_the_matching_hosts() {
    let plan = example("plan-all-at-once.yaml");
    let ash = fleet()
        .iter()
        .filter(|host| host.labels.get("site") == Some("ash"))
        .filter(|host| plan.selector.matches(&host.labels))
        .count() as f64;
    let report = run(&plan, &["site=ash:fail:p=0.3"], 9);
    let hit = report.faults[0].hosts as f64;
    assert!((0.25..0.35).contains(&(hit / ash)), "{hit} of {ash}");
    // Everything at once: every host the fault hits got the change and failed.
    assert_eq!(report.hosts_failed, report.faults[0].hosts);
    let other = run(&plan, &["site=ash:fail:p=0.3"], 10);
    assert_ne!(
        report.failed_by_role, other.failed_by_role,
        "another seed hits other hosts"
    );
}

#[test]
fn silent_hosts_halt_the_rollout_within_host_timeout_and_a_poll() {
    for plan in [
        example("plan-docker.yaml"),
        example("plan-all-at-once.yaml"),
    ] {
        let report = run(&plan, &["all:silent"], 2);
        let first_admission = report.stages[0].started_s.expect("stage 1 started");
        let halt = report.time_to_halt_s.expect("halted");
        let bound = first_admission
            + plan.gates.host_timeout.as_secs() as f64
            + Config::default().poll.as_secs() as f64;
        assert!(
            halt <= bound,
            "{}: halted at {halt}, bound {bound}",
            plan.name
        );
        assert!(!report.reached_limit, "{}", plan.name);
    }
    // On rollback, every admitted host returns except the silent ones.
    let report = run(&example("plan-docker.yaml"), &["all:silent"], 2);
    assert_eq!(report.final_state, "rolled_back");
    assert!(report.hosts_failed > 0);
    assert_eq!(
        report.hosts_reverted + report.hosts_failed,
        report.hosts_admitted
    );
}

#[test]
fn late_failures_are_seen_after_their_delay() {
    let staged = run(&example("plan-docker.yaml"), &["all:fail-after=2h"], 4);
    let detect = staged.time_to_detect_s.expect("detected");
    assert!(detect >= 2.0 * 3_600.0, "{detect}");
    assert!(staged.time_to_halt_s.is_some());
    assert!(staged.hosts_failed < staged.hosts_selected / 4);

    // Everything at once completes long before the first failure: nothing halts.
    let naive = run(&example("plan-all-at-once.yaml"), &["all:fail-after=2h"], 4);
    assert_eq!(naive.final_state, "completed");
    assert_eq!(naive.time_to_halt_s, None);
    assert_eq!(naive.hosts_failed, naive.hosts_selected);
    assert!(naive.time_to_detect_s.expect("seen") >= 2.0 * 3_600.0);
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let plan = example("plan-docker.yaml");
    let faults = ["site=ash:fail:p=0.3", "role=config:fail-after=1h"];
    let first = serde_json::to_string(&run(&plan, &faults, 42)).expect("json");
    let again = serde_json::to_string(&run(&plan, &faults, 42)).expect("json");
    assert_eq!(first, again);
    let other = serde_json::to_string(&run(&plan, &faults, 43)).expect("json");
    assert_ne!(first, other);
}

#[test]
fn the_bound_on_virtual_time_stops_a_rollout_that_cannot_finish() {
    let config = Config {
        limit: Duration::from_secs(3_600),
        ..Config::default()
    };
    let report = simulate(&example("plan-docker.yaml"), fleet(), &config);
    assert!(report.reached_limit);
    assert_eq!(report.final_state, "running");
    assert_eq!(report.duration_s, 3_600.0);
}

fn small_fleet() -> &'static [Host] {
    &fleet()[..1_500]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// With every host failing, no more hosts fail than the bound the engine
    /// guarantees, whatever the seed, the limits and the failure policy.
    #[test]
    fn all_fail_never_exceeds_the_bound(
        seed in any::<u64>(),
        max_in_flight in 1u64..40,
        max_failed in 0u64..6,
        canary in prop::sample::select(vec!["0.1", "1", "5"]),
        rollback in any::<bool>(),
    ) {
        let plan = plan(&format!(
            "name: prop\ncomponent: docker-engine\nversion: '2'\n\
             strategy: {{spread: [site]}}\nmax_in_flight: {max_in_flight}\n\
             stages: [{{percent: {canary}}}, {{percent: 30}}, {{percent: 100}}]\n\
             gates: {{max_failed: {max_failed}}}\non_failure: {}\n",
            if rollback { "rollback" } else { "pause" }
        ));
        let config = Config {
            seed,
            faults: vec![Fault::parse("all:fail").expect("valid")],
            ..Config::default()
        };
        let report = simulate(&plan, small_fleet(), &config);
        prop_assert!(report.time_to_halt_s.is_some());
        prop_assert!(report.hosts_failed <= all_fail_bound(&report),
            "{} failed, bound {}", report.hosts_failed, all_fail_bound(&report));
        prop_assert!(report.hosts_failed <= report.hosts_admitted);
        prop_assert!(report.refused.is_empty(), "refused: {:?}", report.refused);
    }
}

/// `examples/plan-canary.yaml` with its gates' lists as `keep` says:
/// the threshold (prometheus), the comparison, or both report_only.
fn canary_plan(keep: &str) -> Plan {
    let source = repo_file("examples/plan-canary.yaml");
    let (head, gates) = source
        .split_once("  prometheus:\n")
        .expect("a prometheus list");
    let (prometheus, compare) = gates.split_once("  compare:\n").expect("a compare list");
    let (compare, tail) = compare.split_once("on_failure:").expect("on_failure");
    let report_only = |list: &str| format!("{list}      report_only: true\n");
    let gates = match keep {
        "prometheus" => format!("  prometheus:\n{prometheus}"),
        "compare" => format!("  compare:\n{compare}"),
        _ => format!(
            "  prometheus:\n{}  compare:\n{}",
            report_only(prometheus),
            report_only(compare)
        ),
    };
    parse_plan(&format!("{head}{gates}on_failure:{tail}")).expect("the canary plan")
}

fn degraded(plan: &Plan) -> Report {
    let config = Config {
        seed: 1,
        faults: vec![Fault::parse("role=edge:degrade=2.0").expect("a fault")],
        metric_base: 0.000045,
        ..Config::default()
    };
    let report = simulate(plan, fleet(), &config);
    assert_eq!(
        report.refused,
        [],
        "the engine refused the simulation's inputs"
    );
    report
}

#[test]
fn a_comparison_gate_halts_a_degrading_change_at_the_canary_stage() {
    let report = degraded(&canary_plan("compare"));
    assert_eq!(
        report.final_state,
        "rolled_back",
        "{}",
        report.render_text()
    );
    assert_eq!(report.halt_stage, Some(0), "halted in the canary stage");
    assert_eq!(report.hosts_failed, 0, "degraded hosts stay healthy");
    let gate = &report.gates[0];
    assert_eq!(
        (gate.name.as_str(), gate.kind),
        ("restarts-vs-baseline", "compare")
    );
    assert_eq!(gate.first_failing_stage, Some(0));
    let evidence = gate.first_failing_evidence.as_deref().unwrap_or_default();
    assert!(evidence.contains("role=edge"), "{evidence}");
    // Detected while the canary stage bakes, before its 30m are over.
    let canary = &report.stages[0];
    let detect = report.time_to_detect_s.expect("detected");
    assert!(
        detect < canary.started_s.unwrap_or(0.0) + 30.0 * 60.0 + 600.0,
        "{detect}"
    );
    assert!(
        report.gates_assumed_passing.is_empty(),
        "{:?}",
        report.gates_assumed_passing
    );
}

#[test]
fn a_fleet_wide_threshold_lets_the_degrading_canary_pass() {
    let report = degraded(&canary_plan("prometheus"));
    let threshold = &report.gates[0];
    assert_eq!(threshold.kind, "prometheus");
    assert!(threshold.evaluations > 0);
    // Every edge host doubled adds 1,152 × 0.000045 ≈ 0.052 to a healthy
    // 0.45: past 0.5 only in the last stage, if at all.
    assert!(
        threshold.first_failing_stage.is_none_or(|stage| stage >= 3),
        "{threshold:?}"
    );
    assert!(
        report.stages[0].completed_s.is_some(),
        "the canary stage passed"
    );
}

#[test]
fn report_only_gates_show_both_detection_times_on_one_run() {
    let report = degraded(&canary_plan("both"));
    assert_eq!(report.final_state, "completed");
    let [threshold, compare] = &report.gates[..] else {
        panic!("two simulated gates: {:?}", report.gates);
    };
    assert!(threshold.report_only && compare.report_only);
    assert_eq!(compare.first_failing_stage, Some(0));
    let compared = compare.first_failing_s.expect("the comparison fails");
    assert!(
        threshold.first_failing_s.is_none_or(|at| at > compared),
        "{threshold:?} against {compare:?}"
    );
    let text = report.render_text();
    assert!(text.contains("simulated gates"), "{text}");
    assert!(
        text.contains("restarts-vs-baseline (compare, report only)"),
        "{text}"
    );
}

#[test]
fn a_healthy_change_passes_the_comparison_gate() {
    let report = run(&canary_plan("compare"), &[], 1);
    assert_eq!(report.final_state, "completed", "{}", report.render_text());
    assert_eq!(report.gates[0].failing, 0, "{:?}", report.gates);
    assert!(report.gates[0].evaluations > 0);
}
