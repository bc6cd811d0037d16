//! The real `sluice server` process, as the end-to-end tests run it: port 0
//! on 127.0.0.1, a temp data dir of its own, a typed client holding the
//! admin token, the `sluice` CLI pointed at it, and the means to crash it
//! ([`Sandbox::kill9`]) and bring it back on the same data dir and port
//! ([`Sandbox::restart`]), or to start a second server on a copy of its
//! data dir ([`SandboxBuilder::data_from`]).
//!
//! The server is killed when the sandbox is dropped; if the test is
//! failing, the tail of the server's log is printed first (all of it as it
//! comes with `TEST_LOG`, at the level `RUST_LOG` says).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sluice_api::host::HostView;
use sluice_client::Client;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::plan::Plan;
use crate::server::{sluice_bin, Server};
use crate::tls::TlsFiles;

/// A `sluice server` process and what the tests need around it.
pub struct Sandbox {
    server: Server,
    /// Where CLI runs happen and test files are written.
    work: tempfile::TempDir,
    token: String,
    client: Client,
}

/// A sandbox whose server takes more arguments (`--checkin-interval`,
/// `--tls-cert`, …).
#[derive(Debug, Default)]
pub struct SandboxBuilder {
    args: Vec<OsString>,
    log_filter: Option<String>,
    /// A data dir whose files the new one starts with.
    data_from: Option<PathBuf>,
}

impl SandboxBuilder {
    /// One more argument of `sluice server`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> SandboxBuilder {
        self.args.push(arg.into());
        self
    }

    /// The server's log filter (`RUST_LOG`) instead of `info`, such as
    /// `debug` for a test that reads everything the server logs.
    pub fn log_filter(mut self, filter: &str) -> SandboxBuilder {
        self.log_filter = Some(filter.to_owned());
        self
    }

    /// Serves HTTPS with the certificate and key of [`crate::tls::private_ca`].
    pub fn tls(self, files: &TlsFiles) -> SandboxBuilder {
        self.arg("--tls-cert")
            .arg(&files.cert)
            .arg("--tls-key")
            .arg(&files.key)
    }

    /// Starts on a copy of the files of `dir`, the data dir of another
    /// sandbox whose server is stopped ([`Sandbox::kill9`]): the two servers
    /// then know the same tokens (the admin token too) and every other
    /// record, and go their own ways from there — two independent servers,
    /// one token valid on both.
    pub fn data_from(mut self, dir: &Path) -> SandboxBuilder {
        self.data_from = Some(dir.to_owned());
        self
    }

    /// Starts the server from async code (the wait runs on a blocking thread).
    pub async fn start(self) -> Sandbox {
        tokio::task::spawn_blocking(move || self.start_blocking())
            .await
            .expect("the thread starting the server")
    }

    /// Starts the server and waits until it says where it listens.
    pub fn start_blocking(self) -> Sandbox {
        let data_dir = tempfile::tempdir().expect("creating the data dir");
        if let Some(source) = &self.data_from {
            copy_files(source, data_dir.path());
        }
        let work = tempfile::tempdir().expect("creating the work dir");
        let server = Server::start_blocking_logging("server", data_dir, self.args, self.log_filter);
        let token = std::fs::read_to_string(server.data_dir().join("admin.token"))
            .expect("the server wrote <data-dir>/admin.token on its first start")
            .trim()
            .to_owned();
        let client = Client::builder(server.url())
            .token(&token)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("building the admin client");
        Sandbox {
            server,
            work,
            token,
            client,
        }
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A server on `127.0.0.1:0` with a fresh data dir.
    pub async fn start() -> Sandbox {
        Sandbox::builder().start().await
    }

    /// [`Sandbox::start`] for tests without a runtime.
    pub fn start_blocking() -> Sandbox {
        Sandbox::builder().start_blocking()
    }

    /// A server with more arguments.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// The server's base URL, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// A client with the admin token (cheap to clone; agents may share it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The admin token the server wrote on its first start.
    pub fn admin_token(&self) -> &str {
        &self.token
    }

    pub fn data_dir(&self) -> &Path {
        self.server.data_dir()
    }

    /// Every line the server printed so far.
    pub fn log(&self) -> Vec<String> {
        self.server.log()
    }

    /// The server process, for signals.
    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }

    /// SIGKILL: no graceful shutdown, no flush. Waits until the process is
    /// gone; a server already killed stays killed.
    pub fn kill9(&mut self) {
        self.server.kill9();
    }

    /// SIGTERM, as systemd stops the server: waits until it has shut down
    /// gracefully (exit 0).
    pub async fn stop(&mut self) {
        self.server.terminate().await;
    }

    /// [`Sandbox::restart`] with other arguments of `sluice server` than
    /// the sandbox was built with (`--database-url URL`), for this start
    /// and the next ones.
    pub async fn restart_with(&mut self, args: &[&str]) {
        self.server
            .set_args(args.iter().map(OsString::from).collect());
        self.restart().await;
    }

    /// Starts the server again on the same data dir and the same address
    /// (agents keep their server URL), after [`Sandbox::kill9`] (or kills it
    /// first).
    pub async fn restart(&mut self) {
        self.server.restart().await;
        let token = std::fs::read_to_string(self.server.data_dir().join("admin.token"))
            .expect("admin.token survives a restart");
        assert_eq!(
            token.trim(),
            self.token,
            "a restart keeps the first admin token"
        );
    }

    /// Writes `text` to `name` in the work dir and returns its path.
    pub fn write(&self, name: &str, text: impl Display) -> PathBuf {
        let path = self.work.path().join(name);
        std::fs::write(&path, text.to_string()).expect("writing a test file");
        path
    }

    /// `sluice ARGS` as an operator beside the server would run it, from
    /// the work dir: the server's URL in `SLUICE_SERVER`, its data dir (and
    /// so the admin token) in `SLUICE_DATA_DIR`, and no token or database
    /// URL from the test's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(sluice_bin());
        command
            .args(args)
            .current_dir(self.work.path())
            .env("SLUICE_SERVER", self.server.url())
            .env("SLUICE_DATA_DIR", self.server.data_dir())
            .env_remove("SLUICE_TOKEN")
            .env_remove("SLUICE_TOKEN_FILE")
            .env_remove("SLUICE_DATABASE_URL")
            .stdin(Stdio::null());
        command
    }

    /// Runs [`Sandbox::command`] on a blocking thread.
    pub async fn sluice(&self, args: &[&str]) -> Run {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || Run::of(&mut command))
            .await
            .expect("the CLI thread")
    }

    /// Runs [`Sandbox::command`] for tests without a runtime.
    pub fn sluice_blocking(&self, args: &[&str]) -> Run {
        Run::of(&mut self.command(args))
    }

    /// `sluice rollout create -f PLAN --start --reason REASON`; returns the id.
    pub async fn start_rollout(&self, plan: &Path, reason: &str) -> String {
        let plan = plan.to_str().expect("a UTF-8 path");
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

    /// `sluice rollout ACTION ID --reason REASON --output json`; the
    /// rollout's summary it prints.
    pub async fn rollout_action(&self, id: &str, action: &str, reason: &str) -> serde_json::Value {
        self.sluice(&[
            "rollout", action, id, "--reason", reason, "--output", "json",
        ])
        .await
        .ok()
        .json()
    }

    /// [`Sandbox::start_rollout`] of `plan`, written to `NAME.yaml`.
    pub async fn start_plan(&self, plan: &Plan, reason: &str) -> String {
        let path = self.write(&format!("{}.yaml", plan.name()), plan);
        self.start_rollout(&path, reason).await
    }

    /// What `sluice plan preview -f PLAN --fleet FLEET --json` says.
    pub async fn preview(&self, plan: &Path, fleet: &Path) -> Preview {
        let utf8 = |path: &'static str, file: &Path| -> String {
            file.to_str()
                .unwrap_or_else(|| panic!("the {path} path {} is not UTF-8", file.display()))
                .to_owned()
        };
        let (plan, fleet) = (utf8("plan", plan), utf8("fleet", fleet));
        let json = self
            .sluice(&["plan", "preview", "-f", &plan, "--fleet", &fleet, "--json"])
            .await
            .ok()
            .json();
        Preview::from_json(&json)
    }

    /// A new agent token bound to `host` (`sluice token create --role agent
    /// --host HOST`), written to a file in the work dir; returns the file.
    pub async fn agent_token_file(&self, host: &str) -> PathBuf {
        let run = self
            .sluice(&[
                "token",
                "create",
                "--role",
                "agent",
                "--host",
                host,
                "--reason",
                "test agent",
            ])
            .await
            .ok();
        let token = run.stdout();
        let token = token.trim();
        assert!(!token.is_empty(), "token create printed the token");
        self.write(&format!("{host}.token"), format_args!("{token}\n"))
    }

    /// What the server knows of host `id`, if anything.
    pub async fn host(&self, id: &str) -> Option<HostView> {
        self.client.host(id).await.ok()
    }

    /// The check-ins the server answered so far (`sluice_checkins_total`
    /// of its `/metrics`).
    pub async fn checkins(&self) -> u64 {
        let mut stream = tokio::net::TcpStream::connect(self.server.address())
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

/// What a plan preview admits.
#[derive(Debug, Clone)]
pub struct Preview {
    /// How many strata the selected hosts form.
    pub strata: u64,
    /// The hosts admitted by each stage, cumulative.
    pub stages: Vec<BTreeSet<String>>,
}

impl Preview {
    /// What `sluice plan preview --json` printed.
    pub fn from_json(json: &serde_json::Value) -> Preview {
        let stages = json["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .map(|stage| {
                stage["admitted"]
                    .as_array()
                    .expect("admitted")
                    .iter()
                    .map(|id| id.as_str().expect("a host id").to_owned())
                    .collect()
            })
            .collect();
        Preview {
            strata: json["strata"].as_u64().expect("strata"),
            stages,
        }
    }
}

/// Copies every file of `source` into `target` (a server's data dir holds
/// files only: the database, its WAL, the admin token).
fn copy_files(source: &Path, target: &Path) {
    let entries = std::fs::read_dir(source)
        .unwrap_or_else(|error| panic!("reading {}: {error}", source.display()));
    for entry in entries {
        let path = entry.expect("a data dir entry").path();
        if path.is_file() {
            let to = target.join(path.file_name().expect("a file name"));
            std::fs::copy(&path, &to).unwrap_or_else(|error| {
                panic!("copying {} to {}: {error}", path.display(), to.display())
            });
        }
    }
}

/// A finished `sluice` run.
#[derive(Debug)]
pub struct Run {
    shown: String,
    output: Output,
}

impl Run {
    /// The output of a process `shown` (`sluice rollout status r-1`).
    pub fn new(shown: impl Into<String>, output: Output) -> Run {
        Run {
            shown: shown.into(),
            output,
        }
    }

    /// Runs `command` to its end.
    pub fn of(command: &mut Command) -> Run {
        let program = Path::new(command.get_program());
        let shown = std::iter::once(program.file_name().unwrap_or(program.as_os_str()))
            .chain(command.get_args())
            .map(|part| part.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let output = command
            .output()
            .unwrap_or_else(|error| panic!("running `{shown}`: {error}"));
        Run { shown, output }
    }

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
        self.exits(0)
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn exits(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            Some(code),
            "`{}`\nstdout: {}\nstderr: {}",
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
