//! Enrollment tokens and the token lifecycle: hosts enroll with one
//! enrollment token (a selector, a number of uses, an expiry) and get a
//! token bound to their host and that selector; tokens are listed without
//! their secrets, revoked at once and refused once expired.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, wait_for, TestApp, DEADLINE};

/// A new token as the admin asks for it (for a test's reason); the answer.
async fn create(app: &TestApp, mut request: Value) -> Value {
    request["reason"] = json!("test");
    let response = app.post("/v1/tokens", &app.admin, &request).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("json")
}

/// An enrollment token for `site in (sto, lon)` with `uses` uses.
async fn enrollment(app: &TestApp, uses: u64) -> String {
    let created = create(
        app,
        json!({"role": "enroll", "selector": "site in (sto, lon)", "uses": uses, "expires": "24h", "name": "fleet"}),
    )
    .await;
    assert_eq!(created["selector"], "site in (lon, sto)", "{created}");
    assert_eq!(created["uses_left"], uses);
    created["token"].as_str().expect("secret").to_owned()
}

async fn enroll(app: &TestApp, token: &str, host: &str, site: &str) -> reqwest::Response {
    app.post(
        "/v1/agent/enroll",
        token,
        &json!({"host": host, "labels": {"site": site, "role": "web"}}),
    )
    .await
}

/// The error message of a refusal with `status`.
async fn refused(response: reqwest::Response, status: StatusCode, code: &str) -> String {
    let body = assert_error(response, status, code).await;
    body["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned()
}

async fn checkin(app: &TestApp, token: &str, host: &str, site: &str) -> reqwest::Response {
    app.checkin_as(
        token,
        &json!({"host": host, "labels": {"site": site, "role": "web"}, "components": {}}),
    )
    .await
}

async fn tokens(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app.get(&format!("/v1/tokens{query}"), &app.admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    let list: Value = response.json().await.expect("json");
    list["tokens"].as_array().expect("tokens").clone()
}

#[tokio::test]
async fn hosts_enroll_once_each_within_the_selector_and_the_uses() {
    let app = spawn_app().await;
    let secret = enrollment(&app, 2).await;

    let answer = enroll(&app, &secret, "a1.example.net", "sto").await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let enrolled: Value = answer.json().await.expect("json");
    assert_eq!(enrolled["host"], "a1.example.net");
    assert_eq!(enrolled["selector"], "site in (lon, sto)");
    let own = enrolled["token"].as_str().expect("token").to_owned();
    assert!(own.starts_with("slc_") && own != secret);
    assert_eq!(
        checkin(&app, &own, "a1.example.net", "sto").await.status(),
        StatusCode::OK
    );

    let again = refused(
        enroll(&app, &secret, "a1.example.net", "sto").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert!(
        again.contains("a1.example.net is already enrolled")
            && again.contains("sluice hosts reenroll a1.example.net"),
        "{again}"
    );
    let outside = refused(
        enroll(&app, &secret, "p1.example.net", "par").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert!(
        outside.contains("label site=par is outside") && outside.contains("site in (lon, sto)"),
        "{outside}"
    );
    let missing = app
        .post(
            "/v1/agent/enroll",
            &secret,
            &json!({"host": "m1.example.net", "labels": {"role": "web"}}),
        )
        .await;
    let missing = refused(missing, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(missing.contains("label site is missing"), "{missing}");

    assert_eq!(
        enroll(&app, &secret, "l1.example.net", "lon")
            .await
            .status(),
        StatusCode::CREATED
    );
    let used_up = refused(
        enroll(&app, &secret, "l2.example.net", "lon").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(used_up.contains("used up"), "{used_up}");

    let listed = tokens(&app, "?role=enroll").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["uses_left"], 0);
    assert_eq!(listed[0]["name"], "fleet");
    assert!(listed[0]["last_used_at"].is_string() && listed[0]["expires_at"].is_string());
    let agents = tokens(&app, "?role=agent").await;
    let mut bound: Vec<(&str, &str)> = agents
        .iter()
        .map(|t| {
            (
                t["host"].as_str().expect("host"),
                t["selector"].as_str().expect("selector"),
            )
        })
        .collect();
    bound.sort_unstable();
    assert_eq!(
        bound,
        [
            ("a1.example.net", "site in (lon, sto)"),
            ("l1.example.net", "site in (lon, sto)")
        ]
    );
    let all = app
        .get("/v1/tokens", &app.admin)
        .await
        .text()
        .await
        .expect("text");
    for secret in [&secret, &own] {
        assert!(!all.contains(secret.as_str()), "a secret is listed");
    }
}

#[tokio::test]
async fn an_enrollment_token_can_do_nothing_else_and_agent_tokens_little() {
    let app = spawn_app().await;
    let secret = enrollment(&app, 5).await;
    let answer = enroll(&app, &secret, "a1.example.net", "sto").await;
    let own: Value = answer.json().await.expect("json");
    let own = own["token"].as_str().expect("token").to_owned();

    let checkin_refused = refused(
        checkin(&app, &secret, "a1.example.net", "sto").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert!(
        checkin_refused.contains("may only enroll hosts"),
        "{checkin_refused}"
    );
    for (token, path) in [
        (&secret, "/v1/rollouts"),
        (&secret, "/v1/hosts/a1.example.net/desired"),
        (&own, "/v1/rollouts"),
        (&own, "/v1/hosts"),
        (&own, "/v1/hosts/b1.example.net/desired"),
        (&own, "/v1/tokens"),
    ] {
        assert_eq!(
            app.get(path, token).await.status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let enroll_with_agent = refused(
        enroll(&app, &own, "b1.example.net", "sto").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert!(
        enroll_with_agent.contains("needs an enrollment token"),
        "{enroll_with_agent}"
    );

    // Bound to its host, and to the enrollment's selector.
    assert_eq!(
        checkin(&app, &own, "a1.example.net", "lon").await.status(),
        StatusCode::OK,
        "still inside the selector"
    );
    let other = refused(
        checkin(&app, &own, "b1.example.net", "sto").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert!(other.contains("bound to host a1.example.net"), "{other}");
    let outside = refused(
        checkin(&app, &own, "a1.example.net", "par").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert!(
        outside.contains(
            "label site=par is outside the host's enrollment selector site in (lon, sto)"
        ),
        "{outside}"
    );
    assert_eq!(
        app.get("/v1/hosts/a1.example.net/desired", &own)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn revoking_a_token_is_effective_at_once() {
    let app = spawn_app().await;
    let viewer = create(&app, json!({"role": "viewer", "name": "grafana"})).await;
    let secret = viewer["token"].as_str().expect("token").to_owned();
    let id = viewer["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 16);
    assert_eq!(
        app.get("/v1/rollouts", &secret).await.status(),
        StatusCode::OK
    );
    let listed = tokens(&app, "?role=viewer").await;
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(listed[0]["last_used_at"].is_string(), "{listed:?}");

    let revoked = app
        .send(
            Method::DELETE,
            "/v1/tokens/grafana",
            &app.admin,
            &json!({"reason": "test"}),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    let revoked: Value = revoked.json().await.expect("json");
    assert_eq!(
        (revoked["id"].as_str(), revoked["role"].as_str()),
        (Some(id.as_str()), Some("viewer"))
    );
    let gone = refused(
        app.get("/v1/rollouts", &secret).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(!gone.contains(&secret), "{gone}");
    assert!(tokens(&app, "?role=viewer").await.is_empty());

    let unknown = app
        .send(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            &app.admin,
            &json!({"reason": "test"}),
        )
        .await;
    assert_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
    for _ in 0..2 {
        create(&app, json!({"role": "operator", "name": "ci"})).await;
    }
    let twice = app
        .send(
            Method::DELETE,
            "/v1/tokens/ci",
            &app.admin,
            &json!({"reason": "test"}),
        )
        .await;
    let twice = refused(twice, StatusCode::CONFLICT, "conflict").await;
    assert!(twice.contains("2 tokens are named \"ci\""), "{twice}");
    let last_admin = tokens(&app, "?role=admin").await;
    let last_admin = last_admin[0]["id"].as_str().expect("id");
    let last = app
        .send(
            Method::DELETE,
            &format!("/v1/tokens/{last_admin}"),
            &app.admin,
            &json!({"reason": "test"}),
        )
        .await;
    let last = refused(last, StatusCode::CONFLICT, "conflict").await;
    assert!(last.contains("last admin token"), "{last}");
}

#[tokio::test]
async fn expired_tokens_are_refused_saying_so() {
    let app = spawn_app().await;
    let viewer = create(&app, json!({"role": "viewer", "expires": "1s"})).await;
    let secret = viewer["token"].as_str().expect("token").to_owned();
    assert!(viewer["expires_at"].is_string(), "{viewer}");
    let enroll_secret = create(
        &app,
        json!({"role": "enroll", "selector": "site=sto", "uses": 10, "expires": "1s"}),
    )
    .await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let message = wait_for("the viewer token to expire", DEADLINE, async || {
        let response = app.get("/v1/rollouts", &secret).await;
        (response.status() == StatusCode::UNAUTHORIZED).then_some(response)
    })
    .await;
    let message = refused(message, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(message.contains("expired at"), "{message}");
    let enrolling = refused(
        enroll(&app, &enroll_secret, "a1.example.net", "sto").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(enrolling.contains("expired at"), "{enrolling}");
    let listed = tokens(&app, "?role=viewer").await;
    assert_eq!(listed[0]["expired"], true, "{listed:?}");
}

/// A host the inventory places outside the selector cannot be enrolled
/// with it, whatever labels the request claims.
#[tokio::test]
async fn a_known_host_outside_the_selector_is_not_enrolled() {
    let app = spawn_app().await;
    let imported = app
        .import(&json!([{"id": "par-1.example.net", "labels": {"site": "par"}}]))
        .await;
    assert_eq!(imported.status(), StatusCode::OK);
    let secret = enrollment(&app, 5).await;
    let claimed = refused(
        enroll(&app, &secret, "par-1.example.net", "sto").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert!(
        claimed.contains("host par-1.example.net is in the inventory with label site=par, outside"),
        "{claimed}"
    );
    assert!(tokens(&app, "?role=agent").await.is_empty());
    let listed = tokens(&app, "?role=enroll").await;
    assert_eq!(listed[0]["uses_left"], 5, "no use taken");
}

#[tokio::test]
async fn reenroll_revokes_the_hosts_tokens_so_that_it_enrolls_again() {
    let app = spawn_app().await;
    let secret = enrollment(&app, 5).await;
    let first: Value = enroll(&app, &secret, "a1.example.net", "sto")
        .await
        .json()
        .await
        .expect("json");
    let first = first["token"].as_str().expect("token").to_owned();
    let operator = create(&app, json!({"role": "operator"})).await;
    let operator = operator["token"].as_str().expect("token");
    let not_admin = app
        .post(
            "/v1/hosts/a1.example.net/reenroll",
            operator,
            &json!({"reason": "test"}),
        )
        .await;
    assert_error(not_admin, StatusCode::FORBIDDEN, "forbidden").await;

    let done = app
        .post(
            "/v1/hosts/a1.example.net/reenroll",
            &app.admin,
            &json!({"reason": "test"}),
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    let done: Value = done.json().await.expect("json");
    assert_eq!(done["tokens_revoked"], 1);
    assert_eq!(
        checkin(&app, &first, "a1.example.net", "sto")
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "the old token is revoked at once"
    );
    let again = enroll(&app, &secret, "a1.example.net", "sto").await;
    assert_eq!(again.status(), StatusCode::CREATED);
}

/// Many enrollments at once never take more than the token's uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrollments_never_exceed_the_uses() {
    let app = spawn_app().await;
    let secret = enrollment(&app, 5).await;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..30 {
        let request = app
            .client
            .post(app.url("/v1/agent/enroll"))
            .bearer_auth(&secret)
            .json(&json!({"host": format!("c{i}.example.net"), "labels": {"site": "sto"}}));
        requests.spawn(async move { request.send().await.expect("sent").status() });
    }
    let statuses = requests.join_all().await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let used_up = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!((created, used_up), (5, 25), "{statuses:?}");
    assert_eq!(tokens(&app, "?role=agent").await.len(), 5);
}

#[tokio::test]
async fn token_requests_are_checked_field_by_field() {
    let app = spawn_app().await;
    for (request, field) in [
        (json!({"role": "enroll", "uses": 5}), "selector"),
        (
            json!({"role": "enroll", "selector": "site in (", "uses": 5}),
            "selector",
        ),
        (
            json!({"role": "enroll", "selector": "", "uses": 5}),
            "selector",
        ),
        (json!({"role": "enroll", "selector": "site=sto"}), "uses"),
        (
            json!({"role": "enroll", "selector": "site=sto", "uses": 0}),
            "uses",
        ),
        (
            json!({"role": "viewer", "selector": "site=sto"}),
            "selector",
        ),
        (
            json!({"role": "agent", "host": "a.example.net", "uses": 3}),
            "uses",
        ),
        (
            json!({"role": "enroll", "host": "a.example.net", "selector": "site=sto", "uses": 3}),
            "host",
        ),
        (json!({"role": "viewer", "expires": "tomorrow"}), "expires"),
        (json!({"role": "viewer", "expires": "0s"}), "expires"),
        (
            json!({"role": "viewer", "name": "0123456789abcdef"}),
            "name",
        ),
    ] {
        let mut request = request;
        request["reason"] = json!("test");
        let response = app.post("/v1/tokens", &app.admin, &request).await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await;
        assert_eq!(body["error"]["field"], field, "{request} → {body}");
    }
}

#[tokio::test]
async fn the_token_list_comes_in_pages_in_the_order_of_the_ids() {
    let app = spawn_app().await;
    for i in 0..6 {
        create(&app, json!({"role": "viewer", "name": format!("v{i}")})).await;
    }
    create(
        &app,
        json!({"role": "enroll", "selector": "site=sto", "uses": 3}),
    )
    .await;
    // Follows `next` (as `after`) until it is absent.
    let pages = |query: &'static str| {
        let app = &app;
        async move {
            let mut pages = Vec::new();
            let mut after = String::new();
            loop {
                let response = app
                    .get(&format!("/v1/tokens?{query}{after}"), &app.admin)
                    .await;
                assert_eq!(response.status(), StatusCode::OK);
                let page: Value = response.json().await.expect("json");
                let ids: Vec<String> = page["tokens"]
                    .as_array()
                    .expect("tokens")
                    .iter()
                    .map(|t| t["id"].as_str().expect("id").to_owned())
                    .collect();
                let next = page["next"].as_str().map(str::to_owned);
                if let Some(next) = &next {
                    assert_eq!(Some(next), ids.last(), "next is the page's last id");
                    after = format!("&after={next}");
                }
                pages.push(ids);
                if next.is_none() {
                    return pages;
                }
            }
        }
    };
    let all = pages("").await;
    assert_eq!(all.len(), 1, "one page by default: {all:?}");
    let all = all.concat();
    assert_eq!(all.len(), 8, "six viewers, the enrollment token, the admin");
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "in the order of their ids");

    let paged = pages("limit=3").await;
    assert_eq!(
        paged.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3, 2],
        "{paged:?}"
    );
    assert_eq!(paged.concat(), all);
    let viewers = pages("role=viewer&limit=4").await;
    assert_eq!(
        viewers.iter().map(Vec::len).collect::<Vec<_>>(),
        [4, 2],
        "{viewers:?}"
    );
    assert_eq!(viewers.concat().len(), 6);
    // A full last page says no more.
    assert_eq!(pages("role=viewer&limit=6").await.len(), 1);
    // Past the last id there is nothing.
    let past = pages("after=ffffffffffffffff").await;
    assert_eq!(past, [Vec::<String>::new()]);
    // A token revoked between pages does not move the cursor: revoke one
    // (not the last admin token) and read on from its id.
    let admin = tokens(&app, "?role=admin").await;
    let admin = admin[0]["id"].as_str().expect("id");
    let cursor = all[..all.len() - 1]
        .iter()
        .position(|id| id != admin)
        .expect("a token other than the admin");
    let revoked = app
        .send(
            Method::DELETE,
            &format!("/v1/tokens/{}", all[cursor]),
            &app.admin,
            &json!({"reason": "test"}),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    let response = app
        .get(
            &format!("/v1/tokens?limit=3&after={}", all[cursor]),
            &app.admin,
        )
        .await;
    let page: Value = response.json().await.expect("json");
    assert_eq!(page["tokens"][0]["id"], all[cursor + 1].as_str());

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=v1", "after"),
        ("after=ABCDEF0123456789", "after"),
    ] {
        let response = app.get(&format!("/v1/tokens?{query}"), &app.admin).await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await;
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
}
