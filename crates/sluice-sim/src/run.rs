//! The discrete-event loop: one engine [`Rollout`], a virtual fleet of
//! agents, and a queue of what happens next, in virtual time.
//!
//! The loop drives the engine through the very driving rules the server
//! uses (`sluice_core::rollout`'s `driving` module): the inventory is
//! offered when the rollout is created ([`Rollout::offer`]), then `start`;
//! an agent's check-in is [`Rollout::check_in`], after which it reads
//! [`Rollout::desired_version`]; the controller's clock is
//! [`Rollout::tick`]. An input the engine refuses is never dropped: it is
//! listed in the report.
//!
//! Two shortcuts keep a million hosts cheap, without changing what the
//! engine sees:
//!
//! - **Idle hosts do not check in.** A host that is not admitted, or has
//!   settled (reported the result of its last apply), changes nothing when
//!   it checks in: the engine only records the version it already knows.
//!   So a host sleeps until the rollout needs it (admitted, or told to roll
//!   back) or its fault comes due, and then checks in after the time a real
//!   agent would: agents check in every `poll` ±20 %, independently of the
//!   rollout, so the wait from any moment to a host's next check-in has the
//!   forward-recurrence distribution of that interval, sampled exactly.
//! - **Ticks only when a timer is due.** The server ticks every second; the
//!   engine's timers are bakes, host timeouts and windows opening or
//!   closing, so the loop ticks at exactly those instants instead (every
//!   other input advances the timers too, as in the server).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};
use jiff::Timestamp;
use sluice_core::compare::StratumValues;
use sluice_core::duration::Duration;
use sluice_core::fleet::Host;
use sluice_core::plan::{windows_open, Plan};
use sluice_core::rollout::{
    Action, Event, EventKind, Fed, GateOutcome, Health, HoldReason, HostReport, HostState, Input,
    Phase, Rollout, Sighting, Status,
};

use crate::fault::{draw, Fault, FaultKind};
use crate::gates::{self, Modelled};
use crate::report::{FaultReport, GateReport, Refusal, Report, StageReport};
use crate::retro::StateSample;

/// The simulated apply takes between these (uniformly): a package install
/// or a daemon restart.
pub const APPLY_MIN: Duration = Duration::from_secs(15);
pub const APPLY_MAX: Duration = Duration::from_secs(45);

/// 2026-01-05T08:00:00Z, a Monday at 09:00 in Stockholm: the default
/// virtual start, so that office-hours windows open at once.
pub const DEFAULT_START: Timestamp = Timestamp::constant(1_767_600_000, 0);

/// The default bound on virtual time.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(30 * 86_400);

/// The server's default bound of each cohort (`sluice server --cohort-max`).
pub const DEFAULT_COHORT_MAX: usize = 500;

/// The fault position whose seeded draw gives hosts their metric spread
/// (past any real fault's: they are numbered in a `u16`).
const SPREAD_POSITION: usize = u16::MAX as usize + 1;

/// The rollout id and the operator name the simulation uses.
const ROLLOUT_ID: &str = "sim";
const ACTOR: &str = "simulator";

const NEVER: i64 = i64::MAX;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// How far ahead a window's closing is looked for (like `next_opening`).
const CLOSING_SEARCH_MS: i64 = 8 * DAY_MS;

/// How to run a simulation.
#[derive(Debug, Clone)]
pub struct Config {
    /// The agents' check-in interval, jittered ±20 % per check-in.
    pub poll: Duration,
    /// Seeds the jitter, the apply times and which hosts a shared fault hits.
    pub seed: u64,
    pub faults: Vec<Fault>,
    /// How long after a stage starts awaiting approval the simulated
    /// operator approves it.
    pub approve_after: Duration,
    /// The virtual time at which the rollout is created and started (it
    /// matters for windows).
    pub start: Timestamp,
    /// The simulation stops after this much virtual time, finished or not.
    pub limit: Duration,
    /// A host's usual value of the simulated metric that gates read (see
    /// the `gates` module), around which hosts spread.
    pub metric_base: f64,
    /// Hosts per cohort of comparison gates, at most (`--cohort-max`).
    pub cohort_max: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            poll: Duration::from_secs(60),
            seed: 0,
            faults: Vec::new(),
            approve_after: Duration::from_secs(0),
            start: DEFAULT_START,
            limit: DEFAULT_LIMIT,
            metric_base: 1.0,
            cohort_max: DEFAULT_COHORT_MAX,
        }
    }
}

/// Runs `plan` against `hosts` and reports what happened. Deterministic:
/// the same plan, fleet and config give the same report.
pub fn simulate(plan: &Plan, hosts: &[Host], config: &Config) -> Report {
    let mut sim = Sim::new(plan, hosts, config);
    sim.run();
    sim.report()
}

/// A simulation with everything a retrospective needs
/// ([`crate::retro`]): the report, the rollout as it ended, every event and
/// the hosts by state after every change.
#[derive(Debug)]
pub struct Rehearsal {
    pub report: Report,
    pub rollout: Rollout,
    pub events: Vec<Event>,
    pub samples: Vec<StateSample>,
    /// When the simulation ended.
    pub end: Timestamp,
}

/// Runs `plan` against `hosts` like [`simulate`], keeping the whole record.
pub fn rehearse(plan: &Plan, hosts: &[Host], config: &Config) -> Rehearsal {
    let mut sim = Sim::new(plan, hosts, config);
    sim.recording = Some(Recording::default());
    sim.run();
    let recording = sim.recording.take().unwrap_or_default();
    let rollout = sim.rollout.clone();
    let end = sim.timestamp(sim.now);
    Rehearsal {
        report: sim.report(),
        rollout,
        events: recording.events,
        samples: recording.samples,
        end,
    }
}

/// Every event and a sample of hosts by state after each change (one per
/// virtual second at most: the last of that second).
#[derive(Debug, Default)]
struct Recording {
    events: Vec<Event>,
    samples: Vec<StateSample>,
}

/// What happens next, at a virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Next {
    /// A host's agent checks in.
    CheckIn(u32),
    /// A host's fault comes due: it checks in again soon.
    Wake(u32),
    /// The controller ticks the rollout.
    Tick,
    /// The simulated operator approves a stage.
    Approve(usize),
    /// A simulated gate (an index into `Sim::gates`) is evaluated.
    Gate(u16),
}

/// One simulated agent.
#[derive(Debug, Clone)]
struct Agent {
    /// The version it runs (an index into `Sim::versions`), if any.
    version: Option<u32>,
    /// The apply under way: the version and when it is done.
    apply: Option<(u32, i64)>,
    /// Its health check fails.
    unhealthy: bool,
    /// It stopped checking in.
    silent: bool,
    /// The index of the fault that hits it.
    fault: Option<u16>,
    /// When a `fail-after` fault comes due.
    fail_at: i64,
    /// Its next check-in; `NEVER` while it sleeps.
    next: i64,
    /// It ran the target at some point.
    changed: bool,
    /// It got the target and its fault struck.
    failed: bool,
    /// Since when the engine has it instructed; `NEVER` otherwise.
    instructed_since: i64,
}

impl Agent {
    fn new() -> Agent {
        Agent {
            version: None,
            apply: None,
            unhealthy: false,
            silent: false,
            fault: None,
            fail_at: NEVER,
            next: NEVER,
            changed: false,
            failed: false,
            instructed_since: NEVER,
        }
    }
}

struct Sim<'a> {
    plan: &'a Plan,
    hosts: &'a [Host],
    config: &'a Config,
    rollout: Rollout,
    start_ms: i64,
    /// Virtual milliseconds since the start.
    now: i64,
    limit: i64,
    host_timeout_ms: i64,
    timing: Timing,
    queue: BinaryHeap<Reverse<(i64, u64, Next)>>,
    seq: u64,
    /// Selected hosts: id → index in `hosts`.
    index: HashMap<&'a str, u32>,
    agents: Vec<Agent>,
    versions: Vec<Arc<str>>,
    version_ids: HashMap<String, u32>,
    target: u32,
    /// Host timeouts: (due, host), checked against `instructed_since`.
    /// Hosts are instructed at the time of the input that admits them, and
    /// time never goes back, so this is a queue in order of due time.
    timeouts: VecDeque<(i64, u32)>,
    /// The earliest tick in the queue.
    tick_at: i64,
    /// When the windows next close, as last computed.
    closing: i64,
    reached_limit: bool,
    detect: Option<i64>,
    /// When, why and in which stage the rollout halted.
    halt: Option<(i64, String, Option<usize>)>,
    /// The stage started last.
    stage: Option<usize>,
    /// When the rollout reached its final state (completed, paused, rolled
    /// back).
    finished: Option<i64>,
    first_failure_logged: bool,
    timeline: Vec<(i64, Event)>,
    stages: Vec<StageReport>,
    /// Inputs the engine refused, with when and what fed them.
    refused: Vec<Refusal>,
    /// Everything a retrospective needs, when [`rehearse`] runs it.
    recording: Option<Recording>,
    /// The gates evaluated on the simulated metric, and what they did.
    gates: Vec<Modelled>,
    gate_reports: Vec<GateReport>,
    /// Gates assumed to pass.
    assumed: Vec<String>,
    /// Every host's usual value of the metric (empty without gates).
    usual: Vec<f64>,
}

impl<'a> Sim<'a> {
    fn new(plan: &'a Plan, hosts: &'a [Host], config: &'a Config) -> Sim<'a> {
        let stages = plan
            .stages
            .iter()
            .enumerate()
            .map(|(index, stage)| StageReport {
                index,
                name: stage.name.clone(),
                percent: stage.percent.as_f64(),
                quota: None,
                allowed_failures: None,
                started_s: None,
                completed_s: None,
            })
            .collect();
        let degraded = (config.faults.iter()).any(|f| matches!(f.kind(), FaultKind::Degrade(_)));
        let (modelled, assumed) = gates::modelled(plan, degraded);
        let usual = if modelled.is_empty() {
            Vec::new()
        } else {
            (hosts.iter())
                .map(|host| {
                    let spread = draw(config.seed, SPREAD_POSITION, &host.id);
                    gates::usual_value(config.metric_base, spread)
                })
                .collect()
        };
        let gate_reports = (modelled.iter())
            .map(|gate| GateReport {
                name: gate.name().to_owned(),
                kind: gate.kind(),
                report_only: gate.report_only(),
                evaluations: 0,
                failing: 0,
                no_data: 0,
                first_failing_s: None,
                first_failing_stage: None,
                first_failing_evidence: None,
            })
            .collect();
        let mut sim = Sim {
            plan,
            hosts,
            config,
            rollout: Rollout::new(ROLLOUT_ID.to_owned(), plan.clone(), config.start),
            start_ms: config.start.as_millisecond(),
            now: 0,
            limit: secs_ms(config.limit),
            host_timeout_ms: secs_ms(plan.gates.host_timeout),
            timing: Timing::new(config),
            queue: BinaryHeap::new(),
            seq: 0,
            index: HashMap::with_capacity(hosts.len()),
            agents: vec![Agent::new(); hosts.len()],
            versions: Vec::new(),
            version_ids: HashMap::new(),
            target: 0,
            timeouts: VecDeque::new(),
            tick_at: NEVER,
            closing: 0,
            reached_limit: false,
            detect: None,
            halt: None,
            stage: None,
            finished: None,
            first_failure_logged: false,
            timeline: Vec::new(),
            stages,
            refused: Vec::new(),
            recording: None,
            gates: modelled,
            gate_reports,
            assumed,
            usual,
        };
        sim.target = sim.intern(&plan.version);
        sim
    }

    fn run(&mut self) {
        self.feed_inventory();
        let start = Input::Action {
            action: Action::Start,
            actor: ACTOR.to_owned(),
            reason: "simulated rollout".to_owned(),
        };
        self.drive("start", |rollout, at| rollout.handle(at, start).into());
        for gate in 0..self.gates.len() {
            if let Ok(gate) = u16::try_from(gate) {
                self.push(self.now, Next::Gate(gate));
            }
        }
        self.schedule_tick();
        while let Some(Reverse((at, _, next))) = self.queue.pop() {
            if at > self.limit {
                self.reached_limit = true;
                self.now = self.limit;
                break;
            }
            self.now = at;
            match next {
                Next::CheckIn(host) => self.check_in(host as usize),
                Next::Wake(host) => self.wake(host as usize),
                Next::Tick => {
                    if at == self.tick_at {
                        self.tick_at = NEVER;
                    }
                    self.drive("tick", |rollout, at| rollout.tick(at));
                }
                Next::Approve(stage) => self.approve(stage),
                Next::Gate(gate) => self.evaluate(gate),
            }
            self.schedule_tick();
        }
    }

    /// What the server does when a rollout is created: every known host
    /// is offered; those matching the selector take part.
    fn feed_inventory(&mut self) {
        let at = self.timestamp(0);
        let (hosts, component) = (self.hosts, &self.plan.component);
        for (host, entry) in hosts.iter().enumerate() {
            let version = entry.components.get(component).map(str::to_owned);
            let sighting = Sighting {
                id: entry.id.as_arc().clone(),
                labels: entry.labels.clone(),
                version: version.as_deref().map(Arc::from),
            };
            let fed = self.rollout.offer(at, [sighting], None);
            if let Some(rejected) = &fed.rejected {
                self.refused("inventory", rejected.to_string());
            }
            let outcome = fed.outcome;
            let joined = !outcome.hosts.is_empty();
            // A pending rollout records holds too (outside its windows).
            for event in outcome.events {
                self.record(event);
            }
            if !joined {
                continue;
            }
            self.index.insert(&entry.id, host as u32);
            let version = version.map(|version| self.intern(&version));
            let seed = self.config.seed;
            let fault = (self.config.faults.iter().enumerate())
                .find(|(position, fault)| fault.hits(seed, *position, &entry.id, &entry.labels))
                .and_then(|(position, _)| u16::try_from(position).ok());
            let agent = &mut self.agents[host];
            agent.version = version;
            agent.fault = fault;
        }
    }

    // ---- the agents ----------------------------------------------------

    /// A check-in: the agent finishes what it applied, reports, and reads
    /// what it should run, as `sluice-agent` does.
    fn check_in(&mut self, host: usize) {
        let now = self.now;
        self.agents[host].next = NEVER;
        if self.agents[host].silent {
            return;
        }
        self.finish_apply(host);
        let target = self.target;
        let agent = &mut self.agents[host];
        if agent.silent {
            return;
        }
        if agent.fail_at <= now && agent.version == Some(target) {
            agent.unhealthy = true;
            agent.failed = true;
            agent.fail_at = NEVER;
        }
        let health = if agent.apply.is_some() {
            Health::Applying
        } else if agent.unhealthy {
            Health::Failed
        } else {
            Health::Ok
        };
        let version = agent.version;
        if health == Health::Failed {
            self.detect.get_or_insert(now);
        }

        let hosts = self.hosts;
        let entry = &hosts[host];
        let version_name = version.map(|v| self.versions[v as usize].clone());
        let report = version_name.clone().map(|version| HostReport {
            version: version.to_string(),
            health,
            message: (health == Health::Failed).then(|| {
                let spec = self.agents[host]
                    .fault
                    .map_or("", |f| self.config.faults[f as usize].spec());
                format!("health check failed (simulated fault {spec})")
            }),
            drifted: false,
        });
        let sighting = Sighting {
            id: entry.id.as_arc().clone(),
            labels: entry.labels.clone(),
            version: version_name,
        };
        self.drive("check-in", |rollout, at| {
            rollout.check_in(at, sighting, report)
        });

        if self.agents[host].apply.is_none() {
            if let Some(desired) = self.rollout.desired_version(&entry.id) {
                let desired = desired.to_owned();
                let desired = self.intern(&desired);
                if Some(desired) != self.agents[host].version {
                    let done = now + self.timing.apply_ms();
                    self.agents[host].apply = Some((desired, done));
                }
            }
        }
        if self.agents[host].apply.is_some() {
            let next = now + self.timing.interval_ms();
            self.agents[host].next = next;
            self.push(next, Next::CheckIn(host as u32));
        }
    }

    /// Ends the apply under way if it is done: the host runs the version,
    /// and if that is the target, its fault strikes.
    fn finish_apply(&mut self, host: usize) {
        let now = self.now;
        let fault = self.fault_of(host);
        let agent = &mut self.agents[host];
        let Some((version, done)) = agent.apply else {
            return;
        };
        if now < done {
            return;
        }
        agent.apply = None;
        agent.version = Some(version);
        agent.unhealthy = false;
        agent.fail_at = NEVER;
        if version != self.target {
            return;
        }
        agent.changed = true;
        match fault {
            Some(FaultKind::Fail) => {
                agent.unhealthy = true;
                agent.failed = true;
            }
            Some(FaultKind::Silent) => {
                agent.silent = true;
                agent.failed = true;
            }
            Some(FaultKind::FailAfter(after)) => {
                agent.fail_at = now.saturating_add(secs_ms(after));
                let due = agent.fail_at;
                self.push(due, Next::Wake(host as u32));
            }
            // Healthy: only the gates' metric shows it (`metric`).
            Some(FaultKind::Degrade(_)) | None => {}
        }
    }

    /// The rollout needs a sleeping host: it checks in at its next turn.
    fn wake(&mut self, host: usize) {
        let agent = &self.agents[host];
        if agent.silent || agent.next != NEVER {
            return;
        }
        let next = self.now + self.timing.residual_ms();
        self.agents[host].next = next;
        self.push(next, Next::CheckIn(host as u32));
    }

    fn fault_of(&self, host: usize) -> Option<FaultKind> {
        self.agents[host]
            .fault
            .map(|f| self.config.faults[f as usize].kind())
    }

    // ---- the controller ------------------------------------------------

    fn approve(&mut self, stage: usize) {
        let awaiting = matches!(
            self.rollout.status(),
            Status::Running { stage: s, phase: Phase::AwaitingApproval { approved: false } } if *s == stage
        );
        if awaiting {
            let approve = Input::Action {
                action: Action::Approve,
                actor: ACTOR.to_owned(),
                reason: format!(
                    "approved by the simulation {} after the stage awaited approval",
                    self.config.approve_after
                ),
            };
            self.drive("approval", |rollout, at| rollout.handle(at, approve).into());
        }
    }

    /// Evaluates a simulated gate while the stage progresses or bakes, and
    /// comes back after its interval until the rollout stops for good (a
    /// pause is for good here: no one resumes).
    fn evaluate(&mut self, index: u16) {
        let status = self.rollout.status();
        if status.is_terminal() || matches!(status, Status::Paused { .. }) {
            return;
        }
        let gate = &self.gates[index as usize];
        let next = self
            .now
            .saturating_add(secs_ms(Duration::from_secs(gate.interval_s())));
        if self.rollout.gate_active(gate.name()) {
            let result = match gate {
                Modelled::Compare(gate) => {
                    let cohorts = self.rollout.cohorts(self.config.cohort_max);
                    let values = |hosts: &[Arc<str>]| -> Vec<f64> {
                        (hosts.iter())
                            .filter_map(|id| self.index.get(&**id))
                            .map(|&host| self.metric(host as usize))
                            .collect()
                    };
                    let spread = &self.plan.strategy.spread;
                    let strata: Vec<StratumValues> = (cohorts.strata.iter())
                        .map(|stratum| StratumValues {
                            stratum: stratum.key.display(spread).to_string(),
                            canary: values(&stratum.canary),
                            baseline: values(&stratum.baseline),
                        })
                        .collect();
                    gates::compare(gate, &strata)
                }
                Modelled::Threshold { gate, over } => gates::threshold(
                    gate,
                    *over,
                    (0..self.hosts.len()).map(|host| self.metric(host)),
                    self.hosts.len(),
                ),
            };
            let report_only = gate.report_only();
            let stage = self.rollout.stage();
            let now = self.now;
            let report = &mut self.gate_reports[index as usize];
            report.evaluations += 1;
            match result.outcome {
                GateOutcome::Fail => {
                    report.failing += 1;
                    if report.first_failing_s.is_none() {
                        report.first_failing_s = Some(ms_secs(now));
                        report.first_failing_stage = stage;
                        report.first_failing_evidence = Some(result.evidence.clone());
                    }
                    if !report_only {
                        self.detect.get_or_insert(now);
                    }
                }
                GateOutcome::NoData => report.no_data += 1,
                GateOutcome::Pass => {}
            }
            self.drive("gate", |rollout, at| {
                rollout.handle(at, Input::Gate(result)).into()
            });
        }
        self.push(next, Next::Gate(index));
    }

    /// A host's value of the simulated metric now.
    fn metric(&self, host: usize) -> f64 {
        let usual = self.usual[host];
        match self.fault_of(host) {
            Some(FaultKind::Degrade(factor)) if self.agents[host].version == Some(self.target) => {
                usual * factor
            }
            _ => usual,
        }
    }

    fn listens(&self) -> bool {
        self.rollout.listens()
    }

    /// Queues a tick at the engine's next timer, if any is earlier than the
    /// tick already queued.
    fn schedule_tick(&mut self) {
        let mut next = NEVER;
        let status = self.rollout.status();
        if let Status::Running {
            phase: Phase::Baking { until },
            ..
        } = status
        {
            next = next.min(self.at_ms(*until));
        }
        if self.listens() {
            while let Some(&(due, host)) = self.timeouts.front() {
                let since = self.agents[host as usize].instructed_since;
                if since != NEVER && since + self.host_timeout_ms == due {
                    next = next.min(due);
                    break;
                }
                self.timeouts.pop_front();
            }
        }
        let status = self.rollout.status();
        if !self.plan.windows.is_empty()
            && !status.is_terminal()
            && !matches!(status, Status::Paused { .. })
        {
            next = next.min(match self.rollout.held() {
                Some(HoldReason::OutsideWindow { next_opening }) => match next_opening {
                    Some(at) => self.at_ms(*at),
                    None => self.now + DAY_MS,
                },
                Some(HoldReason::Frozen { .. }) => NEVER,
                None => self.next_closing(),
            });
        }
        if next > self.now && next < self.tick_at {
            self.tick_at = next;
            self.push(next, Next::Tick);
        }
    }

    /// The first whole minute after now at which no window is open.
    fn next_closing(&mut self) -> i64 {
        if self.closing > self.now {
            return self.closing;
        }
        let first = (self.start_ms + self.now).div_euclid(MINUTE_MS) + 1;
        let last = first + CLOSING_SEARCH_MS / MINUTE_MS;
        self.closing = (first..=last)
            .filter_map(|minute| Timestamp::from_millisecond(minute * MINUTE_MS).ok())
            .find(|at| !windows_open(&self.plan.windows, *at))
            .map_or(NEVER, |at| at.as_millisecond() - self.start_ms);
        self.closing
    }

    // ---- the engine ----------------------------------------------------

    /// Drives the rollout now with `step` (a driving rule, or one input),
    /// takes in what it changed, and lists a refused input.
    fn drive(&mut self, what: &'static str, step: impl FnOnce(&mut Rollout, Timestamp) -> Fed) {
        let at = self.timestamp(self.now);
        let fed = step(&mut self.rollout, at);
        if let Some(rejected) = fed.rejected {
            self.refused(what, rejected.to_string());
        }
        self.absorb(fed.outcome);
    }

    fn refused(&mut self, input: &'static str, reason: String) {
        self.refused.push(Refusal {
            at_s: ms_secs(self.now),
            input,
            reason,
        });
    }

    /// Wakes the hosts the rollout needs and records its events.
    fn absorb(&mut self, outcome: sluice_core::rollout::Outcome) {
        if !outcome.hosts.is_empty() {
            let at = self.timestamp(self.now);
            let second = at.as_second();
            let counts = self.rollout.counts();
            if let Some(recording) = &mut self.recording {
                let sample = StateSample { at, counts };
                match recording.samples.last_mut() {
                    Some(last) if last.at.as_second() == second => *last = sample,
                    Some(last) if last.counts == counts => {}
                    _ => recording.samples.push(sample),
                }
            }
        }
        for change in outcome.hosts {
            let Some(&host) = self.index.get(change.id.as_str()) else {
                continue;
            };
            let host = host as usize;
            match change.state {
                HostState::Instructed { since } => {
                    let since = self.at_ms(since);
                    self.agents[host].instructed_since = since;
                    if self.host_timeout_ms > 0 {
                        self.timeouts
                            .push_back((since + self.host_timeout_ms, host as u32));
                    }
                    self.wake(host);
                }
                HostState::Reverting => {
                    self.agents[host].instructed_since = NEVER;
                    self.wake(host);
                }
                _ => self.agents[host].instructed_since = NEVER,
            }
        }
        for event in outcome.events {
            self.record(event);
        }
    }

    fn record(&mut self, event: Event) {
        let now = self.now;
        if let Some(recording) = &mut self.recording {
            recording.events.push(event.clone());
        }
        match &event.kind {
            EventKind::HostFailed { .. } => {
                self.detect.get_or_insert(now);
                if self.first_failure_logged {
                    return;
                }
                self.first_failure_logged = true;
            }
            EventKind::GateEvaluated { .. } => return,
            EventKind::StageStarted { index, quota, .. } => {
                if let Some(stage) = self.stages.get_mut(*index) {
                    stage.started_s = Some(ms_secs(now));
                    stage.quota = Some(*quota);
                    stage.allowed_failures = Some(self.plan.gates.max_failed.resolve(*quota));
                }
                self.stage = Some(*index);
            }
            EventKind::StageCompleted { index, .. } => {
                if let Some(stage) = self.stages.get_mut(*index) {
                    stage.completed_s = Some(ms_secs(now));
                }
            }
            EventKind::AwaitingApproval { stage } => {
                let at = now.saturating_add(secs_ms(self.config.approve_after));
                self.push(at, Next::Approve(*stage));
            }
            EventKind::Paused { reason } | EventKind::RollbackStarted { reason, .. }
                if self.halt.is_none() =>
            {
                self.halt = Some((now, reason.clone(), self.stage));
            }
            _ => {}
        }
        let status = self.rollout.status();
        if self.finished.is_none()
            && (status.is_terminal() || matches!(status, Status::Paused { .. }))
        {
            self.finished = Some(now);
        }
        self.timeline.push((now, event));
    }

    // ---- bookkeeping ---------------------------------------------------

    fn push(&mut self, at: i64, next: Next) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, next)));
    }

    fn intern(&mut self, version: &str) -> u32 {
        if let Some(&id) = self.version_ids.get(version) {
            return id;
        }
        let id = self.versions.len() as u32;
        self.versions.push(Arc::from(version));
        self.version_ids.insert(version.to_owned(), id);
        id
    }

    fn timestamp(&self, ms: i64) -> Timestamp {
        Timestamp::from_millisecond(self.start_ms.saturating_add(ms)).unwrap_or(Timestamp::MAX)
    }

    fn at_ms(&self, at: Timestamp) -> i64 {
        at.as_millisecond() - self.start_ms
    }

    fn report(self) -> Report {
        let end = self.now;
        let modelled: Vec<String> = (self.gates.iter())
            .map(|gate| format!("{} ({})", gate.name(), gate.kind()))
            .collect();
        let mut report = Report::new(self.plan, self.config, self.assumed, &modelled);
        report.gates = self.gate_reports;
        report.hosts_fleet = self.hosts.len() as u64;
        report.hosts_selected = self.rollout.selected();
        report.hosts_admitted = self.rollout.admitted();
        report.hosts_reverted = self.rollout.counts().reverted;
        let mut fault_hosts = vec![0u64; self.config.faults.len()];
        let mut selected: Vec<usize> = self.index.values().map(|&h| h as usize).collect();
        selected.sort_unstable();
        for host in selected {
            let agent = &self.agents[host];
            if let Some(f) = agent.fault {
                fault_hosts[f as usize] += 1;
            }
            let role = self.hosts[host].labels.get("role").unwrap_or("(none)");
            report.count_host(role, agent.changed, agent.failed);
        }
        report.faults = self
            .config
            .faults
            .iter()
            .zip(fault_hosts)
            .map(|(fault, hosts)| FaultReport {
                spec: fault.spec().to_owned(),
                hosts,
            })
            .collect();
        report.final_state = self.rollout.status().name().to_owned();
        report.reached_limit = self.reached_limit;
        report.time_to_detect_s = self.detect.map(ms_secs);
        report.time_to_halt_s = self.halt.as_ref().map(|(at, _, _)| ms_secs(*at));
        report.halt_stage = self.halt.as_ref().and_then(|(_, _, stage)| *stage);
        report.halt_reason = self.halt.map(|(_, reason, _)| reason);
        report.max_in_flight =
            Some(self.rollout.max_in_flight()).filter(|&limit| limit != u64::MAX);
        report.duration_s = ms_secs(self.finished.unwrap_or(end));
        report.ended_s = ms_secs(end);
        report.stages = self.stages;
        report.refused = self.refused;
        report.set_timeline(self.start_ms, self.timeline);
        report
    }
}

/// The simulated agents' timing, every draw from the one PRNG seeded by
/// the config, in the order the caller asks.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    rng: fastrand::Rng,
    poll_ms: f64,
}

impl Timing {
    pub(crate) fn new(config: &Config) -> Timing {
        Timing {
            rng: fastrand::Rng::with_seed(config.seed),
            poll_ms: secs_ms(config.poll).max(1) as f64,
        }
    }

    /// One jittered check-in interval: `poll` × U(0.8, 1.2).
    pub(crate) fn interval_ms(&mut self) -> i64 {
        (self.poll_ms * (0.8 + 0.4 * self.rng.f64())).round() as i64
    }

    /// The wait from an arbitrary moment to a host's next check-in: a
    /// uniform share of a length-biased interval (the forward recurrence
    /// time of the jittered interval; length-biased U(a, b) has density
    /// ∝ x, sampled by inverting its distribution function).
    pub(crate) fn residual_ms(&mut self) -> i64 {
        let (a, b) = (0.8 * self.poll_ms, 1.2 * self.poll_ms);
        let length = (a * a + self.rng.f64() * (b * b - a * a)).sqrt();
        (self.rng.f64() * length).round() as i64
    }

    /// How long an apply takes.
    pub(crate) fn apply_ms(&mut self) -> i64 {
        let (low, high) = (secs_ms(APPLY_MIN), secs_ms(APPLY_MAX));
        low + (self.rng.f64() * (high - low) as f64).round() as i64
    }
}

pub(crate) fn secs_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs())
        .unwrap_or(i64::MAX / 1_000)
        .saturating_mul(1_000)
}

/// Milliseconds as seconds, for reports.
pub(crate) fn ms_secs(ms: i64) -> f64 {
    ms as f64 / 1_000.0
}
