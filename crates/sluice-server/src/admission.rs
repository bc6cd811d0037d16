//! Back-pressure: how many check-ins the server holds at once.
//!
//! A check-in is admitted — it takes a slot of the [`CheckinQueue`] — before
//! its body is read or parsed, and keeps the slot until it is answered: while
//! it waits for a CPU, for the lock of memory and for the group commit that
//! makes it durable. Past the bound (`sluice server --checkin-queue`) a
//! check-in is answered `429 Too Many Requests` with `Retry-After` at once,
//! without reading its body or changing memory, so that latency and memory
//! stay bounded when agents arrive faster than their reports can be made
//! durable; agents come back after `Retry-After`, with jitter.
//!
//! Every other endpoint but the ops ones (`/healthz`, `/readyz`,
//! `/metrics`, …), the dashboard's included, is rate-limited per token
//! ([`TokenRate`], `sluice server --api-rate`): a token past its rate is
//! answered 429 with `Retry-After`, so that one script in a loop cannot
//! starve the operators and the agents. The default is far above what the
//! dashboard and the CLI ask in use.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// The default bound: with group commit, a few hundred check-ins waiting
/// are a few commits' worth, tens of milliseconds on a small machine.
pub const DEFAULT_CHECKIN_QUEUE: usize = 512;

/// The default of `--api-rate`: requests a second per token.
pub const DEFAULT_API_RATE: u32 = 1000;

/// Tokens whose rate is tracked before those idle (back at a full bucket)
/// are forgotten.
const TRACKED_TOKENS: usize = 4096;

/// The longest `Retry-After` (seconds) told to a refused check-in; never
/// more than the check-in interval.
const CHECKIN_RETRY_AFTER_S: u64 = 5;

/// The check-ins admitted and not yet answered, and their bound.
#[derive(Debug)]
pub struct CheckinQueue {
    bound: usize,
    admitted: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// A check-in's place in the queue, given back when it is dropped (the
/// answer sent, or the request dropped by its client).
#[derive(Debug)]
pub struct Slot<'a>(&'a CheckinQueue);

impl CheckinQueue {
    pub fn new(bound: usize, metrics: Arc<Metrics>) -> CheckinQueue {
        CheckinQueue {
            bound,
            admitted: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Admits one more check-in, or refuses it with 429 when `bound` are
    /// waiting already. `interval_s` is the check-in interval: a refused
    /// agent is told to come back after a few seconds, never later than
    /// its next check-in would be.
    pub fn admit(&self, interval_s: u64) -> Result<Slot<'_>, ApiError> {
        let taken = self
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |admitted| {
                (admitted < self.bound).then_some(admitted + 1)
            });
        match taken {
            Ok(_) => {
                self.metrics.checkin_queued(true);
                Ok(Slot(self))
            }
            Err(_) => {
                self.metrics.checkin_rejected();
                Err(ApiError::TooManyRequests {
                    message: format!(
                        "the server holds {} check-ins waiting to become durable, its bound (sluice server --checkin-queue); come back after Retry-After",
                        self.bound
                    ),
                    retry_after_s: CHECKIN_RETRY_AFTER_S.min(interval_s).max(1),
                })
            }
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.checkin_queued(false);
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
        let queue = CheckinQueue::new(2, Arc::new(Metrics::new()));
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
