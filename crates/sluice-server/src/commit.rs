//! Group commit: one writer task owns the store's write side.
//!
//! Whoever changes memory queues the matching writes with
//! [`Committer::submit`] *while still holding the lock that guarded the
//! change*, so the queue holds writes in the order the changes happened. The
//! writer takes everything queued, commits it in one transaction, and only
//! then acknowledges every request of the batch. A request that awaits its
//! acknowledgement therefore knows that its writes, and every write queued
//! before them (the controller's admissions included), are durable.
//!
//! A commit fails in one of two ways ([`StoreError::is_transient`]):
//!
//! - **Try again** (the database is unreachable or busy): the requests of
//!   the batch are answered with an error (their changes are in memory but
//!   not durable yet), and the writes are kept and committed first next
//!   time, after a capped backoff, so the store never holds a later change
//!   without an earlier one.
//! - **Refused** (a constraint, corruption): retrying cannot help. The
//!   requests of the batch fail with what was refused, and memory, which
//!   already holds the refused change and everything built on it, must not
//!   go on claiming it: every batch queued after it is discarded (its
//!   requests fail and may be retried), the writer signals
//!   [`Committer::refused`], and the server rebuilds memory from the store
//!   (`AppState::restore`), which starts a new *generation*. Batches are
//!   tagged with the generation they were built in; those of a discarded
//!   generation never reach the store. Later writes are not wedged behind
//!   the refused batch: the new generation commits as usual.
//!
//! A third way belongs to replicas sharing PostgreSQL: the store is
//! **fenced** by the leader's lease, and a commit after the lease was lost
//! (this replica was paused or cut off, and another took over) fails with
//! `StoreError::Fenced`, writing nothing. This writer then takes nothing
//! more: the batch's requests and every later one fail with
//! [`CommitError::NotLeader`], and [`Committer::fenced`] tells the replica
//! to step down at once (see `crate::replica`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_store::{Store, StoreError, Write};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// At most this many writes are taken into one transaction, unless a single
/// request brings more.
const MAX_BATCH_WRITES: usize = 50_000;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The store could not take the batch now; it is retried.
    #[error("storage unavailable, the change is not durable yet ({0}); sluice keeps retrying it, so check its effect before repeating it")]
    Unavailable(String),
    /// The store refused the batch; it was undone.
    #[error("the store refused the change ({0}); it was undone and nothing of it holds; this is a bug or a damaged database, see the server's log")]
    Refused(String),
    /// An earlier batch was refused and memory is being rebuilt from the
    /// store: this change, built on the refused one, was dropped.
    #[error("an earlier change was refused by the store and sluice is rebuilding its memory from the store; nothing of this change holds, retry it in a moment")]
    Rebuilding,
    #[error("the server is shutting down and did not save the change; retry against the restarted server")]
    Closed,
    /// This replica lost the leader's lease: nothing it decides lands.
    #[error("this replica is no longer the leader ({0}); nothing of this change holds, retry it: another replica leads now")]
    NotLeader(String),
}

type Ack = oneshot::Sender<Result<(), CommitError>>;

#[derive(Debug)]
enum Message {
    Batch {
        writes: Vec<Write>,
        ack: Ack,
        seq: u64,
        generation: u64,
    },
    Stop(oneshot::Sender<()>),
}

/// The sending side of the writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Message>,
    progress: Arc<Progress>,
}

/// Batches are numbered as they are submitted; the writer records the last
/// one it settled (made durable, or discarded). When the two are equal
/// nothing is in flight, and a barrier (an empty batch) is settled at once,
/// without waking the writer.
#[derive(Debug)]
struct Progress {
    submitted: AtomicU64,
    settled: AtomicU64,
    /// The generation of memory new batches are built in.
    generation: AtomicU64,
    /// A batch was refused and memory is not rebuilt yet: whatever is
    /// submitted now is built on the refused change.
    rebuilding: AtomicBool,
    /// Signalled when a batch was refused: memory must be rebuilt.
    refused: Notify,
    /// Why the store fenced this writer off, once it did.
    fenced: std::sync::OnceLock<String>,
    /// Signalled when the store fenced this writer off.
    fenced_notify: Notify,
    /// Counts the commits that held events: wakes the events streams.
    events: watch::Sender<u64>,
}

/// A submitted batch; [`Pending::durable`] resolves once it is committed.
#[derive(Debug)]
#[must_use = "a change is acknowledged only once durable: await it"]
pub struct Pending(oneshot::Receiver<Result<(), CommitError>>);

impl Pending {
    /// Waits until the batch, and everything queued before it, is durable.
    pub async fn durable(self) -> Result<(), CommitError> {
        self.0.await.unwrap_or(Err(CommitError::Closed))
    }
}

impl Committer {
    /// Starts the writer task.
    pub fn spawn(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> (Committer, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let progress = Arc::new(Progress {
            submitted: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            rebuilding: AtomicBool::new(false),
            refused: Notify::new(),
            fenced: std::sync::OnceLock::new(),
            fenced_notify: Notify::new(),
            events: watch::Sender::new(0),
        });
        let task = tokio::spawn(writer(store, rx, metrics, Arc::clone(&progress)));
        (Committer { tx, progress }, task)
    }

    /// Queues `writes` (possibly none: a barrier that resolves once
    /// everything queued before is durable). Call it under the lock that
    /// guarded the change, so that batches queue in the order of changes.
    pub fn submit(&self, writes: Vec<Write>) -> Pending {
        let (ack, rx) = oneshot::channel();
        if let Some(why) = self.progress.fenced.get() {
            let _ = ack.send(Err(CommitError::NotLeader(why.clone())));
            return Pending(rx);
        }
        if self.progress.rebuilding.load(Ordering::Acquire) {
            let _ = ack.send(Err(CommitError::Rebuilding));
            return Pending(rx);
        }
        let submitted = self.progress.submitted.load(Ordering::Acquire);
        let idle = self.progress.settled.load(Ordering::Acquire) == submitted;
        if writes.is_empty() && idle && !self.tx.is_closed() {
            let _ = ack.send(Ok(()));
            return Pending(rx);
        }
        // Submissions happen under the lock that guarded the change, so
        // this numbering is the order of the queue.
        let seq = submitted + 1;
        self.progress.submitted.store(seq, Ordering::Release);
        // A stopped writer drops the message and with it `ack`: the caller
        // then learns that nothing was saved.
        let generation = self.progress.generation.load(Ordering::Acquire);
        let _ = self.tx.send(Message::Batch {
            writes,
            ack,
            seq,
            generation,
        });
        Pending(rx)
    }

    /// Resolves when the store refused a batch: memory holds changes the
    /// store does not, and must be rebuilt from it.
    pub async fn refused(&self) {
        self.progress.refused.notified().await;
    }

    /// Resolves once the store fenced this writer off: the replica lost the
    /// leader's lease and must step down.
    pub async fn fenced(&self) {
        let notified = self.progress.fenced_notify.notified();
        if self.progress.fenced.get().is_some() {
            return;
        }
        notified.await;
    }

    /// Changes each time a commit that held events is durable: subscribe
    /// before reading the log, and a change means the log may have grown
    /// since that read (the events streams wait on it).
    pub fn events_written(&self) -> watch::Receiver<u64> {
        self.progress.events.subscribe()
    }

    /// Starts a new generation: call it under the lock that guards memory,
    /// right after memory was rebuilt from the store. Batches of earlier
    /// generations still queued are discarded.
    pub fn next_generation(&self) {
        self.progress.generation.fetch_add(1, Ordering::AcqRel);
        self.progress.rebuilding.store(false, Ordering::Release);
    }

    /// Commits everything queued so far and stops the writer.
    pub async fn stop(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Message::Stop(done)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    metrics: Arc<Metrics>,
    progress: Arc<Progress>,
) {
    // Writes of a commit that may succeed when tried again, committed first
    // next time.
    let mut carry: Vec<Write> = Vec::new();
    let mut backoff = MIN_BACKOFF;
    // Batches of this generation and older are built on a refused change.
    let mut discarded: Option<u64> = None;
    loop {
        let Some(first) = rx.recv().await else {
            flush(&*store, &carry).await;
            return;
        };
        let mut writes = std::mem::take(&mut carry);
        let mut acks = Vec::new();
        let mut stop = None;
        let mut last_seq = None;
        let mut take = |message: Message, writes: &mut Vec<Write>| match message {
            Message::Batch {
                writes: mut batch,
                ack,
                seq,
                generation,
            } => {
                if let Some(why) = progress.fenced.get() {
                    let _ = ack.send(Err(CommitError::NotLeader(why.clone())));
                    progress.settled.fetch_max(seq, Ordering::AcqRel);
                } else if discarded.is_some_and(|old| generation <= old) {
                    let _ = ack.send(Err(CommitError::Rebuilding));
                    progress.settled.fetch_max(seq, Ordering::AcqRel);
                } else {
                    writes.append(&mut batch);
                    acks.push(ack);
                    last_seq = Some(seq);
                }
                None
            }
            Message::Stop(done) => Some(done),
        };
        stop = stop.or(take(first, &mut writes));
        while stop.is_none() && writes.len() < MAX_BATCH_WRITES {
            match rx.try_recv() {
                Ok(message) => stop = take(message, &mut writes),
                Err(_) => break,
            }
        }
        let events = writes.iter().any(|write| matches!(write, Write::Event(_)));
        let result = if writes.is_empty() {
            Ok(())
        } else {
            let started = Instant::now();
            let result = store.commit(&writes).await;
            metrics.observe_commit(writes.len(), acks.len(), started.elapsed());
            result
        };
        let mut retry = false;
        let answer = match result {
            Ok(()) => {
                backoff = MIN_BACKOFF;
                if let Some(seq) = last_seq {
                    progress.settled.fetch_max(seq, Ordering::AcqRel);
                }
                if events {
                    progress.events.send_modify(|count| *count += 1);
                }
                Ok(())
            }
            Err(StoreError::Fenced(why)) => {
                metrics.commit_failed();
                tracing::error!(reason = %why, writes = writes.len(), "the store fenced the group commit off: this replica lost the leader's lease; nothing more is written");
                let _ = progress.fenced.set(why.clone());
                progress.fenced_notify.notify_waiters();
                if let Some(seq) = last_seq {
                    progress.settled.fetch_max(seq, Ordering::AcqRel);
                }
                Err(CommitError::NotLeader(why))
            }
            Err(error) if error.is_transient() => {
                metrics.commit_failed();
                tracing::error!(%error, writes = writes.len(), retry_in_ms = backoff.as_millis() as u64, "group commit failed; retrying");
                carry = writes;
                retry = true;
                Err(CommitError::Unavailable(error.to_string()))
            }
            Err(error) => {
                metrics.commit_failed();
                refused(&error, &writes);
                if let Some(seq) = last_seq {
                    progress.settled.fetch_max(seq, Ordering::AcqRel);
                }
                discarded = Some(progress.generation.load(Ordering::Acquire));
                progress.rebuilding.store(true, Ordering::Release);
                progress.refused.notify_one();
                Err(CommitError::Refused(error.to_string()))
            }
        };
        for ack in acks {
            let _ = ack.send(answer.clone());
        }
        if let Some(done) = stop {
            flush(&*store, &carry).await;
            let _ = done.send(());
            return;
        }
        if retry {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Logs a refused batch with what it held.
fn refused(error: &StoreError, writes: &[Write]) {
    let mut kinds: Vec<(&'static str, usize)> = Vec::new();
    for write in writes {
        let kind = write.kind();
        match kinds.iter_mut().find(|(name, _)| *name == kind) {
            Some((_, count)) => *count += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let held = kinds
        .iter()
        .map(|(kind, count)| format!("{count} {kind}"))
        .collect::<Vec<_>>()
        .join(", ");
    tracing::error!(%error, writes = writes.len(), held = %held, "the store refused a batch: its requests failed, later batches are discarded, memory is rebuilt from the store");
}

/// Last try for writes left over at shutdown.
async fn flush(store: &dyn Store, carry: &[Write]) {
    if carry.is_empty() {
        return;
    }
    if let Err(error) = store.commit(carry).await {
        tracing::error!(%error, writes = carry.len(), "writes lost at shutdown: their requests were answered with an error");
    }
}

#[cfg(test)]
mod tests {
    use sluice_store::ComponentRecord;

    use super::*;
    use crate::test_store::TestStore;

    fn write(name: &str) -> Write {
        Write::Component(ComponentRecord {
            name: name.to_owned(),
            stable_version: None,
        })
    }

    #[tokio::test]
    async fn a_batch_that_may_succeed_later_is_not_acknowledged_and_is_committed_first_next_time() {
        let busy = StoreError::Unavailable("database is locked".to_owned());
        let store = Arc::new(TestStore::failing(vec![busy]));
        let (committer, writer) = Committer::spawn(store.clone(), Arc::new(Metrics::new()));
        let first = committer.submit(vec![write("a")]);
        assert!(matches!(
            first.durable().await,
            Err(CommitError::Unavailable(_))
        ));
        let second = committer.submit(vec![write("b")]);
        assert_eq!(second.durable().await, Ok(()));
        // A barrier resolves once everything before it is durable.
        assert_eq!(committer.submit(Vec::new()).durable().await, Ok(()));
        committer.stop().await;
        writer.await.expect("writer");
        let batches = store.batches.lock().expect("lock").clone();
        assert_eq!(batches, vec![vec![write("a"), write("b")]]);
        // Once stopped, nothing is acknowledged.
        let late = committer.submit(vec![write("c")]);
        assert_eq!(late.durable().await, Err(CommitError::Closed));
    }

    #[tokio::test]
    async fn a_refused_batch_fails_discards_what_was_built_on_it_and_wedges_nothing() {
        let refusal = StoreError::Refused("FOREIGN KEY constraint failed".to_owned());
        let store = Arc::new(TestStore::failing(vec![refusal]));
        let (committer, writer) = Committer::spawn(store.clone(), Arc::new(Metrics::new()));
        let refused = committer.submit(vec![write("a")]);
        let error = refused.durable().await.expect_err("refused");
        assert!(
            matches!(&error, CommitError::Refused(message) if message.contains("FOREIGN KEY")),
            "{error:?}"
        );
        // Memory is rebuilt from the store: the writer said so.
        tokio::time::timeout(Duration::from_secs(10), committer.refused())
            .await
            .expect("the refusal is signalled");
        // Built on the refused change before the rebuild: dropped, and a
        // barrier fails too (what memory shows is not in the store).
        let built_on_it = committer.submit(vec![write("b")]);
        assert_eq!(built_on_it.durable().await, Err(CommitError::Rebuilding));
        assert_eq!(
            committer.submit(Vec::new()).durable().await,
            Err(CommitError::Rebuilding)
        );
        // The rebuilt memory's changes commit as usual.
        committer.next_generation();
        let after = committer.submit(vec![write("c")]);
        assert_eq!(after.durable().await, Ok(()));
        committer.stop().await;
        writer.await.expect("writer");
        let batches = store.batches.lock().expect("lock").clone();
        assert_eq!(batches, vec![vec![write("c")]]);
    }

    #[tokio::test]
    async fn a_barrier_waits_for_the_batch_in_flight() {
        let store = Arc::new(TestStore::gated());
        let (committer, writer) = Committer::spawn(store.clone(), Arc::new(Metrics::new()));
        let batch = committer.submit(vec![write("a")]);
        let barrier = committer.submit(Vec::new());
        let early = tokio::time::timeout(Duration::from_millis(50), barrier.durable()).await;
        assert!(
            early.is_err(),
            "a barrier resolved before the batch before it was durable"
        );
        store.gate.add_permits(1);
        assert_eq!(batch.durable().await, Ok(()));
        // Nothing in flight: a barrier is durable at once, with no commit.
        assert_eq!(committer.submit(Vec::new()).durable().await, Ok(()));
        committer.stop().await;
        writer.await.expect("writer");
    }
}
