//! Issue 6: the dashboard in a real browser. Each test starts the real
//! server (10k fixture, a running rollout over 403 strata), a
//! `chromedriver` on a free port, and headless Chromium through it
//! (WebDriver, `fantoccini`). Waits poll with deadlines, never fixed
//! sleeps. Screenshots of the main views land in
//! `target/dashboard-screenshots/` as artifacts (the audit view among them).
//!
//! The viewer signs in through the form, pasting a token; the operator
//! through a one-time link from `sluice dashboard`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's
//! `chromium` and `chromium-driver`; `scripts/test` installs them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use sluice_api::admin::Role;
use sluice_api::rollout::RolloutState;
use sluice_testkit::chromium::{sign_in, Driver};
use sluice_testkit::{wait_for, Sandbox, DEADLINE};

use crate::fleet::sandbox_with_fleet_10k;

/// The server with the fixture imported and the dashboard plan running,
/// and a token of `role` named `name`.
async fn rollout_sandbox(role: Role, name: &str) -> (Sandbox, String) {
    let (sandbox, _) = sandbox_with_fleet_10k().await;
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/plan-dashboard.yaml");
    sandbox.start_rollout(&plan, "dashboard e2e").await;
    let token = sandbox
        .client()
        .create_token(role, None, Some(name), "e2e")
        .await
        .expect("creating a token")
        .token;
    (sandbox, token)
}

/// Where screenshots go: `<target>/dashboard-screenshots/`.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("creating the screenshot dir");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("taking a screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("saving a screenshot");
}

/// Signs in through a one-time link that `sluice dashboard` makes for
/// `token` (read from a file, as an operator would keep it), then opens
/// `url`. The link works once: a second visit says so.
async fn open_through_a_link(browser: &Client, sandbox: &Sandbox, url: &str, token: &str) {
    let file = sandbox.write("operator.token", format_args!("{token}\n"));
    let link = sandbox
        .sluice(&[
            "dashboard",
            "--token-file",
            file.to_str().expect("a UTF-8 path"),
        ])
        .await
        .ok()
        .stdout();
    let link = link.trim().to_owned();
    assert!(!link.contains(token), "{link}");
    browser.goto(&link).await.expect("opening the sign-in link");
    let overview = format!("{}/", sandbox.url());
    let current = browser.clone();
    wait_for(
        "the link to sign in and open the overview",
        DEADLINE,
        || {
            let (browser, overview) = (current.clone(), overview.clone());
            async move {
                let now = browser.current_url().await.ok()?;
                (now.as_str() == overview).then_some(())
            }
        },
    )
    .await;
    text_of(browser, "who").await;
    browser.goto(&link).await.expect("opening the link again");
    let used = text_of(browser, "error-message").await;
    assert!(used.contains("already used"), "{used}");
    browser.goto(url).await.expect("opening the page");
}

/// The text of the element with `id`, once it exists.
/// The tab `#id` is the one shown (`aria-current="page"`).
async fn assert_current_tab(browser: &Client, id: &str) {
    let tab = browser
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|error| panic!("no #{id} on the page: {error}"));
    assert_eq!(
        tab.attr("aria-current")
            .await
            .expect("attribute")
            .as_deref(),
        Some("page"),
        "#{id}"
    );
}

async fn text_of(browser: &Client, id: &str) -> String {
    browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|error| panic!("no #{id} on the page: {error}"))
        .text()
        .await
        .expect("reading text")
}

/// Waits until `#id`'s text is `expected`, across reloads and live updates.
async fn wait_for_text(browser: &Client, id: &'static str, expected: &'static str) {
    wait_for(&format!("#{id} to read {expected:?}"), DEADLINE, || {
        let browser = browser.clone();
        async move {
            let element = browser.find(Locator::Id(id)).await.ok()?;
            (element.text().await.ok()?.trim() == expected).then_some(())
        }
    })
    .await;
}

/// POSTs a form from inside the page (with its cookies); returns the status.
async fn post_from_page(browser: &Client, path: &str, fields: serde_json::Value) -> u64 {
    let status = browser
        .execute_async(
            "const [path, fields, done] = arguments;
             fetch(path, {method: 'POST', body: new URLSearchParams(fields), redirect: 'manual'})
               .then(r => done(r.status), e => done(String(e)));",
            vec![serde_json::json!(path), fields],
        )
        .await
        .expect("running the fetch");
    status
        .as_u64()
        .unwrap_or_else(|| panic!("the POST failed: {status}"))
}

async fn csrf_of_page(browser: &Client) -> String {
    browser
        .find(Locator::Css("input[name=csrf]"))
        .await
        .expect("a form with a csrf token")
        .prop("value")
        .await
        .expect("reading the csrf token")
        .expect("a csrf value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_link_opens_the_same_view_and_a_viewer_gets_no_buttons() {
    let (sandbox, token) = rollout_sandbox(Role::Viewer, "vera").await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    let base = sandbox.url().to_owned();

    let link = format!(
        "{base}/rollouts/r-1?tab=hosts&stratum=role%3Dconfig%2Csite%3Dsjc&hstate=instructed"
    );
    sign_in(&browser, &link, &token).await;

    // The same view: the hosts tab, filtered by the link's stratum and state.
    assert_current_tab(&browser, "tab-hosts").await;
    for (select, value) in [
        ("f-stratum", "role=config,site=sjc"),
        ("f-hstate", "instructed"),
    ] {
        let chosen = browser
            .find(Locator::Id(select))
            .await
            .expect("a filter")
            .prop("value")
            .await
            .expect("its value");
        assert_eq!(chosen.as_deref(), Some(value), "filter #{select}");
    }
    let rows = browser
        .find_all(Locator::Css("#rollout-hosts tbody tr"))
        .await
        .expect("the host rows");
    assert!(!rows.is_empty(), "the canary admitted hosts of config/sjc");
    for row in &rows {
        let stratum = row
            .find(Locator::Css("td.stratum"))
            .await
            .expect("a stratum cell")
            .text()
            .await
            .expect("text");
        assert_eq!(stratum, "role=config,site=sjc");
        assert_eq!(
            row.attr("class").await.expect("class").as_deref(),
            Some("host-instructed")
        );
    }
    screenshot(&browser, "rollout-hosts-filtered").await;

    // A viewer sees no action, and the action endpoint refuses one anyway.
    assert!(browser
        .find_all(Locator::Css("#actions, #action-pause"))
        .await
        .expect("searching")
        .is_empty());
    let csrf = csrf_of_page(&browser).await;
    let status = post_from_page(
        &browser,
        "/rollouts/r-1/act/pause",
        serde_json::json!({"csrf": csrf, "reason": "a viewer tries", "back": "/"}),
    )
    .await;
    assert_eq!(status, 403);
    let detail = sandbox.client().rollout("r-1").await.expect("the rollout");
    assert_eq!(detail.summary.state, RolloutState::Running);

    // The other main views, for the record.
    browser
        .goto(&format!("{base}/rollouts/r-1"))
        .await
        .expect("the rollout page");
    assert_eq!(text_of(&browser, "state").await, "running");
    let cells = browser
        .find_all(Locator::Css("#grid li"))
        .await
        .expect("the strata grid");
    assert_eq!(cells.len(), 403, "one cell per role × site stratum");
    screenshot(&browser, "rollout").await;
    browser.goto(&format!("{base}/")).await.expect("overview");
    text_of(&browser, "components").await;
    screenshot(&browser, "overview").await;
    browser
        .goto(&format!("{base}/hosts?q=sto-config&selector=pool%3Da"))
        .await
        .expect("host search");
    text_of(&browser, "hosts").await;
    screenshot(&browser, "hosts").await;
    let first = browser
        .find(Locator::Css("#hosts tbody a"))
        .await
        .expect("a host found");
    first.click().await.expect("opening the host");
    text_of(&browser, "host-components").await;
    screenshot(&browser, "host").await;
    browser.close().await.expect("closing the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pauses_from_the_rollout_page_and_it_updates_live() {
    let (sandbox, token) = rollout_sandbox(Role::Operator, "olga").await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    let base = sandbox.url().to_owned();
    let page = format!("{base}/rollouts/r-1");
    open_through_a_link(&browser, &sandbox, &page, &token).await;
    assert_eq!(text_of(&browser, "state").await, "running");

    // A forged form (no CSRF token) is refused.
    let status = post_from_page(
        &browser,
        "/rollouts/r-1/act/pause",
        serde_json::json!({"csrf": "forged", "reason": "csrf", "back": "/"}),
    )
    .await;
    assert_eq!(status, 403);

    // In a narrow window, the pause button is the first action, at the
    // top, and the keyboard reaches it: type the reason, Tab, Enter.
    browser
        .set_window_size(420, 900)
        .await
        .expect("narrowing the window");
    let first = browser
        .find(Locator::Css("#actions button"))
        .await
        .expect("the action buttons");
    assert_eq!(
        first.attr("id").await.expect("id").as_deref(),
        Some("action-pause")
    );
    assert!(first.is_displayed().await.expect("visibility"));
    screenshot(&browser, "rollout-narrow").await;
    browser
        .find(Locator::Id("reason"))
        .await
        .expect("the reason field")
        .send_keys(&format!("error budget burning in sjc{}", Key::Tab))
        .await
        .expect("typing a reason, then Tab");
    let focused = browser.active_element().await.expect("the focused element");
    assert_eq!(
        focused.attr("id").await.expect("id").as_deref(),
        Some("action-pause"),
        "Tab from the reason lands on pause"
    );
    focused
        .send_keys(&Key::Enter.to_string())
        .await
        .expect("pressing Enter on pause");
    wait_for_text(&browser, "state", "paused").await;
    browser
        .set_window_size(1280, 1000)
        .await
        .expect("widening the window");
    assert!(text_of(&browser, "flash").await.contains("pause"));
    screenshot(&browser, "rollout-paused").await;

    // Durable and audited with the signed-in token's name, as the API does.
    let detail = sandbox.client().rollout("r-1").await.expect("the rollout");
    assert_eq!(detail.summary.state, RolloutState::Paused);
    assert_eq!(
        detail.reason.as_deref(),
        Some("error budget burning in sjc")
    );
    let events = sandbox
        .client()
        .events("r-1", None, None)
        .await
        .expect("the events");
    let paused = events
        .events
        .iter()
        .find(|e| e.kind == "paused")
        .expect("a paused event");
    assert_eq!(paused.actor.as_deref(), Some("olga"));

    // Live: resumed elsewhere, the open page follows without a click.
    sandbox
        .sluice(&["rollout", "resume", "r-1", "--reason", "budget recovered"])
        .await
        .ok();
    wait_for_text(&browser, "state", "running").await;

    // The Audit view, filtered by its URL: the pause from this browser,
    // with its reason and address.
    browser
        .goto(&format!("{base}/audit?actor=olga"))
        .await
        .expect("the audit view");
    let audit = text_of(&browser, "audit").await;
    assert!(
        audit.contains("rollout paused")
            && audit.contains("error budget burning in sjc")
            && audit.contains("127.0.0.1"),
        "{audit}"
    );
    screenshot(&browser, "audit").await;
    browser.close().await.expect("closing the browser");
}

/// The rollout retrospective in the browser: the Report tab of a rolled-back
/// rollout (a pasted `?tab=report` link opens it), its downloads, and the
/// self-contained HTML page the CLI writes, opened from disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_tab_shows_the_retrospective_and_offers_its_downloads() {
    let played = crate::report::rolled_back().await;
    let (sandbox, id) = (&played.sandbox, &played.id);
    let token = sandbox
        .client()
        .create_token(Role::Viewer, None, Some("rita"), "e2e")
        .await
        .expect("creating a token")
        .token;
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    let link = format!("{}/rollouts/{id}?tab=report", sandbox.url());
    sign_in(&browser, &link, &token).await;

    assert_current_tab(&browser, "tab-report").await;
    let report = text_of(&browser, "report").await;
    for expected in [
        "retrospective",
        "rolled back",
        "Blast radius",
        "What went wrong",
    ] {
        assert!(
            report.contains(expected),
            "the tab lacks {expected:?}: {report}"
        );
    }
    assert!(browser.find(Locator::Css("#report svg")).await.is_ok());
    screenshot(&browser, "rollout-report").await;

    // Each download comes back as an attachment of its kind.
    for (format, kind) in [
        ("html", "text/html"),
        ("md", "text/markdown"),
        ("svg", "image/svg+xml"),
    ] {
        let href = browser
            .find(Locator::Id(&format!("report-{format}")))
            .await
            .expect("a download link")
            .attr("href")
            .await
            .expect("attribute")
            .expect("an href");
        let answer = browser
            .execute_async(
                "const [path, done] = arguments;
                 fetch(path).then(r => done([r.status, r.headers.get('content-type'),
                                             r.headers.get('content-disposition')]),
                                  e => done(String(e)));",
                vec![serde_json::json!(href)],
            )
            .await
            .expect("fetching a download");
        assert_eq!(answer[0], 200, "{format}: {answer}");
        assert!(
            answer[1].as_str().is_some_and(|t| t.starts_with(kind)),
            "{answer}"
        );
        assert!(
            answer[2]
                .as_str()
                .is_some_and(|d| d.starts_with("attachment")),
            "{answer}"
        );
    }

    // The HTML report is one page that needs nothing else: opened from
    // disk, its styles and chart are there.
    let file = sandbox.write("retro.html", "");
    sandbox
        .sluice(&[
            "rollout",
            "report",
            id,
            "--format",
            "html",
            "-o",
            file.to_str().expect("a path"),
        ])
        .await
        .ok();
    browser
        .goto(&format!("file://{}", file.display()))
        .await
        .expect("opening the report file");
    let heading = browser
        .find(Locator::Css("h1"))
        .await
        .expect("a heading")
        .text()
        .await
        .expect("text");
    assert_eq!(heading, format!("Rollout {id} — retrospective"));
    let bordered = browser
        .execute(
            "return getComputedStyle(document.querySelector('td')).borderTopStyle;",
            vec![],
        )
        .await
        .expect("reading a style");
    assert_eq!(bordered, "solid", "the embedded stylesheet applies");
    screenshot(&browser, "report-html").await;
    browser.close().await.expect("closing the browser");
}
