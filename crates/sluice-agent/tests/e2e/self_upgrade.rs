//! The agent upgrades itself: `sluice-agent` is a component of its own, a
//! Debian package holding the agent's binary (two versions built here with
//! `dpkg-deb`, each host a private root with real `dpkg`). A rollout of the
//! new version makes each agent install it from the payload's verified
//! artifact, and the agent then runs the new binary and reports the new
//! version (from `dpkg-query`): one apply, no failure.
//!
//! The test plays systemd: it runs `root/usr/bin/sluice-agent` and starts
//! it again whenever it exits (`Restart=always`). The package's postinst
//! does what the real one does on an upgrade (`deb-systemd-invoke restart
//! sluice-agent.service`): it stops the agent in the middle of the apply and
//! lets the apply go on once the new agent runs, which takes the apply over.
//! On the second host a `policy-rc.d` forbids that restart (as in an image
//! build or a chroot): the apply ends under the old agent, which then execs
//! its new binary itself.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sluice_api::rollout::RolloutState;
use sluice_testkit::{wait_for, Amount, FileServer, Plan, Sandbox, Stage, DEADLINE};

use crate::artifact::sha256;
use crate::harness::{agent_bin, start_server, wait_for_component, Host};

const PACKAGE: &str = "sluice-agent";
const OLD: &str = "1.0";
const NEW: &str = "2.0";
/// How many times the test's stand-in for systemd starts an agent, at most.
const MAX_STARTS: usize = 5;

/// What the package's postinst does on an upgrade, as the real one under
/// systemd (`deb-systemd-invoke restart sluice-agent.service`): unless
/// `policy-rc.d` forbids it, stop the agent and wait until the new one
/// runs, like `systemctl restart`. Then, so that the new agent finds this
/// apply still running, wait until it says it takes the apply over. The
/// host's dir is the parent of the private root (`$DPKG_ROOT`, as dpkg
/// runs maintainer scripts with `--force-script-chrootless`).
const POSTINST: &str = r#"#!/bin/sh
set -e
[ "$1" = configure ] && [ -n "$2" ] || exit 0
host=$(dirname "$DPKG_ROOT")
policy="$DPKG_ROOT/usr/sbin/policy-rc.d"
if [ -x "$policy" ] && ! "$policy" sluice-agent.service restart; then
    echo "policy-rc.d forbids restarting sluice-agent.service"
    exit 0
fi
# Each wait is bounded: 600 × 0.05 s.
wait_until() {
    n=0
    until "$@"; do
        n=$((n + 1))
        [ "$n" -lt 600 ] || { echo "gave up waiting: $*"; exit 1; }
        sleep 0.05
    done
}
old=$(cat "$host/agent.pid")
restarted() { [ "$(cat "$host/agent.pid")" != "$old" ]; }
echo "restarting sluice-agent (pid $old)"
kill -TERM "$old"
wait_until restarted
wait_until grep -q "outlived it; waiting for it" "$host/agent.log"
echo "the new sluice-agent took this apply over"
"#;

/// `sluice-agent_VERSION_all.deb`, built with `dpkg-deb` in `dir`: the
/// agent's binary and [`POSTINST`]. Uncompressed, to build fast.
fn build(dir: &Path, version: &str) -> PathBuf {
    let tree = dir.join(format!("tree-{version}"));
    let write = |path: &str, bytes: &[u8], mode: u32| {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("creating a dir");
        std::fs::write(&path, bytes).expect("writing a package file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("setting a mode");
    };
    write(
        "DEBIAN/control",
        format!(
            "Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\nMaintainer: sluice developers <sluice@example.net>\nDescription: the sluice agent, as packaged for this test\n"
        )
        .as_bytes(),
        0o644,
    );
    write("DEBIAN/postinst", POSTINST.as_bytes(), 0o755);
    let binary = std::fs::read(agent_bin()).expect("reading the agent's binary");
    write("usr/bin/sluice-agent", &binary, 0o755);
    let deb = dir.join(format!("{PACKAGE}_{version}_all.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Znone", "--build"])
        .arg(&tree)
        .arg(&deb)
        .stdout(Stdio::null())
        .status()
        .expect("running dpkg-deb");
    assert!(status.success(), "dpkg-deb --build failed");
    std::fs::remove_dir_all(&tree).expect("removing the package tree");
    deb
}

/// The dpkg command line of a host (its private root in `DIR/root`).
fn dpkg(dir: &str) -> String {
    format!("dpkg --force-script-chrootless --admindir={dir}/root/var/lib/dpkg --instdir={dir}/root --log={dir}/dpkg.log")
}

/// A host whose component `sluice-agent` is the package in its private
/// root, installed at [`OLD`] before its agent starts; with `policy`, a
/// `policy-rc.d` there forbids restarting services.
fn host(id: &str, server: &Sandbox, token: &Path, old: &Path, policy: bool) -> Host {
    let labels = BTreeMap::from([("role".to_owned(), "agent-upgrade".to_owned())]);
    let host = Host::with_component(id, &labels, server.url(), token, |path| {
        format!(
            r#"name = "{PACKAGE}"
version_cmd = "dpkg-query --admindir={path}/root/var/lib/dpkg -W -f='${{Version}}' {PACKAGE}"
apply_cmd = "{dpkg} -i \"$SLUICE_ARTIFACT\""
health_cmd = "{path}/root/usr/bin/sluice-agent --version"
timeout = "60s"
"#,
            dpkg = dpkg(path),
        )
    });
    let admin = host.path("root/var/lib/dpkg");
    for dir in ["info", "updates"] {
        std::fs::create_dir_all(admin.join(dir)).expect("creating the dpkg database");
    }
    std::fs::write(admin.join("status"), "").expect("the dpkg status file");
    if policy {
        let path = host.path("root/usr/sbin/policy-rc.d");
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("usr/sbin");
        // 101: the action is forbidden (invoke-rc.d's policy interface).
        std::fs::write(&path, "#!/bin/sh\nexit 101\n").expect("policy-rc.d");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("policy-rc.d's mode");
    }
    let dir = host.dir.path().display().to_string();
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("{} -i {}", dpkg(&dir), old.display()))
        .output()
        .expect("running dpkg");
    assert!(output.status.success(), "installing {OLD}: {output:?}");
    host
}

/// The test's systemd for one host: runs the host's installed
/// `usr/bin/sluice-agent` (its pid in `agent.pid`, its log appended to
/// `agent.log`) and starts it again whenever it exits, [`MAX_STARTS`]
/// times at most.
struct Supervisor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Supervisor {
    fn start(host: &Host) -> Supervisor {
        let dir = host.dir.path().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut starts = 0;
            while starts < MAX_STARTS && !stopping.load(Ordering::SeqCst) {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("agent.log"))
                    .expect("agent.log");
                let mut child = Command::new(dir.join("root/usr/bin/sluice-agent"))
                    .arg("--config")
                    .arg(dir.join("agent.toml"))
                    .env("RUST_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("starting sluice-agent");
                starts += 1;
                let pid = dir.join("agent.pid");
                let temp = dir.join("agent.pid.tmp");
                std::fs::write(&temp, child.id().to_string()).expect("agent.pid");
                std::fs::rename(&temp, &pid).expect("agent.pid");
                loop {
                    if stopping.load(Ordering::SeqCst) {
                        let _ = child.kill();
                        let _ = child.wait();
                        return starts;
                    }
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            starts
        });
        Supervisor {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the agent; how many times it was started.
    fn stop(&mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map_or(0, |thread| thread.join().expect("the supervisor"))
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The pid of the host's agent now.
fn agent_pid(host: &Host) -> u32 {
    std::fs::read_to_string(host.path("agent.pid"))
        .expect("agent.pid")
        .trim()
        .parse()
        .expect("a pid")
}

/// Whether the host's agent runs the file installed at
/// `root/usr/bin/sluice-agent` now (not the one it replaced).
fn runs_installed_binary(host: &Host) -> bool {
    let running = std::fs::metadata(format!("/proc/{}/exe", agent_pid(host)));
    let installed = std::fs::metadata(host.path("root/usr/bin/sluice-agent"));
    match (running, installed) {
        (Ok(running), Ok(installed)) => {
            (running.dev(), running.ino()) == (installed.dev(), installed.ino())
        }
        _ => false,
    }
}

fn occurrences(path: PathBuf, text: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches(text)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_upgrades_its_own_package_and_runs_the_new_binary() {
    let packages = tempfile::tempdir().expect("temp dir");
    let old_deb = build(packages.path(), OLD);
    let new = std::fs::read(build(packages.path(), NEW)).expect("reading the package");
    let name = format!("{PACKAGE}_{NEW}_all.deb");
    let files = FileServer::start().await;
    files.put(&name, new.clone());

    let server = start_server().await;
    let restarted = host(
        "restarted.test",
        &server,
        &server.agent_token_file("restarted.test").await,
        &old_deb,
        false,
    );
    let forbidden = host(
        "forbidden.test",
        &server,
        &server.agent_token_file("forbidden.test").await,
        &old_deb,
        true,
    );
    let hosts = [restarted, forbidden];
    let mut agents: Vec<Supervisor> = hosts.iter().map(Supervisor::start).collect();
    wait_for_component(&server, &hosts, PACKAGE, OLD).await;
    let first_pids: Vec<u32> = hosts.iter().map(agent_pid).collect();

    let plan = Plan::new("e2e-agent-2.0", PACKAGE, NEW)
        .payload_artifact(&files.url(&name), &sha256(&new))
        .max_in_flight(Amount::Percent(100))
        .stage(Stage::percent(100));
    let rollout = server.start_plan(&plan, "e2e: upgrade the agent").await;
    wait_for("the rollout to complete", DEADLINE, || async {
        let summary = server.client().rollout(&rollout).await.ok()?.summary;
        (summary.state == RolloutState::Completed).then_some(())
    })
    .await;
    wait_for_component(&server, &hosts, PACKAGE, NEW).await;

    // One apply each, no failure.
    let detail = server
        .client()
        .rollout(&rollout)
        .await
        .expect("the rollout");
    assert_eq!(
        (detail.hosts.healthy, detail.hosts.failed),
        (2, 0),
        "{:?}",
        detail.hosts
    );
    let events = server
        .client()
        .events(&rollout, None, None)
        .await
        .expect("the rollout's events");
    assert!(
        events
            .events
            .iter()
            .all(|event| event.kind != "host_failed"),
        "{:?}",
        events.events
    );
    for host in &hosts {
        let view = server.host(&host.id).await.expect("the host");
        let component = &view.components[PACKAGE];
        assert!(!component.drifted, "{}", host.id);
        assert_eq!(component.message, None, "{}", host.id);
        let upgrades = occurrences(
            host.path("dpkg.log"),
            &format!("upgrade {PACKAGE}:all {OLD} {NEW}"),
        );
        assert_eq!(upgrades, 1, "{}: dpkg upgraded the agent once", host.id);
        assert!(
            runs_installed_binary(host),
            "{}: the agent runs the new binary",
            host.id
        );
        for file in ["self-apply.json", "self-apply.status"] {
            assert!(!host.path(file).exists(), "{}: {file} is gone", host.id);
        }
        let log = std::fs::read_to_string(host.path("agent.log")).expect("agent.log");
        for never in ["apply failed", "interrupted"] {
            assert!(!log.contains(never), "{}: {never}\n{log}", host.id);
        }
    }

    // Restarted by the postinst: a second agent took the apply over.
    let [restarted, forbidden] = &hosts;
    assert_ne!(agent_pid(restarted), first_pids[0]);
    assert_eq!(
        occurrences(
            restarted.path("agent.log"),
            "shutting down in the middle of the agent's own upgrade"
        ),
        1
    );
    assert_eq!(
        occurrences(
            restarted.path("agent.log"),
            "outlived it; waiting for it to end"
        ),
        1
    );
    assert!(std::fs::read_to_string(restarted.path("self-apply.log"))
        .expect("the apply's output")
        .contains("the new sluice-agent took this apply over"));
    // Not restarted: the same process runs the new binary.
    assert_eq!(agent_pid(forbidden), first_pids[1]);
    assert!(std::fs::read_to_string(forbidden.path("self-apply.log"))
        .expect("the apply's output")
        .contains("policy-rc.d forbids restarting sluice-agent.service"));
    assert_eq!(
        occurrences(
            forbidden.path("agent.log"),
            "the apply replaced the agent's binary; starting the new one"
        ),
        1
    );
    assert_eq!(
        occurrences(forbidden.path("agent.log"), "sluice-agent starting"),
        2
    );

    let starts: Vec<usize> = agents.iter_mut().map(Supervisor::stop).collect();
    assert_eq!(starts, [2, 1], "the postinst restarted one agent, once");
}
