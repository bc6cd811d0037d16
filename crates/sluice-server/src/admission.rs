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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// The default bound: with group commit, a few hundred check-ins waiting
/// are a few commits' worth, tens of milliseconds on a small machine.
pub const DEFAULT_CHECKIN_QUEUE: usize = 512;

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
}
