//! Bearer tokens and roles.
//!
//! A token is `slc_` followed by 64 hex digits from the OS's random source;
//! only its SHA-256 is stored. Roles: `agent` (check-in only, bound to one
//! host id), `viewer` (reads), `operator` (rollouts: create and act), `admin`
//! (everything, including tokens, freeze and import). Each handler states
//! what it needs with [`Caller::require`].
//!
//! The leader holds the stored tokens in memory ([`Tokens`]), loaded with
//! the rest of its state. A token memory does not know is looked up in the
//! store ([`Tokens::find`]): one written straight into the database by
//! another process ([`create_in_database`], behind `sluice token create
//! --database-url`) works at its first use. Hashes the store did not know
//! are remembered briefly, and few lookups run at once, so that unknown
//! tokens cannot hammer the database.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use sluice_api::admin::{Role, TokenCreated, TokenRequest};
use sluice_store::{NewEvent, PgStore, Store, StoreError, TokenRecord, Write};

use crate::config::DatabaseUrl;
use crate::error::ApiError;
use crate::state::AppState;
use crate::vocabulary;

/// How long the store's answer that it does not know a token is believed.
const MISS_TTL: Duration = Duration::from_secs(5);
/// At most this many unknown hashes are remembered (the oldest go first).
const MISSES: usize = 4096;
/// Store lookups of unknown tokens running at once; more wait their turn,
/// and the group commit keeps its connections.
const LOOKUPS: usize = 2;

/// What a token may do, as loaded from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub role: Role,
    /// For agent tokens, the host they may check in as.
    pub host: Option<String>,
    /// Who acts with it, for the event log: its name, else its role and
    /// the start of its hash.
    pub actor: String,
}

/// The known tokens by SHA-256 (hex) of their secret, and the hashes the
/// store did not know lately.
#[derive(Debug)]
pub struct Tokens {
    by_hash: RwLock<HashMap<String, Arc<Token>>>,
    misses: Mutex<Misses>,
    lookups: tokio::sync::Semaphore,
}

impl Default for Tokens {
    fn default() -> Tokens {
        Tokens {
            by_hash: RwLock::default(),
            misses: Mutex::default(),
            lookups: tokio::sync::Semaphore::new(LOOKUPS),
        }
    }
}

impl Tokens {
    /// Knows the token of `record` from now on; returns it.
    pub fn insert(&self, record: &TokenRecord) -> Arc<Token> {
        let role = vocabulary::wire_role(record.role);
        let actor = match &record.name {
            Some(name) if !name.trim().is_empty() => name.clone(),
            _ => format!(
                "{}-{}",
                record.role,
                &record.hash[..8.min(record.hash.len())]
            ),
        };
        let token = Arc::new(Token {
            role,
            host: record.host.clone(),
            actor,
        });
        self.by_hash
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(record.hash.clone(), Arc::clone(&token));
        token
    }

    /// Replaces every known token with `records` (memory rebuilt from the
    /// store).
    pub fn replace_all(&self, records: &[TokenRecord]) {
        self.by_hash
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        for record in records {
            self.insert(record);
        }
    }

    /// The token whose secret hashes to `hash`, if memory knows it.
    pub fn by_hash(&self, hash: &str) -> Option<Arc<Token>> {
        self.by_hash
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .cloned()
    }

    /// The token of `secret`: from memory, else from the store, which may
    /// hold a token another process wrote (it is known from then on). A
    /// hash the store did not know is not asked about again for
    /// [`MISS_TTL`]. Fails only when the store cannot be read.
    pub async fn find(
        &self,
        secret: &str,
        store: &dyn Store,
    ) -> Result<Option<Arc<Token>>, StoreError> {
        let hash = hash_secret(secret);
        let known = || match self.by_hash(&hash) {
            Some(token) => Some(Some(token)),
            None if self.missed(&hash, Instant::now()) => Some(None),
            None => None,
        };
        if let Some(found) = known() {
            return Ok(found);
        }
        // The semaphore is never closed.
        let _turn = self.lookups.acquire().await.ok();
        // Another request may have looked it up meanwhile.
        if let Some(found) = known() {
            return Ok(found);
        }
        match store.token(&hash).await? {
            Some(record) => {
                let token = self.insert(&record);
                tracing::info!(actor = %token.actor, role = %record.role, "accepted a token stored by another process");
                Ok(Some(token))
            }
            None => {
                self.lock_misses().add(hash, Instant::now());
                Ok(None)
            }
        }
    }

    /// Whether the store did not know `hash` lately.
    fn missed(&self, hash: &str, now: Instant) -> bool {
        self.lock_misses().contains(hash, now)
    }

    fn lock_misses(&self) -> std::sync::MutexGuard<'_, Misses> {
        self.misses.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn has_admin(&self) -> bool {
        self.by_hash
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|token| token.role == Role::Admin)
    }
}

/// Hashes the store did not know, each for [`MISS_TTL`] from when it was
/// asked, at most [`MISSES`] of them (the oldest are forgotten first).
#[derive(Debug, Default)]
struct Misses {
    at: HashMap<String, Instant>,
    /// Oldest first; an entry whose time is not `at`'s was superseded.
    order: VecDeque<(String, Instant)>,
}

impl Misses {
    fn contains(&mut self, hash: &str, now: Instant) -> bool {
        self.forget_expired(now);
        self.at.contains_key(hash)
    }

    fn add(&mut self, hash: String, now: Instant) {
        self.forget_expired(now);
        while self.order.len() >= MISSES {
            self.forget_oldest();
        }
        self.at.insert(hash.clone(), now);
        self.order.push_back((hash, now));
    }

    fn forget_expired(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= MISS_TTL)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((hash, at)) = self.order.pop_front() {
            if self.at.get(&hash) == Some(&at) {
                self.at.remove(&hash);
            }
        }
    }
}

/// Fails with 400, naming the field, unless `request` binds an agent token
/// to a host and no other token to one.
pub fn check_request(request: &TokenRequest) -> Result<(), ApiError> {
    match (request.role, &request.host) {
        (Role::Agent, None) => Err(ApiError::bad_field(
            "host",
            "an agent token is bound to one host: give its id in host",
        )),
        (Role::Agent, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(ApiError::bad_field(
            "host",
            "only agent tokens are bound to a host; leave host out for viewer, operator and admin tokens",
        )),
    }
}

/// Adds the writes that store a new token of `secret` as `request` asks,
/// with its `token_created` event by `actor`; returns the token's record.
pub fn token_writes(
    secret: &str,
    request: &TokenRequest,
    actor: &str,
    now: Timestamp,
    writes: &mut Vec<Write>,
) -> TokenRecord {
    let record = TokenRecord {
        hash: hash_secret(secret),
        role: vocabulary::stored_role(request.role),
        host: request.host.as_ref().map(ToString::to_string),
        name: request.name.clone(),
        created_at: now,
    };
    writes.push(Write::Token(record.clone()));
    writes.push(Write::Event(NewEvent {
        rollout: None,
        at: now,
        actor: Some(actor.to_owned()),
        kind: "token_created".to_owned(),
        data: serde_json::json!({
            "role": request.role.as_str(),
            "host": request.host,
            "name": request.name,
        }),
    }));
    record
}

/// Creates a token straight in the PostgreSQL database at `url`, with no
/// server running (to bootstrap a cluster's first admin token): brings the
/// schema up to date, stores the token and its `token_created` event by
/// `actor`, and returns the secret, which is nowhere else. A leader running
/// on the database accepts the token at its first use ([`Tokens::find`]);
/// a replica that starts on it finds an admin token and writes no
/// `admin.token`. Messages name the database without its password.
pub async fn create_in_database(
    url: &DatabaseUrl,
    request: &TokenRequest,
    actor: &str,
) -> anyhow::Result<TokenCreated> {
    check_request(request).map_err(|error| anyhow::anyhow!("{error}"))?;
    // The store's errors name the database, its password redacted.
    let store = PgStore::open(url.expose()).await?;
    let secret = new_secret()?;
    let mut writes = Vec::new();
    token_writes(&secret, request, actor, Timestamp::now(), &mut writes);
    let stored = store.commit(&writes).await.context("storing the token");
    store.close().await;
    stored?;
    Ok(TokenCreated {
        token: secret,
        role: request.role,
        host: request.host.as_ref().map(ToString::to_string),
    })
}

/// SHA-256 of a secret, lowercase hex.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new secret: `slc_` and 32 random bytes in hex.
pub fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("reading the OS random source: {error}"))?;
    Ok(format!("slc_{}", hex::encode(bytes)))
}

/// What an endpoint needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reads: viewer, operator or admin.
    View,
    /// Rollout creation and actions: operator or admin.
    Operate,
    /// Tokens, freeze, import: admin.
    Admin,
}

/// Fails with 403 unless `role` covers `need`.
pub fn require(role: Role, need: Need) -> Result<(), ApiError> {
    let allowed: &[Role] = match need {
        Need::View => &[Role::Viewer, Role::Operator, Role::Admin],
        Need::Operate => &[Role::Operator, Role::Admin],
        Need::Admin => &[Role::Admin],
    };
    if allowed.contains(&role) {
        return Ok(());
    }
    let wanted = match need {
        Need::View => "a viewer, operator or admin token",
        Need::Operate => "an operator or admin token",
        Need::Admin => "an admin token",
    };
    Err(ApiError::Forbidden(format!(
        "this needs {wanted}; the token given has the {} role",
        role.as_str()
    )))
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Token>);

impl Caller {
    pub fn role(&self) -> Role {
        self.0.role
    }

    pub fn actor(&self) -> &str {
        &self.0.actor
    }

    /// Fails with 403 unless the caller's role covers `need`.
    pub fn require(&self, need: Need) -> Result<(), ApiError> {
        require(self.role(), need)
    }

    /// Whether the caller may check in (or read the desired versions) as
    /// `host`: an agent token bound to it, or an admin token.
    pub fn require_host(&self, host: &str) -> Result<(), ApiError> {
        match (self.role(), self.0.host.as_deref()) {
            (Role::Admin, _) => Ok(()),
            (Role::Agent, Some(bound)) if bound == host => Ok(()),
            (Role::Agent, Some(bound)) => Err(ApiError::Forbidden(format!(
                "this agent token is bound to host {bound}; it cannot act as {host}"
            ))),
            (Role::Agent, None) => Err(ApiError::Forbidden(
                "this agent token is bound to no host; create one with sluice token create --role agent --host HOST".to_owned(),
            )),
            (role, _) => Err(ApiError::Forbidden(format!(
                "check-ins need an agent token bound to the host (or an admin token); the token given has the {} role",
                role.as_str()
            ))),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Err(ApiError::Unauthorized(
                "missing bearer token; send Authorization: Bearer TOKEN (the admin token is in <data-dir>/admin.token; others come from sluice token create)".to_owned(),
            ));
        };
        let secret = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized("the authorization header must be Bearer TOKEN".to_owned())
            })?;
        state
            .tokens()
            .find(secret, state.store())
            .await
            .map_err(|error| ApiError::Unavailable(format!("checking the token: {error}")))?
            .map(Caller)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "unknown token; use the admin token from <data-dir>/admin.token or one made with sluice token create".to_owned(),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_are_forgotten_after_a_while_and_bounded() {
        let mut misses = Misses::default();
        let start = Instant::now();
        misses.add("a".to_owned(), start);
        assert!(misses.contains("a", start + MISS_TTL / 2));
        assert!(!misses.contains("b", start));
        assert!(!misses.contains("a", start + MISS_TTL), "forgotten");
        assert!(misses.order.is_empty() && misses.at.is_empty());

        for i in 0..=MISSES {
            misses.add(i.to_string(), start);
        }
        assert_eq!((misses.order.len(), misses.at.len()), (MISSES, MISSES));
        assert!(!misses.contains("0", start), "the oldest went first");
        assert!(misses.contains(&MISSES.to_string(), start));
    }

    #[test]
    fn a_hash_missed_twice_is_remembered_from_its_latest_miss() {
        let mut misses = Misses::default();
        let start = Instant::now();
        misses.add("a".to_owned(), start);
        misses.add("a".to_owned(), start + MISS_TTL / 2);
        // The first entry expires; the second still holds.
        assert!(misses.contains("a", start + MISS_TTL));
        assert!(!misses.contains("a", start + MISS_TTL * 2));
    }

    #[test]
    fn secrets_are_prefixed_and_hash_to_hex() {
        let secret = new_secret().expect("random");
        assert!(secret.starts_with("slc_") && secret.len() == 68, "{secret}");
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
