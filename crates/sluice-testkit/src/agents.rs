//! Simulated agents for tests of several replicas: hosts of a fleet file
//! that check in over plain HTTP through a list of servers, spread over
//! them, and remember what they were told and which reports were
//! acknowledged.
//!
//! The agents play in rounds: in each, every host checks in once with what
//! it runs, through the servers in turn (host `i` through server `(i +
//! round) % n`, so that every host meets every server). A host told another
//! version applies it at once and reports it at its next check-in. A
//! server that cannot be reached (refused, reset, no answer in time) is
//! left for the rest of the round, as an agent with a server list moves to
//! the next one; a check-in that fails (unreachable, 503) fails static: the
//! host changes nothing and tries again next round, as does one the server
//! sheds (429: its check-ins wait too long to become durable, as while its
//! database stalls; the agent comes back after `Retry-After`, here at the
//! next round). Any other refusal is a bug and fails the test. After a round in which most check-ins failed,
//! the agents back off a little before the next.
//!
//! Every report is numbered per host: its message is `check-in N`. A
//! report whose check-in got its 200 is *acknowledged*, and must be found
//! in the store afterwards — that report or a later one the host sent
//! ([`Agents::check_stored`]).
//!
//! [`Agents::start`] plays rounds in the background; [`Agents::watch`]
//! samples, while they play, the hosts told the target version through each
//! server against what each stage of the rollout may admit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sluice_api::agent::{CheckinRequest, ComponentReport, ReportState};
use sluice_api::host::ImportHost;
use sluice_api::rollout::RolloutState;
use sluice_client::{Client, ClientError};
use tokio::task::JoinHandle;

/// Check-ins in flight at once.
const WORKERS: usize = 24;
/// How long a check-in may take before the agent gives up on it: short,
/// so that a stopped server costs a round little.
const CHECKIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long agents wait before a round after one in which most check-ins
/// failed.
const BACKOFF: Duration = Duration::from_millis(200);
/// How often [`Agents::watch`] samples.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The agents of some hosts (see the module's documentation).
#[derive(Debug)]
pub struct Agents {
    /// One per server, in the order given.
    clients: Vec<Client>,
    hosts: Vec<ImportHost>,
    component: String,
    target: String,
    state: Mutex<State>,
    rounds: AtomicU64,
}

/// What the agents know.
#[derive(Debug)]
struct State {
    /// Per host, in the order of `hosts`.
    hosts: Vec<HostAgent>,
    /// Per server: the hosts told the target through it.
    told_through: Vec<BTreeSet<String>>,
    /// Check-ins that failed static, per server: answered 503, and not
    /// answered (refused, reset, timed out).
    unavailable: Vec<u64>,
    unreachable: Vec<u64>,
    /// Check-ins shed (429), per server.
    shed: Vec<u64>,
    /// Check-ins answered, per server.
    answered: Vec<u64>,
}

#[derive(Debug, Clone)]
struct HostAgent {
    /// The version of the component the host runs.
    running: String,
    /// The number of the last report sent.
    sent: u64,
    /// The number of the last report acknowledged.
    acknowledged: Option<u64>,
}

/// The check-ins through one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Answered 200.
    pub answered: u64,
    /// Answered 503: the server cannot serve now.
    pub unavailable: u64,
    /// Not answered: refused, reset, or no answer in time.
    pub unreachable: u64,
    /// Answered 429: the server sheds check-ins for now.
    pub shed: u64,
}

/// The outcome of one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Round {
    pub answered: usize,
    pub failed: usize,
}

impl Agents {
    /// Agents of `hosts` (each running the version of `component` the
    /// fleet file gives) checking in through `servers` with `token`;
    /// `target` is the version a rollout tells them.
    pub fn new(
        servers: &[String],
        token: &str,
        hosts: Vec<ImportHost>,
        component: &str,
        target: &str,
    ) -> Agents {
        assert!(!servers.is_empty(), "agents need a server");
        let clients = servers
            .iter()
            .map(|url| {
                Client::builder(url)
                    .token(token)
                    .timeout(CHECKIN_TIMEOUT)
                    .connect_timeout(CHECKIN_TIMEOUT)
                    .build()
                    .expect("building an agent's client")
            })
            .collect();
        let agents = hosts
            .iter()
            .map(|host| HostAgent {
                running: host
                    .components
                    .get(component)
                    .cloned()
                    .unwrap_or_else(|| panic!("{} runs no {component}", host.id)),
                sent: 0,
                acknowledged: None,
            })
            .collect();
        Agents {
            state: Mutex::new(State {
                hosts: agents,
                told_through: vec![BTreeSet::new(); servers.len()],
                unavailable: vec![0; servers.len()],
                unreachable: vec![0; servers.len()],
                shed: vec![0; servers.len()],
                answered: vec![0; servers.len()],
            }),
            clients,
            hosts,
            component: component.to_owned(),
            target: target.to_owned(),
            rounds: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The message of report `number`.
    pub fn message(number: u64) -> String {
        format!("check-in {number}")
    }

    /// The number of the report whose message is `message`.
    pub fn number(message: &str) -> Option<u64> {
        message.strip_prefix("check-in ")?.parse().ok()
    }

    /// Rounds played to their end so far.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Acquire)
    }

    /// Every host told the target so far, through any server.
    pub fn told(&self) -> BTreeSet<String> {
        self.state()
            .told_through
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Per server, the hosts told the target through it.
    pub fn told_through(&self) -> Vec<BTreeSet<String>> {
        self.state().told_through.clone()
    }

    /// Per server, the check-ins so far.
    pub fn tally(&self) -> Vec<Tally> {
        let state = self.state();
        (0..self.clients.len())
            .map(|server| Tally {
                answered: state.answered[server],
                unavailable: state.unavailable[server],
                unreachable: state.unreachable[server],
                shed: state.shed[server],
            })
            .collect()
    }

    /// One round: every host checks in once (see the module's documentation).
    pub async fn round(self: &Arc<Self>) -> Round {
        let round = self.rounds.load(Ordering::Acquire) as usize;
        let servers = self.clients.len();
        let down: Arc<Vec<AtomicBool>> =
            Arc::new((0..servers).map(|_| AtomicBool::new(false)).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..WORKERS.min(self.hosts.len()) {
            let agents = Arc::clone(self);
            let (down, next) = (Arc::clone(&down), Arc::clone(&next));
            let (answered, failed) = (Arc::clone(&answered), Arc::clone(&failed));
            workers.push(tokio::spawn(async move {
                loop {
                    let host = next.fetch_add(1, Ordering::Relaxed);
                    if host >= agents.hosts.len() {
                        return;
                    }
                    let first = (host + round) % servers;
                    let server = (0..servers)
                        .map(|offset| (first + offset) % servers)
                        .find(|&server| !down[server].load(Ordering::Acquire));
                    let Some(server) = server else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    match agents.checkin(host, server).await {
                        Ok(()) => answered.fetch_add(1, Ordering::Relaxed),
                        Err(unreachable) => {
                            if unreachable {
                                down[server].store(true, Ordering::Release);
                            }
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }));
        }
        for worker in workers {
            if let Err(error) = worker.await {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
                panic!("an agent worker was cancelled: {error}");
            }
        }
        self.rounds.fetch_add(1, Ordering::AcqRel);
        Round {
            answered: answered.load(Ordering::Acquire),
            failed: failed.load(Ordering::Acquire),
        }
    }

    /// One check-in of host `index` through server `server`. `Err(true)`:
    /// the server could not be reached; `Err(false)`: it answered 503.
    async fn checkin(&self, index: usize, server: usize) -> Result<(), bool> {
        let host = &self.hosts[index];
        let (number, running) = {
            let mut state = self.state();
            let agent = &mut state.hosts[index];
            agent.sent += 1;
            (agent.sent, agent.running.clone())
        };
        let request = CheckinRequest {
            host: host.id.clone(),
            labels: host.labels.clone(),
            components: BTreeMap::from([(
                self.component.clone(),
                ComponentReport {
                    version: running,
                    state: ReportState::Ok,
                    message: Some(Agents::message(number)),
                    drifted: false,
                },
            )]),
        };
        let answer = self.clients[server].checkin(&request).await;
        let mut state = self.state();
        match answer {
            Ok(answer) => {
                state.answered[server] += 1;
                let desired = answer
                    .components
                    .get(&self.component)
                    .map(|desired| desired.version.clone());
                if desired.as_deref() == Some(self.target.as_str()) {
                    state.told_through[server].insert(host.id.to_string());
                }
                let agent = &mut state.hosts[index];
                agent.acknowledged = Some(number);
                if let Some(desired) = desired {
                    agent.running = desired;
                }
                Ok(())
            }
            Err(error) => {
                if is_unreachable(&error) {
                    state.unreachable[server] += 1;
                    Err(true)
                } else if error.status() == Some(503) {
                    state.unavailable[server] += 1;
                    Err(false)
                } else if error.status() == Some(429) {
                    state.shed[server] += 1;
                    Err(false)
                } else {
                    panic!(
                        "the check-in of {} through {} was refused: {error}",
                        host.id,
                        self.clients[server].server()
                    )
                }
            }
        }
    }

    /// Plays rounds in the background until [`Playing::stop`].
    pub fn start(self: &Arc<Self>) -> Playing {
        let stop = Arc::new(AtomicBool::new(false));
        let agents = Arc::clone(self);
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            while !stopped.load(Ordering::Acquire) {
                let round = agents.round().await;
                if round.failed > round.answered {
                    // Most check-ins failed: agents back off before they
                    // try again, rather than hammer a cluster in trouble.
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        });
        Playing { stop, task }
    }

    /// Waits until `rounds` more rounds started and ended (so that every
    /// host checked in that many times since this call).
    pub async fn wait_rounds(&self, rounds: u64) {
        let until = self.rounds() + rounds + 1;
        crate::wait_for(
            &format!("{rounds} more rounds of check-ins"),
            crate::DEADLINE,
            || async {
                let now = self.rounds();
                if now >= until {
                    Ok(())
                } else {
                    Err(now)
                }
            },
        )
        .await;
    }

    /// Samples in the background, until [`Watch::stop`], the hosts told the
    /// target through each server against the stage that rollout `id`
    /// stands at (read through `servers`, the first that answers): at every
    /// sample, the hosts told so far must be among those `stages[stage]`
    /// admits (cumulative, as [`crate::Preview`] gives them). Told first,
    /// stage second: a stage only moves on, so a host told before the stage
    /// was read is within that stage's admission.
    pub fn watch(
        self: &Arc<Self>,
        servers: Vec<Client>,
        id: &str,
        stages: Vec<BTreeSet<String>>,
    ) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let agents = Arc::clone(self);
        let stopped = Arc::clone(&stop);
        let id = id.to_owned();
        let task = tokio::spawn(async move {
            let mut report = Watched::default();
            while !stopped.load(Ordering::Acquire) {
                let told = agents.told_through();
                let mut stage = None;
                for client in &servers {
                    if let Ok(Ok(detail)) =
                        tokio::time::timeout(CHECKIN_TIMEOUT, client.rollout(&id)).await
                    {
                        stage = match (detail.summary.stage, detail.summary.state) {
                            (Some(stage), _) => Some(stage),
                            (None, RolloutState::Completed) => Some(stages.len() - 1),
                            (None, _) => None,
                        };
                        break;
                    }
                }
                if let Some(stage) = stage {
                    report.sample(&told, stage, &stages);
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            report
        });
        Watch { stop, task }
    }

    /// Checks that every acknowledged report is in `stored` (host → the
    /// message of the component's report the store holds): that report, or
    /// a later one the host sent. Returns how many acknowledged reports
    /// there were.
    pub fn check_stored(&self, stored: &BTreeMap<String, Option<String>>) -> usize {
        let state = self.state();
        let mut lost = Vec::new();
        let mut acknowledged = 0;
        for (host, agent) in self.hosts.iter().zip(&state.hosts) {
            let Some(acked) = agent.acknowledged else {
                continue;
            };
            acknowledged += 1;
            let found = stored
                .get(host.id.as_str())
                .and_then(|message| message.as_deref())
                .and_then(Agents::number);
            match found {
                Some(number) if (acked..=agent.sent).contains(&number) => {}
                other => lost.push(format!(
                    "{}: report {acked} was acknowledged (last sent {}), the store has {other:?}",
                    host.id, agent.sent
                )),
            }
        }
        assert!(
            lost.is_empty(),
            "{} acknowledged reports are not in the store: {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        acknowledged
    }
}

/// Whether `error` says the server could not be reached (refused, reset,
/// no answer in time) rather than answered.
fn is_unreachable(error: &ClientError) -> bool {
    error.is_unreachable()
}

/// Rounds played in the background.
#[derive(Debug)]
pub struct Playing {
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Playing {
    /// Lets the round under way end, and stops.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Release);
        if let Err(error) = self.task.await {
            if error.is_panic() {
                std::panic::resume_unwind(error.into_panic());
            }
            panic!("the agents were cancelled: {error}");
        }
    }
}

/// Samples taken in the background.
#[derive(Debug)]
pub struct Watch {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Watched>,
}

impl Watch {
    /// Stops sampling; what the samples saw.
    pub async fn stop(self) -> Watched {
        self.stop.store(true, Ordering::Release);
        match self.task.await {
            Ok(watched) => watched,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("the watch was cancelled: {error}"),
        }
    }
}

/// What [`Agents::watch`] saw.
#[derive(Debug, Default)]
pub struct Watched {
    /// Samples taken.
    pub samples: u64,
    /// Per stage, the most hosts ever seen told the target while the
    /// rollout stood there.
    pub most_told: BTreeMap<usize, usize>,
    /// Per server, the most hosts told through it.
    pub most_through: Vec<usize>,
    /// Samples that found a host told beyond its stage, described.
    pub beyond: Vec<String>,
}

impl Watched {
    fn sample(&mut self, told: &[BTreeSet<String>], stage: usize, stages: &[BTreeSet<String>]) {
        self.samples += 1;
        let allowed = &stages[stage.min(stages.len() - 1)];
        let all: BTreeSet<&String> = told.iter().flatten().collect();
        let most = self.most_told.entry(stage).or_default();
        *most = (*most).max(all.len());
        self.most_through.resize(told.len(), 0);
        for (server, through) in told.iter().enumerate() {
            self.most_through[server] = self.most_through[server].max(through.len());
            let beyond: Vec<&String> = through.difference(allowed).collect();
            if !beyond.is_empty() && self.beyond.len() < 10 {
                self.beyond.push(format!(
                    "at stage {} (admitting {}), {} hosts told through server {server} beyond it: {:?}",
                    stage + 1,
                    allowed.len(),
                    beyond.len(),
                    &beyond[..beyond.len().min(5)]
                ));
            }
        }
    }

    /// Asserts that no sample found a host told beyond its stage.
    #[track_caller]
    pub fn assert_within_stages(&self) {
        assert!(self.samples > 0, "the watch took no sample");
        assert!(
            self.beyond.is_empty(),
            "hosts were told the target beyond their stage: {:#?}",
            self.beyond
        );
    }
}
