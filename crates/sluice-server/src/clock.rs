//! The clock the server reads: the controller and every handler take "now"
//! from a [`Clock`], so that tests can inject one (bakes, timeouts, windows).

use std::fmt;

use jiff::Timestamp;

/// Where the server gets the time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A time on the wire: RFC 3339 in UTC with microseconds, always the same
/// width: `2026-03-01T09:30:00.000000Z`.
pub fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_fixed_width() {
        let at: Timestamp = "2026-03-01T09:30:00Z".parse().expect("timestamp");
        assert_eq!(rfc3339(at), "2026-03-01T09:30:00.000000Z");
        assert_eq!(rfc3339(at).parse::<Timestamp>().ok(), Some(at));
    }
}
