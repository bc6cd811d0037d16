//! The server in process (feature `app`): [`spawn_app`] builds a
//! `sluice_server::Application` on port 0 with a fresh data directory, in a
//! runtime and thread of its own, and returns a [`TestApp`] whose methods
//! are requests. Logs go to stdout only when `TEST_LOG` is set.
//!
//! [`TestApp::crash`] drops the server's runtime without a graceful
//! shutdown (nothing queued is flushed), [`TestApp::stop`] shuts it down
//! gracefully; both hand back the data directory for [`spawn_app_in`].

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sluice_server::{admin_token_path, Application, Config, DatabaseUrl};
use sluice_store::{SqliteStore, Store};
use tempfile::TempDir;
use tokio::sync::oneshot;

use crate::wait::{wait_for, DEADLINE};

static TRACING: Once = Once::new();

fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .init();
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// How to stop the server thread.
#[derive(Debug)]
enum Stop {
    Graceful,
    Crash,
}

/// A server running in this process, and an HTTP client for it.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The admin token, read from `<data-dir>/admin.token`.
    pub admin: String,
    pub client: reqwest::Client,
    data_dir: Option<Arc<TempDir>>,
    stop: Option<oneshot::Sender<Stop>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a server on a fresh data directory.
pub async fn spawn_app() -> TestApp {
    spawn_app_in(Arc::new(TempDir::new().expect("temp dir"))).await
}

/// Starts a server on `data_dir` (a fresh one, or one a stopped server left).
pub async fn spawn_app_in(data_dir: Arc<TempDir>) -> TestApp {
    spawn_app_on(data_dir, None).await
}

/// Starts a server keeping its state in the PostgreSQL database at
/// `database_url` when given (`admin.token` still goes to `data_dir`).
pub async fn spawn_app_on(data_dir: Arc<TempDir>, database_url: Option<&str>) -> TestApp {
    spawn(data_dir, database_url, None, |_| {}).await
}

/// Starts a server on `data_dir` whose SQLite store is wrapped by `wrap`
/// (a store that refuses some writes, say).
pub async fn spawn_app_with(
    data_dir: Arc<TempDir>,
    wrap: fn(SqliteStore) -> Arc<dyn Store>,
) -> TestApp {
    spawn(data_dir, None, Some(Box::new(wrap)), |_| {}).await
}

/// A SQLite store wrapped by a test (see [`spawn_app_configured`]).
pub type Wrap = Box<dyn FnOnce(SqliteStore) -> Arc<dyn Store> + Send>;

/// Starts a server on `data_dir` with its settings changed by `configure`
/// (the check-in queue's bound, say), and its SQLite store wrapped by
/// `wrap` when given (a store whose commits a test holds, say).
pub async fn spawn_app_configured(
    data_dir: Arc<TempDir>,
    wrap: Option<Wrap>,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    spawn(data_dir, None, wrap, configure).await
}

async fn spawn(
    data_dir: Arc<TempDir>,
    database_url: Option<&str>,
    wrap: Option<Wrap>,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    init_tracing();
    let mut config = Config::new(
        "127.0.0.1:0".parse().expect("address"),
        data_dir.path().to_path_buf(),
    );
    config.database_url = database_url.map(DatabaseUrl::new);
    // A restart after a crash waits for the crashed replica's lease to run
    // out: short in tests.
    config.replica.lease_ttl = Duration::from_secs(2);
    config.tick_interval = Duration::from_millis(100);
    config.gate_timeout = Duration::from_secs(2);
    configure(&mut config);
    let (ready_tx, ready_rx) = oneshot::channel::<Result<SocketAddr, String>>();
    let (stop_tx, stop_rx) = oneshot::channel::<Stop>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let built = match wrap {
                None => Application::build(config).await,
                Some(wrap) => match SqliteStore::open(&config.data_dir).await {
                    Ok(store) => Application::build_with_store(config, wrap(store)).await,
                    Err(error) => Err(error.into()),
                },
            };
            let app = match built {
                Ok(app) => app,
                Err(error) => {
                    let _ = ready_tx.send(Err(format!("{error:#}")));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(app.local_addr()));
            let (graceful_tx, graceful_rx) = oneshot::channel::<()>();
            let run = app.run_until_stopped(async {
                let _ = graceful_rx.await;
            });
            tokio::pin!(run);
            tokio::select! {
                result = &mut run => result.expect("server ran"),
                stop = stop_rx => match stop {
                    Ok(Stop::Graceful) | Err(_) => {
                        let _ = graceful_tx.send(());
                        run.await.expect("server stopped");
                    }
                    Ok(Stop::Crash) => {}
                },
            }
        });
        // A crash: whatever is still running is dropped, nothing is flushed.
        runtime.shutdown_background();
    });
    let address = ready_rx
        .await
        .expect("server thread answered")
        .expect("server built");
    if database_url.is_some() {
        // The only replica of its database: it leads once a crashed
        // predecessor's lease ran out.
        let readyz = format!("http://{address}/readyz");
        wait_for("the server to lead", DEADLINE, || async {
            let ready: serde_json::Value = match reqwest::get(&readyz).await {
                Ok(response) => response.json().await.unwrap_or_default(),
                Err(error) => return Err(error.to_string()),
            };
            if ready["role"] == "leader" {
                Ok(())
            } else {
                Err(ready.to_string())
            }
        })
        .await;
    }
    let admin = std::fs::read_to_string(admin_token_path(data_dir.path()))
        .expect("admin token written at first start")
        .trim()
        .to_owned();
    TestApp {
        address: format!("http://{address}"),
        admin,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        data_dir: Some(data_dir),
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

impl TestApp {
    fn halt(&mut self, how: Stop) -> Arc<TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(how);
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread");
        }
        self.data_dir.take().expect("data dir")
    }

    /// Graceful shutdown; the data directory survives for a restart.
    pub fn stop(mut self) -> Arc<TempDir> {
        self.halt(Stop::Graceful)
    }

    /// Drops the server without flushing anything queued.
    pub fn crash(mut self) -> Arc<TempDir> {
        self.halt(Stop::Crash)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Response {
        self.send(reqwest::Method::POST, path, token, body).await
    }

    /// `METHOD path` with `token` and a JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `PUT /v1/freeze` with the admin token and `{"reason": REASON}`.
    pub async fn freeze(&self, reason: &str) -> Response {
        let body = json!({ "reason": reason });
        self.send(reqwest::Method::PUT, "/v1/freeze", &self.admin, &body)
            .await
    }

    /// `DELETE /v1/freeze` with the admin token and `{"reason": REASON}`.
    pub async fn unfreeze(&self, reason: &str) -> Response {
        let body = json!({ "reason": reason });
        self.send(reqwest::Method::DELETE, "/v1/freeze", &self.admin, &body)
            .await
    }

    /// `GET path` with the admin token; asserts 200 and returns the JSON body.
    pub async fn json(&self, path: &str) -> Value {
        let response = self.get(path, &self.admin).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// Waits until rollout `id` is in `state`; returns its detail then.
    pub async fn wait_for_state(&self, id: &str, state: &str) -> Value {
        wait_for(&format!("{id} to be {state}"), DEADLINE, || async {
            let detail = self.detail(id).await;
            if detail["state"] == state {
                Ok(detail)
            } else {
                Err(detail["state"].clone())
            }
        })
        .await
    }

    pub async fn checkin_as(&self, token: &str, body: &Value) -> Response {
        self.post("/v1/agent/checkin", token, body).await
    }

    /// Checks in as `host` with the admin token and returns the answer.
    pub async fn checkin(&self, host: &str, labels: Value, components: Value) -> Value {
        let response = self
            .checkin_as(
                &self.admin,
                &json!({"host": host, "labels": labels, "components": components}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "check-in of {host}");
        response.json().await.expect("check-in answer")
    }

    /// `POST /v1/rollouts` of `plan` (YAML, or a [`crate::plan::Plan`]).
    pub async fn create_rollout(&self, plan: impl Display) -> Response {
        self.client
            .post(self.url("/v1/rollouts"))
            .bearer_auth(&self.admin)
            .header("content-type", "application/yaml")
            .body(plan.to_string())
            .send()
            .await
            .expect("request sent")
    }

    /// Creates a rollout and returns its id.
    pub async fn rollout(&self, plan: impl Display) -> String {
        let response = self.create_rollout(plan).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let created: Value = response.json().await.expect("json");
        created["id"].as_str().expect("id").to_owned()
    }

    pub async fn action(&self, id: &str, action: &str, reason: &str) -> Response {
        self.post(
            &format!("/v1/rollouts/{id}/{action}"),
            &self.admin,
            &json!({ "reason": reason }),
        )
        .await
    }

    pub async fn detail(&self, id: &str) -> Value {
        self.json(&format!("/v1/rollouts/{id}")).await
    }

    /// The rollout's events, oldest first.
    pub async fn events(&self, id: &str) -> Vec<Value> {
        let events = self.json(&format!("/v1/rollouts/{id}/events")).await;
        events["events"].as_array().expect("events").clone()
    }

    /// `GET /v1/hosts/{id}` with the admin token.
    pub async fn host(&self, id: &str) -> Value {
        self.json(&format!("/v1/hosts/{id}")).await
    }

    /// `POST /v1/hosts/import` with the admin token, for a test's reason.
    pub async fn import(&self, fleet: &Value) -> Response {
        self.post("/v1/hosts/import?reason=test%20fleet", &self.admin, fleet)
            .await
    }

    /// A new token of `role` (bound to `host` for agents).
    pub async fn token(&self, role: &str, host: Option<&str>) -> String {
        let response = self
            .post(
                "/v1/tokens",
                &self.admin,
                &json!({"role": role, "host": host, "reason": "a test's caller"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let created: Value = response.json().await.expect("json");
        created["token"].as_str().expect("token").to_owned()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.halt(Stop::Graceful);
        }
    }
}
