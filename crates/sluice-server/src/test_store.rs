//! A store for unit tests of the group commit and of what answers reveal:
//! it refuses a given number of commits, then records every batch, and
//! each commit first waits for a permit the test hands out. Token lookups
//! give the answers the test queued, each once a permit of its own lets it.

use std::sync::Mutex;

use sluice_store::{
    Enrolled, Enrollment, LogQuery, Part, SampleRecord, StateSampleRecord, Store, StoreError,
    StoredEvent, TokenRecord, Write,
};

/// Fails the first commits with `failures` (in order), then records every
/// batch; each commit first waits for a permit of `gate`.
#[derive(Debug)]
pub struct TestStore {
    pub failures: Mutex<Vec<StoreError>>,
    pub gate: tokio::sync::Semaphore,
    pub batches: Mutex<Vec<Vec<Write>>>,
    /// What `token` answers, in order; then nothing.
    pub lookups: Mutex<std::collections::VecDeque<TokenRecord>>,
    /// Each `token` lookup first waits for a permit of this.
    pub lookup_gate: tokio::sync::Semaphore,
    /// `token` lookups begun.
    pub lookups_begun: std::sync::atomic::AtomicUsize,
}

impl TestStore {
    /// Fails the first commits with these errors, in order.
    pub fn failing(failures: Vec<StoreError>) -> TestStore {
        TestStore {
            failures: Mutex::new(failures),
            gate: tokio::sync::Semaphore::new(tokio::sync::Semaphore::MAX_PERMITS),
            batches: Mutex::default(),
            lookups: Mutex::default(),
            lookup_gate: tokio::sync::Semaphore::new(tokio::sync::Semaphore::MAX_PERMITS),
            lookups_begun: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Commits only as the test adds permits.
    pub fn gated() -> TestStore {
        TestStore {
            gate: tokio::sync::Semaphore::new(0),
            ..TestStore::failing(Vec::new())
        }
    }
}

#[async_trait::async_trait]
impl Store for TestStore {
    async fn load_parts(&self, _each: &mut (dyn FnMut(Part) + Send)) -> Result<(), StoreError> {
        Ok(())
    }

    async fn commit(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.gate
            .acquire()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .forget();
        let mut failures = self.failures.lock().expect("lock");
        if !failures.is_empty() {
            return Err(failures.remove(0));
        }
        self.batches.lock().expect("lock").push(batch.to_vec());
        Ok(())
    }

    async fn token(&self, _: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.lookups_begun
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.lookup_gate
            .acquire()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .forget();
        Ok(self.lookups.lock().expect("lock").pop_front())
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(Vec::new())
    }

    async fn tokens_page(
        &self,
        _: &sluice_store::TokenPage,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(Vec::new())
    }

    async fn enroll(&self, _: &Enrollment) -> Result<Enrolled, StoreError> {
        Ok(Enrolled::UnknownToken)
    }

    async fn events(&self, _: &str, _: i64, _: u32) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn events_after(&self, _: i64, _: u32) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn log_events(&self, _: &LogQuery) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn audit(
        &self,
        _: &sluice_store::AuditQuery,
    ) -> Result<Vec<sluice_store::StoredAudit>, StoreError> {
        Ok(Vec::new())
    }

    async fn add_samples(&self, _: &[SampleRecord]) -> Result<(), StoreError> {
        Ok(())
    }

    async fn samples(&self, _: &str) -> Result<Vec<SampleRecord>, StoreError> {
        Ok(Vec::new())
    }

    async fn state_samples(&self, _: &str) -> Result<Vec<StateSampleRecord>, StoreError> {
        Ok(Vec::new())
    }

    async fn webhooks(&self) -> Result<Vec<sluice_store::StoredWebhook>, StoreError> {
        Ok(Vec::new())
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(1)
    }
}
