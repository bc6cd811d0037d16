//! What survives a restart: acknowledged check-ins (group commit), rollout
//! state without admitting beyond a quota, tokens.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};

use sluice_store::{SqliteStore, Store, StoreError, Write};
use sluice_testkit::store::{Hooked, Pass};
use sluice_testkit::{Plan, Stage};
use tempfile::TempDir;

use crate::helpers::{
    agents_round, assert_error, desired, fleet, host, plan, report, spawn_app, spawn_app_in,
    spawn_app_with, start, told_2, wait_for, TestApp, DEADLINE,
};

#[tokio::test]
async fn acknowledged_checkins_survive_a_crash() {
    let app = spawn_app().await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let app = Arc::clone(&app);
        tasks.push(tokio::spawn(async move {
            let body = json!({"host": host(i), "labels": {"role": "web"},
                              "components": {"docker-engine": {"version": format!("1.{i}"), "state": "ok"}}});
            app.checkin_as(&app.admin, &body).await.status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), StatusCode::OK);
    }
    let app = Arc::into_inner(app).expect("one owner");
    let data_dir = app.crash();

    let app = spawn_app_in(data_dir).await;
    let hosts: Value = app.json("/v1/hosts").await;
    assert_eq!(hosts["total"], 64);
    for i in 0..64 {
        let host: Value = app
            .get(&format!("/v1/hosts/{}", host(i)), &app.admin)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(
            host["components"]["docker-engine"]["version"],
            format!("1.{i}")
        );
        assert_eq!(host["components"]["docker-engine"]["state"], "ok");
    }
}

#[tokio::test]
async fn a_restarted_rollout_keeps_its_admissions_and_quota() {
    let app = spawn_app().await;
    app.import(&fleet(10)).await;
    let id = start(
        &app,
        plan(
            "restart",
            [Stage::percent(30).approve(), Stage::percent(100)],
        ),
    )
    .await;
    let admitted = told_2(&app, 10).await;
    assert_eq!(admitted.len(), 3);
    let data_dir = app.crash();

    let app = spawn_app_in(data_dir).await;
    let detail = app.detail(&id).await;
    assert_eq!(detail["state"], "running");
    assert_eq!(detail["admitted"], 3);
    for i in 0..10 {
        let expected = if admitted.contains(&i) { "2.0" } else { "1.0" };
        assert_eq!(
            desired(&report(&app, &host(i), "1.0", "ok").await),
            expected
        );
    }
    assert_eq!(
        app.detail(&id).await["admitted"],
        3,
        "no host beyond the quota"
    );

    // The admin token of the first start still works; no new one was written.
    let token = app.token("viewer", None).await;
    let data_dir = app.stop();
    let app = spawn_app_in(data_dir).await;
    assert_eq!(
        app.get("/v1/rollouts", &token).await.status(),
        StatusCode::OK
    );
}

/// The store keeps no record of a waiting host: a restart places waiting
/// hosts again from the inventory, except one relabelled while it waited,
/// whose record keeps the stratum it joined.
#[tokio::test]
async fn waiting_hosts_are_placed_again_and_a_relabelled_one_keeps_its_stratum() {
    let app = spawn_app().await;
    app.import(&fleet(10)).await;
    let source = plan(
        "placed",
        [Stage::percent(30).approve(), Stage::percent(100)],
    )
    .spread(&["role"]);
    let id = start(&app, source).await;
    let mut admitted = Vec::new();
    for i in 0..10 {
        if desired(&report(&app, &host(i), "1.0", "ok").await) == "2.0" {
            admitted.push(i);
        }
    }
    assert_eq!(admitted.len(), 3);
    // A waiting host turns into a database server: it stays in the stratum
    // it joined (role=web), where a stratum of its own would give it a
    // quota of one and admit it.
    let relabelled = (0..10)
        .find(|i| !admitted.contains(i))
        .expect("a waiting host");
    let engine = json!({"docker-engine": {"version": "1.0", "state": "ok"}});
    let answer = app
        .checkin(&host(relabelled), json!({"role": "db"}), engine)
        .await;
    assert_eq!(desired(&answer), "1.0");
    let data_dir = app.crash();

    let store = SqliteStore::open(data_dir.path()).await.expect("store");
    let records = store.load().await.expect("load").rollout_hosts;
    store.close().await;
    let mut stored: Vec<String> = records.into_iter().map(|r| r.host).collect();
    stored.sort();
    let mut expected: Vec<String> = admitted.iter().map(|&i| host(i)).collect();
    expected.push(host(relabelled));
    expected.sort();
    assert_eq!(
        stored, expected,
        "records of admitted hosts and the relabelled one"
    );

    let app = spawn_app_in(data_dir).await;
    let detail = app.detail(&id).await;
    assert_eq!(detail["admitted"], 3);
    let strata = detail["strata"].as_array().expect("strata");
    assert_eq!(strata.len(), 1, "{strata:?}");
    assert_eq!(strata[0]["size"], 10);
    assert_eq!(strata[0]["admitted"], 3);

    // The next stage admits every host, the placed ones included.
    async fn upgrade(app: &TestApp, i: usize, role: &str, version: &str) -> Value {
        let engine = json!({"docker-engine": {"version": version, "state": "ok"}});
        app.checkin(&host(i), json!({ "role": role }), engine).await
    }
    let role = |i: usize| if i == relabelled { "db" } else { "web" };
    for &i in &admitted {
        upgrade(&app, i, role(i), "2.0").await;
    }
    wait_for("stage 1 to await approval", DEADLINE, || async {
        (app.detail(&id).await["phase"] == "awaiting_approval").then_some(())
    })
    .await;
    app.action(&id, "approve", "next").await;
    // Each round checks in every host not told 2.0 yet; those told 2.0
    // report it at once, freeing their slot for the next.
    let mut upgraded = admitted.clone();
    for _round in 0..10 {
        for i in 0..10 {
            if !upgraded.contains(&i) && desired(&upgrade(&app, i, role(i), "1.0").await) == "2.0" {
                upgrade(&app, i, role(i), "2.0").await;
                upgraded.push(i);
            }
        }
    }
    upgraded.sort();
    assert_eq!(upgraded, (0..10).collect::<Vec<_>>());
    assert_eq!(app.wait_for_state(&id, "completed").await["admitted"], 10);
}

#[tokio::test]
async fn aborted_and_rolled_back_rollouts_still_decide_after_a_restart() {
    let app = spawn_app().await;
    app.import(&fleet(4)).await;
    let aborted = start(
        &app,
        plan("kept", [Stage::percent(50).approve(), Stage::percent(100)]),
    )
    .await;
    let kept: Vec<String> = agents_round(&app, 4).await.into_iter().map(host).collect();
    app.action(&aborted, "abort", "good enough").await;

    // A second rollout of another version, rolled back once admitted.
    let source = Plan::new("back", "docker-engine", "3.0")
        .stage(Stage::percent(50).approve())
        .stage(Stage::percent(100));
    let rolled = start(&app, source).await;
    let mut reverted = Vec::new();
    for i in 0..4 {
        let current = if kept.contains(&host(i)) {
            "2.0"
        } else {
            "1.0"
        };
        if desired(&report(&app, &host(i), current, "ok").await) == "3.0" {
            reverted.push((host(i), current));
        }
    }
    assert_eq!(reverted.len(), 2);
    app.action(&rolled, "rollback", "bad").await;

    let app = spawn_app_in(app.crash()).await;
    for i in 0..4 {
        let id = host(i);
        let answer = report(&app, &id, "3.0", "ok").await;
        let expected = match reverted.iter().find(|(h, _)| *h == id) {
            Some((_, previous)) => *previous,
            None if kept.contains(&id) => "2.0",
            None => "3.0",
        };
        assert_eq!(desired(&answer), expected, "{id}");
    }
}

#[tokio::test]
async fn a_completed_rollout_reads_the_same_after_a_restart() {
    let app = spawn_app().await;
    app.import(&fleet(3)).await;
    let id = start(&app, plan("done", [Stage::percent(100)])).await;
    for i in 0..3 {
        report(&app, &host(i), "2.0", "ok").await;
    }
    let before = app.detail(&id).await;
    assert_eq!(before["state"], "completed");
    let app = spawn_app_in(app.crash()).await;
    let after = app.detail(&id).await;
    assert_eq!(after["state"], "completed");
    assert_eq!(after["admitted"], before["admitted"]);
    assert_eq!(after["healthy"], 3);
    assert_eq!(after["strata"], before["strata"]);
}

/// A check-in that changes nothing writes nothing durable, so its time is
/// kept in memory: labels and reports survive a crash, and a clean shutdown
/// saves the last check-in time of every host.
#[tokio::test]
async fn labels_survive_a_crash_and_a_clean_shutdown_saves_last_seen() {
    async fn last_seen(app: &crate::helpers::TestApp) -> Value {
        app.host(&host(0)).await["last_seen"].clone()
    }
    let engine = json!({"docker-engine": {"version": "1.0", "state": "ok"}});
    let app = spawn_app().await;
    app.checkin(&host(0), json!({"role": "web"}), engine.clone())
        .await;
    app.checkin(&host(0), json!({"role": "db"}), engine.clone())
        .await;
    let relabelled_at = last_seen(&app).await;
    app.checkin(&host(0), json!({"role": "db"}), engine.clone())
        .await;
    let latest = last_seen(&app).await;
    assert_ne!(latest, relabelled_at, "each check-in moves last_seen");

    let app = spawn_app_in(app.crash()).await;
    let host_after_crash = app.host(&host(0)).await;
    assert_eq!(host_after_crash["labels"], json!({"role": "db"}));
    let seen = host_after_crash["last_seen"].as_str().expect("last_seen");
    assert!(
        seen >= relabelled_at.as_str().expect("time"),
        "last_seen went back past a durable check-in: {seen}"
    );

    app.checkin(&host(0), json!({"role": "db"}), engine).await;
    let before_stop = last_seen(&app).await;
    let app = spawn_app_in(app.stop()).await;
    assert_eq!(last_seen(&app).await, before_stop);
}

/// The host whose writes [`Refusing`] refuses.
const REFUSED: &str = "refused.example.net";

/// The real SQLite store's commit hook: it refuses every batch that writes
/// host [`REFUSED`], as a database refuses a write against one of its
/// constraints: retrying cannot help.
fn refusing(batch: &[Write]) -> Pass {
    let refused = batch
        .iter()
        .any(|write| matches!(write, Write::Host(host) if host.id == REFUSED));
    Box::pin(std::future::ready(if refused {
        Err(StoreError::Refused(format!(
            "CHECK constraint failed: host {REFUSED}"
        )))
    } else {
        Ok(())
    }))
}

#[tokio::test]
async fn a_refused_write_fails_its_request_and_memory_stops_claiming_it() {
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let app = spawn_app_with(data_dir, |store| Arc::new(Hooked::new(store, refusing))).await;
    let checkin = |id: &str| {
        json!({"host": id, "labels": {"role": "web"},
               "components": {"docker-engine": {"version": "1.0", "state": "ok"}}})
    };
    let before = app.checkin_as(&app.admin, &checkin("a.example.net")).await;
    assert_eq!(before.status(), StatusCode::OK);

    let refused = app.checkin_as(&app.admin, &checkin(REFUSED)).await;
    let error = assert_error(refused, StatusCode::INTERNAL_SERVER_ERROR, "internal").await;
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("refused") && message.contains("CHECK constraint"),
        "{error}"
    );
    // Memory is rebuilt from the store, where the host is not: answers
    // are unavailable meanwhile, then the host is unknown.
    wait_for(
        "memory rebuilt without the refused host",
        DEADLINE,
        || async {
            let status = app
                .get(&format!("/v1/hosts/{REFUSED}"), &app.admin)
                .await
                .status();
            assert!(
                matches!(
                    status,
                    StatusCode::NOT_FOUND | StatusCode::SERVICE_UNAVAILABLE
                ),
                "{status}"
            );
            (status == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await;
    // Later writes are not wedged behind the refused one.
    let after = app.checkin_as(&app.admin, &checkin("b.example.net")).await;
    assert_eq!(after.status(), StatusCode::OK);
    let hosts: Value = app.json("/v1/hosts").await;
    let ids: Vec<&str> = hosts["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|host| host["id"].as_str())
        .collect();
    assert_eq!(ids, ["a.example.net", "b.example.net"]);

    // The store holds the same.
    let app = spawn_app_in(app.crash()).await;
    let hosts: Value = app.json("/v1/hosts").await;
    assert_eq!(hosts["total"], 2, "{hosts}");
}
