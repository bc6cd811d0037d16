//! Plan durations: `30s`, `15m`, `2h`, `1d`, valid by construction.

use std::fmt;

/// A non-negative span of whole seconds, written in plans as `30s`, `15m`,
/// `2h` or `1d`. Combinations such as `1h30m` are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    seconds: u64,
}

/// Why a duration did not parse; the message says what would be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {input:?} is not a duration; write a number followed by s, m, h or d, such as 30s, 15m, 2h, 1d")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl Duration {
    /// The longest duration a plan may name (a year), so that arithmetic on
    /// timestamps can never overflow.
    pub const MAX: Duration = Duration {
        seconds: 366 * 86_400,
    };

    pub const fn from_secs(seconds: u64) -> Duration {
        Duration { seconds }
    }

    pub const fn as_secs(self) -> u64 {
        self.seconds
    }

    pub fn is_zero(self) -> bool {
        self.seconds == 0
    }

    /// Parses `30s`, `15m`, `2h`, `1d` or a concatenation such as `1h30m`.
    pub fn parse(input: &str) -> Result<Duration, DurationError> {
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
                .filter(|total| *total <= Self::MAX.seconds)
                .ok_or_else(|| error("longer than a year"))?;
            rest = chars.as_str();
        }
        Ok(Duration { seconds })
    }
}

impl fmt::Display for Duration {
    /// Writes the shortest form that parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.seconds;
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

impl From<Duration> for std::time::Duration {
    fn from(value: Duration) -> Self {
        std::time::Duration::from_secs(value.seconds)
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
            ("0s", 0),
        ] {
            assert_eq!(
                Duration::parse(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for text in ["", "30", "m", "2x", "-5m", "1.5h", "400d"] {
            let error = Duration::parse(text).expect_err(text).to_string();
            assert!(error.contains("such as 30s, 15m, 2h, 1d"), "{error}");
        }
    }

    #[test]
    fn display_round_trips() {
        for seconds in [0, 1, 59, 60, 61, 3_600, 5_400, 86_400, 90_061] {
            let duration = Duration::from_secs(seconds);
            assert_eq!(Duration::parse(&duration.to_string()), Ok(duration));
        }
    }
}
