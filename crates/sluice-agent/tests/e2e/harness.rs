//! Real processes for the end-to-end tests: a `sluice server` on port 0 with
//! its own temp data dir (and the means to kill it and bring it back on the
//! same port), the `sluice` CLI pointed at it, and hosts — a temp dir each,
//! with an `agent.toml` and a `sluice-agent` process.
//!
//! Nothing sleeps for a fixed time to let something happen: tests poll with
//! [`wait_for`] under a generous deadline. Processes are killed on drop; when
//! a test fails, the tails of the server's and the agents' logs are printed.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_api::host::HostView;
use sluice_client::Client;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

/// The default deadline of [`wait_for`]: far beyond what any condition
/// needs on a busy machine, so that only a real bug reaches it.
pub const WAIT_DEADLINE: Duration = Duration::from_secs(90);
const LOG_TAIL: usize = 100;

/// The `sluice-agent` binary under test.
pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice-agent"))
}

/// The `sluice` binary, built beside `sluice-agent` in the same profile dir.
pub fn sluice_bin() -> PathBuf {
    let agent = agent_bin();
    let sluice = agent.with_file_name("sluice");
    assert!(
        sluice.exists(),
        "the end-to-end tests of sluice-agent run the real server, but {} is missing: \
         build it first with `cargo build -p sluice` (same profile), or run `cargo test --workspace`",
        sluice.display()
    );
    sluice
}

/// A `sluice server` process.
pub struct Server {
    data_dir: tempfile::TempDir,
    work: tempfile::TempDir,
    child: Option<Child>,
    address: SocketAddr,
    pub url: String,
    client: Client,
    log: Arc<Mutex<VecDeque<String>>>,
    starts: u32,
    /// `--checkin-interval`: the `next_checkin_s` agents are told.
    checkin_interval: u64,
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log.lock().map(|log| log.clone()).unwrap_or_default();
            eprintln!(
                "---- last {} lines of the sluice server log ----",
                log.len()
            );
            for line in log {
                eprintln!("{line}");
            }
        }
        self.kill9();
    }
}

impl Server {
    /// A server on `127.0.0.1:0` with a fresh data dir, telling agents to
    /// check in every second.
    pub async fn start() -> Server {
        Server::start_with_checkin_interval(1).await
    }

    /// A server telling agents to check in every `seconds`.
    pub async fn start_with_checkin_interval(seconds: u64) -> Server {
        let data_dir = tempfile::tempdir().expect("creating the data dir");
        let work = tempfile::tempdir().expect("creating the work dir");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let (child, address) = spawn_server(listen, data_dir.path(), &log, 1, seconds).await;
        let token = std::fs::read_to_string(data_dir.path().join("admin.token"))
            .expect("the server wrote <data-dir>/admin.token");
        let url = format!("http://{address}");
        let client = Client::builder(&url)
            .token(token.trim())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building the admin client");
        Server {
            data_dir,
            work,
            child: Some(child),
            address,
            url,
            client,
            log,
            starts: 1,
            checkin_interval: seconds,
        }
    }

    /// A client with the admin token.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data dir and port.
    pub async fn restart(&mut self) {
        self.kill9();
        self.starts += 1;
        let (child, address) = spawn_server(
            self.address,
            self.data_dir.path(),
            &self.log,
            self.starts,
            self.checkin_interval,
        )
        .await;
        assert_eq!(address, self.address, "the server came back on its port");
        self.child = Some(child);
    }

    /// Writes `text` to `name` in the work dir and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.work.path().join(name);
        std::fs::write(&path, text).expect("writing a test file");
        path
    }

    /// `sluice ARGS` beside the server; asserts exit 0 and returns stdout.
    pub async fn sluice(&self, args: &[&str]) -> String {
        let mut command = Command::new(sluice_bin());
        command
            .args(args)
            .current_dir(self.work.path())
            .env("SLUICE_SERVER", &self.url)
            .env("SLUICE_DATA_DIR", self.data_dir.path())
            .env_remove("SLUICE_TOKEN")
            .env_remove("SLUICE_TOKEN_FILE")
            .stdin(Stdio::null());
        let shown = format!("sluice {}", args.join(" "));
        let output: Output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the CLI thread")
            .expect("running the sluice CLI");
        assert!(
            output.status.success(),
            "`{shown}` failed\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Creates and starts a rollout of `plan` with the CLI; returns its id.
    pub async fn start_rollout(&self, plan: &str) -> String {
        let path = self.write("plan.yaml", plan);
        let created = self
            .sluice(&[
                "rollout",
                "create",
                "-f",
                path.to_str().expect("utf-8"),
                "--start",
                "--reason",
                "e2e",
                "--output",
                "json",
            ])
            .await;
        let created: serde_json::Value =
            serde_json::from_str(&created).expect("create prints JSON");
        created["id"].as_str().expect("an id").to_owned()
    }

    /// A new agent token bound to `host` (`sluice token create --role agent
    /// --host HOST`), written to a file in the work dir; returns the file.
    pub async fn agent_token_file(&self, host: &str) -> PathBuf {
        let token = self
            .sluice(&["token", "create", "--role", "agent", "--host", host])
            .await;
        let token = token.trim();
        assert!(!token.is_empty(), "token create printed the token");
        self.write(&format!("{host}.token"), &format!("{token}\n"))
    }

    /// What the server knows of `id`, if anything.
    pub async fn host(&self, id: &str) -> Option<HostView> {
        self.client.host(id).await.ok()
    }

    /// The check-ins the server answered so far (`sluice_checkins_total`
    /// of its `/metrics`).
    pub async fn checkins(&self) -> u64 {
        let mut stream = tokio::net::TcpStream::connect(self.address)
            .await
            .expect("connecting to the server");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n")
            .await
            .expect("sending GET /metrics");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("reading /metrics");
        response
            .lines()
            .find_map(|line| line.strip_prefix("sluice_checkins_total "))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sluice_checkins_total in /metrics:\n{response}"))
    }
}

async fn spawn_server(
    listen: SocketAddr,
    data_dir: &Path,
    log: &Arc<Mutex<VecDeque<String>>>,
    start: u32,
    checkin_interval: u64,
) -> (Child, SocketAddr) {
    let mut child = Command::new(sluice_bin())
        .args([
            "server",
            "--listen",
            &listen.to_string(),
            "--checkin-interval",
            &checkin_interval.to_string(),
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning sluice server");
    let (lines_tx, mut lines_rx) = mpsc::unbounded_channel::<String>();
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for stream in streams.into_iter().flatten() {
        let lines_tx = lines_tx.clone();
        let log = Arc::clone(log);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let line = format!("[server #{start}] {line}");
                if let Ok(mut log) = log.lock() {
                    if log.len() == LOG_TAIL {
                        log.pop_front();
                    }
                    log.push_back(line.clone());
                }
                let _ = lines_tx.send(line);
            }
        });
    }
    drop(lines_tx);
    let announced = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines_rx.recv().await {
            if let Some(at) = line.find("listening on http://") {
                return Some(line[at + "listening on http://".len()..].trim().to_owned());
            }
        }
        None
    })
    .await;
    let Ok(Some(address)) = announced else {
        let _ = child.kill();
        let _ = child.wait();
        let log = log.lock().map(|log| log.clone()).unwrap_or_default();
        panic!(
            "sluice server did not announce its address:\n{}",
            Vec::from(log).join("\n")
        );
    };
    let address = address.parse().expect("the server announced an address");
    (child, address)
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
        let dir = tempfile::tempdir().expect("creating a host dir");
        let path = dir.path().display().to_string();
        std::fs::write(dir.path().join("version"), format!("{version}\n")).expect("version file");
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

[[component]]
name = "app"
version_cmd = "cat {path}/version"
apply_cmd = "echo run >> {path}/apply-runs; echo \"$SLUICE_VERSION\" > {path}/version; {apply_extra}"
health_cmd = "test ! -e {path}/bad-$SLUICE_VERSION || {{ echo unhealthy at $SLUICE_VERSION; exit 1; }}"
timeout = "60s"
"#,
            token = token_file.display(),
            labels = labels.join(", "),
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

    /// The agent's state file as JSON.
    pub fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("state.json")).expect("reading state.json");
        serde_json::from_str(&text).expect("state.json is JSON")
    }
}

/// Polls `check` until it gives `Some`, for at most [`WAIT_DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + WAIT_DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {WAIT_DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
