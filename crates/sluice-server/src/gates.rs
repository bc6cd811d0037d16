//! External gates: a Prometheus instant query compared with `fail_if`, an
//! HTTP GET that must answer 2xx, and a comparison gate's query joined with
//! the rollout's cohorts ([`crate::cohorts::join`]) and judged by
//! [`sluice_core::compare`]. Evaluated by the controller in spawned tasks
//! with a timeout; an unreachable Prometheus or endpoint is a failing
//! result with the error as evidence, never a pass.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::compare::StratumValues;
use sluice_core::plan::{CompareGate, Plan, Threshold};
use sluice_core::rollout::{Cohorts, GateOutcome, GateResult};

/// One gate of a plan, as the evaluator needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum GateSpec {
    Prometheus {
        name: String,
        url: String,
        query: String,
        fail_if: Threshold,
    },
    Http {
        name: String,
        url: String,
        timeout: Duration,
    },
    Compare {
        gate: Box<CompareGate>,
        /// The query sent: the gate's joined with the rollout's cohorts.
        query: String,
        /// The stratum of every host of the cohorts when the evaluation
        /// was due (filled by [`strata_of`]); hosts Prometheus still
        /// names after they left the cohorts are left out.
        strata: Arc<HashMap<String, String>>,
    },
}

impl GateSpec {
    pub fn name(&self) -> &str {
        match self {
            GateSpec::Prometheus { name, .. } | GateSpec::Http { name, .. } => name,
            GateSpec::Compare { gate, .. } => &gate.common.name,
        }
    }
}

/// The external gates of rollout `rollout` of `plan` with their
/// intervals, in plan order.
pub fn specs(rollout: &str, plan: &Plan) -> Vec<(GateSpec, Duration)> {
    let prometheus = plan.gates.prometheus.iter().map(|gate| {
        (
            GateSpec::Prometheus {
                name: gate.common.name.clone(),
                url: gate.url.clone(),
                query: gate.query.clone(),
                fail_if: gate.fail_if,
            },
            interval(gate.common.interval.as_secs()),
        )
    });
    let http = plan.gates.http.iter().map(|gate| {
        (
            GateSpec::Http {
                name: gate.common.name.clone(),
                url: gate.url.clone(),
                timeout: Duration::from_secs(gate.timeout.as_secs().max(1)),
            },
            interval(gate.common.interval.as_secs()),
        )
    });
    let compare = plan.gates.compare.iter().map(|gate| {
        (
            GateSpec::Compare {
                query: crate::cohorts::join(&gate.query, rollout),
                gate: Box::new(gate.clone()),
                strata: Arc::default(),
            },
            interval(gate.common.interval.as_secs()),
        )
    });
    prometheus.chain(http).chain(compare).collect()
}

/// Each host of `cohorts` with its stratum (`role=edge,site=sto`).
pub fn strata_of(cohorts: &Cohorts, spread: &[String]) -> HashMap<String, String> {
    let mut strata = HashMap::new();
    for stratum in &cohorts.strata {
        let key = stratum.key.display(spread).to_string();
        for host in stratum.canary.iter().chain(&stratum.baseline) {
            strata.insert(host.to_string(), key.clone());
        }
    }
    strata
}

/// At least a second between evaluations of one gate.
fn interval(seconds: u64) -> Duration {
    Duration::from_secs(seconds.max(1))
}

/// Evaluates one gate; never fails: errors are failing results.
pub async fn evaluate(client: &reqwest::Client, spec: &GateSpec, timeout: Duration) -> GateResult {
    let (outcome, evidence) = match spec {
        GateSpec::Prometheus {
            url,
            query,
            fail_if,
            ..
        } => match instant_query(client, url, query, timeout).await {
            Ok(json) => judge(query, *fail_if, &json),
            Err(failure) => failure,
        },
        GateSpec::Http { url, timeout, .. } => http(client, url, *timeout).await,
        GateSpec::Compare {
            gate,
            query,
            strata,
        } => {
            return match instant_query(client, &gate.url, query, timeout).await {
                Ok(json) => judge_comparison(gate, query, strata, &json),
                Err((outcome, evidence)) => result(spec, outcome, evidence),
            }
        }
    };
    result(spec, outcome, evidence)
}

/// A result without comparison figures.
fn result(spec: &GateSpec, outcome: GateOutcome, evidence: String) -> GateResult {
    GateResult {
        name: spec.name().to_owned(),
        outcome,
        evidence,
        comparison: None,
    }
}

/// Asks Prometheus's `/api/v1/query` for `query`: its JSON answer, or the
/// failing result saying why there is none.
async fn instant_query(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    timeout: Duration,
) -> Result<serde_json::Value, (GateOutcome, String)> {
    let endpoint = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let url = match reqwest::Url::parse_with_params(&endpoint, [("query", query)]) {
        Ok(url) => url,
        Err(error) => {
            return Err((
                GateOutcome::Fail,
                format!("{query}: invalid Prometheus url {base:?}: {error}"),
            ))
        }
    };
    let response = match client.get(url).timeout(timeout).send().await {
        Ok(response) => response,
        Err(error) => {
            return Err((
                GateOutcome::Fail,
                format!(
                    "{query}: Prometheus at {base} unreachable: {}",
                    chain(&error)
                ),
            ))
        }
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => {
            return Err((
                GateOutcome::Fail,
                format!("{query}: reading Prometheus's answer: {}", chain(&error)),
            ))
        }
    };
    let json: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(_) => {
            return Err((
                GateOutcome::Fail,
                format!("{query}: Prometheus answered {status} without JSON"),
            ))
        }
    };
    Ok(json)
}

/// Judges a Prometheus `/api/v1/query` answer: every sample is compared
/// with `fail_if`; one failing sample fails the evaluation; no sample (or
/// only NaN) is no data.
pub fn judge(query: &str, fail_if: Threshold, json: &serde_json::Value) -> (GateOutcome, String) {
    let samples = match samples(query, json) {
        Ok(samples) => samples,
        Err(failure) => return failure,
    };
    let samples: Vec<(String, f64)> = samples
        .into_iter()
        .map(|(metric, value)| (labels(metric), value))
        .filter(|(_, v)| !v.is_nan())
        .collect();
    if samples.is_empty() {
        return (
            GateOutcome::NoData,
            format!("{query}: no data (fail_if {fail_if})"),
        );
    }
    let failing: Vec<&(String, f64)> = samples.iter().filter(|(_, v)| fail_if.fails(*v)).collect();
    match failing.first() {
        Some((series, value)) => {
            let of = if samples.len() > 1 {
                format!(" ({} of {} series failing)", failing.len(), samples.len())
            } else {
                String::new()
            };
            (
                GateOutcome::Fail,
                format!("{query}{series} = {value}, fail_if {fail_if}{of}"),
            )
        }
        None => {
            let (series, value) = &samples[0];
            (
                GateOutcome::Pass,
                format!("{query}{series} = {value}, passes fail_if {fail_if}"),
            )
        }
    }
}

/// Judges the answer to a comparison gate's joined query: each series is
/// one host of a cohort (its `cohort` and `host` labels), in its stratum
/// (`strata`; a host not in it is left out).
pub fn judge_comparison(
    gate: &CompareGate,
    query: &str,
    strata: &HashMap<String, String>,
    json: &serde_json::Value,
) -> GateResult {
    let result = |outcome, evidence| GateResult {
        name: gate.common.name.clone(),
        outcome,
        evidence,
        comparison: None,
    };
    let samples = match samples(query, json) {
        Ok(samples) => samples,
        Err((outcome, evidence)) => return result(outcome, evidence),
    };
    let mut by_stratum: std::collections::BTreeMap<&str, StratumValues> = Default::default();
    for (metric, value) in samples {
        let Some(stratum) = metric["host"].as_str().and_then(|host| strata.get(host)) else {
            continue;
        };
        let values = by_stratum
            .entry(stratum.as_str())
            .or_insert_with(|| StratumValues {
                stratum: stratum.clone(),
                ..StratumValues::default()
            });
        match metric["cohort"].as_str() {
            Some("canary") => values.canary.push(value),
            Some("baseline") => values.baseline.push(value),
            _ => {}
        }
    }
    let strata: Vec<StratumValues> = by_stratum.into_values().collect();
    let verdict = sluice_core::compare::judge(gate, &strata, query);
    GateResult {
        name: gate.common.name.clone(),
        outcome: verdict.outcome,
        evidence: verdict.evidence,
        comparison: verdict.comparison,
    }
}

/// The samples of a successful answer, each with its labels: an instant
/// vector's series, or a scalar (no labels); a failing result for an error
/// or another kind of result.
fn samples<'a>(
    query: &str,
    json: &'a serde_json::Value,
) -> Result<Vec<(&'a serde_json::Value, f64)>, (GateOutcome, String)> {
    static NO_LABELS: serde_json::Value = serde_json::Value::Null;
    if json.get("status").and_then(|s| s.as_str()) != Some("success") {
        let kind = json
            .get("errorType")
            .and_then(|s| s.as_str())
            .unwrap_or("error");
        let error = json
            .get("error")
            .and_then(|s| s.as_str())
            .unwrap_or("no error message");
        return Err((
            GateOutcome::Fail,
            format!("{query}: Prometheus {kind}: {error}"),
        ));
    }
    let data = &json["data"];
    match data["resultType"].as_str() {
        Some("vector") => Ok(data["result"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .filter_map(|s| Some((&s["metric"], sample(&s["value"])?)))
                    .collect()
            })
            .unwrap_or_default()),
        Some("scalar") => Ok(sample(&data["result"])
            .map(|value| vec![(&NO_LABELS, value)])
            .unwrap_or_default()),
        other => Err((
            GateOutcome::Fail,
            format!(
                "{query}: Prometheus returned a {} result; a gate needs an instant vector or a scalar",
                other.unwrap_or("missing")
            ),
        )),
    }
}

fn sample(value: &serde_json::Value) -> Option<f64> {
    value.get(1)?.as_str()?.parse().ok()
}

fn labels(metric: &serde_json::Value) -> String {
    match metric.as_object() {
        Some(map) if !map.is_empty() => {
            let pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or_default()))
                .collect();
            format!("{{{}}}", pairs.join(","))
        }
        _ => String::new(),
    }
}

async fn http(client: &reqwest::Client, url: &str, timeout: Duration) -> (GateOutcome, String) {
    match client.get(url).timeout(timeout).send().await {
        Ok(response) if response.status().is_success() => (
            GateOutcome::Pass,
            format!("GET {url}: {}", response.status()),
        ),
        Ok(response) => (
            GateOutcome::Fail,
            format!("GET {url}: {}", response.status()),
        ),
        Err(error) if error.is_timeout() => (
            GateOutcome::Fail,
            format!("GET {url}: no answer within {}s", timeout.as_secs()),
        ),
        Err(error) => (GateOutcome::Fail, format!("GET {url}: {}", chain(&error))),
    }
}

/// An error with its causes: `error sending request: connection refused`.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_core::plan::Comparison;

    use super::*;

    const ABOVE_HALF: Threshold = Threshold {
        op: Comparison::Greater,
        value: 0.5,
    };

    #[test]
    fn judges_vectors_scalars_and_errors() {
        let vector = |values: &[&str]| {
            json!({"status": "success", "data": {"resultType": "vector", "result":
                values.iter().map(|v| json!({"metric": {"job": "x"}, "value": [1.0, v]})).collect::<Vec<_>>()}})
        };
        assert_eq!(
            judge("q", ABOVE_HALF, &vector(&["0.2"])).0,
            GateOutcome::Pass
        );
        let (outcome, evidence) = judge("q", ABOVE_HALF, &vector(&["0.2", "0.7"]));
        assert_eq!(outcome, GateOutcome::Fail);
        assert_eq!(
            evidence,
            "q{job=\"x\"} = 0.7, fail_if > 0.5 (1 of 2 series failing)"
        );
        assert_eq!(judge("q", ABOVE_HALF, &vector(&[])).0, GateOutcome::NoData);
        assert_eq!(
            judge("q", ABOVE_HALF, &vector(&["NaN"])).0,
            GateOutcome::NoData
        );
        let scalar =
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.9"]}});
        assert_eq!(judge("q", ABOVE_HALF, &scalar).0, GateOutcome::Fail);
        let error = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        let (outcome, evidence) = judge("q", ABOVE_HALF, &error);
        assert_eq!(outcome, GateOutcome::Fail);
        assert_eq!(evidence, "q: Prometheus bad_data: parse error");
    }
}
