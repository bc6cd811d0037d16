//! Fleet operations through the API: the change budget (`GET|PUT
//! /v1/budget`) across rollouts of two components, one change per host at
//! a time (and `exclusive: false`), and pins (`PUT|DELETE
//! /v1/hosts/{id}/pins/{component}`): what hosts are told, who waits and
//! why, what is refused, and what is audited.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_in, wait_for, TestApp, DEADLINE};

const HOSTS: [&str; 4] = [
    "a.example.net",
    "b.example.net",
    "c.example.net",
    "d.example.net",
];

/// A plan taking `component` to 2 on every host at once.
fn plan(component: &str, exclusive: bool) -> String {
    format!(
        "name: {component}-2\ncomponent: {component}\nversion: \"2\"\nexclusive: {exclusive}\nstages:\n  - {{ percent: 100 }}\n"
    )
}

/// Checks in `host` reporting kernel and docker at the versions given;
/// returns the answer's desired versions (component → version).
async fn checkin(app: &TestApp, host: &str, kernel: &str, docker: &str) -> Value {
    let answer = app
        .checkin(
            host,
            json!({"role": "web", "site": "sto"}),
            json!({
                "kernel": {"version": kernel, "state": "ok"},
                "docker": {"version": docker, "state": "ok"},
            }),
        )
        .await;
    json!({
        "kernel": answer["components"]["kernel"]["version"],
        "docker": answer["components"]["docker"]["version"],
    })
}

async fn fleet(app: &TestApp) {
    for host in HOSTS {
        checkin(app, host, "1", "1").await;
    }
}

async fn start(app: &TestApp, plan: String) -> String {
    let id = app.rollout(plan).await;
    assert_eq!(
        app.action(&id, "start", "go").await.status(),
        StatusCode::OK
    );
    id
}

async fn set_budget(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.send(Method::PUT, "/v1/budget", token, &body).await
}

/// The hosts whose answer names version 2 of `component`, each checking in
/// as it runs (`runs`: component → version, per host).
async fn told(app: &TestApp, component: &str, runs: &[(String, String)]) -> Vec<usize> {
    let mut told = Vec::new();
    for (i, host) in HOSTS.iter().enumerate() {
        let (kernel, docker) = &runs[i];
        let answer = checkin(app, host, kernel, docker).await;
        if answer[component] == "2" {
            told.push(i);
        }
    }
    told
}

#[tokio::test]
async fn the_budget_is_validated_admin_only_and_audited() {
    let app = spawn_app().await;
    fleet(&app).await;
    let viewer = app.token("viewer", None).await;
    let operator = app.token("operator", None).await;
    let body = json!({"max_in_flight": "25%", "reason": "many teams"});
    assert_error(
        set_budget(&app, &operator, body.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for (body, field) in [
        (
            json!({"max_in_flight": "lots", "reason": "r"}),
            "max_in_flight",
        ),
        (
            json!({"max_in_flight": "0", "reason": "r"}),
            "max_in_flight",
        ),
        (
            json!({"max_in_flight": "2%", "per_stratum": "200%", "reason": "r"}),
            "per_stratum",
        ),
        (json!({"per_stratum": "10%", "reason": "r"}), "per_stratum"),
        (
            json!({"max_in_flight": "2%", "spread": ["role", "role"], "reason": "r"}),
            "spread",
        ),
        (json!({"max_in_flight": "2%", "reason": " "}), "reason"),
    ] {
        let error = assert_error(
            set_budget(&app, &app.admin, body.clone()).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    let response = set_budget(&app, &app.admin, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let view: Value = response.json().await.expect("json");
    assert_eq!(view["limit"], 1, "25% of 4 hosts: {view}");
    assert_eq!(view["budget"]["spread"], json!(["role", "site"]));
    let response = app.get("/v1/budget", &viewer).await;
    assert_eq!(response.status(), StatusCode::OK, "viewers read the budget");
    let audit = app.json("/v1/audit?kind=budget_set").await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["reason"], "many teams", "{audit}");
    assert_eq!(entry["data"]["max_in_flight"], "25%", "{audit}");
    // Lifted: no limit.
    let response = set_budget(&app, &app.admin, json!({"reason": "done"})).await;
    let view: Value = response.json().await.expect("json");
    assert!(
        view.get("limit").is_none() && view.get("budget").is_none(),
        "{view}"
    );
}

#[tokio::test]
async fn rollouts_share_the_budget_fairly_and_wait_visibly() {
    let app = spawn_app().await;
    fleet(&app).await;
    let response = set_budget(
        &app,
        &app.admin,
        json!({"max_in_flight": "1", "reason": "one at a time"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let kernel = start(&app, plan("kernel", true)).await;
    let docker = start(&app, plan("docker", true)).await;
    let mut runs: Vec<(String, String)> = vec![("1".into(), "1".into()); HOSTS.len()];
    let mut turns = Vec::new();
    for _ in 0..2 * HOSTS.len() {
        let kernel_told = told(&app, "kernel", &runs).await;
        let docker_told = told(&app, "docker", &runs).await;
        let busy: Vec<usize> = kernel_told
            .iter()
            .filter(|&&i| runs[i].0 != "2")
            .chain(docker_told.iter().filter(|&&i| runs[i].1 != "2"))
            .copied()
            .collect();
        assert_eq!(
            busy.len(),
            1,
            "one host in flight: {kernel_told:?} {docker_told:?}"
        );
        let view = app.json("/v1/budget").await;
        assert_eq!(view["in_flight"], 1, "{view}");
        if turns.is_empty() {
            assert_eq!(
                view["waiting"][0]["id"], kernel,
                "the oldest waits longest: {view}"
            );
            assert_eq!(view["waiting"][1]["id"], docker, "{view}");
            assert_eq!(
                view["waiting"][1]["waiting"], "waiting for fleet budget",
                "{view}"
            );
            let detail = app.detail(&docker).await;
            assert_eq!(detail["waiting"], "waiting for fleet budget", "{detail}");
        }
        let i = busy[0];
        if kernel_told.contains(&i) && runs[i].0 != "2" {
            turns.push("kernel");
            runs[i].0 = "2".into();
        } else {
            turns.push("docker");
            runs[i].1 = "2".into();
        }
        // The host reports the new version healthy: room for the next.
        checkin(&app, HOSTS[i], &runs[i].0, &runs[i].1).await;
    }
    assert_eq!(
        turns,
        ["kernel", "kernel", "docker", "kernel", "docker", "kernel", "docker", "docker"],
        "the kernel's first host at its start, then the rollouts take turns, the one that waited longest first"
    );
    app.wait_for_state(&kernel, "completed").await;
    app.wait_for_state(&docker, "completed").await;
    let events: Vec<String> = app
        .events(&docker)
        .await
        .iter()
        .map(|event| event["kind"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(events.contains(&"waiting".to_owned()), "{events:?}");
    assert!(events.contains(&"wait_over".to_owned()), "{events:?}");
    let detail = app.detail(&docker).await;
    assert!(detail.get("waiting").is_none(), "{detail}");
}

#[tokio::test]
async fn a_host_changes_for_one_rollout_at_a_time_unless_a_plan_opts_out() {
    let app = spawn_app().await;
    fleet(&app).await;
    let kernel = start(&app, plan("kernel", true)).await;
    let docker = start(&app, plan("docker", true)).await;
    let mut runs: Vec<(String, String)> = vec![("1".into(), "1".into()); HOSTS.len()];
    assert_eq!(told(&app, "kernel", &runs).await, [0, 1, 2, 3]);
    assert_eq!(
        told(&app, "docker", &runs).await,
        Vec::<usize>::new(),
        "every host is in flight for the kernel"
    );
    let detail = app.detail(&docker).await;
    assert_eq!(
        detail["waiting"],
        "waiting for hosts busy with another change (in flight for another rollout, or pinned)",
        "{detail}"
    );
    // One host's kernel settles healthy: that host, and only it, may change docker.
    runs[2].0 = "2".into();
    checkin(&app, HOSTS[2], "2", "1").await;
    let docker_told = told(&app, "docker", &runs).await;
    assert_eq!(docker_told, [2]);
    // Every kernel settles, then every docker change does.
    for _ in 0..2 {
        for host in HOSTS {
            checkin(&app, host, "2", "2").await;
        }
    }
    app.wait_for_state(&kernel, "completed").await;
    app.wait_for_state(&docker, "completed").await;

    // A harmless change (exclusive: false) goes alongside.
    let app = spawn_app().await;
    fleet(&app).await;
    start(&app, plan("kernel", true)).await;
    start(&app, plan("docker", false)).await;
    let runs: Vec<(String, String)> = vec![("1".into(), "1".into()); HOSTS.len()];
    assert_eq!(told(&app, "kernel", &runs).await, [0, 1, 2, 3]);
    assert_eq!(told(&app, "docker", &runs).await, [0, 1, 2, 3]);
}

async fn pin(app: &TestApp, token: &str, host: &str, body: Value) -> reqwest::Response {
    app.send(
        Method::PUT,
        &format!("/v1/hosts/{host}/pins/kernel"),
        token,
        &body,
    )
    .await
}

#[tokio::test]
async fn a_pin_tells_one_host_a_version_and_keeps_rollouts_off_it() {
    let app = spawn_app().await;
    fleet(&app).await;
    let viewer = app.token("viewer", None).await;
    let body = json!({"version": "9", "for": "2h", "reason": "taste-test"});
    assert_error(
        pin(&app, &viewer, HOSTS[0], body.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for (bad, field) in [
        (json!({"version": "9", "for": "soon", "reason": "r"}), "for"),
        (json!({"version": "9", "for": "0s", "reason": "r"}), "for"),
        (
            json!({"version": " ", "for": "2h", "reason": "r"}),
            "version",
        ),
        (json!({"version": "9", "for": "2h", "reason": ""}), "reason"),
    ] {
        let error = assert_error(
            pin(&app, &app.admin, HOSTS[0], bad.clone()).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
        assert_eq!(error["error"]["field"], field, "{bad}: {error}");
    }
    assert_error(
        pin(&app, &app.admin, "nobody.example.net", body.clone()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let response = app
        .send(
            Method::PUT,
            &format!("/v1/hosts/{}/pins/nothing", HOSTS[0]),
            &app.admin,
            &body,
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;

    let response = pin(&app, &app.admin, HOSTS[0], body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = checkin(&app, HOSTS[0], "1", "1").await;
    assert_eq!(answer["kernel"], "9", "the pinned host is told the pin");
    assert_eq!(checkin(&app, HOSTS[1], "1", "1").await["kernel"], "1");
    let host = app.host(HOSTS[0]).await;
    assert_eq!(host["pins"][0]["version"], "9", "{host}");
    assert_eq!(host["components"]["kernel"]["pinned"], true, "{host}");
    let pinned = app.json("/v1/hosts?pinned=true").await;
    assert_eq!(pinned["total"], 1, "{pinned}");
    assert_eq!(pinned["hosts"][0]["id"], HOSTS[0]);

    // A rollout of the kernel admits every host but the pinned one.
    let kernel = start(&app, plan("kernel", true)).await;
    let mut runs: Vec<(String, String)> = vec![("1".into(), "1".into()); HOSTS.len()];
    runs[0].0 = "9".into();
    assert_eq!(told(&app, "kernel", &runs).await, [1, 2, 3]);
    // A pin on a host the rollout holds is refused.
    let body = json!({"version": "8", "for": "1h", "reason": "another"});
    assert_error(
        pin(&app, &app.admin, HOSTS[1], body).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    for host in &HOSTS[1..] {
        checkin(&app, host, "2", "1").await;
    }
    let detail = app.detail(&kernel).await;
    assert!(
        detail["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("pinned")),
        "{detail}"
    );

    // Unpinned: the host returns to its desired version, and the rollout takes it.
    let response = app
        .send(
            Method::DELETE,
            &format!("/v1/hosts/{}/pins/kernel", HOSTS[0]),
            &app.admin,
            &json!({"reason": "tasted"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(checkin(&app, HOSTS[0], "9", "1").await["kernel"], "2");
    checkin(&app, HOSTS[0], "2", "1").await;
    app.wait_for_state(&kernel, "completed").await;
    let response = app
        .send(
            Method::DELETE,
            &format!("/v1/hosts/{}/pins/kernel", HOSTS[0]),
            &app.admin,
            &json!({"reason": "again"}),
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let audit = app.json("/v1/audit?kind=host_pinned").await;
    assert_eq!(audit["entries"][0]["target"], HOSTS[0], "{audit}");
    let audit = app.json("/v1/audit?kind=host_unpinned").await;
    assert_eq!(audit["entries"][0]["reason"], "tasted", "{audit}");
}

#[tokio::test]
async fn a_pin_expires_by_itself_and_survives_a_restart_until_then() {
    let app = spawn_app().await;
    fleet(&app).await;
    let stable = json!({"version": "1", "reason": "the fleet's kernel"});
    let response = app
        .send(
            Method::PUT,
            "/v1/components/kernel/stable",
            &app.admin,
            &stable,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json!({"version": "9", "for": "1h", "reason": "long taste-test"});
    assert_eq!(
        pin(&app, &app.admin, HOSTS[0], body).await.status(),
        StatusCode::OK
    );
    let body = json!({"version": "7", "for": "1s", "reason": "short taste-test"});
    assert_eq!(
        pin(&app, &app.admin, HOSTS[1], body).await.status(),
        StatusCode::OK
    );
    let data_dir = app.stop();
    let app = spawn_app_in(data_dir).await;
    assert_eq!(
        checkin(&app, HOSTS[0], "9", "1").await["kernel"],
        "9",
        "the pin survived the restart"
    );
    wait_for("the short pin to expire", DEADLINE, || async {
        (checkin(&app, HOSTS[1], "7", "1").await["kernel"] == "1").then_some(())
    })
    .await;
    let pinned = app.json("/v1/hosts?pinned=true").await;
    assert_eq!(pinned["total"], 1, "{pinned}");
}
