//! Judging a comparison gate: the per-host values of the canary cohort
//! against those of the baseline cohort (see [`crate::rollout::Cohorts`]),
//! as a whole and stratum by stratum.
//!
//! Each cohort's values are summarised by the gate's aggregate (mean,
//! median or p90, the p90 interpolated linearly between ranks as
//! Prometheus's `quantile` does); `fail_if` then reads their ratio
//! (canary / baseline) or difference (canary − baseline), or the
//! Mann-Whitney U test (statrs's `mannwhitneyu`, with the normal
//! approximation and its tie and continuity corrections, as scipy's
//! `method="asymptotic"`) compares the values themselves. statrs 0.19.1's
//! exact method answers the complement of the p-value when the first
//! sample is not the larger (the canary is rarely larger than its
//! baseline), so it is not used; for the few hosts of a stratum the
//! approximation errs by a few thousandths (4 against 4 apart: 0.0152,
//! exactly 1/70 = 0.0143).
//!
//! The whole cohorts are judged, and so is every stratum with at least
//! `min_hosts` values in each cohort: a change that hurts one role shows
//! in that role's stratum long before it moves the whole fleet's canary.
//! One failing judgement fails the evaluation. The Mann-Whitney test is
//! then run once per judgement, so its threshold is divided among them
//! (Bonferroni: each p-value is compared with (1 − confidence) / tests),
//! lest many small strata fail by chance. Fewer than `min_hosts` values in
//! either whole cohort is no data.
//!
//! A zero baseline makes the ratio 1 when the canary is zero too, else
//! infinite (failing any `ratio >` threshold); the figures then carry no
//! ratio, since JSON has no infinity.

use statrs::stats_tests::mannwhitneyu::{mannwhitneyu, MannWhitneyUMethod};
use statrs::stats_tests::Alternative;

use crate::plan::{Aggregate, CompareGate, Direction, Judge};
use crate::rollout::{CohortComparison, GateOutcome};

/// The judgement of one evaluation: its outcome, the evidence in words,
/// and the figures when both cohorts had values.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: GateOutcome,
    pub evidence: String,
    pub comparison: Option<CohortComparison>,
}

/// One stratum's per-host values (NaN and infinite ones are left out).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StratumValues {
    /// `role=edge,site=sto`.
    pub stratum: String,
    pub canary: Vec<f64>,
    pub baseline: Vec<f64>,
}

/// One comparison of a canary with its baseline.
#[derive(Debug, Clone)]
struct Reading {
    canary: f64,
    baseline: f64,
    canary_hosts: usize,
    baseline_hosts: usize,
    ratio: f64,
    diff: f64,
    test: Option<(f64, f64)>,
}

impl Reading {
    fn of(how: Aggregate, canary: &[f64], baseline: &[f64]) -> Option<Reading> {
        let (canary_value, baseline_value) = (aggregate(how, canary)?, aggregate(how, baseline)?);
        Some(Reading {
            canary: canary_value,
            baseline: baseline_value,
            canary_hosts: canary.len(),
            baseline_hosts: baseline.len(),
            ratio: ratio(canary_value, baseline_value),
            diff: canary_value - baseline_value,
            test: None,
        })
    }

    fn values(&self, how: Aggregate) -> String {
        let name = how.name();
        format!(
            "canary {name} {} ({} hosts) vs baseline {name} {} ({} hosts)",
            shown(self.canary),
            self.canary_hosts,
            shown(self.baseline),
            self.baseline_hosts
        )
    }
}

/// Judges the cohorts' values, stratum by stratum, as `gate` says;
/// `query` is what was asked, kept in the evidence.
pub fn judge(gate: &CompareGate, strata: &[StratumValues], query: &str) -> Verdict {
    let finite =
        |values: &[f64]| -> Vec<f64> { values.iter().copied().filter(|v| v.is_finite()).collect() };
    let strata: Vec<StratumValues> = strata
        .iter()
        .map(|s| StratumValues {
            stratum: s.stratum.clone(),
            canary: finite(&s.canary),
            baseline: finite(&s.baseline),
        })
        .collect();
    let canary: Vec<f64> = strata
        .iter()
        .flat_map(|s| s.canary.iter().copied())
        .collect();
    let baseline: Vec<f64> = strata
        .iter()
        .flat_map(|s| s.baseline.iter().copied())
        .collect();
    let Some(mut whole) = Reading::of(gate.aggregate, &canary, &baseline) else {
        return Verdict {
            outcome: GateOutcome::NoData,
            evidence: format!(
                "no data: {} canary and {} baseline hosts with a value, {} needed in each (min_hosts); query: {query}",
                canary.len(),
                baseline.len(),
                gate.min_hosts
            ),
            comparison: None,
        };
    };
    let enough = |c: &[f64], b: &[f64]| {
        (c.len() as u64) >= gate.min_hosts && (b.len() as u64) >= gate.min_hosts
    };
    if !enough(&canary, &baseline) {
        return Verdict {
            outcome: GateOutcome::NoData,
            evidence: format!(
                "no data: {}, {} needed in each (min_hosts); query: {query}",
                whole.values(gate.aggregate),
                gate.min_hosts
            ),
            comparison: Some(figures(gate, &whole, query, 0, &[])),
        };
    }
    // The strata judged on their own: enough hosts, and not the whole
    // again (a single stratum).
    let judged: Vec<&StratumValues> = if strata.len() > 1 {
        strata
            .iter()
            .filter(|s| enough(&s.canary, &s.baseline))
            .collect()
    } else {
        Vec::new()
    };
    let tests = judged.len() + 1;
    let whole_fails = fails(gate, &mut whole, &canary, &baseline, tests);
    let mut failing: Vec<(&str, Reading)> = Vec::new();
    for stratum in &judged {
        if let Some(mut reading) = Reading::of(gate.aggregate, &stratum.canary, &stratum.baseline) {
            if fails(
                gate,
                &mut reading,
                &stratum.canary,
                &stratum.baseline,
                tests,
            ) {
                failing.push((stratum.stratum.as_str(), reading));
            }
        }
    }
    // The worst failing stratum first: the furthest from its baseline.
    failing.sort_by(|a, b| severity(gate, &b.1).total_cmp(&severity(gate, &a.1)));
    let mut evidence = format!(
        "{}: {}",
        whole.values(gate.aggregate),
        judged_text(gate, &whole, tests)
    );
    if !judged.is_empty() {
        evidence.push_str(&format!(
            "; {} of {} strata judged fail",
            failing.len(),
            judged.len()
        ));
        if let Some((stratum, reading)) = failing.first() {
            evidence.push_str(&format!(
                ", the worst {stratum}: {}: {}",
                reading.values(gate.aggregate),
                judged_text(gate, reading, tests)
            ));
        }
    }
    evidence.push_str(&format!("; query: {query}"));
    let failing_names: Vec<String> = failing.iter().map(|(s, _)| (*s).to_owned()).collect();
    Verdict {
        outcome: if whole_fails || !failing.is_empty() {
            GateOutcome::Fail
        } else {
            GateOutcome::Pass
        },
        evidence,
        comparison: Some(figures(gate, &whole, query, judged.len(), &failing_names)),
    }
}

/// Whether `reading` fails the gate, `tests` judgements sharing the
/// Mann-Whitney test's threshold; records the test's U and p.
fn fails(
    gate: &CompareGate,
    reading: &mut Reading,
    canary: &[f64],
    baseline: &[f64],
    tests: usize,
) -> bool {
    match gate.judge {
        Judge::Ratio(threshold) => threshold.fails(reading.ratio),
        Judge::Diff(threshold) => threshold.fails(reading.diff),
        Judge::MannWhitney {
            confidence,
            direction,
        } => {
            let alternative = match direction {
                Direction::Increase => Alternative::Greater,
                Direction::Decrease => Alternative::Less,
                Direction::Either => Alternative::TwoSided,
            };
            let method = MannWhitneyUMethod::AsymptoticInclContinuityCorrection;
            match mannwhitneyu(canary, baseline, method, alternative) {
                Ok((u, p)) => {
                    reading.test = Some((u, p));
                    p < (1.0 - confidence) / tests as f64
                }
                // Finite values always compare, and both samples hold
                // some: a refusal would be a failure, never a pass.
                Err(_) => true,
            }
        }
    }
}

/// How far a failing reading is from its baseline, for ordering.
fn severity(gate: &CompareGate, reading: &Reading) -> f64 {
    match gate.judge {
        Judge::Ratio(_) => (reading.ratio.ln()).abs(),
        Judge::Diff(_) => reading.diff.abs(),
        Judge::MannWhitney { .. } => -reading.test.map_or(1.0, |(_, p)| p),
    }
}

/// The judgement in words: `ratio 2, fail_if ratio > 1.5`.
fn judged_text(gate: &CompareGate, reading: &Reading, tests: usize) -> String {
    match gate.judge {
        Judge::Ratio(threshold) => format!("ratio {}, fail_if ratio {threshold}", shown(reading.ratio)),
        Judge::Diff(threshold) => format!("diff {}, fail_if diff {threshold}", shown(reading.diff)),
        Judge::MannWhitney {
            confidence,
            direction,
        } => match reading.test {
            Some((u, p)) => format!(
                "mann-whitney U {} p {} ({} of the canary; fails below p {} = (1 - confidence {confidence}) / {tests} judgements)",
                shown(u),
                shown(p),
                direction.name(),
                shown((1.0 - confidence) / tests as f64)
            ),
            None => "mann-whitney: the test refused the values".to_owned(),
        },
    }
}

fn figures(
    gate: &CompareGate,
    whole: &Reading,
    query: &str,
    strata_judged: usize,
    strata_failing: &[String],
) -> CohortComparison {
    CohortComparison {
        aggregate: gate.aggregate.name().to_owned(),
        canary: whole.canary,
        baseline: whole.baseline,
        canary_hosts: whole.canary_hosts as u64,
        baseline_hosts: whole.baseline_hosts as u64,
        ratio: whole.ratio.is_finite().then_some(whole.ratio),
        diff: whole.diff,
        u: whole.test.map(|(u, _)| u),
        p: whole.test.map(|(_, p)| p),
        strata_judged: strata_judged as u64,
        strata_failing: strata_failing.to_vec(),
        query: query.to_owned(),
    }
}

/// One value summarising `values`; `None` for none.
pub fn aggregate(how: Aggregate, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    match how {
        Aggregate::Mean => Some(values.iter().sum::<f64>() / values.len() as f64),
        Aggregate::Median => Some(quantile(values, 0.5)),
        Aggregate::P90 => Some(quantile(values, 0.9)),
    }
}

/// The φ-quantile of non-empty `values`, interpolated linearly between
/// the ranks around φ·(n − 1), as Prometheus's `quantile`.
fn quantile(values: &[f64], phi: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = phi * (sorted.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let weight = rank - below as f64;
    sorted[below] * (1.0 - weight) + sorted[above] * weight
}

/// canary / baseline; 1 for two zeros, infinite for a zero baseline.
fn ratio(canary: f64, baseline: f64) -> f64 {
    if baseline == 0.0 {
        if canary == 0.0 {
            1.0
        } else {
            f64::INFINITY.copysign(canary)
        }
    } else {
        canary / baseline
    }
}

/// A figure for the evidence: at most 4 significant digits.
fn shown(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "∞" } else { "-∞" }.to_owned();
    }
    if value == 0.0 {
        return "0".to_owned();
    }
    let digits = (4 - 1 - value.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Comparison, GateCommon, NoData, Threshold};

    fn gate(judge: Judge, aggregate: Aggregate, min_hosts: u64) -> CompareGate {
        CompareGate {
            common: GateCommon {
                name: "restarts".to_owned(),
                interval: crate::duration::Duration::from_secs(30),
                consecutive: 1,
                no_data: NoData::Fail,
                report_only: false,
            },
            url: "http://prometheus:9090".to_owned(),
            query: "q".to_owned(),
            aggregate,
            judge,
            min_hosts,
        }
    }

    /// One stratum holding every host.
    fn one(canary: &[f64], baseline: &[f64]) -> Vec<StratumValues> {
        vec![StratumValues {
            stratum: "(all)".to_owned(),
            canary: canary.to_vec(),
            baseline: baseline.to_vec(),
        }]
    }

    const ABOVE_1_5: Judge = Judge::Ratio(Threshold {
        op: Comparison::Greater,
        value: 1.5,
    });

    #[test]
    fn aggregates() {
        let values = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(aggregate(Aggregate::Mean, &values), Some(2.5));
        assert_eq!(aggregate(Aggregate::Median, &values), Some(2.5));
        // Ranks 0..3, φ(n − 1) = 2.7: 3 + 0.7 × (4 − 3).
        let p90 = aggregate(Aggregate::P90, &values).expect("a value");
        assert!((p90 - 3.7).abs() < 1e-12, "{p90}");
        assert_eq!(aggregate(Aggregate::Median, &[5.0]), Some(5.0));
        assert_eq!(aggregate(Aggregate::Mean, &[]), None);
    }

    #[test]
    fn ratio_fails_a_doubled_canary_and_passes_an_equal_one() {
        let gate = gate(ABOVE_1_5, Aggregate::Mean, 3);
        let baseline = [1.0, 1.1, 0.9];
        let verdict = judge(&gate, &one(&[2.0, 2.2, 1.8], &baseline), "q");
        assert_eq!(verdict.outcome, GateOutcome::Fail);
        assert_eq!(
            verdict.evidence,
            "canary mean 2 (3 hosts) vs baseline mean 1 (3 hosts): ratio 2, fail_if ratio > 1.5; query: q"
        );
        let figures = verdict.comparison.expect("figures");
        assert_eq!((figures.canary_hosts, figures.baseline_hosts), (3, 3));
        assert_eq!(figures.ratio, Some(2.0));
        assert!((figures.diff - 1.0).abs() < 1e-12);
        assert_eq!(
            judge(&gate, &one(&[1.0, 0.9, 1.2], &baseline), "q").outcome,
            GateOutcome::Pass
        );
    }

    #[test]
    fn too_few_hosts_is_no_data_with_the_figures_kept() {
        let gate = gate(ABOVE_1_5, Aggregate::Median, 3);
        let verdict = judge(&gate, &one(&[5.0, 5.0, 5.0], &[1.0, f64::NAN]), "q");
        assert_eq!(verdict.outcome, GateOutcome::NoData);
        assert!(
            verdict.evidence.starts_with(
                "no data: canary median 5 (3 hosts) vs baseline median 1 (1 hosts), 3 needed"
            ),
            "{}",
            verdict.evidence
        );
        assert_eq!(verdict.comparison.map(|c| c.baseline_hosts), Some(1));
        let empty = judge(&gate, &one(&[], &[]), "q");
        assert_eq!(empty.outcome, GateOutcome::NoData);
        assert_eq!(empty.comparison, None);
    }

    #[test]
    fn a_zero_baseline() {
        let gate = gate(ABOVE_1_5, Aggregate::Mean, 1);
        let zero = judge(&gate, &one(&[0.0], &[0.0]), "q");
        assert_eq!(zero.outcome, GateOutcome::Pass);
        assert_eq!(zero.comparison.and_then(|c| c.ratio), Some(1.0));
        let infinite = judge(&gate, &one(&[0.5], &[0.0]), "q");
        assert_eq!(infinite.outcome, GateOutcome::Fail);
        assert_eq!(infinite.comparison.and_then(|c| c.ratio), None);
        assert!(
            infinite.evidence.contains("ratio ∞"),
            "{}",
            infinite.evidence
        );
    }

    #[test]
    fn diff() {
        let gate = gate(
            Judge::Diff(Threshold {
                op: Comparison::Greater,
                value: 0.2,
            }),
            Aggregate::Mean,
            1,
        );
        assert_eq!(
            judge(&gate, &one(&[1.3], &[1.0]), "q").outcome,
            GateOutcome::Fail
        );
        assert_eq!(
            judge(&gate, &one(&[1.1], &[1.0]), "q").outcome,
            GateOutcome::Pass
        );
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        // scipy.stats.mannwhitneyu([19, 22, 16, 29, 24], [20, 11, 17, 12],
        // alternative="greater", method="asymptotic"): U = 17,
        // z = (17 − 10 − 0.5) / 4.0825, p = 0.055673
        let test = |direction, confidence| {
            gate(
                Judge::MannWhitney {
                    confidence,
                    direction,
                },
                Aggregate::Mean,
                3,
            )
        };
        let canary = [19.0, 22.0, 16.0, 29.0, 24.0];
        let baseline = [20.0, 11.0, 17.0, 12.0];
        let verdict = judge(
            &test(Direction::Increase, 0.9),
            &one(&canary, &baseline),
            "q",
        );
        let figures = verdict.comparison.clone().expect("figures");
        assert_eq!(figures.u, Some(17.0));
        let p = figures.p.expect("p");
        assert!((p - 0.055_673_443).abs() < 1e-8, "{p}");
        // p < 1 − 0.9: fails; at the default 0.98 it passes.
        assert_eq!(verdict.outcome, GateOutcome::Fail);
        assert_eq!(
            judge(
                &test(Direction::Increase, 0.98),
                &one(&canary, &baseline),
                "q"
            )
            .outcome,
            GateOutcome::Pass
        );
        // Two-sided doubles the p-value; the canary is not lower.
        let either = judge(
            &test(Direction::Either, 0.98),
            &one(&canary, &baseline),
            "q",
        );
        let p2 = either.comparison.and_then(|c| c.p).expect("p");
        assert!((p2 - 0.111_346_887).abs() < 1e-8, "{p2}");
        let lower = judge(
            &test(Direction::Decrease, 0.9),
            &one(&canary, &baseline),
            "q",
        );
        assert_eq!(lower.outcome, GateOutcome::Pass);
    }

    #[test]
    fn mann_whitney_with_ties_uses_the_normal_approximation() {
        // scipy.stats.mannwhitneyu([2, 2, 2, 3, 3, 3], [1, 1, 1, 2, 2, 2],
        // alternative="greater", method="asymptotic"): U = 31.5,
        // z = (31.5 − 18 − 0.5) / 5.7564 = 2.2583, p = 0.011962
        let gate = gate(
            Judge::MannWhitney {
                confidence: 0.98,
                direction: Direction::Increase,
            },
            Aggregate::Mean,
            3,
        );
        let verdict = judge(
            &gate,
            &one(
                &[2.0, 2.0, 2.0, 3.0, 3.0, 3.0],
                &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0],
            ),
            "q",
        );
        let figures = verdict.comparison.expect("figures");
        assert_eq!(figures.u, Some(31.5));
        let p = figures.p.expect("p");
        assert!((p - 0.011_962).abs() < 1e-6, "{p}");
        assert_eq!(verdict.outcome, GateOutcome::Fail);
    }

    #[test]
    fn a_stratum_fails_where_the_whole_cohort_hardly_moves() {
        let gate = gate(ABOVE_1_5, Aggregate::Mean, 3);
        let strata = vec![
            StratumValues {
                stratum: "role=config".to_owned(),
                canary: vec![1.0; 40],
                baseline: vec![1.0; 40],
            },
            StratumValues {
                stratum: "role=edge".to_owned(),
                canary: vec![2.0, 2.2, 1.8],
                baseline: vec![1.0, 1.1, 0.9],
            },
            // Too few to be judged on its own.
            StratumValues {
                stratum: "role=dns".to_owned(),
                canary: vec![9.0],
                baseline: vec![1.0],
            },
        ];
        let verdict = judge(&gate, &strata, "q");
        assert_eq!(verdict.outcome, GateOutcome::Fail, "{}", verdict.evidence);
        let figures = verdict.comparison.expect("figures");
        assert_eq!(figures.strata_judged, 2);
        assert_eq!(figures.strata_failing, ["role=edge"]);
        assert!(figures.ratio.is_some_and(|r| r < 1.5), "{figures:?}");
        assert!(
            verdict.evidence.contains("1 of 2 strata judged fail, the worst role=edge: canary mean 2 (3 hosts) vs baseline mean 1 (3 hosts): ratio 2"),
            "{}",
            verdict.evidence
        );
        // Healthy strata pass.
        let mut healthy = strata.clone();
        healthy[1].canary = vec![1.0, 1.1, 0.9];
        healthy[2].canary = vec![1.0];
        assert_eq!(judge(&gate, &healthy, "q").outcome, GateOutcome::Pass);
    }

    #[test]
    fn mann_whitney_shares_its_threshold_among_the_strata() {
        // Each stratum alone: U = 16, p = 0.015191 < 0.02; with the whole
        // cohorts and two strata, three judgements share 0.02.
        let gate = gate(
            Judge::MannWhitney {
                confidence: 0.98,
                direction: Direction::Increase,
            },
            Aggregate::Mean,
            4,
        );
        let stratum = |name: &str, offset: f64| StratumValues {
            stratum: name.to_owned(),
            canary: vec![5.0 + offset, 6.0 + offset, 7.0 + offset, 8.0 + offset],
            baseline: vec![1.0 + offset, 2.0 + offset, 3.0 + offset, 4.0 + offset],
        };
        let alone = judge(&gate, &[stratum("a", 0.0)], "q");
        assert_eq!(alone.outcome, GateOutcome::Fail, "{}", alone.evidence);
        let p = alone.comparison.and_then(|c| c.p).expect("p");
        assert!((p - 0.015_191_411).abs() < 1e-8, "{p}");
        // Two strata far apart: three judgements share 0.02, and neither
        // stratum's 0.0152 is below 0.02 / 3.
        let both = judge(&gate, &[stratum("a", 0.0), stratum("b", 100.0)], "q");
        let figures = both.comparison.expect("figures");
        assert_eq!(figures.strata_judged, 2);
        assert!(figures.strata_failing.is_empty(), "{}", both.evidence);
        assert!(
            both.evidence.contains("/ 3 judgements"),
            "{}",
            both.evidence
        );
    }

    #[test]
    fn figures_are_shown_briefly() {
        assert_eq!(shown(2.0), "2");
        assert_eq!(shown(1.23456), "1.235");
        assert_eq!(shown(0.000_123_456), "0.0001235");
        assert_eq!(shown(12345.6), "12346");
        assert_eq!(shown(f64::INFINITY), "∞");
    }
}
