//! Table-driven tests of host selection: each case is a small named fleet, a
//! plan, and the hosts each stage admits per stratum, as an inline
//! expectation (`UPDATE_EXPECT=1 cargo test` rewrites them after a deliberate
//! change).

use std::fmt::Write as _;
use std::time::Instant;

mod common;

use expect_test::{expect, Expect};
use sluice_core::fleet::{Host, HostId, Labels};
use sluice_core::percent::Percent;
use sluice_core::plan::{Plan, Strategy};
use sluice_core::selection::{preview, stratify, Preview};

use common::{selection_plan, stage};
use sluice_core::selector::Selector;

/// A plan with only what selection reads: `spread`, `min_per_stratum` and the
/// stages as `(name, percent)`; an empty name becomes `stage-N`.
fn plan(spread: &[&str], min_per_stratum: u64, stages: &[(&str, &str)]) -> Plan {
    let stages = stages
        .iter()
        .enumerate()
        .map(|(index, (name, percent))| {
            let name = if name.is_empty() {
                format!("stage-{}", index + 1)
            } else {
                (*name).to_owned()
            };
            stage(name, Percent::parse(percent).expect("test percent"))
        })
        .collect();
    let strategy = Strategy {
        spread: spread.iter().map(|name| (*name).to_owned()).collect(),
        min_per_stratum,
        salt: None,
    };
    selection_plan(Selector::default(), strategy, stages)
}

/// The spec's four stages: 1 % canary, 10, 50, 100.
const FOUR_STAGES: &[(&str, &str)] = &[("canary", "1"), ("", "10"), ("", "50"), ("", "100")];

/// A fleet from `(labels, count)` groups: `("role=api,site=lon", 3)` makes
/// `api-lon-1.example.net` … `api-lon-3.example.net` with those labels.
fn fleet(groups: &[(&str, usize)]) -> Vec<Host> {
    let mut hosts = Vec::new();
    for (labels, count) in groups {
        let labels: Labels = labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').expect("name=value");
                (name.to_owned(), value.to_owned())
            })
            .collect();
        let stem = if labels.is_empty() {
            "bare".to_owned()
        } else {
            labels.values().collect::<Vec<_>>().join("-")
        };
        for n in 1..=*count {
            hosts.push(Host {
                id: HostId::parse(format!("{stem}-{n}.example.net")).expect("a host id"),
                labels: labels.clone(),
                components: Default::default(),
            });
        }
    }
    hosts
}

/// 3 roles × 2 sites, sizes 1, 3, 10 and 100: 127 hosts.
fn six_strata() -> Vec<Host> {
    fleet(&[
        ("role=api,site=lon", 1),
        ("role=api,site=sto", 3),
        ("role=db,site=lon", 10),
        ("role=db,site=sto", 3),
        ("role=edge,site=lon", 100),
        ("role=edge,site=sto", 10),
    ])
}

/// One row per stratum (largest first), one column per stage: admitted by
/// the end of the stage, cumulative; then the totals.
fn table(plan: &Plan, preview: &Preview) -> String {
    let spread = &plan.strategy.spread;
    let mut rows: Vec<Vec<String>> = vec![std::iter::once("stratum".to_owned())
        .chain(std::iter::once("size".to_owned()))
        .chain(
            preview
                .stages()
                .iter()
                .map(|stage| format!("{} {}%", stage.name(), stage.percent())),
        )
        .collect()];
    for (position, first) in preview.per_stratum(0).enumerate() {
        let mut row = vec![
            first.key.display(spread).to_string(),
            first.size.to_string(),
        ];
        for stage in 0..preview.stages().len() {
            let progress = preview
                .per_stratum(stage)
                .nth(position)
                .expect("same strata at every stage");
            row.push(progress.admitted.to_string());
        }
        rows.push(row);
    }
    let mut total = vec!["total".to_owned(), preview.selected().to_string()];
    total.extend(
        preview
            .stages()
            .iter()
            .map(|stage| stage.admitted().to_string()),
    );
    rows.push(total);

    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            let width = widths[column];
            if column == 0 {
                let _ = write!(out, "{cell:<width$}");
            } else {
                let _ = write!(out, "  {cell:>width$}");
            }
        }
        out.push('\n');
    }
    out
}

fn check(hosts: &[Host], plan: &Plan, expected: Expect) {
    let preview = preview(plan, hosts);
    expected.assert_eq(&table(plan, &preview));
}

/// The ids a stage admits, in preview order.
fn admitted_ids(preview: &Preview, hosts: &[Host], stage: usize) -> Vec<String> {
    preview
        .admitted(stage)
        .map(|index| hosts[index as usize].id.to_string())
        .collect()
}

#[test]
fn min_one_gives_every_stratum_a_canary_at_one_percent() {
    check(
        &six_strata(),
        &plan(&["role", "site"], 1, FOUR_STAGES),
        expect![[r#"
            stratum             size  canary 1%  stage-2 10%  stage-3 50%  stage-4 100%
            role=edge,site=lon   100          1           10           50           100
            role=db,site=lon      10          1            1            5            10
            role=edge,site=sto    10          1            1            5            10
            role=api,site=sto      3          1            1            2             3
            role=db,site=sto       3          1            1            2             3
            role=api,site=lon      1          1            1            1             1
            total                127          6           15           65           127
        "#]],
    );
}

#[test]
fn without_a_minimum_one_percent_still_rounds_up_to_one() {
    // ceil(1 % × n) is 1 for every non-empty stratum: min 0 changes nothing here…
    check(
        &six_strata(),
        &plan(&["role", "site"], 0, &[("canary", "1"), ("", "100")]),
        expect![[r#"
            stratum             size  canary 1%  stage-2 100%
            role=edge,site=lon   100          1           100
            role=db,site=lon      10          1            10
            role=edge,site=sto    10          1            10
            role=api,site=sto      3          1             3
            role=db,site=sto       3          1             3
            role=api,site=lon      1          1             1
            total                127          6           127
        "#]],
    );
}

#[test]
fn min_larger_than_a_stratum_admits_all_of_it() {
    check(
        &six_strata(),
        &plan(&["role", "site"], 5, FOUR_STAGES),
        expect![[r#"
            stratum             size  canary 1%  stage-2 10%  stage-3 50%  stage-4 100%
            role=edge,site=lon   100          5           10           50           100
            role=db,site=lon      10          5            5            5            10
            role=edge,site=sto    10          5            5            5            10
            role=api,site=sto      3          3            3            3             3
            role=db,site=sto       3          3            3            3             3
            role=api,site=lon      1          1            1            1             1
            total                127         22           27           67           127
        "#]],
    );
}

#[test]
fn fractional_percent_of_ten_thousand() {
    let hosts = fleet(&[("role=edge", 10_000)]);
    check(
        &hosts,
        &plan(
            &["role"],
            1,
            &[("canary", "0.1"), ("", "0.25"), ("", "12.5"), ("", "100")],
        ),
        expect![[r#"
            stratum     size  canary 0.1%  stage-2 0.25%  stage-3 12.5%  stage-4 100%
            role=edge  10000           10             25           1250         10000
            total      10000           10             25           1250         10000
        "#]],
    );
}

#[test]
fn a_stratum_of_one_host_is_admitted_at_the_first_stage() {
    check(
        &fleet(&[("role=api", 1), ("role=db", 200)]),
        &plan(&["role"], 0, &[("canary", "0.5"), ("", "100")]),
        expect![[r#"
            stratum   size  canary 0.5%  stage-2 100%
            role=db    200            1           200
            role=api     1            1             1
            total      201            2           201
        "#]],
    );
}

#[test]
fn a_host_without_a_spread_label_forms_its_own_stratum() {
    check(
        &fleet(&[
            ("role=api,site=lon", 4),
            ("site=lon", 2),
            ("role=api", 1),
            ("", 3),
        ]),
        &plan(&["role", "site"], 1, &[("canary", "1"), ("", "100")]),
        expect![[r#"
            stratum            size  canary 1%  stage-2 100%
            role=api,site=lon     4          1             4
            !role,!site           3          1             3
            !role,site=lon        2          1             2
            role=api,!site        1          1             1
            total                10          4            10
        "#]],
    );
}

#[test]
fn no_spread_is_a_single_stratum() {
    check(
        &six_strata(),
        &plan(&[], 1, FOUR_STAGES),
        expect![[r#"
            stratum  size  canary 1%  stage-2 10%  stage-3 50%  stage-4 100%
            (all)     127          2           13           64           127
            total     127          2           13           64           127
        "#]],
    );
}

#[test]
fn only_hosts_matching_the_selector_form_strata() {
    let hosts = six_strata();
    let mut plan = plan(&["role", "site"], 1, FOUR_STAGES);
    plan.selector = Selector::parse("role notin (db), site=lon").expect("selector");
    check(
        &hosts,
        &plan,
        expect![[r#"
            stratum             size  canary 1%  stage-2 10%  stage-3 50%  stage-4 100%
            role=edge,site=lon   100          1           10           50           100
            role=api,site=lon      1          1            1            1             1
            total                101          2           11           51           101
        "#]],
    );
    let preview = preview(&plan, &hosts);
    assert!(preview
        .admitted(plan.stages.len() - 1)
        .all(|index| plan.selector.matches(&hosts[index as usize].labels)));
}

#[test]
fn an_empty_fleet_admits_nothing() {
    let plan = plan(&["role"], 1, FOUR_STAGES);
    let preview = preview(&plan, &[]);
    assert_eq!(preview.strata(), 0);
    assert!(preview.stages().iter().all(|stage| stage.admitted() == 0));
    expect![[r#"
        plan docker-17.03.1: 0 hosts in 0 strata (spread: role; at least 1 per stratum; salt "docker-17.03.1")
        no host to roll out to: the fleet is empty or the selector matches none of it
    "#]]
    .assert_eq(&preview.render_text(&plan, 5));
}

#[test]
fn deterministic_and_independent_of_input_order() {
    let hosts = six_strata();
    let plan = plan(&["role", "site"], 1, FOUR_STAGES);
    let first = preview(&plan, &hosts);
    assert_eq!(first, preview(&plan, &hosts), "same input, same preview");

    // Reversed, and interleaved odd/even: the same ids at every stage, in
    // the same order (strata by key, then rank), wherever they sit in the slice.
    let reversed: Vec<Host> = hosts.iter().rev().cloned().collect();
    let interleaved: Vec<Host> = hosts
        .iter()
        .skip(1)
        .step_by(2)
        .chain(hosts.iter().step_by(2))
        .cloned()
        .collect();
    for shuffled in [&reversed, &interleaved] {
        let other = preview(&plan, shuffled);
        for stage in 0..plan.stages.len() {
            assert_eq!(
                admitted_ids(&first, &hosts, stage),
                admitted_ids(&other, shuffled, stage),
                "stage {stage}"
            );
        }
    }

    // And across builds and platforms: the canaries are pinned.
    expect![[r#"
        [
            "api-lon-1.example.net",
            "api-sto-2.example.net",
            "db-lon-4.example.net",
            "db-sto-1.example.net",
            "edge-lon-59.example.net",
            "edge-sto-5.example.net",
        ]
    "#]]
    .assert_debug_eq(&admitted_ids(&first, &hosts, 0));
}

#[test]
fn another_salt_gives_another_order() {
    let hosts = fleet(&[("role=edge", 100)]);
    let by_name = plan(&["role"], 1, &[("", "10"), ("", "100")]);
    let mut salted = by_name.clone();
    salted.strategy.salt = Some("second-attempt".to_owned());
    let a = admitted_ids(&preview(&by_name, &hosts), &hosts, 0);
    let b = admitted_ids(&preview(&salted, &hosts), &hosts, 0);
    assert_eq!((a.len(), b.len()), (10, 10));
    assert_ne!(a, b);
    expect![[r#"
        [
            "edge-58.example.net",
            "edge-16.example.net",
            "edge-97.example.net",
            "edge-42.example.net",
            "edge-62.example.net",
            "edge-26.example.net",
            "edge-48.example.net",
            "edge-55.example.net",
            "edge-100.example.net",
            "edge-19.example.net",
        ]
    "#]]
    .assert_debug_eq(&b);
}

#[test]
fn stratification_orders_strata_by_key_and_members_by_rank() {
    let hosts = six_strata();
    let plan = plan(&["role", "site"], 1, FOUR_STAGES);
    let stratification = stratify(&plan, &hosts);
    let keys: Vec<String> = stratification
        .strata()
        .iter()
        .map(|stratum| stratum.key().display(&plan.strategy.spread).to_string())
        .collect();
    expect![[r#"
        [
            "role=api,site=lon",
            "role=api,site=sto",
            "role=db,site=lon",
            "role=db,site=sto",
            "role=edge,site=lon",
            "role=edge,site=sto",
        ]
    "#]]
    .assert_debug_eq(&keys);
    for stratum in stratification.strata() {
        let ranks: Vec<u64> = stratum
            .members()
            .iter()
            .map(|&index| sluice_core::hash::rank(plan.salt(), &hosts[index as usize].id))
            .collect();
        assert!(ranks.is_sorted(), "{:?}", stratum.key());
    }
    assert_eq!(stratification.selected(), hosts.len());
    let lon_edge = stratification
        .position(&sluice_core::selection::StratumKey(vec![
            "edge".to_owned(),
            "lon".to_owned(),
        ]))
        .expect("edge/lon exists");
    assert_eq!(stratification.strata()[lon_edge].size(), 100);
}

#[test]
fn render_text_for_the_on_call() {
    let hosts = six_strata();
    let plan = plan(&["role", "site"], 1, FOUR_STAGES);
    let preview = preview(&plan, &hosts);
    expect![[r#"
        plan docker-17.03.1: 127 hosts in 6 strata (spread: role, site; at least 1 per stratum; salt "docker-17.03.1")
        stage 1/4  canary     1%  admits   6 of 127 hosts (+6, 4.7 % of hosts: every stratum rounds up)
            role=edge,site=lon    1 of 100
            role=db,site=lon      1 of 10
            role=edge,site=sto    1 of 10
            … and 3 more strata with 1 to 3 hosts each, 3 admitted
        stage 2/4  stage-2   10%  admits  15 of 127 hosts (+9)
            role=edge,site=lon   10 of 100
            role=db,site=lon      1 of 10
            role=edge,site=sto    1 of 10
            … and 3 more strata with 1 to 3 hosts each, 3 admitted
        stage 3/4  stage-3   50%  admits  65 of 127 hosts (+50)
            role=edge,site=lon   50 of 100
            role=db,site=lon      5 of 10
            role=edge,site=sto    5 of 10
            … and 3 more strata with 1 to 3 hosts each, 5 admitted
        stage 4/4  stage-4  100%  admits 127 of 127 hosts (+62)
            role=edge,site=lon  100 of 100
            role=db,site=lon     10 of 10
            role=edge,site=sto   10 of 10
            … and 3 more strata with 1 to 3 hosts each, 7 admitted
    "#]]
    .assert_eq(&preview.render_text(&plan, 3));
    // Showing every stratum leaves nothing to sum up.
    assert!(!preview.render_text(&plan, 10).contains("more strata"));
}

#[test]
fn render_text_says_when_strata_make_a_stage_bigger_than_its_percentage() {
    let hosts = six_strata();
    let min_five = plan(&["role", "site"], 5, &[("canary", "1"), ("", "100")]);
    expect![[r#"
        plan docker-17.03.1: 127 hosts in 6 strata (spread: role, site; at least 5 per stratum; salt "docker-17.03.1")
        stage 1/2  canary     1%  admits  22 of 127 hosts (+22, 17.3 % of hosts: every stratum gets at least 5)
            6 strata with 1 to 100 hosts each, 22 admitted
        stage 2/2  stage-2  100%  admits 127 of 127 hosts (+105)
            6 strata with 1 to 100 hosts each, 127 admitted
    "#]]
    .assert_eq(&preview(&min_five, &hosts).render_text(&min_five, 0));

    let sites: Vec<String> = (1..=20).map(|n| format!("site=s{n:02}")).collect();
    let groups: Vec<(&str, usize)> = sites.iter().map(|site| (site.as_str(), 500)).collect();
    let hosts = fleet(&groups);
    let tiny = plan(&["site"], 0, &[("canary", "0.01"), ("", "100")]);
    expect![[r#"
        plan docker-17.03.1: 10,000 hosts in 20 strata (spread: site; at least 0 per stratum; salt "docker-17.03.1")
        stage 1/2  canary   0.01%  admits     20 of 10,000 hosts (+20, 0.20 % of hosts: every stratum rounds up)
            site=s01    1 of 500
            … and 19 more strata with 500 hosts each, 19 admitted
        stage 2/2  stage-2   100%  admits 10,000 of 10,000 hosts (+9,980)
            site=s01  500 of 500
            … and 19 more strata with 500 hosts each, 9,500 admitted
    "#]]
    .assert_eq(&preview(&tiny, &hosts).render_text(&tiny, 1));
}

#[test]
fn json_has_the_spec_shape() {
    let hosts = fleet(&[("role=api", 3), ("role=db", 2)]);
    let plan = plan(&["role"], 1, &[("canary", "0.1"), ("", "50"), ("", "100")]);
    let preview = preview(&plan, &hosts);
    let json = serde_json::to_string_pretty(&preview.to_json(&hosts)).expect("serializes");
    expect![[r#"
        {
          "strata": 2,
          "stages": [
            {
              "name": "canary",
              "percent": 0.1,
              "admitted": [
                "api-2.example.net",
                "db-2.example.net"
              ]
            },
            {
              "name": "stage-2",
              "percent": 50,
              "admitted": [
                "api-2.example.net",
                "api-1.example.net",
                "db-2.example.net"
              ]
            },
            {
              "name": "stage-3",
              "percent": 100,
              "admitted": [
                "api-2.example.net",
                "api-1.example.net",
                "api-3.example.net",
                "db-2.example.net",
                "db-1.example.net"
              ]
            }
          ]
        }"#]]
    .assert_eq(&json);
}

/// `cargo test --release -p sluice-core --test selection -- --ignored --nocapture`
#[test]
#[ignore = "timing, run by hand in release mode"]
fn a_million_hosts() {
    let roles = [
        "edge", "api", "db", "cache", "queue", "search", "batch", "web", "auth", "config",
        "artifact", "playlist", "metrics", "logs", "proxy", "dns", "mail", "build", "ml", "store",
    ];
    let sites = [
        "sto", "lon", "ash", "sjc", "gew", "fra", "sin", "syd", "gru", "nrt",
    ];
    let hosts: Vec<Host> = (0..1_000_000u32)
        .map(|n| {
            // A skewed spread: role sizes fall off, sites cycle.
            let role = roles[(n.wrapping_mul(2_654_435_761) >> 16) as usize % roles.len()
                * (n as usize % 3 + 1)
                / 3];
            let site = sites[n as usize % sites.len()];
            let labels: Labels = [
                ("role", role),
                ("site", site),
                ("pool", if n % 2 == 0 { "a" } else { "b" }),
                ("hw", "gen9"),
                ("os", "xenial"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            Host {
                id: HostId::parse(format!("{site}-{role}-{n}.example.net")).expect("a host id"),
                labels,
                components: Default::default(),
            }
        })
        .collect();
    let plan = plan(
        &["role", "site"],
        1,
        &[
            ("canary", "0.1"),
            ("", "1"),
            ("", "10"),
            ("", "50"),
            ("", "100"),
        ],
    );
    // The best of five, each phase timed on its own; JSON streams into a
    // sink that only counts bytes, as `--json` streams into stdout.
    let mut best = [std::time::Duration::MAX; 4];
    let mut bytes = 0;
    let mut strata = 0;
    for _ in 0..5 {
        let mut lap = Instant::now();
        let mut time = |phase: usize| {
            best[phase] = best[phase].min(lap.elapsed());
            lap = Instant::now();
        };
        let stratification = stratify(&plan, &hosts);
        time(0);
        let preview = Preview::new(&plan, stratification);
        time(1);
        let mut sink = CountingSink(0);
        serde_json::to_writer(std::io::BufWriter::new(&mut sink), &preview.to_json(&hosts))
            .expect("serializes");
        time(2);
        let text = preview.render_text(&plan, 10);
        time(3);
        assert!(text.contains("stage 5/5"));
        bytes = sink.0;
        strata = preview.strata();
    }
    println!(
        "{} hosts, {strata} strata: stratify {:?}, preview {:?}, json {:?} ({} MB), text {:?}",
        hosts.len(),
        best[0],
        best[1],
        best[2],
        bytes / 1_000_000,
        best[3],
    );
}

/// An `io::Write` that keeps nothing but the count.
struct CountingSink(usize);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
