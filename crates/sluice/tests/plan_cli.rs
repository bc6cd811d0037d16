//! End-to-end tests of `sluice plan check` and `sluice plan preview`: the
//! real binary, real files, exit codes and output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("spawning sluice")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `sluice plan preview -f PLAN --fleet FLEET EXTRA…`.
fn preview(plan: &Path, fleet: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "plan",
        "preview",
        "-f",
        plan.to_str().expect("utf-8 path"),
        "--fleet",
        fleet.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    sluice(&args)
}

#[test]
fn check_accepts_the_example_plans() {
    for plan in [
        "examples/plan-docker.yaml",
        "examples/plan-minimal.yaml",
        "examples/plan-canary.yaml",
        "examples/plan-after.yaml",
    ] {
        let path = repo_file(plan);
        let output = sluice(&["plan", "check", "-f", path.to_str().expect("utf-8 path")]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{plan}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stdout).contains("valid plan"),
            "{}",
            text(&output.stdout)
        );
    }
}

#[test]
fn check_accepts_after_and_locates_a_bad_one() {
    let path = repo_file("examples/plan-after.yaml");
    let output = sluice(&["plan", "check", "-f", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("starts after docker-17.03.1 completes"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let plan = dir.path().join("after.yaml");
    std::fs::write(
        &plan,
        "name: p\ncomponent: c\nversion: \"1\"\nafter:\nstages: [{ percent: 100 }]\n",
    )
    .expect("writing plan");
    let output = sluice(&["plan", "check", "-f", plan.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:4:1: after: has no value", plan.display())),
        "{stderr}"
    );
}

#[test]
fn check_lists_every_problem_with_file_line_and_column_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = dir.path().join("broken.yaml");
    std::fs::write(
        &plan,
        "name: docker-17.03.1\n\
         component: docker-engine\n\
         version: \"17.03.1\"\n\
         max_in_flight: lots\n\
         stages:\n  \
           - { percent: 10, bake: 2 hours }\n  \
           - { percent: 5 }\n\
         on_failure: retry\n",
    )
    .expect("writing plan");
    let output = sluice(&["plan", "check", "-f", plan.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    let path = plan.display().to_string();
    let located: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with(&path))
        .collect();
    let fields: Vec<String> = located
        .iter()
        .map(|line| {
            let rest = &line[path.len() + 1..];
            rest.splitn(4, ':').take(3).collect::<Vec<_>>().join(":")
        })
        .collect();
    assert_eq!(
        fields,
        [
            "4:16: max_in_flight",
            "6:26: stages[0].bake",
            "7:16: stages[1].percent",
            "7:16: stages[1].percent",
            "8:13: on_failure",
        ],
        "every problem, in file order: {stderr}"
    );
    assert!(stderr.contains("5 problems found"), "{stderr}");
    assert!(
        stderr.contains("never decrease") && stderr.contains("must be at 100"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pause") && stderr.contains("rollback"),
        "says what is valid: {stderr}"
    );
}

#[test]
fn check_of_a_missing_file_is_invalid_input() {
    let output = sluice(&["plan", "check", "-f", "/nonexistent/plan.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("reading plan file /nonexistent/plan.yaml"));
}

#[test]
fn preview_json_has_the_spec_shape_and_cumulative_admissions() {
    let plan = repo_file("examples/plan-docker.yaml");
    let fleet = repo_file("examples/fleet-10k.json");
    let output = preview(&plan, &fleet, &["--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let object = json.as_object().expect("an object");
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        ["stages", "strata"],
        "exactly the spec's fields"
    );
    let stages = json["stages"].as_array().expect("stages");
    let names: Vec<&str> = stages.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["canary", "stage-2", "stage-3", "stage-4"]);
    let percents: Vec<f64> = stages
        .iter()
        .filter_map(|s| s["percent"].as_f64())
        .collect();
    assert_eq!(percents, [1.0, 10.0, 50.0, 100.0]);
    let admitted: Vec<Vec<&str>> = stages
        .iter()
        .map(|s| {
            s["admitted"]
                .as_array()
                .expect("admitted")
                .iter()
                .filter_map(|id| id.as_str())
                .collect()
        })
        .collect();
    for pair in admitted.windows(2) {
        assert!(
            pair[0].iter().all(|id| pair[1].contains(id)),
            "every host admitted at a stage stays admitted at the next"
        );
        assert!(pair[0].len() < pair[1].len());
    }
    let strata = json["strata"].as_u64().expect("strata");
    assert!(
        admitted[0].len() as u64 >= strata,
        "min_per_stratum 1 gives every stratum a canary"
    );
    // The selector excludes build agents and the sjc site.
    assert!(admitted[3]
        .iter()
        .all(|id| !id.starts_with("sjc-") && !id.contains("-build-agent-")));
}

#[test]
fn preview_text_summarises_stages_and_strata() {
    let plan = repo_file("examples/plan-docker.yaml");
    let fleet = repo_file("examples/fleet-10k.json");
    let output = preview(&plan, &fleet, &["--top", "3"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("stage 1/4  canary"), "{stdout}");
    assert!(stdout.contains("stage 4/4"), "{stdout}");
    assert!(stdout.contains("more strata"), "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("    role="))
            .count(),
        4 * 3,
        "three largest strata per stage: {stdout}"
    );
}

#[test]
fn preview_rejects_a_broken_fleet_file_naming_the_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = dir.path().join("fleet.json");
    std::fs::write(&fleet, "[{\"id\": \"a\"},\n {\"id\": 7}]").expect("writing fleet");
    let plan = repo_file("examples/plan-minimal.yaml");
    let output = preview(&plan, &fleet, &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
}
