//! Faults: which hosts misbehave in a simulation, and how.
//!
//! A fault is written `SELECTOR:KIND[:p=SHARE]`:
//!
//! - `SELECTOR` is `all` or a label selector in the plan's syntax
//!   (`role=edge`, `site in (ash, sjc)`); it never contains a colon.
//! - `KIND` is `fail` (the host reports failure once it runs the target),
//!   `fail-after=DURATION` (it reports healthy, then failed that long after
//!   it applied the target), `silent` (it stops checking in once it runs
//!   the target, as if the change took it down) or `degrade=FACTOR` (it
//!   stays healthy, but the simulated metric of comparison and Prometheus
//!   gates is FACTOR times its usual value while it runs the target: a
//!   regression only a gate sees).
//! - `p=SHARE` (0 to 1) makes the fault hit only that share of the matching
//!   hosts. Which ones is decided by the seed: a host is hit when the hash of
//!   the seed, the fault's position and the host id falls below the share, so
//!   the choice does not depend on the order of the fleet file.
//!
//! A host matched by several faults gets the first one given.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use sluice_core::duration::Duration;
use sluice_core::fleet::Labels;
use sluice_core::selector::Selector;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// What every fault error ends with.
pub const VALID_FORMS: &str = "valid forms: all:fail, role=edge:fail, site=ash:fail:p=0.3, \
all:fail-after=2h, all:silent, role=edge:degrade=2.0 (SELECTOR:KIND[:p=SHARE], where SELECTOR \
is `all` or a label selector, KIND is fail, fail-after=DURATION, silent or degrade=FACTOR, SHARE \
is between 0 and 1)";

const TWO_TO_53: f64 = (1u64 << 53) as f64;

/// One fault, parsed from its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    spec: String,
    /// `None` is `all`.
    selector: Option<Selector>,
    kind: FaultKind,
    share: Option<f64>,
    /// Only these hosts (a retrospective's hosts seen failing), instead of
    /// a selector and a share.
    only: Option<Arc<HashSet<String>>>,
}

/// How a faulty host misbehaves; only the target version is faulty, so a
/// host that returns to its previous version is healthy again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultKind {
    /// Reports failed once it runs the target.
    Fail,
    /// Reports healthy, then failed this long after it applied the target.
    FailAfter(Duration),
    /// Stops checking in once it runs the target.
    Silent,
    /// Stays healthy, its simulated metric multiplied by this factor while
    /// it runs the target.
    Degrade(f64),
}

/// Why a fault spec is invalid: the spec, the part at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--fault {spec:?}: {part}: {message}; {VALID_FORMS}")]
pub struct FaultError {
    pub spec: String,
    /// The part at fault, e.g. `selector "rol e=x"` or `kind "fial"`.
    pub part: String,
    pub message: String,
}

impl Fault {
    /// Parses `SELECTOR:KIND[:p=SHARE]`.
    pub fn parse(spec: &str) -> Result<Fault, FaultError> {
        let error = |part: String, message: &str| FaultError {
            spec: spec.to_owned(),
            part,
            message: message.to_owned(),
        };
        let mut parts = spec.split(':');
        let selector_text = parts.next().unwrap_or_default().trim();
        let selector =
            match selector_text {
                "all" => None,
                "" => return Err(error(
                    "selector".to_owned(),
                    "is empty; write `all` for every host, or a label selector such as role=edge",
                )),
                text => Some(Selector::parse(text).map_err(|e| {
                    error(
                        format!("selector {text:?}"),
                        &format!("{e}; write `all` or a label selector such as role=edge"),
                    )
                })?),
            };
        let kind_text = parts.next().map(str::trim).ok_or_else(|| {
            error(
                format!("selector {selector_text:?}"),
                "is not followed by a kind; add :fail, :fail-after=DURATION, :silent or :degrade=FACTOR",
            )
        })?;
        let kind = match kind_text.split_once('=') {
            None if kind_text == "fail" => FaultKind::Fail,
            None if kind_text == "silent" => FaultKind::Silent,
            Some(("fail-after", duration)) => {
                let duration = Duration::parse(duration)
                    .map_err(|e| error(format!("kind {kind_text:?}"), &e.to_string()))?;
                if duration.is_zero() {
                    return Err(error(
                        format!("kind {kind_text:?}"),
                        "a failure 0s after the apply is `fail`; give a positive duration such as 2h",
                    ));
                }
                FaultKind::FailAfter(duration)
            }
            Some(("degrade", factor)) => {
                let factor: f64 = factor.trim().parse().map_err(|_| {
                    error(
                        format!("kind {kind_text:?}"),
                        "needs a number, such as degrade=2.0 (the metric doubles)",
                    )
                })?;
                if !(factor.is_finite() && factor > 0.0) {
                    return Err(error(
                        format!("kind {kind_text:?}"),
                        "needs a positive factor, such as degrade=2.0 (the metric doubles) or degrade=0.5 (it halves)",
                    ));
                }
                FaultKind::Degrade(factor)
            }
            None if kind_text == "degrade" => {
                return Err(error(
                    format!("kind {kind_text:?}"),
                    "needs a factor, such as degrade=2.0",
                ))
            }
            None if kind_text == "fail-after" => {
                return Err(error(
                    format!("kind {kind_text:?}"),
                    "needs a duration, such as fail-after=2h",
                ))
            }
            _ => {
                return Err(error(
                    format!("kind {kind_text:?}"),
                    "is not a kind; write fail, fail-after=DURATION, silent or degrade=FACTOR",
                ))
            }
        };
        let mut share = None;
        for option in parts {
            let option = option.trim();
            let Some(value) = option.strip_prefix("p=") else {
                return Err(error(
                    format!("option {option:?}"),
                    "is not an option; the only option is p=SHARE, such as p=0.3",
                ));
            };
            if share.is_some() {
                return Err(error(format!("option {option:?}"), "p is given twice"));
            }
            let p: f64 = value.parse().map_err(|_| {
                error(
                    format!("option {option:?}"),
                    "is not a number; write a share between 0 and 1, such as p=0.3",
                )
            })?;
            if !(0.0..=1.0).contains(&p) {
                return Err(error(
                    format!("option {option:?}"),
                    "is out of range; write a share between 0 and 1, such as p=0.3",
                ));
            }
            share = Some(p);
        }
        Ok(Fault {
            spec: spec.trim().to_owned(),
            selector,
            kind,
            share,
            only: None,
        })
    }

    /// A fault that makes exactly `hosts` fail once they run the target;
    /// `spec` says what they are, for the report.
    pub fn on_hosts(spec: &str, hosts: HashSet<String>) -> Fault {
        Fault {
            spec: spec.to_owned(),
            selector: None,
            kind: FaultKind::Fail,
            share: None,
            only: Some(Arc::new(hosts)),
        }
    }

    /// The spec as given.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    pub fn kind(&self) -> FaultKind {
        self.kind
    }

    /// Whether the fault hits this host: its labels match and, for a share,
    /// the seeded hash of its id picks it. `position` is the fault's index
    /// among the faults, so that two faults with the same share pick
    /// different hosts.
    pub fn hits(&self, seed: u64, position: usize, id: &str, labels: &Labels) -> bool {
        if let Some(only) = &self.only {
            return only.contains(id);
        }
        if let Some(selector) = &self.selector {
            if !selector.matches(labels) {
                return false;
            }
        }
        match self.share {
            None => true,
            Some(share) => draw(seed, position, id) < share,
        }
    }
}

/// A uniform number in [0, 1) drawn from the seeded hash of a host id:
/// the same host, seed and position always draw the same.
pub(crate) fn draw(seed: u64, position: usize, id: &str) -> f64 {
    let salt = seed ^ (position as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // The top 53 bits as a uniform number in [0, 1).
    (xxh3_64_with_seed(id.as_bytes(), salt) >> 11) as f64 / TWO_TO_53
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_the_spec_forms() {
        let edge = labels(&[("role", "edge"), ("site", "ash")]);
        let config = labels(&[("role", "config"), ("site", "sto")]);
        for (spec, kind, hits_edge, hits_config) in [
            ("all:fail", FaultKind::Fail, true, true),
            ("role=edge:fail", FaultKind::Fail, true, false),
            ("site in (ash, lon):silent", FaultKind::Silent, true, false),
            (
                "all:fail-after=2h",
                FaultKind::FailAfter(Duration::from_secs(7_200)),
                true,
                true,
            ),
            ("site=ash:fail:p=1", FaultKind::Fail, true, false),
            (
                "role=edge:degrade=2.0",
                FaultKind::Degrade(2.0),
                true,
                false,
            ),
            ("all:degrade=0.5:p=1", FaultKind::Degrade(0.5), true, true),
            ("all:fail:p=0", FaultKind::Fail, false, false),
        ] {
            let fault = Fault::parse(spec).expect(spec);
            assert_eq!(fault.kind(), kind, "{spec}");
            assert_eq!(
                fault.hits(7, 0, "a.example.net", &edge),
                hits_edge,
                "{spec}"
            );
            assert_eq!(
                fault.hits(7, 0, "b.example.net", &config),
                hits_config,
                "{spec}"
            );
        }
    }

    #[test]
    fn a_share_picks_about_that_share_and_depends_on_the_seed() {
        let fault = Fault::parse("all:fail:p=0.3").expect("valid");
        let none = Labels::new();
        let ids: Vec<String> = (0..10_000).map(|i| format!("h{i}.example.net")).collect();
        let picked = |seed| -> Vec<bool> {
            ids.iter()
                .map(|id| fault.hits(seed, 0, id, &none))
                .collect()
        };
        let first = picked(1);
        let share = first.iter().filter(|&&hit| hit).count();
        assert!((2_700..3_300).contains(&share), "{share}");
        assert_eq!(first, picked(1), "the same seed picks the same hosts");
        assert_ne!(first, picked(2), "another seed picks other hosts");
    }

    #[test]
    fn errors_name_the_part_at_fault_and_the_valid_forms() {
        for (spec, part, message) in [
            ("", "selector", "is empty"),
            (
                "role=edge",
                "selector \"role=edge\"",
                "not followed by a kind",
            ),
            ("rol e=x:fail", "selector \"rol e=x\"", "column"),
            ("all:fial", "kind \"fial\"", "is not a kind"),
            ("all:fail-after", "kind \"fail-after\"", "needs a duration"),
            (
                "all:fail-after=2x",
                "kind \"fail-after=2x\"",
                "unknown unit",
            ),
            (
                "all:fail-after=0s",
                "kind \"fail-after=0s\"",
                "positive duration",
            ),
            ("all:fail:p=1.5", "option \"p=1.5\"", "out of range"),
            ("all:degrade", "kind \"degrade\"", "needs a factor"),
            ("all:degrade=x", "kind \"degrade=x\"", "needs a number"),
            ("all:degrade=0", "kind \"degrade=0\"", "positive factor"),
            ("all:degrade=-2", "kind \"degrade=-2\"", "positive factor"),
            ("all:fail:p=x", "option \"p=x\"", "not a number"),
            ("all:fail:q=1", "option \"q=1\"", "only option is p=SHARE"),
            ("all:fail:p=0.1:p=0.2", "option \"p=0.2\"", "twice"),
        ] {
            let error = Fault::parse(spec).expect_err(spec);
            assert_eq!(error.part, part, "{spec}");
            let text = error.to_string();
            assert!(text.contains(message), "{spec}: {text}");
            assert!(
                text.contains("valid forms: all:fail, role=edge:fail"),
                "{text}"
            );
        }
    }
}
