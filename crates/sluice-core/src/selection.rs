//! Host selection: strata, quotas, and the stage-by-stage preview.
//!
//! The invariants (see the spec, "Host selection"):
//! 1. within a stratum hosts are ordered by [`crate::hash::rank`], ties by id;
//! 2. a stage of p % admits exactly [`stage_quota`] hosts of each stratum;
//! 3. quotas never shrink from one stage to the next, so admission is monotonic.

use std::fmt;

use crate::fleet::Labels;
use crate::percent::Percent;

/// The values of the plan's `spread` labels for one host, in `spread` order;
/// a host without one of the labels has the empty value there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StratumKey(pub Vec<String>);

impl StratumKey {
    pub fn of(spread: &[String], labels: &Labels) -> StratumKey {
        StratumKey(
            spread
                .iter()
                .map(|name| labels.get(name).cloned().unwrap_or_default())
                .collect(),
        )
    }

    /// Shows the key with its label names: `role=edge,site=sto`; a plan
    /// without `spread` has the single stratum `(all)`.
    pub fn display<'a>(&'a self, spread: &'a [String]) -> impl fmt::Display + 'a {
        DisplayKey { key: self, spread }
    }
}

struct DisplayKey<'a> {
    key: &'a StratumKey,
    spread: &'a [String],
}

impl fmt::Display for DisplayKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.spread.is_empty() {
            return f.write_str("(all)");
        }
        for (index, (name, value)) in self.spread.iter().zip(&self.key.0).enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            if value.is_empty() {
                write!(f, "!{name}")?;
            } else {
                write!(f, "{name}={value}")?;
            }
        }
        Ok(())
    }
}

/// How many of a stratum's `size` hosts a stage of `percent` admits:
/// `ceil(percent × size / 100)`, at least `min_per_stratum`, at most `size`.
pub fn stage_quota(percent: Percent, size: u64, min_per_stratum: u64) -> u64 {
    percent.of_ceil(size).max(min_per_stratum).min(size)
}
