//! Back-pressure: how many check-ins the server holds at once.
//!
//! A check-in is admitted — it takes a slot of the [`CheckinQueue`] — before
//! its body is read or parsed, and keeps the slot until it is answered: while
//! it waits for a CPU, for the lock of memory and for the group commit that
//! makes it durable. It is refused instead — answered `429 Too Many
//! Requests` with `Retry-After` at once, without reading its body or
//! changing memory — when the queue holds its bound of check-ins (`sluice
//! server --checkin-queue`), and when check-ins wait too long (`sluice
//! server --checkin-wait-ms`): for that long after one was answered later
//! than that after its admission, and while the queue holds check-ins and
//! none was answered for that long (the store stalls). A bound in
//! check-ins is a bound in latency only at a known commit rate; the wait
//! bounds it whatever the disk does, so that latency and memory stay
//! bounded when agents arrive faster than their reports can be made
//! durable. Agents come back after `Retry-After`, with jitter.
//!
//! Every other endpoint but the ops ones (`/healthz`, `/readyz`,
//! `/metrics`, …), the dashboard's included, is rate-limited per token
//! ([`TokenRate`], `sluice server --api-rate`): a token past its rate is
//! answered 429 with `Retry-After`, so that one script in a loop cannot
//! starve the operators and the agents. The default is far above what the
//! dashboard and the CLI ask in use.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// The default bound: with group commit, a few hundred check-ins waiting
/// are a few commits' worth, tens of milliseconds on a small machine.
pub const DEFAULT_CHECKIN_QUEUE: usize = 512;

/// The default of `--checkin-wait-ms`: a check-in answered later than this
/// after its admission makes the server shed new ones for as long. Tens of
/// group commits on a local disk, so that only a store that stalls sheds;
/// a latency target sets less (`bench/overload.sh --checkin-wait-ms 20`),
/// a store whose every commit takes longer more (or none: 0).
pub const DEFAULT_CHECKIN_WAIT: Duration = Duration::from_millis(250);

/// The default of `--api-rate`: requests a second per token.
pub const DEFAULT_API_RATE: u32 = 1000;

/// Tokens whose rate is tracked before those idle (back at a full bucket)
/// are forgotten.
const TRACKED_TOKENS: usize = 4096;

/// The longest `Retry-After` (seconds) told to a refused check-in; never
/// more than the check-in interval.
const CHECKIN_RETRY_AFTER_S: u64 = 5;

/// The check-ins admitted and not yet answered, and their bounds.
#[derive(Debug)]
pub struct CheckinQueue {
    bound: usize,
    /// In nanoseconds; `None`: no bound in time.
    wait: Option<u64>,
    admitted: AtomicUsize,
    /// Times are nanoseconds since this.
    epoch: Instant,
    /// When a check-in was last answered, or the queue last stopped being
    /// empty: the queue moved then.
    moved_at: AtomicU64,
    /// New check-ins are refused until then: one was answered late.
    shed_until: AtomicU64,
    metrics: Arc<Metrics>,
}

/// A check-in's place in the queue, given back when it is dropped (the
/// answer sent, or the request dropped by its client).
#[derive(Debug)]
pub struct Slot<'a> {
    queue: &'a CheckinQueue,
    admitted_at: u64,
}

impl CheckinQueue {
    /// At most `bound` check-ins at once, each answered within `wait` of
    /// its admission (`None`: no bound in time).
    pub fn new(bound: usize, wait: Option<Duration>, metrics: Arc<Metrics>) -> CheckinQueue {
        CheckinQueue {
            bound,
            wait: wait.map(|wait| u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX)),
            admitted: AtomicUsize::new(0),
            epoch: Instant::now(),
            moved_at: AtomicU64::new(0),
            shed_until: AtomicU64::new(0),
            metrics,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Admits one more check-in, or refuses it with 429 when `bound` are
    /// waiting already or check-ins wait longer than `wait`. `interval_s`
    /// is the check-in interval: a refused agent is told to come back
    /// after a few seconds, never later than its next check-in would be.
    pub fn admit(&self, interval_s: u64) -> Result<Slot<'_>, ApiError> {
        self.admit_at(self.now(), interval_s)
    }

    fn admit_at(&self, now: u64, interval_s: u64) -> Result<Slot<'_>, ApiError> {
        if let Some(wait) = self.wait {
            let late = now < self.shed_until.load(Ordering::Acquire);
            let stalled = self.admitted.load(Ordering::Acquire) > 0
                && now.saturating_sub(self.moved_at.load(Ordering::Acquire)) > wait;
            if late || stalled {
                return Err(self.refuse(
                    interval_s,
                    format!(
                        "check-ins wait more than {} ms to become durable, the server's bound (sluice server --checkin-wait-ms); come back after Retry-After",
                        wait / 1_000_000
                    ),
                ));
            }
        }
        let taken = self
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |admitted| {
                (admitted < self.bound).then_some(admitted + 1)
            });
        match taken {
            Ok(before) => {
                if before == 0 {
                    self.moved_at.fetch_max(now, Ordering::AcqRel);
                }
                self.metrics.checkin_queued(true);
                Ok(Slot {
                    queue: self,
                    admitted_at: now,
                })
            }
            Err(_) => Err(self.refuse(
                interval_s,
                format!(
                    "the server holds {} check-ins waiting to become durable, its bound (sluice server --checkin-queue); come back after Retry-After",
                    self.bound
                ),
            )),
        }
    }

    fn refuse(&self, interval_s: u64, message: String) -> ApiError {
        self.metrics.checkin_rejected();
        ApiError::TooManyRequests {
            message,
            retry_after_s: CHECKIN_RETRY_AFTER_S.min(interval_s).max(1),
        }
    }
}

impl CheckinQueue {
    /// A check-in admitted at `admitted_at` is answered (or dropped) at
    /// `now`: the queue moved, and if it waited longer than `wait`, new
    /// ones are shed for `wait`.
    fn release(&self, admitted_at: u64, now: u64) {
        self.moved_at.fetch_max(now, Ordering::AcqRel);
        if let Some(wait) = self.wait {
            if now.saturating_sub(admitted_at) > wait {
                self.shed_until
                    .fetch_max(now.saturating_add(wait), Ordering::AcqRel);
            }
        }
        self.admitted.fetch_sub(1, Ordering::AcqRel);
        self.metrics.checkin_queued(false);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.queue.release(self.admitted_at, self.queue.now());
    }
}

/// Each token's rate of requests: `rate` a second, in bursts of up to
/// twice that (a generic cell rate algorithm, `governor`'s).
#[derive(Debug)]
pub struct TokenRate {
    /// `None`: not limited (`--api-rate 0`).
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    rate: u32,
}

impl TokenRate {
    /// `rate` requests a second per token; 0 for no limit.
    pub fn new(rate: u32) -> TokenRate {
        let limiter = NonZeroU32::new(rate).map(|per_second| {
            let burst = per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        TokenRate { limiter, rate }
    }

    /// Counts one request of the token whose hash is `hash`, or refuses it
    /// with 429 when the token is past its rate.
    pub fn check(&self, hash: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > TRACKED_TOKENS {
            limiter.retain_recent();
        }
        let key = hash.to_owned();
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::TooManyRequests {
                message: format!(
                    "this token made more than {} requests a second (sluice server --api-rate); slow down and come back after Retry-After",
                    self.rate
                ),
                retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_bound_then_refuses_until_a_slot_is_given_back() {
        let queue = CheckinQueue::new(2, None, Arc::new(Metrics::new()));
        let first = queue.admit(60).expect("first");
        let _second = queue.admit(60).expect("second");
        let refused = queue.admit(60).expect_err("past the bound");
        assert!(
            matches!(
                refused,
                ApiError::TooManyRequests {
                    retry_after_s: 5,
                    ..
                }
            ),
            "{refused:?}"
        );
        assert!(matches!(
            queue.admit(2),
            Err(ApiError::TooManyRequests {
                retry_after_s: 2,
                ..
            })
        ));
        drop(first);
        let _third = queue.admit(60).expect("a slot was given back");
        assert!(queue.admit(60).is_err(), "full again");
    }

    /// Times in the tests: milliseconds as the queue's nanoseconds.
    const MS: u64 = 1_000_000;

    /// Admitted at `now` (ms), or refused with the wait's message naming
    /// `--checkin-wait-ms` (`None`).
    fn admit_at(queue: &CheckinQueue, now: u64) -> Option<Slot<'_>> {
        match queue.admit_at(now * MS, 60) {
            Ok(slot) => Some(slot),
            Err(ApiError::TooManyRequests { message, .. }) => {
                assert!(message.contains("--checkin-wait-ms"), "{message}");
                None
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    /// Answers `slot` at `now` (ms) rather than when it is dropped.
    fn answer_at(slot: Slot<'_>, now: u64) {
        let (queue, admitted_at) = (slot.queue, slot.admitted_at);
        std::mem::forget(slot);
        queue.release(admitted_at, now * MS);
    }

    #[test]
    fn a_queue_that_does_not_move_within_the_wait_refuses_until_it_moves() {
        let queue = CheckinQueue::new(
            100,
            Some(Duration::from_millis(50)),
            Arc::new(Metrics::new()),
        );
        // An empty queue admits however long ago the last answer was.
        let stuck = admit_at(&queue, 1000).expect("an empty queue admits");
        let beside = admit_at(&queue, 1040).expect("within the wait");
        assert!(
            admit_at(&queue, 1051).is_none(),
            "nothing answered for over 50 ms"
        );
        // An answer in time moves the queue; the next stalls again.
        answer_at(beside, 1052);
        let next = admit_at(&queue, 1060).expect("the queue moved at 1052");
        assert!(admit_at(&queue, 1103).is_none(), "stalled again");
        // Both are answered late (110 and 51 ms): new check-ins are shed
        // for the wait after the last late answer, then admitted.
        answer_at(stuck, 1110);
        answer_at(next, 1111);
        assert!(admit_at(&queue, 1120).is_none(), "answered late");
        assert!(admit_at(&queue, 1160).is_none(), "within 50 ms of it");
        let after = admit_at(&queue, 1162).expect("50 ms after the late answer");
        answer_at(after, 1163);
        assert_eq!(queue.admitted.load(Ordering::Acquire), 0);
    }

    #[test]
    fn without_a_bound_in_time_only_the_count_refuses() {
        let queue = CheckinQueue::new(2, None, Arc::new(Metrics::new()));
        let first = queue.admit_at(0, 60).expect("admitted");
        let _second = queue.admit_at(3_600_000 * MS, 60).expect("an hour later");
        answer_at(first, 7_200_000);
        queue
            .admit_at(7_200_001 * MS, 60)
            .expect("answered after two hours, no shedding");
    }

    #[test]
    fn each_token_has_its_own_rate_in_bursts_of_twice_it() {
        let rate = TokenRate::new(5);
        for _ in 0..10 {
            rate.check("a").expect("within the burst");
        }
        let refused = rate.check("a").expect_err("past the burst");
        assert!(
            matches!(&refused, ApiError::TooManyRequests { retry_after_s: 1, message } if message.contains("--api-rate")),
            "{refused:?}"
        );
        rate.check("b").expect("another token has its own rate");
        let unlimited = TokenRate::new(0);
        for _ in 0..1000 {
            unlimited.check("a").expect("no limit");
        }
    }
}
