//! Canary analysis for Prometheus: the cohorts of every rollout with a
//! comparison gate, as the info series
//! `sluice_cohort{rollout, cohort="canary"|"baseline", host, instance} 1`
//! (`GET /v1/metrics/cohorts`, [`exposition`]), and the PromQL join a
//! comparison gate sends ([`join`]).
//!
//! The cohorts are the engine's ([`sluice_core::rollout::Cohorts`]), drawn
//! while the rollout has a current stage (running or paused) and bounded
//! by `--cohort-max` hosts each. `instance` is the host id through the
//! server's template (`--cohort-instance`, default `{host}:9100`): what
//! Prometheus calls the host's exporter, which the join matches on.
//! Prometheus must keep the series' own `instance` (`honor_labels: true`),
//! or it would replace it with sluice's address.
//!
//! The join multiplies the gate's per-host query by the cohort series
//! (value 1) on `instance`, taking `cohort` and `host` from them, and sums
//! per host: one query answers both cohorts at one instant.
//!
//! ```text
//! sum by (cohort, host) ((QUERY) * on (instance) group_left (cohort, host)
//!   max by (instance, cohort, host) (sluice_cohort{rollout="r-1"}))
//! ```
//!
//! The `max by` keeps the right side one series per instance when
//! Prometheus scrapes sluice under several jobs or replicas.

use std::fmt::{self, Write as _};

use crate::world::World;

/// How cohorts are exported: `--cohort-instance` and `--cohort-max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortSettings {
    pub instance: InstanceTemplate,
    /// Hosts per cohort, at most.
    pub max: usize,
}

/// The default bound of each cohort.
pub const DEFAULT_COHORT_MAX: usize = 500;

impl Default for CohortSettings {
    fn default() -> CohortSettings {
        CohortSettings {
            instance: InstanceTemplate(DEFAULT_INSTANCE.to_owned()),
            max: DEFAULT_COHORT_MAX,
        }
    }
}

/// The default instance template: node_exporter's port.
pub const DEFAULT_INSTANCE: &str = "{host}:9100";

/// How a host id becomes its exporter's `instance`: a text with `{host}`
/// once, such as `{host}:9100`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTemplate(String);

/// Why an instance template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

impl InstanceTemplate {
    /// `{host}` exactly once; no other brace, quote, backslash, white
    /// space or control character.
    pub fn parse(text: &str) -> Result<InstanceTemplate, TemplateError> {
        let holes = text.matches("{host}").count();
        if holes != 1 {
            return Err(TemplateError(format!(
                "{text:?} holds {{host}} {holes} times; write it once, such as {{host}}:9100"
            )));
        }
        let rest = text.replacen("{host}", "", 1);
        if let Some(c) = rest
            .chars()
            .find(|&c| matches!(c, '{' | '}' | '"' | '\\') || c.is_whitespace() || c.is_control())
        {
            return Err(TemplateError(format!(
                "{text:?} contains {c:?}; an instance is the host id and its exporter's port or path, such as {{host}}:9100"
            )));
        }
        Ok(InstanceTemplate(text.to_owned()))
    }

    /// The instance of `host`.
    pub fn instance(&self, host: &str) -> String {
        self.0.replacen("{host}", host, 1)
    }
}

impl fmt::Display for InstanceTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The cohorts of every rollout with a comparison gate that has a current
/// stage, in the Prometheus text format, rollouts in creation order.
pub fn exposition(world: &World, settings: &CohortSettings) -> String {
    let mut text = String::from(
        "# HELP sluice_cohort hosts of a rollout's canary and baseline cohorts (comparison gates); 1 per host\n\
         # TYPE sluice_cohort gauge\n",
    );
    for entry in world.rollout_entries() {
        let rollout = &entry.rollout;
        if rollout.plan().gates.compare.is_empty() {
            continue;
        }
        let cohorts = rollout.cohorts(settings.max);
        for (cohort, hosts) in [
            ("canary", cohorts.canary().collect::<Vec<_>>()),
            ("baseline", cohorts.baseline().collect::<Vec<_>>()),
        ] {
            for host in hosts {
                let _ = writeln!(
                    text,
                    "sluice_cohort{{rollout=\"{}\",cohort=\"{cohort}\",host=\"{}\",instance=\"{}\"}} 1",
                    label_value(rollout.id()),
                    label_value(host),
                    label_value(&settings.instance.instance(host)),
                );
            }
        }
    }
    text
}

/// The query a comparison gate of `rollout` sends for its per-host `query`.
pub fn join(query: &str, rollout: &str) -> String {
    format!(
        "sum by (cohort, host) (({query}) * on (instance) group_left (cohort, host) max by (instance, cohort, host) (sluice_cohort{{rollout=\"{}\"}}))",
        label_value(rollout)
    )
}

/// A label value as the text format and PromQL write it: `\`, `"` and
/// line feeds escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let template = InstanceTemplate::parse("{host}:9100").expect("valid");
        assert_eq!(template.instance("a.example.net"), "a.example.net:9100");
        assert_eq!(
            InstanceTemplate::parse("node-{host}.metrics")
                .expect("valid")
                .instance("a"),
            "node-a.metrics"
        );
        for (text, message) in [
            (":9100", "0 times"),
            ("{host}{host}", "2 times"),
            ("{host}:{port}", "contains '{'"),
            ("{host} :9100", "contains ' '"),
            ("{host}\":9100", "contains '\"'"),
        ] {
            let error = InstanceTemplate::parse(text).expect_err(text);
            assert!(error.to_string().contains(message), "{text}: {error}");
        }
    }

    #[test]
    fn the_join_names_the_rollout_and_keeps_the_query_whole() {
        assert_eq!(
            join("rate(x[5m]) or vector(0)", "r-1"),
            "sum by (cohort, host) ((rate(x[5m]) or vector(0)) * on (instance) group_left (cohort, host) max by (instance, cohort, host) (sluice_cohort{rollout=\"r-1\"}))"
        );
        assert_eq!(label_value("a\"b\\c"), "a\\\"b\\\\c");
    }
}
