//! Plan durations: `30s`, `15m`, `2h`, `1d`, valid by construction. The
//! grammar is `sluice_types::duration`'s, the one the agent's configuration
//! reads too; this type adds nothing to it but a name the engine can trust.

use std::fmt;

pub use sluice_types::duration::DurationError;

/// A non-negative span of whole seconds, at most [`Duration::MAX`], written
/// in plans as `30s`, `15m`, `2h` or `1d`. Combinations such as `1h30m` are
/// accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    seconds: u64,
}

impl Duration {
    /// The longest duration a plan may name (a year), so that arithmetic on
    /// timestamps can never overflow.
    pub const MAX: Duration = Duration {
        seconds: sluice_types::duration::MAX_SECONDS,
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
        sluice_types::duration::parse_seconds(input).map(Duration::from_secs)
    }
}

impl fmt::Display for Duration {
    /// Writes the shortest form that parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        sluice_types::duration::display(self.seconds).fmt(f)
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

    /// The grammar is `sluice_types::duration`'s, tested there; this is the
    /// plans' wrapper of it.
    #[test]
    fn parses_the_one_grammar() {
        assert_eq!(Duration::parse("1h30m"), Ok(Duration::from_secs(5_400)));
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

    proptest::proptest! {
        #[test]
        fn any_concatenation_of_units_is_their_sum(
            parts in proptest::collection::vec((0u64..100_000, 0usize..4), 1..5)
        ) {
            let text: String = parts
                .iter()
                .map(|(value, unit)| format!("{value}{}", ["s", "m", "h", "d"][*unit]))
                .collect();
            let seconds: u64 = parts
                .iter()
                .map(|(value, unit)| value * [1, 60, 3_600, 86_400][*unit])
                .sum();
            let parsed = Duration::parse(&text);
            if seconds <= Duration::MAX.as_secs() {
                proptest::prop_assert_eq!(parsed, Ok(Duration::from_secs(seconds)));
            } else {
                let error = parsed.expect_err("beyond a year");
                proptest::prop_assert_eq!(error.reason(), "longer than a year");
            }
        }

        #[test]
        fn display_round_trips_up_to_max(seconds in 0..=Duration::MAX.as_secs()) {
            let duration = Duration::from_secs(seconds);
            proptest::prop_assert_eq!(Duration::parse(&duration.to_string()), Ok(duration));
        }
    }
}
