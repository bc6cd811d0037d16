//! A change pushed to every selected host at once, as the simulator would
//! run it, without running its event loop: the retrospective compares a
//! rollout's blast radius with it ([`crate::retro::all_at_once`]), and at
//! 100,000 hosts the loop takes over a second where this takes about a
//! tenth of one (bench/README.md).
//!
//! The plan pushes at once when it has one stage of 100 %, no bake, no
//! approval, no `max_in_flight` and no windows. Then the start admits every
//! selected host and nothing but the hosts' own timing and faults decides
//! the figures. [`push_at_once`] computes them from what the loop would
//! draw, in the order it would draw it, so they are the loop's figures
//! exactly (the tests compare the two over random fleets); where that
//! shortcut does not hold it runs the loop.

use foldhash::{HashSet, HashSetExt};
use sluice_core::fleet::Host;
use sluice_core::percent::Percent;
use sluice_core::plan::{OnFailure, Plan};
use sluice_core::selection::stratify;

use crate::fault::FaultKind;
use crate::run::{ms_secs, secs_ms, simulate, Config, Timing};

/// What pushing a change to every selected host at once does: the figures
/// [`simulate`] gives for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Push {
    /// Hosts that ran the target at some point.
    pub hosts_changed: u64,
    /// Hosts that got the target and failed.
    pub hosts_failed: u64,
    /// When sluice first saw a failure.
    pub time_to_detect_s: Option<f64>,
}

/// [`simulate`]'s figures for `plan` pushing its change to every selected
/// host at once, computed without the event loop when `plan` pushes at
/// once and the shortcut holds ([`shortcut`]); otherwise by [`simulate`].
pub fn push_at_once(plan: &Plan, hosts: &[Host], config: &Config) -> Push {
    if let Some(push) = shortcut(plan, hosts, config) {
        return push;
    }
    let report = simulate(plan, hosts, config);
    Push {
        hosts_changed: report.hosts_changed,
        hosts_failed: report.hosts_failed,
        time_to_detect_s: report.time_to_detect_s,
    }
}

/// The loop's figures of an all-at-once push, from the draws the loop would
/// make; `None` where the shortcut does not hold.
///
/// What the loop does with such a plan:
/// 1. The start admits every selected host, in the engine's order: the
///    stratum furthest behind its quota (lowest admitted/quota, ties by
///    key) admits its best-ranked host (lowest rank, ties by id). Each
///    admitted host wakes, drawing its first check-in in that order.
/// 2. At its first check-in (by time, ties in the order of waking) a host
///    at the target is healthy and draws nothing; any other draws its apply
///    and its next check-in, where it reports the result: failed if a fault
///    hits it, else healthy. While the rollout runs nothing else draws.
/// 3. Failures count as they are reported (by time, ties in the order of
///    the first check-ins); the one past `max_failed` fails the stage. A
///    pause stops no host already told, so every host not at the target
///    changes. A rollback tells every host its own version back, so only
///    the hosts that checked in by then change — and all their draws came
///    before it; what is drawn after the rollback decides nothing here.
///
/// It holds with `fail` faults only (`fail-after` and `silent` change what
/// a host reports later), unique host ids, every apply done by the next
/// check-in, and every host settled before `host_timeout` (no host is timed
/// out) and before the bound on virtual time.
fn shortcut(plan: &Plan, hosts: &[Host], config: &Config) -> Option<Push> {
    let at_once = matches!(
        plan.stages.as_slice(),
        [stage] if stage.percent == Percent::HUNDRED && stage.bake.is_zero() && !stage.approve
    );
    let only_fail = (config.faults.iter()).all(|fault| fault.kind() == FaultKind::Fail);
    if !at_once || plan.max_in_flight.is_some() || !plan.windows.is_empty() || !only_fail {
        return None;
    }
    if u32::try_from(hosts.len()).is_err() {
        return None;
    }

    // What each host does, read in the hosts' order (ids must be unique):
    // whether it runs the target already, and whether a fault hits it.
    let target = Some(plan.version.as_str());
    let mut ids = HashSet::with_capacity(hosts.len());
    let mut facts = Vec::with_capacity(hosts.len());
    for host in hosts {
        if !ids.insert(&*host.id) {
            return None;
        }
        let fails = (config.faults.iter().enumerate())
            .any(|(position, fault)| fault.hits(config.seed, position, &host.id, &host.labels));
        facts.push((host.components.get(&plan.component) == target, fails));
    }

    // 1. The order of admission: each stratum's hosts in rank order, merged
    // by how far behind its quota (its size, at 100 %) the stratum is when
    // each is admitted, then by the stratum's key (strata come by key).
    let stratification = stratify(plan, hosts);
    let strata = stratification.strata();
    let mut admission: Vec<(u64, usize)> = Vec::with_capacity(stratification.selected());
    for (s, stratum) in strata.iter().enumerate() {
        admission.extend((0..stratum.size()).map(|admitted| (admitted, s)));
    }
    admission.sort_unstable_by(|&(a, s), &(b, t)| {
        let (n, m) = (strata[s].size(), strata[t].size());
        (u128::from(a) * u128::from(m))
            .cmp(&(u128::from(b) * u128::from(n)))
            .then(s.cmp(&t))
    });
    let mut timing = Timing::new(config);
    let mut first: Vec<(i64, u32)> = (admission.into_iter())
        .map(|(admitted, s)| (timing.residual_ms(), strata[s].members()[admitted as usize]))
        .collect();

    // 2. The first check-ins (a stable sort keeps the order of waking).
    first.sort_by_key(|&(at, _)| at);
    // Each host that applies the target: its first check-in and whether it
    // fails; each failing one: its report's time and place in the queue.
    let mut applies: Vec<(i64, bool)> = Vec::with_capacity(first.len());
    let mut failing: Vec<(i64, usize)> = Vec::new();
    let mut settled = 0;
    for (at, host) in first {
        let (at_target, fails) = facts[host as usize];
        if at_target {
            settled = settled.max(at);
            continue;
        }
        let applied = at + timing.apply_ms();
        let report = at + timing.interval_ms();
        if applied > report {
            return None;
        }
        settled = settled.max(report);
        if fails {
            failing.push((report, applies.len()));
        }
        applies.push((at, fails));
    }
    let host_timeout = secs_ms(plan.gates.host_timeout);
    if (host_timeout > 0 && settled >= host_timeout) || settled > secs_ms(config.limit) {
        return None;
    }

    // 3. The failure that fails the stage, if the rollout rolls back.
    failing.sort_unstable();
    let allowed = (plan.gates.max_failed).resolve(stratification.selected() as u64);
    let rolls_back = plan.on_failure == OnFailure::Rollback && plan.reversible;
    let halt = match usize::try_from(allowed).ok().and_then(|i| failing.get(i)) {
        Some(&(at, _)) if rolls_back => at,
        _ => i64::MAX,
    };
    let mut push = Push {
        hosts_changed: 0,
        hosts_failed: 0,
        time_to_detect_s: failing.first().map(|&(at, _)| ms_secs(at)),
    };
    for (at, fails) in applies {
        if at <= halt {
            push.hosts_changed += 1;
            push.hosts_failed += u64::from(fails);
        }
    }
    Some(push)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use sluice_core::fleet::{HostId, Labels, StrMap};
    use sluice_core::plan::parse_plan;

    use super::*;
    use crate::Fault;

    /// A plan that pushes version 2 of `app` to the selected hosts at once.
    fn once(selector: &str, max_failed: &str, host_timeout: &str, on_failure: &str) -> Plan {
        parse_plan(&format!(
            "name: once\ncomponent: app\nversion: \"2\"\nselector: \"{selector}\"\n\
             strategy: {{ spread: [role, site] }}\nstages:\n  - {{ name: all, percent: 100 }}\n\
             gates: {{ max_failed: {max_failed}, host_timeout: {host_timeout} }}\n\
             on_failure: {on_failure}\n"
        ))
        .expect("a valid test plan")
    }

    /// Hosts `h0…` with roles and sites in turn, each running the version
    /// of `app` given for it (`None`: none).
    fn fleet(versions: &[Option<&str>]) -> Vec<Host> {
        let (roles, sites) = (["web", "db", "edge"], ["sto", "lon"]);
        (versions.iter().enumerate())
            .map(|(i, version)| {
                let labels: Labels = [("role", roles[i % 3]), ("site", sites[i / 3 % 2])].into();
                let components: StrMap = version.iter().map(|v| ("app", *v)).collect();
                Host {
                    id: HostId::parse(format!("h{i}")).expect("a host id"),
                    labels,
                    components,
                }
            })
            .collect()
    }

    /// The hosts `h{i}` for each `i` of `failing` fail.
    fn config(seed: u64, failing: &[usize]) -> Config {
        let failing: HashSet<String> = failing.iter().map(|i| format!("h{i}")).collect();
        Config {
            seed,
            faults: vec![Fault::on_hosts("failing", failing)],
            ..Config::default()
        }
    }

    /// The shortcut's figures, which must exist, equal the loop's.
    fn assert_shortcut_is_the_loop(plan: &Plan, hosts: &[Host], config: &Config) -> Push {
        let push = shortcut(plan, hosts, config).expect("the shortcut holds");
        let report = simulate(plan, hosts, config);
        assert_eq!(report.refused, []);
        let run = Push {
            hosts_changed: report.hosts_changed,
            hosts_failed: report.hosts_failed,
            time_to_detect_s: report.time_to_detect_s,
        };
        assert_eq!(
            push, run,
            "{:?}, {}, seed {}",
            plan.on_failure, plan.gates.max_failed, config.seed
        );
        push
    }

    #[test]
    fn a_rollback_spares_the_hosts_that_had_not_checked_in() {
        let hosts = fleet(&[Some("1"); 400]);
        let every: Vec<usize> = (0..400).collect();
        for seed in 0..5 {
            let config = config(seed, &every);
            let plan = once("", "0", "15m", "rollback");
            let push = assert_shortcut_is_the_loop(&plan, &hosts, &config);
            assert!(push.hosts_changed < 400, "{push:?}");
            assert_eq!(push.hosts_failed, push.hosts_changed);
            let plan = once("", "0", "15m", "pause");
            let push = assert_shortcut_is_the_loop(&plan, &hosts, &config);
            assert_eq!((push.hosts_changed, push.hosts_failed), (400, 400));
        }
    }

    #[test]
    fn hosts_at_the_target_or_outside_the_selector_do_not_change() {
        let versions: Vec<Option<&str>> = (0..60)
            .map(|i| [Some("1"), Some("2"), None][i % 3])
            .collect();
        let hosts = fleet(&versions);
        let failing: Vec<usize> = (0..60).step_by(2).collect();
        let plan = once("role notin (edge)", "100%", "2h", "rollback");
        let push = assert_shortcut_is_the_loop(&plan, &hosts, &config(3, &failing));
        // web (i % 3 == 0) and db are selected, and db hosts run 2 already.
        assert_eq!(push.hosts_changed, 20);
        assert_eq!(push.hosts_failed, 10);
        assert!(push.time_to_detect_s.is_some());
    }

    #[test]
    fn where_the_shortcut_does_not_hold_the_loop_runs() {
        let hosts = fleet(&[Some("1"); 50]);
        let config = config(1, &[0, 1, 2]);
        let staged = parse_plan(
            "name: staged\ncomponent: app\nversion: \"2\"\nstages:\n  - { percent: 10 }\n  - { percent: 100 }\n",
        )
        .expect("a valid test plan");
        let silent = Config {
            faults: vec![Fault::parse("all:silent").expect("a fault")],
            ..config.clone()
        };
        for (plan, config) in [
            // A host times out before it reports.
            (once("", "1", "1m", "rollback"), &config),
            (staged, &config),
            (once("", "1", "15m", "rollback"), &silent),
        ] {
            assert_eq!(shortcut(&plan, &hosts, config), None, "{}", plan.name);
            let report = simulate(&plan, &hosts, config);
            assert_eq!(
                push_at_once(&plan, &hosts, config),
                Push {
                    hosts_changed: report.hosts_changed,
                    hosts_failed: report.hosts_failed,
                    time_to_detect_s: report.time_to_detect_s,
                }
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any fleet, failing hosts, selector, `max_failed`, `on_failure`
        /// and seed: the shortcut gives the loop's figures exactly.
        #[test]
        fn the_shortcut_gives_the_loops_figures(
            versions in prop::collection::vec(
                prop::sample::select(vec![Some("1"), Some("2"), None]), 1..300),
            failing in prop::collection::vec(any::<prop::sample::Index>(), 0..150),
            selector in prop::sample::select(vec!["", "role notin (edge)", "site=sto"]),
            max_failed in prop::sample::select(vec!["0", "1", "3", "10%", "50%"]),
            host_timeout in prop::sample::select(vec!["3m", "15m", "2h"]),
            on_failure in prop::sample::select(vec!["pause", "rollback"]),
            reversible in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let hosts = fleet(&versions);
            let failing: Vec<usize> = failing.iter().map(|i| i.index(versions.len())).collect();
            let mut plan = once(selector, max_failed, host_timeout, on_failure);
            plan.reversible = reversible;
            assert_shortcut_is_the_loop(&plan, &hosts, &config(seed, &failing));
        }
    }
}
