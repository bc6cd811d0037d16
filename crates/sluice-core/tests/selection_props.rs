//! Property tests of host selection over random fleets and plans.
//!
//! Every property compares [`preview`] with an independent model written here
//! the plainest way: group by label values in a `BTreeMap`, sort each group by
//! [`rank`] then id, take `min(n, max(ceil(p × n / 100), min_per_stratum))`
//! computed in `u128` from the percentage's fixed-point value. The model
//! shares nothing with `selection.rs` but `hash::rank` (pinned by
//! `tests/golden_rank.rs`).

use std::collections::{BTreeMap, BTreeSet};

mod common;

use proptest::prelude::*;
use proptest::sample::subsequence;
use sluice_core::fleet::{Host, HostId, Labels};
use sluice_core::hash::rank;
use sluice_core::percent::Percent;
use sluice_core::plan::{Plan, Strategy as Spreading};
use sluice_core::selection::{preview, Preview};
use sluice_core::selector::Selector;

use common::{selection_plan, stage};

/// Fixed-point units of a percentage: ten-thousandths of a percent.
const UNITS_PER_PERCENT: u32 = 10_000;
const FULL: u32 = 100 * UNITS_PER_PERCENT;

/// Label names hosts may carry; `rack` is one no host has, so spreading on it
/// puts every host in the "label missing" stratum.
const LABELS: [&str; 4] = ["role", "site", "pool", "rack"];

/// A selector and, as the oracle, a plain Rust predicate that means the same.
struct Filter {
    text: &'static str,
    oracle: fn(&Labels) -> bool,
}

fn label<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels.get(name)
}

const FILTERS: [Filter; 7] = [
    Filter {
        text: "",
        oracle: |_| true,
    },
    Filter {
        text: "role=api",
        oracle: |l| label(l, "role") == Some("api"),
    },
    Filter {
        text: "role notin (db)",
        oracle: |l| label(l, "role") != Some("db"),
    },
    Filter {
        text: "site in (lon, sto)",
        oracle: |l| matches!(label(l, "site"), Some("lon" | "sto")),
    },
    Filter {
        text: "pool",
        oracle: |l| l.contains_key("pool"),
    },
    Filter {
        text: "!pool, role!=edge",
        oracle: |l| !l.contains_key("pool") && label(l, "role") != Some("edge"),
    },
    Filter {
        text: "role in (api, edge), site notin (ash)",
        oracle: |l| {
            matches!(label(l, "role"), Some("api" | "edge")) && label(l, "site") != Some("ash")
        },
    },
];

const ROLES: [&str; 4] = ["api", "db", "edge", "web"];
const SITES: [&str; 3] = ["lon", "sto", "ash"];
const POOLS: [&str; 2] = ["a", "b"];
/// Label combinations `labels_from` decodes: each label one of its values or absent.
const COMBINATIONS: u8 = 5 * 4 * 3;

/// Labels from small alphabets, each present or not, so that strata collide,
/// come in every size, and some hosts lack a spread label. Drawn as one small
/// integer per host: generating maps in a debug build is what makes property
/// tests slow.
fn labels_from(code: u8) -> Labels {
    let pick = |alphabet: &[&'static str], choice: u8| alphabet.get(usize::from(choice)).copied();
    [
        ("role", pick(&ROLES, code % 5)),
        ("site", pick(&SITES, code / 5 % 4)),
        ("pool", pick(&POOLS, code / 20 % 3)),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name.to_owned(), value?.to_owned())))
    .collect()
}

fn labels() -> impl Strategy<Value = Labels> {
    (0..COMBINATIONS).prop_map(labels_from)
}

/// 0 to 500 hosts with unique ids.
fn fleet() -> impl Strategy<Value = Vec<Host>> {
    prop::collection::vec((0..COMBINATIONS, any::<u16>()), 0..=500).prop_map(|hosts| {
        hosts
            .into_iter()
            .enumerate()
            .map(|(index, (code, word))| {
                host(format!("h{word:x}-{index}.example.net"), labels_from(code))
            })
            .collect()
    })
}

fn host(id: String, labels: Labels) -> Host {
    Host {
        id: HostId::parse(id).expect("a host id"),
        labels,
        components: Default::default(),
    }
}

/// Non-decreasing stage percentages (fixed-point units) ending at 100 %,
/// often fractional and often small, as large fleets use them.
fn stage_units() -> impl Strategy<Value = Vec<u32>> {
    let one = prop_oneof![
        1..=UNITS_PER_PERCENT, // up to 1 %, in steps of 0.0001 %
        (1..=100u32).prop_map(|p| p * UNITS_PER_PERCENT), // whole percents
        1..=FULL,              // anything
    ];
    prop::collection::vec(one, 0..5).prop_map(|mut units| {
        units.sort_unstable();
        units.push(FULL);
        units
    })
}

/// A percentage from its units, through the plan's own parser.
fn percent(units: u32) -> Percent {
    let text = format!(
        "{}.{:04}",
        units / UNITS_PER_PERCENT,
        units % UNITS_PER_PERCENT
    );
    Percent::parse(&text).expect("a valid percentage")
}

#[derive(Debug, Clone)]
struct Case {
    hosts: Vec<Host>,
    spread: Vec<String>,
    units: Vec<u32>,
    min_per_stratum: u64,
    salt: Option<String>,
    filter: usize,
}

impl Case {
    fn plan(&self) -> Plan {
        let stages = self
            .units
            .iter()
            .enumerate()
            .map(|(index, &units)| stage(format!("stage-{}", index + 1), percent(units)))
            .collect();
        let strategy = Spreading {
            spread: self.spread.clone(),
            min_per_stratum: self.min_per_stratum,
            salt: self.salt.clone(),
        };
        let selector = Selector::parse(FILTERS[self.filter].text).expect("a valid selector");
        selection_plan(selector, strategy, stages)
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        fleet(),
        subsequence(LABELS.to_vec(), 0..=3).prop_shuffle(),
        stage_units(),
        0..=4u64,
        proptest::option::of("[a-z0-9-]{0,12}"),
        0..FILTERS.len(),
    )
        .prop_map(
            |(hosts, spread, units, min_per_stratum, salt, filter)| Case {
                hosts,
                spread: spread.into_iter().map(str::to_owned).collect(),
                units,
                min_per_stratum,
                salt,
                filter,
            },
        )
}

/// The model: per stratum (by key), the quota at every stage and the
/// members in admission order.
struct Model {
    strata: BTreeMap<Vec<String>, (Vec<u64>, Vec<String>)>,
}

impl Model {
    fn of(case: &Case) -> Model {
        let plan = case.plan();
        let salt = plan.salt().to_owned();
        let mut groups: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
        for host in &case.hosts {
            if !(FILTERS[case.filter].oracle)(&host.labels) {
                continue;
            }
            let key = case
                .spread
                .iter()
                .map(|name| host.labels.get(name).unwrap_or_default().to_owned())
                .collect();
            groups.entry(key).or_default().push(host.id.to_string());
        }
        let strata = groups
            .into_iter()
            .map(|(key, mut ids)| {
                ids.sort_by_cached_key(|id| (rank(&salt, id), id.clone()));
                let n = ids.len() as u128;
                let quotas = case
                    .units
                    .iter()
                    .map(|&units| {
                        let ceil = (u128::from(units) * n).div_ceil(u128::from(FULL));
                        n.min(ceil.max(u128::from(case.min_per_stratum))) as u64
                    })
                    .collect();
                (key, (quotas, ids))
            })
            .collect();
        Model { strata }
    }

    /// Admitted ids at `stage`, cumulative, in the preview's order: strata by
    /// key, each lowest rank first.
    fn admitted(&self, stage: usize) -> Vec<String> {
        self.strata
            .values()
            .flat_map(|(quotas, ids)| ids[..quotas[stage] as usize].iter().cloned())
            .collect()
    }
}

fn admitted_ids(preview: &Preview, hosts: &[Host], stage: usize) -> Vec<String> {
    preview
        .admitted(stage)
        .map(|index| hosts[index as usize].id.to_string())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (1) exact quotas and (5) the lowest-ranked hosts, in order.
    #[test]
    fn admits_exactly_the_lowest_ranked_quota_of_every_stratum(case in case()) {
        let plan = case.plan();
        let preview = preview(&plan, &case.hosts);
        let model = Model::of(&case);

        let keys: Vec<&Vec<String>> = preview
            .stratification()
            .strata()
            .iter()
            .map(|stratum| &stratum.key().0)
            .collect();
        prop_assert_eq!(keys, model.strata.keys().collect::<Vec<_>>());
        for (stage_index, stage) in preview.stages().iter().enumerate() {
            let expected: Vec<u64> = model.strata.values().map(|(quotas, _)| quotas[stage_index]).collect();
            prop_assert_eq!(stage.quotas(), expected.as_slice(), "quotas at stage {}", stage_index);
            prop_assert_eq!(stage.admitted(), expected.iter().sum::<u64>());
            prop_assert_eq!(
                admitted_ids(&preview, &case.hosts, stage_index),
                model.admitted(stage_index),
                "admitted at stage {}", stage_index
            );
        }
        // The last stage is 100 %: everything selected.
        let last = preview.stages().last().expect("at least one stage");
        prop_assert_eq!(last.admitted(), preview.selected() as u64);
    }

    /// (2) monotonic: admitted(k) ⊆ admitted(k + 1).
    #[test]
    fn a_host_admitted_at_one_stage_stays_admitted(case in case()) {
        let plan = case.plan();
        let preview = preview(&plan, &case.hosts);
        for stage in 1..preview.stages().len() {
            let before: BTreeSet<u32> = preview.admitted(stage - 1).collect();
            let after: BTreeSet<u32> = preview.admitted(stage).collect();
            prop_assert!(before.is_subset(&after), "stage {} drops {:?}", stage, before.difference(&after).collect::<Vec<_>>());
        }
    }

    /// (3) deterministic, and independent of the order of the fleet.
    #[test]
    fn the_same_fleet_in_any_order_gives_the_same_hosts(
        (case, shuffled) in case().prop_flat_map(|case| {
            let hosts = case.hosts.clone();
            (Just(case), Just(hosts).prop_shuffle())
        })
    ) {
        let plan = case.plan();
        let first = preview(&plan, &case.hosts);
        prop_assert_eq!(&first, &preview(&plan, &case.hosts));
        let other = preview(&plan, &shuffled);
        prop_assert_eq!(first.strata(), other.strata());
        for stage in 0..plan.stages.len() {
            prop_assert_eq!(
                admitted_ids(&first, &case.hosts, stage),
                admitted_ids(&other, &shuffled, stage)
            );
        }
    }

    /// (4) only hosts the selector matches are selected, and all of them.
    #[test]
    fn only_selector_matching_hosts_are_selected(case in case()) {
        let plan = case.plan();
        let preview = preview(&plan, &case.hosts);
        let oracle = FILTERS[case.filter].oracle;
        let matching = case.hosts.iter().filter(|host| oracle(&host.labels)).count();
        prop_assert_eq!(preview.selected(), matching);
        for stage in 0..preview.stages().len() {
            for index in preview.admitted(stage) {
                prop_assert!(oracle(&case.hosts[index as usize].labels));
            }
        }
    }

    /// (6) joiners, in the from-scratch preview: other strata do not change;
    /// the joiner's stratum either keeps its quota, and then the joiner takes
    /// the place of the highest-ranked admitted host if it ranks below it, or
    /// its quota grows by one and nothing admitted is lost. (A running
    /// rollout makes admission sticky; see the module doc of `selection`.)
    #[test]
    fn a_joiner_displaces_at_most_one_host_of_its_own_stratum(
        case in case(),
        joiner_labels in labels(),
    ) {
        let plan = case.plan();
        let before = preview(&plan, &case.hosts);
        let mut grown = case.hosts.clone();
        grown.push(host("joiner.example.net".to_owned(), joiner_labels.clone()));
        let after = preview(&plan, &grown);
        let joiner = (grown.len() - 1) as u32;
        let joiner_key: Vec<String> = plan
            .strategy
            .spread
            .iter()
            .map(|name| joiner_labels.get(name).unwrap_or_default().to_owned())
            .collect();
        let selected = plan.selector.matches(&joiner_labels);

        for stage in 0..plan.stages.len() {
            let by_stratum = |preview: &Preview| -> BTreeMap<Vec<String>, BTreeSet<u32>> {
                let stratification = preview.stratification();
                stratification
                    .strata()
                    .iter()
                    .zip(preview.stages()[stage].quotas())
                    .map(|(stratum, &quota)| {
                        (stratum.key().0.clone(), stratum.members()[..quota as usize].iter().copied().collect())
                    })
                    .collect()
            };
            let mut old = by_stratum(&before);
            let mut new = by_stratum(&after);
            let old_own = old.remove(&joiner_key).unwrap_or_default();
            let new_own = new.remove(&joiner_key).unwrap_or_default();
            prop_assert_eq!(old, new, "other strata changed at stage {}", stage);
            if !selected {
                prop_assert_eq!(old_own, new_own);
                continue;
            }
            let lost: Vec<u32> = old_own.difference(&new_own).copied().collect();
            if new_own.len() == old_own.len() + 1 {
                prop_assert!(lost.is_empty(), "quota grew, yet {:?} lost", lost);
            } else {
                prop_assert_eq!(new_own.len(), old_own.len());
                if new_own.contains(&joiner) {
                    let highest = old_own
                        .iter()
                        .max_by_key(|&&index| (rank(plan.salt(), &case.hosts[index as usize].id), &case.hosts[index as usize].id))
                        .copied();
                    prop_assert_eq!(lost, highest.into_iter().collect::<Vec<_>>());
                } else {
                    prop_assert_eq!(&old_own, &new_own);
                }
            }
        }
    }

    /// The JSON view says the same as the preview, in the spec's shape.
    #[test]
    fn json_matches_the_preview(case in case()) {
        let plan = case.plan();
        let preview = preview(&plan, &case.hosts);
        let json: serde_json::Value = serde_json::to_value(preview.to_json(&case.hosts)).expect("serializes");
        let object = json.as_object().expect("an object");
        prop_assert_eq!(object.keys().collect::<Vec<_>>(), vec!["stages", "strata"]);
        prop_assert_eq!(json["strata"].as_u64(), Some(preview.strata() as u64));
        let stages = json["stages"].as_array().expect("stages");
        prop_assert_eq!(stages.len(), plan.stages.len());
        for (index, stage) in stages.iter().enumerate() {
            prop_assert_eq!(stage["name"].as_str(), Some(plan.stages[index].name.as_str()));
            let percent = stage["percent"].as_f64().expect("a number");
            prop_assert_eq!(percent, f64::from(case.units[index]) / f64::from(UNITS_PER_PERCENT));
            let ids: Vec<String> = stage["admitted"]
                .as_array()
                .expect("admitted")
                .iter()
                .map(|id| id.as_str().expect("an id").to_owned())
                .collect();
            prop_assert_eq!(ids, admitted_ids(&preview, &case.hosts, index));
        }
    }

    /// The text view holds together: every stage appears, and its shown
    /// strata plus the summary line add up to the stage's total.
    #[test]
    fn text_adds_up(case in case(), top in 0..6usize) {
        let plan = case.plan();
        let preview = preview(&plan, &case.hosts);
        let text = preview.render_text(&plan, top);
        if preview.selected() == 0 {
            prop_assert!(text.contains("no host to roll out to"));
            return Ok(());
        }
        let count = plan.stages.len();
        let number = |word: &str| word.replace(',', "").parse::<u64>().expect("a number");
        let mut stage = 0;
        let mut sum = 0;
        for line in text.lines().skip(1) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with("stage ") {
                if stage > 0 {
                    prop_assert_eq!(sum, preview.stages()[stage - 1].admitted(), "{}", text);
                }
                stage += 1;
                sum = 0;
                prop_assert_eq!(words[1], format!("{stage}/{count}"));
            } else if line.ends_with(" admitted") {
                sum += number(words[words.len() - 2]);
            } else {
                sum += number(words[1]);
            }
        }
        prop_assert_eq!(stage, count);
        prop_assert_eq!(sum, preview.stages()[count - 1].admitted(), "{}", text);
    }
}
