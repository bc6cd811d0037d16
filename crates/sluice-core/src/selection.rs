//! Host selection: strata, quotas, and the stage-by-stage preview.
//!
//! The invariants (see the spec, "Host selection"):
//! 1. within a stratum hosts are ordered by [`crate::hash::rank`], ties by id;
//! 2. a stage of p % admits exactly [`stage_quota`] hosts of each stratum;
//! 3. quotas never shrink from one stage to the next, so admission is monotonic.
//!
//! The pieces, in the order they run:
//! - [`stratify`] groups the hosts matching the plan's selector by their
//!   `spread` label values and orders each group by rank: a [`Stratification`];
//! - [`admitted_per_stage`] gives each stage's quota for each stratum;
//! - [`preview`] combines the two into a [`Preview`]: at stage k, each stratum
//!   admits its first `quota_k` hosts in rank order. Because every stage takes
//!   a prefix of the same order and quotas never shrink, a host admitted at
//!   stage k is admitted at every later stage, by construction.
//!
//! Joiners: the preview is the *from-scratch* view of a fleet. A host that
//! joins a stratum without growing its quota (`ceil(p × n / 100)` moves in
//! steps) may rank within the quota and so, in the preview, take the place of
//! the stratum's highest-ranked admitted host. A running rollout does not do
//! that: admission is sticky there (the rollout state machine never takes a
//! host back), so the joiner waits until the quota grows. The preview never
//! changes more than that one place per joiner, and other strata not at all;
//! `tests/selection_props.rs` holds it to exactly this.

use std::fmt::{self, Write as _};

use foldhash::{HashMap, HashMapExt};
use serde::ser::{Serialize, SerializeSeq, SerializeStruct, Serializer};

use crate::fleet::{Host, Labels};
use crate::hash::rank;
use crate::percent::Percent;
use crate::plan::Plan;

/// The values of the plan's `spread` labels for one host, in `spread` order;
/// a host without one of the labels has the empty value there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StratumKey(pub Vec<String>);

impl StratumKey {
    pub fn of(spread: &[String], labels: &Labels) -> StratumKey {
        StratumKey(
            spread
                .iter()
                .map(|name| labels.get(name).unwrap_or_default().to_owned())
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

/// The hosts a plan covers, grouped into strata and ranked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stratification {
    /// Every stratum with at least one host, ordered by key.
    strata: Vec<Stratum>,
    /// Hosts in all strata together.
    selected: usize,
}

/// One distinct combination of `spread` label values and its hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stratum {
    key: StratumKey,
    /// Indices into the host slice, ordered by (rank, host id).
    members: Vec<u32>,
}

impl Stratification {
    /// Every non-empty stratum, ordered by key.
    pub fn strata(&self) -> &[Stratum] {
        &self.strata
    }

    /// How many strata there are.
    pub fn len(&self) -> usize {
        self.strata.len()
    }

    /// Whether no host matched the selector.
    pub fn is_empty(&self) -> bool {
        self.strata.is_empty()
    }

    /// How many hosts the selector matched, all strata together.
    pub fn selected(&self) -> usize {
        self.selected
    }

    /// The position of the stratum with `key` in [`Self::strata`].
    pub fn position(&self, key: &StratumKey) -> Option<usize> {
        self.strata
            .binary_search_by(|stratum| stratum.key.cmp(key))
            .ok()
    }
}

impl Stratum {
    pub fn key(&self) -> &StratumKey {
        &self.key
    }

    /// Indices into the host slice given to [`stratify`], lowest rank first:
    /// a stage admits a prefix of this.
    pub fn members(&self) -> &[u32] {
        &self.members
    }

    /// How many hosts the stratum has.
    pub fn size(&self) -> u64 {
        self.members.len() as u64
    }
}

/// Groups the hosts matching `plan.selector` into the strata of
/// `plan.strategy.spread` and orders each stratum by
/// [`rank`]`(plan.salt(), id)`, ties by id, so the order is total and does
/// not depend on the order of `hosts`.
///
/// # Panics
///
/// If `hosts` has more than `u32::MAX` hosts: members are kept as `u32`
/// indices to halve the memory of million-host fleets.
pub fn stratify(plan: &Plan, hosts: &[Host]) -> Stratification {
    assert!(
        u32::try_from(hosts.len()).is_ok(),
        "a fleet has at most {} hosts",
        u32::MAX
    );
    let spread = &plan.strategy.spread;
    let salt = plan.salt();

    let mut grouping = Grouping {
        plan,
        group_of: HashMap::new(),
        groups: Vec::new(),
        key: Vec::with_capacity(spread.len()),
    };
    // Hosts with equal labels share them when read by `parse_fleet`: the
    // selector and the stratum are then decided once per distinct labels.
    let mut decided: HashMap<usize, Option<usize>> = HashMap::new();
    let mut selected = 0;
    for (index, host) in hosts.iter().enumerate() {
        let group = match host.labels.shared_identity() {
            Some(identity) => *decided
                .entry(identity)
                .or_insert_with(|| grouping.group(&host.labels)),
            None => grouping.group(&host.labels),
        };
        let Some(group) = group else {
            continue;
        };
        grouping.groups[group]
            .ranked
            .push((rank(salt, &host.id), index as u32));
        selected += 1;
    }
    let mut groups = grouping.groups;
    groups.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let strata = groups
        .into_iter()
        .map(|Group { key, mut ranked }| {
            ranked.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| hosts[a.1 as usize].id.cmp(&hosts[b.1 as usize].id))
                    // Only for duplicate ids, which a parsed fleet never has.
                    .then(a.1.cmp(&b.1))
            });
            Stratum {
                key: StratumKey(key.into_iter().map(str::to_owned).collect()),
                members: ranked.into_iter().map(|(_, index)| index).collect(),
            }
        })
        .collect();
    Stratification { strata, selected }
}

/// A stratum while [`stratify`] gathers it: the label values, and
/// `(rank, host index)` of each member.
struct Group<'a> {
    key: Vec<&'a str>,
    ranked: Vec<(u64, u32)>,
}

/// The strata while [`stratify`] gathers them. Grouping borrows the label
/// values; one key is allocated per stratum, not per host (the lookup takes
/// the reused `key` buffer as a slice).
struct Grouping<'a> {
    plan: &'a Plan,
    group_of: HashMap<Vec<&'a str>, usize>,
    groups: Vec<Group<'a>>,
    key: Vec<&'a str>,
}

impl<'a> Grouping<'a> {
    /// The position in `groups` of the stratum of hosts with `labels`, if
    /// the selector matches them.
    fn group(&mut self, labels: &'a Labels) -> Option<usize> {
        if !self.plan.selector.matches(labels) {
            return None;
        }
        self.key.clear();
        self.key.extend(
            self.plan
                .strategy
                .spread
                .iter()
                .map(|name| labels.get(name).unwrap_or_default()),
        );
        if let Some(&group) = self.group_of.get(self.key.as_slice()) {
            return Some(group);
        }
        let group = self.groups.len();
        self.group_of.insert(self.key.clone(), group);
        self.groups.push(Group {
            key: self.key.clone(),
            ranked: Vec::new(),
        });
        Some(group)
    }
}

/// Each stage's quota for each stratum: `result[stage][stratum]`, strata in
/// the order of [`Stratification::strata`].
///
/// A valid plan's percentages never decrease, so neither do the quotas; were
/// a stage to give a lower percentage than the one before, its quota holds at
/// the earlier one: admission never goes back.
pub fn admitted_per_stage(plan: &Plan, stratification: &Stratification) -> Vec<Vec<u64>> {
    let min = plan.strategy.min_per_stratum;
    let mut previous = vec![0; stratification.len()];
    plan.stages
        .iter()
        .map(|stage| {
            let quotas: Vec<u64> = stratification
                .strata
                .iter()
                .zip(&previous)
                .map(|(stratum, &before)| {
                    stage_quota(stage.percent, stratum.size(), min).max(before)
                })
                .collect();
            previous.clone_from(&quotas);
            quotas
        })
        .collect()
}

/// Which hosts each stage of a plan admits: what `sluice plan preview` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    stratification: Stratification,
    stages: Vec<StagePreview>,
    /// Positions in `stratification.strata`, largest stratum first, ties by key.
    by_size: Vec<usize>,
}

/// One stage of a [`Preview`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePreview {
    name: String,
    percent: Percent,
    /// Per stratum, in the order of [`Stratification::strata`].
    quotas: Vec<u64>,
    /// Hosts admitted by the end of this stage, all strata together.
    admitted: u64,
}

impl StagePreview {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn percent(&self) -> Percent {
        self.percent
    }

    /// Hosts admitted per stratum by the end of this stage (cumulative), in
    /// the order of [`Stratification::strata`].
    pub fn quotas(&self) -> &[u64] {
        &self.quotas
    }

    /// Hosts admitted by the end of this stage (cumulative), all strata together.
    pub fn admitted(&self) -> u64 {
        self.admitted
    }
}

/// One stratum's progress at one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StratumProgress<'a> {
    pub key: &'a StratumKey,
    pub size: u64,
    /// Admitted by the end of the stage (cumulative).
    pub admitted: u64,
}

/// Previews `plan` over `hosts`: [`stratify`], then [`admitted_per_stage`].
pub fn preview(plan: &Plan, hosts: &[Host]) -> Preview {
    Preview::new(plan, stratify(plan, hosts))
}

impl Preview {
    /// The preview of `plan` over an existing stratification of its hosts.
    pub fn new(plan: &Plan, stratification: Stratification) -> Preview {
        let stages = plan
            .stages
            .iter()
            .zip(admitted_per_stage(plan, &stratification))
            .map(|(stage, quotas)| StagePreview {
                name: stage.name.clone(),
                percent: stage.percent,
                admitted: quotas.iter().sum(),
                quotas,
            })
            .collect();
        let mut by_size: Vec<usize> = (0..stratification.len()).collect();
        // Stable, and strata are in key order: ties stay ordered by key.
        by_size.sort_by_key(|&position| std::cmp::Reverse(stratification.strata[position].size()));
        Preview {
            stratification,
            stages,
            by_size,
        }
    }

    /// How many strata the selected hosts form.
    pub fn strata(&self) -> usize {
        self.stratification.len()
    }

    /// How many hosts the plan's selector matched.
    pub fn selected(&self) -> usize {
        self.stratification.selected()
    }

    pub fn stratification(&self) -> &Stratification {
        &self.stratification
    }

    pub fn stages(&self) -> &[StagePreview] {
        &self.stages
    }

    /// The hosts admitted by the end of stage `stage` (0-based, cumulative),
    /// as indices into the host slice: stratum by stratum in key order, each
    /// stratum lowest rank first.
    ///
    /// # Panics
    ///
    /// If `stage` is not below `self.stages().len()`.
    pub fn admitted(&self, stage: usize) -> impl Iterator<Item = u32> + '_ {
        self.admitted_per_stratum(stage).flatten().copied()
    }

    /// [`Self::admitted`], one slice per stratum.
    fn admitted_per_stratum(&self, stage: usize) -> impl Iterator<Item = &[u32]> + '_ {
        self.stratification
            .strata
            .iter()
            .zip(&self.stages[stage].quotas)
            .map(|(stratum, &quota)| &stratum.members[..quota as usize])
    }

    /// Every stratum's progress at stage `stage` (0-based), largest stratum
    /// first, ties by key.
    ///
    /// # Panics
    ///
    /// If `stage` is not below `self.stages().len()`.
    pub fn per_stratum(&self, stage: usize) -> impl Iterator<Item = StratumProgress<'_>> + '_ {
        let quotas = &self.stages[stage].quotas;
        self.by_size.iter().map(move |&position| {
            let stratum = &self.stratification.strata[position];
            StratumProgress {
                key: &stratum.key,
                size: stratum.size(),
                admitted: quotas[position],
            }
        })
    }

    /// The human view of `sluice plan preview`: per stage a header line, the
    /// `top` largest strata as a table, and one line summing up the rest.
    ///
    /// ```text
    /// stage 1/4  canary    1%  admits   214 of 9,870 hosts (+214)
    ///     role=edge,site=lon     12 of 1,180
    ///     …
    ///     … and 183 more strata with 1 to 9 hosts each, 412 admitted
    /// ```
    pub fn render_text(&self, plan: &Plan, top: usize) -> String {
        let spread = &plan.strategy.spread;
        let mut out = String::new();
        let selected = self.selected() as u64;
        let strata = self.strata();
        let _ = writeln!(
            out,
            "plan {}: {} {} in {} {} (spread: {}; at least {} per stratum; salt {:?})",
            plan.name,
            thousands(selected),
            plural(selected, "host", "hosts"),
            thousands(strata as u64),
            plural(strata as u64, "stratum", "strata"),
            if spread.is_empty() {
                "none".to_owned()
            } else {
                spread.join(", ")
            },
            plan.strategy.min_per_stratum,
            plan.salt(),
        );
        if selected == 0 {
            out.push_str(
                "no host to roll out to: the fleet is empty or the selector matches none of it\n",
            );
            return out;
        }

        let count = self.stages.len();
        let name_width = self
            .stages
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0);
        let percent_width = self
            .stages
            .iter()
            .map(|s| s.percent.to_string().len())
            .max()
            .unwrap_or(0);
        let total = thousands(selected);
        let shown: Vec<String> = self
            .by_size
            .iter()
            .take(top)
            .map(|&position| {
                self.stratification.strata[position]
                    .key
                    .display(spread)
                    .to_string()
            })
            .collect();
        let key_width = shown
            .iter()
            .map(|key| key.chars().count())
            .max()
            .unwrap_or(0);
        // The largest stratum comes first and no stratum admits more than it has.
        let size_width = self.by_size.first().map_or(0, |&position| {
            thousands(self.stratification.strata[position].size()).len()
        });

        let mut before = 0;
        for (index, stage) in self.stages.iter().enumerate() {
            // Rounding every stratum up (and `min_per_stratum`) can make a
            // small stage much bigger than its percentage: say so.
            let share = stage.admitted as f64 * 100.0 / selected as f64;
            let note = if share >= 2.0 * stage.percent.as_f64() {
                let why = match plan.strategy.min_per_stratum {
                    0 | 1 => "every stratum rounds up".to_owned(),
                    min => format!("every stratum gets at least {min}"),
                };
                // One decimal, or enough to show two digits of a small share.
                let decimals = if share >= 1.0 {
                    1
                } else {
                    ((-share.log10()).ceil() as usize + 1).min(4)
                };
                format!(", {share:.decimals$} % of hosts: {why}")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "stage {}/{count}  {:<name_width$}  {:>percent_width$}%  admits {:>total_width$} of {total} hosts (+{}{note})",
                index + 1,
                stage.name,
                stage.percent.to_string(),
                thousands(stage.admitted),
                thousands(stage.admitted - before),
                total_width = total.len(),
            );
            before = stage.admitted;

            let mut rows = self.per_stratum(index);
            for (key, progress) in shown.iter().zip(rows.by_ref()) {
                let _ = writeln!(
                    out,
                    "    {key:<key_width$}  {:>size_width$} of {}",
                    thousands(progress.admitted),
                    thousands(progress.size),
                );
            }
            let mut rest = 0u64;
            let mut admitted = 0;
            let (mut smallest, mut largest) = (u64::MAX, 0);
            for progress in rows {
                rest += 1;
                admitted += progress.admitted;
                smallest = smallest.min(progress.size);
                largest = largest.max(progress.size);
            }
            if rest > 0 {
                let sizes = if smallest == largest {
                    format!(
                        "{} {}",
                        thousands(smallest),
                        plural(smallest, "host", "hosts")
                    )
                } else {
                    format!("{} to {} hosts", thousands(smallest), thousands(largest))
                };
                let _ = writeln!(
                    out,
                    "    {}{} {} with {sizes}{}, {} admitted",
                    if shown.is_empty() { "" } else { "… and " },
                    thousands(rest),
                    match (shown.is_empty(), rest) {
                        (true, 1) => "stratum",
                        (true, _) => "strata",
                        (false, 1) => "more stratum",
                        (false, _) => "more strata",
                    },
                    if rest > 1 { " each" } else { "" },
                    thousands(admitted),
                );
            }
        }
        out
    }

    /// The machine view of `sluice plan preview --json`, exactly
    /// `{"strata": N, "stages": [{"name", "percent", "admitted": [host ids]}]}`
    /// with `admitted` cumulative. It serializes straight from the preview,
    /// borrowing the ids: a million hosts stream out without a copy.
    ///
    /// `hosts` must be the slice the preview was computed from.
    pub fn to_json<'a>(&'a self, hosts: &'a [Host]) -> PreviewJson<'a> {
        PreviewJson {
            preview: self,
            hosts,
        }
    }
}

/// The [`Serialize`] view returned by [`Preview::to_json`].
#[derive(Debug, Clone, Copy)]
pub struct PreviewJson<'a> {
    preview: &'a Preview,
    hosts: &'a [Host],
}

impl Serialize for PreviewJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut object = serializer.serialize_struct("Preview", 2)?;
        object.serialize_field("strata", &self.preview.strata())?;
        object.serialize_field("stages", &StagesJson(*self))?;
        object.end()
    }
}

struct StagesJson<'a>(PreviewJson<'a>);

impl Serialize for StagesJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let PreviewJson { preview, hosts } = self.0;
        serializer.collect_seq(
            preview
                .stages
                .iter()
                .enumerate()
                .map(|(index, stage)| StageJson {
                    name: &stage.name,
                    percent: PercentJson(stage.percent),
                    admitted: AdmittedJson {
                        preview,
                        hosts,
                        stage: index,
                    },
                }),
        )
    }
}

#[derive(serde::Serialize)]
struct StageJson<'a> {
    name: &'a str,
    percent: PercentJson,
    admitted: AdmittedJson<'a>,
}

/// A percentage as a JSON number: `5` when whole, else `0.1`, `12.5`.
struct PercentJson(Percent);

impl Serialize for PercentJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.0.as_f64();
        if value.fract() == 0.0 {
            serializer.serialize_u64(value as u64)
        } else {
            serializer.serialize_f64(value)
        }
    }
}

struct AdmittedJson<'a> {
    preview: &'a Preview,
    hosts: &'a [Host],
    stage: usize,
}

impl Serialize for AdmittedJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// Hosts whose ids are loaded ahead of writing them.
        const BATCH: usize = 64;
        let hosts = self.hosts;
        let admitted = self.preview.stages[self.stage].admitted;
        let mut seq = serializer.serialize_seq(Some(admitted as usize))?;
        for members in self.preview.admitted_per_stratum(self.stage) {
            for batch in members.chunks(BATCH) {
                // In rank order, hosts and their ids are scattered over
                // memory. Reading the first byte of each id of a batch in a
                // loop of independent loads overlaps their cache misses,
                // where writing them one by one would wait for each in turn.
                let first_bytes = batch.iter().fold(0u8, |acc, &index| {
                    acc ^ hosts[index as usize].id.bytes().next().unwrap_or(0)
                });
                std::hint::black_box(first_bytes);
                for &index in batch {
                    seq.serialize_element(hosts[index as usize].id.as_str())?;
                }
            }
        }
        seq.end()
    }
}

/// `9870` → `9,870`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (9_870, "9,870"),
            (1_000_000, "1,000,000"),
            (12_345_678, "12,345,678"),
        ] {
            assert_eq!(thousands(n), text);
        }
    }

    #[test]
    fn percent_json_is_a_whole_number_when_it_can_be() {
        for (text, json) in [
            ("5", "5"),
            ("100", "100"),
            ("0.1", "0.1"),
            ("12.5", "12.5"),
            ("0.0001", "0.0001"),
        ] {
            let percent = Percent::parse(text).expect(text);
            assert_eq!(
                serde_json::to_string(&PercentJson(percent)).expect("json"),
                json
            );
        }
    }
}
