//! Simulated agents: the fleet file as the tests see it, check-in requests
//! as an agent sends them, a bounded pool of concurrent workers to play many
//! hosts at once, and a small seeded random source for the crash tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_api::agent::{CheckinRequest, CheckinResponse, ComponentReport, ReportState};
use sluice_api::host::ImportHost;
use sluice_client::{Client, ClientError};
use sluice_testkit::Sandbox;
use tokio::task::JoinSet;

/// The component every test rolls out.
pub const COMPONENT: &str = "docker-engine";
/// What every host of the fixture runs before any rollout.
pub const OLD_VERSION: &str = "1.12.6";
/// How many check-ins the simulated fleet has in flight at once.
pub const WORKERS: usize = 16;

/// The 10k-host fleet shipped with the repo (the spec's fixture).
pub fn fleet_10k() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet-10k.json")
}

/// The hosts of [`fleet_10k`].
pub fn fleet_10k_hosts() -> Vec<ImportHost> {
    load_fleet(&fleet_10k())
}

/// A server with [`fleet_10k`] imported through the CLI, and its hosts.
pub async fn sandbox_with_fleet_10k() -> (Sandbox, Vec<ImportHost>) {
    let sandbox = Sandbox::start().await;
    let fleet = fleet_10k_hosts();
    let file = fleet_10k();
    let file = file.to_str().expect("a UTF-8 path");
    let imported = sandbox
        .sluice(&[
            "hosts", "import", "--reason", "e2e", file, "--output", "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(imported["imported"], fleet.len());
    (sandbox, fleet)
}

/// Reads a fleet file (`[{"id", "labels", "components"}]`).
pub fn load_fleet(path: &Path) -> Vec<ImportHost> {
    let text = std::fs::read(path)
        .unwrap_or_else(|error| panic!("reading the fleet {}: {error}", path.display()));
    serde_json::from_slice(&text)
        .unwrap_or_else(|error| panic!("parsing the fleet {}: {error}", path.display()))
}

/// What an agent on `host` sends: its labels, and [`COMPONENT`] at `version`
/// in `state`.
pub fn report(host: &ImportHost, version: &str, state: ReportState) -> CheckinRequest {
    CheckinRequest {
        host: host.id.clone(),
        labels: host.labels.clone(),
        components: BTreeMap::from([(
            COMPONENT.to_owned(),
            ComponentReport {
                version: version.to_owned(),
                state,
                message: None,
                drifted: false,
            },
        )]),
    }
}

/// The version of [`COMPONENT`] a check-in answer names, if any.
pub fn desired(answer: &CheckinResponse) -> Option<&str> {
    answer
        .components
        .get(COMPONENT)
        .map(|desired| desired.version.as_str())
}

/// A check-in that fails static like the agent: while the server is down
/// (refused, reset, 503), retry with capped backoff, changing nothing, for
/// up to two minutes. Any other refusal is a bug and fails the test.
pub async fn checkin_retrying(client: &Client, request: &CheckinRequest) -> CheckinResponse {
    let mut backoff = Duration::from_millis(20);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match client.checkin(request).await {
            Ok(answer) => return answer,
            Err(error) if is_server_down(&error) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
            Err(error) => panic!("check-in of {} failed: {error}", request.host),
        }
    }
}

/// Whether `error` says the server is not there (killed or restarting)
/// rather than that it refused the request.
pub fn is_server_down(error: &ClientError) -> bool {
    error.is_unreachable() || error.status() == Some(503)
}

/// Runs `job(0..count)` on at most `workers` concurrent tasks and returns
/// the results in index order.
pub async fn for_each_concurrent<T, F, Fut>(count: usize, workers: usize, job: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..workers.clamp(1, count.max(1)) {
        let job = Arc::clone(&job);
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return done;
                }
                done.push((index, job(index).await));
            }
        });
    }
    let mut results = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(done) => results.extend(done),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("a worker was cancelled: {error}"),
        }
    }
    results.sort_unstable_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// SplitMix64: enough randomness to pick crash moments, seeded so that a
/// failing run can be replayed (`E2E_SEED=…`).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `E2E_SEED` if set, else from the clock; says which.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("E2E_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|since| since.as_nanos() as u64)
                    .unwrap_or(0)
            });
        eprintln!("{test}: E2E_SEED={seed}");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low).max(1)
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}
