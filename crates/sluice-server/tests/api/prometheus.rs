//! Prometheus gates against a real Prometheus (Debian's `prometheus`, which
//! `scripts/test` installs): it scrapes a metric the test sets, and the
//! controller queries it like any production Prometheus.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use sluice_testkit::{Gate, OnFailure, Stage};
use tempfile::TempDir;

use crate::helpers::{fleet, plan, serve, spawn_app, start, wait_for, TestApp, DEADLINE};

/// A Prometheus process scraping one target every second; killed on drop.
struct Prometheus {
    url: String,
    child: Child,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("SLUICE_TEST_PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into()),
    );
    assert!(
        path.exists(),
        "{} not found: these tests need a real Prometheus; run ./scripts/test \
         (it installs Debian's prometheus) or set SLUICE_TEST_PROMETHEUS",
        path.display()
    );
    path
}

impl Prometheus {
    /// Starts Prometheus scraping `target`, and waits until it has scraped
    /// `metric` at least once.
    async fn start(target: SocketAddr, metric: &str) -> Prometheus {
        let dir = TempDir::new().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
                 scrape_configs:\n  - job_name: docker\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .expect("prometheus.yml");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus");
        let prometheus = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let query = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", prometheus.url),
            [("query", metric)],
        )
        .expect("query url");
        wait_for("Prometheus to scrape the target", DEADLINE, || async {
            let answer: Value = client
                .get(query.clone())
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (!answer["data"]["result"].as_array()?.is_empty()).then_some(())
        })
        .await;
        prometheus
    }
}

/// A server with two hosts, and a Prometheus scraping an exporter whose
/// `container_restarts_rate` is `rate`.
async fn watched(rate: f64) -> (TestApp, Prometheus) {
    // The server first: it sets up TLS for every HTTP client of the process.
    let app = spawn_app().await;
    app.import(&fleet(2)).await;
    let text = format!("container_restarts_rate{{host=\"a\"}} {rate}\n");
    let exporter = serve(axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { text.clone() }),
    ))
    .await;
    let prometheus = Prometheus::start(exporter, "container_restarts_rate").await;
    (app, prometheus)
}

fn gate<'a>(detail: &'a Value, name: &str) -> &'a Value {
    detail["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("gate {name} in {detail}"))
}

#[tokio::test]
async fn a_failing_prometheus_gate_rolls_back_with_its_evidence() {
    let (app, prometheus) = watched(0.9).await;
    let source = plan(
        "gated",
        [Stage::percent(50).bake("1h"), Stage::percent(100)],
    )
    .gate(
        Gate::prometheus(
            "restarts",
            &prometheus.url,
            "max(container_restarts_rate)",
            "> 0.5",
        )
        .failing_for(2)
        .interval("1s"),
    )
    .on_failure(OnFailure::Rollback);
    let id = start(&app, source).await;
    let rolled_back = app.wait_for_state(&id, "rolled_back").await;
    assert_eq!(gate(&rolled_back, "restarts")["latest"]["outcome"], "fail");

    let events = app.events(&id).await;
    let failed = events
        .iter()
        .find(|e| e["kind"] == "gate_failed")
        .expect("a gate_failed event");
    assert_eq!(failed["data"]["gate"], "restarts");
    let evidence = failed["data"]["evidence"].as_str().expect("evidence");
    assert!(
        evidence.contains("max(container_restarts_rate)")
            && evidence.contains("0.9")
            && evidence.contains("> 0.5"),
        "{evidence}"
    );
}

/// Starts a rollout watched by one Prometheus gate named `name` on `query`.
async fn gated_rollout(app: &TestApp, prometheus: &Prometheus, name: &str, query: &str) -> String {
    let source = plan(name, [Stage::percent(50).bake("1h"), Stage::percent(100)])
        .gate(Gate::prometheus(name, &prometheus.url, query, "> 0.5").interval("1s"));
    let id = start(app, source).await;
    id
}

#[tokio::test]
async fn a_healthy_metric_passes_with_its_value_as_evidence() {
    let (app, prometheus) = watched(0.1).await;
    let id = gated_rollout(
        &app,
        &prometheus,
        "restarts",
        "max(container_restarts_rate)",
    )
    .await;
    let detail = wait_for("the gate's first result", DEADLINE, || async {
        let detail = app.detail(&id).await;
        (!gate(&detail, "restarts")["latest"].is_null()).then_some(detail)
    })
    .await;
    let restarts = gate(&detail, "restarts");
    assert_eq!(restarts["latest"]["outcome"], "pass", "{detail}");
    let evidence = restarts["latest"]["evidence"].as_str().expect("evidence");
    assert!(evidence.contains("0.1"), "{evidence}");
    assert_eq!(app.detail(&id).await["state"], "running");
}

#[tokio::test]
async fn a_missing_metric_is_a_failure() {
    let (app, prometheus) = watched(0.1).await;
    let id = gated_rollout(&app, &prometheus, "latency", "max(request_latency_seconds)").await;
    let paused = app.wait_for_state(&id, "paused").await;
    let latency = gate(&paused, "latency");
    assert_eq!(latency["latest"]["outcome"], "no_data", "{paused}");
    assert!(
        paused["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("latency")),
        "{paused}"
    );
}
