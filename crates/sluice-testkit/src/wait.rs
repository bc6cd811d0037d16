//! Polling with a deadline instead of sleeping and hoping: [`wait_for`]
//! (async) and [`wait_for_blocking`] call a check until it is [`Ready`],
//! and panic past the deadline naming what was awaited and what the check
//! saw last.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// The deadline the tests give a condition: far beyond what any needs on a
/// busy 2-core machine, so that only a real bug reaches it.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// The first pause between two checks; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// What one check gives: ready with a value, or not yet with what it saw.
pub trait Ready {
    /// What [`wait_for`] returns once the check is ready.
    type Value;

    /// The value, or a description of what was observed instead.
    fn ready(self) -> Result<Self::Value, String>;
}

/// `Some(value)` is ready; `None` observed nothing worth showing.
impl<T> Ready for Option<T> {
    type Value = T;

    fn ready(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_owned())
    }
}

/// `true` is ready.
impl Ready for bool {
    type Value = ();

    fn ready(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".to_owned())
        }
    }
}

/// `Ok(value)` is ready; `Err(observed)` is what the check saw instead,
/// shown if the deadline passes.
impl<T, E: Debug> Ready for Result<T, E> {
    type Value = T;

    fn ready(self) -> Result<T, String> {
        self.map_err(|observed| format!("{observed:?}"))
    }
}

/// Calls `check` until it is ready and returns its value; panics once
/// `deadline` has passed, naming `what` was awaited and the last observation.
pub async fn wait_for<R, F, Fut>(what: &str, deadline: Duration, mut check: F) -> R::Value
where
    R: Ready,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    let until = tokio::time::Instant::now() + deadline;
    let mut pause = FIRST_PAUSE;
    loop {
        let observed = match check().await.ready() {
            Ok(value) => return value,
            Err(observed) => observed,
        };
        if tokio::time::Instant::now() >= until {
            timed_out(what, deadline, &observed);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// [`wait_for`] for tests without a runtime: the thread sleeps between checks.
#[track_caller]
pub fn wait_for_blocking<R, F>(what: &str, deadline: Duration, mut check: F) -> R::Value
where
    R: Ready,
    F: FnMut() -> R,
{
    let until = Instant::now() + deadline;
    let mut pause = FIRST_PAUSE;
    loop {
        let observed = match check().ready() {
            Ok(value) => return value,
            Err(observed) => observed,
        };
        if Instant::now() >= until {
            timed_out(what, deadline, &observed);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[track_caller]
fn timed_out(what: &str, deadline: Duration, observed: &str) -> ! {
    panic!("timed out after {deadline:?} waiting for {what}; last observed: {observed}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_ready() {
        let mut calls = 0;
        let value = wait_for("the third call", DEADLINE, || {
            calls += 1;
            let calls = calls;
            async move { (calls == 3).then_some(calls) }
        })
        .await;
        assert_eq!(value, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for seven; last observed: 6")]
    fn names_what_was_awaited_and_the_last_observation() {
        let mut seen = 0;
        wait_for_blocking("seven", Duration::from_secs(1), || {
            seen = (seen + 1).min(6);
            if seen == 7 {
                Ok(())
            } else {
                Err(seen)
            }
        });
    }
}
