//! Output shared by the operator commands: `--output text|json`, aligned
//! tables, and the small formats people read (durations, percentages, "3m
//! ago", an event's fields).

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::exit::Failure;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Aligned, for people
    #[default]
    Text,
    /// One JSON document on stdout, for scripts
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Print for people (text) or for scripts (json)
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text, value_name = "FORMAT")]
    pub output: Format,
}

impl OutputArgs {
    pub fn json(&self) -> bool {
        self.output == Format::Json
    }

    /// Prints a command's answer: `value` as JSON with `--output json`, else
    /// the text `text` makes of it.
    pub fn print<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce(&T) -> String,
    ) -> Result<(), Failure> {
        if self.json() {
            print_json(value)
        } else {
            print_text(&text(value))
        }
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).context("encoding the output as JSON")?;
    print_text(&format!("{text}\n"))
}

/// Writes `text` to stdout as is; a closed pipe (`| head`) is not an error
/// worth a message.
pub fn print_text(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(Failure::Failed(
            anyhow::Error::new(error).context("writing to stdout"),
        )),
    }
}

/// How a column lines up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table whose columns are padded to their widest cell, two spaces apart;
/// the last column is not padded, so lines carry no trailing spaces.
#[derive(Debug)]
pub struct Table {
    headers: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            align: vec![Align::Left; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Right-aligns the named columns (counts read better that way).
    pub fn right(mut self, columns: &[usize]) -> Table {
        for &column in columns {
            if let Some(align) = self.align.get_mut(column) {
                *align = Align::Right;
            }
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        self.render_indented("")
    }

    /// Renders every line prefixed with `indent`.
    pub fn render_indented(&self, indent: &str) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate().take(columns) {
                widths[column] = widths[column].max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::from(indent);
            for (column, (&column_width, &align)) in widths.iter().zip(&self.align).enumerate() {
                let cell = row.get(column).map(String::as_str).unwrap_or("");
                let pad = column_width.saturating_sub(width(cell));
                let last = column + 1 == columns;
                if column > 0 {
                    line.push_str("  ");
                }
                match align {
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                    Align::Left => {
                        line.push_str(cell);
                        if !last {
                            line.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Display width, counting each character as one column (ids, labels and
/// versions are ASCII in practice).
fn width(text: &str) -> usize {
    text.chars().count()
}

/// `90` → `1m30s`, `7200` → `2h`, `93784` → `1d2h3m` (seconds dropped past
/// an hour, minutes past a few days).
pub fn duration(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".to_owned();
    }
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    let mut out = String::new();
    for (value, unit, shown) in [
        (days, "d", true),
        (hours, "h", true),
        (minutes, "m", days < 3),
        (secs, "s", seconds < 3600),
    ] {
        if value > 0 && shown {
            let _ = write!(out, "{value}{unit}");
        }
    }
    if out.is_empty() {
        // e.g. exactly 3 days and some minutes: keep the largest unit.
        let _ = write!(out, "{days}d");
    }
    out
}

/// `10` → `10%`, `0.1` → `0.1%`, `12.5` → `12.5%`.
pub fn percent(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Seconds from `now` to an RFC 3339 time (negative when it is past).
pub fn seconds_until(at: &str, now: jiff::Timestamp) -> Option<i64> {
    let at: jiff::Timestamp = at.parse().ok()?;
    Some(at.as_second() - now.as_second())
}

/// `3m ago`, `in 1h12m`, `just now`; the raw text when it does not parse.
pub fn relative(at: &str, now: jiff::Timestamp) -> String {
    match seconds_until(at, now) {
        None => at.to_owned(),
        Some(delta) if delta.abs() < 2 => "just now".to_owned(),
        Some(delta) if delta < 0 => format!("{} ago", duration(delta.unsigned_abs())),
        Some(delta) => format!("in {}", duration(delta.unsigned_abs())),
    }
}

/// An RFC 3339 time to the second, in UTC: `2024-06-01 10:00:00Z`.
pub fn timestamp(at: &str) -> String {
    match at.parse::<jiff::Timestamp>() {
        Ok(time) => time.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
        Err(_) => at.to_owned(),
    }
}

/// The time of day of an RFC 3339 time, in UTC: `10:00:00Z`.
pub fn clock(at: &str) -> String {
    match at.parse::<jiff::Timestamp>() {
        Ok(time) => time.strftime("%H:%M:%SZ").to_string(),
        Err(_) => at.to_owned(),
    }
}

/// An event's `data` as `key=value` pairs, strings unquoted when they have
/// no spaces; nested values as compact JSON.
pub fn fields(data: &serde_json::Value) -> String {
    match data {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(key, value)| format!("{key}={}", scalar(value)))
            .collect::<Vec<_>>()
            .join(" "),
        serde_json::Value::Null => String::new(),
        other => scalar(other),
    }
}

fn scalar(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text)
            if !text.is_empty() && !text.contains(char::is_whitespace) && !text.contains('"') =>
        {
            text.clone()
        }
        other => other.to_string(),
    }
}

/// `1 host`, `2 hosts`.
/// A word of the API's vocabulary as prose: `rolled_back` → `rolled back`.
pub fn words(word: &str) -> String {
    word.replace('_', " ")
}

pub fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut table = Table::new(&["ID", "STATE", "HOSTS"]).right(&[2]);
        table.row(vec!["r-1".into(), "running".into(), "48/480".into()]);
        table.row(vec!["r-10".into(), "completed".into(), "5/5".into()]);
        expect_test::expect![[r#"
            ID    STATE       HOSTS
            r-1   running    48/480
            r-10  completed     5/5
        "#]]
        .assert_eq(&table.render());
        let mut last_left = Table::new(&["A", "B"]);
        last_left.row(vec!["long cell".into(), String::new()]);
        assert!(last_left
            .render()
            .lines()
            .all(|line| line == line.trim_end()));
    }

    #[test]
    fn durations_read_like_plans() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (90, "1m30s"),
            (1800, "30m"),
            (3600, "1h"),
            (4330, "1h12m"),
            (93_784, "1d2h3m"),
            (3 * 86_400 + 60, "3d"),
            (4 * 86_400 + 7200, "4d2h"),
        ];
        for (seconds, text) in cases {
            assert_eq!(duration(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn percentages_drop_needless_zeros() {
        assert_eq!(percent(10.0), "10%");
        assert_eq!(percent(0.1), "0.1%");
        assert_eq!(percent(12.5), "12.5%");
        assert_eq!(percent(100.0), "100%");
    }

    #[test]
    fn times_are_relative_to_now() -> Result<(), jiff::Error> {
        let now: jiff::Timestamp = "2024-06-01T10:00:00Z".parse()?;
        assert_eq!(relative("2024-06-01T09:57:00Z", now), "3m ago");
        assert_eq!(relative("2024-06-01T11:12:00Z", now), "in 1h12m");
        assert_eq!(relative("2024-06-01T10:00:01Z", now), "just now");
        assert_eq!(relative("yesterday", now), "yesterday");
        assert_eq!(
            timestamp("2024-06-01T09:57:00.123Z"),
            "2024-06-01 09:57:00Z"
        );
        Ok(())
    }

    #[test]
    fn event_fields_are_key_value_pairs() {
        let data = serde_json::json!({"stage": 1, "host": "web-1", "reason": "error rate up"});
        assert_eq!(
            fields(&data),
            r#"host=web-1 reason="error rate up" stage=1"#
        );
    }
}
