//! Following the event log (`GET /v1/events?follow=true`): a stream reads
//! the store, never memory, so that every replica serves it itself, leader
//! or standby, and no lock on the world is held while it waits.
//!
//! A stream keeps a cursor, the last `seq` it read, and reads the log after
//! it a page at a time ([`PAGE`]); sequence numbers are handed out in commit
//! order, so a cursor never skips an event. When the log has nothing more
//! it waits: for this replica's group commit to write events (a leader's
//! streams are woken at once), for [`POLL`] to pass (the leader's writes,
//! seen from a standby), or for the server to shut down, which ends every
//! stream cleanly. At most [`MAX_STREAMS`] are open at once per server.
//!
//! A stream outlives the request that opened it, so it checks its token
//! again each time before it reads the log: once the token is revoked or
//! expired, the stream sends nothing more and ends, and the client's
//! reconnection is refused as any request with that token is.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use futures_util::stream::Stream;
use sluice_store::StoredEvent;
use tokio::sync::watch;

use crate::auth::Need;
use crate::error::ApiError;
use crate::replica::Replica;
use crate::routes::rollouts::event_view;

/// Streams open at once per server, at most, by default
/// ([`crate::Config::event_streams`]); one more is answered 429.
pub const MAX_STREAMS: usize = 100;
/// Events read from the store at a time.
pub const PAGE: u32 = 1000;
/// How often a stream reads the log when nothing woke it: events written
/// by another replica (the leader, seen from a standby) show within this.
pub const POLL: Duration = Duration::from_millis(500);
/// A comment is sent after this much silence, so that clients and proxies
/// see the connection alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The open streams of one server, and the signal that ends them.
#[derive(Debug)]
pub struct Streams {
    open: AtomicUsize,
    max: usize,
    closing: watch::Sender<bool>,
}

impl Streams {
    pub fn new(max: usize) -> Streams {
        Streams {
            open: AtomicUsize::new(0),
            max,
            closing: watch::Sender::new(false),
        }
    }

    /// Takes a place for one more stream; `false` past the bound.
    fn admit(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok()
    }

    fn leave(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The server shuts down: every stream ends, now and from now on.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// Which events a stream sends.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub rollout: Option<String>,
    /// Any kind when empty.
    pub kinds: Vec<String>,
}

impl Filter {
    fn admits(&self, event: &StoredEvent) -> bool {
        self.rollout
            .as_ref()
            .is_none_or(|rollout| event.event.rollout.as_ref() == Some(rollout))
            && (self.kinds.is_empty() || self.kinds.contains(&event.event.kind))
    }
}

/// A stream's place among the open ones; given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Replica>);

impl Slot {
    /// A place for one more stream on `replica`; `None` past the bound.
    pub fn take(replica: &Arc<Replica>) -> Option<Slot> {
        replica.streams().admit().then(|| Slot(Arc::clone(replica)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.streams().leave();
    }
}

/// A stream's state between two events.
struct Follow {
    slot: Slot,
    filter: Filter,
    /// The last `seq` read.
    cursor: i64,
    /// Read and admitted, not sent yet.
    ready: VecDeque<StoredEvent>,
    closing: watch::Receiver<bool>,
    /// A failed read is logged once until one succeeds again.
    failing: bool,
    /// The `Authorization` header the stream was opened with.
    credentials: HeaderMap,
}

/// Every event after `cursor` that `filter` admits, as server-sent events
/// (`id` the seq, `event` the kind, `data` the API's event), until the
/// server shuts down or the token of `headers` (just checked) may no longer
/// read the log.
pub fn events(
    slot: Slot,
    filter: Filter,
    cursor: i64,
    headers: &HeaderMap,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let closing = slot.0.streams().closing.subscribe();
    let mut credentials = HeaderMap::new();
    if let Some(value) = headers.get(AUTHORIZATION) {
        let mut value = value.clone();
        value.set_sensitive(true);
        credentials.insert(AUTHORIZATION, value);
    }
    let follow = Follow {
        slot,
        filter,
        cursor,
        ready: VecDeque::new(),
        closing,
        failing: false,
        credentials,
    };
    futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok(sse(event)), follow))
    })
}

impl Follow {
    /// The next event to send; `None` once the server shuts down.
    async fn next(&mut self) -> Option<StoredEvent> {
        loop {
            if *self.closing.borrow_and_update() {
                return None;
            }
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let replica = &self.slot.0;
            match replica.authorize(&self.credentials, Need::View).await {
                Ok(_) => {}
                Err(refused @ (ApiError::Unauthorized(_) | ApiError::Forbidden(_))) => {
                    tracing::info!(reason = %refused, "an events stream ends: its token may no longer read the log");
                    return None;
                }
                // The database is away: the read below fails as well, and
                // both are tried again.
                Err(_) => {}
            }
            // Subscribed before the read: a commit after it wakes the wait.
            let mut written = replica
                .term()
                .map(|term| term.state.committer().events_written());
            match replica.events_after(self.cursor, PAGE).await {
                Ok(page) if !page.is_empty() => {
                    self.failing = false;
                    if let Some(last) = page.last() {
                        self.cursor = last.seq;
                    }
                    let filter = &self.filter;
                    self.ready
                        .extend(page.into_iter().filter(|event| filter.admits(event)));
                    continue;
                }
                Ok(_) => self.failing = false,
                Err(error) => {
                    if !self.failing {
                        tracing::warn!(%error, after = self.cursor, "an events stream cannot read the log; retrying");
                    }
                    self.failing = true;
                }
            }
            let woken = async {
                let changed = match written.as_mut() {
                    Some(written) => written.changed().await.is_ok(),
                    None => false,
                };
                // A term that ended wakes no one any more: poll.
                if !changed {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = self.closing.changed() => {}
                () = woken => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

/// One event on the wire.
fn sse(stored: StoredEvent) -> Event {
    let seq = stored.seq;
    let kind = stored.event.kind.clone();
    let view = event_view(stored);
    let event = Event::default().id(seq.to_string());
    // Kinds are sluice's own words; a line break would break the framing.
    let event = if kind.contains(['\r', '\n']) || kind.is_empty() {
        event
    } else {
        event.event(kind)
    };
    event.json_data(&view).unwrap_or_else(|error| {
        tracing::error!(%error, seq, "encoding an event for a stream");
        Event::default()
            .id(seq.to_string())
            .comment("unencodable event")
    })
}
