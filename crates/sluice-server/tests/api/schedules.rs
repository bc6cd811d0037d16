//! Schedules and the queue: `POST /v1/rollouts?start_at=T` and a plan's
//! `after: NAME` make a pending rollout that starts by itself; what it
//! waits for shows in `GET /v1/rollouts` and `GET /v1/rollouts/{id}`.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use sluice_store::testing::TempPgDatabase;
use sluice_testkit::Stage;
use tempfile::TempDir;

use crate::dashboard::Browser;
use crate::helpers::{
    agents_round, assert_error, fleet, plan, spawn_app, spawn_app_in, spawn_app_on, start,
    wait_for, TestApp, DEADLINE,
};

/// RFC 3339, `seconds` from now (at least; in whole seconds).
fn in_seconds(seconds: i64) -> String {
    let at = Timestamp::now() + SignedDuration::from_secs(seconds + 1);
    Timestamp::from_second(at.as_second())
        .expect("a time")
        .to_string()
}

/// `POST /v1/rollouts?start_at=…` of `plan`.
async fn create_at(app: &TestApp, plan: impl std::fmt::Display, start_at: &str) -> Response {
    let query = start_at.replace('+', "%2B").replace(' ', "%20");
    app.client
        .post(app.url(&format!("/v1/rollouts?start_at={query}")))
        .bearer_auth(&app.admin)
        .header("content-type", "application/yaml")
        .body(plan.to_string())
        .send()
        .await
        .expect("request sent")
}

async fn created_id(response: Response) -> String {
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("json");
    created["id"].as_str().expect("id").to_owned()
}

async fn wait_for_field(app: &TestApp, id: &str, field: &str, wanted: &str) -> Value {
    wait_for(&format!("{id} {field} {wanted}"), DEADLINE, || async {
        let detail = app.detail(id).await;
        detail[field]
            .as_str()
            .is_some_and(|value| value.contains(wanted))
            .then_some(detail)
    })
    .await
}

#[tokio::test]
async fn a_rollout_scheduled_ahead_starts_by_itself_and_says_why() {
    let app = spawn_app().await;
    app.import(&fleet(4)).await;
    // Far enough ahead that what follows runs before it.
    let at = in_seconds(4);
    let id = created_id(create_at(&app, plan("later", [Stage::percent(100)]), &at).await).await;

    let detail = app.detail(&id).await;
    assert_eq!(detail["state"], "pending", "{detail}");
    let start_at: Timestamp = detail["start_at"]
        .as_str()
        .and_then(|at| at.parse().ok())
        .expect("start_at");
    assert_eq!(start_at, at.parse::<Timestamp>().expect("time"));
    assert!(
        detail["queued"]
            .as_str()
            .is_some_and(|queued| queued.starts_with("starts at ")),
        "{detail}"
    );
    assert_eq!(detail["queue_position"], 1);
    let list = app.json("/v1/rollouts").await;
    assert_eq!(list["rollouts"][0]["queued"], detail["queued"]);
    let browser = Browser::signed_in(&app, &app.token("viewer", None).await).await;
    let page = browser
        .fetch(&format!("/rollouts/{id}"))
        .await
        .expect("the page");
    assert!(page.contains("id=\"queued\""), "{page}");
    assert!(page.contains("#1 of docker-engine"), "{page}");

    wait_for("the scheduled start", DEADLINE, || async {
        (app.detail(&id).await["state"] == "running").then_some(())
    })
    .await;
    let detail = app.detail(&id).await;
    assert!(detail.get("queued").is_none(), "{detail}");
    assert!(detail.get("queue_position").is_none(), "{detail}");
    let events = app.events(&id).await;
    let started = events
        .iter()
        .find(|event| event["kind"] == "started")
        .expect("a started event");
    assert!(started["actor"].is_null(), "sluice started it: {started}");
    let reason = started["data"]["reason"].as_str().expect("reason");
    assert!(reason.starts_with("scheduled for "), "{reason}");
    let at: Timestamp = started["at"].as_str().expect("at").parse().expect("time");
    assert!(at >= start_at, "started at {at}, scheduled for {start_at}");

    let audit = app.json("/v1/audit?kind=rollout_created").await;
    assert_eq!(audit["entries"][0]["data"]["start_at"], detail["start_at"]);
}

#[tokio::test]
async fn a_start_time_must_be_a_time_in_the_future() {
    let app = spawn_app().await;
    let past = create_at(&app, plan("past", [Stage::percent(100)]), &in_seconds(-60)).await;
    let error = assert_error(past, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(error["error"]["field"], "start_at", "{error}");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.contains("not in the future"), "{message}");
    assert!(message.contains(" now"), "{message}");

    let garbage = create_at(&app, plan("garbage", [Stage::percent(100)]), "tomorrow").await;
    let error = assert_error(garbage, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(error["error"]["field"], "start_at", "{error}");
    let no_offset = create_at(
        &app,
        plan("local", [Stage::percent(100)]),
        "2099-01-01T09:00:00",
    )
    .await;
    assert_error(no_offset, StatusCode::BAD_REQUEST, "bad_request").await;

    // An unencoded `+` arrives as a space, and is read as `+`.
    let response = app
        .client
        .post(app.url("/v1/rollouts?start_at=2099-01-01T09:00:00+01:00"))
        .bearer_auth(&app.admin)
        .body(plan("plus", [Stage::percent(100)]).to_string())
        .send()
        .await
        .expect("sent");
    let id = created_id(response).await;
    assert_eq!(
        app.detail(&id).await["start_at"],
        "2099-01-01T08:00:00.000000Z"
    );
    let list = app.json("/v1/rollouts").await;
    assert_eq!(list["rollouts"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_scheduled_rollout_starts_earlier_by_hand_or_is_cancelled_by_an_abort() {
    let app = spawn_app().await;
    app.import(&fleet(4)).await;
    let far = in_seconds(3600);
    let early = created_id(create_at(&app, plan("early", [Stage::percent(100)]), &far).await).await;
    let response = app.action(&early, "start", "ready sooner").await;
    assert_eq!(response.status(), StatusCode::OK);
    let detail = app.detail(&early).await;
    assert_eq!(detail["state"], "running");
    assert!(detail.get("queued").is_none(), "{detail}");
    agents_round(&app, 4).await;
    app.wait_for_state(&early, "completed").await;

    let cancelled =
        created_id(create_at(&app, plan("cancelled", [Stage::percent(100)]), &far).await).await;
    let response = app.action(&cancelled, "abort", "not needed").await;
    assert_eq!(response.status(), StatusCode::OK);
    let detail = app.detail(&cancelled).await;
    assert_eq!(detail["state"], "aborted");
    assert!(detail.get("queued").is_none(), "{detail}");
}

#[tokio::test]
async fn a_due_rollout_queues_behind_the_owner_of_its_hosts() {
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let owner = start(&app, plan("owner", [Stage::percent(100)])).await;
    // A plan started by hand may not overlap it; a scheduled one queues.
    let refused = app.create_rollout(plan("now", [Stage::percent(100)])).await;
    assert_error(refused, StatusCode::CONFLICT, "conflict").await;
    let queued =
        created_id(create_at(&app, plan("queued", [Stage::percent(100)]), &in_seconds(1)).await)
            .await;
    let detail = wait_for_field(&app, &queued, "queued", "behind r-1 (owner)").await;
    assert_eq!(detail["state"], "pending");

    let response = app.action(&queued, "start", "now please").await;
    let error = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.contains(&format!("rollout {owner}")), "{message}");

    assert_eq!(
        app.action(&owner, "abort", "make room").await.status(),
        StatusCode::OK
    );
    app.wait_for_state(&queued, "running").await;
}

#[tokio::test]
async fn after_starts_a_chain_in_order_and_a_rollback_blocks_the_rest() {
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let a = start(&app, plan("a", [Stage::percent(100)])).await;
    // b after a, c after b: both queue behind a, of the same component.
    let b = app
        .rollout(plan("b", [Stage::percent(100)]).after("a"))
        .await;
    let c = app
        .rollout(plan("c", [Stage::percent(100)]).after("b"))
        .await;
    let detail = app.detail(&b).await;
    assert_eq!(detail["after"], "a");
    assert_eq!(detail["queued"], format!("after a ({a}, running)"));
    assert_eq!(detail["queue_position"], 1);
    let detail = app.detail(&c).await;
    assert_eq!(detail["queued"], format!("after b ({b}, pending)"));
    assert_eq!(detail["queue_position"], 2);

    agents_round(&app, 2).await;
    app.wait_for_state(&a, "completed").await;
    app.wait_for_state(&b, "running").await;
    let started = app
        .events(&b)
        .await
        .into_iter()
        .find(|event| event["kind"] == "started")
        .expect("started");
    assert!(started["actor"].is_null(), "{started}");
    assert_eq!(
        started["data"]["reason"],
        format!("after a ({a}) completed")
    );
    assert_eq!(app.detail(&c).await["queue_position"], 1);

    assert_eq!(
        app.action(&b, "rollback", "bad change").await.status(),
        StatusCode::OK
    );
    let detail = wait_for_field(&app, &c, "blocked", "which was rolled back").await;
    assert_eq!(
        detail["blocked"],
        format!("after b ({b}), which was rolled back")
    );
    assert_eq!(detail["state"], "pending");
    assert!(detail.get("queued").is_none(), "{detail}");
    let list = app.json("/v1/rollouts").await;
    let listed = list["rollouts"]
        .as_array()
        .and_then(|all| all.iter().find(|rollout| rollout["id"] == c.as_str()))
        .expect("listed");
    assert_eq!(listed["blocked"], detail["blocked"]);

    // The dashboard: the overview's queue, the list, the rollout's page.
    let browser = Browser::signed_in(&app, &app.token("viewer", None).await).await;
    let why = format!("blocked: after b ({b}), which was rolled back");
    let overview = browser.fetch("/").await.expect("the overview");
    assert!(overview.contains("id=\"queue\""), "{overview}");
    assert!(overview.contains(&why), "{overview}");
    let list = browser.fetch("/rollouts").await.expect("the list");
    assert!(list.contains(&why), "{list}");
    let page = browser
        .fetch(&format!("/rollouts/{c}"))
        .await
        .expect("the page");
    assert!(page.contains("id=\"blocked\""), "{page}");

    // A plan after a rolled-back rollout would never start: refused.
    let refused = app
        .create_rollout(plan("d", [Stage::percent(100)]).after("b"))
        .await;
    let error = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_plan").await;
    assert_eq!(error["error"]["field"], "after at 4:8", "{error}");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.contains("was rolled back"), "{message}");

    // An operator may still start it by hand.
    assert_eq!(
        app.action(&c, "start", "b's fix is in c").await.status(),
        StatusCode::OK
    );
    assert_eq!(app.detail(&c).await["state"], "running");
}

#[tokio::test]
async fn after_must_name_an_existing_rollout_other_than_itself() {
    let app = spawn_app().await;
    let missing = app
        .create_rollout(plan("x", [Stage::percent(100)]).after("nobody"))
        .await;
    let error = assert_error(missing, StatusCode::UNPROCESSABLE_ENTITY, "invalid_plan").await;
    assert_eq!(error["error"]["field"], "after at 4:8", "{error}");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("no rollout is named \"nobody\""),
        "{message}"
    );

    let itself = app
        .create_rollout(plan("x", [Stage::percent(100)]).after("x"))
        .await;
    let error = assert_error(itself, StatusCode::UNPROCESSABLE_ENTITY, "invalid_plan").await;
    assert_eq!(error["error"]["field"], "after at 4:8", "{error}");
    let list = app.json("/v1/rollouts").await;
    assert_eq!(list["rollouts"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn a_schedule_survives_a_crash_and_a_freeze_holds_it_once_started() {
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let id =
        created_id(create_at(&app, plan("durable", [Stage::percent(100)]), &in_seconds(5)).await)
            .await;
    assert_eq!(app.freeze("change freeze").await.status(), StatusCode::OK);
    assert_eq!(app.detail(&id).await["state"], "pending");
    let dir = app.crash();
    let app = spawn_app_in(dir).await;
    let detail = app.wait_for_state(&id, "running").await;
    assert!(
        detail["held"]
            .as_str()
            .is_some_and(|held| held.contains("frozen")),
        "{detail}"
    );
    assert_eq!(detail["admitted"], 0, "{detail}");
}

#[tokio::test]
async fn on_postgresql_a_schedule_and_an_after_survive_a_crash() {
    let db = TempPgDatabase::create().await;
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let app = spawn_app_on(Arc::clone(&data_dir), Some(db.url())).await;
    app.import(&fleet(2)).await;
    let first = app.rollout(plan("first", [Stage::percent(100)])).await;
    let timed = created_id(
        create_at(
            &app,
            plan("timed", [Stage::percent(100)]).after("first"),
            &in_seconds(2),
        )
        .await,
    )
    .await;
    let data_dir = app.crash();

    // Another process on the same database (a new leader) carries both on.
    let app = spawn_app_on(data_dir, Some(db.url())).await;
    let detail = app.detail(&timed).await;
    assert_eq!(detail["after"], "first");
    assert!(detail["start_at"].is_string(), "{detail}");
    assert_eq!(
        app.action(&first, "start", "go").await.status(),
        StatusCode::OK
    );
    agents_round(&app, 2).await;
    app.wait_for_state(&first, "completed").await;
    app.wait_for_state(&timed, "running").await;
    let started = app
        .events(&timed)
        .await
        .into_iter()
        .find(|event| event["kind"] == "started")
        .expect("started");
    let reason = started["data"]["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("scheduled for ")
            && reason.ends_with(&format!("after first ({first}) completed")),
        "{reason}"
    );
}
