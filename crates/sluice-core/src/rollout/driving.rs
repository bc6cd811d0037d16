//! The driving rules: which inputs the inventory, a host's check-in and the
//! controller's clock feed a rollout, and when. The server (`world.rs`) and
//! the simulator (`sluice-sim`) both drive rollouts through these methods
//! and no other way, so that a rehearsal runs exactly what production runs.
//!
//! - **Inventory** ([`Rollout::offer`]): every known host, as a `Host`
//!   input, then the freeze if it is on — when the rollout is created, when
//!   hosts are imported, and after a restart.
//! - **Check-in** ([`Rollout::check_in`]): a `Host` input while the rollout
//!   is active (not terminal), then, when the host reports the
//!   rollout's component, a `Report` while the rollout [listens](Rollout::listens);
//!   both decided before either input is applied.
//! - **Restart** ([`Rollout::place`]): the inventory's hosts the restored
//!   records leave out, placed as waiting without deciding anything.
//! - **Clock** ([`Rollout::tick`]): a `Tick` while the rollout listens.

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use jiff::Timestamp;

use super::{Freeze, Health, Input, Outcome, Rejected, Rollout};
use crate::fleet::Labels;

/// What a driving rule changed, and the input it was refused, if any: a
/// refused input changes nothing and ends the run, but what the inputs
/// before it changed stands, and must be recorded.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "record the outcome, and report a refusal"]
pub struct Fed {
    pub outcome: Outcome,
    pub rejected: Option<Rejected>,
}

impl From<Result<Outcome, Rejected>> for Fed {
    /// One input's result: a refused input changed nothing.
    fn from(result: Result<Outcome, Rejected>) -> Fed {
        match result {
            Ok(outcome) => Fed {
                outcome,
                rejected: None,
            },
            Err(rejected) => Fed {
                outcome: Outcome::default(),
                rejected: Some(rejected),
            },
        }
    }
}

impl Fed {
    /// Feeds `input` unless an earlier input was refused.
    fn feed(&mut self, rollout: &mut Rollout, now: Timestamp, input: Input) {
        if self.rejected.is_some() {
            return;
        }
        match rollout.handle(now, input) {
            Ok(outcome) => self.outcome.absorb(outcome),
            Err(rejected) => self.rejected = Some(rejected),
        }
    }
}

/// A host as the inventory or a check-in shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    /// Shared with whoever else keeps the id (the server's inventory).
    pub id: Arc<str>,
    pub labels: Labels,
    /// What it runs of the rollout's component, if known.
    pub version: Option<Arc<str>>,
}

/// What a host reports of the rollout's component at a check-in.
#[derive(Debug, Clone, PartialEq)]
pub struct HostReport {
    pub version: String,
    pub health: Health,
    /// The last lines of a failed apply's or health check's output.
    pub message: Option<String>,
    /// The host ran the version it was told and was then found at
    /// `version`, changed outside an apply.
    pub drifted: bool,
}

impl Rollout {
    /// Whether the rollout is active (pending, running or paused): it takes
    /// new hosts and their sightings.
    pub fn is_active(&self) -> bool {
        !self.status.is_terminal()
    }

    /// Whether the rollout still takes reports and ticks: while it is not
    /// terminal, and after it stopped while hosts it told something have
    /// not answered yet (to record them healthy, reverted or failed).
    pub fn listens(&self) -> bool {
        if self.is_active() {
            return true;
        }
        let counts = self.counts();
        counts.instructed + counts.reverting > 0
    }

    /// Offers the inventory: every host in `hosts`, then the fleet-wide
    /// `freeze` if it is on. Hosts it does not know yet join it if they
    /// match its selector. Stops at the first refused input (an empty
    /// freeze reason).
    pub fn offer(
        &mut self,
        now: Timestamp,
        hosts: impl IntoIterator<Item = Sighting>,
        freeze: Option<&Freeze>,
    ) -> Fed {
        let mut fed = Fed::default();
        if !self.is_active() {
            return fed;
        }
        for host in hosts {
            let input = Input::Host {
                id: host.id,
                labels: host.labels,
                version: host.version,
            };
            fed.feed(self, now, input);
        }
        if let Some(freeze) = freeze {
            let input = Input::Freeze {
                on: true,
                actor: freeze.actor.clone(),
                reason: freeze.reason.clone(),
            };
            fed.feed(self, now, input);
        }
        fed
    }

    /// Places the hosts it does not know yet as waiting, deciding nothing
    /// and producing no outcome: for a rollout restored from records that
    /// leave out its waiting hosts. A waiting host's record says nothing the
    /// inventory does not (its rank and stratum follow from its id and
    /// labels, its version is what it reports), so a store keeps only the
    /// records of hosts the rollout has admitted, and the inventory places
    /// the others again — by their labels of now, as a preview would. Only
    /// an active rollout takes hosts; nothing is admitted until its next
    /// input, when every host is in place.
    pub fn place(&mut self, hosts: impl IntoIterator<Item = Sighting>) {
        if !self.is_active() {
            return;
        }
        // Hosts share a few hundred label maps: each is matched once.
        let mut strata: HashMap<Labels, Option<u32>> = HashMap::new();
        for host in hosts {
            if self.hosts.get(&host.id).is_some() {
                continue;
            }
            let stratum = match strata.get(&host.labels) {
                Some(stratum) => *stratum,
                None => {
                    let stratum = self.stratum_of(&host.labels);
                    strata.insert(host.labels, stratum);
                    stratum
                }
            };
            if let Some(stratum) = stratum {
                self.insert_waiting(host.id, stratum, host.version.as_deref());
            }
        }
    }

    /// A host checks in: `host` as it shows itself, and `report` when it
    /// reports the rollout's component.
    pub fn check_in(&mut self, now: Timestamp, host: Sighting, report: Option<HostReport>) -> Fed {
        let (takes_host, listens) = (self.is_active(), self.listens());
        let mut fed = Fed::default();
        let id = host.id.to_string();
        if takes_host {
            let input = Input::Host {
                id: host.id,
                labels: host.labels,
                version: host.version,
            };
            fed.feed(self, now, input);
        }
        if let (true, Some(report)) = (listens, report) {
            let input = Input::Report {
                id,
                version: report.version,
                health: report.health,
                message: report.message,
                drifted: report.drifted,
            };
            fed.feed(self, now, input);
        }
        fed
    }

    /// Time passes: timeouts, bakes and windows are checked, while the
    /// rollout listens.
    pub fn tick(&mut self, now: Timestamp) -> Fed {
        let mut fed = Fed::default();
        if self.listens() {
            fed.feed(self, now, Input::Tick);
        }
        fed
    }
}
