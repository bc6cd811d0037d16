//! Parsing a plan file into a [`Plan`], collecting every problem.
//!
//! The file is loaded with `marked_yaml`, which keeps the line and column of
//! every node (a JSON plan is YAML too), and the tree is then walked by hand,
//! field by field, so that every problem is reported at once, each with the
//! path of the field (`stages[1].percent`), its position, and what would be
//! valid. Unknown fields are errors at every level.
//!
//! A field with no value (`bake:` or `bake: null`) is the same as a field
//! left out: optional fields take their default, required ones are reported.

use std::collections::HashMap;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Marker, Node};

use super::window::{Days, Window, WindowError};
use super::{
    After, Aggregate, CompareGate, Comparison, Direction, GateCommon, Gates, HttpGate, Judge,
    NoData, OnFailure, Plan, PlanError, PlanErrors, PrometheusGate, Stage, Strategy, Threshold,
};
use crate::duration::Duration;
use crate::percent::{Amount, Percent};
use crate::selector::Selector;

const PLAN_FIELDS: &[&str] = &[
    "name",
    "component",
    "version",
    "payload",
    "selector",
    "strategy",
    "max_in_flight",
    "stages",
    "gates",
    "on_failure",
    "reversible",
    "exclusive",
    "windows",
    "after",
];
const STRATEGY_FIELDS: &[&str] = &["spread", "min_per_stratum", "salt"];
const STAGE_FIELDS: &[&str] = &["name", "percent", "bake", "approve"];
const GATES_FIELDS: &[&str] = &[
    "max_failed",
    "host_timeout",
    "prometheus",
    "http",
    "compare",
];
const PROMETHEUS_FIELDS: &[&str] = &[
    "name",
    "url",
    "query",
    "fail_if",
    "for",
    "interval",
    "no_data",
    "report_only",
];
const HTTP_FIELDS: &[&str] = &["name", "url", "interval", "timeout", "for", "report_only"];
const COMPARE_FIELDS: &[&str] = &[
    "name",
    "url",
    "query",
    "aggregate",
    "fail_if",
    "test",
    "confidence",
    "direction",
    "min_hosts",
    "for",
    "interval",
    "no_data",
    "report_only",
];
const WINDOW_FIELDS: &[&str] = &["days", "hours", "tz"];

/// Longest plan, component, stage or gate name: they appear in URLs and ids.
const MAX_NAME_CHARS: usize = 128;

const DEFAULT_MIN_PER_STRATUM: u64 = 1;
const DEFAULT_HOST_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const DEFAULT_GATE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Kayenta's default confidence for its Mann-Whitney judge.
const DEFAULT_CONFIDENCE: f64 = 0.98;
/// Hosts with data per cohort before a comparison gate judges.
const DEFAULT_MIN_HOSTS: u64 = 3;

/// Parses and validates a YAML (or JSON) plan.
///
/// Returns every problem found, sorted by position; a YAML syntax error is
/// reported alone, since nothing after it can be trusted.
pub fn parse_plan(source: &str) -> Result<Plan, PlanErrors> {
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        // Keeps the quoting of scalars: `may_coerce` is then true exactly
        // for plain (unquoted) scalars.
        .prevent_coercion(true);
    // A byte order mark is not part of the first key.
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let root = match marked_yaml::parse_yaml_with_options(0, source, options) {
        Ok(root) => root,
        Err(error) => return Err(PlanErrors(vec![load_error(source, error)])),
    };
    let mut parser = Parser {
        source,
        errors: Vec::new(),
    };
    let plan = parser.plan(&root);
    parser.second_document();
    let mut errors = parser.errors;
    match plan {
        Some(plan) if errors.is_empty() => Ok(plan),
        _ => {
            if errors.is_empty() {
                // Every path that gives up has reported why; this is a guard.
                errors.push(PlanError {
                    field: String::new(),
                    line: 1,
                    column: 1,
                    message: "the plan is incomplete".to_owned(),
                });
            }
            errors.sort_by_key(|error| (error.line, error.column));
            Err(PlanErrors(errors))
        }
    }
}

/// A position in the source: 1-based line and column, 0-based character index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
    index: usize,
}

impl Pos {
    const START: Pos = Pos {
        line: 1,
        column: 1,
        index: 0,
    };

    fn of(marker: Option<&Marker>) -> Pos {
        marker.map_or(Pos::START, |m| Pos {
            line: m.line(),
            column: m.column(),
            index: m.character(),
        })
    }
}

/// Where a node starts. Block mappings are located at their first key, since
/// the loader marks them after it.
fn node_pos(node: &Node) -> Pos {
    match node {
        Node::Mapping(map) => map
            .keys()
            .next()
            .map_or_else(|| Pos::of(map.span().start()), key_pos),
        _ => Pos::of(node.span().start()),
    }
}

fn key_pos(key: &MarkedScalarNode) -> Pos {
    Pos::of(key.span().start())
}

/// Whether a node is YAML's null: an unquoted empty value, `~` or `null`.
fn is_null(node: &Node) -> bool {
    match node {
        Node::Scalar(scalar) => {
            scalar.may_coerce() && matches!(scalar.as_str(), "" | "~" | "null" | "Null" | "NULL")
        }
        _ => false,
    }
}

/// How a node reads in a message: ``found `abc` ``, `found a list`.
fn describe(node: &Node) -> String {
    match node {
        Node::Mapping(_) => "a mapping".to_owned(),
        Node::Sequence(_) => "a list".to_owned(),
        Node::Scalar(_) if is_null(node) => "nothing".to_owned(),
        Node::Scalar(scalar) if scalar.as_str().is_empty() => "an empty string".to_owned(),
        Node::Scalar(scalar) => {
            let text = scalar.as_str();
            let mut shown: String = text.chars().take(40).collect();
            if shown.len() < text.len() {
                shown.push('…');
            }
            format!("`{}`", escaped(&shown))
        }
    }
}

/// Text for a message, with control characters escaped: `a\tb`.
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A character for a message: `` `ü` ``, `a space`, `'\t'`.
fn show_char(c: char) -> String {
    match c {
        ' ' => "a space".to_owned(),
        c if c.is_whitespace() || c.is_control() => format!("{c:?}"),
        c => format!("`{c}`"),
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// A value found in the plan, with its path and position.
#[derive(Debug, Clone)]
struct Val<'a> {
    node: &'a Node,
    path: String,
    pos: Pos,
}

impl<'a> Val<'a> {
    fn item(node: &'a Node, parent: &str, index: usize) -> Val<'a> {
        Val {
            node,
            path: format!("{parent}[{index}]"),
            pos: node_pos(node),
        }
    }
}

/// A mapping whose keys have been checked against the valid fields.
#[derive(Debug)]
struct Map<'a> {
    map: &'a MarkedMappingNode,
    path: String,
    pos: Pos,
}

impl<'a> Map<'a> {
    /// The field `key`, unless it is absent or null.
    fn get(&self, key: &str) -> Option<Val<'a>> {
        let (_, node) = self.map.iter().find(|(k, _)| k.as_str() == key)?;
        if is_null(node) {
            return None;
        }
        Some(Val {
            node,
            path: join(&self.path, key),
            pos: node_pos(node),
        })
    }

    /// The field `key` read by `read`, or `default` when it is absent or
    /// null.
    fn optional<T>(
        &self,
        key: &str,
        default: T,
        read: impl FnOnce(&Val<'a>) -> Option<T>,
    ) -> Option<T> {
        match self.get(key) {
            None => Some(default),
            Some(value) => read(&value),
        }
    }

    /// The field `key`; reports it when absent or null. `example` shows a
    /// valid value.
    fn required(&self, parser: &mut Parser<'_>, key: &str, example: &str) -> Option<Val<'a>> {
        match self.map.iter().find(|(k, _)| k.as_str() == key) {
            None => {
                let message = format!("missing field `{key}`; add it, such as {key}: {example}");
                parser.error(&self.path, self.pos, message);
                None
            }
            Some((key_node, node)) if is_null(node) => {
                let message = format!("has no value; write one such as {key}: {example}");
                parser.error(&join(&self.path, key), key_pos(key_node), message);
                None
            }
            Some(_) => self.get(key),
        }
    }
}

struct Parser<'s> {
    source: &'s str,
    errors: Vec<PlanError>,
}

impl<'s> Parser<'s> {
    fn error(&mut self, field: &str, pos: Pos, message: impl Into<String>) {
        self.errors.push(PlanError {
            field: field.to_owned(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        });
    }

    // ----- generic shapes -------------------------------------------------

    /// The value as a mapping whose keys are all among `valid`; reports
    /// every unknown key.
    fn mapping<'a>(&mut self, value: &Val<'a>, valid: &[&str]) -> Option<Map<'a>> {
        let Node::Mapping(map) = value.node else {
            let message = format!(
                "expected a mapping with fields {}, found {}",
                valid.join(", "),
                describe(value.node)
            );
            self.error(&value.path, value.pos, message);
            return None;
        };
        for key in map.keys() {
            let name = key.as_str();
            if !valid.contains(&name) {
                let hint = match suggest(name, valid) {
                    Some(close) => format!(" (did you mean `{close}`?)"),
                    None => String::new(),
                };
                let message = format!(
                    "unknown field `{name}`{hint}; valid fields here: {}",
                    valid.join(", ")
                );
                self.error(&join(&value.path, name), key_pos(key), message);
            }
        }
        Some(Map {
            map,
            path: value.path.clone(),
            pos: value.pos,
        })
    }

    /// The value as a list of items; `example` shows a valid list.
    fn list<'a>(&mut self, value: &Val<'a>, example: &str) -> Option<Vec<Val<'a>>> {
        match value.node {
            Node::Sequence(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, node)| Val::item(node, &value.path, index))
                    .collect(),
            ),
            other => {
                let message = format!(
                    "expected a list such as {example}, found {}",
                    describe(other)
                );
                self.error(&value.path, value.pos, message);
                None
            }
        }
    }

    /// The value as a scalar; `expected` says what would be valid.
    fn scalar<'a>(&mut self, value: &Val<'a>, expected: &str) -> Option<&'a MarkedScalarNode> {
        match value.node {
            Node::Scalar(scalar) => Some(scalar),
            other => {
                let message = format!("expected {expected}, found {}", describe(other));
                self.error(&value.path, value.pos, message);
                None
            }
        }
    }

    fn text<'a>(&mut self, value: &Val<'a>, expected: &str) -> Option<&'a str> {
        self.scalar(value, expected).map(|scalar| scalar.as_str())
    }

    /// The value's text, which must not be blank; `expected` says what would
    /// be valid.
    fn words<'a>(&mut self, value: &Val<'a>, expected: &str) -> Option<&'a str> {
        let text = self.text(value, expected)?;
        if text.trim().is_empty() {
            let message = format!("must not be empty; write {expected}");
            self.error(&value.path, value.pos, message);
            return None;
        }
        Some(text)
    }

    /// Whether `allowed` takes every character of `text` (the value's text);
    /// reports the first it refuses, at its own column: "`TEXT` contains C;
    /// RULE".
    fn only(
        &mut self,
        value: &Val<'_>,
        text: &str,
        allowed: impl Fn(char) -> bool,
        rule: &str,
    ) -> bool {
        let Some((offset, c)) = text.chars().enumerate().find(|&(_, c)| !allowed(c)) else {
            return true;
        };
        let pos = self.offset_pos(value, offset);
        let message = format!("`{}` contains {}; {rule}", escaped(text), show_char(c));
        self.error(&value.path, pos, message);
        false
    }

    /// The position of the character `offset` characters into a scalar's
    /// text, when the scalar is written on one line without escapes; else
    /// the scalar's own position.
    fn offset_pos(&self, value: &Val<'_>, offset: usize) -> Pos {
        let Node::Scalar(scalar) = value.node else {
            return value.pos;
        };
        let text = scalar.as_str();
        let mut raw = self.source.chars().skip(value.pos.index).peekable();
        let mut quote = 0;
        if !scalar.may_coerce() && matches!(raw.peek(), Some('"' | '\'')) {
            raw.next();
            quote = 1;
        }
        let verbatim = !text.contains('\n') && raw.take(text.chars().count()).eq(text.chars());
        if verbatim {
            Pos {
                line: value.pos.line,
                column: value.pos.column + quote + offset,
                index: value.pos.index + quote + offset,
            }
        } else {
            value.pos
        }
    }

    fn bool(&mut self, value: &Val<'_>) -> Option<bool> {
        let text = self.text(value, "true or false")?;
        match text {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                let message = format!("expected true or false, found {}", describe(value.node));
                self.error(&value.path, value.pos, message);
                None
            }
        }
    }

    /// A whole number of at least `min`.
    fn whole(&mut self, value: &Val<'_>, min: u64) -> Option<u64> {
        let expected = format!("a whole number such as {}", min.max(2));
        let text = self.text(value, &expected)?.trim();
        let number = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse::<u64>().ok()
        } else {
            None
        };
        match number {
            Some(number) if number >= min => Some(number),
            Some(_) => {
                let message = format!("must be at least {min}, found {text}");
                self.error(&value.path, value.pos, message);
                None
            }
            None => {
                let message = format!("expected {expected}, found {}", describe(value.node));
                self.error(&value.path, value.pos, message);
                None
            }
        }
    }

    /// A scalar parsed by a value type's own parser, whose error message
    /// says what would be valid.
    fn parsed<T, E: std::fmt::Display>(
        &mut self,
        value: &Val<'_>,
        expected: &str,
        parse: fn(&str) -> Result<T, E>,
    ) -> Option<T> {
        let text = self.text(value, expected)?;
        match parse(text) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                self.error(&value.path, value.pos, error.to_string());
                None
            }
        }
    }

    /// A duration; `positive` rejects `0s`.
    fn duration(&mut self, value: &Val<'_>, positive: bool) -> Option<Duration> {
        let duration = self.parsed(
            value,
            "a duration such as 30s, 15m, 2h or 1d",
            Duration::parse,
        )?;
        if positive && duration.is_zero() {
            let message = "must be longer than 0s; write a duration such as 30s, 15m, 2h or 1d";
            self.error(&value.path, value.pos, message);
            return None;
        }
        Some(duration)
    }

    /// `2` or `5%`.
    fn amount(&mut self, value: &Val<'_>) -> Option<Amount> {
        self.parsed(
            value,
            "a whole number such as 2, or a percentage such as 5%",
            Amount::parse,
        )
    }

    /// One of `choices`, written exactly.
    fn choice<T: Copy>(&mut self, value: &Val<'_>, choices: &[(&str, T)]) -> Option<T> {
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        let listed = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        };
        let text = self.text(value, &listed)?;
        if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(*choice);
        }
        let hint = match suggest(text, &names) {
            Some(close) => format!(" (did you mean `{close}`?)"),
            None => String::new(),
        };
        let message = format!("expected {listed}, found {}{hint}", describe(value.node));
        self.error(&value.path, value.pos, message);
        None
    }

    /// A name for a plan, component, stage or gate: it appears in URLs and
    /// ids, so only letters, digits, `.`, `_` and `-`.
    fn name(&mut self, value: &Val<'_>, example: &str) -> Option<String> {
        let expected = format!("a name such as {example}");
        let text = self.text(value, &expected)?;
        if text.is_empty() {
            let message = format!("must not be empty; write a name such as {example}");
            self.error(&value.path, value.pos, message);
            return None;
        }
        let rule =
            format!("a name may hold only letters, digits, `.`, `_` and `-`, such as {example}");
        if !self.only(
            value,
            text,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
            &rule,
        ) {
            return None;
        }
        if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            let message = format!(
                "`{text}` starts with `{}`; a name starts with a letter or digit, such as {example}",
                text.chars().next().unwrap_or('-')
            );
            self.error(&value.path, value.pos, message);
            return None;
        }
        let length = text.chars().count();
        if length > MAX_NAME_CHARS {
            let message = format!(
                "is {length} characters long; a name is at most {MAX_NAME_CHARS}, such as {example}"
            );
            self.error(&value.path, value.pos, message);
            return None;
        }
        Some(text.to_owned())
    }

    fn url(&mut self, value: &Val<'_>, example: &str) -> Option<String> {
        let expected = format!("an http:// or https:// url such as {example}");
        let text = self.text(value, &expected)?;
        let rest = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"));
        let problem = match rest {
            None => format!("expected {expected}, found {}", describe(value.node)),
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                format!(
                    "`{}` has no host; write a url such as {example}",
                    escaped(text)
                )
            }
            Some(_) => {
                let rule = format!("percent-encode it (a space is %20), as in {example}");
                let spaceless = self.only(value, text, |c| !c.is_whitespace(), &rule);
                return spaceless.then(|| text.to_owned());
            }
        };
        self.error(&value.path, value.pos, problem);
        None
    }

    // ----- the plan -------------------------------------------------------

    fn plan(&mut self, root: &Node) -> Option<Plan> {
        let root = Val {
            node: root,
            path: String::new(),
            pos: node_pos(root),
        };
        let map = self.mapping(&root, PLAN_FIELDS)?;

        let name = map
            .required(self, "name", "docker-17.03.1")
            .and_then(|v| self.name(&v, "docker-17.03.1"));
        let component = map
            .required(self, "component", "docker-engine")
            .and_then(|v| self.name(&v, "docker-engine"));
        let version = map
            .required(self, "version", "\"17.03.1\"")
            .and_then(|v| self.version(&v));
        let payload = map.get("payload").map(|v| payload_json(v.node));
        let selector = map.optional("selector", Selector::default(), |v| self.selector(v));
        let strategy = map.optional(
            "strategy",
            Strategy {
                spread: Vec::new(),
                min_per_stratum: DEFAULT_MIN_PER_STRATUM,
                salt: None,
            },
            |v| self.strategy(v),
        );
        let max_in_flight =
            map.optional("max_in_flight", None, |v| self.max_in_flight(v).map(Some));
        let stages = map
            .required(self, "stages", "[{ percent: 10 }, { percent: 100 }]")
            .and_then(|v| self.stages(&v));
        let gates = map.optional(
            "gates",
            Gates {
                max_failed: Amount::Count(0),
                host_timeout: DEFAULT_HOST_TIMEOUT,
                prometheus: Vec::new(),
                http: Vec::new(),
                compare: Vec::new(),
            },
            |v| self.gates(v),
        );
        let on_failure = map.optional("on_failure", OnFailure::default(), |v| {
            self.choice(
                v,
                &[
                    ("pause", OnFailure::Pause),
                    ("rollback", OnFailure::Rollback),
                ],
            )
        });
        let reversible = map.optional("reversible", true, |v| self.bool(v));
        let exclusive = map.optional("exclusive", true, |v| self.bool(v));
        let windows = map.optional("windows", Vec::new(), |v| self.windows(v));
        let after = self.after(&map, name.as_deref());

        Some(Plan {
            name: name?,
            component: component?,
            version: version?,
            payload,
            selector: selector?,
            strategy: strategy?,
            max_in_flight: max_in_flight?,
            stages: stages?,
            gates: gates?,
            on_failure: on_failure?,
            reversible: reversible?,
            exclusive: exclusive?,
            windows: windows?,
            after: after?,
        })
    }

    /// `after: NAME`: the rollout this one starts after. Unlike the other
    /// optional fields, an empty `after:` is a mistake (a name left out),
    /// not the default; and a plan cannot start after itself.
    fn after(&mut self, map: &Map<'_>, own_name: Option<&str>) -> Option<Option<After>> {
        const EXAMPLE: &str = "docker-17.03.1";
        let Some((key, node)) = map.map.iter().find(|(key, _)| key.as_str() == "after") else {
            return Some(None);
        };
        if is_null(node) {
            let message = format!(
                "has no value; name the rollout this one starts after, such as after: {EXAMPLE}, or leave the field out"
            );
            self.error("after", key_pos(key), message);
            return None;
        }
        let value = map.get("after")?;
        let name = self.name(&value, EXAMPLE)?;
        if own_name == Some(name.as_str()) {
            let message = format!(
                "`{name}` is this plan's own name; name another rollout, one that exists, such as after: {EXAMPLE}"
            );
            self.error(&value.path, value.pos, message);
            return None;
        }
        Some(Some(After {
            name,
            line: value.pos.line,
            column: value.pos.column,
        }))
    }

    /// The target version: kept exactly as written, so an unquoted `17.03`
    /// stays `17.03`.
    fn version(&mut self, value: &Val<'_>) -> Option<String> {
        let text = self.words(value, "a version such as \"17.03.1\"")?;
        let one_word = self.only(
            value,
            text,
            |c| !(c.is_whitespace() || c.is_control()),
            "a version is one word such as \"17.03.1\"",
        );
        one_word.then(|| text.to_owned())
    }

    fn selector(&mut self, value: &Val<'_>) -> Option<Selector> {
        let text = self.text(
            value,
            "a label selector string such as \"role notin (build-agent), site in (sto, lon)\"",
        )?;
        if text.trim().is_empty() {
            return Some(Selector::default());
        }
        match Selector::parse(text) {
            Ok(selector) => Some(selector),
            Err(error) => {
                let pos = self.offset_pos(value, error.column.saturating_sub(1));
                self.error(&value.path, pos, error.message);
                None
            }
        }
    }

    fn strategy(&mut self, value: &Val<'_>) -> Option<Strategy> {
        let map = self.mapping(value, STRATEGY_FIELDS)?;
        let spread = map.optional("spread", Vec::new(), |v| self.spread(v));
        let min_per_stratum = map.optional("min_per_stratum", DEFAULT_MIN_PER_STRATUM, |v| {
            self.whole(v, 0)
        });
        let salt = map.optional("salt", None, |v| match self.text(v, "a string such as \"2024-03\"") {
                Some("") => {
                    self.error(
                        &v.path,
                        v.pos,
                        "must not be empty; write a string such as \"2024-03\", or leave salt out to use the plan's name",
                    );
                    None
                }
                other => other.map(|salt| Some(salt.to_owned())),
            });
        Some(Strategy {
            spread: spread?,
            min_per_stratum: min_per_stratum?,
            salt: salt?,
        })
    }

    fn spread(&mut self, value: &Val<'_>) -> Option<Vec<String>> {
        let items = self.list(value, "[role, site]")?;
        let mut labels = Vec::with_capacity(items.len());
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut ok = true;
        for item in &items {
            let Some(label) = self.label_name(item) else {
                ok = false;
                continue;
            };
            if let Some(first) = seen.get(&label) {
                let message =
                    format!("`{label}` is already listed at {first}; list each label once");
                self.error(&item.path, item.pos, message);
                ok = false;
                continue;
            }
            seen.insert(label.clone(), item.path.clone());
            labels.push(label);
        }
        ok.then_some(labels)
    }

    fn label_name(&mut self, value: &Val<'_>) -> Option<String> {
        const EXAMPLE: &str = "a label name such as role or site";
        if is_null(value.node) {
            let message = format!("expected {EXAMPLE}, found nothing");
            self.error(&value.path, value.pos, message);
            return None;
        }
        let text = self.words(value, EXAMPLE)?;
        let valid = self.only(
            value,
            text,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'),
            "a label name holds only letters, digits, `.`, `_`, `-` and `/`, such as role",
        );
        valid.then(|| text.to_owned())
    }

    fn max_in_flight(&mut self, value: &Val<'_>) -> Option<Amount> {
        match self.amount(value)? {
            Amount::Count(0) => {
                self.error(
                    &value.path,
                    value.pos,
                    "must be at least 1; write a count of hosts such as 10 or a percentage such as 5%, or leave it out for no limit",
                );
                None
            }
            amount => Some(amount),
        }
    }

    fn stages(&mut self, value: &Val<'_>) -> Option<Vec<Stage>> {
        let items = self.list(value, "[{ percent: 10 }, { percent: 100 }]")?;
        if items.is_empty() {
            self.error(
                &value.path,
                value.pos,
                "expected at least one stage; the last one is { percent: 100 }",
            );
            return None;
        }
        let mut stages = Vec::with_capacity(items.len());
        let mut ok = true;
        // Name → path of the stage that first used it.
        let mut names: HashMap<String, String> = HashMap::new();
        // The previous stage's percentage, once one parsed.
        let mut previous: Option<(Percent, String)> = None;
        let last = items.len() - 1;
        for (index, item) in items.iter().enumerate() {
            let Some(map) = self.mapping(item, STAGE_FIELDS) else {
                ok = false;
                continue;
            };
            // The name, and whether the plan gave it.
            let name = map.optional("name", (format!("stage-{}", index + 1), None), |v| {
                self.name(v, "canary").map(|name| (name, Some(v.clone())))
            });
            if let Some((name, given)) = &name {
                if let Some(first) = names.get(name) {
                    let (path, pos, message) = match given {
                        Some(v) => (&v.path, v.pos, format!(
                            "stage name `{name}` is already used by {first}; give every stage its own name"
                        )),
                        None => (&item.path, item.pos, format!(
                            "this stage is named `{name}` by default, which {first} already uses; give one of them another name"
                        )),
                    };
                    self.error(path, pos, message);
                    ok = false;
                } else {
                    names.insert(name.clone(), item.path.clone());
                }
            }
            let percent = map
                .required(self, "percent", "10")
                .and_then(|v| self.percent(&v).map(|percent| (percent, v)));
            if let Some((percent, v)) = &percent {
                if let Some((before, before_path)) = &previous {
                    if percent < before {
                        let message = format!(
                            "{percent} is less than the {before} of {before_path}; stage percentages are cumulative and never decrease, so write at least {before}"
                        );
                        self.error(&v.path, v.pos, message);
                        ok = false;
                    }
                }
                if index == last && *percent != Percent::HUNDRED {
                    let message = format!(
                        "the last stage is at {percent}, but must be at 100: a rollout completes only once it covers every selected host; add a final stage {{ percent: 100 }}"
                    );
                    self.error(&v.path, v.pos, message);
                    ok = false;
                }
                previous = Some((*percent, item.path.clone()));
            }
            let bake = map.optional("bake", Duration::default(), |v| self.duration(v, false));
            let approve = map.optional("approve", false, |v| self.bool(v));
            match (name, percent, bake, approve) {
                (Some((name, _)), Some((percent, _)), Some(bake), Some(approve)) => {
                    stages.push(Stage {
                        name,
                        percent,
                        bake,
                        approve,
                    });
                }
                _ => ok = false,
            }
        }
        ok.then_some(stages)
    }

    /// `5`, `0.1` or `"5%"`.
    fn percent(&mut self, value: &Val<'_>) -> Option<Percent> {
        self.parsed(value, "a percentage such as 5, 0.1 or 25%", Percent::parse)
    }

    fn gates(&mut self, value: &Val<'_>) -> Option<Gates> {
        let map = self.mapping(value, GATES_FIELDS)?;
        let max_failed = map.optional("max_failed", Amount::Count(0), |v| self.amount(v));
        let host_timeout = map.optional("host_timeout", DEFAULT_HOST_TIMEOUT, |v| {
            self.duration(v, true)
        });
        // Gate name → path of the gate that first used it, across kinds.
        let mut names: HashMap<String, String> = HashMap::new();
        let prometheus = map.optional("prometheus", Vec::new(), |v| {
            self.gate_list(v, &mut names, Self::prometheus_gate)
        });
        let http = map.optional("http", Vec::new(), |v| {
            self.gate_list(v, &mut names, Self::http_gate)
        });
        let compare = map.optional("compare", Vec::new(), |v| {
            self.gate_list(v, &mut names, Self::compare_gate)
        });
        Some(Gates {
            max_failed: max_failed?,
            host_timeout: host_timeout?,
            prometheus: prometheus?,
            http: http?,
            compare: compare?,
        })
    }

    fn gate_list<T>(
        &mut self,
        value: &Val<'_>,
        names: &mut HashMap<String, String>,
        gate: fn(&mut Self, &Val<'_>, &mut HashMap<String, String>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.list(value, "[{ name: errors, url: \"http://…\" }]")?;
        let mut gates = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in &items {
            match gate(self, item, names) {
                Some(parsed) => gates.push(parsed),
                None => ok = false,
            }
        }
        ok.then_some(gates)
    }

    /// The fields shared by every external gate; `name` must be unique
    /// across all gates.
    fn gate_common(
        &mut self,
        map: &Map<'_>,
        names: &mut HashMap<String, String>,
        no_data: Option<NoData>,
    ) -> Option<GateCommon> {
        let name = map
            .required(self, "name", "error-rate")
            .and_then(|v| self.name(&v, "error-rate").map(|name| (name, v)));
        let name = match name {
            Some((name, v)) => match names.get(&name) {
                Some(first) => {
                    let message = format!(
                        "gate name `{name}` is already used by {first}; give every gate its own name"
                    );
                    self.error(&v.path, v.pos, message);
                    None
                }
                None => {
                    names.insert(name.clone(), map.path.clone());
                    Some(name)
                }
            },
            None => None,
        };
        let interval = map.optional("interval", DEFAULT_GATE_INTERVAL, |v| {
            self.duration(v, true)
        });
        let consecutive = map.optional("for", 1, |v| {
            self.whole(v, 1).and_then(|n| match u32::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    let message = format!("must be at most {}, found {n}", u32::MAX);
                    self.error(&v.path, v.pos, message);
                    None
                }
            })
        });
        let report_only = map.optional("report_only", false, |v| self.bool(v));
        Some(GateCommon {
            name: name?,
            interval: interval?,
            consecutive: consecutive?,
            no_data: no_data?,
            report_only: report_only?,
        })
    }

    fn no_data(&mut self, map: &Map<'_>) -> Option<NoData> {
        map.optional("no_data", NoData::default(), |v| {
            self.choice(
                v,
                &[
                    ("fail", NoData::Fail),
                    ("pause", NoData::Pause),
                    ("pass", NoData::Pass),
                ],
            )
        })
    }

    fn query(&mut self, map: &Map<'_>, example: &str) -> Option<String> {
        map.required(self, "query", example).and_then(|v| {
            self.words(&v, &format!("a promql query such as {example}"))
                .map(str::to_owned)
        })
    }

    fn prometheus_gate(
        &mut self,
        value: &Val<'_>,
        names: &mut HashMap<String, String>,
    ) -> Option<PrometheusGate> {
        let map = self.mapping(value, PROMETHEUS_FIELDS)?;
        let no_data = self.no_data(&map);
        let common = self.gate_common(&map, names, no_data);
        let url = map
            .required(self, "url", "http://prometheus:9090")
            .and_then(|v| self.url(&v, "http://prometheus:9090"));
        let query = self.query(&map, "sum(rate(errors_total[5m]))");
        let fail_if = map
            .required(self, "fail_if", "\"> 0.5\"")
            .and_then(|v| self.threshold(&v));
        Some(PrometheusGate {
            common: common?,
            url: url?,
            query: query?,
            fail_if: fail_if?,
        })
    }

    fn http_gate(
        &mut self,
        value: &Val<'_>,
        names: &mut HashMap<String, String>,
    ) -> Option<HttpGate> {
        let map = self.mapping(value, HTTP_FIELDS)?;
        // An http gate always answers (or times out, which fails), so it has
        // no `no_data` setting.
        let common = self.gate_common(&map, names, Some(NoData::Fail));
        let url = map
            .required(self, "url", "\"http://slo.example.net/ok\"")
            .and_then(|v| self.url(&v, "http://slo.example.net/ok"));
        let timeout = map.optional("timeout", DEFAULT_HTTP_TIMEOUT, |v| self.duration(v, true));
        Some(HttpGate {
            common: common?,
            url: url?,
            timeout: timeout?,
        })
    }

    fn compare_gate(
        &mut self,
        value: &Val<'_>,
        names: &mut HashMap<String, String>,
    ) -> Option<CompareGate> {
        let map = self.mapping(value, COMPARE_FIELDS)?;
        let no_data = self.no_data(&map);
        let common = self.gate_common(&map, names, no_data);
        let url = map
            .required(self, "url", "http://prometheus:9090")
            .and_then(|v| self.url(&v, "http://prometheus:9090"));
        let query = self.query(&map, "rate(container_restarts_total[5m])");
        let aggregate = map.optional("aggregate", Aggregate::default(), |v| {
            self.choice(
                v,
                &[
                    ("mean", Aggregate::Mean),
                    ("median", Aggregate::Median),
                    ("p90", Aggregate::P90),
                ],
            )
        });
        let min_hosts = map.optional("min_hosts", DEFAULT_MIN_HOSTS, |v| self.whole(v, 1));
        let judge = self.judge(&map);
        Some(CompareGate {
            common: common?,
            url: url?,
            query: query?,
            aggregate: aggregate?,
            judge: judge?,
            min_hosts: min_hosts?,
        })
    }

    /// `fail_if: "ratio > 1.5"` or `"diff > 0.2"`, or `test: mann-whitney`
    /// with its `confidence` and `direction`: exactly one of the two.
    fn judge(&mut self, map: &Map<'_>) -> Option<Judge> {
        let fail_if = map.get("fail_if");
        let test = map.get("test");
        let confidence = map.get("confidence");
        let direction = map.get("direction");
        if fail_if.is_some() {
            if let Some(test) = &test {
                let message = "is given with fail_if; judge by fail_if (a ratio or a difference) or by test: mann-whitney, not both";
                self.error(&test.path, test.pos, message);
            }
            for extra in [&confidence, &direction].into_iter().flatten() {
                let message = "goes with test: mann-whitney, not with fail_if; leave it out";
                self.error(&extra.path, extra.pos, message);
            }
        }
        if let Some(v) = fail_if {
            let judge = self.comparison_threshold(&v);
            return (test.is_none() && confidence.is_none() && direction.is_none())
                .then_some(judge)
                .flatten();
        }
        let Some(test) = test else {
            for extra in [&confidence, &direction].into_iter().flatten() {
                let message = "goes with test: mann-whitney; add it, or leave this out";
                self.error(&extra.path, extra.pos, message);
            }
            let message = "missing field `fail_if` or `test`; add one, such as fail_if: \"ratio > 1.5\" or test: mann-whitney";
            self.error(&map.path, map.pos, message);
            return None;
        };
        let kind = self.choice(&test, &[("mann-whitney", ())]);
        let confidence = map.optional("confidence", DEFAULT_CONFIDENCE, |v| self.confidence(v));
        let direction = map.optional("direction", Direction::default(), |v| {
            self.choice(
                v,
                &[
                    ("increase", Direction::Increase),
                    ("decrease", Direction::Decrease),
                    ("either", Direction::Either),
                ],
            )
        });
        kind?;
        Some(Judge::MannWhitney {
            confidence: confidence?,
            direction: direction?,
        })
    }

    /// A confidence strictly between 0 and 1, such as 0.98.
    fn confidence(&mut self, value: &Val<'_>) -> Option<f64> {
        const EXPECTED: &str = "a number between 0 and 1 (both excluded) such as 0.98";
        let text = self.text(value, EXPECTED)?;
        match parse_number(text.trim()) {
            Some(confidence) if confidence > 0.0 && confidence < 1.0 => Some(confidence),
            _ => {
                let message = format!("expected {EXPECTED}, found {}", describe(value.node));
                self.error(&value.path, value.pos, message);
                None
            }
        }
    }

    /// `"ratio > 1.5"` or `"diff > 0.2"`.
    fn comparison_threshold(&mut self, value: &Val<'_>) -> Option<Judge> {
        const EXPECTED: &str = "`ratio` or `diff`, a comparison and a number, such as \"ratio > 1.5\" or \"diff > 0.2\"";
        let text = self.text(value, EXPECTED)?;
        let trimmed = text.trim_start();
        let judge = if let Some(rest) = trimmed.strip_prefix("ratio") {
            parse_threshold(rest).map(Judge::Ratio)
        } else if let Some(rest) = trimmed.strip_prefix("diff") {
            parse_threshold(rest).map(Judge::Diff)
        } else {
            None
        };
        if judge.is_none() {
            let message = format!("expected {EXPECTED}, found {}", describe(value.node));
            self.error(&value.path, value.pos, message);
        }
        judge
    }

    /// `"> 0.5"`: a comparison and a number.
    fn threshold(&mut self, value: &Val<'_>) -> Option<Threshold> {
        const EXPECTED: &str =
            "a comparison and a number such as \"> 0.5\" (comparisons: >, >=, <, <=, ==, !=)";
        let text = self.text(value, EXPECTED)?;
        match parse_threshold(text) {
            Some(threshold) => Some(threshold),
            None => {
                let message = format!("expected {EXPECTED}, found {}", describe(value.node));
                self.error(&value.path, value.pos, message);
                None
            }
        }
    }

    fn windows(&mut self, value: &Val<'_>) -> Option<Vec<Window>> {
        match value.node {
            Node::Mapping(_) => self.window(value).map(|window| vec![window]),
            Node::Sequence(_) => {
                let items = self.list(value, "[{ days: mon-fri }]")?;
                let windows: Vec<Option<Window>> =
                    items.iter().map(|item| self.window(item)).collect();
                windows.into_iter().collect()
            }
            other => {
                let message = format!(
                    "expected a window such as {{ days: mon-thu, hours: \"09:00-16:00\", tz: Europe/Stockholm }}, or a list of them, found {}",
                    describe(other)
                );
                self.error(&value.path, value.pos, message);
                None
            }
        }
    }

    fn window(&mut self, value: &Val<'_>) -> Option<Window> {
        let map = self.mapping(value, WINDOW_FIELDS)?;
        let days_value = map.get("days");
        let hours_value = map.get("hours");
        if days_value.is_none() && hours_value.is_none() {
            self.error(
                &map.path,
                map.pos,
                "a window needs days, hours or both, such as { days: mon-thu, hours: \"09:00-16:00\" }",
            );
            return None;
        }
        let days = match &days_value {
            None => Some(Days::ALL),
            Some(v) => self.days(v),
        };
        let hours = match &hours_value {
            None => Some(None),
            Some(v) => self
                .window_field(
                    v,
                    "a range of local times such as \"09:00-16:00\"",
                    Window::parse_hours,
                )
                .map(Some),
        };
        let tz = map.optional("tz", (jiff::tz::TimeZone::UTC, "UTC".to_owned()), |v| {
            self.window_field(
                v,
                "an IANA time zone name such as Europe/Stockholm",
                Window::parse_tz,
            )
        });
        let (tz, tz_name) = tz?;
        Some(Window::new(days?, hours?, tz, tz_name))
    }

    /// `mon-thu`, or a list of such entries: `[mon, wed-fri]`.
    fn days(&mut self, value: &Val<'_>) -> Option<Days> {
        const EXPECTED: &str = "days such as mon-thu, mon,wed,fri or daily";
        if let Node::Sequence(_) = value.node {
            let items = self.list(value, "[mon, wed-fri]")?;
            let mut days: Option<Days> = None;
            let mut ok = !items.is_empty();
            if items.is_empty() {
                let message = format!("expected {EXPECTED}, found an empty list");
                self.error(&value.path, value.pos, message);
            }
            for item in &items {
                match self.window_field(item, EXPECTED, Days::parse) {
                    Some(parsed) => days = Some(days.map_or(parsed, |d| d.union(parsed))),
                    None => ok = false,
                }
            }
            return if ok { days } else { None };
        }
        self.window_field(value, EXPECTED, Days::parse)
    }

    /// A scalar parsed by one of [`Window`]'s parsers; an error points at
    /// the offending part of the text.
    fn window_field<T>(
        &mut self,
        value: &Val<'_>,
        expected: &str,
        parse: fn(&str) -> Result<T, WindowError>,
    ) -> Option<T> {
        let text = self.text(value, expected)?;
        match parse(text) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                let pos = self.offset_pos(value, error.offset);
                self.error(&value.path, pos, error.message);
                None
            }
        }
    }

    /// Reports a second YAML document, which the loader would silently
    /// ignore: a plan file holds exactly one. A line that starts with `---`
    /// or `...` is always a document marker in YAML.
    fn second_document(&mut self) {
        let mut content_seen = false;
        let mut ended = false;
        for (number, line) in self.source.lines().enumerate() {
            let marker = |m: &str| {
                line.strip_prefix(m)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
            };
            let trimmed = line.trim_start();
            let is_content = !(trimmed.is_empty() || trimmed.starts_with('#'));
            let second = (marker("---") && content_seen) || (ended && is_content && !marker("..."));
            if second {
                let pos = Pos {
                    line: number + 1,
                    column: 1,
                    index: 0,
                };
                self.error(
                    "",
                    pos,
                    "a plan file holds one yaml document; remove this and what follows, or move it to a file of its own",
                );
                return;
            }
            if marker("...") {
                ended = content_seen;
            } else if is_content && !line.starts_with('%') {
                content_seen = true;
            }
        }
    }
}

/// Parses `> 0.5`, `<= 3`, `!= 0`: a comparison, then a finite number.
fn parse_threshold(text: &str) -> Option<Threshold> {
    const OPS: [(&str, Comparison); 6] = [
        (">=", Comparison::GreaterOrEqual),
        ("<=", Comparison::LessOrEqual),
        ("==", Comparison::Equal),
        ("!=", Comparison::NotEqual),
        (">", Comparison::Greater),
        ("<", Comparison::Less),
    ];
    let text = text.trim();
    let (op, rest) = OPS
        .iter()
        .find_map(|(symbol, op)| text.strip_prefix(symbol).map(|rest| (*op, rest.trim())))?;
    let value = parse_number(rest)?;
    Some(Threshold { op, value })
}

/// A finite decimal number such as `0.5`, `-3` or `1e6` (not `inf` or `nan`).
fn parse_number(text: &str) -> Option<f64> {
    let numeric = text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !numeric {
        return None;
    }
    text.parse::<f64>().ok().filter(|value| value.is_finite())
}

/// Any YAML value as JSON. Quoted scalars stay strings; unquoted `true`,
/// `false`, `null` and numbers become JSON values; keys become strings.
fn payload_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Mapping(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.as_str().to_owned(), payload_json(value)))
                .collect(),
        ),
        Node::Sequence(items) => Value::Array(items.iter().map(payload_json).collect()),
        Node::Scalar(_) if is_null(node) => Value::Null,
        Node::Scalar(scalar) => {
            let text = scalar.as_str();
            if !scalar.may_coerce() {
                return Value::String(text.to_owned());
            }
            match text {
                "true" | "True" | "TRUE" => return Value::Bool(true),
                "false" | "False" | "FALSE" => return Value::Bool(false),
                _ => {}
            }
            if let Ok(integer) = text.parse::<i64>() {
                return Value::from(integer);
            }
            if let Ok(integer) = text.parse::<u64>() {
                return Value::from(integer);
            }
            parse_number(text)
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(text.to_owned()), Value::Number)
        }
    }
}

/// The valid name closest to `input`, if it is close enough to be a typo.
fn suggest<'v>(input: &str, valid: &[&'v str]) -> Option<&'v str> {
    let limit = match input.chars().count() {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    };
    valid
        .iter()
        .map(|candidate| (edit_distance(input, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, counting in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The single error for a file the YAML loader rejected.
fn load_error(source: &str, error: LoadError) -> PlanError {
    let at = |marker: &Marker, field: String, message: String| PlanError {
        field,
        line: marker.line(),
        column: marker.column(),
        message,
    };
    match error {
        LoadError::TopLevelMustBeMapping(marker) | LoadError::TopLevelMustBeSequence(marker) => at(
            &marker,
            String::new(),
            "expected a plan: a mapping with fields such as name, component, version and stages"
                .to_owned(),
        ),
        LoadError::UnexpectedAnchor(marker) => at(
            &marker,
            String::new(),
            "yaml anchors and aliases (&name, *name) are not supported; write the value out in full"
                .to_owned(),
        ),
        LoadError::MappingKeyMustBeScalar(marker) => at(
            &marker,
            String::new(),
            "a key must be a plain name such as percent, not a list or mapping".to_owned(),
        ),
        LoadError::UnexpectedTag(marker) => at(
            &marker,
            String::new(),
            "yaml tags (!tag) are not supported; quote a value that starts with `!`, such as fail_if: \"!= 0\""
                .to_owned(),
        ),
        LoadError::ScanError(marker, scan) => {
            let mut message = format!("invalid yaml: {}", scan.info());
            if let Some(hint) = block_indicator_hint(source, &marker) {
                message.push_str(hint);
            }
            at(&marker, String::new(), message)
        }
        LoadError::DuplicateKey(inner) => {
            let first = Pos::of(inner.prev_key.span().start());
            let key = inner.key.as_str();
            let field = duplicate_key_path(source, &inner.key).unwrap_or_default();
            let message = format!(
                "duplicate key `{key}`, first given at line {}, column {}; give each field once",
                first.line, first.column
            );
            at(
                &inner
                    .key
                    .span()
                    .start()
                    .copied()
                    .unwrap_or_else(|| Marker::new(0, 0, 1, 1)),
                field,
                message,
            )
        }
    }
}

/// A hint for the common mistake of an unquoted value starting with `>` or
/// `|`, which YAML reads as a block scalar: `fail_if: > 0.5`.
fn block_indicator_hint(source: &str, marker: &Marker) -> Option<&'static str> {
    let line = source.lines().nth(marker.line().checked_sub(1)?)?;
    let value = line.split_once(": ")?.1.trim_start();
    (value.starts_with('>') || value.starts_with('|'))
        .then_some("; quote a value that starts with `>` or `|`, such as fail_if: \"> 0.5\"")
}

/// The path of a duplicated key, found by loading the file again with
/// duplicates allowed (the first occurrence keeps its place).
fn duplicate_key_path(source: &str, duplicate: &MarkedScalarNode) -> Option<String> {
    let root = marked_yaml::parse_yaml_with_options(0, source, LoaderOptions::default()).ok()?;
    let target = duplicate.span().start().copied()?;
    fn find(node: &Node, path: &str, key: &str, target: Marker) -> Option<String> {
        match node {
            Node::Mapping(map) => {
                // The innermost mapping that spans the duplicate and has a
                // key of its name.
                if !span_contains(node, target) {
                    return None;
                }
                let inner = map
                    .iter()
                    .find_map(|(k, value)| find(value, &join(path, k.as_str()), key, target));
                inner.or_else(|| map.contains_key(key).then(|| join(path, key)))
            }
            Node::Sequence(items) => items
                .iter()
                .enumerate()
                .find_map(|(index, item)| find(item, &format!("{path}[{index}]"), key, target)),
            Node::Scalar(_) => None,
        }
    }
    find(&root, "", duplicate.as_str(), target)
}

/// Whether `target` lies within the node's span, when the loader recorded one.
fn span_contains(node: &Node, target: Marker) -> bool {
    let span = node.span();
    let after_start = span
        .start()
        .is_none_or(|start| start.character() <= target.character());
    let before_end = span
        .end()
        .is_none_or(|end| target.character() <= end.character());
    after_start && before_end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_typos_only() {
        assert_eq!(suggest("percnt", STAGE_FIELDS), Some("percent"));
        assert_eq!(suggest("bak", STAGE_FIELDS), Some("bake"));
        assert_eq!(suggest("aprove", STAGE_FIELDS), Some("approve"));
        assert_eq!(suggest("owner", PLAN_FIELDS), None);
        assert_eq!(suggest("x", STAGE_FIELDS), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("über", "uber"), 1);
    }

    #[test]
    fn thresholds() {
        for (text, shown) in [
            ("> 0.5", "> 0.5"),
            (">=1", ">= 1"),
            ("  <  -2 ", "< -2"),
            ("<= 1e3", "<= 1000"),
            ("== 0", "== 0"),
            ("!= 0", "!= 0"),
        ] {
            let threshold = parse_threshold(text).expect(text);
            assert_eq!(threshold.to_string(), shown, "{text}");
        }
        for text in ["0.5", "=> 1", "> ", "> inf", "> nan", "> 1 2", "~ 3"] {
            assert_eq!(parse_threshold(text), None, "{text}");
        }
    }

    #[test]
    fn payload_scalars_keep_their_quoting() {
        let root = marked_yaml::parse_yaml_with_options(
            0,
            "a: { n: 3, f: 0.25, t: true, z: ~, e:, q: \"3\", s: x, inf: .inf, neg: -7 }",
            LoaderOptions::default().prevent_coercion(true),
        )
        .expect("valid yaml");
        assert_eq!(
            payload_json(&root),
            serde_json::json!({ "a": {
                "n": 3, "f": 0.25, "t": true, "z": null, "e": null,
                "q": "3", "s": "x", "inf": ".inf", "neg": -7
            }})
        );
    }

    #[test]
    fn second_document_markers() {
        let errors = |source: &str| {
            let mut parser = Parser {
                source,
                errors: Vec::new(),
            };
            parser.second_document();
            parser.errors.iter().map(|e| e.line).collect::<Vec<usize>>()
        };
        assert_eq!(errors("---\nname: p\n"), Vec::<usize>::new());
        assert_eq!(
            errors("# c\n%YAML 1.2\n---\nname: p\n...\n"),
            Vec::<usize>::new()
        );
        assert_eq!(errors("name: p\n---\nname: q\n"), [2]);
        assert_eq!(errors("name: p\n...\n# end\nname: q\n"), [4]);
        assert_eq!(errors("text: |\n  ----\nname: p\n"), Vec::<usize>::new());
    }
}
