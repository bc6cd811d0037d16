//! `server = [URL, …]`, for a fleet without a load balancer: the agent
//! checks in with the first server of the list that can serve, stays with
//! it, and moves on at once when it dies; a server that answers an error
//! (its verdict on the request) is not skipped, and one that is busy (429)
//! is waited for, as long as its `Retry-After` says.
//!
//! The servers are real `sluice server` processes, two independent SQLite
//! servers (not replicas) that accept the same agent token — the second
//! started on a copy of the first's data dir — beside a URL where nothing
//! listens and stubs that answer every request with one status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sluice_api::agent::ReportState;
use sluice_testkit::{wait_for, Sandbox, DEADLINE};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::harness::{dead_urls, start_server, start_twin, Host};

/// A host whose agent checks in with `servers`, in this order.
fn host(id: &str, servers: &[&str], token: &std::path::Path) -> Host {
    let labels = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
    let host = Host::new(id, &labels, "1.0", servers[0], token, "");
    let list: Vec<String> = servers.iter().map(|url| format!("{url:?}")).collect();
    host.set("server", &format!("[{}]", list.join(", ")));
    host
}

/// Waits until `server` has `id`'s report of `app`, ok.
async fn wait_for_report(server: &Sandbox, id: &str, what: &str) {
    wait_for(what, DEADLINE, || async {
        let view = server.host(id).await;
        match view.as_ref().and_then(|view| view.components.get("app")) {
            Some(app) if app.state == Some(ReportState::Ok) => Ok(()),
            app => Err(format!("{id}: {app:?}")),
        }
    })
    .await;
}

/// Waits until `server` (called `name`) has answered three more check-ins.
async fn three_more_checkins(server: &Sandbox, name: &str) {
    let seen = server.checkins().await;
    let what = format!("three more check-ins with {name}");
    wait_for(&what, DEADLINE, || async {
        let now = server.checkins().await;
        (now >= seen + 3).then_some(()).ok_or(now)
    })
    .await;
}

/// The lines of the agent's log that say it moved to the next server.
fn moves(host: &Host) -> Vec<String> {
    std::fs::read_to_string(host.path("agent.log"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("moving to the next one"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_skips_a_dead_server_stays_and_moves_on_when_its_server_dies() {
    let mut a = start_server().await;
    let token = a.agent_token_file("ha.test").await;
    let b = start_twin(&mut a).await;
    let [dead] = dead_urls();
    let mut host = host("ha.test", &[&dead, a.url(), b.url()], &token);
    host.start();

    // Nothing listens at the first URL: the agent checks in with A.
    wait_for_report(&a, "ha.test", "the agent to check in with A").await;
    // And stays with A, round after round: it does not try the dead URL
    // first every time, nor B.
    three_more_checkins(&a, "A").await;
    assert_eq!(b.checkins().await, 0, "B is not needed while A answers");
    assert!(b.host("ha.test").await.is_none());
    let moved = moves(&host);
    assert_eq!(moved.len(), 1, "one move, from the dead URL: {moved:#?}");
    assert!(
        moved[0].contains(&format!("from={dead}")) && moved[0].contains(&format!("to={}", a.url())),
        "{}",
        moved[0]
    );

    // A dies: the host shows up in B's inventory.
    a.kill9();
    wait_for_report(&b, "ha.test", "the agent to move to B once A died").await;
    assert!(host.running());

    // A comes back: the agent stays with B, which still answers (no flapping
    // back to the start of the list).
    a.restart().await;
    three_more_checkins(&b, "B").await;
    assert_eq!(a.checkins().await, 0, "no check-in went back to A");
    assert_eq!(moves(&host).len(), 2, "{:#?}", moves(&host));
}

/// A stand-in server that answers every request with `status`, `headers`
/// (lines ending in CRLF) and sluice's error body, counting the requests.
struct Stub {
    url: String,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stub {
    async fn start(status: &'static str, code: &'static str, headers: &'static str) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        let body = format!(r#"{{"error":{{"code":"{code}","message":"answered by a stub"}}}}"#);
        let response = format!(
            "HTTP/1.1 {status}\r\n{headers}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                let response = response.clone();
                tokio::spawn(async move {
                    // The whole request (the agent sends its JSON body with
                    // a content-length), then the answer.
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&chunk[..read]),
                        }
                        if complete(&request) {
                            break;
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Stub {
            url,
            requests,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Whether `request` holds its headers and the body they announce.
fn complete(request: &[u8]) -> bool {
    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_serve_is_skipped_one_that_refuses_is_not() {
    let server = start_server().await;

    // 503: that server cannot serve now; the next one does.
    let unavailable = Stub::start("503 Service Unavailable", "unavailable", "").await;
    let token = server.agent_token_file("skips.test").await;
    let mut skips = host("skips.test", &[&unavailable.url, server.url()], &token);
    skips.start();
    wait_for_report(&server, "skips.test", "the agent to move past the 503").await;
    assert!(unavailable.requests() >= 1);

    // 401: the server's verdict on the request, which another server of the
    // cluster would repeat; the round fails and is retried with backoff,
    // with the same server.
    let refusing = Stub::start("401 Unauthorized", "unauthorized", "").await;
    let token = server.agent_token_file("stays.test").await;
    let mut stays = host("stays.test", &[&refusing.url, server.url()], &token);
    stays.start();
    wait_for(
        "the agent to retry the server that refused",
        DEADLINE,
        || async {
            (refusing.requests() >= 2)
                .then_some(())
                .ok_or(refusing.requests())
        },
    )
    .await;
    assert!(
        server.host("stays.test").await.is_none(),
        "a 401 does not send the agent to the next server"
    );
    assert!(moves(&stays).is_empty(), "{:#?}", moves(&stays));
    assert!(stays.running());
}

/// The `retry_in_s` of each line of the agent's log that says its server was
/// busy.
fn busy_waits(host: &Host) -> Vec<f64> {
    std::fs::read_to_string(host.path("agent.log"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("the server is busy (429)"))
        .filter_map(|line| {
            let value = line
                .split("retry_in_s=")
                .nth(1)?
                .split_whitespace()
                .next()?;
            value.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_server_is_checked_in_with_again_after_retry_after_and_not_left() {
    let server = start_server().await;
    let busy = Stub::start(
        "429 Too Many Requests",
        "too_many_requests",
        "retry-after: 2\r\n",
    )
    .await;
    let token = server.agent_token_file("busy.test").await;
    let mut host = host("busy.test", &[&busy.url, server.url()], &token);
    host.start();
    wait_for(
        "the agent to come back to the busy server",
        DEADLINE,
        || async { (busy.requests() >= 2).then_some(()).ok_or(busy.requests()) },
    )
    .await;
    let waits = busy_waits(&host);
    assert!(!waits.is_empty(), "the agent logged no busy answer");
    for wait in &waits {
        // Retry-After, plus up to half of it as jitter.
        assert!(
            (2.0..3.0).contains(wait),
            "waited {wait}s after Retry-After: 2"
        );
    }
    let log = std::fs::read_to_string(host.path("agent.log")).unwrap_or_default();
    assert!(
        !log.contains("check-in failed"),
        "a 429 is no failure (no backoff): {log}"
    );
    assert!(moves(&host).is_empty(), "{:#?}", moves(&host));
    assert_eq!(
        server.checkins().await,
        0,
        "a busy server does not send the agent to the next one"
    );
    assert!(host.running());
}
