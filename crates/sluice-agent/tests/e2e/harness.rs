//! Real processes for the end-to-end tests: a `sluice server` from the
//! testkit's [`Sandbox`], told to have agents check in every second, and
//! hosts — a temp dir each, with an `agent.toml` and a `sluice-agent`
//! process.
//!
//! Nothing sleeps for a fixed time to let something happen: tests poll with
//! [`sluice_testkit::wait_for`] under a generous deadline. Processes are
//! killed on drop; when a test fails, the tails of the server's and the
//! agents' logs are printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sluice_api::agent::ReportState;
use sluice_testkit::sandbox::SandboxBuilder;
use sluice_testkit::{wait_for, Sandbox, DEADLINE};

/// The `sluice-agent` binary under test.
pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice-agent"))
}

/// `N` distinct URLs where nothing listens: loopback ports bound together
/// and let go, so connecting is refused at once.
pub fn dead_urls<const N: usize>() -> [String; N] {
    let listeners: [std::net::TcpListener; N] = std::array::from_fn(|_| {
        std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port")
    });
    listeners.map(|listener| {
        let address = listener.local_addr().expect("the port's address");
        format!("http://{address}")
    })
}

/// A server telling agents to check in every second.
pub async fn start_server() -> Sandbox {
    start_server_with_checkin_interval(1).await
}

/// A server telling agents to check in every `seconds`
/// (`--checkin-interval`: the `next_checkin_s` agents are told).
pub async fn start_server_with_checkin_interval(seconds: u64) -> Sandbox {
    server(seconds).start().await
}

/// A second server like [`start_server`]'s, on a copy of `first`'s data
/// dir (`first` is killed for the copy and restarted on its port): both
/// accept the tokens made on `first` so far, and they are independent
/// from then on (two SQLite servers, not replicas).
pub async fn start_twin(first: &mut Sandbox) -> Sandbox {
    first.kill9();
    let twin = server(1).data_from(first.data_dir()).start().await;
    first.restart().await;
    twin
}

fn server(checkin_interval: u64) -> SandboxBuilder {
    Sandbox::builder()
        .arg("--checkin-interval")
        .arg(checkin_interval.to_string())
}

/// Waits until the server has every host's report of `app` at `version`, ok.
pub async fn wait_for_reports(server: &Sandbox, hosts: &[Host], version: &str) {
    wait_for_component(server, hosts, "app", version).await;
}

/// Waits until the server has every host's report of `component` at
/// `version`, ok.
pub async fn wait_for_component(server: &Sandbox, hosts: &[Host], component: &str, version: &str) {
    let what = format!("every agent to report {component} {version} ok");
    wait_for(&what, DEADLINE, || async {
        for host in hosts {
            let view = server.host(&host.id).await;
            match view
                .as_ref()
                .and_then(|view| view.components.get(component))
            {
                Some(c) if c.version == version && c.state == Some(ReportState::Ok) => {}
                other => return Err(format!("{}: {other:?}", host.id)),
            }
        }
        Ok(())
    })
    .await;
}

/// A host: a temp dir standing in for the machine, its `agent.toml`, and
/// its `sluice-agent` process. The component `app` is "installed" by
/// writing the version to `version` in the dir; the health check fails
/// while a file `bad-VERSION` exists there; `apply-runs` counts applies.
pub struct Host {
    pub id: String,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            eprintln!(
                "---- {}: last lines of the agent log ----\n{}",
                self.id,
                tail.join("\n")
            );
        }
        self.kill9();
    }
}

impl Host {
    /// A host running `app` at `version`, with `labels`, whose agent talks to
    /// `server` with the token in `token_file`; `apply_extra` runs in
    /// `apply_cmd` after the version is written.
    pub fn new(
        id: &str,
        labels: &BTreeMap<String, String>,
        version: &str,
        server: &str,
        token_file: &Path,
        apply_extra: &str,
    ) -> Host {
        let host = Host::with_component(id, labels, server, token_file, |path| {
            format!(
                r#"name = "app"
version_cmd = "cat {path}/version"
apply_cmd = "echo run >> {path}/apply-runs; echo \"$SLUICE_VERSION\" > {path}/version; {apply_extra}"
health_cmd = "test ! -e {path}/bad-$SLUICE_VERSION || {{ echo unhealthy at $SLUICE_VERSION; exit 1; }}"
timeout = "60s"
"#
            )
        });
        std::fs::write(host.path("version"), format!("{version}\n")).expect("version file");
        host
    }

    /// A host whose one `[[component]]` table is what `component` writes,
    /// given the host's dir; the agent keeps its state and its artifacts
    /// (`artifacts/`) in that dir.
    pub fn with_component(
        id: &str,
        labels: &BTreeMap<String, String>,
        server: &str,
        token_file: &Path,
        component: impl FnOnce(&str) -> String,
    ) -> Host {
        let dir = tempfile::tempdir().expect("creating a host dir");
        let path = dir.path().display().to_string();
        let labels: Vec<String> = labels
            .iter()
            .map(|(key, value)| format!("{key} = {value:?}"))
            .collect();
        let config = format!(
            r#"server = "{server}"
token_file = "{token}"
id = "{id}"
interval = "1s"
labels = {{ {labels} }}
state_file = "{path}/state.json"
artifact_dir = "{path}/artifacts"

[[component]]
{component}"#,
            token = token_file.display(),
            labels = labels.join(", "),
            component = component(&path),
        );
        std::fs::write(dir.path().join("agent.toml"), config).expect("agent.toml");
        Host {
            id: id.to_owned(),
            dir,
            child: None,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sets `key = value` (`value` in TOML) in `agent.toml`: replaces the
    /// line of that key, or adds it to the component's table (the last one).
    pub fn set(&self, key: &str, value: &str) {
        let path = self.path("agent.toml");
        let config = std::fs::read_to_string(&path).expect("agent.toml");
        let prefix = format!("{key} = ");
        let line = format!("{key} = {value}");
        let mut lines: Vec<String> = config.lines().map(str::to_owned).collect();
        match lines.iter_mut().find(|l| l.starts_with(&prefix)) {
            Some(existing) => *existing = line,
            None => lines.push(line),
        }
        std::fs::write(&path, lines.join("\n") + "\n").expect("agent.toml");
    }

    /// Starts (or restarts) the agent, logging to `agent.log` in the dir.
    pub fn start(&mut self) {
        self.kill9();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("agent.log"))
            .expect("agent.log");
        let child = Command::new(agent_bin())
            .arg("--config")
            .arg(self.path("agent.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning sluice-agent");
        self.child = Some(child);
    }

    /// SIGKILL the agent.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the agent process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The version "installed" on this host.
    pub fn version(&self) -> String {
        std::fs::read_to_string(self.path("version"))
            .expect("reading the version file")
            .trim()
            .to_owned()
    }

    /// How many times `apply_cmd` ran.
    pub fn apply_runs(&self) -> usize {
        std::fs::read_to_string(self.path("apply-runs"))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }

    /// The files in the agent's artifact cache, sorted.
    pub fn artifacts(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("artifacts"))
            .expect("the artifact cache")
            .map(|entry| {
                let entry = entry.expect("an entry of the artifact cache");
                entry.file_name().to_string_lossy().into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// The agent's state file as JSON.
    pub fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("state.json")).expect("reading state.json");
        serde_json::from_str(&text).expect("state.json is JSON")
    }
}
