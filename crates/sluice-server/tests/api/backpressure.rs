//! Back-pressure: past the bound of check-ins waiting to become durable,
//! a check-in is answered 429 with `Retry-After`, and every check-in
//! acknowledged is durable all the same.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_store::Write;
use sluice_testkit::app::spawn_app_configured;
use sluice_testkit::store::{Hooked, Pass};
use tempfile::TempDir;
use tokio::sync::Mutex;

use crate::helpers::{
    assert_error, host, metrics, retry_after, spawn_app_in, wait_for, TestApp, DEADLINE,
};

fn checkin(i: usize) -> Value {
    json!({"host": host(i), "labels": {"role": "web"},
           "components": {"docker-engine": {"version": "1.0", "state": "ok"}}})
}

/// Waits until `/metrics` shows `line`.
async fn metric(app: &TestApp, line: &str) {
    wait_for(line, DEADLINE, || async {
        let text = metrics(app).await;
        text.lines().any(|l| l == line).then_some(())
    })
    .await;
}

/// A server `configure`d on the real SQLite store, whose commits wait
/// while the test holds the mutex returned beside it.
async fn held_app(
    configure: impl FnOnce(&mut sluice_server::Config),
) -> (Arc<TestApp>, Arc<Mutex<()>>) {
    let hold = Arc::new(Mutex::new(()));
    let held = Arc::clone(&hold);
    let app = spawn_app_configured(
        Arc::new(TempDir::new().expect("temp dir")),
        Some(Box::new(move |store| {
            Arc::new(Hooked::new(store, move |_: &[Write]| -> Pass {
                let hold = Arc::clone(&held);
                Box::pin(async move {
                    drop(hold.lock().await);
                    Ok(())
                })
            }))
        })),
        configure,
    )
    .await;
    (Arc::new(app), hold)
}

#[tokio::test]
async fn past_the_queue_bound_checkins_are_refused_with_retry_after_and_acknowledged_ones_are_durable(
) {
    let (app, hold) = held_app(|config| {
        config.checkin_queue = 4;
        // The count alone: the held commits stall the queue.
        config.checkin_wait = None;
    })
    .await;

    // The store's commits are held: four check-ins wait to become durable.
    let guard = Arc::clone(&hold).lock_owned().await;
    let waiting: Vec<_> = (0..4)
        .map(|i| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { app.checkin_as(&app.admin, &checkin(i)).await.status() })
        })
        .collect();
    metric(&app, "sluice_checkin_queue 4").await;

    let refused = app.checkin_as(&app.admin, &checkin(4)).await;
    let retry_after = retry_after(&refused);
    assert_eq!(retry_after, Some(5), "a few seconds, within the interval");
    let body = assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--checkin-queue")),
        "{body}"
    );
    metric(&app, "sluice_checkins_rejected_total 1").await;

    drop(guard);
    for task in waiting {
        assert_eq!(task.await.expect("task"), StatusCode::OK);
    }
    metric(&app, "sluice_checkin_queue 0").await;
    // Room again: the refused host checks in when it comes back.
    let again = app.checkin_as(&app.admin, &checkin(5)).await;
    assert_eq!(again.status(), StatusCode::OK);

    // Every acknowledged check-in survives a crash; the refused one left
    // nothing behind.
    let app = Arc::into_inner(app).expect("one owner");
    let app = spawn_app_in(app.crash()).await;
    let hosts: Value = app.json("/v1/hosts").await;
    let mut ids: Vec<&str> = hosts["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|host| host["id"].as_str())
        .collect();
    ids.sort_unstable();
    let expected: Vec<String> = [0, 1, 2, 3, 5].into_iter().map(host).collect();
    assert_eq!(ids, expected);
}

/// The bound in time of the stalled store's test.
const WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// A store that stalls: once no check-in was answered for the wait, new
/// ones are refused at once, naming `--checkin-wait-ms`, however few wait;
/// the stalled one is answered when the store comes back, and check-ins
/// are admitted again once the wait after its late answer is over.
#[tokio::test]
async fn a_stalled_store_sheds_check_ins_after_the_wait_and_recovers() {
    let (app, hold) = held_app(|config| {
        config.checkin_queue = 512;
        config.checkin_wait = Some(WAIT);
    })
    .await;

    let guard = Arc::clone(&hold).lock_owned().await;
    let stalled = {
        let app = Arc::clone(&app);
        tokio::spawn(async move { app.checkin_as(&app.admin, &checkin(0)).await.status() })
    };
    metric(&app, "sluice_checkin_queue 1").await;
    // One check-in waits; once nothing was answered for the wait, the
    // next ones are shed. (A check-in sent earlier would be admitted and
    // wait for the held commit: the test lets the wait pass first, a lower
    // bound, not a guess.)
    tokio::time::sleep(WAIT * 2).await;
    let refused = app.checkin_as(&app.admin, &checkin(1)).await;
    assert_eq!(retry_after(&refused), Some(5));
    let body = assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--checkin-wait-ms")),
        "{body}"
    );
    metric(&app, "sluice_checkin_queue 1").await;

    drop(guard);
    assert_eq!(stalled.await.expect("task"), StatusCode::OK);
    let again = wait_for("check-ins admitted again", DEADLINE, || async {
        let answer = app.checkin_as(&app.admin, &checkin(2)).await;
        (answer.status() == StatusCode::OK).then_some(())
    })
    .await;
    let () = again;

    let app = Arc::into_inner(app).expect("one owner");
    let app = spawn_app_in(app.crash()).await;
    let hosts: Value = app.json("/v1/hosts").await;
    let ids: Vec<&str> = hosts["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|host| host["id"].as_str())
        .collect();
    assert!(
        ids.contains(&host(0).as_str()) && ids.contains(&host(2).as_str()),
        "{ids:?}"
    );
}

#[tokio::test]
async fn each_token_has_its_own_rate_and_check_ins_are_not_counted() {
    let app = spawn_app_configured(
        Arc::new(TempDir::new().expect("temp dir")),
        None,
        |config| config.api_rate = 1,
    )
    .await;
    let viewer = app.token("viewer", None).await;

    // One request a second, in bursts of two: a loop soon goes past it.
    let mut refused = None;
    for _ in 0..50 {
        let response = app.get("/v1/rollouts", &viewer).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = refused.expect("the viewer token went past its rate");
    let wait = retry_after(&refused);
    assert!(wait.is_some_and(|s| s >= 1), "{wait:?}");
    let body = assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--api-rate") && m.contains("1 requests a second")),
        "{body}"
    );

    // Check-ins are not counted against a token's rate (the check-in queue
    // bounds them), nor are the ops endpoints without a token.
    for i in 0..10 {
        let response = app.checkin_as(&app.admin, &checkin(i)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    for _ in 0..10 {
        metrics(&app).await;
    }
    // Another token has its own rate: the admin's, spent by one request
    // (the viewer's creation), has room left.
    let response = app.get("/v1/rollouts", &app.admin).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The endpoints every replica answers itself, with a token, are
    // counted too (on the leader, in the same count as the API's).
    // (The admin token is spent now: a second viewer is made after a second.)
    let reader = wait_for("the admin token's rate to have room", DEADLINE, || async {
        let response = app
            .post(
                "/v1/tokens",
                &app.admin,
                &json!({"role": "viewer", "reason": "a second reader"}),
            )
            .await;
        (response.status() == StatusCode::CREATED).then_some(response)
    })
    .await;
    let reader: Value = reader.json().await.expect("json");
    let reader = reader["token"].as_str().expect("a token").to_owned();
    for path in ["/v1/events?limit=1", "/v1/cluster"] {
        let mut refused = None;
        for _ in 0..50 {
            let response = app.get(path, &reader).await;
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                refused = Some(response);
                break;
            }
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
        let refused = refused.unwrap_or_else(|| panic!("{path} went past the rate"));
        assert!(retry_after(&refused).is_some_and(|s| s >= 1), "{path}");
        assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    }
}

#[tokio::test]
async fn the_api_document_lists_the_429_answers() {
    let document = crate::openapi::document().await;
    let paths = &document["paths"];
    for (path, method) in [
        ("/v1/agent/checkin", "post"),
        ("/v1/rollouts", "get"),
        ("/v1/rollouts", "post"),
        ("/v1/tokens", "post"),
        ("/v1/events", "get"),
        ("/v1/cluster", "get"),
    ] {
        let answer = &paths[path][method]["responses"]["429"];
        assert!(
            answer["headers"]["Retry-After"].is_object(),
            "{path} {method}: {answer}"
        );
        assert_eq!(
            answer["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
    }
    for (path, method) in [("/healthz", "get"), ("/v1/agent/enroll", "post")] {
        assert!(
            paths[path][method]["responses"]["429"].is_null(),
            "{path} {method} is not limited"
        );
    }
}
