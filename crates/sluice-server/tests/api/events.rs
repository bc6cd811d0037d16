//! The whole event log, `GET /v1/events`: a page of every rollout's events
//! and the fleet-wide ones, oldest first, filtered by rollout and kinds;
//! and with `follow=true` a stream of server-sent events that starts after
//! `Last-Event-ID`, `after` or at the log's end, is bounded per server, and
//! ends when the server shuts down.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sluice_client::{SseEvent, SseParser};
use sluice_testkit::app::spawn_app_configured;
use sluice_testkit::{Plan, Stage};
use tempfile::TempDir;

use crate::helpers::{
    assert_error, fleet, plan, retry_after, spawn_app, wait_for, TestApp, DEADLINE,
};

/// `GET /v1/events{query}` with `token`; asserts 200 and returns the events.
async fn page(app: &TestApp, query: &str, token: &str) -> Vec<Value> {
    let response = app.get(&format!("/v1/events{query}"), token).await;
    assert_eq!(response.status(), StatusCode::OK, "GET /v1/events{query}");
    let body: Value = response.json().await.expect("json");
    body["events"].as_array().expect("events").clone()
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect()
}

/// Two rollouts created and a freeze on and off: events of both rollouts
/// and fleet-wide ones, interleaved. Returns the rollouts' ids.
async fn some_history(app: &TestApp) -> (String, String) {
    assert_eq!(app.import(&fleet(4)).await.status(), StatusCode::OK);
    let one = app
        .rollout(plan(
            "one",
            [Stage::percent(50).approve(), Stage::percent(100)],
        ))
        .await;
    assert_eq!(app.freeze("CHG-1: holiday").await.status(), StatusCode::OK);
    // Another component: two active rollouts of one would overlap.
    let two = app
        .rollout(Plan::new("two", "containerd", "2.0").stages([Stage::percent(100)]))
        .await;
    assert_eq!(app.unfreeze("CHG-1: over").await.status(), StatusCode::OK);
    (one, two)
}

/// An open events stream, read as the test needs.
struct Stream {
    response: Response,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
}

impl Stream {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<i64>) -> Stream {
        Stream::open_as(app, &app.admin, query, last_event_id).await
    }

    /// [`Stream::open`] with `token`.
    async fn open_as(
        app: &TestApp,
        token: &str,
        query: &str,
        last_event_id: Option<i64>,
    ) -> Stream {
        let mut request = app
            .client
            .get(app.url(&format!("/v1/events?follow=true{query}")))
            .bearer_auth(token)
            // The stream outlives the harness client's request timeout.
            .timeout(Duration::from_secs(3600));
        if let Some(seq) = last_event_id {
            request = request.header("Last-Event-ID", seq.to_string());
        }
        let response = request.send().await.expect("request sent");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        Stream {
            response,
            parser: SseParser::default(),
            ready: VecDeque::new(),
        }
    }

    /// The next event; `None` when the server ended the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let chunk = tokio::time::timeout(DEADLINE, self.response.chunk())
                .await
                .expect("an event or the stream's end before the deadline")
                .expect("the stream reads");
            let mut events = Vec::new();
            self.parser.feed(&chunk?, &mut events);
            self.ready.extend(events);
        }
    }

    /// The next `n` events, as the page shows them, checking the framing:
    /// `id` is the seq and `event` the kind.
    async fn take(&mut self, n: usize) -> Vec<Value> {
        let mut taken = Vec::new();
        while taken.len() < n {
            let event = self.next().await.expect("the stream goes on");
            let view: Value = serde_json::from_str(&event.data).expect("data is JSON");
            assert_eq!(event.id, Some(view["seq"].to_string()), "{event:?}");
            assert_eq!(event.event.as_deref(), view["kind"].as_str(), "{event:?}");
            taken.push(view);
        }
        taken
    }
}

#[tokio::test]
async fn the_whole_log_is_paged_oldest_first_and_filtered_by_rollout_and_kind() {
    let app = spawn_app().await;
    assert!(page(&app, "", &app.admin).await.is_empty());
    let (one, two) = some_history(&app).await;

    let all = page(&app, "", &app.admin).await;
    // What the engine adds for the freeze (pending rollouts held) aside.
    let history: Vec<&Value> = all
        .iter()
        .filter(|event| event["kind"] != "held" && event["kind"] != "released")
        .collect();
    let history_kinds: Vec<&str> = history
        .iter()
        .map(|event| event["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        history_kinds,
        [
            "hosts_imported",
            "created",
            "freeze_on",
            "created",
            "freeze_off"
        ]
    );
    let increasing = seqs(&all).windows(2).all(|pair| pair[0] < pair[1]);
    assert!(increasing, "{:?}", seqs(&all));
    assert_eq!(history[1]["rollout"], one.as_str());
    assert_eq!(history[3]["rollout"], two.as_str());
    let freeze = history[2];
    assert!(freeze.get("rollout").is_none(), "fleet-wide: {freeze}");
    assert!(freeze["actor"].is_string(), "{freeze}");
    assert_eq!(freeze["data"]["reason"], "CHG-1: holiday", "{freeze}");

    // Without `after`: the newest `limit`, oldest first.
    assert_eq!(
        page(&app, "?limit=2", &app.admin).await,
        all[all.len() - 2..]
    );
    // Paged with `after` = the last seq read, every event once.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let next = page(&app, &format!("?after={after}&limit=2"), &app.admin).await;
        let Some(last) = next.last() else { break };
        after = last["seq"].as_i64().expect("seq");
        paged.extend(next);
    }
    assert_eq!(paged, all);

    // A rollout's events are its own timeline's.
    let of_one = page(&app, &format!("?rollout={one}"), &app.admin).await;
    let timeline = app.events(&one).await;
    assert_eq!(seqs(&of_one), seqs(&timeline));
    assert_eq!(kinds(&of_one)[0], "created");
    let fleet_wide = page(&app, "?kind=freeze_on,freeze_off", &app.admin).await;
    assert_eq!(kinds(&fleet_wide), ["freeze_on", "freeze_off"]);
    let both = page(
        &app,
        &format!("?kind=created&rollout={two}&after=0"),
        &app.admin,
    )
    .await;
    assert_eq!(both, [history[3].clone()]);
    assert!(page(&app, "?rollout=r-99", &app.admin).await.is_empty());
}

#[tokio::test]
async fn invalid_parameters_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let refused = |query: &'static str| {
        let app = &app;
        async move {
            let response = app.get(&format!("/v1/events{query}"), &app.admin).await;
            assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await
        }
    };
    let body = refused("?kind=stage_started,halted").await;
    assert_eq!(body["error"]["field"], "kind");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("\"halted\""), "{message}");
    assert!(
        message.contains("stage_started") && message.contains("freeze_on"),
        "the valid kinds are listed: {message}"
    );
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=10001", "limit"),
        ("?after=-1", "after"),
        ("?rollout=", "rollout"),
        ("?follow=true&limit=10", "limit"),
    ] {
        let body = refused(query).await;
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    let response = app
        .client
        .get(app.url("/v1/events?follow=true"))
        .bearer_auth(&app.admin)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .expect("request sent");
    let body = assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(body["error"]["field"], "Last-Event-ID");
}

#[tokio::test]
async fn viewers_read_the_log_and_agents_may_not() {
    let app = spawn_app().await;
    some_history(&app).await;
    let viewer = app.token("viewer", None).await;
    let agent = app.token("agent", Some("h0.example.net")).await;
    let read = page(&app, "", &viewer).await;
    assert_eq!(read, page(&app, "", &app.admin).await);
    assert_eq!(
        kinds(&read)[read.len() - 2..],
        ["token_created", "token_created"]
    );
    for query in ["", "?follow=true"] {
        let response = app.get(&format!("/v1/events{query}"), &agent).await;
        assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
        let response = app
            .client
            .get(app.url(&format!("/v1/events{query}")))
            .send()
            .await
            .expect("request sent");
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

#[tokio::test]
async fn a_stream_sends_new_events_and_resumes_exactly_after_last_event_id() {
    let app = spawn_app().await;
    let (one, _) = some_history(&app).await;
    let before = page(&app, "", &app.admin).await;

    // Without a starting point, only what is written from now on.
    let mut live = Stream::open(&app, "", None).await;
    let mut paused = Stream::open(&app, "&kind=paused,resumed", None).await;
    assert_eq!(
        app.action(&one, "start", "CHG-2: go").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.action(&one, "pause", "looks odd").await.status(),
        StatusCode::OK
    );
    let all = page(&app, "", &app.admin).await;
    let new = &all[before.len()..];
    assert!(kinds(new).starts_with(&["started"]), "{:?}", kinds(new));
    assert_eq!(live.take(new.len()).await, new);
    let only = paused.take(1).await;
    assert_eq!(kinds(&only), ["paused"]);
    assert_eq!(only[0]["rollout"], one.as_str());

    // After a given event: the very next one, whatever `after` says.
    let from = before[1]["seq"].as_i64().expect("seq");
    let mut resumed = Stream::open(&app, "&after=0", Some(from)).await;
    assert_eq!(resumed.take(all.len() - 2).await, all[2..]);
    let mut after = Stream::open(&app, &format!("&after={from}"), None).await;
    assert_eq!(after.take(1).await, all[2..3]);
}

#[tokio::test]
async fn streams_are_bounded_per_server_and_end_when_it_shuts_down() {
    let app = spawn_app_configured(
        Arc::new(TempDir::new().expect("temp dir")),
        None,
        |config| config.event_streams = 2,
    )
    .await;
    let mut first = Stream::open(&app, "", None).await;
    let second = Stream::open(&app, "&after=0", None).await;
    let response = app.get("/v1/events?follow=true", &app.admin).await;
    assert!(retry_after(&response).is_some_and(|seconds| seconds > 0));
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    // Pages are not streams: still answered.
    page(&app, "", &app.admin).await;
    // A client that goes away gives its place back (the answer admitted
    // here is dropped at once, and gives it back too).
    drop(second);
    wait_for("a stream's place to be given back", DEADLINE, || async {
        let response = app.get("/v1/events?follow=true&after=0", &app.admin).await;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;

    // A graceful shutdown ends the streams instead of waiting for them.
    let stopped = tokio::task::spawn_blocking(move || app.stop());
    assert_eq!(first.next().await, None, "the stream ended cleanly");
    tokio::time::timeout(DEADLINE, stopped)
        .await
        .expect("the server stops with streams open")
        .expect("the stopping thread");
}

#[tokio::test]
async fn a_stream_ends_once_its_token_is_revoked() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/tokens",
            &app.admin,
            &json!({"role": "viewer", "name": "reader", "reason": "a test's reader"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let secret = created["token"].as_str().expect("token").to_owned();
    let mut stream = Stream::open_as(&app, &secret, "", None).await;
    let freeze = |on: bool, reason: &str| {
        let request = if on {
            app.client.put(app.url("/v1/freeze"))
        } else {
            app.client.delete(app.url("/v1/freeze"))
        };
        request
            .bearer_auth(&app.admin)
            .json(&json!({ "reason": reason }))
            .send()
    };
    assert_eq!(
        freeze(true, "CHG-9").await.expect("sent").status(),
        StatusCode::OK
    );
    assert_eq!(kinds(&stream.take(1).await), ["freeze_on"]);

    let revoked = app
        .client
        .delete(app.url("/v1/tokens/reader"))
        .bearer_auth(&app.admin)
        .json(&json!({"reason": "left the team"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(revoked.status(), StatusCode::OK);
    // What is written after the revocation is not the stream's to send.
    assert_eq!(
        freeze(false, "CHG-9 done").await.expect("sent").status(),
        StatusCode::OK
    );
    // The stream ends; the revocation's own event may still reach it (it
    // is written by the revocation, before memory lets the token go).
    let mut sent = Vec::new();
    while let Some(event) = stream.next().await {
        sent.push(event.event);
    }
    assert!(
        sent.iter()
            .all(|kind| kind.as_deref() == Some("token_revoked")),
        "sent after the revocation: {sent:?}"
    );
    let again = app.get("/v1/events?follow=true", &secret).await;
    assert_error(again, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
