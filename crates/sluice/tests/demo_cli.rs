//! `sluice demo` end to end: the real binary starts its server, simulated
//! agents over HTTP and a rollout; the tests follow it with the CLI it
//! suggests, then stop it with Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sluice_testkit::browse::{set_cookie, visit};
use sluice_testkit::{wait_for_blocking, OnFailure, Plan, Stage};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// The built-in plan's shape with one-second bakes and few hosts at once.
fn fast_plan() -> Plan {
    Plan::new("demo-fast", "docker-engine", "17.03.1")
        .spread(&["site"])
        .max_in_flight(4)
        .stage(Stage::percent(10).named("canary").bake("1s"))
        .stage(Stage::percent(100))
        .max_failed(2)
        .host_timeout("30s")
        .on_failure(OnFailure::Pause)
}

/// A running `sluice demo`; its stdout lines arrive on `lines`.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    server: String,
    data_dir: PathBuf,
    _work: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start(extra: &[&str]) -> Demo {
        let work = tempfile::tempdir().expect("work dir");
        let plan = work.path().join("fast.yaml");
        std::fs::write(&plan, fast_plan().to_string()).expect("plan");
        let mut child = Command::new(BIN)
            .args([
                "demo",
                "--hosts",
                "40",
                "--port",
                "0",
                "--checkin-interval",
                "1",
                "--plan",
            ])
            .arg(&plan)
            .args(extra)
            .current_dir(work.path())
            .env("RUST_LOG", "warn,sluice_agent=error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning sluice demo");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut demo = Demo {
            child,
            lines,
            seen: Vec::new(),
            server: String::new(),
            data_dir: PathBuf::new(),
            _work: work,
        };
        let export = demo.wait_for_line("the export line", |line| {
            line.contains("export SLUICE_SERVER=")
        });
        for word in export.split_whitespace() {
            if let Some(server) = word.strip_prefix("SLUICE_SERVER=") {
                demo.server = server.to_owned();
            }
            if let Some(dir) = word.strip_prefix("SLUICE_DATA_DIR=") {
                demo.data_dir = PathBuf::from(dir);
            }
        }
        assert!(demo.server.starts_with("http://127.0.0.1:"), "{export}");
        assert!(demo.data_dir.join("admin.token").is_file(), "{export}");
        demo
    }

    /// The first line (from now on) that `matches`, within a minute and a half.
    fn wait_for_line(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "sluice demo did not print {what} within 90s; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// `sluice ARGS` as the banner suggests: its server and data dir.
    fn sluice(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("SLUICE_SERVER", &self.server)
            .env("SLUICE_DATA_DIR", &self.data_dir)
            .env_remove("SLUICE_TOKEN")
            .output()
            .expect("running sluice")
    }

    fn status(&self) -> serde_json::Value {
        let output = self.sluice(&["rollout", "status", "r-1", "--output", "json"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("status JSON")
    }

    /// Ctrl-C, and the exit status once the demo has stopped.
    fn interrupt(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill -INT");
        assert!(sent.success());
        let status = wait_for_blocking(
            "the demo to stop after Ctrl-C",
            Duration::from_secs(30),
            || self.child.try_wait().expect("waiting for the demo"),
        );
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(line);
        }
        status
    }
}

fn gone(path: &Path) -> bool {
    !path.exists()
}

#[test]
fn the_demo_rolls_out_to_every_host_and_stops_cleanly_on_ctrl_c() {
    let mut demo = Demo::start(&[]);
    // The banner signs a newcomer in with a one-time link, not the token.
    let admin = std::fs::read_to_string(demo.data_dir.join("admin.token")).expect("admin.token");
    let link = demo
        .seen
        .iter()
        .find_map(|line| line.trim().strip_prefix("dashboard"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no dashboard line in:\n{}", demo.seen.join("\n")))
        .to_owned();
    assert!(
        !demo.seen.join("\n").contains(admin.trim()),
        "the banner shows the admin token"
    );
    let path = link
        .strip_prefix(&demo.server)
        .unwrap_or_else(|| panic!("{link} is not on {}", demo.server))
        .to_owned();
    assert!(path.starts_with("/signin/link/"), "{link}");
    let first = visit(&demo.server, &path);
    assert!(first.starts_with("HTTP/1.1 303"), "{first}");
    assert!(set_cookie(&first, "sluice_session").is_some(), "{first}");
    assert!(visit(&demo.server, &path).starts_with("HTTP/1.1 410"));
    // Later, `sluice dashboard` beside the demo makes another.
    let again = demo.sluice(&["dashboard"]);
    assert!(again.status.success(), "{again:?}");
    let link = String::from_utf8(again.stdout).expect("UTF-8");
    let path = link
        .trim()
        .strip_prefix(&demo.server)
        .expect("a link on the demo's server");
    assert!(visit(&demo.server, path).starts_with("HTTP/1.1 303"));

    demo.wait_for_line("the rollout completing", |line| {
        line.starts_with("completed")
    });
    let status = demo.status();
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["selected"], 40, "{status}");
    assert_eq!(status["healthy"], 40, "{status}");
    assert_eq!(status["failed"], 0, "{status}");

    // Every agent enrolled with the one enrollment token and checks in
    // with a token bound to its own host.
    let tokens = demo.sluice(&["token", "list", "--output", "json"]);
    assert!(
        tokens.status.success(),
        "{}",
        String::from_utf8_lossy(&tokens.stderr)
    );
    let tokens: serde_json::Value = serde_json::from_slice(&tokens.stdout).expect("JSON");
    let tokens = tokens["tokens"].as_array().expect("tokens");
    let role = |role: &'static str| tokens.iter().filter(move |t| t["role"] == role);
    let enroll: Vec<_> = role("enroll").collect();
    assert_eq!(enroll.len(), 1, "{tokens:?}");
    assert_eq!(enroll[0]["uses_left"], 0, "{tokens:?}");
    let bound: std::collections::BTreeSet<&str> =
        role("agent").filter_map(|t| t["host"].as_str()).collect();
    assert_eq!(bound.len(), 40, "{tokens:?}");

    let exit = demo.interrupt();
    assert!(
        exit.success(),
        "{exit:?}; printed:\n{}",
        demo.seen.join("\n")
    );
    assert!(demo
        .seen
        .iter()
        .any(|line| line.starts_with("stopped; removed")));
    assert!(
        gone(&demo.data_dir),
        "{} is left behind",
        demo.data_dir.display()
    );
}

#[test]
fn a_failing_fleet_stops_the_demo_rollout_within_its_bounds() {
    let mut demo = Demo::start(&["--fault", "all:fail"]);
    demo.wait_for_line("the rollout pausing", |line| line.starts_with("paused"));
    let status = demo.status();
    assert_eq!(status["state"], "paused", "{status}");
    let failed = status["failed"].as_u64().expect("failed");
    // At most max_in_flight (4) hosts change at once, and the stage stops
    // once more than max_failed (2) of them fail.
    assert!((1..=4 + 2).contains(&failed), "{status}");
    assert!(
        status["admitted"].as_u64().expect("admitted") < 40,
        "{status}"
    );
    // The failed hosts' last words reached the server.
    let hosts = demo.sluice(&[
        "hosts",
        "list",
        "--component",
        "docker-engine",
        "--output",
        "json",
    ]);
    assert!(
        hosts.status.success(),
        "{}",
        String::from_utf8_lossy(&hosts.stderr)
    );
    let text = String::from_utf8_lossy(&hosts.stdout);
    assert!(text.contains("failed"), "{text}");

    let exit = demo.interrupt();
    assert!(exit.success(), "{exit:?}");
    assert!(gone(&demo.data_dir));
}

#[test]
fn invalid_demo_input_exits_2_saying_what_is_valid() {
    let run = |args: &[&str]| {
        let output = Command::new(BIN)
            .arg("demo")
            .args(args)
            .output()
            .expect("running sluice demo");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let typo = run(&["--fault", "all:fial"]);
    assert!(
        typo.contains("all:fial") && typo.contains("valid forms"),
        "{typo}"
    );
    let late = run(&["--fault", "all:fail-after=1h"]);
    assert!(late.contains("sluice simulate"), "{late}");
    let none = run(&["--hosts", "0"]);
    assert!(
        none.contains("--hosts") && none.contains("1 to 10000"),
        "{none}"
    );
}
