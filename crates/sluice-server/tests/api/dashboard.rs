//! The dashboard over HTTP (what a browser would send, without one): the
//! sign-in and its session cookie, sessions across restarts (on SQLite and
//! PostgreSQL), CSRF and roles on the action forms, security and caching
//! headers, the pages' URL state, drift on the overview and the host
//! pages, and the sampler behind the chart. The
//! browser tests are in `crates/sluice/tests/e2e`.

use std::path::Path;
use std::sync::Arc;

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{redirect, Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use sluice_server::dashboard::views::encode;
use sluice_store::testing::TempPgDatabase;
use sluice_store::{PgStore, SqliteStore, Store, Timestamp, Write};
use sluice_testkit::{Gate, Stage};
use tempfile::TempDir;

use crate::helpers::{
    agents_round, fleet, host, plan, retry_after, spawn_app, spawn_app_on, wait_for, TestApp,
    DEADLINE,
};

/// A browser's worth of state: cookies and the page's CSRF token.
pub(crate) struct Browser {
    client: Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            client: Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .expect("client"),
            base: app.address.clone(),
            cookies: Vec::new(),
        }
    }

    fn keep_cookies(&mut self, response: &Response) {
        for header in response.headers().get_all(SET_COOKIE) {
            let text = header.to_str().expect("ascii cookie");
            let pair = text.split(';').next().expect("a name=value");
            let (name, value) = pair.split_once('=').expect("name=value");
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> Response {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .expect("GET sent");
        self.keep_cookies(&response);
        response
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(
                form.iter()
                    .map(|(k, v)| format!("{k}={}", encode(v)))
                    .collect::<Vec<_>>()
                    .join("&"),
            )
            .send()
            .await
            .expect("POST sent");
        self.keep_cookies(&response);
        response
    }

    /// The page at `path` with the cookies as they are (none kept from
    /// the answer); `None` if it could not be read.
    pub(crate) async fn fetch(&self, path: &str) -> Option<String> {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header());
        request.send().await.ok()?.text().await.ok()
    }

    /// A browser signed in with `token`.
    pub(crate) async fn signed_in(app: &TestApp, token: &str) -> Browser {
        let mut browser = Browser::new(app);
        browser.sign_in(token).await;
        browser
    }

    /// Signs in with `token` through the form; returns the answer.
    async fn sign_in(&mut self, token: &str) -> Response {
        let page = self
            .get("/signin?next=/rollouts")
            .await
            .text()
            .await
            .expect("page");
        let pairing = hidden(&page, "pairing");
        self.post(
            "/signin",
            &[
                ("token", token),
                ("pairing", &pairing),
                ("next", "/rollouts"),
            ],
        )
        .await
    }

    /// The CSRF token of the page at `path`.
    async fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path).await.text().await.expect("page");
        hidden(&page, "csrf")
    }
}

/// The value of the hidden input `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + marker.len();
    html[start..].split('"').next().expect("a value").to_owned()
}

async fn running_rollout(app: &TestApp) -> String {
    assert_eq!(app.import(&fleet(20)).await.status(), StatusCode::OK);
    let id = app
        .rollout(&plan(
            "dash",
            [Stage::percent(50).approve(), Stage::percent(100)],
        ))
        .await;
    assert_eq!(
        app.action(&id, "start", "go").await.status(),
        StatusCode::OK
    );
    id
}

#[tokio::test]
async fn pages_need_a_session_and_carry_security_headers() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    let response = browser.get("/rollouts?state=running").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[LOCATION],
        "/signin?next=/rollouts%3Fstate%3Drunning"
    );
    let response = browser.get("/signin").await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers[CACHE_CONTROL], "no-store");
    // The API is untouched: JSON errors, no cookies needed.
    let response = browser.get("/v1/rollouts").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_page_past_the_tokens_rate_says_when_to_come_back() {
    let app = sluice_testkit::app::spawn_app_configured(
        Arc::new(TempDir::new().expect("temp dir")),
        None,
        |config| config.api_rate = 1,
    )
    .await;
    let viewer = app.token("viewer", None).await;
    let mut browser = Browser::signed_in(&app, &viewer).await;
    // One request a second, in bursts of two: a reload loop soon goes past it.
    let mut refused = None;
    for _ in 0..50 {
        let response = browser.get("/rollouts").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = refused.expect("the viewer's session went past its token's rate");
    let retry_after = retry_after(&refused);
    assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
    assert!(refused.headers()[CONTENT_TYPE]
        .to_str()
        .is_ok_and(|t| t.starts_with("text/html")));
    let page = refused.text().await.expect("page");
    assert!(page.contains("--api-rate"), "{page}");
}

#[tokio::test]
async fn assets_have_their_type_and_are_cached_for_good() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/signin").await.text().await.expect("page");
    for (marker, content_type) in [
        (
            "<link rel=\"stylesheet\" href=\"",
            "text/css; charset=utf-8",
        ),
        ("<script src=\"", "text/javascript; charset=utf-8"),
    ] {
        let start = page.find(marker).expect("an asset link") + marker.len();
        let href = page[start..].split('"').next().expect("href").to_owned();
        let response = browser.get(&href).await;
        assert_eq!(response.status(), StatusCode::OK, "{href}");
        assert_eq!(response.headers()[CONTENT_TYPE], content_type);
        assert_eq!(
            response.headers()[CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
    }
    assert_eq!(
        browser.get("/static/dash.0000000000.css").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn sign_in_takes_a_paired_form_and_a_viewer_or_better_token() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    // Without the form's pairing cookie (a cross-site form): refused.
    let response = browser
        .post("/signin", &[("token", &app.admin), ("pairing", "x")])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = browser.sign_in("slc_nope").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response
        .text()
        .await
        .expect("page")
        .contains("token: unknown token"));
    let agent = app.token("agent", Some("h1.example.net")).await;
    assert_eq!(
        browser.sign_in(&agent).await.status(),
        StatusCode::FORBIDDEN
    );

    let viewer = app.token("viewer", None).await;
    let response = browser.sign_in(&viewer).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/rollouts");
    assert_session_cookie(&response);
    assert_eq!(browser.get("/rollouts").await.status(), StatusCode::OK);

    // Signing out needs the CSRF token too, and ends the session.
    assert_eq!(
        browser.post("/signout", &[("csrf", "x")]).await.status(),
        StatusCode::FORBIDDEN
    );
    let csrf = browser.csrf("/").await;
    assert_eq!(
        browser.post("/signout", &[("csrf", &csrf)]).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(browser.get("/").await.status(), StatusCode::SEE_OTHER);
}

/// Enrollment tokens cannot sign in; a session ends when its token is
/// revoked, at once.
#[tokio::test]
async fn enrollment_tokens_cannot_sign_in_and_revoking_a_token_ends_its_sessions() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/tokens",
            &app.admin,
            &json!({"role": "enroll", "selector": "site=sto", "uses": 1, "reason": "test"}),
        )
        .await;
    let created: Value = created.json().await.expect("json");
    let mut browser = Browser::new(&app);
    let refused = browser
        .sign_in(created["token"].as_str().expect("token"))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused
        .text()
        .await
        .expect("page")
        .contains("enrollment tokens cannot sign in"));

    let viewer = app
        .post(
            "/v1/tokens",
            &app.admin,
            &json!({"role": "viewer", "name": "wall", "reason": "test"}),
        )
        .await;
    let viewer: Value = viewer.json().await.expect("json");
    let mut browser = Browser::signed_in(&app, viewer["token"].as_str().expect("token")).await;
    assert_eq!(browser.get("/rollouts").await.status(), StatusCode::OK);
    let revoked = app
        .send(
            reqwest::Method::DELETE,
            "/v1/tokens/wall",
            &app.admin,
            &json!({"reason": "test"}),
        )
        .await;
    let revoked: Value = revoked.json().await.expect("json");
    assert_eq!(revoked["sessions_ended"], 1, "{revoked}");
    assert_eq!(
        browser.get("/rollouts").await.status(),
        StatusCode::SEE_OTHER,
        "back to the sign-in form"
    );
}

/// Runs `$case`, an async fn of the database URL, as two tests: on SQLite
/// (`None`) and on a fresh PostgreSQL database.
macro_rules! on_sqlite_and_postgresql {
    ($case:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $case(None).await;
        }

        #[tokio::test]
        async fn $postgres() {
            let db = TempPgDatabase::create().await;
            $case(Some(db.url())).await;
        }
    };
}

/// The rollout's `paused` event; asserts that an operator token without a
/// name paused it.
async fn paused_by_an_operator(app: &TestApp, id: &str) -> Value {
    let paused = app
        .events(id)
        .await
        .into_iter()
        .find(|e| e["kind"] == "paused")
        .expect("a paused event");
    assert!(
        paused["actor"]
            .as_str()
            .expect("actor")
            .starts_with("operator-"),
        "{paused}"
    );
    paused
}

/// Asserts that `response` sends the browser to the sign-in page.
/// The answer to a sign-in sets the session cookie, out of scripts' and
/// other sites' reach.
fn assert_session_cookie(response: &Response) {
    let cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .find(|v| v.starts_with("sluice_session="))
        .expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
}

fn assert_sent_to_sign_in(response: &Response, why: &str) {
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{why}");
    let location = response.headers()[LOCATION].to_str().expect("ascii");
    assert!(location.starts_with("/signin"), "{why}: {location}");
}

/// The store of a server stopped (or running) on `data_dir` or on the
/// PostgreSQL database at `database_url`, behind its back.
async fn store_of(data_dir: &Path, database_url: Option<&str>) -> Box<dyn Store> {
    match database_url {
        Some(url) => Box::new(PgStore::open(url).await.expect("opening PostgreSQL")),
        None => Box::new(SqliteStore::open(data_dir).await.expect("opening SQLite")),
    }
}

/// A signed-in operator stays signed in across a graceful restart and a
/// crash: the pages, the same CSRF token, an action in the operator's
/// name. What is stored is no secret: the session's hash, not its cookie.
/// Signing out is durable too: a restart does not bring the session back.
async fn a_session_outlives_restarts_until_signed_out(database_url: Option<&str>) {
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let app = spawn_app_on(Arc::clone(&data_dir), database_url).await;
    let id = running_rollout(&app).await;
    let page = format!("/rollouts/{id}");
    let mut browser = Browser::signed_in(&app, &app.token("operator", None).await).await;
    let csrf = browser.csrf(&page).await;
    let secret = browser
        .cookies
        .iter()
        .find(|(name, _)| name == "sluice_session")
        .map(|(_, value)| value.clone())
        .expect("the session cookie");

    let stored = store_of(data_dir.path(), database_url).await.load().await;
    let sessions = stored.expect("the store loads").sessions;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_ne!(sessions[0].hash, secret, "the secret is not stored");
    assert!(!format!("{sessions:?}").contains(&secret));

    let app = spawn_app_on(app.stop(), database_url).await;
    browser.base = app.address.clone();
    assert_eq!(browser.get(&page).await.status(), StatusCode::OK);
    assert_eq!(browser.csrf(&page).await, csrf, "the same CSRF token");
    let response = browser
        .post(
            &format!("/rollouts/{id}/act/pause"),
            &[
                ("csrf", &csrf),
                ("reason", "after a restart"),
                ("back", &page),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.detail(&id).await["state"], "paused");
    paused_by_an_operator(&app, &id).await;

    let app = spawn_app_on(app.crash(), database_url).await;
    browser.base = app.address.clone();
    assert_eq!(
        browser.get("/").await.status(),
        StatusCode::OK,
        "after a crash"
    );
    assert_eq!(
        browser.post("/signout", &[("csrf", &csrf)]).await.status(),
        StatusCode::SEE_OTHER
    );

    let app = spawn_app_on(app.crash(), database_url).await;
    let mut stale = Browser::new(&app);
    stale.cookies.push(("sluice_session".to_owned(), secret));
    let response = stale.get(&page).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "signed out for good"
    );
    assert!(response.headers()[LOCATION]
        .to_str()
        .expect("ascii")
        .starts_with("/signin"));
}

on_sqlite_and_postgresql!(
    a_session_outlives_restarts_until_signed_out,
    a_session_outlives_restarts_until_signed_out_on_sqlite,
    a_session_outlives_restarts_until_signed_out_on_postgresql
);

/// A session past its expiry is not honoured after a restart, and the
/// restarted server deletes it from the store; a live one beside it stays.
async fn an_expired_session_is_neither_honoured_nor_kept(database_url: Option<&str>) {
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let app = spawn_app_on(Arc::clone(&data_dir), database_url).await;
    let mut expiring = Browser::signed_in(&app, &app.token("viewer", None).await).await;
    let mut live = Browser::signed_in(&app, &app.token("viewer", None).await).await;
    drop(app.stop());

    // The first session's end moves to the past behind the server's back.
    let store = store_of(data_dir.path(), database_url).await;
    let mut sessions = store.load().await.expect("the store loads").sessions;
    assert_eq!(sessions.len(), 2);
    sessions.sort_by_key(|s| s.created_at);
    let mut expired = sessions[0].clone();
    expired.expires_at = Timestamp::now() - jiff::SignedDuration::from_secs(1);
    store
        .commit(&[Write::Session(expired.clone())])
        .await
        .expect("an earlier expiry");
    drop(store);

    let app = spawn_app_on(Arc::clone(&data_dir), database_url).await;
    expiring.base = app.address.clone();
    live.base = app.address.clone();
    assert_sent_to_sign_in(&expiring.get("/").await, "expired");
    assert_eq!(live.get("/").await.status(), StatusCode::OK);
    let kept = store_of(data_dir.path(), database_url)
        .await
        .load()
        .await
        .expect("the store loads")
        .sessions;
    assert_eq!(kept, [sessions[1].clone()], "the expired one was deleted");
}

on_sqlite_and_postgresql!(
    an_expired_session_is_neither_honoured_nor_kept,
    an_expired_session_is_neither_honoured_nor_kept_on_sqlite,
    an_expired_session_is_neither_honoured_nor_kept_on_postgresql
);

#[tokio::test]
async fn actions_need_an_operator_and_the_csrf_token_and_are_audited() {
    let app = spawn_app().await;
    let id = running_rollout(&app).await;
    let page = format!("/rollouts/{id}");
    let act = format!("/rollouts/{id}/act/pause");

    let mut viewer = Browser::signed_in(&app, &app.token("viewer", None).await).await;
    let html = viewer.get(&page).await.text().await.expect("page");
    assert!(
        !html.contains("action-pause"),
        "a viewer sees no pause button"
    );
    let csrf = hidden(&html, "csrf");
    let response = viewer
        .post(&act, &[("csrf", &csrf), ("reason", "viewer")])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let mut operator = Browser::signed_in(&app, &app.token("operator", None).await).await;
    let html = operator.get(&page).await.text().await.expect("page");
    assert!(
        html.contains("id=\"action-pause\""),
        "an operator gets the pause button"
    );
    let csrf = hidden(&html, "csrf");
    let response = operator.post(&act, &[("reason", "no csrf")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // No reason: back to the page, which says what is missing.
    let response = operator
        .post(&act, &[("csrf", &csrf), ("reason", " "), ("back", &page)])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let html = operator.get(&page).await.text().await.expect("page");
    assert!(html.contains("a reason is required to pause"), "{html}");
    assert_eq!(app.detail(&id).await["state"], "running");

    let response = operator
        .post(
            &act,
            &[
                ("csrf", &csrf),
                ("reason", "looks wrong"),
                ("back", "//evil.example"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[LOCATION],
        "/",
        "no redirect off the site"
    );
    assert_eq!(app.detail(&id).await["state"], "paused");
    let paused = paused_by_an_operator(&app, &id).await;
    assert_eq!(paused["data"]["reason"], "looks wrong");
    // Pausing twice is refused by the engine; the page says so.
    operator
        .post(
            &act,
            &[("csrf", &csrf), ("reason", "again"), ("back", &page)],
        )
        .await;
    let html = operator.get(&page).await.text().await.expect("page");
    assert!(html.contains("class=\"flash error\""), "{html}");
}

#[tokio::test]
async fn only_admins_freeze_the_fleet_from_the_overview() {
    let app = spawn_app().await;
    let mut operator = Browser::signed_in(&app, &app.token("operator", None).await).await;
    let html = operator.get("/").await.text().await.expect("page");
    assert!(!html.contains("freeze-on"));
    let csrf = hidden(&html, "csrf");
    let response = operator
        .post(
            "/freeze",
            &[("csrf", &csrf), ("reason", "no"), ("set", "on")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let mut admin = Browser::signed_in(&app, &app.admin).await;
    let html = admin.get("/").await.text().await.expect("page");
    assert!(html.contains("id=\"freeze-on\""));
    let csrf = hidden(&html, "csrf");
    let response = admin
        .post(
            "/freeze",
            &[("csrf", &csrf), ("reason", "game day"), ("set", "on")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let freeze: Value = app.json("/v1/freeze").await;
    assert_eq!(freeze["frozen"], true);
    assert_eq!(freeze["actor"], "admin");
    let html = admin.get("/").await.text().await.expect("page");
    assert!(html.contains("game day") && html.contains("id=\"freeze-off\""));
}

#[tokio::test]
async fn drift_shows_on_the_overview_the_host_search_and_the_host_page() {
    let app = spawn_app().await;
    assert_eq!(app.import(&fleet(3)).await.status(), StatusCode::OK);
    for (i, drifted) in [(0, false), (1, true)] {
        app.checkin(
            &host(i),
            json!({"role": "web"}),
            json!({"docker-engine": {"version": "1.0", "state": "ok", "drifted": drifted}}),
        )
        .await;
    }
    let mut browser = Browser::signed_in(&app, &app.token("viewer", None).await).await;

    let html = browser.get("/").await.text().await.expect("page");
    assert!(
        html.contains("<a class=\"badge drifted\" href=\"/hosts?component=docker-engine&#38;drifted=true\">1 drifted</a>"),
        "{html}"
    );

    let rows = |html: &str| {
        html.matches("<tr><th scope=\"row\"><a href=\"/hosts/")
            .count()
    };
    let html = browser
        .get("/hosts?component=docker-engine&drifted=true")
        .await
        .text()
        .await
        .expect("page");
    assert_eq!(rows(&html), 1, "{html}");
    assert!(html.contains(&format!("href=\"/hosts/{}\"", host(1))));
    assert!(html.contains("drifted: docker-engine"));
    assert!(html.contains("name=\"drifted\" value=\"true\" checked"));
    let html = browser.get("/hosts").await.text().await.expect("page");
    assert_eq!(rows(&html), 3);
    let response = browser.get("/hosts?drifted=perhaps").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.expect("page").contains("drifted:"));

    let page = |i| format!("/hosts/{}", host(i));
    let html = browser.get(&page(1)).await.text().await.expect("page");
    assert!(html.contains("1.0 <span class=\"badge drifted\""), "{html}");
    let html = browser.get(&page(0)).await.text().await.expect("page");
    assert!(!html.contains("badge drifted"), "{html}");
}

/// The overview's fleet view: hosts in flight per component, the budget
/// used, the rollouts waiting for room, the pins; and the host page's pins.
#[tokio::test]
async fn the_overview_shows_what_is_changing_now() {
    let app = spawn_app().await;
    for i in 0..2 {
        app.checkin(
            &host(i),
            json!({"role": "web"}),
            json!({
                "docker-engine": {"version": "1.0", "state": "ok"},
                "kernel": {"version": "6.1", "state": "ok"},
            }),
        )
        .await;
    }
    let mut browser = Browser::signed_in(&app, &app.token("viewer", None).await).await;
    let html = browser.get("/").await.text().await.expect("page");
    assert!(html.contains("no fleet-wide change budget"), "{html}");
    assert!(html.contains("No rollout is waiting for room."), "{html}");
    assert!(html.contains("No host is pinned."), "{html}");

    let budget = json!({"max_in_flight": "1", "reason": "one at a time"});
    let response = app
        .send(Method::PUT, "/v1/budget", &app.admin, &budget)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let pin = json!({"version": "6.8", "for": "2h", "reason": "taste-test"});
    let path = format!("/v1/hosts/{}/pins/kernel", host(1));
    assert_eq!(
        app.send(Method::PUT, &path, &app.admin, &pin)
            .await
            .status(),
        StatusCode::OK
    );
    let plan = "name: docker-2\ncomponent: docker-engine\nversion: \"2.0\"\nstages:\n  - { percent: 100 }\n";
    let first = app.rollout(plan).await;
    app.action(&first, "start", "go").await;

    let html = browser.get("/").await.text().await.expect("page");
    assert!(
        html.contains("<b>1</b> hosts in flight; budget 1 of 2 hosts: at most 1 in flight."),
        "{html}"
    );
    assert!(html.contains("aria-valuenow=\"100\""), "{html}");
    assert!(
        html.contains("<tr><th scope=\"row\">docker-engine</th><td class=\"num\">1</td></tr>"),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "{first} docker-2</a></th><td>docker-engine</td><td>waiting for fleet budget</td>"
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<a href=\"/hosts/{0}\">{0}</a></th><td>kernel</td><td>6.8</td>",
            host(1)
        )),
        "{html}"
    );
    assert!(
        html.contains("stage 1 · progressing · waiting for fleet budget"),
        "{html}"
    );
    let html = browser
        .get(&format!("/hosts/{}", host(1)))
        .await
        .text()
        .await
        .expect("page");
    assert!(
        html.contains("<table id=\"host-pins\">") && html.contains("taste-test"),
        "{html}"
    );
    let html = browser
        .get(&format!("/rollouts/{first}"))
        .await
        .text()
        .await
        .expect("page");
    assert!(html.contains("Waiting for fleet budget since"), "{html}");
}

#[tokio::test]
async fn views_follow_their_url_and_bad_filters_name_the_field() {
    let app = spawn_app().await;
    let id = running_rollout(&app).await;
    let mut browser = Browser::signed_in(&app, &app.token("viewer", None).await).await;

    let html = browser
        .get(&format!("/rollouts/{id}?tab=hosts&hstate=instructed"))
        .await
        .text()
        .await
        .expect("page");
    assert!(html.contains("id=\"tab-hosts\" href=\"/rollouts/r-1?tab=hosts&#38;hstate=instructed\" aria-current=\"page\""), "{html}");
    assert_eq!(html.matches("<tr class=\"host-instructed\">").count(), 10);
    assert!(!html.contains("host-waiting"));

    let html = browser
        .get("/rollouts?state=completed")
        .await
        .text()
        .await
        .expect("page");
    assert!(html.contains("No rollout matches"));
    let html = browser
        .get("/rollouts?state=running")
        .await
        .text()
        .await
        .expect("page");
    assert!(html.contains(&format!("href=\"/rollouts/{id}\"")));

    let response = browser.get(&format!("/rollouts/{id}?tab=nope")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response
        .text()
        .await
        .expect("page")
        .contains("tab: unknown tab"));
    let response = browser.get("/hosts?selector=role%3D%3D%3D").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.expect("page").contains("selector:"));

    let html = browser.get("/hosts?q=h1").await.text().await.expect("page");
    // h1, h10 … h19.
    assert_eq!(
        html.matches("<tr><th scope=\"row\"><a href=\"/hosts/")
            .count(),
        11
    );
    let html = browser
        .get("/hosts/h3.example.net")
        .await
        .text()
        .await
        .expect("page");
    assert!(
        html.contains(&format!("href=\"/rollouts/{id}\"")),
        "the host's rollouts"
    );
    assert_eq!(
        browser.get("/hosts/nowhere.example.net").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_chart_is_fed_by_samples_of_hosts_by_version() {
    let app = spawn_app().await;
    let id = running_rollout(&app).await;
    let browser = Browser::signed_in(&app, &app.admin).await;
    let samples = |html: &str| -> usize {
        let marker = "<p id=\"samples\" class=\"muted\">";
        let start = html.find(marker).expect("the samples line") + marker.len();
        html[start..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a count")
    };
    let page = format!("/rollouts/{id}");
    // The first sample: every host at 1.0.
    wait_for("a first sample", DEADLINE, || async {
        let html = browser.fetch(&page).await?;
        (samples(&html) >= 1).then_some(())
    })
    .await;
    // Half the hosts move to 2.0: a new sample, and a line for 2.0.
    agents_round(&app, 20).await;
    let html = wait_for("a sample with 2.0", DEADLINE, || async {
        let html = browser.fetch(&page).await?;
        (samples(&html) >= 2).then_some(html)
    })
    .await;
    assert!(html.contains("now 1.0: 10, 2.0: 10"), "{html}");
    assert_eq!(html.matches("<polyline").count(), 2);
}

#[tokio::test]
async fn the_gates_tab_shows_each_result_with_its_evidence() {
    let app = spawn_app().await;
    assert_eq!(app.import(&fleet(4)).await.status(), StatusCode::OK);
    let gated = plan("gated", [Stage::percent(50), Stage::percent(100)])
        .gate(Gate::http("slo", "http://127.0.0.1:9/ok").interval("1s"));
    let id = app.rollout(&gated).await;
    assert_eq!(
        app.action(&id, "start", "go").await.status(),
        StatusCode::OK
    );
    wait_for(
        "the failing gate to pause the rollout",
        DEADLINE,
        || async { (app.detail(&id).await["state"] == "paused").then_some(()) },
    )
    .await;

    let mut browser = Browser::signed_in(&app, &app.token("viewer", None).await).await;
    // The page reads events from the store, which may trail memory a little.
    let html = wait_for("the gate's failure in the gates tab", DEADLINE, || {
        let request = browser
            .client
            .get(format!("{}/rollouts/{id}?tab=gates", browser.base))
            .header(COOKIE, browser.cookie_header())
            .send();
        async move {
            let html = request.await.ok()?.text().await.ok()?;
            html.contains("<span class=\"kind\">gate failed</span>")
                .then_some(html)
        }
    })
    .await;
    assert!(
        html.contains("<span class=\"badge gate-fail\">fail</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"kind\">gate failed</span>"),
        "{html}"
    );
    assert!(
        html.contains("http://127.0.0.1:9/ok"),
        "the evidence names the URL: {html}"
    );
    let html = browser
        .get(&format!("/rollouts/{id}?tab=events"))
        .await
        .text()
        .await
        .expect("page");
    assert!(
        html.contains("<span class=\"kind\">paused</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"actor\">by admin</span>"),
        "the start, by its actor"
    );
}

/// The Audit view: the log newest first, its filters in the URL (a pasted
/// URL opens the same view), actions taken from the dashboard recorded
/// with the signed-in token and the browser's address.
#[tokio::test]
async fn the_audit_view_shows_the_log_filtered_by_its_url() {
    let app = spawn_app().await;
    let id = running_rollout(&app).await;
    let mut admin = Browser::signed_in(&app, &app.admin).await;
    let html = admin.get("/").await.text().await.expect("page");
    let csrf = hidden(&html, "csrf");
    let response = admin
        .post(
            "/freeze",
            &[("csrf", &csrf), ("reason", "game day"), ("set", "on")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    let mut viewer = Browser::signed_in(&app, &app.token("viewer", None).await).await;
    let html = viewer.get("/audit").await.text().await.expect("page");
    assert!(
        html.contains("href=\"/audit\" aria-current=\"page\""),
        "{html}"
    );
    let rows: Vec<&str> = html
        .split("<th scope=\"row\">")
        .skip(1)
        .map(|row| row.split('<').next().unwrap_or_default())
        .collect();
    assert_eq!(
        rows,
        [
            "token created",
            "freeze on",
            "rollout started",
            "rollout created",
            "hosts imported"
        ],
        "newest first"
    );
    assert!(
        html.contains(&format!("<a href=\"/rollouts/{id}\">{id}</a>")),
        "{html}"
    );
    assert!(html.contains("<td>game day</td>"), "{html}");
    assert!(
        html.contains("<td class=\"source\">127.0.0.1</td>"),
        "{html}"
    );

    // The filters are the URL's, shown in the form.
    let html = viewer
        .get("/audit?kind=freeze_on&actor=admin")
        .await
        .text()
        .await
        .expect("page");
    assert_eq!(html.matches("<th scope=\"row\">").count(), 1, "{html}");
    assert!(
        html.contains("<option value=\"freeze_on\" selected>"),
        "{html}"
    );
    assert!(
        html.contains("id=\"actor\" name=\"actor\" value=\"admin\""),
        "{html}"
    );
    let html = viewer
        .get("/audit?since=2999-01-01T00:00:00Z")
        .await
        .text()
        .await
        .expect("page");
    assert!(html.contains("No audit entries match."), "{html}");
    let response = viewer.get("/audit?kind=nope").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.expect("page").contains("audit kind"));
}

/// `POST /v1/signin-links` with `token` (none when `None`).
async fn mint_link(app: &TestApp, token: Option<&str>) -> Response {
    let mut request = app.client.post(app.url("/v1/signin-links"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("sent")
}

/// The path of a new sign-in link for `token`.
async fn link_path(app: &TestApp, token: &str) -> String {
    let response = mint_link(app, Some(token)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let link: Value = response.json().await.expect("json");
    assert_eq!(link["expires_in_s"], 60, "{link}");
    link["path"].as_str().expect("a path").to_owned()
}

/// Asserts that `response` is the page of a link used or expired, which
/// says how to get a new one.
async fn assert_link_gone(response: Response, why: &str) {
    assert_eq!(response.status(), StatusCode::GONE, "{why}");
    assert!(response.headers().get(SET_COOKIE).is_none(), "{why}");
    let page = response.text().await.expect("page");
    assert!(
        page.contains("already used or has expired") && page.contains("sluice dashboard"),
        "{why}: {page}"
    );
}

#[tokio::test]
async fn a_sign_in_link_opens_one_session_once_for_a_viewer_or_better_token() {
    let app = spawn_app().await;
    assert_eq!(
        mint_link(&app, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let agent = app.token("agent", Some("h1.example.net")).await;
    let refused = mint_link(&app, Some(&agent)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("agent tokens cannot sign in")),
        "{body}"
    );

    let enroll = app
        .post(
            "/v1/tokens",
            &app.admin,
            &json!({"role": "enroll", "selector": "site=sto", "uses": 1, "reason": "test"}),
        )
        .await;
    let enroll: Value = enroll.json().await.expect("json");
    let refused = mint_link(&app, Some(enroll["token"].as_str().expect("token"))).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let viewer = app.token("viewer", None).await;
    let path = link_path(&app, &viewer).await;
    let nonce = path.strip_prefix("/signin/link/").expect("a link path");
    assert_eq!(nonce.len(), 64, "{path}");
    assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()), "{path}");
    assert!(!path.contains(&viewer) && !viewer.contains(nonce));
    assert_ne!(
        link_path(&app, &viewer).await,
        path,
        "a new nonce each time"
    );

    // The first visit signs in as the sign-in form does, and goes to the
    // overview.
    let mut browser = Browser::new(&app);
    let response = browser.get(&path).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/");
    assert_session_cookie(&response);
    let page = browser.get("/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("page").contains("viewer"));

    // Once only: not again, not from another browser.
    assert_link_gone(browser.get(&path).await, "a second visit").await;
    assert_link_gone(Browser::new(&app).get(&path).await, "another browser").await;
    assert_link_gone(
        Browser::new(&app)
            .get(&format!("/signin/link/{}", "ab".repeat(32)))
            .await,
        "a link never made",
    )
    .await;
    // The session is the token's: it works on, and an operator's link
    // acts as the operator.
    assert_eq!(browser.get("/rollouts").await.status(), StatusCode::OK);
    let operator = app.token("operator", None).await;
    let id = running_rollout(&app).await;
    let mut operating = Browser::new(&app);
    let operator_link = link_path(&app, &operator).await;
    assert_eq!(
        operating.get(&operator_link).await.status(),
        StatusCode::SEE_OTHER
    );
    let page = format!("/rollouts/{id}");
    let csrf = operating.csrf(&page).await;
    let response = operating
        .post(
            &format!("/rollouts/{id}/act/pause"),
            &[("csrf", &csrf), ("reason", "via a link"), ("back", &page)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    paused_by_an_operator(&app, &id).await;

    // A link of a token revoked since signs nobody in.
    let created = app
        .post(
            "/v1/tokens",
            &app.admin,
            &json!({"role": "viewer", "name": "kiosk", "reason": "test"}),
        )
        .await;
    let kiosk: Value = created.json().await.expect("json");
    let kiosk_link = link_path(&app, kiosk["token"].as_str().expect("token")).await;
    let revoked = app
        .send(
            reqwest::Method::DELETE,
            "/v1/tokens/kiosk",
            &app.admin,
            &json!({"reason": "test"}),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    let response = Browser::new(&app).get(&kiosk_link).await;
    assert_eq!(response.status(), StatusCode::GONE);
    assert!(response.headers().get(SET_COOKIE).is_none());
    let page = response.text().await.expect("page");
    assert!(page.contains("expired or was revoked"), "{page}");
}

/// Links are stored, so a link made through one server works once on the
/// next to lead the same store (a restart, a crash, a change of leader):
/// a link used before is refused there, one not used yet signs in, and one
/// past its minute is refused and deleted. What is stored is no secret.
async fn sign_in_links_are_stored_and_used_once(database_url: Option<&str>) {
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let app = spawn_app_on(Arc::clone(&data_dir), database_url).await;
    let viewer = app.token("viewer", None).await;
    let used = link_path(&app, &viewer).await;
    let fresh = link_path(&app, &viewer).await;
    let expiring = link_path(&app, &viewer).await;
    assert_eq!(
        Browser::new(&app).get(&used).await.status(),
        StatusCode::SEE_OTHER
    );
    drop(app.crash());

    // The third link's minute ends behind the server's back.
    let store = store_of(data_dir.path(), database_url).await;
    let rows = store.load().await.expect("the store loads").sessions;
    let links: Vec<_> = rows
        .iter()
        .filter(|s| s.hash.starts_with("link:"))
        .collect();
    assert_eq!(links.len(), 2, "the used one is gone: {rows:?}");
    for path in [&used, &fresh, &expiring] {
        let nonce = path.strip_prefix("/signin/link/").expect("a link path");
        assert!(
            !format!("{rows:?}").contains(nonce),
            "the nonce is not stored"
        );
    }
    let mut expired = links
        .into_iter()
        .max_by_key(|s| s.created_at)
        .expect("the last link")
        .clone();
    expired.expires_at = Timestamp::now() - jiff::SignedDuration::from_secs(1);
    store
        .commit(&[Write::Session(expired)])
        .await
        .expect("an earlier expiry");
    drop(store);

    let app = spawn_app_on(Arc::clone(&data_dir), database_url).await;
    assert_link_gone(Browser::new(&app).get(&used).await, "used before the crash").await;
    assert_link_gone(Browser::new(&app).get(&expiring).await, "expired").await;
    let mut browser = Browser::new(&app);
    assert_eq!(browser.get(&fresh).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/").await.status(), StatusCode::OK);
    assert_link_gone(Browser::new(&app).get(&fresh).await, "used now").await;
    let rows = store_of(data_dir.path(), database_url)
        .await
        .load()
        .await
        .expect("the store loads")
        .sessions;
    assert!(
        rows.iter().all(|s| !s.hash.starts_with("link:")),
        "no link is left: {rows:?}"
    );
}

on_sqlite_and_postgresql!(
    sign_in_links_are_stored_and_used_once,
    sign_in_links_are_stored_and_used_once_on_sqlite,
    sign_in_links_are_stored_and_used_once_on_postgresql
);
