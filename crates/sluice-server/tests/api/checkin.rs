//! `POST /v1/agent/checkin`: the desired-version rules, token binding and
//! validation.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_testkit::{Amount, Stage};

use crate::helpers::{assert_error, desired, fleet, host, plan, report, spawn_app, TestApp};

#[tokio::test]
async fn while_nothing_is_decided_the_reported_version_is_desired() {
    let app = spawn_app().await;
    let answer = report(&app, "a.example.net", "1.12.6", "ok").await;
    assert_eq!(
        answer,
        json!({"components": {"docker-engine": {"version": "1.12.6"}}, "next_checkin_s": 60})
    );
}

/// Starts a rollout of 2.0 whose first stage admits 2 of 4 hosts and waits
/// for approval; returns its id and the admitted hosts.
async fn half_admitted(app: &TestApp) -> (String, Vec<String>) {
    assert_eq!(app.import(&fleet(4)).await.status(), StatusCode::OK);
    let id = app
        .rollout(&plan(
            "half",
            [Stage::percent(50).approve(), Stage::percent(100)],
        ))
        .await;
    assert_eq!(
        app.action(&id, "start", "test").await.status(),
        StatusCode::OK
    );
    let mut admitted = Vec::new();
    for i in 0..4 {
        let answer = report(app, &host(i), "1.0", "ok").await;
        match desired(&answer) {
            "2.0" => {
                assert_eq!(
                    answer["components"]["docker-engine"]["rollout"],
                    id.as_str()
                );
                assert_eq!(
                    answer["components"]["docker-engine"]["payload"]["url"],
                    "https://repo.example.net/docker-2.0.deb"
                );
                admitted.push(host(i));
            }
            "1.0" => assert!(answer["components"]["docker-engine"]
                .get("rollout")
                .is_none()),
            other => panic!("unexpected desired version {other:?}"),
        }
    }
    (id, admitted)
}

#[tokio::test]
async fn admitted_hosts_get_the_target_and_the_others_keep_their_version() {
    let app = spawn_app().await;
    let (_, admitted) = half_admitted(&app).await;
    assert_eq!(admitted.len(), 2, "50% of 4 hosts");
}

#[tokio::test]
async fn rolled_back_hosts_are_told_the_version_they_ran_before() {
    let app = spawn_app().await;
    let (id, admitted) = half_admitted(&app).await;
    for host in &admitted {
        assert_eq!(desired(&report(&app, host, "2.0", "ok").await), "2.0");
    }
    assert_eq!(
        app.action(&id, "rollback", "errors up").await.status(),
        StatusCode::OK
    );
    for host in &admitted {
        let answer = report(&app, host, "2.0", "ok").await;
        assert_eq!(desired(&answer), "1.0", "{host} goes back");
        assert_eq!(
            answer["components"]["docker-engine"]["rollout"],
            id.as_str()
        );
    }
}

#[tokio::test]
async fn a_rollout_that_covered_every_host_moves_the_stable_version() {
    let app = spawn_app().await;
    assert_eq!(app.import(&fleet(2)).await.status(), StatusCode::OK);
    let id = app.rollout(&plan("all", [Stage::percent(100)])).await;
    assert_eq!(
        app.action(&id, "start", "test").await.status(),
        StatusCode::OK
    );
    for i in 0..2 {
        assert_eq!(
            desired(&report(&app, &host(i), "1.0", "applying").await),
            "2.0"
        );
        report(&app, &host(i), "2.0", "ok").await;
    }
    app.wait_for_state(&id, "completed").await;
    // A host that appears only now is covered by the rollout's (empty)
    // selector, like every host.
    let answer = report(&app, "new.example.net", "0.9", "ok").await;
    assert_eq!(
        answer["components"]["docker-engine"],
        json!({"version": "2.0", "rollout": id, "payload": {"url": "https://repo.example.net/docker-2.0.deb"}})
    );
    let components: Value = app.json("/v1/components").await;
    assert_eq!(components["components"][0]["stable_version"], "2.0");
}

#[tokio::test]
async fn an_agent_token_checks_in_only_as_its_host() {
    let app = spawn_app().await;
    let token = app.token("agent", Some("a.example.net")).await;
    let body = |host: &str| json!({"host": host, "components": {}});
    let response = app.checkin_as(&token, &body("a.example.net")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app.checkin_as(&token, &body("b.example.net")).await;
    let error = assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(error["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("bound to host a.example.net")));
    let viewer = app.token("viewer", None).await;
    let response = app.checkin_as(&viewer, &body("a.example.net")).await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    // The agent may read its own desired versions, not another host's.
    let own = app.get("/v1/hosts/a.example.net/desired", &token).await;
    assert_eq!(own.status(), StatusCode::OK);
    let other = app.get("/v1/hosts/b.example.net/desired", &token).await;
    assert_error(other, StatusCode::FORBIDDEN, "forbidden").await;
    // And nothing else.
    let rollouts = app.get("/v1/rollouts", &token).await;
    assert_error(rollouts, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn invalid_checkins_are_rejected_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"components": {}}), Some("host")),
        (json!({"host": "a b"}), Some("host")),
        (json!({"host": "a", "extra": 1}), Some("extra")),
        (
            json!({"host": "a", "components": {"c": {"version": "1", "state": "weird"}}}),
            None,
        ),
        (
            json!({"host": "a", "components": {"c": {"version": "", "state": "ok"}}}),
            Some("components.c.version"),
        ),
    ];
    for (body, field) in cases {
        let response = app.checkin_as(&app.admin, &body).await;
        let error = assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await;
        if let Some(field) = field {
            assert_eq!(error["error"]["field"], field, "{body}");
        }
    }
    let malformed = app
        .client
        .post(app.url("/v1/agent/checkin"))
        .bearer_auth(&app.admin)
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_error(malformed, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn an_oversized_checkin_is_413() {
    let app = spawn_app().await;
    let message = "x".repeat(300 * 1024);
    let body = json!({"host": "a", "components": {"c": {"version": "1", "state": "failed", "message": message}}});
    let response = app.checkin_as(&app.admin, &body).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn a_healthy_host_reported_drifted_fails_in_its_rollout() {
    let app = spawn_app().await;
    app.import(&fleet(4)).await;
    let id = app
        .rollout(
            plan("drift", [Stage::percent(100).approve()])
                .max_in_flight(Amount::Percent(100))
                .max_failed(1),
        )
        .await;
    app.action(&id, "start", "go").await;
    for i in 0..4 {
        assert_eq!(desired(&report(&app, &host(i), "1.0", "ok").await), "2.0");
        report(&app, &host(i), "2.0", "ok").await;
    }
    assert_eq!(app.detail(&id).await["hosts"]["healthy"], 4);

    // Back at 1.0 by hand: the agent says it drifted, and is still told 2.0.
    let answer = app
        .checkin(
            &host(2),
            json!({"role": "web"}),
            json!({"docker-engine": {"version": "1.0", "state": "ok", "drifted": true}}),
        )
        .await;
    assert_eq!(desired(&answer), "2.0");
    let detail = app.detail(&id).await;
    assert_eq!(
        (&detail["hosts"]["healthy"], &detail["hosts"]["failed"]),
        (&json!(3), &json!(1))
    );
    assert_eq!(detail["state"], "running", "one failure is allowed");
    let failed: Vec<Value> = app
        .events(&id)
        .await
        .into_iter()
        .filter(|event| event["kind"] == "host_failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["host"], host(2));
    assert_eq!(
        failed[0]["data"]["reason"],
        "drifted: found at 1.0 after reporting healthy at 2.0, changed outside sluice"
    );

    // A report at 1.0 that does not say it drifted decides nothing.
    report(&app, &host(3), "1.0", "ok").await;
    assert_eq!(app.detail(&id).await["hosts"]["healthy"], 3);
}
