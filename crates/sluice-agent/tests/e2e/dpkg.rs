//! A real package manager: two versions of a small Debian package are built
//! with `dpkg-deb` and served by the test; real agents install the first
//! with real `dpkg` (each host a private root: its own `--instdir`, and an
//! `--admindir` inside it), upgrade to the second through a staged rollout
//! and roll back to the first. Each `.deb` travels as the payload's `url`
//! and `sha256`, downloaded and verified by the agent. dpkg wants root, as
//! the tests run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use sluice_api::rollout::{Action, Phase, RolloutState};
use sluice_testkit::{wait_for, Amount, FileServer, Plan, Sandbox, Stage, DEADLINE};

use crate::artifact::sha256;
use crate::harness::{start_server, wait_for_component, Host};

const PACKAGE: &str = "sluice-e2e-hello";
const OLD: &str = "1.0";
const NEW: &str = "2.0";
const HOSTS: usize = 3;

/// `PACKAGE_VERSION_all.deb`, built with `dpkg-deb` in `dir`: a program
/// printing the version and a file holding it.
fn build(dir: &Path, version: &str) -> Vec<u8> {
    let tree = dir.join(format!("tree-{version}"));
    let write = |path: &str, text: &str| {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("creating a dir");
        std::fs::write(&path, text).expect("writing a package file");
        path
    };
    write(
        "DEBIAN/control",
        &format!(
            "Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\nMaintainer: sluice developers <sluice@example.net>\nDescription: says which version of it is installed\n"
        ),
    );
    write(
        &format!("usr/share/{PACKAGE}/version"),
        &format!("{version}\n"),
    );
    let program = write(
        &format!("usr/bin/{PACKAGE}"),
        &format!("#!/bin/sh\necho {version}\n"),
    );
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
        .expect("making the program executable");
    let deb = dir.join(format!("{PACKAGE}_{version}_all.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running dpkg-deb");
    assert!(status.success(), "dpkg-deb --build failed");
    std::fs::read(&deb).expect("reading the package")
}

/// A host whose component `hello` is the package in its private root
/// (`root/`, the package database in `root/var/lib/dpkg`): its version
/// what dpkg says is installed (`none` before the first install), its
/// health the installed program printing the desired version.
fn host(id: &str, labels: &BTreeMap<String, String>, server: &Sandbox, token: &Path) -> Host {
    let host = Host::with_component(id, labels, server.url(), token, |path| {
        let root = format!("{path}/root");
        let admin = format!("{root}/var/lib/dpkg");
        format!(
            r#"name = "hello"
version_cmd = "dpkg-query --admindir={admin} -W -f='${{Version}}' {PACKAGE} 2>/dev/null | grep . || echo none"
apply_cmd = "dpkg --admindir={admin} --instdir={root} --log={path}/dpkg.log -i \"$SLUICE_ARTIFACT\""
health_cmd = "test \"$SLUICE_VERSION\" = none || test \"$({root}/usr/bin/{PACKAGE})\" = \"$SLUICE_VERSION\""
timeout = "60s"
"#
        )
    });
    // What dpkg needs of its database: a status file (empty: nothing
    // installed yet), and its info and updates directories.
    let admin = host.path("root/var/lib/dpkg");
    for dir in ["info", "updates"] {
        std::fs::create_dir_all(admin.join(dir)).expect("creating the dpkg database");
    }
    std::fs::write(admin.join("status"), "").expect("the dpkg status file");
    host
}

/// What dpkg says is installed on `host`: (status, version).
fn installed(host: &Host) -> (String, String) {
    let output = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            host.path("root/var/lib/dpkg").display()
        ))
        .args(["-W", "-f=${Status}|${Version}", PACKAGE])
        .output()
        .expect("running dpkg-query");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, version) = text.split_once('|').unwrap_or((&text, ""));
    (status.to_owned(), version.to_owned())
}

/// The hosts dpkg says run `version`, with the package's file saying so.
fn running(hosts: &[Host], version: &str) -> BTreeSet<String> {
    hosts
        .iter()
        .filter(|host| {
            let file = host.path(&format!("root/usr/share/{PACKAGE}/version"));
            installed(host) == ("install ok installed".to_owned(), version.to_owned())
                && std::fs::read_to_string(file).is_ok_and(|text| text.trim() == version)
        })
        .map(|host| host.id.clone())
        .collect()
}

/// Waits until every host reports `hello` at `version`, ok.
async fn wait_for_reports(server: &Sandbox, hosts: &[Host], version: &str) {
    wait_for_component(server, hosts, "hello", version).await;
}

/// Waits until rollout `id` is `state` (and, if given, awaits approval
/// after stage `stage`).
async fn wait_for_rollout(server: &Sandbox, id: &str, state: RolloutState, stage: Option<usize>) {
    wait_for(
        &format!("{id} to be {state} at {stage:?}"),
        DEADLINE,
        || async {
            let summary = server.client().rollout(id).await.ok()?.summary;
            let at_stage = match stage {
                Some(stage) => {
                    summary.stage == Some(stage) && summary.phase == Some(Phase::AwaitingApproval)
                }
                None => true,
            };
            (summary.state == state && at_stage).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agents_upgrade_a_package_with_dpkg_in_stages_and_roll_it_back() {
    let packages = tempfile::tempdir().expect("temp dir");
    let old = build(packages.path(), OLD);
    let new = build(packages.path(), NEW);
    let files = FileServer::start().await;
    let name = |version: &str| format!("{PACKAGE}_{version}_all.deb");
    files.put(&name(OLD), old.clone());
    files.put(&name(NEW), new.clone());

    let server = start_server().await;
    let mut hosts = Vec::new();
    for i in 0..HOSTS {
        let id = format!("deb-{i}.test");
        let token = server.agent_token_file(&id).await;
        let labels = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
        hosts.push(host(&id, &labels, &server, &token));
    }
    for host in &mut hosts {
        host.start();
    }
    wait_for_reports(&server, &hosts, "none").await;
    let all: BTreeSet<String> = hosts.iter().map(|host| host.id.clone()).collect();

    // 1.0 everywhere at once: installed from nothing.
    let install = Plan::new("e2e-hello-1.0", "hello", OLD)
        .payload_artifact(&files.url(&name(OLD)), &sha256(&old))
        .max_in_flight(Amount::Percent(100))
        .stage(Stage::percent(100));
    let first = server.start_plan(&install, "e2e: install").await;
    wait_for_rollout(&server, &first, RolloutState::Completed, None).await;
    wait_for_reports(&server, &hosts, OLD).await;
    assert_eq!(running(&hosts, OLD), all);

    // 2.0 in stages: a canary first, approved, then the rest.
    let upgrade = Plan::new("e2e-hello-2.0", "hello", NEW)
        .payload_artifact(&files.url(&name(NEW)), &sha256(&new))
        .max_in_flight(Amount::Percent(100))
        .stage(Stage::percent(30).named("canary").approve())
        .stage(Stage::percent(100).named("all").approve());
    let second = server.start_plan(&upgrade, "e2e: upgrade").await;
    wait_for_rollout(&server, &second, RolloutState::Running, Some(0)).await;
    let canary = running(&hosts, NEW);
    assert_eq!(canary.len(), 1, "one canary of three hosts");
    assert_eq!(running(&hosts, OLD).len(), HOSTS - 1, "the others wait");
    server
        .client()
        .action(&second, Action::Approve, "e2e: the canary runs 2.0")
        .await
        .expect("approve");
    wait_for_rollout(&server, &second, RolloutState::Running, Some(1)).await;
    wait_for_reports(&server, &hosts, NEW).await;
    assert_eq!(running(&hosts, NEW), all);

    // Back to 1.0: dpkg downgrades every host, from the .deb of the
    // rollout that installed it.
    server
        .client()
        .action(&second, Action::Rollback, "e2e: back to 1.0")
        .await
        .expect("rollback");
    wait_for_reports(&server, &hosts, OLD).await;
    assert_eq!(running(&hosts, OLD), all);
    let detail = server.client().rollout(&second).await.expect("the rollout");
    assert_eq!(detail.summary.state, RolloutState::RolledBack);
    assert_eq!(detail.hosts.reverted, HOSTS as u64);
    for host in &hosts {
        let view = server.host(&host.id).await.expect("the host");
        assert!(!view.components["hello"].drifted, "{}", host.id);
        let log = std::fs::read_to_string(host.path("dpkg.log")).expect("dpkg's log");
        for step in [
            format!("install {PACKAGE}:all <none> {OLD}"),
            format!("upgrade {PACKAGE}:all {OLD} {NEW}"),
            format!("upgrade {PACKAGE}:all {NEW} {OLD}"),
        ] {
            assert!(log.contains(&step), "{}: {step}\n{log}", host.id);
        }
        // Only the artifact of the version it runs is kept.
        assert_eq!(
            host.artifacts(),
            [format!("{}-{}", sha256(&old), name(OLD))]
        );
    }
    // 1.0 was downloaded again after 2.0 replaced it in the caches.
    assert_eq!(files.requests(&name(OLD)), 2 * HOSTS);
    assert_eq!(files.requests(&name(NEW)), HOSTS);
}
