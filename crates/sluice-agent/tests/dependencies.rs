//! The agent runs on every host: it must not carry the store, the server,
//! the engine or any database driver. This reads the real dependency tree.

use std::process::Command;

/// Crates that must never be in the agent's (normal) dependency tree.
const FORBIDDEN: &[&str] = &[
    "sluice-store",
    "sluice-server",
    "sluice-core",
    "sqlx",
    "sqlx-core",
    "libsqlite3-sys",
    "rusqlite",
    "postgres",
    "tokio-postgres",
    "diesel",
    "mysql",
    "axum",
    "utoipa",
];

#[test]
fn the_agent_carries_no_store_server_or_database_driver() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "sluice-agent",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo tree failed: {stderr}");
    let tree = String::from_utf8_lossy(&output.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    // The tree is the real one: it holds what the agent does use.
    for expected in [
        "sluice-agent",
        "sluice-api",
        "sluice-client",
        "reqwest",
        "tokio",
    ] {
        assert!(
            crates.contains(&expected),
            "{expected} missing from:\n{tree}"
        );
    }
    let found: Vec<&&str> = FORBIDDEN
        .iter()
        .filter(|name| crates.contains(name))
        .collect();
    assert!(
        found.is_empty(),
        "sluice-agent must not depend on {found:?}; its tree:\n{tree}"
    );
}
