//! The client against a scripted HTTP server on loopback: what goes on the
//! wire (method, path, query, bearer token, body) and how every kind of
//! answer — success, sluice's error body, a proxy's HTML, silence — becomes a
//! value or a [`ClientError`].

use sluice_api::admin::Role;
use sluice_api::rollout::Action;
use sluice_client::{Client, ClientError, HostQuery};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the stub server saw it.
#[derive(Debug)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Answers exactly one request with `status` and `body`, and hands back
/// what it received.
async fn stub(status: &str, content_type: &str, body: &str) -> (String, JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accepting");
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let header_end = loop {
            let read = socket.read(&mut chunk).await.expect("reading");
            assert!(read > 0, "connection closed before the headers ended");
            buffer.extend_from_slice(&chunk[..read]);
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0);
        let mut body = buffer[header_end + 4..].to_vec();
        while body.len() < length {
            let read = socket.read(&mut chunk).await.expect("reading body");
            assert!(read > 0, "connection closed before the body ended");
            body.extend_from_slice(&chunk[..read]);
        }
        socket
            .write_all(response.as_bytes())
            .await
            .expect("answering");
        socket.shutdown().await.ok();
        Seen {
            request_line,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    });
    (url, handle)
}

#[tokio::test]
async fn a_plan_goes_as_yaml_with_the_bearer_token_and_an_invalid_plan_comes_back_typed() {
    let (url, seen) = stub(
        "422 Unprocessable Entity",
        "application/json",
        r#"{"error":{"code":"invalid_plan","message":"percentages must never decrease","field":"stages[1].percent at 7:16"}}"#,
    )
    .await;
    let client = Client::builder(&url)
        .token("t0k3n")
        .build()
        .expect("client");
    let error = client
        .create_rollout("name: x\ncomponent: c\n")
        .await
        .expect_err("the server refused");
    let seen = seen.await.expect("stub");
    assert_eq!(seen.request_line, "POST /v1/rollouts HTTP/1.1");
    assert_eq!(seen.header("authorization"), Some("Bearer t0k3n"));
    assert_eq!(seen.header("content-type"), Some("application/yaml"));
    assert_eq!(seen.body, "name: x\ncomponent: c\n");
    assert_eq!(error.status(), Some(422));
    assert_eq!(error.code(), Some("invalid_plan"));
    assert_eq!(
        error.api_error().and_then(|e| e.field.as_deref()),
        Some("stages[1].percent at 7:16")
    );
    assert_eq!(
        error.to_string(),
        "stages[1].percent at 7:16: percentages must never decrease"
    );
}

#[tokio::test]
async fn an_action_posts_the_reason_to_the_action_path() {
    let (url, seen) = stub(
        "200 OK",
        "application/json",
        r#"{"id":"r-7","name":"n","component":"c","version":"2","state":"paused","stage":1,"phase":"progressing","selected":10,"admitted":2,"healthy":1,"failed":1,"created_at":"2024-06-01T08:00:00Z","updated_at":"2024-06-01T09:00:00Z"}"#,
    )
    .await;
    let client = Client::new(&url).expect("client");
    let summary = client
        .action("r-7", Action::Pause, "error rate up in sto")
        .await
        .expect("paused");
    assert_eq!((summary.state.as_str(), summary.stage), ("paused", Some(1)));
    let seen = seen.await.expect("stub");
    assert_eq!(seen.request_line, "POST /v1/rollouts/r-7/pause HTTP/1.1");
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.body, r#"{"reason":"error rate up in sto"}"#);
}

#[tokio::test]
async fn queries_are_encoded() {
    let (url, seen) = stub("200 OK", "application/json", r#"{"hosts":[],"total":0}"#).await;
    let client = Client::new(&url).expect("client");
    let list = client
        .hosts(Some("role in (edge, db)"), Some("docker-engine"))
        .await
        .expect("hosts");
    assert_eq!(list.total, 0);
    let seen = seen.await.expect("stub");
    assert_eq!(
        seen.request_line,
        "GET /v1/hosts?selector=role+in+%28edge%2C+db%29&component=docker-engine HTTP/1.1"
    );

    let (url, seen) = stub("200 OK", "application/json", r#"{"hosts":[],"total":0}"#).await;
    let client = Client::new(&url).expect("client");
    client
        .hosts_page(&HostQuery {
            offset: Some(2000),
            limit: Some(500),
            ..HostQuery::default()
        })
        .await
        .expect("hosts");
    let seen = seen.await.expect("stub");
    assert_eq!(
        seen.request_line,
        "GET /v1/hosts?offset=2000&limit=500 HTTP/1.1"
    );

    let (url, seen) = stub("200 OK", "application/json", r#"{"events":[]}"#).await;
    let client = Client::new(&url).expect("client");
    client
        .events("r-1", Some(41), Some(100))
        .await
        .expect("events");
    let seen = seen.await.expect("stub");
    assert_eq!(
        seen.request_line,
        "GET /v1/rollouts/r-1/events?after=41&limit=100 HTTP/1.1"
    );
}

#[tokio::test]
async fn a_token_request_carries_role_host_and_name() {
    let (url, seen) = stub(
        "201 Created",
        "application/json",
        r#"{"token":"sl_abc","id":"1b4f0e9851971998","role":"agent","host":"web-1.example.net"}"#,
    )
    .await;
    let client = Client::builder(&url)
        .token("admin")
        .build()
        .expect("client");
    let created = client
        .create_token(
            Role::Agent,
            Some(&"web-1.example.net".parse().expect("a host id")),
            Some("web-1"),
            "web-1's agent",
        )
        .await
        .expect("token");
    assert_eq!(created.token, "sl_abc");
    let seen = seen.await.expect("stub");
    assert_eq!(seen.request_line, "POST /v1/tokens HTTP/1.1");
    let body: serde_json::Value = serde_json::from_str(&seen.body).expect("json body");
    assert_eq!(
        body,
        serde_json::json!({"role": "agent", "host": "web-1.example.net", "name": "web-1", "reason": "web-1's agent"})
    );
}

#[tokio::test]
async fn an_enrollment_carries_host_and_labels_with_the_enrollment_token() {
    let (url, seen) = stub(
        "201 Created",
        "application/json",
        r#"{"token":"slc_own","id":"60303ae22b998861","host":"web-1.example.net","selector":"site in (lon, sto)"}"#,
    )
    .await;
    let client = Client::builder(&url)
        .token("slc_enroll")
        .build()
        .expect("client");
    let enrolled = client
        .enroll(&sluice_api::agent::EnrollRequest {
            host: "web-1.example.net".parse().expect("a host id"),
            labels: [("site".to_owned(), "sto".to_owned())].into(),
        })
        .await
        .expect("enrolled");
    assert_eq!(
        (enrolled.token.as_str(), enrolled.selector.as_str()),
        ("slc_own", "site in (lon, sto)")
    );
    let seen = seen.await.expect("stub");
    assert_eq!(seen.request_line, "POST /v1/agent/enroll HTTP/1.1");
    let body: serde_json::Value = serde_json::from_str(&seen.body).expect("json body");
    assert_eq!(
        body,
        serde_json::json!({"host": "web-1.example.net", "labels": {"site": "sto"}})
    );
}

#[tokio::test]
async fn an_error_without_sluice_body_keeps_status_and_a_snippet() {
    let (url, _seen) = stub(
        "502 Bad Gateway",
        "text/html",
        "<html>\n<h1>502 Bad Gateway</h1>\n</html>",
    )
    .await;
    let client = Client::new(&url).expect("client");
    let error = client.rollouts().await.expect_err("bad gateway");
    assert!(
        matches!(error, ClientError::Http { status: 502, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("the server at {url} answered HTTP 502: <html> <h1>502 Bad Gateway</h1> </html>")
    );
    assert!(!error.is_client_error());
}

#[tokio::test]
async fn a_success_that_is_not_the_expected_shape_is_a_decode_error() {
    let (url, _seen) = stub("200 OK", "text/plain", "hello").await;
    let client = Client::new(&url).expect("client");
    let error = client.components().await.expect_err("not json");
    assert!(matches!(error, ClientError::Decode { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("could not understand the answer to GET /v1/components"),
        "{error}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_there_is_unreachable_with_connection_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let client = Client::new(&url).expect("client");
    let error = client.healthz().await.expect_err("nobody listens");
    assert!(error.is_unreachable(), "{error:?}");
    assert_eq!(error.status(), None);
    assert_eq!(
        error.to_string(),
        format!("cannot reach the sluice server at {url}: connection refused")
    );
}

#[tokio::test]
async fn a_429_is_busy_with_the_servers_retry_after() {
    let (url, _seen) = stub(
        "429 Too Many Requests",
        "application/json\r\nretry-after: 7",
        r#"{"error": {"code": "too_many_requests", "message": "the check-in queue is full"}}"#,
    )
    .await;
    let client = Client::new(&url).expect("client");
    let error = client.rollouts().await.expect_err("busy");
    assert_eq!(
        error.retry_after(),
        Some(std::time::Duration::from_secs(7)),
        "{error:?}"
    );
    assert_eq!(error.status(), Some(429));
    assert!(!error.is_unreachable());
    assert_eq!(
        error.to_string(),
        format!("the sluice server at {url} is busy, try again in 7s: the check-in queue is full")
    );
}
