//! Time windows: the days and hours, in a named time zone, when a rollout
//! may admit hosts.
//!
//! A plan's `windows` is one window or a list of them; the rollout may admit
//! hosts while *any* window is open, and an empty list is always open.
//!
//! - `days`: day names (`mon` … `sun`, or `monday` … `sunday`, any case) and
//!   ranges, comma separated: `mon-thu`, `mon,wed,fri`, `mon-fri,sun`. A range
//!   may wrap around the end of the week (`sat-mon` is Saturday, Sunday and
//!   Monday). `daily` (or `all`) is every day. Left out: every day.
//! - `hours`: `HH:MM-HH:MM` in local time, start inclusive, end exclusive;
//!   `24:00` is accepted as an end. An end before the start spans midnight,
//!   and the hours after midnight belong to the day the window opened on:
//!   `{ days: fri, hours: "22:00-06:00" }` is open from Friday 22:00 to
//!   Saturday 06:00, and not on Friday morning. Left out: all day.
//! - `tz`: an IANA time zone name such as `Europe/Stockholm`. Left out: UTC.
//!
//! Windows are wall-clock times, so a day with a daylight-saving transition
//! is 23 or 25 hours long: a window that starts inside the skipped hour opens
//! when the clocks jump forward, and one inside the repeated hour is open
//! both times. Resolution is the minute (`09:00-16:00` is open at 15:59:59 and
//! closed at 16:00:00).

use std::fmt;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Minutes in a day.
const DAY_MINUTES: u16 = 24 * 60;

/// How far [`next_opening`] looks ahead: a week and a day, so that every
/// weekly window is found whatever the daylight-saving shifts.
const SEARCH_MINUTES: i64 = 8 * 24 * 60;

/// `windows: { days: mon-thu, hours: "09:00-16:00", tz: Europe/Stockholm }`
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub days: Days,
    /// Minutes after local midnight; `end` may be before `start` for a window
    /// that spans midnight (`22:00-06:00`). `start == end` is all day.
    pub start_minute: u16,
    pub end_minute: u16,
    pub tz: TimeZone,
    /// The IANA name of the zone, e.g. `Europe/Stockholm`.
    pub tz_name: String,
}

/// A set of weekdays, Monday first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(u8);

/// Why part of a window did not parse: the message says what would be valid,
/// and `offset` is the 0-based character offset of the fault in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WindowError {
    pub offset: usize,
    pub message: String,
}

impl WindowError {
    fn new(offset: usize, message: impl Into<String>) -> WindowError {
        WindowError {
            offset,
            message: message.into(),
        }
    }
}

const DAY_NAMES: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

const DAYS_HELP: &str =
    "write mon, tue, wed, thu, fri, sat or sun, ranges such as mon-fri, lists such as mon,wed,fri, or daily";

impl Days {
    /// Every day of the week.
    pub const ALL: Days = Days(0b111_1111);

    /// Parses `mon-thu`, `mon,wed,fri`, `mon-fri,sun`, `sat-mon` or `daily`.
    pub fn parse(input: &str) -> Result<Days, WindowError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(WindowError::new(0, format!("no days given; {DAYS_HELP}")));
        }
        if trimmed.eq_ignore_ascii_case("daily") || trimmed.eq_ignore_ascii_case("all") {
            return Ok(Days::ALL);
        }
        let mut bits = 0u8;
        // Character offset of the current item within `input`.
        let mut offset = 0;
        for item in input.split(',') {
            let item_offset = offset + leading_spaces(item);
            offset += item.chars().count() + 1;
            let text = item.trim();
            if text.is_empty() {
                return Err(WindowError::new(
                    item_offset,
                    format!("empty entry in the list of days; {DAYS_HELP}"),
                ));
            }
            match text.split_once('-') {
                None => bits |= 1 << day_index(text, item_offset)?,
                Some((first, last)) => {
                    let first_index = day_index(first.trim(), item_offset)?;
                    let last_offset =
                        item_offset + first.chars().count() + 1 + leading_spaces(last);
                    let last_index = day_index(last.trim(), last_offset)?;
                    // A range wraps around the end of the week: `sat-mon`.
                    let mut day = first_index;
                    loop {
                        bits |= 1 << day;
                        if day == last_index {
                            break;
                        }
                        day = (day + 1) % 7;
                    }
                }
            }
        }
        Ok(Days(bits))
    }

    /// Whether `day` is one of these days.
    pub fn contains(self, day: Weekday) -> bool {
        let index = day.to_monday_zero_offset();
        (0..7).contains(&index) && self.0 & (1 << index) != 0
    }

    /// The set of days in either.
    pub fn union(self, other: Days) -> Days {
        Days(self.0 | other.0)
    }
}

fn leading_spaces(text: &str) -> usize {
    text.chars().take_while(|c| c.is_whitespace()).count()
}

fn day_index(name: &str, offset: usize) -> Result<u8, WindowError> {
    let lower = name.to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|(short, long)| lower == *short || lower == *long)
        .map(|index| index as u8)
        .ok_or_else(|| WindowError::new(offset, format!("unknown day `{name}`; {DAYS_HELP}")))
}

impl fmt::Display for Days {
    /// Writes `daily`, or runs of days as ranges: `mon-thu,sat`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Days::ALL {
            return f.write_str("daily");
        }
        let mut first = true;
        let mut day = 0;
        while day < 7 {
            if self.0 & (1 << day) == 0 {
                day += 1;
                continue;
            }
            let start = day;
            while day + 1 < 7 && self.0 & (1 << (day + 1)) != 0 {
                day += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(DAY_NAMES[start].0)?;
            if day > start {
                write!(f, "-{}", DAY_NAMES[day].0)?;
            }
            day += 1;
        }
        Ok(())
    }
}

const HOURS_HELP: &str = "write local times HH:MM-HH:MM such as 09:00-16:00 (the end is exclusive; 22:00-06:00 spans midnight)";

impl Window {
    /// A window open on `days` between `hours` (minutes after midnight, as
    /// returned by [`Window::parse_hours`]; `None` is all day) in `tz`.
    pub fn new(days: Days, hours: Option<(u16, u16)>, tz: TimeZone, tz_name: String) -> Window {
        let (start_minute, end_minute) = hours.unwrap_or((0, 0));
        Window {
            days,
            start_minute,
            end_minute,
            tz,
            tz_name,
        }
    }

    /// Parses `09:00-16:00` into minutes after midnight. The end is
    /// exclusive, may be `24:00`, and may be before the start to span
    /// midnight; `00:00-24:00` is all day, `(0, 0)`.
    pub fn parse_hours(input: &str) -> Result<(u16, u16), WindowError> {
        let Some((first, last)) = input.split_once('-') else {
            return Err(WindowError::new(
                0,
                format!("`{}` is not a range of times; {HOURS_HELP}", input.trim()),
            ));
        };
        let start = parse_time(first.trim(), false)
            .map_err(|message| WindowError::new(leading_spaces(first), message))?;
        let end = parse_time(last.trim(), true).map_err(|message| {
            WindowError::new(first.chars().count() + 1 + leading_spaces(last), message)
        })?;
        if start == end {
            return Err(WindowError::new(
                0,
                format!(
                    "`{}` opens and closes at the same time; for all day, leave hours out or write 00:00-24:00",
                    input.trim()
                ),
            ));
        }
        Ok((start, end % DAY_MINUTES))
    }

    /// Resolves an IANA time zone name such as `Europe/Stockholm`, giving
    /// the zone and its canonical spelling.
    pub fn parse_tz(name: &str) -> Result<(TimeZone, String), WindowError> {
        let name = name.trim();
        let unknown = || {
            WindowError::new(
                0,
                format!("unknown time zone `{name}`; write an IANA name such as Europe/Stockholm or UTC"),
            )
        };
        if name.is_empty() {
            return Err(unknown());
        }
        let tz = TimeZone::get(name).map_err(|_| unknown())?;
        let canonical = tz.iana_name().unwrap_or(name).to_owned();
        Ok((tz, canonical))
    }

    /// Whether the window is all day (on its days).
    pub fn is_all_day(&self) -> bool {
        self.start_minute == self.end_minute
    }

    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: Timestamp) -> bool {
        let local = self.tz.to_datetime(at);
        let minute =
            u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0);
        let today = local.weekday();
        let (start, end) = (self.start_minute, self.end_minute);
        if start == end {
            self.days.contains(today)
        } else if start < end {
            self.days.contains(today) && (start..end).contains(&minute)
        } else {
            // Spans midnight: the evening part belongs to today, the morning
            // part to the day before, when the window opened.
            (self.days.contains(today) && minute >= start)
                || (self.days.contains(today.previous()) && minute < end)
        }
    }
}

fn parse_time(text: &str, end: bool) -> Result<u16, String> {
    let invalid = || {
        format!(
            "`{text}` is not a time of day; write HH:MM from 00:00 to 23:59{}, such as 09:00-16:00",
            if end { " (or 24:00 as an end)" } else { "" }
        )
    };
    let (hours, minutes) = text.split_once(':').ok_or_else(invalid)?;
    let digits =
        |s: &str, min, max| (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hours, 1, 2) || !digits(minutes, 2, 2) {
        return Err(invalid());
    }
    let hours: u16 = hours.parse().map_err(|_| invalid())?;
    let minutes: u16 = minutes.parse().map_err(|_| invalid())?;
    match (hours, minutes) {
        (24, 0) if end => Ok(DAY_MINUTES),
        (0..=23, 0..=59) => Ok(hours * 60 + minutes),
        _ => Err(invalid()),
    }
}

impl fmt::Display for Window {
    /// Writes `mon-thu 09:00-16:00 Europe/Stockholm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.days)?;
        if !self.is_all_day() {
            let hhmm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
            let end = if self.end_minute == 0 {
                "24:00".to_owned()
            } else {
                hhmm(self.end_minute)
            };
            write!(f, " {}-{end}", hhmm(self.start_minute))?;
        }
        write!(f, " {}", self.tz_name)
    }
}

/// Whether a rollout with these windows may admit hosts at `at`: some window
/// is open, or there are none.
pub fn windows_open(windows: &[Window], at: Timestamp) -> bool {
    windows.is_empty() || windows.iter().any(|window| window.contains(at))
}

/// When the windows next open: `at` itself if they are open now, else the
/// first whole minute within the next eight days at which one is, else `None`
/// (which well-formed windows never give).
pub fn next_opening(windows: &[Window], at: Timestamp) -> Option<Timestamp> {
    if windows_open(windows, at) {
        return Some(at);
    }
    let first_minute = at.as_second().div_euclid(60) + 1;
    (0..=SEARCH_MINUTES)
        .filter_map(|step| Timestamp::from_second((first_minute + step) * 60).ok())
        .find(|candidate| windows_open(windows, *candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &str, hours: Option<&str>, tz: &str) -> Window {
        let days = Days::parse(days).expect("days");
        let hours = hours.map(|h| Window::parse_hours(h).expect("hours"));
        let (tz, name) = Window::parse_tz(tz).expect("tz");
        Window::new(days, hours, tz, name)
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn days_parse_names_ranges_lists_and_wrapping() {
        for (text, shown) in [
            ("mon-thu", "mon-thu"),
            ("mon,wed,fri", "mon,wed,fri"),
            ("mon-fri,sun", "mon-fri,sun"),
            ("sat-mon", "mon,sat-sun"),
            ("fri-tue", "mon-tue,fri-sun"),
            ("Monday, TUE", "mon-tue"),
            ("daily", "daily"),
            ("all", "daily"),
            ("mon-sun", "daily"),
            ("wed-wed", "wed"),
        ] {
            assert_eq!(Days::parse(text).expect(text).to_string(), shown, "{text}");
        }
    }

    #[test]
    fn days_errors_point_at_the_fault() {
        for (text, offset, message) in [
            ("", 0, "no days given"),
            ("mon,xyz", 4, "unknown day `xyz`"),
            ("mon, tue-frx", 9, "unknown day `frx`"),
            ("mon,,tue", 4, "empty entry"),
            ("weekdays", 0, "unknown day `weekdays`"),
        ] {
            let error = Days::parse(text).expect_err(text);
            assert_eq!(error.offset, offset, "{text}");
            assert!(error.message.contains(message), "{text}: {error}");
            assert!(error.message.contains("such as mon-fri"), "{error}");
        }
    }

    #[test]
    fn hours_parse_and_reject() {
        assert_eq!(Window::parse_hours("09:00-16:00"), Ok((540, 960)));
        assert_eq!(Window::parse_hours("9:30 - 16:15"), Ok((570, 975)));
        assert_eq!(Window::parse_hours("22:00-06:00"), Ok((1320, 360)));
        assert_eq!(Window::parse_hours("18:00-24:00"), Ok((1080, 0)));
        assert_eq!(Window::parse_hours("00:00-24:00"), Ok((0, 0)));
        for (text, offset, message) in [
            ("09:00", 0, "not a range of times"),
            ("25:00-06:00", 0, "`25:00` is not a time of day"),
            ("09:00-16:60", 6, "`16:60` is not a time of day"),
            ("24:00-06:00", 0, "`24:00` is not a time of day"),
            ("9-17", 0, "`9` is not a time of day"),
            ("09:00-09:00", 0, "opens and closes at the same time"),
        ] {
            let error = Window::parse_hours(text).expect_err(text);
            assert_eq!(error.offset, offset, "{text}");
            assert!(error.message.contains(message), "{text}: {error}");
        }
    }

    #[test]
    fn unknown_time_zone_is_named() {
        let error = Window::parse_tz("Europe/Stokholm").expect_err("unknown zone");
        assert_eq!(
            error.message,
            "unknown time zone `Europe/Stokholm`; write an IANA name such as Europe/Stockholm or UTC"
        );
        assert_eq!(
            Window::parse_tz("europe/stockholm")
                .expect("case-insensitive")
                .1,
            "Europe/Stockholm"
        );
    }

    #[test]
    fn weekday_hours_in_stockholm() {
        let w = window("mon-thu", Some("09:00-16:00"), "Europe/Stockholm");
        // 2024-01-15 is a Monday; Stockholm is UTC+1 in winter.
        assert!(!w.contains(at("2024-01-15T07:59:59Z")));
        assert!(w.contains(at("2024-01-15T08:00:00Z")));
        assert!(w.contains(at("2024-01-15T14:59:59Z")));
        assert!(!w.contains(at("2024-01-15T15:00:00Z")));
        // Friday is not a window day.
        assert!(!w.contains(at("2024-01-19T10:00:00Z")));
        assert_eq!(w.to_string(), "mon-thu 09:00-16:00 Europe/Stockholm");
    }

    #[test]
    fn window_spanning_midnight_belongs_to_its_first_day() {
        let w = window("fri", Some("22:00-06:00"), "UTC");
        // 2024-01-19 is a Friday.
        assert!(!w.contains(at("2024-01-19T05:00:00Z")), "friday morning");
        assert!(!w.contains(at("2024-01-19T21:59:00Z")));
        assert!(w.contains(at("2024-01-19T22:00:00Z")));
        assert!(w.contains(at("2024-01-20T00:00:00Z")), "saturday midnight");
        assert!(w.contains(at("2024-01-20T05:59:59Z")));
        assert!(!w.contains(at("2024-01-20T06:00:00Z")));
        assert!(!w.contains(at("2024-01-20T22:30:00Z")), "saturday night");
    }

    #[test]
    fn spring_forward_in_stockholm() {
        // 2024-03-31 (Sunday): clocks jump from 02:00 to 03:00 local
        // (01:00 UTC). A window starting in the skipped hour opens at 03:00.
        let w = window("sun", Some("02:30-04:00"), "Europe/Stockholm");
        assert!(!w.contains(at("2024-03-31T00:59:59Z")), "01:59:59 local");
        assert!(w.contains(at("2024-03-31T01:00:00Z")), "03:00 local");
        assert!(w.contains(at("2024-03-31T01:59:00Z")), "03:59 local");
        assert!(!w.contains(at("2024-03-31T02:00:00Z")), "04:00 local");
        assert_eq!(
            next_opening(&[w], at("2024-03-30T12:00:00Z")),
            Some(at("2024-03-31T01:00:00Z"))
        );
        // After the switch the offset is +2: 09:00 local is 07:00 UTC.
        let office = window("daily", Some("09:00-16:00"), "Europe/Stockholm");
        assert!(office.contains(at("2024-03-31T07:00:00Z")));
        assert!(!office.contains(at("2024-03-31T06:59:00Z")));
        assert!(office.contains(at("2024-03-30T08:00:00Z")), "still +1");
    }

    #[test]
    fn fall_back_in_stockholm() {
        // 2024-10-27 (Sunday): clocks go back from 03:00 to 02:00 local, so
        // 02:00-03:00 local happens twice (00:00-01:00 and 01:00-02:00 UTC).
        let w = window("sun", Some("02:00-02:30"), "Europe/Stockholm");
        assert!(w.contains(at("2024-10-27T00:15:00Z")), "first 02:15");
        assert!(!w.contains(at("2024-10-27T00:45:00Z")), "first 02:45");
        assert!(w.contains(at("2024-10-27T01:15:00Z")), "second 02:15");
        assert!(!w.contains(at("2024-10-27T01:30:00Z")), "second 02:30");
        // The day is 25 hours long: 23:00 local is 22:00 UTC.
        let late = window("sun", Some("23:00-24:00"), "Europe/Stockholm");
        assert!(late.contains(at("2024-10-27T22:00:00Z")));
        assert!(!late.contains(at("2024-10-27T21:59:00Z")));
        assert!(!late.contains(at("2024-10-27T23:00:00Z")), "monday");
    }

    #[test]
    fn no_windows_is_always_open_and_any_window_opens() {
        let t = at("2024-01-20T12:00:00Z");
        assert!(windows_open(&[], t));
        assert_eq!(next_opening(&[], t), Some(t));
        let weekdays = window("mon-fri", None, "UTC");
        let saturday_noon = window("sat", Some("12:00-13:00"), "UTC");
        assert!(!windows_open(std::slice::from_ref(&weekdays), t));
        assert!(windows_open(&[weekdays, saturday_noon], t));
    }

    #[test]
    fn next_opening_finds_the_next_whole_minute() {
        let w = window("mon-thu", Some("09:00-16:00"), "Europe/Stockholm");
        // Thursday 16:00:30 local: next opening is Monday 09:00 local.
        assert_eq!(
            next_opening(std::slice::from_ref(&w), at("2024-01-18T15:00:30Z")),
            Some(at("2024-01-22T08:00:00Z"))
        );
        // Already open: now.
        let open = at("2024-01-22T08:00:30Z");
        assert_eq!(next_opening(&[w], open), Some(open));
    }
}
