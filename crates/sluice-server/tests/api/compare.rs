//! Comparison gates against a real Prometheus: it scrapes an exporter of
//! every host's `restart_rate` (the series carry their hosts' `instance`,
//! kept with `honor_labels`) and the server's cohorts
//! (`GET /v1/metrics/cohorts`). The test plays the agents with check-ins
//! and sets each host's rate as the version it runs: the change doubles
//! it. The gate pauses the canary stage with its figures as evidence, and
//! the dashboard's Gates tab plots canary against baseline, as served and
//! as headless Chromium lays it out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_testkit::chromium::{sign_in, Driver};
use sluice_testkit::prometheus::{Job, Prometheus};
use sluice_testkit::{Gate, Stage};

use crate::dashboard::Browser;
use crate::helpers::{desired, plan, serve, spawn_app, start, wait_for, TestApp, DEADLINE};

/// Hosts `c{i}.example.net`, web then db.
const HOSTS: usize = 8;

fn id(i: usize) -> String {
    format!("c{i}.example.net")
}

fn role(i: usize) -> &'static str {
    if i < HOSTS / 2 {
        "web"
    } else {
        "db"
    }
}

/// Each host's restart rate: web 1, db 3, twice that at 2.0.
type Rates = Arc<Mutex<BTreeMap<String, f64>>>;

async fn check_in(app: &TestApp, rates: &Rates, i: usize, version: &str) -> Value {
    let answer = app
        .checkin(
            &id(i),
            json!({"role": role(i)}),
            json!({"docker-engine": {"version": version, "state": "ok"}}),
        )
        .await;
    let usual = if role(i) == "db" { 3.0 } else { 1.0 };
    let rate = if version == "2.0" { usual * 2.0 } else { usual };
    rates.lock().expect("rates").insert(id(i), rate);
    answer
}

#[tokio::test]
async fn a_comparison_gate_pauses_a_doubled_canary_and_the_gates_tab_plots_it() {
    let app = spawn_app().await;
    let rates: Rates = Arc::default();
    for i in 0..HOSTS {
        check_in(&app, &rates, i, "1.0").await;
    }
    let exported = Arc::clone(&rates);
    let exporter = serve(axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let rates = exported.lock().expect("rates").clone();
            async move {
                let mut text = String::from("# TYPE restart_rate gauge\n");
                for (host, rate) in rates {
                    text.push_str(&format!(
                        "restart_rate{{instance=\"{host}:9100\"}} {rate}\n"
                    ));
                }
                text
            }
        }),
    ))
    .await;
    let sluice = app.address.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&[
        Job::new("node", [exporter.to_string()]).honor_labels(),
        Job::new("sluice", [sluice])
            .path("/v1/metrics/cohorts")
            .bearer(&app.admin)
            .honor_labels(),
    ])
    .await;
    prometheus.wait_for_series("restart_rate", HOSTS).await;

    // The cohorts endpoint takes a viewer's token, not an agent's.
    let cohorts = app.get("/v1/metrics/cohorts", "").await;
    assert_eq!(cohorts.status(), StatusCode::UNAUTHORIZED);
    let agent = app.token("agent", Some(&id(0))).await;
    assert_eq!(
        app.get("/v1/metrics/cohorts", &agent).await.status(),
        StatusCode::FORBIDDEN
    );

    let source = plan(
        "compared",
        [Stage::percent(25).bake("1m"), Stage::percent(100)],
    )
    .spread(&["role"])
    .gate(
        // Prometheus may not have scraped the cohorts at the bake's start.
        Gate::compare("restarts", &prometheus.url, "restart_rate", "ratio > 1.5")
            .min_hosts(2)
            .no_data("pass")
            .failing_for(3)
            .interval("1s"),
    );
    let id_ = start(&app, source).await;
    // The canaries (one per stratum) apply and report.
    let mut canaries = Vec::new();
    for i in 0..HOSTS {
        let answer = check_in(&app, &rates, i, "1.0").await;
        if desired(&answer) == "2.0" {
            canaries.push(i);
        }
    }
    assert_eq!(canaries.len(), 2, "one canary per stratum");
    for &i in &canaries {
        check_in(&app, &rates, i, "2.0").await;
    }
    let text = app
        .get("/v1/metrics/cohorts", &app.admin)
        .await
        .text()
        .await
        .expect("text");
    assert!(text.contains("# TYPE sluice_cohort gauge"), "{text}");
    for &i in &canaries {
        let line = format!(
            "sluice_cohort{{rollout=\"{id_}\",cohort=\"canary\",host=\"{}\",instance=\"{}:9100\"}} 1",
            id(i),
            id(i)
        );
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert_eq!(text.matches("cohort=\"baseline\"").count(), 2, "{text}");

    let paused = app.wait_for_state(&id_, "paused").await;
    let reason = paused["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("gate restarts failed 3 evaluations in a row"),
        "{reason}"
    );
    let latest = &paused["gates"][0]["latest"];
    assert_eq!(latest["outcome"], "fail", "{paused}");
    let figures = &latest["comparison"];
    assert_eq!(figures["aggregate"], "mean");
    // Canaries 2 and 6 against 1 and 3.
    assert_eq!(figures["canary"], 4.0, "{figures}");
    assert_eq!(figures["baseline"], 2.0, "{figures}");
    assert_eq!(figures["ratio"], 2.0, "{figures}");
    assert_eq!(
        (
            figures["canary_hosts"].as_u64(),
            figures["baseline_hosts"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert!(
        figures["query"]
            .as_str()
            .is_some_and(|q| q.starts_with("sum by (cohort, host) ((restart_rate) * on (instance)")),
        "{figures}"
    );
    let events = app.events(&id_).await;
    let evaluated: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "gate_evaluated" && !e["data"]["comparison"].is_null())
        .collect();
    assert!(evaluated.len() >= 3, "{events:?}");

    // The Gates tab: canary against baseline, one line each.
    let browser = Browser::signed_in(&app, &app.admin).await;
    let page = wait_for("the gates tab", DEADLINE, || async {
        browser.fetch(&format!("/rollouts/{id_}?tab=gates")).await
    })
    .await;
    let figure = page
        .split("<figure class=\"comparison\" data-gate=\"restarts\">")
        .nth(1)
        .and_then(|rest| rest.split("</figure>").next())
        .unwrap_or_else(|| panic!("no comparison chart in {page}"));
    assert!(
        figure.contains("class=\"canary\" points=")
            && figure.contains("class=\"baseline\" points="),
        "{figure}"
    );
    assert!(
        figure.contains("canary <b>4</b>") && figure.contains("baseline <b>2</b>"),
        "{figure}"
    );

    // And in a real browser: both lines are laid out across the plot, the
    // canary's latest point above the baseline's, the legend legible.
    let driver = Driver::start().await;
    let chromium = driver.browser().await;
    sign_in(
        &chromium,
        &format!("{}/rollouts/{id_}?tab=gates", app.address),
        &app.admin,
    )
    .await;
    let drawn = chromium
        .execute(
            "const figure = document.querySelector('figure.comparison[data-gate=\"restarts\"]');
             if (!figure) return null;
             const lines = {};
             for (const line of figure.querySelectorAll('polyline')) {
               const box = line.getBoundingClientRect();
               const last = line.points.getItem(line.points.numberOfItems - 1);
               lines[line.getAttribute('class')] =
                 {width: box.width, points: line.points.numberOfItems, last_y: last.y};
             }
             return {lines, legend: figure.querySelector('.legend').innerText};",
            vec![],
        )
        .await
        .expect("reading the chart in the browser");
    let lines = &drawn["lines"];
    for name in ["canary", "baseline"] {
        assert!(
            lines[name]["width"].as_f64().is_some_and(|w| w > 100.0),
            "the {name} line spans the plot: {drawn}"
        );
        assert!(
            lines[name]["points"].as_u64().is_some_and(|n| n >= 3),
            "one point per evaluation: {drawn}"
        );
    }
    assert!(
        lines["canary"]["last_y"].as_f64() < lines["baseline"]["last_y"].as_f64(),
        "the canary (4) is drawn above the baseline (2): {drawn}"
    );
    let legend = drawn["legend"].as_str().unwrap_or_default();
    assert!(
        legend.contains("canary 4") && legend.contains("baseline 2"),
        "{drawn}"
    );
    chromium.close().await.expect("closing the browser");
}
