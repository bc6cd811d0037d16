//! The audit log's source address through replicas: two real `sluice
//! server` replicas on a fresh PostgreSQL database. A request made through
//! the standby is recorded with the address the standby saw (the client's,
//! passed on with the cluster's forwarding key), not the standby's own;
//! a client that claims another address (the forwarding headers without
//! the key, to either replica) is recorded with its own.
//!
//! The clients connect from other loopback addresses (127.0.0.2, 127.0.0.3)
//! than the replicas talk to each other from (127.0.0.1), so that the
//! three can be told apart.

use std::net::SocketAddr;

use serde_json::json;
use sluice_client::AuditFilter;
use sluice_store::testing::TempPgDatabase;
use sluice_testkit::Cluster;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;

/// `METHOD path` with `token` and `body` (sent as JSON) to the server at
/// `url`, from the local address `from`, with `headers` besides; the status
/// and the whole answer.
pub(crate) async fn request_from(
    from: &str,
    url: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let server: SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .expect("a replica's address");
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(format!("{from}:0").parse().expect("a local address"))
        .expect("binding the client's address");
    let mut stream = socket.connect(server).await.expect("connecting");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    stream
        .write_all(format!("{head}\r\n{body}").as_bytes())
        .await
        .expect("sending");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("reading the answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    (status, answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_passes_the_clients_address_on_and_nobody_else_can() {
    let db = TempPgDatabase::create().await;
    let cluster = Cluster::start(db.url(), 2, "2s").await;
    let leadership = cluster.wait_for_leader(&[0, 1], None).await;
    let (leader, standby) = (leadership.leader, 1 - leadership.leader);
    let urls = cluster.urls();
    let forged = [
        ("x-sluice-forwarded-for", "198.51.100.7"),
        ("x-sluice-forward-key", "a guess"),
    ];

    // Through the standby, which replaces what the client claimed.
    let (status, _) = request_from(
        "127.0.0.2",
        &urls[standby],
        "PUT",
        "/v1/freeze",
        cluster.token(),
        &json!({"reason": "through the standby"}).to_string(),
        &forged,
    )
    .await;
    assert_eq!(status, 200);
    // Straight to the leader, claiming to be forwarded.
    let (status, _) = request_from(
        "127.0.0.3",
        &urls[leader],
        "DELETE",
        "/v1/freeze",
        cluster.token(),
        &json!({"reason": "straight to the leader"}).to_string(),
        &forged,
    )
    .await;
    assert_eq!(status, 200);

    let log = cluster
        .client(standby)
        .audit(&AuditFilter::default())
        .await
        .expect("reading the audit log through the standby");
    let seen: Vec<(&str, Option<&str>, Option<&str>)> = log
        .entries
        .iter()
        .map(|e| (e.kind.as_str(), e.reason.as_deref(), e.source.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("freeze_on", Some("through the standby"), Some("127.0.0.2")),
            (
                "freeze_off",
                Some("straight to the leader"),
                Some("127.0.0.3")
            ),
        ]
    );
    assert!(log.entries.iter().all(|e| e.actor.name == "admin"));
}
