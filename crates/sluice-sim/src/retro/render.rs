//! The retrospective for people and tools: Markdown, one self-contained
//! HTML page (its chart inline, its stylesheet embedded, readable printed)
//! and JSON.
//!
//! Markdown and HTML are one layout ([`blocks`]: headings, paragraphs,
//! tables, lists, the chart) written out twice, so they never disagree.

use std::fmt::Write as _;

use jiff::Timestamp;
use sluice_core::rollout::EventKind;

use super::svg::{self, escape};
use super::{human, Report};

/// The formats a report is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Md,
    Html,
    Json,
}

impl Format {
    /// `md`, `html` or `json`.
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "md" => Some(Format::Md),
            "html" => Some(Format::Html),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Md => "md",
            Format::Html => "html",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Md => "text/markdown; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// The report in `format`; `chart_file` is the name Markdown links its
/// chart by (the SVG written beside it, [`chart`]).
pub fn render(report: &Report, format: Format, chart_file: &str) -> String {
    match format {
        Format::Md => markdown(report, chart_file),
        Format::Html => html(report),
        Format::Json => json(report),
    }
}

/// Every figure, for tools.
pub fn json(report: &Report) -> String {
    let mut text = serde_json::to_string_pretty(report)
        .unwrap_or_else(|error| unreachable!("a report always serialises: {error}"));
    text.push('\n');
    text
}

/// The chart of hosts by state over time.
pub fn chart(report: &Report) -> String {
    svg::chart(
        &report.chart,
        &format!("hosts of rollout {} by state over time", report.rollout),
    )
}

/// One piece of the layout.
enum Block {
    Heading(u8, String),
    Para(String),
    Table(Vec<String>, Vec<Vec<String>>),
    List(Vec<String>),
    Chart,
}

fn at(time: Option<Timestamp>) -> String {
    time.map_or_else(|| "—".to_owned(), |t| t.to_string())
}

fn dur(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "—".to_owned(), human)
}

/// The layout of a report.
fn blocks(r: &Report) -> Vec<Block> {
    let s = &r.summary;
    let mut b = Vec::new();
    b.push(Block::Heading(
        1,
        format!("Rollout {} — retrospective", r.rollout),
    ));
    let source = match &r.source {
        super::Source::Server => "the server's record".to_owned(),
        super::Source::Simulation { seed, faults } => format!(
            "a simulation (seed {seed}, faults: {})",
            if faults.is_empty() {
                "none".to_owned()
            } else {
                faults.join(", ")
            }
        ),
    };
    b.push(Block::Para(format!(
        "Generated at {} from {source}.",
        r.generated_at
            .round(jiff::Unit::Second)
            .unwrap_or(r.generated_at)
    )));

    b.push(Block::Heading(2, "Summary".to_owned()));
    let from = if s.from.is_empty() {
        "—".to_owned()
    } else {
        s.from
            .iter()
            .map(|v| format!("{} ({} hosts)", v.version, v.hosts))
            .collect::<Vec<_>>()
            .join(", ")
    };
    b.push(Block::Table(
        vec!["Rollout".to_owned(), r.rollout.clone()],
        vec![
            vec!["Plan".into(), s.plan.clone()],
            vec!["Component".into(), s.component.clone()],
            vec!["Change".into(), format!("{from} → {}", s.to)],
            vec![
                "Started".into(),
                format!(
                    "{} by {}{}",
                    at(s.started_at),
                    s.started_by.as_deref().unwrap_or("—"),
                    s.start_reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            ],
            vec!["Outcome".into(), s.outcome.replace('_', " ")],
            vec!["Ended".into(), at(s.ended_at)],
            vec!["Duration".into(), dur(s.duration_s)],
            vec![
                "Hosts".into(),
                format!(
                    "{} selected, {} admitted, {} failed",
                    s.hosts_selected, s.hosts_admitted, r.blast_radius.hosts_failed
                ),
            ],
            vec![
                "Limits".into(),
                format!(
                    "max_in_flight {}, on_failure {}",
                    s.max_in_flight
                        .map_or("unlimited".to_owned(), |m| m.to_string()),
                    s.on_failure
                ),
            ],
        ],
    ));

    let t = &r.times;
    b.push(Block::Heading(
        2,
        "Time to detect, halt, recover".to_owned(),
    ));
    b.push(Block::Table(
        head(&["", "after the start¹", "at", "what"]),
        vec![
            vec![
                "Detect²".into(),
                dur(t.time_to_detect_s),
                at(t.first_failure_at),
                t.first_failure
                    .clone()
                    .unwrap_or_else(|| "no failure seen".into()),
            ],
            vec![
                "Halt³".into(),
                dur(t.time_to_halt_s),
                at(t.halted_at),
                t.halt.clone().unwrap_or_else(|| "—".into()),
            ],
            vec![
                "Recover⁴".into(),
                dur(t.time_to_recover_s),
                at(t.recovered_at),
                if t.recovered_at.is_some() {
                    "no host failed, reverting or in flight".into()
                } else {
                    "—".into()
                },
            ],
        ],
    ));

    b.push(Block::Heading(2, "Stages".to_owned()));
    b.push(Block::Table(
        head(&[
            "stage",
            "percent",
            "quota",
            "admitted",
            "failed (allowed)",
            "started",
            "settled",
            "bake planned",
            "bake actual",
            "approval",
        ]),
        r.stages
            .iter()
            .map(|st| {
                vec![
                    format!("{} {}", st.index + 1, st.name),
                    format!("{}", st.percent),
                    st.quota.map_or("—".into(), |q| q.to_string()),
                    st.admitted.to_string(),
                    format!(
                        "{} ({})",
                        st.failed,
                        st.allowed_failures.map_or("—".into(), |a| a.to_string())
                    ),
                    at(st.started_at),
                    at(st.settled_at),
                    human(st.bake_planned_s as f64),
                    match (&st.advanced, st.bake_actual_s) {
                        (Some(adv), actual) => {
                            format!("{} (advanced by {}: {})", dur(actual), adv.by, adv.reason)
                        }
                        (None, actual) => dur(actual),
                    },
                    match &st.approval {
                        None => "—".into(),
                        Some(a) => match &a.approved {
                            Some(act) => {
                                format!("waited {} for {}: {}", dur(a.wait_s), act.by, act.reason)
                            }
                            None => format!("awaiting since {}", a.asked_at),
                        },
                    },
                ]
            })
            .collect(),
    ));

    b.push(Block::Heading(3, "Holds".to_owned()));
    if r.holds.is_empty() {
        b.push(Block::Para(
            "No freeze, window, pause or wait for other rollouts held the rollout.".into(),
        ));
    } else {
        b.push(Block::Table(
            head(&[
                "hold",
                "stage",
                "from",
                "to",
                "for",
                "by",
                "why",
                "released by",
            ]),
            r.holds
                .iter()
                .map(|h| {
                    vec![
                        h.kind.to_owned(),
                        h.stage.map_or("—".into(), |s| (s + 1).to_string()),
                        h.from.to_string(),
                        at(h.to),
                        dur(h.duration_s),
                        h.by.clone(),
                        h.why.clone(),
                        match (&h.released_by, &h.released_why) {
                            (Some(by), Some(why)) => format!("{by}: {why}"),
                            (Some(by), None) => by.clone(),
                            _ => "—".into(),
                        },
                    ]
                })
                .collect(),
        ));
    }

    b.push(Block::Heading(2, "Gates".to_owned()));
    if r.gates.acted.is_empty() {
        b.push(Block::Para("No gate acted.".into()));
    } else {
        b.push(Block::Table(
            head(&["gate that acted", "at", "evidence", "then"]),
            r.gates
                .acted
                .iter()
                .map(|a| {
                    vec![
                        a.gate.clone(),
                        a.at.to_string(),
                        a.evidence.clone(),
                        a.then.clone().unwrap_or_else(|| "—".into()),
                    ]
                })
                .collect(),
        ));
    }
    if r.gates.evaluations.is_empty() {
        b.push(Block::Para("No external gate was evaluated.".into()));
    } else {
        b.push(Block::Table(
            head(&[
                "at",
                "gate",
                "query",
                "value",
                "threshold",
                "outcome",
                "evidence",
            ]),
            r.gates
                .evaluations
                .iter()
                .map(|e| {
                    vec![
                        e.at.to_string(),
                        if e.report_only {
                            format!("{} (report only)", e.gate)
                        } else {
                            e.gate.clone()
                        },
                        e.query.clone(),
                        e.value.map_or("—".into(), |v| v.to_string()),
                        e.threshold.clone(),
                        e.outcome.to_owned(),
                        e.evidence.clone(),
                    ]
                })
                .collect(),
        ));
    }

    b.push(Block::Heading(2, "Failures".to_owned()));
    if r.failures.hosts.is_empty() {
        b.push(Block::Para("No host failed.".into()));
    } else {
        for (title, groups) in [("role", &r.failures.by_role), ("site", &r.failures.by_site)] {
            b.push(Block::Heading(3, format!("By {title}")));
            b.push(Block::Table(
                head(&[title, "failed", "admitted", "selected"]),
                groups
                    .iter()
                    .map(|g| {
                        vec![
                            g.value.clone(),
                            g.failed.to_string(),
                            g.admitted.to_string(),
                            g.selected.to_string(),
                        ]
                    })
                    .collect(),
            ));
        }
        b.push(Block::Heading(3, "Failed hosts".to_owned()));
        b.push(Block::Table(
            head(&[
                "host",
                "role",
                "site",
                "stage",
                "first failed",
                "times",
                "now",
                "reason",
                "last message",
            ]),
            r.failures
                .hosts
                .iter()
                .map(|h| {
                    vec![
                        h.host.clone(),
                        h.role.clone(),
                        h.site.clone(),
                        h.stage.map_or("—".into(), |s| (s + 1).to_string()),
                        h.first_failed_at.to_string(),
                        h.failures.to_string(),
                        h.state.clone(),
                        h.reason.clone(),
                        h.last_message.clone().unwrap_or_else(|| "—".into()),
                    ]
                })
                .collect(),
        ));
    }

    let br = &r.blast_radius;
    b.push(Block::Heading(2, "Blast radius⁵".to_owned()));
    b.push(Block::Table(
        head(&["", "hosts failed", "of"]),
        vec![
            vec![
                "This rollout".into(),
                br.hosts_failed.to_string(),
                format!(
                    "{} admitted, {} selected",
                    br.hosts_admitted, br.hosts_selected
                ),
            ],
            vec![
                "The plan's bound".into(),
                br.bound.map_or("unlimited".into(), |b| b.to_string()),
                format!(
                    "max_in_flight {} + max_failed {} ({})",
                    br.max_in_flight
                        .map_or("unlimited".into(), |m| m.to_string()),
                    br.max_failed,
                    if br.within_bound {
                        "within"
                    } else {
                        "exceeded"
                    }
                ),
            ],
            vec![
                "All at once (simulated)⁶".into(),
                br.all_at_once.hosts_failed.to_string(),
                format!("{} changed", br.all_at_once.hosts_changed),
            ],
        ],
    ));

    b.push(Block::Heading(2, "Hosts by state over time".to_owned()));
    b.push(Block::Chart);

    b.push(Block::Heading(2, "Timeline".to_owned()));
    b.push(Block::Table(
        head(&["at", "by", "what"]),
        r.timeline
            .iter()
            .map(|e| {
                vec![
                    e.at.to_string(),
                    e.actor.clone().unwrap_or_else(|| "sluice".into()),
                    describe(&e.kind),
                ]
            })
            .collect(),
    ));

    b.push(Block::Heading(2, "Retro".to_owned()));
    for (title, kind, facts) in [
        ("What went well", "Fact", &r.prompts.went_well),
        ("What went wrong", "Fact", &r.prompts.went_wrong),
        ("Where we got lucky", "Fact", &r.prompts.got_lucky),
        ("Action items", "Suggested", &r.prompts.action_items),
    ] {
        b.push(Block::Heading(3, title.to_owned()));
        let mut items: Vec<String> = facts.iter().map(|f| format!("{kind}: {f}")).collect();
        items.push("…".to_owned());
        b.push(Block::List(items));
    }

    b.push(Block::Heading(2, "Notes".to_owned()));
    b.push(Block::List(vec![
        "¹ Times are measured from the `started` event.".into(),
        "² Time to detect: until the first failure sluice saw — a host reporting failure or silent past `host_timeout`, or a failing gate evaluation.".into(),
        "³ Time to halt: until the first pause or rollback at or after that failure.".into(),
        "⁴ Time to recover: until the first sample of hosts by state, after the first failure, with no host failed, reverting or in flight: every hurt host back healthy (at the target or at its previous version).".into(),
        "⁵ Blast radius: hosts that got the change and failed (a `host_failed` event), each counted once. The plan's bound is `max_in_flight` (of the selected hosts) plus `max_failed` (of the largest stage started).".into(),
        format!("⁶ {}.", br.all_at_once.assumption),
    ]));
    b
}

/// A table's head.
fn head(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|c| (*c).to_owned()).collect()
}

/// An event in words.
fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::Created {
            plan,
            component,
            version,
            ..
        } => format!("created from plan {plan}: {component} to {version}"),
        EventKind::Started { reason } => format!("started: {reason}"),
        EventKind::StageStarted {
            index,
            name,
            percent,
            quota,
        } => format!(
            "stage {} {name} started: {percent} %, {quota} hosts",
            index + 1
        ),
        EventKind::Baking { stage, until } => format!("stage {} baking until {until}", stage + 1),
        EventKind::AwaitingApproval { stage } => {
            format!("stage {} awaiting approval", stage + 1)
        }
        EventKind::Approved { stage, reason } => {
            format!("stage {} approved: {reason}", stage + 1)
        }
        EventKind::Advanced { stage, reason } => {
            format!("stage {} bake skipped: {reason}", stage + 1)
        }
        EventKind::StageCompleted { index, name } => {
            format!("stage {} {name} completed", index + 1)
        }
        EventKind::Completed => "completed".to_owned(),
        EventKind::Paused { reason } => format!("paused: {reason}"),
        EventKind::Resumed {
            reason,
            acknowledged_failures,
            ..
        } => format!("resumed ({acknowledged_failures} failures acknowledged): {reason}"),
        EventKind::Held { hold } => format!("held: {hold}"),
        EventKind::Released { hold, reason } => format!(
            "released from hold ({hold}){}",
            reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        EventKind::Waiting { wait } => wait.to_string(),
        EventKind::WaitOver { wait } => format!("wait over ({wait})"),
        EventKind::HostFailed { host, reason, .. } => format!("host {host} failed: {reason}"),
        EventKind::MaxFailedExceeded {
            stage,
            failed,
            allowed,
        } => format!(
            "stage {}: {failed} hosts failed, {allowed} allowed",
            stage + 1
        ),
        EventKind::GateEvaluated { gate, evidence, .. } => {
            format!("gate {gate} evaluated: {evidence}")
        }
        EventKind::GateFailed {
            gate,
            failures,
            evidence,
        } => format!("gate {gate} failed ({failures} in a row): {evidence}"),
        EventKind::RollbackSkipped { why } => format!("rollback skipped: {why}"),
        EventKind::RollbackStarted { reason, hosts, .. } => {
            format!("rollback of {hosts} hosts: {reason}")
        }
        EventKind::Aborted { reason } => format!("aborted: {reason}"),
    }
}

/// A Markdown table cell: one line, `|` escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The report in Markdown; its chart is the SVG file `chart_file`.
pub fn markdown(report: &Report, chart_file: &str) -> String {
    let mut out = String::new();
    for block in blocks(report) {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "{} {text}\n", "#".repeat(level.into()));
            }
            Block::Para(text) => {
                let _ = writeln!(out, "{text}\n");
            }
            Block::Table(head, rows) => {
                let _ = writeln!(
                    out,
                    "| {} |",
                    head.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | ")
                );
                let _ = writeln!(out, "|{}", " --- |".repeat(head.len()));
                for row in rows {
                    let _ = writeln!(
                        out,
                        "| {} |",
                        row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
                    );
                }
                out.push('\n');
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(out, "- {item}");
                }
                out.push('\n');
            }
            Block::Chart => {
                let _ = writeln!(out, "![hosts by state over time]({chart_file})\n");
            }
        }
    }
    out
}

/// The stylesheet of the HTML report, readable on screen and printed.
const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;color:#111;max-width:1100px;margin:2em auto;padding:0 1em}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}\
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f2f2f2}td{overflow-wrap:anywhere}\
svg{max-width:100%;height:auto}\
@media print{body{margin:0;max-width:none;font-size:11px}h2{break-after:avoid}\
tr,svg{break-inside:avoid}a{color:inherit;text-decoration:none}}";

/// The body of the HTML report (without `<html>`), for pages that embed it.
pub fn html_body(report: &Report) -> String {
    let mut out = String::new();
    for block in blocks(report) {
        match block {
            Block::Heading(level, text) => {
                let _ = write!(out, "<h{level}>{}</h{level}>", escape(&text));
            }
            Block::Para(text) => {
                let _ = write!(out, "<p>{}</p>", escape(&text));
            }
            Block::Table(head, rows) => {
                out.push_str("<table><thead><tr>");
                for h in head {
                    let _ = write!(out, "<th>{}</th>", escape(&h));
                }
                out.push_str("</tr></thead><tbody>");
                for row in rows {
                    out.push_str("<tr>");
                    for c in row {
                        let _ = write!(out, "<td>{}</td>", escape(&c));
                    }
                    out.push_str("</tr>");
                }
                out.push_str("</tbody></table>");
            }
            Block::List(items) => {
                out.push_str("<ul>");
                for item in items {
                    let _ = write!(out, "<li>{}</li>", escape(&item));
                }
                out.push_str("</ul>");
            }
            Block::Chart => {
                let _ = write!(out, "<figure>{}</figure>", chart(report));
            }
        }
    }
    out
}

/// The report as one self-contained HTML page.
pub fn html(report: &Report) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Rollout {} — retrospective</title><style>{STYLE}</style></head><body>{}</body></html>\n",
        escape(&report.rollout),
        html_body(report)
    )
}
