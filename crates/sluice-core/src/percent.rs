//! Percentages (`5%`, `0.1`) and amounts that are either a count or a
//! percentage (`max_in_flight: 5%`, `max_failed: 2`), valid by construction.
//!
//! A percentage is kept as an exact fixed-point number of ten-thousandths of
//! a percent, so that `ceil(p × n / 100)` is computed in integers and never
//! suffers from floating-point rounding.

use std::fmt;

/// Ten-thousandths of a percent in one percent.
const UNITS_PER_PERCENT: u64 = 10_000;
/// Fixed-point units in 100 %.
const FULL: u64 = 100 * UNITS_PER_PERCENT;

/// A percentage in `(0, 100]` with at most four decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent {
    units: u32,
}

/// Why a percentage or amount did not parse; the message says what would be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} {reason}")]
pub struct PercentError {
    input: String,
    reason: &'static str,
}

impl Percent {
    pub const HUNDRED: Percent = Percent { units: FULL as u32 };

    /// Parses a number of percent such as `5`, `0.1`, `12.5` or `5%`.
    pub fn parse(input: &str) -> Result<Percent, PercentError> {
        let error = |reason| PercentError {
            input: input.to_owned(),
            reason,
        };
        let text = input.trim();
        let text = text.strip_suffix('%').unwrap_or(text).trim_end();
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(error(
                "is not a percentage; write a number greater than 0 and at most 100, such as 5, 0.1 or 25%",
            ));
        }
        if fraction.len() > 4 {
            return Err(error(
                "has more than four decimal places; 0.0001 is the finest step",
            ));
        }
        let whole: u64 = whole
            .parse()
            .map_err(|_| error("is more than 100; a percentage is at most 100"))?;
        let mut units = whole.saturating_mul(UNITS_PER_PERCENT);
        let mut scale = UNITS_PER_PERCENT / 10;
        for digit in fraction.bytes() {
            // Saturating: a whole part near u64::MAX / 10,000 must stay
            // "more than 100", never wrap to a small percentage.
            units = units.saturating_add(u64::from(digit - b'0') * scale);
            scale /= 10;
        }
        if units == 0 {
            return Err(error("is zero; a percentage must be greater than 0"));
        }
        if units > FULL {
            return Err(error("is more than 100; a percentage is at most 100"));
        }
        Ok(Percent {
            units: units as u32,
        })
    }

    /// `ceil(self × n / 100)`: how many of `n` items this percentage covers,
    /// rounding up so that any non-empty group gets at least one.
    pub fn of_ceil(self, n: u64) -> u64 {
        let product = u128::from(self.units) * u128::from(n);
        product.div_ceil(u128::from(FULL)) as u64
    }

    /// The percentage as a float, for display and JSON.
    pub fn as_f64(self) -> f64 {
        f64::from(self.units) / UNITS_PER_PERCENT as f64
    }
}

impl fmt::Display for Percent {
    /// Writes `5`, `0.1`, `12.5`: the shortest decimal, without the `%` sign.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = u64::from(self.units) / UNITS_PER_PERCENT;
        let fraction = u64::from(self.units) % UNITS_PER_PERCENT;
        if fraction == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{fraction:04}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// A limit written either as a count (`2`) or a percentage (`5%`) of some total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Amount {
    Count(u64),
    Percent(Percent),
}

impl Amount {
    /// Parses `2` as a count and `5%` (or `0.5%`) as a percentage.
    pub fn parse(input: &str) -> Result<Amount, PercentError> {
        let text = input.trim();
        if text.ends_with('%') {
            return Percent::parse(text).map(Amount::Percent);
        }
        text.parse().map(Amount::Count).map_err(|_| PercentError {
            input: input.to_owned(),
            reason: "is neither a count nor a percentage; write a whole number such as 2, or a percentage such as 5%",
        })
    }

    /// The limit this amount sets on a total of `n`; a percentage rounds up,
    /// so `5%` of 10 hosts allows 1.
    pub fn resolve(self, n: u64) -> u64 {
        match self {
            Amount::Count(count) => count,
            Amount::Percent(percent) => percent.of_ceil(n),
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(count) => write!(f, "{count}"),
            Amount::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(text: &str) -> Percent {
        Percent::parse(text).expect(text)
    }

    /// Found by the API schema test: `percent: 1844674407370955.5`
    /// overflowed (a panic in debug builds, in release a wrap to a small
    /// percentage that would have been accepted).
    #[test]
    fn a_huge_whole_part_with_a_fraction_is_more_than_100() {
        for text in [
            "1844674407370955.5",
            "1844674407370955.9999",
            "18446744073709551615.5",
        ] {
            let error = Percent::parse(text).expect_err(text);
            assert!(
                error.to_string().contains("more than 100"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn parses_whole_fractional_and_suffixed() {
        assert_eq!(pct("5").to_string(), "5");
        assert_eq!(pct("5%").to_string(), "5");
        assert_eq!(pct("0.1").to_string(), "0.1");
        assert_eq!(pct("12.50").to_string(), "12.5");
        assert_eq!(pct("0.0001").to_string(), "0.0001");
        assert_eq!(pct("100"), Percent::HUNDRED);
    }

    #[test]
    fn rejects_out_of_range_and_malformed() {
        for (text, expected) in [
            ("0", "is zero"),
            ("0.00", "is zero"),
            ("100.01", "more than 100"),
            ("250", "more than 100"),
            ("-1", "is not a percentage"),
            ("five", "is not a percentage"),
            ("", "is not a percentage"),
            ("0.00001", "four decimal places"),
        ] {
            let error = Percent::parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn ceil_is_exact_in_integers() {
        assert_eq!(pct("1").of_ceil(100), 1);
        assert_eq!(pct("1").of_ceil(101), 2);
        assert_eq!(pct("10").of_ceil(10), 1);
        assert_eq!(pct("0.1").of_ceil(1_000_000), 1_000);
        assert_eq!(pct("0.1").of_ceil(1_000_001), 1_001);
        assert_eq!(pct("33.3333").of_ceil(3), 1);
        assert_eq!(pct("100").of_ceil(7), 7);
        assert_eq!(pct("50").of_ceil(0), 0);
    }

    #[test]
    fn amounts_are_counts_or_percentages() {
        assert_eq!(Amount::parse("2"), Ok(Amount::Count(2)));
        assert_eq!(Amount::parse("5%"), Ok(Amount::Percent(pct("5"))));
        assert_eq!(Amount::parse("5%").map(|a| a.resolve(10)), Ok(1));
        assert_eq!(Amount::Count(3).resolve(1), 3);
        assert!(Amount::parse("2.5")
            .expect_err("2.5")
            .to_string()
            .contains("whole number"));
    }
}
