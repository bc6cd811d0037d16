//! What the selection tests (table-driven and property) share: a plan with
//! only what selection reads given, every other field at a fixed default.

use sluice_core::duration::Duration;
use sluice_core::percent::{Amount, Percent};
use sluice_core::plan::{Gates, OnFailure, Plan, Stage, Strategy};
use sluice_core::selector::Selector;

/// A plan of docker-engine 17.03.1 over the hosts `selector` matches, in
/// the strata of `strategy`, in `stages`.
pub fn selection_plan(selector: Selector, strategy: Strategy, stages: Vec<Stage>) -> Plan {
    Plan {
        name: "docker-17.03.1".to_owned(),
        component: "docker-engine".to_owned(),
        version: "17.03.1".to_owned(),
        payload: None,
        selector,
        strategy,
        max_in_flight: None,
        stages,
        gates: Gates {
            max_failed: Amount::Count(0),
            host_timeout: Duration::from_secs(900),
            prometheus: Vec::new(),
            http: Vec::new(),
            compare: Vec::new(),
        },
        on_failure: OnFailure::Pause,
        reversible: true,
        exclusive: true,
        windows: Vec::new(),
        after: None,
    }
}

/// A stage that neither bakes nor waits for an approval.
pub fn stage(name: String, percent: Percent) -> Stage {
    Stage {
        name,
        percent,
        bake: Duration::default(),
        approve: false,
    }
}
