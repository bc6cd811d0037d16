//! A webhook receiver in its own process: a Python `http.server` that
//! appends each delivery — its headers, its body and the HMAC-SHA256 it
//! computes with the secret — to a file, fsynced, before answering 200.
//! It can be told to record its Nth delivery and never answer it, so that
//! a test kills the receiver, or the sender, mid-delivery, and
//! [`WebhookReceiver::delivered_once`] then checks what arrived.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use sluice_api::rollout::Action;
use sluice_client::Client;

use crate::{wait_for, DEADLINE};

/// Pauses and resumes rollout `id` `times` times (each action an event a
/// webhook may want), the reasons saying `who`.
pub async fn pause_and_resume(client: &Client, id: &str, times: usize, who: &str) {
    for i in 0..times {
        for action in [Action::Pause, Action::Resume] {
            client
                .action(id, action, &format!("{who} {i}"))
                .await
                .unwrap_or_else(|error| panic!("{action} {id}: {error}"));
        }
    }
}

/// Rollout `id`'s events of the `kinds` given, from its log, oldest first,
/// as the API shows them: what a webhook wanting those kinds must deliver.
pub async fn logged_events(client: &Client, id: &str, kinds: &[&str]) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = None;
    loop {
        let page = client
            .events(id, after, Some(500))
            .await
            .expect("reading the events");
        let Some(last) = page.events.last() else {
            return events;
        };
        after = Some(last.seq);
        events.extend(
            page.events
                .iter()
                .filter(|event| kinds.contains(&event.kind.as_str()))
                .map(|event| serde_json::to_value(event).expect("json")),
        );
    }
}

const SCRIPT: &str = r#"
import hashlib, hmac, http.server, json, os, sys, threading

port, log_path, secret, port_file = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode(), sys.argv[4]
hang_at = int(sys.argv[5])
count = 0
lock = threading.Lock()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        record = {
            "pid": os.getpid(),
            "event": self.headers.get("X-Sluice-Event"),
            "delivery": self.headers.get("X-Sluice-Delivery"),
            "signature": self.headers.get("X-Sluice-Signature"),
            "expected": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
            "body": body.decode(),
        }
        with open(log_path, "a") as log:
            log.write(json.dumps(record) + "\n")
            log.flush()
            os.fsync(log.fileno())
        with lock:
            count += 1
            hang = count == hang_at
        if hang:
            # Recorded, never answered: the sender is mid-delivery until
            # the test kills one of the two.
            threading.Event().wait()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer.daemon_threads = True
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
"#;

/// The receiver's process and files.
#[derive(Debug)]
pub struct WebhookReceiver {
    dir: PathBuf,
    log: PathBuf,
    port: u16,
    secret: String,
    child: Child,
}

impl WebhookReceiver {
    /// Starts the receiver in `dir` on `port` (0: any free one), checking
    /// signatures against `secret`, and waits until it listens; it records
    /// its `hang_at`th delivery (0: none) and never answers it.
    pub async fn start(dir: &Path, port: u16, secret: &str, hang_at: usize) -> WebhookReceiver {
        let script = dir.join("receiver.py");
        std::fs::write(&script, SCRIPT).expect("writing the receiver");
        let log = dir.join("deliveries.jsonl");
        let port_file = dir.join("receiver.port");
        let _ = std::fs::remove_file(&port_file);
        let child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&log)
            .arg(secret)
            .arg(&port_file)
            .arg(hang_at.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("starting python3");
        let port = wait_for("the receiver to listen", DEADLINE, || async {
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.trim().parse::<u16>().ok())
        })
        .await;
        WebhookReceiver {
            dir: dir.to_path_buf(),
            log,
            port,
            secret: secret.to_owned(),
            child,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// SIGKILL; waits until the process is gone.
    pub fn kill9(&mut self) {
        self.child.kill().expect("killing the receiver");
        self.child.wait().expect("reaping the receiver");
    }

    /// Starts it again (killed first if it runs) on the same port,
    /// appending to the same file.
    pub async fn restart(&mut self, hang_at: usize) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = WebhookReceiver::start(&self.dir, self.port, &self.secret, hang_at).await;
    }

    /// The arguments of `sluice webhook add` for this receiver: the event
    /// `kinds`, signed with the key in `secret`, the reason `reason`, the
    /// answer as JSON.
    pub fn add_args(&self, kinds: &[&str], secret: &Path, reason: &str) -> Vec<String> {
        let secret = secret.to_str().expect("a UTF-8 path");
        [
            "webhook",
            "add",
            &self.url(),
            "--events",
            &kinds.join(","),
            "--secret-file",
            secret,
            "--reason",
            reason,
            "--output",
            "json",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Every delivery recorded so far once the event numbered `last` is
    /// among them, waiting for it with the deadline.
    pub async fn deliveries_through(&self, last: &Value) -> Vec<Value> {
        wait_for("every wanted event delivered", DEADLINE, || async {
            let got = self.deliveries();
            let delivered = got
                .iter()
                .filter_map(|d| serde_json::from_str::<Value>(d["body"].as_str()?).ok())
                .any(|event| &event["seq"] == last);
            if delivered {
                Ok(got)
            } else {
                Err(got.len())
            }
        })
        .await
    }

    /// Every delivery recorded so far, in the order received: objects with
    /// `event`, `delivery`, `signature` (the headers), `expected` (the
    /// signature the body should have) and `body`.
    pub fn deliveries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a recorded delivery"))
            .collect()
    }

    /// Checks `deliveries` of webhook `hook`: each signed with the secret,
    /// its `X-Sluice-Event` its event's kind and its `X-Sluice-Delivery`
    /// `<hook>-<seq>`; a delivery received twice only when its first copy
    /// was the last one received before a kill (`kills`: how many
    /// deliveries had been received at each), and the second after it,
    /// exactly one per kill. Returns the events delivered, first copies
    /// only, in the order received.
    pub fn delivered_once(deliveries: &[Value], hook: &str, kills: &[usize]) -> Vec<Value> {
        let mut events: Vec<Value> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (i, delivery) in deliveries.iter().enumerate() {
            assert_eq!(
                delivery["signature"], delivery["expected"],
                "signed: {delivery}"
            );
            let event: Value =
                serde_json::from_str(delivery["body"].as_str().expect("a body")).expect("an event");
            assert_eq!(delivery["event"], event["kind"], "{delivery}");
            let name = delivery["delivery"].as_str().expect("a delivery id");
            assert_eq!(name, format!("{hook}-{}", event["seq"]), "{delivery}");
            match names.iter().position(|earlier| *earlier == name) {
                None => {
                    names.push(name);
                    events.push(event);
                }
                Some(_) => {
                    let first = deliveries
                        .iter()
                        .position(|d| d["delivery"] == name)
                        .expect("the first copy");
                    assert!(
                        kills.iter().any(|&kill| first + 1 == kill && i >= kill),
                        "delivery {name} at {first} again at {i}, with kills at {kills:?}: duplicates only after a crash"
                    );
                }
            }
        }
        assert_eq!(
            deliveries.len() - events.len(),
            kills.len(),
            "one duplicate per kill, the delivery it interrupted"
        );
        events
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
