//! End-to-end tests of `sluice simulate`: the real binary on the example
//! fleet and plans, its JSON fields, its determinism and its exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// Runs `sluice simulate --fleet examples/fleet-10k.json --plan examples/PLAN EXTRA…`.
fn simulate(plan: &str, extra: &[&str]) -> Output {
    let fleet = repo_file("examples/fleet-10k.json");
    let plan = repo_file(&format!("examples/{plan}"));
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("simulate")
        .arg("--fleet")
        .arg(fleet)
        .arg("--plan")
        .arg(plan)
        .args(extra)
        .output()
        .expect("spawning sluice")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the report is JSON")
}

#[test]
fn json_has_the_figures_the_spec_names() {
    let halted = json(&simulate(
        "plan-docker.yaml",
        &["--json", "--fault", "role=edge:fail"],
    ));
    for field in [
        "duration_s",
        "final_state",
        "hosts_changed",
        "hosts_failed",
        "failed_by_role",
        "time_to_detect_s",
        "time_to_halt_s",
        "stages",
        "timeline",
    ] {
        assert!(halted.get(field).is_some(), "{field} missing: {halted}");
    }
    assert_eq!(halted["final_state"], "rolled_back");
    assert!(halted["time_to_halt_s"].as_f64().is_some());
    let roles: Vec<&String> = halted["failed_by_role"]
        .as_object()
        .expect("a map")
        .keys()
        .collect();
    assert_eq!(roles, ["edge"]);
    assert_eq!(halted["timeline"][0]["type"], "started");

    let clean = json(&simulate("plan-all-at-once.yaml", &["--json"]));
    assert_eq!(clean["final_state"], "completed");
    assert!(clean["time_to_halt_s"].is_null());
    assert!(clean["time_to_detect_s"].is_null());
    assert_eq!(clean["hosts_changed"], clean["hosts_selected"]);
}

#[test]
fn the_same_seed_prints_the_same_report() {
    let args = ["--json", "--fault", "site=ash:fail:p=0.3", "--seed", "7"];
    let first = simulate("plan-docker.yaml", &args);
    let again = simulate("plan-docker.yaml", &args);
    assert_eq!(text(&first.stdout), text(&again.stdout));
    let other = simulate(
        "plan-docker.yaml",
        &["--json", "--fault", "site=ash:fail:p=0.3", "--seed", "8"],
    );
    assert_ne!(text(&first.stdout), text(&other.stdout));
}

#[test]
fn the_summary_shows_the_timeline_figures_and_assumptions() {
    let output = simulate(
        "plan-docker.yaml",
        &["--fault", "all:silent", "--poll", "30s"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let summary = text(&output.stdout);
    for expected in [
        "stage 1 canary (1%) started",
        "silent for 15m (host_timeout)",
        "result: rolled_back after 15m00s",
        "time to detect   +15m00s",
        "time to halt     +15m00s",
        "blast radius by role",
        "agents check in every 30s ±20 %",
        "treated as passing: container-restarts (prometheus), slo-check (http)",
        "approvals are given 0s after a stage awaits them",
    ] {
        assert!(
            summary.contains(expected),
            "{expected:?} missing:\n{summary}"
        );
    }
}

#[test]
fn invalid_faults_and_flags_exit_2_naming_the_part_at_fault() {
    for (args, expected) in [
        (&["--fault", "site=ash:fial"][..], "kind \"fial\""),
        (&["--fault", "role=edge"], "selector \"role=edge\""),
        (&["--fault", "all:fail:p=2"], "option \"p=2\""),
        (&["--poll", "0s"], "--poll"),
        (&["--poll", "soon"], "--poll"),
        (&["--start", "monday"], "--start"),
        (&["--fault", "role=edge:degrade=0"], "positive factor"),
        (&["--metric-base", "0"], "--metric-base"),
        (&["--metric-base=-1"], "--metric-base"),
        (&["--cohort-max", "0"], "--cohort-max"),
    ] {
        let output = simulate("plan-docker.yaml", args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        if args[0] == "--fault" {
            assert!(stderr.contains("valid forms: all:fail"), "{stderr}");
        }
    }
    let missing = simulate("no-such-plan.yaml", &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("reading plan file"));
}

/// `--report` writes the rehearsal's retrospective: JSON whose figures are
/// the simulation's own, and Markdown with its chart beside it.
#[test]
fn report_is_the_retrospective_of_the_rehearsal() {
    let args = ["--fault", "role=edge:fail", "--seed", "4"];
    let figures = json(&simulate(
        "plan-docker.yaml",
        &[&args[..], &["--json"]].concat(),
    ));
    let report = json(&simulate(
        "plan-docker.yaml",
        &[&args[..], &["--report", "json"]].concat(),
    ));
    assert_eq!(report["summary"]["outcome"], figures["final_state"]);
    assert_eq!(
        report["times"]["time_to_detect_s"],
        figures["time_to_detect_s"]
    );
    assert_eq!(report["times"]["time_to_halt_s"], figures["time_to_halt_s"]);
    assert_eq!(report["failures"]["by_role"][0]["value"], "edge");
    assert_eq!(report["source"]["kind"], "simulation");

    let dir = tempfile::tempdir().expect("a temp dir");
    let md = dir.path().join("rehearsal.md");
    let out = simulate(
        "plan-docker.yaml",
        &[
            &args[..],
            &["--report", "md", "-o", md.to_str().expect("a path")],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let text = std::fs::read_to_string(&md).expect("the report");
    assert!(text.starts_with("# Rollout sim — retrospective"), "{text}");
    assert!(text.contains("](sim-chart.svg)"));
    assert!(dir.path().join("sim-chart.svg").exists());

    let refused = simulate("plan-docker.yaml", &["--report", "pdf"]);
    assert_eq!(refused.status.code(), Some(2));
}
