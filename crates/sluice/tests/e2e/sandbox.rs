//! The sandbox every end-to-end test runs in: the real `sluice server`
//! process on port 0 with its own temp data dir, a typed client holding the
//! admin token, the `sluice` CLI pointed at it, and the means to crash it
//! (`kill9`) and bring it back on the same data dir and port (`restart`).
//!
//! Nothing here sleeps for a fixed time to let something happen: tests
//! poll with [`wait_for`] under a generous deadline. The server process is
//! killed when the sandbox is dropped; if the test is failing, the tail of
//! the server's log is printed first (all of it as it comes with `TEST_LOG`).

use std::collections::VecDeque;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_client::Client;
use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// How long the server may take to say where it listens (a debug build
/// restoring a 10k-host rollout from SQLite on a busy 2-core machine).
const START_DEADLINE: Duration = Duration::from_secs(60);
/// The default deadline of [`wait_for`]: far beyond what any condition
/// needs, so that only a real bug reaches it.
pub const WAIT_DEADLINE: Duration = Duration::from_secs(60);
/// Server log lines kept for the failure report.
const LOG_TAIL: usize = 200;

/// A `sluice server` process and what the tests need around it.
pub struct Sandbox {
    data_dir: tempfile::TempDir,
    /// Where CLI runs happen and test files are written.
    work: tempfile::TempDir,
    child: Option<Child>,
    address: SocketAddr,
    url: String,
    token: String,
    client: Client,
    log: Arc<Mutex<VecDeque<String>>>,
    /// How many times the server was started.
    starts: u32,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("TEST_LOG").is_none() {
            let log = self.log.lock().map(|log| log.clone()).unwrap_or_default();
            eprintln!(
                "---- last {} lines of the sluice server log ({}) ----",
                log.len(),
                self.url
            );
            for line in log {
                eprintln!("{line}");
            }
        }
        self.kill9();
    }
}

impl Sandbox {
    /// Starts a server on `127.0.0.1:0` with a fresh data dir.
    pub async fn start() -> Sandbox {
        let data_dir = tempfile::tempdir().expect("creating the data dir");
        let work = tempfile::tempdir().expect("creating the work dir");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let (child, address) = spawn_server(listen, data_dir.path(), &log, 1).await;
        let token = std::fs::read_to_string(data_dir.path().join("admin.token"))
            .expect("the server wrote <data-dir>/admin.token on its first start")
            .trim()
            .to_owned();
        let url = format!("http://{address}");
        let client = build_client(&url, &token);
        Sandbox {
            data_dir,
            work,
            child: Some(child),
            address,
            url,
            token,
            client,
            log,
            starts: 1,
        }
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client with the admin token (cheap to clone; agents may share it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// SIGKILL: no graceful shutdown, no flush. Waits until the process is
    /// gone; a server already killed stays killed.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data dir and the same address
    /// (agents keep their server URL), after [`Sandbox::kill9`] (or kills it
    /// first).
    pub async fn restart(&mut self) {
        self.kill9();
        self.starts += 1;
        let (child, address) =
            spawn_server(self.address, self.data_dir.path(), &self.log, self.starts).await;
        assert_eq!(address, self.address, "the server came back on its port");
        self.child = Some(child);
        let token = std::fs::read_to_string(self.data_dir.path().join("admin.token"))
            .expect("admin.token survives a restart");
        assert_eq!(
            token.trim(),
            self.token,
            "a restart keeps the first admin token"
        );
    }

    /// Writes `text` to `name` in the work dir and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.work.path().join(name);
        std::fs::write(&path, text).expect("writing a test file");
        path
    }

    /// `sluice rollout create -f PLAN --start --reason REASON`; returns the id.
    pub async fn start_rollout(&self, plan: &Path, reason: &str) -> String {
        let plan = plan.to_str().expect("utf-8 path");
        let created = self
            .sluice(&[
                "rollout", "create", "-f", plan, "--start", "--reason", reason, "--output", "json",
            ])
            .await
            .ok()
            .json();
        created["id"]
            .as_str()
            .expect("create prints {\"id\": …}")
            .to_owned()
    }

    /// `sluice ARGS` as an operator beside the server would run it: the
    /// server's URL in `SLUICE_SERVER`, its data dir (and so the admin
    /// token) in `SLUICE_DATA_DIR`.
    pub async fn sluice(&self, args: &[&str]) -> Run {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(self.work.path())
            .env("SLUICE_SERVER", &self.url)
            .env("SLUICE_DATA_DIR", self.data_dir.path())
            .env_remove("SLUICE_TOKEN")
            .env_remove("SLUICE_TOKEN_FILE")
            .stdin(Stdio::null());
        let shown = format!("sluice {}", args.join(" "));
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the CLI thread")
            .expect("running the sluice CLI");
        Run { shown, output }
    }
}

fn build_client(url: &str, token: &str) -> Client {
    Client::builder(url)
        .token(token)
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("building the client")
}

/// Spawns `sluice server` and waits for `listening on http://ADDR` on stdout.
async fn spawn_server(
    listen: SocketAddr,
    data_dir: &Path,
    log: &Arc<Mutex<VecDeque<String>>>,
    start: u32,
) -> (Child, SocketAddr) {
    let verbose = std::env::var_os("TEST_LOG").is_some();
    let filter = if verbose {
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned())
    } else {
        "warn".to_owned()
    };
    let mut child = Command::new(BIN)
        .args(["server", "--listen", &listen.to_string(), "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", filter)
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
        // Read to the end, so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let line = format!("[server #{start}] {line}");
                if verbose {
                    eprintln!("{line}");
                }
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
    let announced = tokio::time::timeout(START_DEADLINE, async {
        while let Some(line) = lines_rx.recv().await {
            if let Some(at) = line.find("listening on http://") {
                return Some(line[at + "listening on http://".len()..].trim().to_owned());
            }
        }
        None
    })
    .await;
    let address = match announced {
        Ok(Some(address)) => address,
        outcome => {
            let _ = child.kill();
            let status = child.wait();
            let log = log.lock().map(|log| log.clone()).unwrap_or_default();
            panic!(
                "sluice server (start #{start} on {listen}) did not announce `listening on http://ADDR` ({}; {status:?}):\n{}",
                if outcome.is_err() { "timed out" } else { "its output ended" },
                Vec::from(log).join("\n")
            );
        }
    };
    let address: SocketAddr = address
        .parse()
        .unwrap_or_else(|_| panic!("the server announced {address:?}, not an address"));
    (child, address)
}

/// A finished `sluice` CLI run.
pub struct Run {
    shown: String,
    output: Output,
}

impl Run {
    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.output.status.code(),
            Some(0),
            "`{}` failed\nstdout: {}\nstderr: {}",
            self.shown,
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.output.stdout).unwrap_or_else(|error| {
            panic!(
                "`{}` printed no JSON ({error}): {}",
                self.shown,
                self.stdout()
            )
        })
    }
}

/// Polls `check` until it gives `Some`, for at most [`WAIT_DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_within(what, WAIT_DEADLINE, check).await
}

/// [`wait_for`] with its own deadline.
pub async fn wait_for_within<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
