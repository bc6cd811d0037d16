//! The driving rules the server and the simulator share: what the
//! inventory, a check-in and the clock feed a rollout, and when.

use jiff::{SignedDuration, Timestamp};
use sluice_core::fleet::Labels;
use sluice_core::plan::parse_plan;
use sluice_core::rollout::{
    Action, EventKind, Freeze, Health, HostReport, HostState, Input, Rollout, Sighting, Status,
};

const PLAN: &str = "name: p\ncomponent: docker-engine\nversion: \"2.0\"\nselector: role=web\nstages:\n  - { percent: 100 }\ngates: { host_timeout: 10m }\n";

fn at(minutes: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_mins(minutes)
}

fn web() -> Labels {
    [("role", "web")].into_iter().collect()
}

fn sighting(id: &str, labels: Labels, version: &str) -> Sighting {
    Sighting {
        id: id.into(),
        labels,
        version: Some(version.into()),
    }
}

fn report(version: &str, health: Health) -> Option<HostReport> {
    Some(HostReport {
        version: version.to_owned(),
        health,
        message: None,
        drifted: false,
    })
}

/// A started rollout over hosts `a` and `b` (role web), both admitted.
fn started() -> Rollout {
    let plan = parse_plan(PLAN).expect("plan");
    let mut rollout = Rollout::new("r-1".to_owned(), plan, at(0));
    let hosts = [sighting("a", web(), "1.0"), sighting("b", web(), "1.0")];
    let fed = rollout.offer(at(0), hosts, None);
    assert_eq!(fed.rejected, None);
    assert_eq!(rollout.selected(), 2);
    let start = Input::Action {
        action: Action::Start,
        actor: "t".to_owned(),
        reason: "go".to_owned(),
    };
    rollout.handle(at(0), start).expect("started");
    assert_eq!(rollout.admitted(), 2);
    rollout
}

#[test]
fn the_inventory_admits_matching_hosts_and_then_the_freeze_holds_the_rollout() {
    let plan = parse_plan(PLAN).expect("plan");
    let mut rollout = Rollout::new("r-1".to_owned(), plan, at(0));
    let db: Labels = [("role", "db")].into_iter().collect();
    let freeze = Freeze {
        actor: "oncall".to_owned(),
        reason: "INC-1".to_owned(),
    };
    let fed = rollout.offer(
        at(0),
        [sighting("a", web(), "1.0"), sighting("d", db, "1.0")],
        Some(&freeze),
    );
    assert_eq!(fed.rejected, None);
    assert_eq!(rollout.selected(), 1, "only the web host takes part");
    assert!(
        rollout.held().is_some(),
        "the freeze was fed after the hosts"
    );
    // A refused input (an empty freeze reason) ends the run, and what came
    // before it stands.
    let mut rollout = Rollout::new("r-2".to_owned(), parse_plan(PLAN).expect("plan"), at(0));
    let empty = Freeze {
        actor: "oncall".to_owned(),
        reason: " ".to_owned(),
    };
    let fed = rollout.offer(at(0), [sighting("a", web(), "1.0")], Some(&empty));
    assert!(fed.rejected.is_some());
    assert_eq!(rollout.selected(), 1);
    assert_eq!(fed.outcome.hosts.len(), 1, "the joiner is still recorded");
}

#[test]
fn a_check_in_reports_while_the_rollout_listens_after_it_ended() {
    let mut rollout = started();
    // `a` reports healthy at the target.
    let fed = rollout.check_in(
        at(1),
        sighting("a", web(), "2.0"),
        report("2.0", Health::Ok),
    );
    assert_eq!(fed.rejected, None);
    assert_eq!(rollout.host_state("a"), Some(&HostState::Healthy));
    // An operator aborts: the rollout is terminal, but `b` was told the
    // target and has not answered, so the rollout still listens.
    let abort = Input::Action {
        action: Action::Abort,
        actor: "t".to_owned(),
        reason: "enough".to_owned(),
    };
    rollout.handle(at(2), abort).expect("aborted");
    assert_eq!(*rollout.status(), Status::Aborted);
    assert!(!rollout.is_active());
    assert!(rollout.listens());
    // A new host is no longer taken in; `b`'s report still counts.
    let late = rollout.check_in(
        at(3),
        sighting("c", web(), "1.0"),
        report("1.0", Health::Ok),
    );
    assert!(late.outcome.is_empty());
    assert_eq!(rollout.selected(), 2);
    let fed = rollout.check_in(
        at(3),
        sighting("b", web(), "2.0"),
        report("2.0", Health::Ok),
    );
    assert_eq!(rollout.host_state("b"), Some(&HostState::Healthy));
    assert!(!fed.outcome.hosts.is_empty());
    // Nobody left to answer: the rollout stops listening, ticks do nothing.
    assert!(!rollout.listens());
    assert!(rollout.tick(at(60)).outcome.is_empty());
}

#[test]
fn ticks_time_out_silent_hosts_while_the_rollout_listens() {
    let mut rollout = started();
    let fed = rollout.tick(at(11));
    assert_eq!(fed.rejected, None);
    let failed = fed
        .outcome
        .events
        .iter()
        .filter(|event| matches!(event.kind, EventKind::HostFailed { .. }))
        .count();
    assert_eq!(
        failed, 2,
        "both admitted hosts were silent past host_timeout"
    );
}
