//! [`Hooked`]: a real store whose commits a test intercepts. Every other
//! call of [`Store`] goes to the store beneath unchanged, so that a test
//! store is one hook, and a new `Store` method is delegated here once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sluice_store::{
    AuditQuery, Enrolled, Enrollment, LogQuery, Part, SampleRecord, StateSampleRecord, Store,
    StoreError, StoredAudit, StoredEvent, TokenPage, TokenRecord, Write,
};

/// What a commit waits for before it reaches the store beneath: `Ok` lets
/// it through, an error fails it with that error, writing nothing.
pub type Pass = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// Called with each batch before it is committed; the batch is read at
/// once, the future it returns awaited.
pub type CommitHook = Arc<dyn Fn(&[Write]) -> Pass + Send + Sync>;

/// `store`, every commit of which passes `hook` first.
pub struct Hooked<S> {
    store: S,
    hook: CommitHook,
}

impl<S> Hooked<S> {
    pub fn new(store: S, hook: impl Fn(&[Write]) -> Pass + Send + Sync + 'static) -> Hooked<S> {
        Hooked {
            store,
            hook: Arc::new(hook),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Hooked<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooked")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for Hooked<S> {
    async fn load_parts(&self, each: &mut (dyn FnMut(Part) + Send)) -> Result<(), StoreError> {
        self.store.load_parts(each).await
    }

    async fn commit(&self, batch: &[Write]) -> Result<(), StoreError> {
        (self.hook)(batch).await?;
        self.store.commit(batch).await
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.store.token(hash).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.store.tokens().await
    }

    async fn tokens_page(&self, page: &TokenPage) -> Result<Vec<TokenRecord>, StoreError> {
        self.store.tokens_page(page).await
    }

    async fn enroll(&self, enrollment: &Enrollment) -> Result<Enrolled, StoreError> {
        self.store.enroll(enrollment).await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError> {
        self.store.audit(query).await
    }

    async fn events(
        &self,
        rollout: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.events(rollout, after, limit).await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.events_after(after, limit).await
    }

    async fn log_events(&self, query: &LogQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.log_events(query).await
    }

    async fn add_samples(&self, samples: &[SampleRecord]) -> Result<(), StoreError> {
        self.store.add_samples(samples).await
    }

    async fn samples(&self, rollout: &str) -> Result<Vec<SampleRecord>, StoreError> {
        self.store.samples(rollout).await
    }

    async fn state_samples(&self, rollout: &str) -> Result<Vec<StateSampleRecord>, StoreError> {
        self.store.state_samples(rollout).await
    }

    async fn webhooks(&self) -> Result<Vec<sluice_store::StoredWebhook>, StoreError> {
        self.store.webhooks().await
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        self.store.schema_version().await
    }
}
