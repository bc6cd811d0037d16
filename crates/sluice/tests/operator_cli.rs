//! End-to-end tests of the operator commands: the real `sluice server` on
//! port 0 with a temp data dir, driven through the real `sluice` binary —
//! exit codes, what goes to stdout for scripts, what the errors say.
//!
//! The CLI finds the server through `SLUICE_SERVER` and the admin token
//! through `SLUICE_DATA_DIR`, as an operator beside the server would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_api::agent::{CheckinRequest, ComponentReport, ReportState};
use sluice_api::HostId;
use sluice_client::Client;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A running `sluice server`, killed on drop.
struct TestServer {
    child: Child,
    url: String,
    data_dir: tempfile::TempDir,
    work: tempfile::TempDir,
    /// Every line the server printed (stdout and stderr, as they came).
    output: Arc<Mutex<Vec<String>>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestServer {
    fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts `sluice server` with `extra` arguments (`--tls-cert`, …).
    fn start_with(extra: &[&str]) -> TestServer {
        let data_dir = tempfile::tempdir().expect("data dir");
        let work = tempfile::tempdir().expect("work dir");
        let mut child = Command::new(BIN)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning sluice server");
        // The address is announced on stdout or stderr; read both.
        let (sender, receiver) = mpsc::channel::<String>();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("TEST_LOG").is_some() {
                        eprintln!("[server] {line}");
                    }
                    let _ = sender.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let output = Arc::new(Mutex::new(Vec::new()));
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = receiver
                .recv_timeout(left)
                .expect("the server announces `listening on URL` within 30s");
            output.lock().expect("output").push(line.clone());
            if let Some(at) = line.find("listening on http") {
                let url = line[at + "listening on ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                break url;
            }
        };
        // Keep draining so that the server never blocks on a full pipe.
        let kept = Arc::clone(&output);
        std::thread::spawn(move || {
            while let Ok(line) = receiver.recv() {
                kept.lock().expect("output").push(line);
            }
        });
        TestServer {
            child,
            url,
            data_dir,
            work,
            output,
        }
    }

    /// `sluice ARGS` beside the server: its URL and data dir in the
    /// environment, run from a directory without a `./sluice-data`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(self.work.path())
            .env("SLUICE_SERVER", &self.url)
            .env("SLUICE_DATA_DIR", self.data_dir.path())
            .env_remove("SLUICE_TOKEN")
            .env_remove("SLUICE_TOKEN_FILE")
            .stdin(Stdio::null());
        command
    }

    fn sluice(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().expect("running sluice"))
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("admin.token"))
            .expect("the server wrote admin.token")
            .trim()
            .to_owned()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.work.path().join(name);
        std::fs::write(&path, text).expect("writing a test file");
        path
    }
}

/// A finished `sluice` run.
struct Run(Output);

impl Run {
    fn code(&self) -> Option<i32> {
        self.0.status.code()
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(
            self.code(),
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    #[track_caller]
    fn exits(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {}", self.stdout()))
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Four hosts in two strata (role edge and api, one site).
const FLEET: &str = r#"[
  {"id": "edge-1.sto.example.net", "labels": {"role": "edge", "site": "sto"}, "components": {"docker-engine": "1.12.6"}},
  {"id": "edge-2.sto.example.net", "labels": {"role": "edge", "site": "sto"}, "components": {"docker-engine": "1.12.6"}},
  {"id": "api-1.sto.example.net", "labels": {"role": "api", "site": "sto"}, "components": {"docker-engine": "1.12.6"}},
  {"id": "api-2.sto.example.net", "labels": {"role": "api", "site": "sto"}, "components": {"docker-engine": "1.12.6"}}
]"#;

const PLAN: &str = "name: docker-e2e\n\
component: docker-engine\n\
version: \"17.03.1\"\n\
strategy: { spread: [role] }\n\
max_in_flight: 4\n\
stages:\n  \
  - { name: canary, percent: 50, approve: true }\n  \
  - { percent: 100 }\n";

fn import_fleet(server: &TestServer) {
    let fleet = server.write("fleet.json", FLEET);
    let run = server.sluice(&["hosts", "import", path(&fleet)]).ok();
    assert!(
        run.stdout().starts_with("imported 4 hosts from") && run.stdout().contains("(4 new"),
        "{}",
        run.stdout()
    );
}

fn create(server: &TestServer, plan: &str, extra: &[&str]) -> String {
    let plan = server.write("plan.yaml", plan);
    let mut args = vec!["rollout", "create", "-f", path(&plan), "--output", "json"];
    args.extend_from_slice(extra);
    let run = server.sluice(&args).ok();
    let json = run.json();
    let id = json["id"].as_str().expect("an id").to_owned();
    assert_eq!(run.stdout().trim(), format!("{{\"id\": \"{id}\"}}"));
    id
}

fn status_json(server: &TestServer, id: &str) -> serde_json::Value {
    server
        .sluice(&["rollout", "status", id, "--output", "json"])
        .ok()
        .json()
}

/// Polls until `check` holds, for at most 20 s.
#[track_caller]
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn create_start_pause_resume_through_the_cli() {
    let server = TestServer::start();
    import_fleet(&server);

    // Text mode prints the id alone on stdout, and a note on stderr.
    let id = create(&server, PLAN, &[]);
    let status = status_json(&server, &id);
    assert_eq!(status["state"], "pending", "{status}");

    // A reason is required for every action, before anything is sent.
    let run = server.sluice(&["rollout", "start", &id]).exits(2);
    assert!(
        run.stderr().contains("--reason is required")
            && run.stderr().contains("e.g. sluice rollout start"),
        "{}",
        run.stderr()
    );
    let run = server
        .sluice(&["rollout", "start", &id, "--reason", "e2e: CHG-1"])
        .ok();
    assert!(
        run.stdout()
            .starts_with(&format!("started rollout {id}: now running")),
        "{}",
        run.stdout()
    );

    let run = server.sluice(&["rollout", "status", &id]).ok();
    let text = run.stdout();
    assert!(
        text.starts_with(&format!(
            "rollout {id}: docker-e2e (docker-engine → 17.03.1)"
        )),
        "{text}"
    );
    assert!(
        text.contains("state      running, stage 1/2 canary (50%)"),
        "{text}"
    );
    assert!(text.contains("recent events"), "{text}");

    let run = server
        .sluice(&[
            "rollout",
            "pause",
            &id,
            "--reason",
            "e2e: looking at errors",
            "--output",
            "json",
        ])
        .ok();
    assert_eq!(run.json()["state"], "paused");
    // Pausing twice does not apply: the server's 409 is a failed operation.
    let run = server
        .sluice(&["rollout", "pause", &id, "--reason", "again"])
        .exits(1);
    assert!(
        run.stderr()
            .starts_with(&format!("error: pausing rollout {id}: ")),
        "{}",
        run.stderr()
    );

    server
        .sluice(&["rollout", "resume", &id, "--reason", "e2e: false alarm"])
        .ok();
    assert_eq!(status_json(&server, &id)["state"], "running");

    let list = server
        .sluice(&["rollout", "list", "--output", "json"])
        .ok()
        .json();
    assert_eq!(list["rollouts"][0]["id"], id.as_str());
    let run = server.sluice(&["rollout", "list"]).ok();
    assert!(run.stdout().starts_with("ID "), "{}", run.stdout());
    assert!(run.stdout().contains("docker-e2e"), "{}", run.stdout());

    let run = server.sluice(&["rollout", "events", &id]).ok();
    for kind in ["paused", "resumed"] {
        assert!(run.stdout().contains(kind), "{kind}: {}", run.stdout());
    }
    let events = server
        .sluice(&["rollout", "events", &id, "--output", "json"])
        .ok()
        .json();
    assert!(
        events["events"].as_array().is_some_and(|e| e.len() >= 3),
        "{events}"
    );

    // An unknown rollout is the user's input: exit 2.
    let run = server.sluice(&["rollout", "status", "r-999"]).exits(2);
    assert!(run.stderr().contains("r-999"), "{}", run.stderr());

    let run = server
        .sluice(&["rollout", "abort", &id, "--reason", "e2e done"])
        .ok();
    assert!(run.stdout().contains("aborted"), "{}", run.stdout());
}

#[test]
fn invalid_input_exits_2_with_what_would_be_valid() {
    let server = TestServer::start();
    // A plan with problems is refused before it is sent, every problem located.
    let broken = server.write(
        "broken.yaml",
        "name: x\ncomponent: c\nversion: \"1\"\nstages:\n  - { percent: 150 }\n",
    );
    let run = server
        .sluice(&["rollout", "create", "-f", path(&broken)])
        .exits(2);
    assert!(run.stderr().contains("broken.yaml:5:"), "{}", run.stderr());
    let run = server
        .sluice(&["rollout", "create", "-f", "/no/such/plan.yaml"])
        .exits(2);
    assert!(
        run.stderr().contains("/no/such/plan.yaml"),
        "{}",
        run.stderr()
    );

    let bad_fleet = server.write("bad.json", "[{\"id\": \"a\", \"lables\": {}}]");
    let run = server
        .sluice(&["hosts", "import", path(&bad_fleet)])
        .exits(2);
    assert!(
        run.stderr().contains("unknown field `lables`"),
        "{}",
        run.stderr()
    );

    let run = server
        .sluice(&["hosts", "list", "--selector", "role in ("])
        .exits(2);
    assert!(run.stderr().contains("--selector"), "{}", run.stderr());

    let run = server
        .sluice(&["rollout", "list", "--server", "127.0.0.1:7070"])
        .exits(2);
    assert!(
        run.stderr().contains("expected http://HOST:PORT"),
        "{}",
        run.stderr()
    );
}

#[test]
fn tokens_roles_and_discovery() {
    let server = TestServer::start();
    // The first start says where it wrote the admin token.
    let token_file = server.data_dir.path().join("admin.token");
    wait_for("the server to say where the admin token is", || {
        let output = server.output.lock().expect("output");
        output
            .iter()
            .any(|line| line.contains(&token_file.display().to_string()) && line.contains("0600"))
    });

    // The admin token is found beside the server; a new token is the last line.
    let run = server
        .sluice(&[
            "token",
            "create",
            "--role",
            "viewer",
            "--name",
            "e2e-viewer",
        ])
        .ok();
    let viewer = run
        .stdout()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(
        !viewer.is_empty() && !viewer.contains(' '),
        "{}",
        run.stdout()
    );
    assert!(run.stderr().contains("viewer token"), "{}", run.stderr());
    let json = server
        .sluice(&["token", "create", "--role", "operator", "--output", "json"])
        .ok()
        .json();
    assert_eq!(json["role"], "operator");

    // A viewer may read but not freeze: 403 is a failed operation, with a hint.
    server.sluice(&["rollout", "list", "--token", &viewer]).ok();
    let run = server
        .sluice(&["freeze", "on", "--reason", "nope", "--token", &viewer])
        .exits(1);
    assert!(run.stderr().contains("lacks the role"), "{}", run.stderr());

    // SLUICE_TOKEN beats the admin token in the data dir.
    let run = Run(server
        .command(&["freeze", "on", "--reason", "nope"])
        .env("SLUICE_TOKEN", &viewer)
        .output()
        .expect("running sluice"));
    assert_eq!(run.code(), Some(1), "{}", run.stderr());

    // No token anywhere: the server says 401 and the CLI says where to look.
    let run = Run(server
        .command(&["rollout", "list"])
        .env_remove("SLUICE_DATA_DIR")
        .output()
        .expect("running sluice"));
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr().contains("no token was sent"),
        "{}",
        run.stderr()
    );

    // A wrong token: refused, naming where it came from.
    let run = server
        .sluice(&["components", "--token", "slc_wrong"])
        .exits(1);
    assert!(
        run.stderr()
            .contains("did not accept the token from --token"),
        "{}",
        run.stderr()
    );

    // A named data dir without admin.token is the user's mistake.
    let empty = tempfile::tempdir().expect("temp dir");
    let run = server
        .sluice(&["rollout", "list", "--data-dir", path(empty.path())])
        .exits(2);
    assert!(
        run.stderr().contains("no admin token at"),
        "{}",
        run.stderr()
    );
}

#[test]
fn freeze_holds_everything_and_says_so() {
    let server = TestServer::start();
    let run = server.sluice(&["freeze", "on"]).exits(2);
    assert!(
        run.stderr().contains("--reason is required"),
        "{}",
        run.stderr()
    );

    let run = server
        .sluice(&["freeze", "on", "--reason", "INC-42: registry outage"])
        .ok();
    assert!(run.stdout().starts_with("FROZEN"), "{}", run.stdout());
    assert!(
        run.stdout().contains("INC-42: registry outage"),
        "{}",
        run.stdout()
    );
    let json = server
        .sluice(&["freeze", "status", "--output", "json"])
        .ok()
        .json();
    assert_eq!(json["frozen"], true);
    assert_eq!(json["reason"], "INC-42: registry outage");

    let run = server
        .sluice(&["freeze", "off", "--reason", "INC-42 resolved"])
        .ok();
    assert!(run.stdout().starts_with("not frozen"), "{}", run.stdout());
    let json = server
        .sluice(&["freeze", "status", "--output", "json"])
        .ok()
        .json();
    assert_eq!(json["frozen"], false);
}

#[test]
fn hosts_and_components_show_the_inventory() {
    let server = TestServer::start();
    import_fleet(&server);
    // Importing again updates: nothing new.
    let fleet = server.write("fleet.json", FLEET);
    let json = server
        .sluice(&["hosts", "import", path(&fleet), "--output", "json"])
        .ok()
        .json();
    assert_eq!(
        (json["imported"].as_u64(), json["new"].as_u64()),
        (Some(4), Some(0))
    );

    let run = server
        .sluice(&["hosts", "list", "--selector", "role=edge"])
        .ok();
    let text = run.stdout();
    assert!(text.starts_with("HOST "), "{text}");
    assert!(
        text.contains("edge-1.sto.example.net") && !text.contains("api-1"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("2 hosts"), "{text}");
    let json = server
        .sluice(&[
            "hosts",
            "list",
            "--component",
            "docker-engine",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(json["total"], 4);

    let run = server.sluice(&["components"]).ok();
    assert!(run.stdout().contains("docker-engine"), "{}", run.stdout());
    assert!(run.stdout().contains("1.12.6:4"), "{}", run.stdout());
    let json = server
        .sluice(&["components", "--output", "json"])
        .ok()
        .json();
    assert_eq!(json["components"][0]["name"], "docker-engine");
}

#[test]
fn watch_follows_a_rollout_to_completion() {
    let server = TestServer::start();
    import_fleet(&server);
    let plan = "name: docker-watch\ncomponent: docker-engine\nversion: \"17.03.1\"\nmax_in_flight: 4\nstages:\n  - { percent: 100 }\n";
    let id = create(&server, plan, &["--start", "--reason", "e2e watch"]);

    // Not a terminal: one line per change on stderr.
    let watch = server
        .command(&["rollout", "status", &id, "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the watch");

    // Play the four agents: report the old version, get told the new one,
    // report it healthy.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::builder(server.url.clone())
        .token(server.admin_token())
        .build()
        .expect("client");
    let hosts: Vec<serde_json::Value> = serde_json::from_str(FLEET).expect("fleet");
    let checkin = |host: &serde_json::Value, version: &str| {
        let request = CheckinRequest {
            host: HostId::parse(host["id"].as_str().unwrap_or_default()).expect("a host id"),
            labels: serde_json::from_value(host["labels"].clone()).unwrap_or_default(),
            components: [(
                "docker-engine".to_owned(),
                ComponentReport {
                    version: version.to_owned(),
                    state: ReportState::Ok,
                    message: None,
                },
            )]
            .into(),
        };
        runtime
            .block_on(client.checkin(&request))
            .expect("check-in")
    };
    wait_for("every host to be told 17.03.1", || {
        hosts.iter().all(|host| {
            let answer = checkin(host, "1.12.6");
            answer
                .components
                .get("docker-engine")
                .map(|d| d.version.as_str())
                == Some("17.03.1")
        })
    });
    for host in &hosts {
        checkin(host, "17.03.1");
    }
    wait_for("the rollout to complete", || {
        status_json(&server, &id)["state"] == "completed"
    });

    let output = wait_with_timeout(watch, Duration::from_secs(20));
    let run = Run(output).ok();
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!("{id} docker-watch: running")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "rollout {id} completed: its {} hosts run docker-engine 17.03.1",
            hosts.len()
        )),
        "{stderr}"
    );
    let run = server.sluice(&["components"]).ok();
    assert!(
        run.stdout().contains("docker-engine  17.03.1"),
        "{}",
        run.stdout()
    );
}

#[test]
fn an_unreachable_server_is_a_failed_operation_with_a_hint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let work = tempfile::tempdir().expect("work dir");
    let output = Command::new(BIN)
        .args(["rollout", "list", "--server", &url])
        .current_dir(work.path())
        .env_remove("SLUICE_TOKEN")
        .env_remove("SLUICE_DATA_DIR")
        .output()
        .expect("running sluice");
    let run = Run(output).exits(1);
    assert_eq!(
        run.stderr().trim_end(),
        format!(
            "error: listing rollouts: cannot reach the sluice server at {url}: connection refused; start it with `sluice server` or set SLUICE_SERVER / --server (this URL came from --server)"
        )
    );
}

fn wait_with_timeout(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("collecting output"),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("collecting output");
                panic!(
                    "the watch did not end: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
}

/// A private CA and a certificate it signed for `127.0.0.1` and `localhost`,
/// written as PEM files: (ca.pem, server.pem, server.key).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sluice test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    let files = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&files.0, ca.pem()).expect("ca.pem");
    std::fs::write(&files.1, cert.pem()).expect("server.pem");
    std::fs::write(&files.2, key.serialize_pem()).expect("server.key");
    files
}

#[test]
fn https_with_a_private_ca() {
    let certs = tempfile::tempdir().expect("certs dir");
    let (ca, cert, key) = private_ca(certs.path());
    let server = TestServer::start_with(&["--tls-cert", path(&cert), "--tls-key", path(&key)]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    // Trusted through --ca-cert, or SLUICE_CA_CERT.
    server.sluice(&["components", "--ca-cert", path(&ca)]).ok();
    let run = Run(server
        .command(&["freeze", "on", "--reason", "over TLS"])
        .env("SLUICE_CA_CERT", &ca)
        .output()
        .expect("running sluice"))
    .ok();
    assert!(run.stdout().contains("FROZEN"), "{}", run.stdout());

    // Not trusted without the CA: a failed operation that says why.
    let refused = server.sluice(&["components"]).exits(1);
    assert!(
        refused.stderr().to_lowercase().contains("certificate"),
        "{}",
        refused.stderr()
    );
    // Plain HTTP to the HTTPS port gets no answer.
    let http = server.url.replacen("https://", "http://", 1);
    server.sluice(&["components", "--server", &http]).exits(1);
}

#[test]
fn unusable_tls_files_are_invalid_input_naming_the_flag() {
    let certs = tempfile::tempdir().expect("certs dir");
    let (ca, cert, _key) = private_ca(certs.path());
    let data_dir = tempfile::tempdir().expect("data dir");
    let serve = |cert: &Path, key: &Path| {
        Run(Command::new(BIN)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .expect("running sluice server"))
    };
    let missing = serve(&cert, &certs.path().join("nowhere.key")).exits(2);
    assert!(
        missing.stderr().contains("--tls-key") && missing.stderr().contains("nowhere.key"),
        "{}",
        missing.stderr()
    );
    // A certificate where the key should be.
    let wrong = serve(&cert, &ca).exits(2);
    assert!(
        wrong.stderr().contains("--tls-key") && wrong.stderr().contains("PEM private key"),
        "{}",
        wrong.stderr()
    );
    // Only one of the pair.
    let alone = Run(Command::new(BIN)
        .args(["server", "--tls-cert"])
        .arg(&cert)
        .output()
        .expect("running sluice server"))
    .exits(2);
    assert!(alone.stderr().contains("--tls-key"), "{}", alone.stderr());
}

/// `plan preview --fleet` and `hosts import` read fleet files with one
/// parser: they refuse exactly the same files, with the same message.
#[test]
fn preview_and_import_refuse_exactly_the_same_fleets() {
    let server = TestServer::start();
    let plan = server.write("preview.yaml", PLAN);
    let cases = [
        ("[{\"id\": \"a b.example.net\"}]", "is not a host id"),
        ("[{\"id\": \"\"}]", "is not a host id"),
        ("[{\"id\": \"a/b\"}]", "is not a host id"),
        ("[{\"id\": \"a\"}, {\"id\": \"a\"}]", "appears twice"),
        ("[{\"id\": \"a\", \"colour\": \"red\"}]", "unknown field"),
    ];
    for (index, (fleet, expected)) in cases.into_iter().enumerate() {
        let file = server.write(&format!("bad-{index}.json"), fleet);
        let preview =
            server.sluice(&["plan", "preview", "-f", path(&plan), "--fleet", path(&file)]);
        let import = server.sluice(&["hosts", "import", path(&file)]);
        for (what, run) in [("preview", &preview), ("import", &import)] {
            assert_eq!(
                run.0.status.code(),
                Some(2),
                "{what} of {fleet}: {}",
                run.stderr()
            );
            assert!(
                run.stderr().contains(expected),
                "{what} of {fleet}: {}",
                run.stderr()
            );
        }
    }
    let good = server.write(
        "good.json",
        "[{\"id\": \"fe80::1\"}, {\"id\": \"web_1.example.net\"}]",
    );
    server
        .sluice(&["plan", "preview", "-f", path(&plan), "--fleet", path(&good)])
        .ok();
    server.sluice(&["hosts", "import", path(&good)]).ok();
}
