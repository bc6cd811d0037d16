//! Rollouts: create, list, detail, actions, events, and their errors.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_testkit::Stage;

use crate::helpers::{assert_error, fleet, plan, spawn_app};

#[tokio::test]
async fn create_list_and_detail() {
    let app = spawn_app().await;
    assert_eq!(app.import(&fleet(10)).await.status(), StatusCode::OK);
    let source = plan("first", [Stage::percent(10), Stage::percent(100)]).to_string();
    let id = app.rollout(&source).await;
    assert_eq!(id, "r-1");

    let list: Value = app.json("/v1/rollouts").await;
    assert_eq!(list["rollouts"][0]["id"], "r-1");
    assert_eq!(list["rollouts"][0]["state"], "pending");
    assert_eq!(list["rollouts"][0]["selected"], 10);

    let detail = app.detail(&id).await;
    assert_eq!(detail["name"], "first");
    assert_eq!(detail["component"], "docker-engine");
    assert_eq!(detail["plan"], source.as_str());
    assert_eq!(detail["hosts"]["waiting"], 10);
    assert_eq!(detail["stages"][0]["quota"], 1);
    assert_eq!(detail["stages"][1]["quota"], 10);
    assert_eq!(detail["strata"][0]["key"], "(all)");

    let json_plan = json!({"name": "second", "component": "kernel", "version": "6.1", "stages": [{"percent": 100}]});
    let response = app
        .client
        .post(app.url("/v1/rollouts"))
        .bearer_auth(&app.admin)
        .json(&json_plan)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::CREATED, "a JSON plan");

    let missing = app.get("/v1/rollouts/r-99", &app.admin).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn an_invalid_plan_is_422_with_the_first_field_and_every_problem() {
    let app = spawn_app().await;
    let source = "name: bad\ncomponent: docker-engine\nversion: \"2\"\nstages:\n  - { percent: 150 }\nmax_in_flight: lots\n";
    let response = app.create_rollout(source).await;
    let error = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_plan").await;
    assert_eq!(
        error["error"]["field"], "stages[0].percent at 5:16",
        "{error}"
    );
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.starts_with("the plan has "), "{message}");
    assert!(message.contains("max_in_flight"), "{message}");
}

#[tokio::test]
async fn names_are_unique_and_overlapping_rollouts_conflict() {
    let app = spawn_app().await;
    assert_eq!(app.import(&fleet(4)).await.status(), StatusCode::OK);
    let first = app.rollout(&plan("one", [Stage::percent(100)])).await;

    let again = app
        .create_rollout(&plan("one", [Stage::percent(100)]))
        .await;
    let error = assert_error(again, StatusCode::CONFLICT, "conflict").await;
    assert!(error["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains(&first)));

    let overlap = app
        .create_rollout(plan("two", [Stage::percent(100)]).selector("role=web"))
        .await;
    let error = assert_error(overlap, StatusCode::CONFLICT, "conflict").await;
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.contains("rollout r-1"), "{message}");

    // Once the first is over, the component is free again.
    assert_eq!(
        app.action(&first, "abort", "wrong plan").await.status(),
        StatusCode::OK
    );
    let response = app
        .create_rollout(&plan("three", [Stage::percent(100)]))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn actions_need_a_reason_and_a_state_they_apply_to() {
    let app = spawn_app().await;
    assert_eq!(app.import(&fleet(4)).await.status(), StatusCode::OK);
    let id = app
        .rollout(&plan(
            "acts",
            [Stage::percent(50).approve(), Stage::percent(100)],
        ))
        .await;

    let empty = app.action(&id, "start", "  ").await;
    let error = assert_error(empty, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(error["error"]["field"], "reason");

    let early = app.action(&id, "resume", "why not").await;
    let error = assert_error(early, StatusCode::CONFLICT, "conflict").await;
    assert!(error["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("pending")));

    let started = app.action(&id, "start", "change 42").await;
    assert_eq!(started.status(), StatusCode::OK);
    let summary: Value = started.json().await.expect("json");
    assert_eq!(summary["state"], "running");
    assert_eq!(summary["admitted"], 2);

    let paused: Value = app
        .action(&id, "pause", "lunch")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(paused["state"], "paused");
    assert_eq!(app.detail(&id).await["reason"], "lunch");
    let resumed: Value = app
        .action(&id, "resume", "back")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(resumed["state"], "running");

    let unknown = app.action("r-99", "pause", "x").await;
    assert_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
    let no_body = app
        .client
        .post(app.url(&format!("/v1/rollouts/{id}/pause")))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("sent");
    assert_error(no_body, StatusCode::BAD_REQUEST, "bad_request").await;

    let aborted: Value = app
        .action(&id, "abort", "enough")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(aborted["state"], "aborted");
}

#[tokio::test]
async fn events_are_the_timeline_with_actors() {
    let app = spawn_app().await;
    assert_eq!(app.import(&fleet(2)).await.status(), StatusCode::OK);
    let id = app
        .rollout(&plan(
            "timeline",
            [Stage::percent(50).approve(), Stage::percent(100)],
        ))
        .await;
    app.action(&id, "start", "change 42").await;
    app.action(&id, "pause", "looking").await;

    let events = app.events(&id).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["created", "started", "stage_started", "paused"]);
    let started = &events[1];
    assert_eq!(started["actor"], "admin");
    assert_eq!(started["data"]["reason"], "change 42");

    let after = started["seq"].as_i64().expect("seq");
    let page: Value = app
        .get(
            &format!("/v1/rollouts/{id}/events?after={after}&limit=1"),
            &app.admin,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["events"][0]["kind"], "stage_started");

    let bad = app
        .get(&format!("/v1/rollouts/{id}/events?limit=lots"), &app.admin)
        .await;
    assert_error(bad, StatusCode::BAD_REQUEST, "bad_request").await;
    let missing = app.get("/v1/rollouts/r-9/events", &app.admin).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}
