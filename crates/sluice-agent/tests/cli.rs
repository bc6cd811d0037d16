//! The `sluice-agent` binary's answers to bad configuration: exit 2 and a
//! message naming the file, line, column and key.

use std::process::Command;

fn run(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).expect("writing agent.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-agent"))
        .arg("--config")
        .arg(&path)
        .arg("--once")
        .output()
        .expect("running sluice-agent");
    let stderr = String::from_utf8_lossy(&output.stderr)
        .replace(&format!("{}", path.display()), "agent.toml");
    (output.status.code(), stderr)
}

#[test]
fn an_unknown_key_exits_2_naming_it_and_its_line() {
    let (code, stderr) = run(
        "server = \"http://127.0.0.1:1\"\n\n[[component]]\nname = \"app\"\nversion_cmd = \"true\"\napply_cmd = \"true\"\nhealth = \"true\"\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr
            .starts_with("error: agent.toml:7:1: health: unknown field `health`, expected one of"),
        "{stderr}"
    );
}

#[test]
fn a_missing_token_file_exits_2() {
    let (code, stderr) =
        run("server = \"http://127.0.0.1:1\"\ntoken_file = \"/nonexistent/agent.token\"\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("token_file: cannot read /nonexistent/agent.token"),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_exits_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-agent"))
        .args(["--config", "/nonexistent/agent.toml", "--once"])
        .output()
        .expect("running sluice-agent");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/agent.toml: cannot read the configuration"),
        "{stderr}"
    );
}
