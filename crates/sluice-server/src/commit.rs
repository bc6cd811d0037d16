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
//! A failed commit is answered with an error to the requests of that batch
//! (their changes are in memory but not durable), and its writes are kept
//! and committed first next time, so the store never holds a later change
//! without an earlier one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_store::{Store, Write};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// At most this many writes are taken into one transaction, unless a single
/// request brings more.
const MAX_BATCH_WRITES: usize = 50_000;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("storage unavailable, the change is not durable yet ({0}); sluice keeps retrying it, so check its effect before repeating it")]
    Store(String),
    #[error("the server is shutting down and did not save the change; retry against the restarted server")]
    Closed,
}

type Ack = oneshot::Sender<Result<(), CommitError>>;

#[derive(Debug)]
enum Message {
    Batch {
        writes: Vec<Write>,
        ack: Ack,
        seq: u64,
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
/// one that is durable. When the two are equal nothing is in flight, and a
/// barrier (an empty batch) is durable at once, without waking the writer.
#[derive(Debug, Default)]
struct Progress {
    submitted: AtomicU64,
    durable: AtomicU64,
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
        let progress = Arc::new(Progress::default());
        let task = tokio::spawn(writer(store, rx, metrics, Arc::clone(&progress)));
        (Committer { tx, progress }, task)
    }

    /// Queues `writes` (possibly none: a barrier that resolves once
    /// everything queued before is durable). Call it under the lock that
    /// guarded the change, so that batches queue in the order of changes.
    pub fn submit(&self, writes: Vec<Write>) -> Pending {
        let (ack, rx) = oneshot::channel();
        let submitted = self.progress.submitted.load(Ordering::Acquire);
        let idle = self.progress.durable.load(Ordering::Acquire) == submitted;
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
        let _ = self.tx.send(Message::Batch { writes, ack, seq });
        Pending(rx)
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
    // Writes of a failed commit, committed first next time.
    let mut carry: Vec<Write> = Vec::new();
    let mut backoff = MIN_BACKOFF;
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
            } => {
                writes.append(&mut batch);
                acks.push(ack);
                last_seq = Some(seq);
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
        let result = if writes.is_empty() {
            Ok(())
        } else {
            let started = Instant::now();
            let result = store.commit(&writes).await;
            metrics.observe_commit(writes.len(), acks.len(), started.elapsed());
            result.map_err(|error| CommitError::Store(error.to_string()))
        };
        let failed = result.is_err();
        if let (false, Some(seq)) = (failed, last_seq) {
            progress.durable.store(seq, Ordering::Release);
        }
        for ack in acks {
            let _ = ack.send(result.clone());
        }
        if let Err(error) = &result {
            metrics.commit_failed();
            tracing::error!(%error, writes = writes.len(), retry_in_ms = backoff.as_millis() as u64, "group commit failed");
            carry = writes;
        } else {
            backoff = MIN_BACKOFF;
        }
        if let Some(done) = stop {
            flush(&*store, &carry).await;
            let _ = done.send(());
            return;
        }
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
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
    use std::sync::Mutex;

    use sluice_store::{ComponentRecord, Loaded, SampleRecord, StoreError, StoredEvent};

    use super::*;

    /// Refuses the first `failures` commits, then records every batch; each
    /// commit first waits for a permit of `gate`.
    #[derive(Debug)]
    struct TestStore {
        failures: Mutex<u32>,
        gate: tokio::sync::Semaphore,
        batches: Mutex<Vec<Vec<Write>>>,
    }

    impl TestStore {
        fn flaky(failures: u32) -> TestStore {
            TestStore {
                failures: Mutex::new(failures),
                gate: tokio::sync::Semaphore::new(tokio::sync::Semaphore::MAX_PERMITS),
                batches: Mutex::default(),
            }
        }

        /// Commits only as the test adds permits.
        fn gated() -> TestStore {
            TestStore {
                gate: tokio::sync::Semaphore::new(0),
                ..TestStore::flaky(0)
            }
        }
    }

    #[async_trait::async_trait]
    impl Store for TestStore {
        async fn load(&self) -> Result<Loaded, StoreError> {
            Ok(Loaded::default())
        }

        async fn commit(&self, batch: &[Write]) -> Result<(), StoreError> {
            self.gate
                .acquire()
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
                .forget();
            let mut failures = self.failures.lock().expect("lock");
            if *failures > 0 {
                *failures -= 1;
                return Err(StoreError::Refused("a constraint failed".to_owned()));
            }
            self.batches.lock().expect("lock").push(batch.to_vec());
            Ok(())
        }

        async fn events(&self, _: &str, _: i64, _: u32) -> Result<Vec<StoredEvent>, StoreError> {
            Ok(Vec::new())
        }

        async fn add_samples(&self, _: &[SampleRecord]) -> Result<(), StoreError> {
            Ok(())
        }

        async fn samples(&self, _: &str) -> Result<Vec<SampleRecord>, StoreError> {
            Ok(Vec::new())
        }

        async fn schema_version(&self) -> Result<i64, StoreError> {
            Ok(1)
        }
    }

    fn write(name: &str) -> Write {
        Write::Component(ComponentRecord {
            name: name.to_owned(),
            stable_version: None,
        })
    }

    #[tokio::test]
    async fn a_failed_batch_is_not_acknowledged_and_is_committed_first_next_time() {
        let store = Arc::new(TestStore::flaky(1));
        let (committer, writer) = Committer::spawn(store.clone(), Arc::new(Metrics::new()));
        let first = committer.submit(vec![write("a")]);
        assert!(matches!(first.durable().await, Err(CommitError::Store(_))));
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
