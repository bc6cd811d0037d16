//! Kubernetes label-selector syntax: `role notin (build-agent), site in (sto, lon)`.
//!
//! A selector is a comma-separated list of requirements, all of which must
//! hold: `key=value` (or `key==value`), `key!=value`, `key in (v1, v2)`,
//! `key notin (v1, v2)`, `key` (the label exists) and `!key` (it does not).
//! The semantics are Kubernetes': `!=` and `notin` also match hosts that lack
//! the key, while `=` and `in` require it. Keys and values are checked like
//! Kubernetes label keys and values, and every error names the column at
//! fault and what would be valid there.
//!
//! Parsing normalises: `==` becomes `=`, value lists become sorted sets, and
//! requirements are sorted (like Kubernetes does) and deduplicated. Two
//! selectors that differ only in spelling are therefore equal, and
//! [`Display`](fmt::Display) prints the canonical form, which parses back to
//! an equal selector.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::fleet::Labels;

/// Longest label name (the part after the optional prefix) and value.
const MAX_NAME_LEN: usize = 63;
/// Longest key prefix (a DNS subdomain).
const MAX_PREFIX_LEN: usize = 253;
const VALID_OPERATORS: &str = "valid operators are =, ==, !=, in, notin";
/// Longest token quoted back in an error message.
const MAX_SHOWN: usize = 40;

/// A parsed selector: every requirement must hold. Empty selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// Sorted and deduplicated, so that equal selectors compare equal.
    requirements: Vec<Requirement>,
}

/// One requirement on one label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Requirement {
    key: String,
    op: Operator,
}

/// What a requirement demands of its label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Operator {
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key=value`, `key==value`
    Equals(String),
    /// `key!=value`; also true when the key is absent.
    NotEquals(String),
    /// `key in (…)`; never empty.
    In(BTreeSet<String>),
    /// `key notin (…)`; never empty; also true when the key is absent.
    NotIn(BTreeSet<String>),
}

/// Why a selector did not parse: where (1-based column, in characters) and
/// what would be valid there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct SelectorError {
    pub column: usize,
    pub message: String,
}

impl Selector {
    /// Parses Kubernetes label-selector syntax; empty or blank input selects
    /// every host.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let requirements = Parser::new(input).selector()?;
        Ok(Selector::from_requirements(requirements))
    }

    /// Whether a host with these labels satisfies every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The first requirement (in canonical order) that a host's labels do
    /// not satisfy: its label key and the requirement as written
    /// canonically (`site in (lon, sto)`); `None`: they match. `label`
    /// gives a label's value by its key, so that labels kept in any map (a
    /// check-in's) are checked without building [`Labels`].
    pub fn unmet_by<'l>(&self, label: impl Fn(&str) -> Option<&'l str>) -> Option<(&str, String)> {
        self.requirements
            .iter()
            .find(|r| !r.holds_for(label(&r.key)))
            .map(|r| (r.key.as_str(), r.to_string()))
    }

    /// Whether the selector has no requirement, and so selects every host.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The label keys the selector mentions, sorted, each once.
    pub fn label_keys(&self) -> impl Iterator<Item = &str> {
        let mut previous: Option<&str> = None;
        self.requirements
            .iter()
            .map(|r| r.key.as_str())
            .filter(move |&key| previous.replace(key) != Some(key))
    }

    fn from_requirements(mut requirements: Vec<Requirement>) -> Selector {
        requirements.sort();
        requirements.dedup();
        Selector { requirements }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(input: &str) -> Result<Selector, SelectorError> {
        Selector::parse(input)
    }
}

/// The canonical form: requirements sorted and separated by `, `, `=` for
/// equality, value lists sorted; the empty selector prints as nothing.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        self.holds_for(labels.get(&self.key))
    }

    /// Whether the requirement holds for its label's `value` (`None`: the
    /// host lacks the label).
    fn holds_for(&self, value: Option<&str>) -> bool {
        match &self.op {
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Equals(wanted) => value == Some(wanted.as_str()),
            Operator::NotEquals(unwanted) => value != Some(unwanted.as_str()),
            Operator::In(values) => value.is_some_and(|v| values.contains(v)),
            Operator::NotIn(values) => !value.is_some_and(|v| values.contains(v)),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match &self.op {
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::Equals(value) => write!(f, "{key}={value}"),
            Operator::NotEquals(value) => write!(f, "{key}!={value}"),
            Operator::In(values) => write!(f, "{key} in ({})", ValueList(values)),
            Operator::NotIn(values) => write!(f, "{key} notin ({})", ValueList(values)),
        }
    }
}

/// `a, b, c`
struct ValueList<'a>(&'a BTreeSet<String>);

impl fmt::Display for ValueList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, value) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(value)?;
        }
        Ok(())
    }
}

/// Characters that make up operators, so that `=~`, `>` or `:` is reported
/// as an unknown operator rather than as part of the key.
fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>' | '~' | ':')
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | '(' | ')')
}

/// Characters of a key or word token; invalid ones are reported when the
/// token is checked, with their column.
fn is_key_char(c: char) -> bool {
    !is_separator(c) && !is_operator_char(c)
}

/// Characters of a value token: more liberal than keys so that `a:b` is
/// reported as an invalid character in a value.
fn is_value_char(c: char) -> bool {
    !is_separator(c) && c != '=' && c != '!'
}

/// Letters, digits, `-`, `_` and `.`: what label names and values consist of.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Quotes user text back readably: control characters escaped, long text cut.
fn shown(chars: &[char]) -> String {
    let mut out: String = chars
        .iter()
        .take(MAX_SHOWN)
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    if chars.len() > MAX_SHOWN {
        out.push('…');
    }
    out
}

fn error(pos: usize, message: impl Into<String>) -> SelectorError {
    SelectorError {
        column: pos + 1,
        message: message.into(),
    }
}

/// A recursive-descent parser over the input's characters; `pos` is a
/// character index, so columns count characters, not bytes.
#[derive(Debug)]
struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn new(input: &str) -> Parser {
        Parser {
            chars: input.chars().collect(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Consumes the run of characters satisfying `pred` and returns it.
    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> &[char] {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        &self.chars[start..self.pos]
    }

    /// What stands at `pos`, for "found …" in messages.
    fn found_at(&self, pos: usize) -> String {
        let rest = self.chars.get(pos..).unwrap_or_default();
        let Some(&first) = rest.first() else {
            return "end of selector".to_owned();
        };
        let pred: fn(char) -> bool = if is_key_char(first) {
            is_key_char
        } else if is_operator_char(first) {
            is_operator_char
        } else {
            return shown(&[first]);
        };
        let len = rest.iter().take_while(|&&c| pred(c)).count();
        shown(&rest[..len])
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        self.skip_whitespace();
        if self.peek().is_none() {
            return Ok(requirements);
        }
        loop {
            let requirement = self.requirement()?;
            self.skip_whitespace();
            match self.peek() {
                None => {
                    requirements.push(requirement);
                    return Ok(requirements);
                }
                Some(',') => {
                    let comma = self.pos;
                    self.pos += 1;
                    self.skip_whitespace();
                    if self.peek().is_none() {
                        return Err(error(
                            comma,
                            "trailing comma; remove it or add a requirement after it, such as site=sto",
                        ));
                    }
                    requirements.push(requirement);
                }
                Some('=') if requirement.op == Operator::DoesNotExist => {
                    let key = &requirement.key;
                    return Err(error(
                        self.pos,
                        format!(
                            "expected , or end of selector after !{key}; to exclude one value, write {key}!=value"
                        ),
                    ));
                }
                Some(_) => {
                    return Err(error(
                        self.pos,
                        format!(
                            "expected , or end of selector after {requirement}, found {}; separate requirements with ,",
                            self.found_at(self.pos)
                        ),
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Some('!') {
            self.pos += 1;
            self.skip_whitespace();
            let key = self.key("expected a label key after !, as in !canary")?;
            return Ok(Requirement {
                key,
                op: Operator::DoesNotExist,
            });
        }
        let key = self.key("expected a label key, such as role or site")?;
        self.skip_whitespace();
        let start = self.pos;
        let op = match self.peek() {
            None | Some(',') => Operator::Exists,
            Some(c) if is_operator_char(c) => {
                let op: String = self.take_while(is_operator_char).iter().collect();
                let not = match op.as_str() {
                    "=" | "==" => false,
                    "!=" => true,
                    _ => {
                        return Err(error(
                            start,
                            format!(
                                "unknown operator {}; {VALID_OPERATORS}",
                                self.found_at(start)
                            ),
                        ))
                    }
                };
                let value = self.single_value(&key, &op)?;
                if not {
                    Operator::NotEquals(value)
                } else {
                    Operator::Equals(value)
                }
            }
            Some(_) => {
                let word: String = self.take_while(is_key_char).iter().collect();
                match word.as_str() {
                    "in" => Operator::In(self.value_list("in", "site in (sto, lon)")?),
                    "notin" => {
                        Operator::NotIn(self.value_list("notin", "role notin (build-agent, ci)")?)
                    }
                    _ => {
                        return Err(error(
                            start,
                            format!(
                            "expected an operator or , after {key}, found {}; {VALID_OPERATORS}",
                            self.found_at(start)
                        ),
                        ))
                    }
                }
            }
        };
        Ok(Requirement { key, op })
    }

    /// A label key at the current position, checked like Kubernetes does.
    fn key(&mut self, if_missing: &str) -> Result<String, SelectorError> {
        let start = self.pos;
        let key = self.take_while(is_key_char);
        if key.is_empty() {
            return Err(error(start, if_missing));
        }
        check_key(start, key)?;
        Ok(key.iter().collect())
    }

    /// The value after `=`, `==` or `!=`; may be empty.
    fn single_value(&mut self, key: &str, op: &str) -> Result<String, SelectorError> {
        self.skip_whitespace();
        if self.peek() == Some('(') {
            return Err(error(
                self.pos,
                format!(
                    "expected a value after {op}; to match a list of values, write {key} in (a, b)"
                ),
            ));
        }
        let start = self.pos;
        let value = self.take_while(is_value_char);
        check_value(start, value)?;
        Ok(value.iter().collect())
    }

    /// `( v1, v2, … )` after `in` or `notin`: at least one value, none empty.
    fn value_list(&mut self, op: &str, example: &str) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_whitespace();
        if self.peek() != Some('(') {
            return Err(error(
                self.pos,
                format!("expected ( after {op}, as in {example}"),
            ));
        }
        self.pos += 1;
        let unclosed = |pos| error(pos, "unclosed value list; close it with )");
        let mut values = BTreeSet::new();
        loop {
            self.skip_whitespace();
            let start = self.pos;
            match self.peek() {
                None => return Err(unclosed(start)),
                Some(')') if values.is_empty() => {
                    return Err(error(
                        start,
                        format!("empty value list; list at least one value, as in {example}"),
                    ))
                }
                Some(')') => {
                    return Err(error(
                        start,
                        "expected a value after ,; remove the , before )",
                    ))
                }
                Some(',') => return Err(error(start, "expected a value before ,")),
                Some(_) => {}
            }
            let value = self.take_while(is_value_char);
            if value.is_empty() {
                return Err(error(
                    start,
                    format!(
                        "expected a value, such as sto, found {}",
                        self.found_at(start)
                    ),
                ));
            }
            check_value(start, value)?;
            let value: String = value.iter().collect();
            self.skip_whitespace();
            match self.peek() {
                None => return Err(unclosed(self.pos)),
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    values.insert(value);
                    return Ok(values);
                }
                Some(_) => {
                    return Err(error(
                        self.pos,
                        format!(
                            "expected , or ) after value {value}, found {}",
                            self.found_at(self.pos)
                        ),
                    ))
                }
            }
            values.insert(value);
        }
    }
}

/// A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a
/// name. `start` is the key's character index in the input.
fn check_key(start: usize, key: &[char]) -> Result<(), SelectorError> {
    let mut slashes = key.iter().enumerate().filter(|&(_, &c)| c == '/');
    match (slashes.next(), slashes.next()) {
        (None, _) => check_name(start, key, key),
        (Some((_, _)), Some((second, _))) => Err(error(
            start + second,
            format!(
                "invalid character / in label key {}; a key has at most one /, after its prefix, as in example.com/role",
                shown(key)
            ),
        )),
        (Some((slash, _)), None) => {
            let (prefix, name) = (&key[..slash], &key[slash + 1..]);
            check_prefix(start, prefix)?;
            if name.is_empty() {
                let prefix = shown(prefix);
                return Err(error(
                    start + slash + 1,
                    format!("expected a label name after {prefix}/, as in {prefix}/role"),
                ));
            }
            check_name(start + slash + 1, name, key)
        }
    }
}

/// The name part of a key: letters, digits, `-_.`, alphanumeric at both
/// ends, at most 63 characters.
fn check_name(start: usize, name: &[char], key: &[char]) -> Result<(), SelectorError> {
    check_word(start, name, key, &KEY_NAME)
}

/// What a part of a label key or value may hold, and how errors name it.
struct Rules {
    /// Before the text: "label key".
    noun: &'static str,
    allowed: fn(char) -> bool,
    /// What it may hold, after an invalid character.
    hint: &'static str,
    /// Before its length: "label key name".
    length: &'static str,
    max: usize,
}

const KEY_NAME: Rules = Rules {
    noun: "label key",
    allowed: is_name_char,
    hint: "keys use letters, digits, -, _ and ., with an optional prefix such as example.com/",
    length: "label key name",
    max: MAX_NAME_LEN,
};

const PREFIX: Rules = Rules {
    noun: "key prefix",
    allowed: |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.',
    hint: "a prefix is a DNS name of lowercase letters, digits, - and ., such as example.com",
    length: "key prefix",
    max: MAX_PREFIX_LEN,
};

const VALUE: Rules = Rules {
    noun: "value",
    allowed: is_name_char,
    hint: "values use letters, digits, -, _ and ., such as build-agent",
    length: "value",
    max: MAX_NAME_LEN,
};

impl Rules {
    /// Refuses the first character of `text` (at `start`) not allowed;
    /// the error quotes `whole`, the text it is part of.
    fn chars(&self, start: usize, text: &[char], whole: &[char]) -> Result<(), SelectorError> {
        match text.iter().position(|&c| !(self.allowed)(c)) {
            Some(i) => Err(error(
                start + i,
                format!(
                    "invalid character {} in {} {}; {}",
                    shown(&text[i..=i]),
                    self.noun,
                    shown(whole),
                    self.hint
                ),
            )),
            None => Ok(()),
        }
    }

    /// Refuses `text` (at `start`) longer than allowed.
    fn length(&self, start: usize, text: &[char]) -> Result<(), SelectorError> {
        if text.len() > self.max {
            return Err(error(
                start,
                format!(
                    "{} is {} characters long; at most {} are allowed",
                    self.length,
                    text.len(),
                    self.max
                ),
            ));
        }
        Ok(())
    }
}

/// A label name or value (`word`, at `start`, quoted in errors as `whole`):
/// letters, digits, `-_.`, alphanumeric at both ends, at most 63
/// characters.
fn check_word(
    start: usize,
    word: &[char],
    whole: &[char],
    rules: &Rules,
) -> Result<(), SelectorError> {
    rules.chars(start, word, whole)?;
    if let Some(i) = ends_not_alphanumeric(word) {
        return Err(error(
            start + i,
            format!(
                "{} {} must begin and end with a letter or digit",
                rules.noun,
                shown(whole)
            ),
        ));
    }
    rules.length(start, word)
}

/// A key prefix: a DNS subdomain of lowercase letters, digits, `-` and `.`,
/// each dot-separated part alphanumeric at both ends, at most 253 characters.
fn check_prefix(start: usize, prefix: &[char]) -> Result<(), SelectorError> {
    if prefix.is_empty() {
        return Err(error(
            start,
            "expected a key prefix before /, such as example.com/role",
        ));
    }
    PREFIX.chars(start, prefix, prefix)?;
    let mut part_start = 0;
    for part in prefix.split(|&c| c == '.') {
        let bad = if part.is_empty() {
            Some(0)
        } else {
            ends_not_alphanumeric(part)
        };
        if let Some(i) = bad {
            return Err(error(
                start + part_start + i,
                format!(
                    "key prefix {} is not a DNS name; each part between dots must begin and end with a letter or digit",
                    shown(prefix)
                ),
            ));
        }
        part_start += part.len() + 1;
    }
    PREFIX.length(start, prefix)
}

/// A label value: empty, or like a name (letters, digits, `-_.`,
/// alphanumeric at both ends, at most 63 characters).
fn check_value(start: usize, value: &[char]) -> Result<(), SelectorError> {
    check_word(start, value, value, &VALUE)
}

/// The index of the first or last character if it is not an ASCII letter or
/// digit.
fn ends_not_alphanumeric(chars: &[char]) -> Option<usize> {
    let (first, last) = (chars.first()?, chars.last()?);
    if !first.is_ascii_alphanumeric() {
        Some(0)
    } else if !last.is_ascii_alphanumeric() {
        Some(chars.len() - 1)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `"role=web,site=sto"` → labels; `"canary="` is an empty value.
    fn labels(spec: &str) -> Labels {
        spec.split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').expect("label as key=value");
                (key.to_owned(), value.to_owned())
            })
            .collect()
    }

    const FLEET: &[(&str, &str)] = &[
        ("a", "role=web,site=sto,pool=a"),
        ("b", "role=web,site=lon"),
        ("c", "role=build-agent,site=sto"),
        ("d", "role=db,site=ash,canary=,example.com/tier=gold"),
        ("e", ""),
    ];

    /// Each selector and exactly the hosts of `FLEET` it matches.
    const MATCHES: &[(&str, &str)] = &[
        ("", "a b c d e"),
        (" \t\n ", "a b c d e"),
        ("role=web", "a b"),
        ("role==web", "a b"),
        ("role!=web", "c d e"),
        ("role in (web, db)", "a b d"),
        ("role in (web)", "a b"),
        ("role notin (build-agent)", "a b d e"),
        ("role notin (web,db,build-agent)", "e"),
        ("site", "a b c d"),
        ("!site", "e"),
        ("! pool", "b c d e"),
        ("pool, !pool", ""),
        ("canary=", "d"),
        ("canary!=", "a b c e"),
        ("example.com/tier=gold", "d"),
        ("example.com/tier", "d"),
        ("tier", ""),
        ("  role = web ,site= sto ", "a"),
        ("role=web,!pool", "b"),
        ("role in(web),site notin(lon)", "a"),
        ("role\tin\t(web)", "a b"),
        ("role notin (build-agent), site in (sto, lon, ash)", "a b d"),
        ("site in (sto, lon), role != web", "c"),
        ("in in (a)", ""),
    ];

    #[test]
    fn unmet_names_the_first_requirement_labels_break() {
        fn unmet(selector: &Selector, spec: &str) -> Option<(String, String)> {
            let labels = labels(spec);
            selector
                .unmet_by(|key| labels.get(key))
                .map(|(key, requirement)| (key.to_owned(), requirement))
        }
        let selector = Selector::parse("site in (sto, lon), role!=build").expect("valid");
        assert_eq!(unmet(&selector, "site=sto,role=web"), None);
        assert_eq!(
            unmet(&selector, "site=par,role=web"),
            Some(("site".to_owned(), "site in (lon, sto)".to_owned()))
        );
        assert_eq!(
            unmet(&selector, "site=lon,role=build"),
            Some(("role".to_owned(), "role!=build".to_owned()))
        );
        assert_eq!(
            unmet(&selector, "role=web"),
            Some(("site".to_owned(), "site in (lon, sto)".to_owned())),
            "a missing label"
        );
        assert_eq!(unmet(&Selector::default(), ""), None);
    }

    #[test]
    fn matches_exactly_the_expected_hosts() {
        for &(input, expected) in MATCHES {
            let selector = Selector::parse(input).expect("valid selector");
            let matched: Vec<&str> = FLEET
                .iter()
                .filter(|(_, spec)| selector.matches(&labels(spec)))
                .map(|&(id, _)| id)
                .collect();
            assert_eq!(matched.join(" "), expected, "selector {input:?}");
            let canonical = selector.to_string();
            assert_eq!(
                Selector::parse(&canonical).as_ref(),
                Ok(&selector),
                "canonical form {canonical:?} of {input:?}"
            );
        }
    }

    #[test]
    fn displays_the_canonical_form() {
        let cases = [
            ("", ""),
            ("  ", ""),
            ("role==web", "role=web"),
            ("role = web", "role=web"),
            ("role != web", "role!=web"),
            ("canary=", "canary="),
            ("canary !=", "canary!="),
            ("! pool", "!pool"),
            (
                " site in ( sto,lon , sto ) , role notin(ci)",
                "role notin (ci), site in (lon, sto)",
            ),
            ("b=1, a=2, b==1", "a=2, b=1"),
            ("!a, a", "a, !a"),
            ("example.com/tier in (gold)", "example.com/tier in (gold)"),
        ];
        for (input, expected) in cases {
            let selector: Selector = input.parse().expect("valid selector");
            assert_eq!(selector.to_string(), expected, "selector {input:?}");
        }
    }

    #[test]
    fn spelling_does_not_change_equality() {
        let a = Selector::parse("site in (lon, sto), role==web").expect("valid");
        let b = Selector::parse("role=web,site in(sto,lon,sto)").expect("valid");
        assert_eq!(a, b);
    }

    #[test]
    fn is_empty_and_label_keys() {
        assert!(Selector::default().is_empty());
        assert!(Selector::parse(" ").expect("valid").is_empty());
        assert_eq!(Selector::parse(" ").expect("valid"), Selector::default());
        let selector =
            Selector::parse("site in (sto), role, !role, a.b/c!=d, role=x").expect("valid");
        assert!(!selector.is_empty());
        assert_eq!(
            selector.label_keys().collect::<Vec<_>>(),
            ["a.b/c", "role", "site"]
        );
    }

    #[test]
    fn rejects_invalid_selectors_saying_where_and_what_is_valid() {
        let long_name = "r".repeat(64);
        let long_key = format!("{long_name}=x");
        let long_value = format!("role={}", "v".repeat(64));
        let long_prefix = format!("{}.com/role", "a".repeat(250));
        let cases: Vec<(&str, &str)> = vec![
            ("=web", "column 1: expected a label key, such as role or site"),
            (
                "role notin build-agent",
                "column 12: expected ( after notin, as in role notin (build-agent, ci)",
            ),
            (
                "role in",
                "column 8: expected ( after in, as in site in (sto, lon)",
            ),
            (
                "site in (sto, lon",
                "column 18: unclosed value list; close it with )",
            ),
            ("site in (", "column 10: unclosed value list; close it with )"),
            (
                "role =~ web",
                "column 6: unknown operator =~; valid operators are =, ==, !=, in, notin",
            ),
            (
                "role: web",
                "column 5: unknown operator :; valid operators are =, ==, !=, in, notin",
            ),
            (
                "role===web",
                "column 5: unknown operator ===; valid operators are =, ==, !=, in, notin",
            ),
            (
                "role web",
                "column 6: expected an operator or , after role, found web; valid operators are =, ==, !=, in, notin",
            ),
            (
                "role IN (web)",
                "column 6: expected an operator or , after role, found IN; valid operators are =, ==, !=, in, notin",
            ),
            (
                "role=web site=sto",
                "column 10: expected , or end of selector after role=web, found site; separate requirements with ,",
            ),
            (
                "role in (web) site",
                "column 15: expected , or end of selector after role in (web), found site; separate requirements with ,",
            ),
            (
                "role=web,",
                "column 9: trailing comma; remove it or add a requirement after it, such as site=sto",
            ),
            (
                "role=web,,site=sto",
                "column 10: expected a label key, such as role or site",
            ),
            (",", "column 1: expected a label key, such as role or site"),
            (
                "role in ()",
                "column 10: empty value list; list at least one value, as in site in (sto, lon)",
            ),
            (
                "role in (web,)",
                "column 14: expected a value after ,; remove the , before )",
            ),
            ("role in (web,,db)", "column 14: expected a value before ,"),
            (
                "role in (web, (db))",
                "column 15: expected a value, such as sto, found (",
            ),
            (
                "role in (web db)",
                "column 14: expected , or ) after value web, found db",
            ),
            (
                "site in (sto, lon, role=web)",
                "column 24: expected , or ) after value role, found =",
            ),
            (
                "role=(web)",
                "column 6: expected a value after =; to match a list of values, write role in (a, b)",
            ),
            ("!", "column 2: expected a label key after !, as in !canary"),
            ("!!role", "column 2: expected a label key after !, as in !canary"),
            (
                "!role=web",
                "column 6: expected , or end of selector after !role; to exclude one value, write role!=value",
            ),
            (
                "ro$le=web",
                "column 3: invalid character $ in label key ro$le; keys use letters, digits, -, _ and ., with an optional prefix such as example.com/",
            ),
            (
                "rôle=web",
                "column 2: invalid character ô in label key rôle; keys use letters, digits, -, _ and ., with an optional prefix such as example.com/",
            ),
            (
                "-role",
                "column 1: label key -role must begin and end with a letter or digit",
            ),
            (
                "example.com/role_=x",
                "column 17: label key example.com/role_ must begin and end with a letter or digit",
            ),
            (
                &long_key,
                "column 1: label key name is 64 characters long; at most 63 are allowed",
            ),
            (
                "a/b/c",
                "column 4: invalid character / in label key a/b/c; a key has at most one /, after its prefix, as in example.com/role",
            ),
            (
                "/role",
                "column 1: expected a key prefix before /, such as example.com/role",
            ),
            (
                "example.com/=x",
                "column 13: expected a label name after example.com/, as in example.com/role",
            ),
            (
                "Example.com/role=x",
                "column 1: invalid character E in key prefix Example.com; a prefix is a DNS name of lowercase letters, digits, - and ., such as example.com",
            ),
            (
                "example..com/role",
                "column 9: key prefix example..com is not a DNS name; each part between dots must begin and end with a letter or digit",
            ),
            (
                "example.com-/role",
                "column 12: key prefix example.com- is not a DNS name; each part between dots must begin and end with a letter or digit",
            ),
            (
                &long_prefix,
                "column 1: key prefix is 254 characters long; at most 253 are allowed",
            ),
            (
                "role=web-",
                "column 9: value web- must begin and end with a letter or digit",
            ),
            (
                "image=nginx:1.2",
                "column 12: invalid character : in value nginx:1.2; values use letters, digits, -, _ and ., such as build-agent",
            ),
            (
                "role=\"web\"",
                "column 6: invalid character \" in value \"web\"; values use letters, digits, -, _ and ., such as build-agent",
            ),
            (
                &long_value,
                "column 6: value is 64 characters long; at most 63 are allowed",
            ),
            (
                "role in (_web)",
                "column 10: value _web must begin and end with a letter or digit",
            ),
            (
                // Columns count characters: the no-break spaces are two bytes each.
                "role\u{a0}in\u{a0}(web",
                "column 13: unclosed value list; close it with )",
            ),
            (
                "role=a\u{7}b",
                "column 7: invalid character \\u{7} in value a\\u{7}b; values use letters, digits, -, _ and ., such as build-agent",
            ),
        ];
        for (input, expected) in cases {
            let error = Selector::parse(input).expect_err("invalid selector");
            assert_eq!(error.to_string(), expected, "selector {input:?}");
        }
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?"
    }

    fn key() -> impl Strategy<Value = String> {
        let prefix = "[a-z0-9]([-a-z0-9]{0,4}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,4}[a-z0-9])?){0,2}";
        (proptest::option::of(prefix), name()).prop_map(|(prefix, name)| match prefix {
            Some(prefix) => format!("{prefix}/{name}"),
            None => name,
        })
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![1 => Just(String::new()), 4 => name()]
    }

    fn values() -> impl Strategy<Value = BTreeSet<String>> {
        proptest::collection::btree_set(name(), 1..4)
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        let op = prop_oneof![
            Just(Operator::Exists),
            Just(Operator::DoesNotExist),
            value().prop_map(Operator::Equals),
            value().prop_map(Operator::NotEquals),
            values().prop_map(Operator::In),
            values().prop_map(Operator::NotIn),
        ];
        (key(), op).prop_map(|(key, op)| Requirement { key, op })
    }

    fn selector() -> impl Strategy<Value = Selector> {
        proptest::collection::vec(requirement(), 0..5).prop_map(Selector::from_requirements)
    }

    proptest! {
        #[test]
        fn display_parses_back_to_an_equal_selector(selector in selector()) {
            let text = selector.to_string();
            prop_assert_eq!(Selector::parse(&text), Ok(selector), "{}", text);
        }

        #[test]
        fn parse_never_panics_on_arbitrary_strings(input in any::<String>()) {
            check_arbitrary(&input)?;
        }

        #[test]
        fn parse_never_panics_on_selector_like_strings(
            input in "[a-zA-Z0-9 ,=!()/._:~<>-]{0,40}|(in|notin|role|!| |,|=|\\(|\\)|a/b|-){0,20}"
        ) {
            check_arbitrary(&input)?;
        }
    }

    /// Whatever the input: errors point inside it (or just past its end),
    /// and anything accepted round-trips through its canonical form.
    fn check_arbitrary(input: &str) -> Result<(), TestCaseError> {
        match Selector::parse(input) {
            Ok(selector) => {
                let text = selector.to_string();
                prop_assert_eq!(Selector::parse(&text), Ok(selector), "{}", text);
            }
            Err(error) => {
                prop_assert!(error.column >= 1);
                prop_assert!(error.column <= input.chars().count() + 1);
                prop_assert!(!error.message.is_empty());
                prop_assert!(!error.message.ends_with('.'));
            }
        }
        Ok(())
    }
}
