//! The one duration grammar of sluice: `30s`, `15m`, `2h`, `1d`, or a
//! concatenation such as `1h30m`, in whole seconds, at most a year. Plans
//! (`bake: 30m`, read by `sluice-core`, whose `Duration` wraps this) and the
//! agent's configuration (`interval = "60s"`, which must not depend on the
//! engine) both read durations with [`parse_seconds`], so a duration valid
//! in one is valid in the other; [`display`] writes the shortest form that
//! parses back.

use std::fmt;

/// The longest duration sluice accepts (a year), so that adding one to a
/// timestamp or an instant can never overflow.
pub const MAX_SECONDS: u64 = 366 * 86_400;

/// Why a duration did not parse; the message says what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl DurationError {
    /// The text that did not parse.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it: `empty`, `expected a number`, `unknown unit`,
    /// `missing unit`, `number too large` or `longer than a year`.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:?} is not a duration; write a number followed by s, m, h or d, such as 30s, 15m, 2h, 1d",
            self.reason, self.input
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses `30s`, `15m`, `2h`, `1d` or a concatenation such as `1h30m`
/// (surrounding whitespace ignored) into whole seconds, at most
/// [`MAX_SECONDS`].
pub fn parse_seconds(input: &str) -> Result<u64, DurationError> {
    let error = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(error("empty"));
    }
    let mut seconds: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(error("expected a number"));
        }
        let (number, tail) = rest.split_at(digits);
        let mut chars = tail.chars();
        let unit = match chars.next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3_600,
            Some('d') => 86_400,
            Some(_) => return Err(error("unknown unit")),
            None => return Err(error("missing unit")),
        };
        let value: u64 = number.parse().map_err(|_| error("number too large"))?;
        seconds = value
            .checked_mul(unit)
            .and_then(|part| seconds.checked_add(part))
            .filter(|total| *total <= MAX_SECONDS)
            .ok_or_else(|| error("longer than a year"))?;
        rest = chars.as_str();
    }
    Ok(seconds)
}

/// `seconds` in the shortest form [`parse_seconds`] reads back: `0s`,
/// `45s`, `1h30m`, `1d1h1m1s`.
pub fn display(seconds: u64) -> impl fmt::Display {
    Shortest(seconds)
}

struct Shortest(u64);

impl fmt::Display for Shortest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        if rest == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_combinations() {
        for (text, seconds) in [
            ("30s", 30),
            ("15m", 900),
            ("2h", 7_200),
            ("1d", 86_400),
            ("1h30m", 5_400),
            (" 1m1s ", 61),
            ("0s", 0),
            ("366d", MAX_SECONDS),
        ] {
            assert_eq!(parse_seconds(text), Ok(seconds), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration_and_says_why() {
        for (text, reason) in [
            ("", "empty"),
            ("  ", "empty"),
            ("30", "missing unit"),
            ("m", "expected a number"),
            ("-5m", "expected a number"),
            ("500ms", "expected a number"),
            ("2x", "unknown unit"),
            ("1.5h", "unknown unit"),
            ("99999999999999999999s", "number too large"),
            ("367d", "longer than a year"),
            ("366d1s", "longer than a year"),
            ("18446744073709551615d", "longer than a year"),
        ] {
            let error = parse_seconds(text).expect_err(text);
            assert_eq!(error.reason(), reason, "{text}");
            assert_eq!(error.input(), text);
            assert_eq!(
                error.to_string(),
                format!("{reason}: {text:?} is not a duration; write a number followed by s, m, h or d, such as 30s, 15m, 2h, 1d")
            );
        }
    }

    #[test]
    fn display_is_the_shortest_form_and_round_trips() {
        for (seconds, text) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (5_400, "1h30m"),
            (90_061, "1d1h1m1s"),
        ] {
            assert_eq!(display(seconds).to_string(), text);
            assert_eq!(parse_seconds(text), Ok(seconds));
        }
        for seconds in (0..MAX_SECONDS).step_by(7_919) {
            assert_eq!(parse_seconds(&display(seconds).to_string()), Ok(seconds));
        }
    }
}
