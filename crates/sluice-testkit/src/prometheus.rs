//! A real Prometheus (Debian's `prometheus`, which `scripts/test`
//! installs; `SLUICE_TEST_PROMETHEUS` names another binary) scraping the
//! jobs a test gives it every second, on a free loopback port, killed on
//! drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::wait::{wait_for, DEADLINE};

/// One scrape job.
#[derive(Debug, Clone)]
pub struct Job {
    name: String,
    targets: Vec<String>,
    metrics_path: Option<String>,
    bearer_token: Option<String>,
    honor_labels: bool,
}

impl Job {
    /// `name` scraping `/metrics` of each `HOST:PORT` of `targets`.
    pub fn new(name: &str, targets: impl IntoIterator<Item = String>) -> Job {
        Job {
            name: name.to_owned(),
            targets: targets.into_iter().collect(),
            metrics_path: None,
            bearer_token: None,
            honor_labels: false,
        }
    }

    /// Scrapes `path` instead of `/metrics`.
    pub fn path(mut self, path: &str) -> Job {
        self.metrics_path = Some(path.to_owned());
        self
    }

    /// Sends `Authorization: Bearer TOKEN` (kept in a file of the run's).
    pub fn bearer(mut self, token: &str) -> Job {
        self.bearer_token = Some(token.to_owned());
        self
    }

    /// Keeps the scraped series' own `instance` and `job` labels.
    pub fn honor_labels(mut self) -> Job {
        self.honor_labels = true;
        self
    }
}

/// A Prometheus process; killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    /// Its HTTP API's base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
    _dir: TempDir,
    client: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
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
    /// Starts Prometheus scraping `jobs` every second and waits until it
    /// answers queries.
    pub async fn start(jobs: &[Job]) -> Prometheus {
        // reqwest is built without a TLS provider: the process's is ring,
        // as sluice-client installs it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = TempDir::new().expect("temp dir");
        let mut config = String::from(
            "global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }\nscrape_configs:\n",
        );
        for (index, job) in jobs.iter().enumerate() {
            let targets: Vec<String> = job.targets.iter().map(|t| format!("\"{t}\"")).collect();
            config.push_str(&format!("  - job_name: \"{}\"\n", job.name));
            if let Some(path) = &job.metrics_path {
                config.push_str(&format!("    metrics_path: \"{path}\"\n"));
            }
            if let Some(token) = &job.bearer_token {
                let file = dir.path().join(format!("token-{index}"));
                std::fs::write(&file, token).expect("token file");
                config.push_str(&format!(
                    "    authorization: {{ credentials_file: \"{}\" }}\n",
                    file.display()
                ));
            }
            if job.honor_labels {
                config.push_str("    honor_labels: true\n");
            }
            config.push_str(&format!(
                "    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ));
        }
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).expect("prometheus.yml");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(binary())
            .arg(format!("--config.file={}", file.display()))
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
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
        };
        let ready = format!("{}/-/ready", prometheus.url);
        wait_for("Prometheus to be ready", DEADLINE, || async {
            let answer = prometheus.client.get(&ready).send().await.ok()?;
            answer.status().is_success().then_some(())
        })
        .await;
        prometheus
    }

    /// The series `query` gives now (`data.result`), if Prometheus answered.
    pub async fn query(&self, query: &str) -> Option<Vec<Value>> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            [("query", query)],
        )
        .ok()?;
        let answer: Value = self.client.get(url).send().await.ok()?.json().await.ok()?;
        answer["data"]["result"].as_array().cloned()
    }

    /// Waits until `query` gives at least `series` series.
    pub async fn wait_for_series(&self, query: &str, series: usize) -> Vec<Value> {
        let what = format!("Prometheus to have {series} series of {query}");
        wait_for(&what, DEADLINE, || async {
            let result = self.query(query).await.unwrap_or_default();
            if result.len() >= series {
                Ok(result)
            } else {
                Err(format!("{} series", result.len()))
            }
        })
        .await
    }
}
