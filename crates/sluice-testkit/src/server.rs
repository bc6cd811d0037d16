//! One real `sluice server` process: port 0 on 127.0.0.1 at its first
//! start, a data dir of its own, every line it prints kept (and shown as it
//! comes with `TEST_LOG`), and real signals: SIGKILL ([`Server::kill9`]),
//! SIGTERM ([`Server::terminate`]), SIGSTOP and SIGCONT ([`Server::sigstop`],
//! [`Server::sigcont`]), and a restart on the same data dir and port
//! ([`Server::restart`]). [`crate::Sandbox`] is one of them with a client and
//! the CLI around it; [`crate::Cluster`] is several on one database.
//!
//! The process is killed when the server is dropped; if the test is
//! failing, the tail of its log is printed first.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use crate::wait::wait_for_blocking;

/// How long the server may take to say where it listens (a debug build
/// restoring a 10k-host rollout from SQLite on a busy 2-core machine).
pub const START_DEADLINE: Duration = Duration::from_secs(60);
/// Server log lines printed when a test fails.
const LOG_TAIL: usize = 200;
/// What the server prints once it listens, before its URL.
const ANNOUNCEMENT: &str = "listening on ";

/// The `sluice` binary of the profile the tests were built in: beside the
/// `deps/` directory that holds the test binary.
pub fn sluice_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test binary");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let bin = profile.join(format!("sluice{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "these tests run the real server, but {} is missing: build it first with \
         `cargo build -p sluice` (same profile), or run `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// A `sluice server` process (see the module's documentation).
pub struct Server {
    /// Names the server in its log lines (`server`, `r2`).
    name: String,
    data_dir: tempfile::TempDir,
    child: Option<Child>,
    args: Vec<OsString>,
    /// Its `RUST_LOG` instead of `info` ([`Server::start_blocking_logging`]).
    log_filter: Option<String>,
    address: SocketAddr,
    url: String,
    /// Every line the server printed, stdout and stderr as they came.
    log: Arc<Mutex<Vec<String>>>,
    /// How many times the server was started.
    starts: u32,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("data_dir", &self.data_dir.path())
            .field("starts", &self.starts)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("TEST_LOG").is_none() {
            let log = self.log();
            let tail = &log[log.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "---- last {} lines of the log of sluice server {} ({}) ----",
                tail.len(),
                self.name,
                self.url
            );
            for line in tail {
                eprintln!("{line}");
            }
        }
        self.kill9();
    }
}

impl Server {
    /// Starts `sluice server --listen 127.0.0.1:0 --data-dir DATA_DIR ARGS`
    /// and waits until it says where it listens.
    pub fn start_blocking(name: &str, data_dir: tempfile::TempDir, args: Vec<OsString>) -> Server {
        Server::start_blocking_logging(name, data_dir, args, None)
    }

    /// [`Server::start_blocking`] logging at `log_filter` (`RUST_LOG`, such
    /// as `debug` for a test that reads everything the server logs) instead
    /// of `info`, at this start and the next; `TEST_LOG` with `RUST_LOG`
    /// still wins.
    pub fn start_blocking_logging(
        name: &str,
        data_dir: tempfile::TempDir,
        args: Vec<OsString>,
        log_filter: Option<String>,
    ) -> Server {
        let log = Arc::new(Mutex::new(Vec::new()));
        let launch = Launch {
            name: name.to_owned(),
            listen: "127.0.0.1:0".parse().expect("an address"),
            data_dir: data_dir.path().to_path_buf(),
            args: args.clone(),
            log_filter: log_filter.clone(),
            log: Arc::clone(&log),
            start: 1,
        };
        let (child, url) = launch.run();
        Server {
            name: name.to_owned(),
            data_dir,
            child: Some(child),
            args,
            log_filter,
            address: address_of(&url),
            url,
            log,
            starts: 1,
        }
    }

    /// [`Server::start_blocking`] from async code.
    pub async fn start(name: &str, data_dir: tempfile::TempDir, args: Vec<OsString>) -> Server {
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || Server::start_blocking(&name, data_dir, args))
            .await
            .expect("the thread starting the server")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's base URL, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Every line the server printed so far, each prefixed with the
    /// server's name and start (`[r2 #1] …`).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Whether a line the server printed since it last started contains `text`.
    pub fn logged_since_start(&self, text: &str) -> bool {
        let start = format!("[{} #{}] ", self.name, self.starts);
        self.log()
            .iter()
            .any(|line| line.starts_with(&start) && line.contains(text))
    }

    /// The process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still there (running or stopped): it did not
    /// exit and was not killed.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    fn signal(&self, signal: Signal, name: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{name} to server {}: it is not running", self.name));
        let pid = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .unwrap_or_else(|| panic!("{pid} is not a process id"));
        kill_process(pid, signal)
            .unwrap_or_else(|error| panic!("{name} to server {}: {error}", self.name));
    }

    /// SIGSTOP: the process stays, frozen, until [`Server::sigcont`]; its
    /// connections stay open and nothing it holds is released.
    pub fn sigstop(&self) {
        self.signal(Signal::STOP, "SIGSTOP");
    }

    /// SIGCONT: a stopped process goes on where it stopped.
    pub fn sigcont(&self) {
        self.signal(Signal::CONT, "SIGCONT");
    }

    /// SIGKILL: no graceful shutdown, no flush. Waits until the process is
    /// gone; a server already killed stays killed.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix; it kills a stopped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as systemd stops the server: waits until it has shut down
    /// gracefully (exit 0).
    pub async fn terminate(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(Signal::TERM, "SIGTERM");
        let Some(mut child) = self.child.take() else {
            return;
        };
        let stopped = tokio::task::spawn_blocking(move || {
            wait_for_blocking("the server to stop after SIGTERM", START_DEADLINE, || {
                child.try_wait().expect("waiting for the server")
            })
        })
        .await
        .expect("the thread stopping the server");
        assert!(stopped.success(), "the server stopped with {stopped}");
    }

    /// Other arguments of `sluice server` for the next starts.
    pub fn set_args(&mut self, args: Vec<OsString>) {
        self.args = args;
    }

    /// Starts the server again on the same data dir and the same address
    /// (clients keep its URL), after [`Server::kill9`] (or kills it first).
    pub async fn restart(&mut self) {
        self.kill9();
        self.starts += 1;
        let launch = Launch {
            name: self.name.clone(),
            listen: self.address,
            data_dir: self.data_dir.path().to_path_buf(),
            args: self.args.clone(),
            log_filter: self.log_filter.clone(),
            log: Arc::clone(&self.log),
            start: self.starts,
        };
        let (child, url) = tokio::task::spawn_blocking(move || launch.run())
            .await
            .expect("the thread starting the server");
        assert_eq!(url, self.url, "the server came back on its port");
        self.child = Some(child);
    }
}

/// The address in a URL the server announced (`http://127.0.0.1:PORT`).
fn address_of(url: &str) -> SocketAddr {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    authority
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("the server announced {url:?}, not an address"))
}

/// One start of `sluice server`.
struct Launch {
    name: String,
    listen: SocketAddr,
    data_dir: PathBuf,
    args: Vec<OsString>,
    log_filter: Option<String>,
    log: Arc<Mutex<Vec<String>>>,
    start: u32,
}

impl Launch {
    /// Spawns the server and waits for `listening on URL`; returns the
    /// process and the URL.
    fn run(self) -> (Child, String) {
        let verbose = std::env::var_os("TEST_LOG").is_some();
        let filter = match std::env::var("RUST_LOG") {
            Ok(filter) if verbose => filter,
            _ => self.log_filter.clone().unwrap_or_else(|| "info".to_owned()),
        };
        let mut child = Command::new(sluice_bin())
            .args(["server", "--listen", &self.listen.to_string(), "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.args)
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning sluice server");
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
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
        let prefix = format!("[{} #{}]", self.name, self.start);
        for stream in streams.into_iter().flatten() {
            let lines_tx = lines_tx.clone();
            let log = Arc::clone(&self.log);
            let prefix = prefix.clone();
            // Read to the end, so that the server never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if verbose {
                        eprintln!("{prefix} {line}");
                    }
                    if let Ok(mut log) = log.lock() {
                        log.push(format!("{prefix} {line}"));
                    }
                    let _ = lines_tx.send(line);
                }
            });
        }
        drop(lines_tx);
        let until = Instant::now() + START_DEADLINE;
        let outcome = loop {
            let left = until.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    let url = line
                        .find(ANNOUNCEMENT)
                        .and_then(|at| line[at + ANNOUNCEMENT.len()..].split_whitespace().next())
                        .filter(|url| url.starts_with("http://") || url.starts_with("https://"));
                    if let Some(url) = url {
                        break Ok(url.to_owned());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break Err("timed out"),
                Err(mpsc::RecvTimeoutError::Disconnected) => break Err("its output ended"),
            }
        };
        match outcome {
            Ok(url) => (child, url),
            Err(why) => {
                let _ = child.kill();
                let status = child.wait();
                let log = self.log.lock().map(|log| log.clone()).unwrap_or_default();
                panic!(
                    "sluice server {prefix} on {} did not announce `{ANNOUNCEMENT}URL` \
                     ({why}; {status:?}):\n{}",
                    self.listen,
                    log.join("\n")
                );
            }
        }
    }
}
