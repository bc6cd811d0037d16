//! The agent loop: one `tokio::select!` over four events — the check-in
//! timer, the server's answer, a host command finishing, shutdown — with at
//! most one check-in and one host operation in flight.
//!
//! A round: the timer fires → survey (labels, installed versions) → check-in
//! → the answer names desired versions → facts files are written, and the
//! first apply-mode component whose installed version differs is applied
//! (apply, re-read the version, health check) → an immediate check-in
//! reports the outcome, whose answer may start the next apply.
//!
//! Fail static: a failed check-in changes nothing on the host; the next try
//! waits a random time in `[0, min(cap, interval × 2^failures))` (full
//! jitter; cap = 10 × interval, at most 5 min, at least the interval).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sluice_api::agent::{CheckinRequest, CheckinResponse, ComponentReport, Desired, ReportState};
use sluice_client::{Client, ClientError};
use tokio::time::Instant;

use crate::config::{AgentConfig, ComponentConfig, Mode};
use crate::facts::{facts_json, write_facts};
use crate::ops::{Failure, HostOps};
use crate::state::{AgentState, ComponentState, StateError};

type Task<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why the agent stopped (or, with `--once`, why its round failed).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The state file could not be read or written: the agent cannot keep
    /// its promises about restarts, so it stops.
    #[error(transparent)]
    State(#[from] StateError),
    /// `--once`: the check-in failed (nothing was changed on the host).
    #[error("check-in failed, nothing changed: {0}")]
    Checkin(#[source] ClientError),
    /// `--once`: the host's labels could not be read.
    #[error("cannot read the host's labels: {0}")]
    Labels(String),
}

/// The result of a survey: labels and installed versions.
struct Survey {
    labels: Result<BTreeMap<String, String>, Failure>,
    installed: Vec<(String, Result<String, Failure>)>,
}

/// The result of one apply: the version read afterwards and the outcome.
struct Applied {
    component: String,
    version: String,
    installed: Result<String, Failure>,
    outcome: Result<(), Failure>,
}

enum Work {
    Survey(Survey),
    Applied(Applied),
}

/// One host's agent: its configuration, the shared HTTP client, the host
/// operations, and its state (loaded from and saved to `state_file`).
#[derive(Debug)]
pub struct Agent<H: HostOps> {
    config: AgentConfig,
    client: Client,
    ops: Arc<H>,
    state: AgentState,
    rng: fastrand::Rng,
    /// The server's `next_checkin_s`, once it answered; else the config's.
    interval: Duration,
    /// Check-ins failed in a row.
    failures: u32,
    /// The labels `HostOps::labels` gave at the last survey.
    labels: BTreeMap<String, String>,
    /// An apply finished and its outcome is not reported yet.
    report_due: bool,
}

impl<H: HostOps> Agent<H> {
    /// An agent for `config`, checking in with `client` (which may be shared
    /// by many agents) and acting on the host through `ops`. Loads the state
    /// file when there is one.
    pub fn new(config: AgentConfig, client: Client, ops: Arc<H>) -> Result<Agent<H>, AgentError> {
        let mut state = match &config.state_file {
            Some(path) => AgentState::load(path)?,
            None => AgentState::default(),
        };
        state.host = config.id.to_string();
        Ok(Agent {
            interval: config.interval,
            rng: fastrand::Rng::new(),
            config,
            client,
            ops,
            state,
            failures: 0,
            labels: BTreeMap::new(),
            report_due: false,
        })
    }

    /// Seeds the jitter (for reproducible simulations).
    pub fn with_seed(mut self, seed: u64) -> Agent<H> {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    /// The state as it stands (what the next check-in reports).
    pub fn state(&self) -> &AgentState {
        &self.state
    }

    /// Runs until `shutdown` completes. A host command in flight at shutdown
    /// is killed with its process group; the state file says it was
    /// interrupted, and the next start deals with it (see [`Agent::recover`]).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        self.event_loop(shutdown, false).await
    }

    /// One round for cron or a Puppet exec: check in, apply what differs,
    /// report, and return. A failed check-in is an error (nothing changed).
    pub async fn run_once(self) -> Result<(), AgentError> {
        self.event_loop(std::future::pending(), true).await
    }

    async fn event_loop(
        mut self,
        shutdown: impl Future<Output = ()>,
        once: bool,
    ) -> Result<(), AgentError> {
        self.recover().await?;
        tokio::pin!(shutdown);
        let mut work: Option<Task<Work>> = None;
        let mut call: Option<Task<Result<CheckinResponse, ClientError>>> = None;
        // The first check-in goes out at once with `--once`; a daemon waits
        // up to a fifth of its interval first, so that a fleet whose agents
        // restart together does not check in together.
        let mut tick: Option<Instant> = Some(if once {
            Instant::now()
        } else {
            Instant::now() + self.interval.mul_f64(0.2 * self.rng.f64())
        });
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
                () = sleep_until(tick) => {
                    tick = None;
                    if call.is_some() {
                        // The answer's handler schedules the next check-in.
                    } else if work.is_none() {
                        self.report_due = false;
                        work = Some(self.survey());
                    } else {
                        // An apply is running: report it as `applying`.
                        call = Some(self.checkin());
                    }
                }
                done = run_task(&mut work) => {
                    work = None;
                    match done {
                        Work::Survey(survey) => match self.surveyed(survey)? {
                            Ok(()) => call = Some(self.checkin()),
                            Err(error) if once => return Err(AgentError::Labels(error)),
                            Err(error) => {
                                tracing::warn!("cannot read the host's labels, not checking in: {error}");
                                tick = Some(self.backoff());
                            }
                        },
                        Work::Applied(applied) => {
                            self.applied(applied)?;
                            // Report the outcome right away (once the answer
                            // to a check-in in flight, if any, is in).
                            self.report_due = true;
                            tick = Some(Instant::now());
                        }
                    }
                }
                answer = run_task(&mut call) => {
                    call = None;
                    match answer {
                        Ok(answer) => {
                            self.failures = 0;
                            self.interval = Duration::from_secs(answer.next_checkin_s.max(1));
                            let next = self.answered(answer, work.is_none())?;
                            if work.is_none() {
                                work = next;
                            }
                            if once && work.is_none() {
                                return Ok(());
                            }
                            // While an apply runs, check-ins go on and
                            // report it `applying`.
                            tick = Some(if self.report_due && work.is_none() {
                                Instant::now()
                            } else {
                                self.jittered()
                            });
                        }
                        Err(error) if once => return Err(AgentError::Checkin(error)),
                        Err(error) => {
                            let retry = self.backoff();
                            tracing::warn!(
                                failures = self.failures,
                                "check-in failed, changing nothing; retrying in {:.1}s: {error}",
                                retry.saturating_duration_since(Instant::now()).as_secs_f64()
                            );
                            tick = Some(retry);
                        }
                    }
                }
            }
        }
    }

    /// At start, an apply recorded as in progress was interrupted (crash,
    /// reboot, kill). It is never re-run blindly: the installed version is
    /// read first. If the host runs the version being applied, the health
    /// check runs and its result is reported. If not, the apply is retried
    /// once, and only if the next answer still names that version; a second
    /// interruption of the same version reports it `failed`.
    pub async fn recover(&mut self) -> Result<(), AgentError> {
        let components = self.config.components.clone();
        for component in &components {
            let Some(entry) = self.state.components.get(&component.name) else {
                continue;
            };
            let Some(version) = entry.applying.clone() else {
                continue;
            };
            let desired = entry.desired.clone().unwrap_or(Desired {
                version: version.clone(),
                rollout: None,
                payload: None,
            });
            let installed = self.ops.installed(component, Some(&desired)).await;
            let entry = self
                .state
                .components
                .entry(component.name.clone())
                .or_default();
            entry.applying = None;
            match installed {
                Ok(installed) if installed == version => {
                    tracing::info!(component = %component.name, %version, "an interrupted apply had completed; checking health");
                    entry.installed = Some(installed);
                    let health = self.ops.health(component, &desired).await;
                    let entry = self
                        .state
                        .components
                        .entry(component.name.clone())
                        .or_default();
                    entry.retried = None;
                    record_outcome(entry, &version, health);
                }
                installed => {
                    if let Ok(installed) = installed {
                        entry.installed = Some(installed);
                    }
                    if entry.retried.as_deref() == Some(version.as_str()) {
                        tracing::warn!(component = %component.name, %version, "the apply was interrupted twice; reporting it failed");
                        entry.retried = None;
                        record_outcome(
                            entry,
                            &version,
                            Err(format!("the apply of {version} was interrupted twice (agent restarted); not retried")),
                        );
                    } else {
                        tracing::warn!(component = %component.name, %version, "an interrupted apply did not complete; it is retried once if the server still names it");
                        entry.retried = Some(version.clone());
                        entry.state = ReportState::Applying;
                        entry.message = Some(format!(
                            "the apply of {version} was interrupted (agent restarted); retrying once if still desired"
                        ));
                    }
                }
            }
            self.save()?;
        }
        Ok(())
    }

    fn survey(&self) -> Task<Work> {
        let ops = Arc::clone(&self.ops);
        let components: Vec<(ComponentConfig, Option<Desired>)> = self
            .config
            .components
            .iter()
            .map(|component| {
                let desired = self
                    .state
                    .components
                    .get(&component.name)
                    .and_then(|entry| entry.desired.clone());
                (component.clone(), desired)
            })
            .collect();
        Box::pin(async move {
            let labels = ops.labels().await;
            let mut installed = Vec::with_capacity(components.len());
            for (component, desired) in &components {
                let version = ops.installed(component, desired.as_ref()).await;
                installed.push((component.name.clone(), version));
            }
            Work::Survey(Survey { labels, installed })
        })
    }

    /// Records a survey; `Err` when the labels could not be read.
    fn surveyed(&mut self, survey: Survey) -> Result<Result<(), Failure>, AgentError> {
        for (name, installed) in survey.installed {
            let Some(component) = self.component(&name).cloned() else {
                continue;
            };
            let entry = self.state.components.entry(name.clone()).or_default();
            match installed {
                Ok(version) => {
                    entry.installed = Some(version);
                    settle(&component, entry);
                }
                Err(error) => {
                    tracing::warn!(component = %name, "cannot read the installed version: {error}");
                    entry.installed = None;
                }
            }
        }
        self.save()?;
        Ok(survey.labels.map(|labels| {
            self.labels = labels;
        }))
    }

    fn checkin(&self) -> Task<Result<CheckinResponse, ClientError>> {
        let mut labels = self.config.labels.clone();
        labels.extend(self.labels.clone());
        let components = self
            .config
            .components
            .iter()
            .filter_map(|component| {
                let entry = self.state.components.get(&component.name)?;
                Some((
                    component.name.clone(),
                    ComponentReport {
                        version: entry.installed.clone()?,
                        state: entry.state,
                        message: entry.message.clone(),
                    },
                ))
            })
            .collect();
        let request = CheckinRequest {
            host: self.config.id.clone(),
            labels,
            components,
        };
        let client = self.client.clone();
        Box::pin(async move { client.checkin(&request).await })
    }

    /// Records the server's answer, writes the facts files, and returns the
    /// apply to start, if any (and if `may_apply`: no host command runs).
    fn answered(
        &mut self,
        answer: CheckinResponse,
        may_apply: bool,
    ) -> Result<Option<Task<Work>>, AgentError> {
        let mut desired_changed = false;
        for component in &self.config.components {
            // A component the server does not name is left alone: sluice
            // has no opinion on it (any more).
            let desired = answer.components.get(&component.name);
            let entry = self
                .state
                .components
                .entry(component.name.clone())
                .or_default();
            if entry.desired.as_ref() != desired {
                entry.desired = desired.cloned();
                desired_changed = true;
            }
            settle(component, entry);
        }
        if desired_changed {
            self.save()?;
        }
        self.write_facts();
        if !may_apply {
            return Ok(None);
        }
        let next = self.config.components.iter().find_map(|component| {
            let entry = self.state.components.get(&component.name)?;
            let desired = entry.desired.as_ref()?;
            let wanted = component.mode == Mode::Apply
                && entry.installed.as_deref() != Some(desired.version.as_str())
                && entry.failed.as_deref() != Some(desired.version.as_str());
            wanted.then(|| (component.clone(), desired.clone()))
        });
        let Some((component, desired)) = next else {
            return Ok(None);
        };
        tracing::info!(component = %component.name, version = %desired.version, "applying");
        let entry = self
            .state
            .components
            .entry(component.name.clone())
            .or_default();
        entry.applying = Some(desired.version.clone());
        entry.state = ReportState::Applying;
        entry.message = None;
        // Durable before the command runs: a restart must know.
        self.save()?;
        let ops = Arc::clone(&self.ops);
        Ok(Some(Box::pin(async move {
            let outcome = ops.apply(&component, &desired).await;
            // The exit code alone is not trusted: read what is installed now.
            let installed = ops.installed(&component, Some(&desired)).await;
            let outcome = match (&outcome, &installed) {
                (Err(_), _) => outcome,
                (Ok(()), Ok(version)) if *version == desired.version => {
                    ops.health(&component, &desired).await
                }
                (Ok(()), Ok(version)) => Err(format!(
                    "apply_cmd succeeded but version_cmd reads {version:?}, not {:?}",
                    desired.version
                )),
                (Ok(()), Err(error)) => Err(format!(
                    "apply_cmd succeeded but the version cannot be read: {error}"
                )),
            };
            Work::Applied(Applied {
                component: component.name.clone(),
                version: desired.version.clone(),
                installed,
                outcome,
            })
        })))
    }

    fn applied(&mut self, applied: Applied) -> Result<(), AgentError> {
        let entry = self
            .state
            .components
            .entry(applied.component.clone())
            .or_default();
        if let Ok(installed) = applied.installed {
            entry.installed = Some(installed);
        }
        entry.applying = None;
        entry.retried = None;
        match &applied.outcome {
            Ok(()) => {
                tracing::info!(component = %applied.component, version = %applied.version, "applied and healthy")
            }
            Err(error) => {
                tracing::warn!(component = %applied.component, version = %applied.version, "apply failed: {error}")
            }
        }
        record_outcome(entry, &applied.version, applied.outcome);
        self.save()
    }

    /// Writes every facts file from the last desired versions (which survive
    /// the server being unreachable).
    fn write_facts(&self) {
        let mut files: BTreeMap<&PathBuf, Vec<(&str, &Desired)>> = BTreeMap::new();
        for component in &self.config.components {
            if let Mode::Facts { facts_file } = &component.mode {
                let desired = self
                    .state
                    .components
                    .get(&component.name)
                    .and_then(|entry| entry.desired.as_ref());
                let file = files.entry(facts_file).or_default();
                if let Some(desired) = desired {
                    file.push((component.name.as_str(), desired));
                }
            }
        }
        for (path, desired) in files {
            match write_facts(path, &facts_json(desired)) {
                Ok(true) => {
                    tracing::info!(path = %path.display(), "wrote the desired versions for config management")
                }
                Ok(false) => {}
                Err(error) => tracing::warn!("{error}"),
            }
        }
    }

    fn component(&self, name: &str) -> Option<&ComponentConfig> {
        self.config
            .components
            .iter()
            .find(|component| component.name == name)
    }

    fn save(&self) -> Result<(), AgentError> {
        if let Some(path) = &self.config.state_file {
            self.state.save(path)?;
        }
        Ok(())
    }

    /// The next check-in: the interval, ±20 %.
    fn jittered(&mut self) -> Instant {
        let factor = 0.8 + 0.4 * self.rng.f64();
        Instant::now() + self.interval.mul_f64(factor)
    }

    /// After a failed check-in: full jitter over a capped exponential.
    fn backoff(&mut self) -> Instant {
        self.failures = self.failures.saturating_add(1);
        Instant::now() + backoff_delay(self.interval, self.failures, self.rng.f64())
    }
}

/// The delay before retry number `failures` (from 1): `unit` (in [0, 1))
/// of `min(cap, interval × 2^(failures-1))`, where cap is ten intervals but
/// at most five minutes (and never less than one interval); at least 50 ms.
pub fn backoff_delay(interval: Duration, failures: u32, unit: f64) -> Duration {
    let cap = (interval * 10).min(Duration::from_secs(300)).max(interval);
    let exponent = failures.saturating_sub(1).min(20);
    let ceiling = interval.saturating_mul(1 << exponent).min(cap);
    ceiling
        .mul_f64(unit.clamp(0.0, 1.0))
        .max(Duration::from_millis(50))
}

/// The report state once the installed version is known (outside an apply).
fn settle(component: &ComponentConfig, entry: &mut ComponentState) {
    if entry.applying.is_some() {
        return;
    }
    let desired = entry
        .desired
        .as_ref()
        .map(|desired| desired.version.as_str());
    let converged = desired.is_none() || entry.installed.as_deref() == desired;
    match component.mode {
        Mode::Facts { .. } => {
            // Config management applies; report what version_cmd says.
            entry.state = if converged {
                ReportState::Ok
            } else {
                ReportState::Applying
            };
            entry.message = None;
        }
        Mode::Apply => {
            if desired.is_some() && entry.failed.as_deref() == desired {
                entry.state = ReportState::Failed;
            } else if converged {
                entry.state = ReportState::Ok;
                entry.message = None;
            }
        }
    }
}

fn record_outcome(entry: &mut ComponentState, version: &str, outcome: Result<(), Failure>) {
    match outcome {
        Ok(()) => {
            entry.state = ReportState::Ok;
            entry.message = None;
            entry.failed = None;
        }
        Err(message) => {
            entry.state = ReportState::Failed;
            entry.message = Some(message);
            entry.failed = Some(version.to_owned());
        }
    }
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Awaits the task in `slot`, or forever when there is none.
async fn run_task<T>(slot: &mut Option<Task<T>>) -> T {
    match slot {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_full_jitter() {
        let second = Duration::from_secs(1);
        assert_eq!(backoff_delay(second, 1, 0.999), second.mul_f64(0.999));
        assert_eq!(backoff_delay(second, 3, 0.5), Duration::from_secs(2));
        assert_eq!(backoff_delay(second, 30, 0.5), Duration::from_secs(5));
        assert_eq!(backoff_delay(second, 3, 0.0), Duration::from_millis(50));
        let minute = Duration::from_secs(60);
        assert_eq!(
            backoff_delay(minute, 30, 0.999),
            Duration::from_secs(300).mul_f64(0.999)
        );
    }
}
