//! Time windows: the days and hours, in a named time zone, when a rollout
//! may admit hosts.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// `windows: { days: mon-thu, hours: "09:00-16:00", tz: Europe/Stockholm }`
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub days: Days,
    /// Minutes after local midnight; `end` may be before `start` for a window
    /// that spans midnight (`22:00-06:00`). `start == end` is all day.
    pub start_minute: u16,
    pub end_minute: u16,
    pub tz: TimeZone,
    /// The IANA name the plan gave, e.g. `Europe/Stockholm`.
    pub tz_name: String,
}

/// A set of weekdays, Monday first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(u8);

impl Window {
    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: Timestamp) -> bool {
        let _ = at;
        unimplemented!("window contains")
    }
}
