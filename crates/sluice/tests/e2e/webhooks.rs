//! Issue 16, points 4 and 7: webhook deliveries against a real HTTP
//! receiver in its own process (a Python `http.server` written by the
//! test, which appends each delivery — headers, body and the HMAC it
//! computes with the secret — to a file and fsyncs it before answering
//! 200). While an operator pauses and resumes a rollout over and over,
//! the receiver is SIGKILLed and restarted on the same port, then the
//! server is SIGKILLed and restarted on the same data dir. In the end
//! every wanted event of the log was delivered, in the log's order, every
//! signature verifies, and an event was delivered twice only when a kill
//! fell between its delivery and the cursor's write.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use sluice_api::host::ImportHost;
use sluice_api::rollout::Action;
use sluice_api::HostId;
use sluice_testkit::{wait_for, Plan, Sandbox, Stage, DEADLINE};

use crate::fleet::COMPONENT;

const SECRET: &str = "e2e-webhook-secret";

/// Each run of the receiver records its third delivery and never answers it.
const HANG_AT: usize = 3;

/// The kinds the webhook wants.
const WANTED: &[&str] = &[
    "started",
    "stage_started",
    "paused",
    "resumed",
    "rollback_started",
    "aborted",
    "completed",
];

const RECEIVER: &str = r#"
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
struct Receiver {
    script: PathBuf,
    log: PathBuf,
    port_file: PathBuf,
    port: u16,
    child: Child,
}

impl Receiver {
    /// Starts the receiver on `port` (0: any free one) and waits until it
    /// listens; it records its `hang_at`th delivery and never answers it.
    async fn start(dir: &Path, port: u16, hang_at: usize) -> Receiver {
        let script = dir.join("receiver.py");
        std::fs::write(&script, RECEIVER).expect("writing the receiver");
        let log = dir.join("deliveries.jsonl");
        let port_file = dir.join("receiver.port");
        let _ = std::fs::remove_file(&port_file);
        let child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&log)
            .arg(SECRET)
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
        Receiver {
            script,
            log,
            port_file,
            port,
            child,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// SIGKILL; waits until the process is gone.
    fn kill9(&mut self) {
        self.child.kill().expect("killing the receiver");
        self.child.wait().expect("reaping the receiver");
    }

    /// Starts it again on the same port, appending to the same file.
    async fn restart(&mut self, hang_at: usize) {
        let dir = self.script.parent().expect("a directory").to_path_buf();
        let again = Receiver::start(&dir, self.port, hang_at).await;
        assert_eq!(again.log, self.log);
        assert_eq!(again.port_file, self.port_file);
        *self = again;
    }

    /// Every delivery recorded so far, in the order received.
    fn deliveries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a recorded delivery"))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pauses and resumes the rollout `times` times.
async fn pause_and_resume(sandbox: &Sandbox, id: &str, times: usize) {
    for i in 0..times {
        for action in [Action::Pause, Action::Resume] {
            sandbox
                .client()
                .action(id, action, &format!("e2e {i}"))
                .await
                .unwrap_or_else(|error| panic!("{action} {id}: {error}"));
        }
    }
}

/// The rollout's events of the wanted kinds, from its log.
async fn wanted_events(sandbox: &Sandbox, id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = None;
    loop {
        let page = sandbox
            .client()
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
                .filter(|event| WANTED.contains(&event.kind.as_str()))
                .map(|event| serde_json::to_value(event).expect("json")),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_a_receiver_and_a_server_killed_mid_stream() {
    let mut sandbox = Sandbox::builder()
        .arg("--webhook-retry-max")
        .arg("1s")
        .start()
        .await;
    let work = tempfile::TempDir::new().expect("temp dir");
    let mut receiver = Receiver::start(work.path(), 0, HANG_AT).await;
    let secret = sandbox.write("webhook.secret", format!("{SECRET}\n"));
    let events = WANTED.join(",");
    let added = sandbox
        .sluice(&[
            "webhook",
            "add",
            &receiver.url(),
            "--events",
            &events,
            "--secret-file",
            secret.to_str().expect("a UTF-8 path"),
            "--reason",
            "e2e: tell the receiver",
            "--output",
            "json",
        ])
        .await
        .ok()
        .json();
    let hook = added["id"].as_str().expect("an id").to_owned();
    assert_eq!(added["signed"], true, "{added}");

    let hosts: Vec<ImportHost> = (0..4)
        .map(|i| ImportHost {
            id: HostId::parse(format!("hook-{i}.sto.example.net")).expect("a host id"),
            labels: [("role".to_owned(), "web".to_owned())].into(),
            components: [(COMPONENT.to_owned(), "1".to_owned())].into(),
        })
        .collect();
    sandbox
        .client()
        .import_hosts(&hosts, "e2e")
        .await
        .expect("importing the hosts");
    // The hosts never check in: the rollout stays in its first stage while
    // it is paused and resumed.
    let plan = Plan::new("hooked", COMPONENT, "2")
        .stage(Stage::percent(50))
        .stage(Stage::percent(100));
    let id = sandbox.start_plan(&plan, "e2e").await;

    // Mid-stream: events wait to be delivered while the receiver hangs on
    // its third delivery, recorded but not answered; it is killed then.
    pause_and_resume(&sandbox, &id, 10).await;
    wait_for("the receiver's third delivery", DEADLINE, || async {
        receiver.deliveries().len() >= HANG_AT
    })
    .await;
    receiver.kill9();
    let mut kills = vec![receiver.deliveries().len()];
    assert_eq!(kills, [HANG_AT]);
    // Events keep coming while it is down; the webhook is marked failing.
    pause_and_resume(&sandbox, &id, 5).await;
    wait_for("the webhook marked failing", DEADLINE, || async {
        let listed = sandbox
            .sluice(&["webhook", "list", "--output", "json"])
            .await
            .ok()
            .json();
        listed["webhooks"][0]["failing"] == true
    })
    .await;
    let listed = sandbox.sluice(&["webhook", "list"]).await.ok().stdout();
    assert!(listed.contains("FAILING"), "{listed}");
    // It comes back on its port and hangs again on its third delivery:
    // then the server is killed, mid-send, and restarted.
    receiver.restart(HANG_AT).await;
    wait_for(
        "the restarted receiver's third delivery",
        DEADLINE,
        || async { receiver.deliveries().len() >= 2 * HANG_AT },
    )
    .await;
    sandbox.kill9();
    kills.push(receiver.deliveries().len());
    assert_eq!(kills, [HANG_AT, 2 * HANG_AT]);
    sandbox.restart().await;
    pause_and_resume(&sandbox, &id, 5).await;
    sandbox
        .client()
        .action(&id, Action::Abort, "e2e over")
        .await
        .expect("aborting");

    let logged = wanted_events(&sandbox, &id).await;
    assert!(
        logged.len() >= 42,
        "20 pauses and resumes, a start, a stage, an abort: {logged:?}"
    );
    let last = logged.last().expect("events")["seq"].as_i64().expect("seq");
    let deliveries = wait_for("every wanted event delivered", DEADLINE, || async {
        let got = receiver.deliveries();
        let delivered = got
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d["body"].as_str()?).ok())
            .any(|event| event["seq"] == last);
        if delivered {
            Ok(got)
        } else {
            Err(got.len())
        }
    })
    .await;

    // Each delivery is signed with the secret and names its event.
    let mut first_copies: Vec<Value> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (i, delivery) in deliveries.iter().enumerate() {
        assert_eq!(
            delivery["signature"], delivery["expected"],
            "signed: {delivery}"
        );
        let event: Value =
            serde_json::from_str(delivery["body"].as_str().expect("a body")).expect("an event");
        assert_eq!(delivery["event"], event["kind"], "{delivery}");
        assert_eq!(event["rollout"], id.as_str(), "{delivery}");
        let name = delivery["delivery"]
            .as_str()
            .expect("a delivery id")
            .to_owned();
        assert_eq!(name, format!("{hook}-{}", event["seq"]), "{delivery}");
        match seen.iter().position(|earlier| *earlier == name) {
            None => {
                seen.push(name);
                first_copies.push(event);
            }
            Some(_) => {
                let first = deliveries
                    .iter()
                    .position(|d| d["delivery"] == name.as_str())
                    .expect("the first copy");
                // The first copy was the last delivery before a kill, never
                // answered, and the copy came after that kill.
                assert!(
                    kills.iter().any(|&kill| first + 1 == kill && i >= kill),
                    "delivery {name} at {first} again at {i}, with kills at {kills:?}: duplicates only after a crash"
                );
            }
        }
    }
    assert_eq!(
        deliveries.len() - first_copies.len(),
        kills.len(),
        "one duplicate per kill, the delivery it interrupted"
    );
    // None lost, none out of order: the first copies are the log's wanted
    // events, in its order.
    assert_eq!(first_copies, logged);

    let listed = sandbox
        .sluice(&["webhook", "list", "--output", "json"])
        .await
        .ok()
        .json();
    let shown = &listed["webhooks"][0];
    assert_eq!(shown["id"], hook.as_str(), "{listed}");
    assert_eq!(shown["failing"], false, "{listed}");
    assert!(
        !listed.to_string().contains(SECRET),
        "no secret in a listing: {listed}"
    );
    let tested = sandbox.sluice(&["webhook", "test", &hook]).await.ok();
    assert!(
        tested
            .stdout()
            .contains("delivered: the receiver answered 200"),
        "{}",
        tested.stdout()
    );
    assert!(
        receiver
            .deliveries()
            .iter()
            .any(|d| d["event"] == "webhook_test" && d["signature"] == d["expected"]),
        "the test delivery arrived, signed"
    );
    sandbox
        .sluice(&["webhook", "remove", &hook, "--reason", "e2e done"])
        .await
        .ok();
    let listed = sandbox
        .sluice(&["webhook", "list", "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(listed["webhooks"], serde_json::json!([]), "{listed}");
}
