//! Property tests of admission across rollouts ([`sluice_core::arbiter`]):
//! random fleets, concurrent rollouts of several components (exclusive or
//! not), budgets, pins, and random orders of reports, silences, pauses,
//! restarts and time. After every step: the budget (fleet-wide and per
//! stratum) and the one-change-per-host rule hold, no pinned host is
//! admitted by a rollout of its component, each rollout keeps its own
//! `max_in_flight`, and the arbiter's count of hosts in flight is the
//! rollouts'. At the end, once hosts answer and paused rollouts are
//! resumed, every rollout completes: none starves.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use sluice_core::arbiter::{Arbiter, Budget};
use sluice_core::fleet::Labels;
use sluice_core::percent::{Amount, Percent};
use sluice_core::plan::parse_plan;
use sluice_core::rollout::{
    Action, EventKind, Health, HostReport, HostState, Input, Outcome, Rollout, Sighting, Status,
};
use sluice_core::selection::StratumKey;

const ROLES: [&str; 3] = ["web", "db", "edge"];
const SITES: [&str; 2] = ["sto", "lon"];
const OLD: &str = "1";
const TARGET: &str = "2";

#[derive(Debug, Clone)]
struct RolloutSpec {
    /// `role=web`-like selector, or every host.
    role: Option<usize>,
    /// Stages' percentages, the last 100.
    stages: Vec<u32>,
    max_in_flight: Option<u64>,
    exclusive: bool,
}

fn rollout_spec() -> impl Strategy<Value = RolloutSpec> {
    (
        proptest::option::weighted(0.4, 0..ROLES.len()),
        prop_oneof![
            Just(vec![100]),
            Just(vec![50, 100]),
            Just(vec![10, 40, 100])
        ],
        proptest::option::of(1u64..5),
        proptest::bool::weighted(0.8),
    )
        .prop_map(|(role, stages, max_in_flight, exclusive)| RolloutSpec {
            role,
            stages,
            max_in_flight,
            exclusive,
        })
}

fn budget() -> impl Strategy<Value = Option<Budget>> {
    let amount = || {
        prop_oneof![
            (1u64..6).prop_map(Amount::Count),
            proptest::sample::select(vec!["5%", "10%", "25%"])
                .prop_map(|p| Amount::Percent(Percent::parse(p).expect("percent"))),
        ]
    };
    proptest::option::weighted(
        0.8,
        (
            amount(),
            proptest::option::of(amount()),
            proptest::sample::select(vec![vec!["role"], vec!["role", "site"], vec![]]),
        )
            .prop_map(|(max_in_flight, per_stratum, spread)| Budget {
                max_in_flight,
                per_stratum,
                spread: spread.into_iter().map(str::to_owned).collect(),
            }),
    )
}

/// One thing that happens.
#[derive(Debug, Clone)]
enum Step {
    /// The host (by index) reports on every component: healthy at what it
    /// was told, or (`false`) failed.
    Report(usize, bool),
    /// Time passes, in minutes (host timeouts are 15 minutes).
    Wait(u64),
    /// An operator pauses, or resumes, a rollout (by index).
    Pause(usize),
    Resume(usize),
    /// The host's pin of a component (by index) is set or lifted.
    Pin(usize, usize),
    Unpin(usize, usize),
    /// The server restarts: every rollout is snapshot and restored, and
    /// the arbiter counts again.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (0usize..40, proptest::bool::weighted(0.93)).prop_map(|(h, ok)| Step::Report(h, ok)),
        3 => (0u64..20).prop_map(Step::Wait),
        1 => (0usize..4).prop_map(Step::Pause),
        1 => (0usize..4).prop_map(Step::Resume),
        1 => (0usize..40, 0usize..4).prop_map(|(h, c)| Step::Pin(h, c)),
        1 => (0usize..40, 0usize..4).prop_map(|(h, c)| Step::Unpin(h, c)),
        1 => Just(Step::Restart),
    ]
}

struct World {
    now: Timestamp,
    ids: Vec<Arc<str>>,
    labels: HashMap<String, Labels>,
    rollouts: Vec<Rollout>,
    plans: Vec<String>,
    arbiter: Arbiter,
    budget: Option<Budget>,
    pins: HashSet<(String, String)>,
    /// What each host runs, per component.
    runs: HashMap<(String, String), String>,
}

fn component(index: usize) -> String {
    format!("c{index}")
}

impl World {
    fn new(hosts: &[(usize, usize)], specs: &[RolloutSpec], budget: Option<Budget>) -> World {
        let ids: Vec<Arc<str>> = (0..hosts.len())
            .map(|i| Arc::from(format!("h{i:02}")))
            .collect();
        let labels: HashMap<String, Labels> = ids
            .iter()
            .zip(hosts)
            .map(|(id, (role, site))| {
                let labels = Labels::from([
                    ("role".to_owned(), ROLES[*role].to_owned()),
                    ("site".to_owned(), SITES[*site].to_owned()),
                ]);
                (id.to_string(), labels)
            })
            .collect();
        let now = Timestamp::UNIX_EPOCH;
        let mut world = World {
            now,
            ids,
            labels,
            rollouts: Vec::new(),
            plans: Vec::new(),
            arbiter: Arbiter::new(),
            budget: budget.clone(),
            pins: HashSet::new(),
            runs: HashMap::new(),
        };
        let labels = world.labels.clone();
        world
            .arbiter
            .set_budget(budget, labels.values(), &|id| labels.get(id).cloned());
        for (index, spec) in specs.iter().enumerate() {
            let selector = spec
                .role
                .map(|role| format!("selector: \"role={}\"\n", ROLES[role]))
                .unwrap_or_default();
            let stages: Vec<String> = spec
                .stages
                .iter()
                .map(|p| format!("  - {{ percent: {p} }}\n"))
                .collect();
            let max = spec
                .max_in_flight
                .map(|m| format!("max_in_flight: {m}\n"))
                .unwrap_or_default();
            let source = format!(
                "name: r{index}\ncomponent: {}\nversion: \"{TARGET}\"\n{selector}{max}exclusive: {}\nstrategy: {{ spread: [site] }}\nstages:\n{}",
                component(index),
                spec.exclusive,
                stages.concat()
            );
            let plan = parse_plan(&source).expect("plan");
            let mut rollout = Rollout::new(format!("r-{index}"), plan, now);
            rollout.set_arbitrated(true);
            let sightings: Vec<Sighting> = world
                .ids
                .iter()
                .map(|id| Sighting {
                    id: id.clone(),
                    labels: world.labels[&**id].clone(),
                    version: Some(OLD.into()),
                })
                .collect();
            let fed = rollout.offer(now, sightings, None);
            assert!(fed.rejected.is_none());
            world.plans.push(source);
            world.rollouts.push(rollout);
            world.input(index, |rollout, now| {
                rollout
                    .handle(
                        now,
                        Input::Action {
                            action: Action::Start,
                            actor: "op".to_owned(),
                            reason: "go".to_owned(),
                        },
                    )
                    .expect("start")
            });
        }
        world
    }

    /// Feeds rollout `index` one input, lets the arbiter see what changed,
    /// then hand out hosts.
    fn input(&mut self, index: usize, feed: impl FnOnce(&mut Rollout, Timestamp) -> Outcome) {
        let outcome = feed(&mut self.rollouts[index], self.now);
        let labels = &self.labels;
        self.arbiter
            .observe(index, &self.rollouts[index], &outcome.hosts, &|id| {
                labels.get(id).cloned()
            });
        self.apply(index, &outcome);
    }

    /// What the agents make of an outcome: a host told the target applies it.
    fn apply(&mut self, index: usize, outcome: &Outcome) {
        let component = self.rollouts[index].plan().component.clone();
        for change in &outcome.hosts {
            if let HostState::Instructed { .. } = change.state {
                assert!(
                    !self.pins.contains(&(change.id.clone(), component.clone())),
                    "{} admitted {} while its {component} is pinned",
                    self.rollouts[index].id(),
                    change.id
                );
                self.runs
                    .insert((change.id.clone(), component.clone()), TARGET.to_owned());
            }
        }
    }

    fn arbitrate(&mut self) {
        let labels = &self.labels;
        let pins = &self.pins;
        let fleet = self.ids.len() as u64;
        let changed = self.arbiter.arbitrate(
            self.now,
            fleet,
            &mut self.rollouts[..],
            &|id| labels.get(id).cloned(),
            &|host, component| pins.contains(&(host.to_owned(), component.to_owned())),
        );
        for (index, outcome) in changed {
            self.apply(index, &outcome);
            for event in &outcome.events {
                assert!(
                    matches!(
                        event.kind,
                        EventKind::Waiting { .. } | EventKind::WaitOver { .. }
                    ),
                    "the arbiter made {event:?}"
                );
            }
        }
    }

    fn report(&mut self, host: usize, ok: bool) {
        let id = self.ids[host % self.ids.len()].clone();
        for index in 0..self.rollouts.len() {
            let component = self.rollouts[index].plan().component.clone();
            let version = self
                .runs
                .get(&(id.to_string(), component))
                .cloned()
                .unwrap_or_else(|| OLD.to_owned());
            let sighting = Sighting {
                id: id.clone(),
                labels: self.labels[&*id].clone(),
                version: Some(version.as_str().into()),
            };
            let report = HostReport {
                version,
                health: if ok { Health::Ok } else { Health::Failed },
                message: None,
                drifted: false,
            };
            self.input(index, |rollout, now| {
                let fed = rollout.check_in(now, sighting, Some(report));
                assert!(fed.rejected.is_none());
                fed.outcome
            });
        }
    }

    fn act(&mut self, index: usize, action: Action) {
        let index = index % self.rollouts.len();
        self.input(index, |rollout, now| {
            rollout
                .handle(
                    now,
                    Input::Action {
                        action,
                        actor: "op".to_owned(),
                        reason: "test".to_owned(),
                    },
                )
                .unwrap_or_default()
        });
    }

    fn tick(&mut self) {
        for index in 0..self.rollouts.len() {
            self.input(index, |rollout, now| {
                let fed = rollout.tick(now);
                assert!(fed.rejected.is_none());
                fed.outcome
            });
        }
    }

    fn restart(&mut self) {
        let labels = self.labels.clone();
        for (rollout, source) in self.rollouts.iter_mut().zip(&self.plans) {
            let plan = parse_plan(source).expect("plan");
            let mut restored = Rollout::restore(plan, rollout.snapshot()).expect("restores");
            restored.set_arbitrated(true);
            *rollout = restored;
        }
        self.arbiter = Arbiter::new();
        self.arbiter
            .set_budget(self.budget.clone(), labels.values(), &|id| {
                labels.get(id).cloned()
            });
        self.arbiter
            .rebuild(&self.rollouts[..], &|id| labels.get(id).cloned());
    }

    fn run(&mut self, step: &Step) {
        match *step {
            Step::Report(host, ok) => self.report(host, ok),
            Step::Wait(minutes) => {
                self.now += SignedDuration::from_mins(minutes as i64);
                self.tick();
            }
            Step::Pause(index) => self.act(index, Action::Pause),
            Step::Resume(index) => self.act(index, Action::Resume),
            Step::Pin(host, c) => {
                let id = self.ids[host % self.ids.len()].to_string();
                let component = component(c % self.rollouts.len());
                // As the server does: no pin of a host its rollout holds.
                let held = self.rollouts.iter().any(|rollout| {
                    rollout.plan().component == component
                        && rollout
                            .host_state(&id)
                            .is_some_and(|state| *state != HostState::Waiting)
                });
                if !held {
                    self.pins.insert((id, component));
                }
            }
            Step::Unpin(host, c) => {
                let id = self.ids[host % self.ids.len()].to_string();
                self.pins.remove(&(id, component(c % self.rollouts.len())));
            }
            Step::Restart => self.restart(),
        }
        self.arbitrate();
        self.check();
    }

    /// The invariants, from the rollouts themselves.
    fn check(&self) {
        let mut instructed: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut exclusive_changes: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, rollout) in self.rollouts.iter().enumerate() {
            assert!(
                rollout.in_flight() <= rollout.max_in_flight(),
                "{} has {} in flight, its plan allows {}",
                rollout.id(),
                rollout.in_flight(),
                rollout.max_in_flight()
            );
            for host in rollout.hosts() {
                let told = match host.state {
                    HostState::Instructed { .. } => {
                        instructed.entry(host.id).or_default().push(index);
                        true
                    }
                    HostState::Reverting => true,
                    _ => false,
                };
                if told && rollout.plan().exclusive {
                    exclusive_changes.entry(host.id).or_default().push(index);
                }
            }
        }
        for (host, rollouts) in &exclusive_changes {
            assert!(
                rollouts.len() <= 1,
                "host {host} changes for exclusive rollouts {rollouts:?} at once"
            );
        }
        let fleet = self.ids.len() as u64;
        assert_eq!(
            self.arbiter.usage(fleet).in_flight,
            instructed.len() as u64,
            "the arbiter counts the hosts in flight as the rollouts do"
        );
        let Some(budget) = &self.budget else {
            return;
        };
        assert!(
            instructed.len() as u64 <= budget.limit(fleet),
            "{} hosts in flight, the budget ({budget}) allows {}",
            instructed.len(),
            budget.limit(fleet)
        );
        if budget.per_stratum.is_some() {
            let key = |id: &str| StratumKey::of(&budget.spread, &self.labels[id]);
            let mut sizes: HashMap<StratumKey, u64> = HashMap::new();
            for id in &self.ids {
                *sizes.entry(key(id)).or_default() += 1;
            }
            let mut in_flight: HashMap<StratumKey, u64> = HashMap::new();
            for host in instructed.keys() {
                *in_flight.entry(key(host)).or_default() += 1;
            }
            for (stratum, count) in in_flight {
                let limit = budget.stratum_limit(sizes[&stratum]).expect("per stratum");
                assert!(
                    count <= limit,
                    "{count} hosts in flight in stratum {stratum:?}, the budget allows {limit}"
                );
            }
        }
    }

    /// Hosts answer healthy, paused rollouts resume and pins lift, until
    /// every rollout completes (or too many rounds passed).
    fn drain(&mut self) {
        self.pins.clear();
        for _ in 0..400 {
            if self
                .rollouts
                .iter()
                .all(|rollout| *rollout.status() == Status::Completed)
            {
                return;
            }
            for index in 0..self.rollouts.len() {
                if matches!(self.rollouts[index].status(), Status::Paused { .. }) {
                    self.act(index, Action::Resume);
                }
            }
            for host in 0..self.ids.len() {
                self.report(host, true);
                self.arbitrate();
                self.check();
            }
            self.now += SignedDuration::from_mins(1);
            self.tick();
            self.arbitrate();
            self.check();
        }
        let states: Vec<String> = self
            .rollouts
            .iter()
            .map(|rollout| {
                format!(
                    "{}: {} {:?} waiting {:?}",
                    rollout.id(),
                    rollout.status().name(),
                    rollout.counts(),
                    rollout.waiting()
                )
            })
            .collect();
        panic!("rollouts did not all complete: {states:#?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn budget_and_host_lock_hold_and_every_rollout_completes(
        hosts in proptest::collection::vec((0..ROLES.len(), 0..SITES.len()), 1..40),
        specs in proptest::collection::vec(rollout_spec(), 1..5),
        budget in budget(),
        steps in proptest::collection::vec(step(), 0..120),
    ) {
        let mut world = World::new(&hosts, &specs, budget);
        world.arbitrate();
        world.check();
        for step in &steps {
            world.run(step);
        }
        world.drain();
    }
}

/// Two rollouts that want every host under a budget of one: hosts go to
/// them in turn, each waiting for fleet budget while the other's host is
/// in flight, and the wait shows (and ends) in their events.
#[test]
fn a_budget_of_one_takes_turns_and_the_wait_is_visible() {
    let hosts: Vec<(usize, usize)> = (0..4).map(|i| (i % 3, i % 2)).collect();
    let spec = RolloutSpec {
        role: None,
        stages: vec![100],
        max_in_flight: None,
        exclusive: true,
    };
    let budget = Budget {
        max_in_flight: Amount::Count(1),
        per_stratum: None,
        spread: Vec::new(),
    };
    let mut world = World::new(&hosts, &[spec.clone(), spec], Some(budget));
    world.arbitrate();
    world.check();
    let in_flight =
        |world: &World| -> Vec<u64> { world.rollouts.iter().map(Rollout::in_flight).collect() };
    assert_eq!(in_flight(&world), [1, 0], "the oldest rollout goes first");
    assert_eq!(
        world.rollouts[0]
            .waiting()
            .map(|w| w.wait.to_string())
            .as_deref(),
        Some("waiting for fleet budget")
    );
    assert!(world.rollouts[1].waiting().is_some());
    let mut order = Vec::new();
    for _ in 0..8 {
        let (index, host) = world
            .rollouts
            .iter()
            .enumerate()
            .find_map(|(index, rollout)| {
                let host = rollout
                    .hosts()
                    .find(|host| matches!(host.state, HostState::Instructed { .. }))?;
                Some((index, host.id.to_owned()))
            })
            .expect("one host in flight");
        order.push(index);
        let host: usize = host[1..].parse().expect("index");
        world.report(host, true);
        world.arbitrate();
        world.check();
    }
    assert_eq!(order, [0, 1, 0, 1, 0, 1, 0, 1], "the rollouts take turns");
    for rollout in &world.rollouts {
        assert_eq!(*rollout.status(), Status::Completed);
        assert_eq!(rollout.waiting(), None);
    }
}
