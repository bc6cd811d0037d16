//! The agent loop: one `tokio::select!` that yields one [`Event`] — the
//! check-in timer, the health timer, a host operation finishing, the
//! server's answer, shutdown — handled in one `match`, with at most one
//! check-in and one host operation (survey, apply or health check) in
//! flight.
//!
//! A round: the check-in timer fires → survey (labels, installed versions)
//! → the health checks due this round (every apply-mode component running
//! its desired version, unless it has its own `health_interval`) → check-in
//! → the answer names desired versions → facts files are written, and the
//! first apply-mode component whose installed version differs is applied
//! (apply, re-read the version, health check) → an immediate round reports
//! the outcome, whose answer may start the next apply.
//!
//! A component with a `health_interval` is checked by the health timer
//! instead, between rounds; a check whose result differs from what the
//! agent reports (`ok` → `failed` with the output's tail, or `failed` →
//! `ok`) starts a round at once, and one that agrees changes nothing.
//!
//! Servers: a check-in goes to the current server of the config's list
//! (the first at start). When that server cannot serve ([`cannot_serve`]:
//! no answer, or 502/503/504), the next one becomes current and the
//! check-in goes there at once, each server at most once per check-in; the
//! agent then stays with the server that answered, and never drifts back
//! to the first by itself.
//!
//! Fail static: a failed check-in (every server tried, or an answer that is
//! an error) changes nothing on the host; the next try waits a random time
//! in `[0, min(cap, interval × 2^failures))` (full jitter; cap = 10 ×
//! interval, at most 5 min, at least the interval).
//!
//! Drift: once the host has run its desired version (`reached` in the
//! state), another version found there outside an apply, while the server
//! still names that desired version, is drift — someone changed the host by
//! hand. It is reported (`drifted` in the check-in) and logged, and not
//! re-applied unless the component says `enforce = true`; a version the
//! host has not run yet is simply applied, as before.
//!
//! Artifacts: an apply whose payload names one (`url` and `sha256`) first
//! fetches it into the cache ([`crate::Artifacts`]); a failed download or a
//! digest that differs is a failed apply, and `apply_cmd` does not run.
//!
//! The agent's own upgrade (the component `sluice-agent`): its apply
//! outlives the agent, which the package restarts halfway. At start, an
//! apply found in progress that the host operations can take over
//! ([`HostOps::adopt`]) is the operation in flight, as if this agent had
//! started it: check-ins report it `applying`, and once it ends the
//! version is read and the health checked as after any apply. When an
//! apply of its own component replaced the agent's binary ([`Binary`]),
//! [`Agent::run`] returns [`Exit::Replaced`] so that the new binary runs.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sluice_api::agent::{CheckinRequest, CheckinResponse, ComponentReport, Desired, ReportState};
use sluice_client::{Client, ClientError};
use tokio::time::Instant;

use crate::artifact::{Artifact, Artifacts};
use crate::config::{AgentConfig, ComponentConfig, Mode};
use crate::facts::{facts_json, write_facts};
use crate::ops::{Failure, HostOps};
use crate::state::{AgentState, ComponentState, StateError};
use crate::upgrade::{Binary, AGENT_COMPONENT};

type Task<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why the agent stopped (or, with `--once`, why its round failed).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The state file could not be read or written: the agent cannot keep
    /// its promises about restarts, so it stops.
    #[error(transparent)]
    State(#[from] StateError),
    /// `--once`: the check-in failed — no server could serve it, or one
    /// answered an error — and nothing was changed on the host (the last
    /// server's error).
    #[error("check-in failed, nothing changed: {0}")]
    Checkin(#[source] ClientError),
    /// `--once`: the host's labels could not be read.
    #[error("cannot read the host's labels: {0}")]
    Labels(String),
}

/// Why [`Agent::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The shutdown future completed.
    Shutdown,
    /// An apply of the agent's own component (`sluice-agent`) replaced the
    /// binary given to [`Agent::with_binary`], and its outcome is in the
    /// state file: the caller runs the new binary (`sluice-agent` execs
    /// it), which reports it.
    Replaced,
}

/// The result of a survey: labels and installed versions.
struct Survey {
    labels: Result<BTreeMap<String, String>, Failure>,
    installed: Vec<(String, Result<String, Failure>)>,
}

/// The result of one apply: the version read afterwards and the verdict.
struct Applied {
    component: String,
    version: String,
    installed: Result<String, Failure>,
    verdict: Verdict,
}

/// The result of one health check of `component` at `version`.
struct Checked {
    component: String,
    version: String,
    /// Between rounds, the version read first (the last survey may be old).
    installed: Option<Result<String, Failure>>,
    /// `None` when the version read first was not `version`: not checked.
    outcome: Option<Result<(), Failure>>,
}

/// What a host operation gives back.
enum Work {
    Survey(Survey),
    Applied(Applied),
    Checked(Checked),
}

/// Which host operation is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Survey,
    Apply,
    Health,
}

/// The host operation in flight (there is at most one).
struct Op {
    kind: OpKind,
    task: Task<Work>,
}

/// Everything the loop reacts to.
enum Event {
    /// The caller's shutdown future completed.
    Shutdown,
    /// The check-in timer fired: time for a round (or, during an apply, for
    /// a check-in that reports it `applying`).
    CheckinDue,
    /// A component's `health_interval` passed (only while nothing else runs).
    HealthDue,
    /// The host operation in flight finished.
    OpDone(Work),
    /// The server answered the check-in in flight, or it failed.
    Answered(Result<CheckinResponse, ClientError>),
}

/// Where the current round is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// No round, or its survey is running.
    Idle,
    /// The check-in timer fired during a health check: the survey follows it.
    Waiting,
    /// Surveyed: the health checks due this round run, then the check-in.
    Checking,
}

/// How an apply, or a health check, ended.
enum Verdict {
    Healthy,
    /// `apply_cmd` failed, or the version read afterwards is not the one
    /// applied: not retried, and not health-checked, until the server names
    /// another version.
    ApplyFailed(Failure),
    /// The version is installed but `health_cmd` fails: checked again, so
    /// that a recovery is reported.
    Unhealthy(Failure),
}

/// One host's agent: its configuration, the shared HTTP client, the host
/// operations, and its state (loaded from and saved to `state_file`).
#[derive(Debug)]
pub struct Agent<H: HostOps> {
    config: AgentConfig,
    /// One client per server of `config.servers`, in order, sharing one
    /// connection pool.
    clients: Vec<Client>,
    /// Which of `clients` check-ins go to.
    current: usize,
    /// How many more servers the check-in in flight may move on to.
    untried: usize,
    ops: Arc<H>,
    state: AgentState,
    rng: fastrand::Rng,
    /// The server's `next_checkin_s`, once it answered; else the config's.
    interval: Duration,
    /// Check-ins failed in a row.
    failures: u32,
    /// The labels `HostOps::labels` gave at the last survey.
    labels: BTreeMap<String, String>,
    /// The state changed (an apply finished, a health check disagreed) since
    /// the last check-in request was built.
    report_due: bool,
    /// When each component with a `health_interval` is next due a health
    /// check (the others are checked at every round).
    health_due: BTreeMap<String, Instant>,
    /// Components whose apply (or recovery) just ran the health check: the
    /// next round does not run it again.
    fresh: BTreeSet<String>,
    /// The binary this agent runs, watched for its replacement by an apply
    /// of its own component.
    binary: Option<Binary>,
}

impl<H: HostOps> Agent<H> {
    /// An agent for `config`, checking in with `config.servers` through
    /// `client` (its connection pool, token and timeouts, which may be
    /// shared by many agents; its own server is not used unless listed) and
    /// acting on the host through `ops`. Loads the state file when there is
    /// one.
    pub fn new(config: AgentConfig, client: Client, ops: Arc<H>) -> Result<Agent<H>, AgentError> {
        let mut state = match &config.state_file {
            Some(path) => AgentState::load(path)?,
            None => AgentState::default(),
        };
        state.host = config.id.to_string();
        let clients = config
            .servers
            .as_slice()
            .iter()
            .map(|server| client.with_server(server))
            .collect();
        Ok(Agent {
            interval: config.interval,
            rng: fastrand::Rng::new(),
            config,
            clients,
            current: 0,
            untried: 0,
            ops,
            state,
            failures: 0,
            labels: BTreeMap::new(),
            report_due: false,
            health_due: BTreeMap::new(),
            fresh: BTreeSet::new(),
            binary: None,
        })
    }

    /// The binary this agent runs: when an apply of the agent's own
    /// component (`sluice-agent`) replaces it, [`Agent::run`] returns
    /// [`Exit::Replaced`].
    pub fn with_binary(mut self, binary: Binary) -> Agent<H> {
        self.binary = Some(binary);
        self
    }

    /// Seeds the jitter (for reproducible simulations).
    pub fn with_seed(mut self, seed: u64) -> Agent<H> {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    /// A component's own `health_interval`, if it has one.
    fn health_interval(&self, component: &str) -> Option<Duration> {
        self.config
            .components
            .iter()
            .find(|c| c.name == component)
            .and_then(|c| c.health_interval)
    }

    /// The state as it stands (what the next check-in reports).
    pub fn state(&self) -> &AgentState {
        &self.state
    }

    /// Runs until `shutdown` completes, or until an apply of its own
    /// component replaced its binary (see [`Exit`]). A host command in
    /// flight at shutdown is killed with its process group, but for the
    /// apply of the agent's own component, which the host operations may
    /// let outlive the agent. The state file says an apply was in
    /// progress, and the next start deals with it: it takes over an apply
    /// that outlived the agent ([`HostOps::adopt`]), and reads the
    /// installed version first after one that was interrupted.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Exit, AgentError> {
        self.event_loop(shutdown, false).await
    }

    /// One round for cron or a Puppet exec: check in (each server of the
    /// list in turn while they cannot serve), apply what differs, report,
    /// and return. A failed check-in is an error (nothing changed).
    pub async fn run_once(self) -> Result<(), AgentError> {
        self.event_loop(std::future::pending(), true)
            .await
            .map(|_| ())
    }

    async fn event_loop(
        mut self,
        shutdown: impl Future<Output = ()>,
        once: bool,
    ) -> Result<Exit, AgentError> {
        // An apply an earlier agent left running goes on as this one's.
        let mut op: Option<Op> = self.recover().await?.map(|task| Op {
            kind: OpKind::Apply,
            task,
        });
        tokio::pin!(shutdown);
        let started = Instant::now();
        for component in &self.config.components {
            if let Some(every) = self.health_interval(&component.name) {
                self.health_due
                    .insert(component.name.clone(), started + every);
            }
        }
        let mut call: Option<Task<Result<CheckinResponse, ClientError>>> = None;
        let mut round = Round::Idle;
        // The first check-in goes out at once with `--once`; a daemon waits
        // up to a fifth of its interval first, so that a fleet whose agents
        // restart together does not check in together.
        let mut tick: Option<Instant> = Some(if once {
            started
        } else {
            started + self.interval.mul_f64(0.2 * self.rng.f64())
        });
        loop {
            // Health checks between rounds wait until nothing else runs.
            let idle = op.is_none() && call.is_none() && round == Round::Idle;
            let health_at = self.health_due.values().min().copied();
            let event = tokio::select! {
                () = &mut shutdown => Event::Shutdown,
                () = sleep_until(tick) => Event::CheckinDue,
                () = sleep_until(health_at), if idle => Event::HealthDue,
                done = run_op(&mut op) => Event::OpDone(done),
                answer = run_task(&mut call) => Event::Answered(answer),
            };
            match event {
                Event::Shutdown => {
                    let own = self
                        .state
                        .components
                        .get(AGENT_COMPONENT)
                        .and_then(|entry| entry.applying.as_deref())
                        .filter(|_| op.as_ref().is_some_and(|op| op.kind == OpKind::Apply));
                    match own {
                        Some(version) => {
                            tracing::info!(%version, "shutting down in the middle of the agent's own upgrade; its apply goes on, and the next start takes it over")
                        }
                        None => tracing::info!("shutting down"),
                    }
                    return Ok(Exit::Shutdown);
                }
                Event::CheckinDue => {
                    tick = None;
                    match op.as_ref().map(|op| op.kind) {
                        // The answer's handler schedules the next check-in.
                        _ if call.is_some() => {}
                        None => op = Some(self.survey()),
                        // An apply is running: report it as `applying`.
                        Some(OpKind::Apply) => call = Some(self.checkin()),
                        Some(OpKind::Survey | OpKind::Health) => round = Round::Waiting,
                    }
                }
                Event::HealthDue => op = self.next_health(true),
                Event::OpDone(done) => {
                    op = None;
                    match done {
                        Work::Survey(survey) => match self.surveyed(survey)? {
                            Ok(()) => {
                                self.due_this_round(once);
                                round = Round::Checking;
                            }
                            Err(error) if once => return Err(AgentError::Labels(error)),
                            Err(error) => {
                                tracing::warn!(
                                    "cannot read the host's labels, not checking in: {error}"
                                );
                                round = Round::Idle;
                                tick = Some(self.backoff());
                            }
                        },
                        Work::Applied(applied) => {
                            let own = applied.component == AGENT_COMPONENT && !once;
                            self.applied(applied)?;
                            let binary = self
                                .binary
                                .as_ref()
                                .filter(|binary| own && binary.replaced());
                            if let Some(binary) = binary {
                                tracing::info!(binary = %binary.path().display(), "the apply replaced the agent's binary; starting the new one");
                                return Ok(Exit::Replaced);
                            }
                            // Report the outcome right away (once the answer
                            // to a check-in in flight, if any, is in).
                            self.report_due = true;
                            tick = Some(Instant::now());
                        }
                        Work::Checked(checked) => {
                            // A round under way reports the change itself.
                            if self.checked(checked)? && round == Round::Idle {
                                tick = Some(Instant::now());
                            }
                        }
                    }
                    match round {
                        Round::Idle => {}
                        Round::Waiting => {
                            round = Round::Idle;
                            op = Some(self.survey());
                        }
                        Round::Checking => {
                            // The survey has just read the versions.
                            op = self.next_health(false);
                            if op.is_none() {
                                round = Round::Idle;
                                call = Some(self.checkin());
                            }
                        }
                    }
                }
                Event::Answered(answer) => {
                    call = None;
                    match answer {
                        Ok(answer) => {
                            self.failures = 0;
                            self.interval = Duration::from_secs(answer.next_checkin_s.max(1));
                            let next = self.answered(answer, op.is_none())?;
                            if op.is_none() {
                                op = next.map(|task| Op {
                                    kind: OpKind::Apply,
                                    task,
                                });
                            }
                            if once && op.is_none() {
                                return Ok(Exit::Shutdown);
                            }
                            // While an apply runs, check-ins go on and
                            // report it `applying`.
                            tick = Some(if self.report_due && op.is_none() {
                                Instant::now()
                            } else {
                                self.jittered()
                            });
                        }
                        Err(error) => {
                            if self.move_on(&error) {
                                // The next server, at once.
                                call = Some(self.send_checkin());
                            } else if once {
                                return Err(AgentError::Checkin(error));
                            } else {
                                let retry = self.backoff();
                                tracing::warn!(
                                    failures = self.failures,
                                    servers_tried = self.clients.len() - self.untried,
                                    "check-in failed, changing nothing; retrying in {:.1}s: {error}",
                                    retry
                                        .saturating_duration_since(Instant::now())
                                        .as_secs_f64()
                                );
                                tick = Some(retry);
                            }
                        }
                    }
                }
            }
        }
    }

    /// At start, an apply recorded as in progress either outlived the agent
    /// that started it (the agent's own upgrade: the host operations can
    /// take it over, [`HostOps::adopt`]) or was interrupted (crash, reboot,
    /// kill).
    ///
    /// One that outlived the agent is returned, as the task to run first:
    /// it waits until the apply ends, then reads the version and checks
    /// the health, as after any apply; the restart is no failure, and the
    /// apply does not run again.
    ///
    /// An interrupted apply is never re-run blindly: the installed version
    /// is read first. If the host runs the version being applied, the
    /// health check runs and its result is reported. If not, the apply is
    /// retried once, and only if the next answer still names that version;
    /// a second interruption of the same version reports it `failed`.
    async fn recover(&mut self) -> Result<Option<Task<Work>>, AgentError> {
        let components = self.config.components.clone();
        let mut adopted = None;
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
            let running = match adopted {
                None => self.ops.adopt(component, &version),
                Some(_) => None,
            };
            if let Some(running) = running {
                tracing::info!(component = %component.name, %version, "an apply an earlier agent started outlived it; waiting for it to end, then checking the version and health");
                let entry = self
                    .state
                    .components
                    .entry(component.name.clone())
                    .or_default();
                entry.state = ReportState::Applying;
                entry.message = None;
                let ops = Arc::clone(&self.ops);
                let component = component.clone();
                adopted = Some(Box::pin(async move {
                    let outcome = running.await;
                    verify(&*ops, &component, &desired, outcome).await
                }) as Task<Work>);
                continue;
            }
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
                    let verdict = match health {
                        Ok(()) => Verdict::Healthy,
                        Err(message) => Verdict::Unhealthy(message),
                    };
                    record_outcome(entry, &version, verdict);
                    track_reached(entry);
                    self.fresh.insert(component.name.clone());
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
                            Verdict::ApplyFailed(format!("the apply of {version} was interrupted twice (agent restarted); not retried")),
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
        Ok(adopted)
    }

    fn survey(&self) -> Op {
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
        let task = Box::pin(async move {
            let labels = ops.labels().await;
            let mut installed = Vec::with_capacity(components.len());
            for (component, desired) in &components {
                let version = ops.installed(component, desired.as_ref()).await;
                installed.push((component.name.clone(), version));
            }
            Work::Survey(Survey { labels, installed })
        });
        Op {
            kind: OpKind::Survey,
            task,
        }
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
                    let was = drifted(entry);
                    entry.installed = Some(version);
                    settle(&component, entry);
                    log_drift(&component, was, entry);
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

    /// A check-in: to the current server, and then to each other server
    /// once, while they cannot serve (see [`Agent::move_on`]).
    fn checkin(&mut self) -> Task<Result<CheckinResponse, ClientError>> {
        self.untried = self.clients.len() - 1;
        self.send_checkin()
    }

    /// After a failed check-in: if the server could not serve it, the next
    /// server of the list becomes current. `true` when this check-in has
    /// not tried that one yet: it is sent there now. After a whole pass
    /// has failed, the current server is again the one the pass began with.
    fn move_on(&mut self, error: &ClientError) -> bool {
        if !cannot_serve(error) {
            return false;
        }
        let from = self.current;
        self.current = (from + 1) % self.clients.len();
        if self.untried == 0 {
            return false;
        }
        self.untried -= 1;
        tracing::info!(
            from = %self.clients[from].server_url(),
            to = %self.clients[self.current].server_url(),
            %error,
            "the server cannot serve the check-in; moving to the next one"
        );
        true
    }

    /// The check-in request of the state as it stands (which reports every
    /// change so far), to the current server.
    fn send_checkin(&mut self) -> Task<Result<CheckinResponse, ClientError>> {
        self.report_due = false;
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
                        drifted: drifted(entry),
                    },
                ))
            })
            .collect();
        let request = CheckinRequest {
            host: self.config.id.clone(),
            labels,
            components,
        };
        let client = self.clients[self.current].clone();
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
        // A drifted host is not changed back unless the component enforces.
        let next = self.config.components.iter().find_map(|component| {
            let entry = self.state.components.get(&component.name)?;
            let desired = entry.desired.as_ref()?;
            let wanted = component.mode == Mode::Apply
                && entry.installed.as_deref() != Some(desired.version.as_str())
                && entry.failed.as_deref() != Some(desired.version.as_str())
                && (component.enforce || !drifted(entry));
            wanted.then(|| (component.clone(), desired.clone(), drifted(entry)))
        });
        let Some((component, desired, drift)) = next else {
            return Ok(None);
        };
        if drift {
            tracing::warn!(component = %component.name, version = %desired.version, "re-applying the desired version over a drift (enforce = true)");
        }
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
        let artifacts = self.config.artifacts.clone();
        let keep = self.named_artifacts();
        // Any client of the pool: a download uses neither its server nor
        // its token.
        let client = self.clients[self.current].clone();
        Ok(Some(Box::pin(async move {
            let fetched =
                fetch_artifact(artifacts.as_ref(), &client, &component, &desired, &keep).await;
            let outcome = match fetched {
                Ok(artifact) => ops.apply(&component, &desired, artifact.as_deref()).await,
                Err(error) => Err(error),
            };
            verify(&*ops, &component, &desired, outcome).await
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
        let (component, version) = (&applied.component, &applied.version);
        match &applied.verdict {
            Verdict::Healthy => {
                tracing::info!(%component, %version, "applied and healthy")
            }
            Verdict::ApplyFailed(error) => {
                tracing::warn!(%component, %version, "apply failed: {error}")
            }
            Verdict::Unhealthy(error) => {
                tracing::warn!(%component, %version, "applied, but the health check failed: {error}")
            }
        }
        let checked = !matches!(applied.verdict, Verdict::ApplyFailed(_));
        record_outcome(entry, version, applied.verdict);
        track_reached(entry);
        if checked {
            // The apply just checked its health.
            self.fresh.insert(applied.component.clone());
            if let Some(every) = self.health_interval(&applied.component) {
                self.health_due
                    .insert(applied.component.clone(), Instant::now() + every);
            }
        }
        self.save()
    }

    /// At the start of a round's health checks: every component checked at
    /// every round is due now (every component, with `--once`), but those
    /// whose apply just checked them.
    fn due_this_round(&mut self, once: bool) {
        let now = Instant::now();
        let fresh = std::mem::take(&mut self.fresh);
        for component in &self.config.components {
            let every_round = once || self.health_interval(&component.name).is_none();
            if every_round && !fresh.contains(&component.name) {
                self.health_due.insert(component.name.clone(), now);
            }
        }
    }

    /// The first due health check that may run now, if any; `reread`: read
    /// the installed version first, and check only if it is still the
    /// desired one. A component that may not be checked (not running its
    /// desired version, a failed apply, a facts-mode component) is not due
    /// any more: once more after its `health_interval`, or at the next round.
    fn next_health(&mut self, reread: bool) -> Option<Op> {
        let now = Instant::now();
        loop {
            let name = self
                .config
                .components
                .iter()
                .find(|component| {
                    self.health_due
                        .get(&component.name)
                        .is_some_and(|due| *due <= now)
                })?
                .name
                .clone();
            self.health_due.remove(&name);
            let Some((component, desired)) = self.health_target(&name) else {
                if let Some(every) = self.health_interval(&name) {
                    self.health_due.insert(name, now + every);
                }
                continue;
            };
            let ops = Arc::clone(&self.ops);
            let task = Box::pin(async move {
                let installed = match reread {
                    true => Some(ops.installed(&component, Some(&desired)).await),
                    false => None,
                };
                let outcome = match &installed {
                    Some(Ok(version)) if *version != desired.version => None,
                    Some(Err(_)) => None,
                    _ => Some(ops.health(&component, &desired).await),
                };
                Work::Checked(Checked {
                    component: component.name.clone(),
                    version: desired.version.clone(),
                    installed,
                    outcome,
                })
            });
            return Some(Op {
                kind: OpKind::Health,
                task,
            });
        }
    }

    /// The component and the version to health-check, if `name` is an
    /// apply-mode component that runs its desired version (not applying it)
    /// and whose apply of that version did not fail.
    fn health_target(&self, name: &str) -> Option<(ComponentConfig, Desired)> {
        let component = self.component(name)?;
        if component.mode != Mode::Apply {
            return None;
        }
        let entry = self.state.components.get(name)?;
        let desired = entry.desired.as_ref()?;
        let version = Some(desired.version.as_str());
        let runs_desired = entry.applying.is_none() && entry.installed.as_deref() == version;
        let apply_failed = entry.failed.as_deref() == version && !entry.unhealthy;
        (runs_desired && !apply_failed).then(|| (component.clone(), desired.clone()))
    }

    /// Records a health check (and the version read before it); `true`
    /// when it changed what the agent reports (then to be reported at once).
    fn checked(&mut self, checked: Checked) -> Result<bool, AgentError> {
        let Checked {
            component: name,
            version,
            installed,
            outcome,
        } = checked;
        if let Some(every) = self.health_interval(&name) {
            self.health_due.insert(name.clone(), Instant::now() + every);
        }
        let component = self.config.components.iter().find(|c| c.name == name);
        let (Some(component), Some(entry)) = (component, self.state.components.get_mut(&name))
        else {
            return Ok(false);
        };
        let mut changed = false;
        if let Some(installed) = installed {
            let installed = match installed {
                Ok(installed) => Some(installed),
                Err(error) => {
                    tracing::warn!(component = %name, "cannot read the installed version: {error}");
                    None
                }
            };
            if entry.installed != installed {
                tracing::warn!(component = %name, installed = installed.as_deref().unwrap_or("unknown"), "the installed version changed outside an apply");
                let was = drifted(entry);
                entry.installed = installed;
                settle(component, entry);
                log_drift(component, was, entry);
                changed = true;
            }
        }
        let failing = entry.state == ReportState::Failed;
        let verdict = match outcome {
            Some(Ok(())) if failing => {
                tracing::info!(component = %name, %version, "the health check passes again");
                Some(Verdict::Healthy)
            }
            Some(Err(error)) if !failing => {
                tracing::warn!(component = %name, %version, "the health check failed: {error}");
                Some(Verdict::Unhealthy(error))
            }
            // The same result as before, or no check: nothing to report.
            _ => None,
        };
        if let Some(verdict) = verdict {
            record_outcome(entry, &version, verdict);
            changed = true;
        }
        if changed {
            self.report_due = true;
            self.save()?;
        }
        Ok(changed)
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

    /// The digests of the artifacts the desired versions the agent holds
    /// name: what the artifact cache keeps.
    fn named_artifacts(&self) -> BTreeSet<String> {
        self.state
            .components
            .values()
            .filter_map(|entry| entry.desired.as_ref())
            .filter_map(|desired| Artifact::of(desired.payload.as_ref()).ok().flatten())
            .map(|artifact| artifact.sha256)
            .collect()
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

/// Whether a failed check-in says that this server cannot serve right now,
/// so that another server of the list may: no answer (connection refused,
/// unknown host, TLS handshake, timeout, connection lost — a check-in sent
/// again elsewhere reports the same state, so a lost one costs nothing), or
/// 502, 503, 504 (the server, or the proxy in front of it, cannot serve
/// now: a store it cannot reach, a replica not ready, a dead upstream).
/// Any other answer (401, 403, 422, 500, …) is the server's verdict on the
/// request itself, which another server of the same cluster would repeat:
/// the check-in fails there, and is retried with backoff.
pub(crate) fn cannot_serve(error: &ClientError) -> bool {
    error.is_unreachable() || matches!(error.status(), Some(502..=504))
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
    track_reached(entry);
}

/// Remembers that the host runs its desired version, when it does (and is
/// not in an apply).
fn track_reached(entry: &mut ComponentState) {
    if let (Some(desired), Some(installed), None) =
        (&entry.desired, &entry.installed, &entry.applying)
    {
        if desired.version == *installed {
            entry.reached = Some(installed.clone());
        }
    }
}

/// Whether the component drifted: the host ran its desired version, the
/// server still names it, and the host runs another now, outside an apply.
/// A version that cannot be read is no drift (there is nothing to report).
fn drifted(entry: &ComponentState) -> bool {
    let Some(desired) = &entry.desired else {
        return false;
    };
    entry.applying.is_none()
        && entry.reached.as_deref() == Some(desired.version.as_str())
        && entry
            .installed
            .as_deref()
            .is_some_and(|installed| installed != desired.version)
}

/// Logs a drift the moment it is found, with what the agent does about it,
/// and its end.
fn log_drift(component: &ComponentConfig, was: bool, entry: &ComponentState) {
    let name = &component.name;
    let installed = entry.installed.as_deref().unwrap_or("unknown");
    let desired = entry
        .desired
        .as_ref()
        .map_or("none", |desired| desired.version.as_str());
    match (was, drifted(entry)) {
        (false, true) if component.enforce => {
            tracing::warn!(component = %name, %installed, %desired, "drifted: found at another version than the desired one it ran, outside an apply; reporting it and re-applying the desired version (enforce = true)")
        }
        (false, true) => {
            tracing::warn!(component = %name, %installed, %desired, "drifted: found at another version than the desired one it ran, outside an apply; reporting it, not re-applying it (enforce is off)")
        }
        (true, false) => {
            tracing::info!(component = %name, %installed, %desired, "no longer drifted")
        }
        _ => {}
    }
}

/// The verified artifact `desired`'s payload names, if any, downloaded
/// into `artifacts` within the component's timeout (keeping there what
/// `keep` names); `Err` (a failed apply: `apply_cmd` does not run) when the
/// payload's artifact is malformed, there is no cache, or the download
/// fails or differs.
async fn fetch_artifact(
    artifacts: Option<&Artifacts>,
    client: &Client,
    component: &ComponentConfig,
    desired: &Desired,
    keep: &BTreeSet<String>,
) -> Result<Option<PathBuf>, Failure> {
    let not_run = |error: String| format!("{error}; apply_cmd was not run");
    let Some(artifact) = Artifact::of(desired.payload.as_ref()).map_err(not_run)? else {
        return Ok(None);
    };
    let Some(artifacts) = artifacts else {
        return Err(not_run(
            "the payload names an artifact, but this agent has no artifact directory to download it into".to_owned(),
        ));
    };
    artifacts
        .fetch(client, &artifact, component.timeout, keep)
        .await
        .map(Some)
        .map_err(not_run)
}

fn record_outcome(entry: &mut ComponentState, version: &str, verdict: Verdict) {
    let (failure, unhealthy) = match verdict {
        Verdict::Healthy => {
            entry.state = ReportState::Ok;
            entry.message = None;
            entry.failed = None;
            entry.unhealthy = false;
            return;
        }
        Verdict::ApplyFailed(failure) => (failure, false),
        Verdict::Unhealthy(failure) => (failure, true),
    };
    entry.state = ReportState::Failed;
    entry.message = Some(failure);
    entry.failed = Some(version.to_owned());
    entry.unhealthy = unhealthy;
}

/// After the apply of `desired` ended with `outcome`: reads the installed
/// version (the exit code alone is not trusted) and, when it is the
/// desired one, checks the health.
async fn verify<H: HostOps>(
    ops: &H,
    component: &ComponentConfig,
    desired: &Desired,
    outcome: Result<(), Failure>,
) -> Work {
    let installed = ops.installed(component, Some(desired)).await;
    let verdict = match (outcome, &installed) {
        (Err(error), _) => Verdict::ApplyFailed(error),
        (Ok(()), Ok(version)) if *version == desired.version => {
            match ops.health(component, desired).await {
                Ok(()) => Verdict::Healthy,
                Err(error) => Verdict::Unhealthy(error),
            }
        }
        (Ok(()), Ok(version)) => Verdict::ApplyFailed(format!(
            "apply_cmd succeeded but version_cmd reads {version:?}, not {:?}",
            desired.version
        )),
        (Ok(()), Err(error)) => Verdict::ApplyFailed(format!(
            "apply_cmd succeeded but the version cannot be read: {error}"
        )),
    };
    Work::Applied(Applied {
        component: component.name.clone(),
        version: desired.version.clone(),
        installed,
        verdict,
    })
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Awaits the host operation in `slot`, or forever when there is none.
async fn run_op(slot: &mut Option<Op>) -> Work {
    match slot {
        Some(op) => (&mut op.task).await,
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
    fn only_a_server_that_cannot_serve_is_left_for_the_next() {
        let answered = |status: u16| ClientError::Api {
            status,
            error: sluice_api::error::ErrorDetail {
                code: "code".into(),
                message: "message".into(),
                field: None,
            },
        };
        let proxied = |status: u16| ClientError::Http {
            server: "http://a:1".into(),
            status,
            body: String::new(),
        };
        for status in [502, 503, 504] {
            assert!(cannot_serve(&answered(status)), "{status}");
            assert!(cannot_serve(&proxied(status)), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 413, 422, 429, 500] {
            assert!(!cannot_serve(&answered(status)), "{status}");
            assert!(!cannot_serve(&proxied(status)), "{status}");
        }
    }

    #[test]
    fn drift_is_another_version_found_after_the_desired_one_ran() {
        let component = ComponentConfig {
            name: "app".into(),
            mode: Mode::Apply,
            timeout: Duration::from_secs(60),
            health_interval: None,
            enforce: false,
        };
        let desired = |version: &str| {
            Some(Desired {
                version: version.into(),
                rollout: None,
                payload: None,
            })
        };
        let mut entry = ComponentState {
            desired: desired("2.0"),
            installed: Some("1.0".into()),
            ..ComponentState::default()
        };
        settle(&component, &mut entry);
        assert!(!drifted(&entry), "2.0 never ran here: it is to be applied");
        entry.installed = Some("2.0".into());
        settle(&component, &mut entry);
        assert_eq!(
            (entry.reached.as_deref(), drifted(&entry)),
            (Some("2.0"), false)
        );
        // Changed by hand: drifted, and still ok (nothing failed).
        entry.installed = Some("1.0".into());
        settle(&component, &mut entry);
        assert!(drifted(&entry));
        assert_eq!(entry.state, ReportState::Ok);
        entry.installed = None;
        assert!(
            !drifted(&entry),
            "a version that cannot be read is no drift"
        );
        entry.installed = Some("1.0".into());
        entry.applying = Some("2.0".into());
        assert!(!drifted(&entry), "an apply is under way");
        entry.applying = None;
        // The server names another version: one to apply, not drift.
        entry.desired = desired("3.0");
        settle(&component, &mut entry);
        assert!(!drifted(&entry));
        assert_eq!(entry.reached.as_deref(), Some("2.0"));
    }

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
