//! The audit log: every mutating action leaves one entry, durable with the
//! action, naming the token that acted (never its secret), the client's
//! address, the time and the reason; a refused action leaves none; the
//! log is read by viewers and up, filtered and paged; a client cannot
//! claim another address.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sluice_testkit::Stage;

use crate::helpers::{assert_error, fleet, plan, spawn_app, TestApp};

/// `GET /v1/audit{query}` with `token`; asserts 200 and returns the entries.
async fn audit(app: &TestApp, query: &str, token: &str) -> Vec<Value> {
    let response = app.get(&format!("/v1/audit{query}"), token).await;
    assert_eq!(response.status(), StatusCode::OK, "GET /v1/audit{query}");
    let body: Value = response.json().await.expect("json");
    body["entries"].as_array().expect("entries").clone()
}

fn kinds(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect()
}

async fn created(app: &TestApp, request: Value) -> Value {
    let response = app.post("/v1/tokens", &app.admin, &request).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("json")
}

#[tokio::test]
async fn every_mutating_action_is_audited_with_actor_source_time_and_reason() {
    let app = spawn_app().await;
    assert!(audit(&app, "", &app.admin).await.is_empty());

    assert_eq!(app.import(&fleet(2)).await.status(), StatusCode::OK);
    let id = app
        .rollout(plan(
            "audited",
            [Stage::percent(50).approve(), Stage::percent(100)],
        ))
        .await;
    assert_eq!(
        app.action(&id, "start", "CHG-1: go").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.action(&id, "pause", "looks odd").await.status(),
        StatusCode::OK
    );
    assert_eq!(app.freeze("CHG-2: holiday").await.status(), StatusCode::OK);
    assert_eq!(app.unfreeze("CHG-2: over").await.status(), StatusCode::OK);
    assert_eq!(
        app.action(&id, "abort", "not today").await.status(),
        StatusCode::OK
    );
    // Refused actions change nothing and leave no entry.
    assert_eq!(
        app.action(&id, "pause", "again").await.status(),
        StatusCode::CONFLICT
    );
    let stable = app
        .send(
            Method::PUT,
            "/v1/components/docker-engine/stable",
            &app.admin,
            &json!({"version": "2.0", "reason": "CHG-3: everyone", "dry_run": false}),
        )
        .await;
    assert_eq!(stable.status(), StatusCode::OK);
    let dry = app
        .send(
            Method::PUT,
            "/v1/components/docker-engine/stable",
            &app.admin,
            &json!({"version": "2.1", "reason": "just asking", "dry_run": true}),
        )
        .await;
    assert_eq!(dry.status(), StatusCode::OK, "a dry run changes nothing");
    let viewer = created(
        &app,
        json!({"role": "viewer", "name": "auditor", "reason": "CHG-4: the auditor's access"}),
    )
    .await;
    let enroll = created(
        &app,
        json!({"role": "enroll", "selector": "site in (sto)", "uses": 5, "name": "fleet",
               "reason": "CHG-5: racking sto"}),
    )
    .await;
    let enrolled = app
        .post(
            "/v1/agent/enroll",
            enroll["token"].as_str().expect("secret"),
            &json!({"host": "new.example.net", "labels": {"site": "sto"}}),
        )
        .await;
    assert_eq!(enrolled.status(), StatusCode::CREATED);
    let enrolled: Value = enrolled.json().await.expect("json");
    let reenrolled = app
        .post(
            "/v1/hosts/new.example.net/reenroll",
            &app.admin,
            &json!({"reason": "CHG-6: new disk"}),
        )
        .await;
    assert_eq!(reenrolled.status(), StatusCode::OK);
    let revoked = app
        .send(
            Method::DELETE,
            &format!("/v1/tokens/{}", enroll["id"].as_str().expect("id")),
            &app.admin,
            &json!({"reason": "CHG-5: racking done"}),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);

    let response = app.get("/v1/audit?limit=1000", &app.admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("text");
    for secret in [
        app.admin.as_str(),
        viewer["token"].as_str().expect("secret"),
    ] {
        assert!(!text.contains(secret), "a secret in the audit log");
    }
    let entries: Vec<Value> = serde_json::from_str::<Value>(&text).expect("json")["entries"]
        .as_array()
        .expect("entries")
        .clone();
    assert_eq!(
        kinds(&entries),
        [
            "hosts_imported",
            "rollout_created",
            "rollout_started",
            "rollout_paused",
            "freeze_on",
            "freeze_off",
            "rollout_aborted",
            "stable_set",
            "token_created",
            "token_created",
            "host_enrolled",
            "host_reenrolled",
            "token_revoked",
        ]
    );
    assert!(entries
        .windows(2)
        .all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));
    for entry in &entries {
        assert_eq!(entry["source"], "127.0.0.1", "{entry}");
        assert!(
            entry["at"]
                .as_str()
                .is_some_and(|at| at.parse::<jiff::Timestamp>().is_ok()),
            "{entry}"
        );
        let actor = &entry["actor"];
        assert_eq!(actor["id"].as_str().map(str::len), Some(16), "{entry}");
    }
    let by_kind = |kind: &str| {
        entries
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
            .clone()
    };
    let started = by_kind("rollout_started");
    assert_eq!(started["target"], id.as_str());
    assert_eq!(started["reason"], "CHG-1: go");
    assert_eq!(started["actor"]["role"], "admin");
    assert_eq!(by_kind("freeze_on")["reason"], "CHG-2: holiday");
    assert_eq!(by_kind("freeze_on")["data"]["changed"], true);
    let stable = by_kind("stable_set");
    assert_eq!(
        (&stable["target"], &stable["reason"], &stable["data"]["to"]),
        (
            &json!("docker-engine"),
            &json!("CHG-3: everyone"),
            &json!("2.0")
        )
    );
    let imported = by_kind("hosts_imported");
    assert_eq!(imported["data"]["imported"], 2);
    assert_eq!(imported["reason"], "test fleet");
    let created_viewer = &entries[8];
    assert_eq!(created_viewer["target"], viewer["id"]);
    assert_eq!(created_viewer["data"]["role"], "viewer");
    assert_eq!(created_viewer["reason"], "CHG-4: the auditor's access");
    assert_eq!(entries[9]["target"], enroll["id"]);
    assert_eq!(entries[9]["reason"], "CHG-5: racking sto");
    let enrolled_entry = by_kind("host_enrolled");
    assert_eq!(enrolled_entry["target"], "new.example.net");
    assert_eq!(enrolled_entry["data"]["token"], enrolled["id"]);
    assert_eq!(
        enrolled_entry["actor"],
        json!({"id": enroll["id"], "name": "fleet", "role": "enroll"}),
        "the enrollment token that was used"
    );
    let reenrolled = by_kind("host_reenrolled");
    assert_eq!(
        (&reenrolled["target"], &reenrolled["reason"]),
        (&json!("new.example.net"), &json!("CHG-6: new disk"))
    );
    let revoked = by_kind("token_revoked");
    assert_eq!(
        (&revoked["target"], &revoked["reason"]),
        (&enroll["id"], &json!("CHG-5: racking done"))
    );

    // Filters: kind, actor by name or id, since, after, limit.
    let viewer_token = viewer["token"].as_str().expect("secret");
    assert_eq!(
        kinds(&audit(&app, "?kind=freeze_off", viewer_token).await),
        ["freeze_off"]
    );
    let fleet_entries = audit(&app, "?actor=fleet", viewer_token).await;
    assert_eq!(kinds(&fleet_entries), ["host_enrolled"]);
    let by_id = audit(
        &app,
        &format!("?actor={}", enroll["id"].as_str().expect("id")),
        viewer_token,
    )
    .await;
    assert_eq!(by_id, fleet_entries);
    let tail = audit(&app, "?limit=2", viewer_token).await;
    assert_eq!(
        tail,
        entries[entries.len() - 2..],
        "the newest, oldest first"
    );
    let after = audit(
        &app,
        &format!("?after={}&limit=2", entries[1]["seq"]),
        viewer_token,
    )
    .await;
    assert_eq!(after, entries[2..4]);
    let since = entries[4]["at"].as_str().expect("at");
    let from = audit(&app, &format!("?since={since}&limit=1000"), viewer_token).await;
    assert_eq!(from.first(), Some(&entries[4]), "since is inclusive");
}

#[tokio::test]
async fn token_and_host_changes_without_a_reason_are_refused_naming_it_and_leave_no_entry() {
    let app = spawn_app().await;
    let viewer = created(
        &app,
        json!({"role": "viewer", "name": "kept", "reason": "a viewer to revoke"}),
    )
    .await;
    let before = audit(&app, "", &app.admin).await;
    for reason in [None, Some(""), Some("  ")] {
        let with = |mut body: Value| {
            if let Some(reason) = reason {
                body["reason"] = json!(reason);
            }
            body
        };
        let query = reason.map_or(String::new(), |r| {
            format!("?reason={}", r.replace(' ', "%20"))
        });
        let refused = [
            app.post("/v1/tokens", &app.admin, &with(json!({"role": "viewer"})))
                .await,
            app.send(
                Method::DELETE,
                "/v1/tokens/kept",
                &app.admin,
                &with(json!({})),
            )
            .await,
            app.post(
                "/v1/hosts/a.example.net/reenroll",
                &app.admin,
                &with(json!({})),
            )
            .await,
            app.post(&format!("/v1/hosts/import{query}"), &app.admin, &fleet(1))
                .await,
        ];
        for response in refused {
            let what = format!(
                "{} {}",
                response.url().path(),
                response.url().query().unwrap_or("")
            );
            let body = assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await;
            assert_eq!(body["error"]["field"], "reason", "{what}: {body}");
        }
    }
    assert_eq!(audit(&app, "", &app.admin).await, before, "no entry");
    // The token is still there, and goes with a reason.
    let revoked = app
        .send(
            Method::DELETE,
            "/v1/tokens/kept",
            &app.admin,
            &json!({"reason": "done"}),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        audit(&app, "?kind=token_revoked", &app.admin).await[0]["target"],
        viewer["id"]
    );
}

#[tokio::test]
async fn viewers_and_up_read_the_audit_agents_and_enrollment_tokens_do_not() {
    let app = spawn_app().await;
    for role in ["viewer", "operator"] {
        let token = app.token(role, None).await;
        audit(&app, "", &token).await;
    }
    let agent = app.token("agent", Some("a.example.net")).await;
    assert_error(
        app.get("/v1/audit", &agent).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let enroll = created(
        &app,
        json!({"role": "enroll", "selector": "site in (sto)", "uses": 1, "reason": "test"}),
    )
    .await;
    let enroll = enroll["token"].as_str().expect("secret");
    assert_error(
        app.get("/v1/audit", enroll).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let anonymous = app
        .client
        .get(app.url("/v1/audit"))
        .send()
        .await
        .expect("sent");
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn bad_parameters_are_refused_naming_the_field() {
    let app = spawn_app().await;
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?kind=rollout_exploded", "kind"),
        ("?since=yesterday", "since"),
        ("?after=-1", "after"),
        ("?actor=", "actor"),
    ] {
        let response = app.get(&format!("/v1/audit{query}"), &app.admin).await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await;
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    let response = app.get("/v1/audit?kind=nope", &app.admin).await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await;
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("freeze_on"),
        "names the valid kinds: {message}"
    );
}

#[tokio::test]
async fn a_client_cannot_claim_another_source_address() {
    let app = spawn_app().await;
    let response = app
        .client
        .put(app.url("/v1/freeze"))
        .bearer_auth(&app.admin)
        .header("x-sluice-forwarded-for", "203.0.113.9")
        .header("x-sluice-forward-key", "a guess")
        .header("x-sluice-forwarded-by", "r9")
        .json(&json!({"reason": "spoofed"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let entries = audit(&app, "", &app.admin).await;
    assert_eq!(kinds(&entries), ["freeze_on"]);
    assert_eq!(entries[0]["source"], "127.0.0.1", "{}", entries[0]);
}

#[tokio::test]
async fn a_dashboard_sign_in_link_is_audited_for_the_token_it_signs_in() {
    let app = spawn_app().await;
    let viewer = created(
        &app,
        json!({"role": "viewer", "name": "olga", "reason": "olga joins"}),
    )
    .await;
    let response = app
        .post(
            "/v1/signin-links",
            viewer["token"].as_str().expect("secret"),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let link: Value = response.json().await.expect("json");
    let entries = audit(&app, "?kind=signin_link_created", &app.admin).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["actor"]["name"], "olga");
    let text = serde_json::to_string(&entries).expect("json");
    let nonce = link["path"]
        .as_str()
        .expect("path")
        .rsplit('/')
        .next()
        .expect("nonce");
    assert!(!text.contains(nonce), "the link's nonce in the audit log");
}
