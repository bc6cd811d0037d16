//! Bearer tokens and roles.
//!
//! A token is `slc_` followed by 64 hex digits from the OS's random source;
//! only its SHA-256 is stored, and its id (`sluice token list`) is the start
//! of that hash. Roles: `agent` (check-in and its own host's desired
//! versions only, bound to one host id and, when an enrollment made it, to
//! that enrollment's selector), `enroll` (enrolls hosts whose labels match
//! its selector, a limited number of times, and nothing else), `viewer`
//! (reads), `operator` (rollouts: create and act), `admin` (everything,
//! including tokens, freeze and import). Each handler states what it needs
//! with [`Caller::require`]. Any token may expire: from then on it is
//! refused, as a revoked one is.
//!
//! The leader holds the stored tokens in memory ([`Tokens`]), loaded with
//! the rest of its state. A token memory does not know is looked up in the
//! store ([`Tokens::find`]): one written straight into the database by
//! another process ([`create_in_database`], behind `sluice token create
//! --database-url`) works at its first use. Hashes the store did not know
//! are remembered briefly, and few lookups run at once, so that unknown
//! tokens cannot hammer the database.
//!
//! Revocation and expiry are effective at once on every replica: a token
//! is checked either against the leader's memory, which a revocation (made
//! by the leader, as every change is) updates before it answers, or, on a
//! standby's own endpoints, against the database itself; expiry is checked
//! at every use against the clock. A lookup of the store that was under way
//! while a token was revoked does not put it back in memory ([`Tokens`]
//! counts revocations). The one lag is the miss cache's: a token written
//! straight into the database by another process is refused for up to
//! [`MISS_TTL`] after a failed attempt.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use sluice_api::admin::{Role, TokenCreated, TokenRequest};
use sluice_core::selector::Selector;
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

/// How often a token's last use is written to the store, at most: memory
/// knows it to the second, the store to within this.
const USE_WRITTEN_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_secs(300);

/// What a token may do, as loaded from the store.
#[derive(Debug)]
pub struct Token {
    /// SHA-256 (hex) of its secret.
    pub hash: String,
    pub role: Role,
    /// For agent tokens, the host they may check in as.
    pub host: Option<String>,
    /// For enrollment tokens, the selector of the hosts they enroll; for
    /// the tokens those made, the selector the host's labels must match.
    pub selector: Option<Selector>,
    /// Who acts with it, for the event log: its name, else its role and
    /// the start of its hash.
    pub actor: String,
    pub expires_at: Option<Timestamp>,
    revoked: AtomicBool,
    used: Mutex<Used>,
}

/// A token's last use: as memory knows it, and as last written.
#[derive(Debug, Default)]
struct Used {
    at: Option<Timestamp>,
    written: Option<Timestamp>,
}

impl Token {
    /// The token of `record`; `None` (logged) when its stored selector does
    /// not parse: such a token is refused rather than honoured unbound.
    pub(crate) fn of(record: &TokenRecord) -> Option<Token> {
        let selector = match record.selector.as_deref().map(Selector::parse).transpose() {
            Ok(selector) => selector,
            Err(error) => {
                tracing::error!(token = %token_id(&record.hash), %error, "a stored token's selector does not parse; the token is refused");
                return None;
            }
        };
        let actor = match &record.name {
            Some(name) if !name.trim().is_empty() => name.clone(),
            _ => format!(
                "{}-{}",
                record.role,
                &record.hash[..8.min(record.hash.len())]
            ),
        };
        Some(Token {
            hash: record.hash.clone(),
            role: vocabulary::wire_role(record.role),
            host: record.host.clone(),
            selector,
            actor,
            expires_at: record.expires_at,
            revoked: AtomicBool::new(false),
            used: Mutex::new(Used {
                at: record.last_used_at,
                written: record.last_used_at,
            }),
        })
    }

    /// The token's id: the start of its hash.
    pub fn id(&self) -> String {
        token_id(&self.hash)
    }

    /// Whether it was revoked (memory let go of it).
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Fails with 401, saying why, unless the token may be used at `now`.
    pub fn check_usable(&self, now: Timestamp) -> Result<(), ApiError> {
        if self.is_revoked() {
            return Err(ApiError::Unauthorized(
                "this token was revoked; ask an admin for a new one".to_owned(),
            ));
        }
        match self.expires_at {
            Some(at) if at <= now => Err(ApiError::Unauthorized(format!(
                "this token expired at {}; ask an admin for a new one (sluice token create --expires D)",
                crate::clock::rfc3339(at)
            ))),
            _ => Ok(()),
        }
    }

    /// Its last use, as memory knows it.
    pub fn last_used(&self) -> Option<Timestamp> {
        self.lock_used().at
    }

    /// Records a use at `now`; `true` when it is time to write it (the
    /// last write is [`USE_WRITTEN_EVERY`] old, or there was none).
    pub fn touch(&self, now: Timestamp) -> bool {
        let mut used = self.lock_used();
        used.at = used.at.max(Some(now));
        let due = used
            .written
            .is_none_or(|written| now.duration_since(written) >= USE_WRITTEN_EVERY);
        if due {
            used.written = Some(now);
        }
        due
    }

    fn lock_used(&self) -> std::sync::MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A token's id: the first 16 hex digits of its hash (64 bits: no two
/// tokens of a fleet share one, and it gives nothing of the secret away).
pub fn token_id(hash: &str) -> String {
    hash.chars().take(16).collect()
}

/// The known tokens by SHA-256 (hex) of their secret, and the hashes the
/// store did not know lately.
#[derive(Debug)]
pub struct Tokens {
    by_hash: RwLock<HashMap<String, Arc<Token>>>,
    /// Grows (under `by_hash`'s write lock) whenever a token leaves memory,
    /// so that a store lookup under way meanwhile does not put it back.
    revocations: AtomicU64,
    misses: Mutex<Misses>,
    lookups: tokio::sync::Semaphore,
}

impl Default for Tokens {
    fn default() -> Tokens {
        Tokens {
            by_hash: RwLock::default(),
            revocations: AtomicU64::new(0),
            misses: Mutex::default(),
            lookups: tokio::sync::Semaphore::new(LOOKUPS),
        }
    }
}

impl Tokens {
    /// Knows the token of `record` from now on; returns it (`None` when its
    /// stored selector does not parse).
    pub fn insert(&self, record: &TokenRecord) -> Option<Arc<Token>> {
        let token = Arc::new(Token::of(record)?);
        self.write().insert(record.hash.clone(), Arc::clone(&token));
        Some(token)
    }

    /// How many times tokens left memory so far: taken before a write that
    /// creates a token, for [`Tokens::insert_unless_revoked`].
    pub fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::Acquire)
    }

    /// Knows the token of `record`, just made durable, unless a token left
    /// memory since `revocations` was read ([`Tokens::revocations`]): a
    /// revocation (of its host, say) committed meanwhile may have deleted
    /// it from the store, so memory leaves it to a lookup of the store at
    /// its first use.
    pub fn insert_unless_revoked(&self, record: &TokenRecord, revocations: u64) {
        let Some(token) = Token::of(record) else {
            return;
        };
        let mut by_hash = self.write();
        if self.revocations.load(Ordering::Acquire) == revocations {
            by_hash.insert(record.hash.clone(), Arc::new(token));
        }
    }

    /// Replaces every known token with `records` (memory rebuilt from the
    /// store).
    pub fn replace_all(&self, records: &[TokenRecord]) {
        let mut by_hash = self.write();
        // A lookup under way reads the store again: it may have read it
        // before what memory is rebuilt from. (The dashboard's sessions are
        // rebuilt beside the tokens.)
        self.revocations.fetch_add(1, Ordering::AcqRel);
        by_hash.clear();
        for record in records {
            if let Some(token) = Token::of(record) {
                by_hash.insert(record.hash.clone(), Arc::new(token));
            }
        }
    }

    /// Lets go of the tokens of `hashes` (revoked and durable): they are
    /// refused from now on, also by the dashboard's sessions signed in
    /// with them.
    pub fn revoke(&self, hashes: &[String]) {
        let mut by_hash = self.write();
        self.revocations.fetch_add(1, Ordering::AcqRel);
        for hash in hashes {
            if let Some(token) = by_hash.remove(hash) {
                token.revoked.store(true, Ordering::Release);
            }
        }
    }

    /// The token whose secret hashes to `hash`, if memory knows it.
    pub fn by_hash(&self, hash: &str) -> Option<Arc<Token>> {
        self.read().get(hash).cloned()
    }

    /// Every token memory knows.
    pub fn all(&self) -> Vec<Arc<Token>> {
        self.read().values().cloned().collect()
    }

    /// The token of `secret`: from memory, else from the store, which may
    /// hold a token another process wrote (it is known from then on). A
    /// hash the store did not know is not asked about again for
    /// [`MISS_TTL`]. Fails only when the store cannot be read. Expiry is
    /// the caller's to check ([`Token::check_usable`]).
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
        loop {
            // Another request may have looked it up meanwhile.
            if let Some(found) = known() {
                return Ok(found);
            }
            let revocations = self.revocations.load(Ordering::Acquire);
            let Some(record) = store.token(&hash).await? else {
                self.lock_misses().add(hash, Instant::now());
                return Ok(None);
            };
            let mut by_hash = self.write();
            if self.revocations.load(Ordering::Acquire) != revocations {
                // A revocation happened while the store was read: what it
                // said may be from before; ask again.
                continue;
            }
            let Some(token) = Token::of(&record).map(Arc::new) else {
                return Ok(None);
            };
            by_hash.insert(hash.clone(), Arc::clone(&token));
            tracing::info!(actor = %token.actor, role = %record.role, "accepted a token stored by another process");
            return Ok(Some(token));
        }
    }

    /// Whether the store did not know `hash` lately.
    fn missed(&self, hash: &str, now: Instant) -> bool {
        self.lock_misses().contains(hash, now)
    }

    fn lock_misses(&self) -> std::sync::MutexGuard<'_, Misses> {
        self.misses.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Token>>> {
        self.by_hash.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Token>>> {
        self.by_hash.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn has_admin(&self) -> bool {
        self.read().values().any(|token| token.role == Role::Admin)
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

/// Longest token name.
const MAX_NAME: usize = 128;
/// Most hosts one enrollment token may enroll.
pub use sluice_api::admin::MAX_USES;

/// A token request, valid: what [`token_writes`] stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub role: Role,
    pub host: Option<String>,
    pub name: Option<String>,
    /// Canonical text.
    pub selector: Option<String>,
    pub uses: Option<u64>,
    pub expires_at: Option<Timestamp>,
    /// Why it is made, trimmed, not blank.
    pub reason: String,
}

/// Checks `request` at `now`, failing with 400 naming the field: an agent
/// token is bound to one host, an enrollment token has a selector and a
/// number of uses, no other token has either; a name is short and printable
/// and not what a token id looks like; an expiry is a duration of sluice's
/// grammar; a reason is given.
pub fn check_request(request: &TokenRequest, now: Timestamp) -> Result<NewToken, ApiError> {
    let role = request.role;
    let reason = crate::routes::reason_text(&request.reason, "create a token")?;
    match (role, &request.host) {
        (Role::Agent, None) => {
            return Err(ApiError::bad_field(
                "host",
                "an agent token is bound to one host: give its id in host (or let hosts enroll with an enrollment token: --role enroll)",
            ))
        }
        (Role::Agent, Some(_)) | (_, None) => {}
        (_, Some(_)) => {
            return Err(ApiError::bad_field(
                "host",
                "only agent tokens are bound to a host; leave host out for enroll, viewer, operator and admin tokens",
            ))
        }
    }
    let selector = match (role, request.selector.as_deref()) {
        (Role::Enroll, None) => {
            return Err(ApiError::bad_field(
                "selector",
                "an enrollment token needs the selector of the hosts it may enroll, such as site in (sto, lon)",
            ))
        }
        (Role::Enroll, Some(text)) => {
            let selector = Selector::parse(text).map_err(|error| {
                ApiError::bad_field("selector", format!("{text:?} is not a label selector: {error}"))
            })?;
            if selector.is_empty() {
                return Err(ApiError::bad_field(
                    "selector",
                    "an enrollment token's selector must name the hosts it may enroll (such as site in (sto, lon)); an empty one would enroll any host",
                ));
            }
            Some(selector.to_string())
        }
        (_, None) => None,
        (_, Some(_)) => {
            return Err(ApiError::bad_field(
                "selector",
                "only enrollment tokens take a selector (--role enroll)",
            ))
        }
    };
    let uses = match (role, request.uses) {
        (Role::Enroll, None) => {
            return Err(ApiError::bad_field(
                "uses",
                format!(
                    "an enrollment token needs the number of hosts it may enroll, 1 to {MAX_USES}"
                ),
            ))
        }
        (Role::Enroll, Some(uses)) if !(1..=MAX_USES).contains(&uses) => {
            return Err(ApiError::bad_field(
                "uses",
                format!("{uses} uses; an enrollment token may enroll 1 to {MAX_USES} hosts"),
            ))
        }
        (Role::Enroll, Some(uses)) => Some(uses),
        (_, None) => None,
        (_, Some(_)) => {
            return Err(ApiError::bad_field(
                "uses",
                "only enrollment tokens are limited in uses (--role enroll)",
            ))
        }
    };
    let name = match request.name.as_deref().map(str::trim) {
        None => None,
        Some(name) => {
            if name.is_empty()
                || name.chars().count() > MAX_NAME
                || name.chars().any(char::is_control)
            {
                return Err(ApiError::bad_field(
                    "name",
                    format!(
                        "a token's name is 1 to {MAX_NAME} characters without control characters"
                    ),
                ));
            }
            if looks_like_id(name) {
                return Err(ApiError::bad_field(
                    "name",
                    format!("{name:?} looks like a token id (16 hex digits); choose a name that does not"),
                ));
            }
            Some(name.to_owned())
        }
    };
    let expires_at = match request.expires.as_deref() {
        None => None,
        Some(text) => {
            let seconds = sluice_api::duration::parse_seconds(text)
                .map_err(|error| ApiError::bad_field("expires", format!("{error}")))?;
            if seconds == 0 {
                return Err(ApiError::bad_field(
                    "expires",
                    "a token must live at least 1s; leave expires out for one that does not expire",
                ));
            }
            let seconds = i64::try_from(seconds)
                .map_err(|_| ApiError::bad_field("expires", "at most a year"))?;
            Some(
                now.checked_add(jiff::SignedDuration::from_secs(seconds))
                    .map_err(|error| ApiError::bad_field("expires", error.to_string()))?,
            )
        }
    };
    Ok(NewToken {
        role,
        host: request.host.as_ref().map(ToString::to_string),
        name,
        selector,
        uses,
        expires_at,
        reason,
    })
}

/// Whether `text` is what a token id looks like (16 lowercase hex digits).
pub fn looks_like_id(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Adds the writes that store a new token of `secret` as `token` says,
/// with its `token_created` event by `actor`; returns the token's record.
pub fn token_writes(
    secret: &str,
    token: &NewToken,
    actor: &str,
    now: Timestamp,
    writes: &mut Vec<Write>,
) -> TokenRecord {
    let record = TokenRecord {
        host: token.host.clone(),
        name: token.name.clone(),
        selector: token.selector.clone(),
        expires_at: token.expires_at,
        uses_left: token
            .uses
            .map(|uses| i64::try_from(uses).unwrap_or(i64::MAX)),
        ..TokenRecord::new(
            hash_secret(secret),
            vocabulary::stored_role(token.role),
            now,
        )
    };
    writes.push(Write::Token(record.clone()));
    writes.push(Write::Event(NewEvent {
        rollout: None,
        at: now,
        actor: Some(actor.to_owned()),
        kind: "token_created".to_owned(),
        data: serde_json::json!({
            "id": token_id(&record.hash),
            "role": token.role.as_str(),
            "host": token.host,
            "name": token.name,
            "selector": token.selector,
            "uses": token.uses,
            "expires_at": token.expires_at.map(crate::clock::rfc3339),
            "reason": token.reason,
        }),
    }));
    record
}

/// The answer to a token's creation: the secret, once, and what it is.
pub fn created(secret: String, record: &TokenRecord) -> TokenCreated {
    TokenCreated {
        token: secret,
        id: token_id(&record.hash),
        role: vocabulary::wire_role(record.role),
        host: record.host.clone(),
        name: record.name.clone(),
        selector: record.selector.clone(),
        uses_left: record.uses_left.and_then(|uses| u64::try_from(uses).ok()),
        expires_at: record.expires_at.map(crate::clock::rfc3339),
    }
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
    let now = Timestamp::now();
    let token = check_request(request, now).map_err(|error| anyhow::anyhow!("{error}"))?;
    // The store's errors name the database, its password redacted.
    let store = PgStore::open(url.expose()).await?;
    let secret = new_secret()?;
    let mut writes = Vec::new();
    let record = token_writes(&secret, &token, actor, now, &mut writes);
    let stored = store.commit(&writes).await.context("storing the token");
    store.close().await;
    stored?;
    Ok(created(secret, &record))
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

/// The authenticated caller of a request: a token that may be used now,
/// and the client's address, for the audit log ([`crate::audit::Source`]).
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Token>, pub Option<std::net::IpAddr>);

impl Caller {
    pub fn token(&self) -> &Token {
        &self.0
    }

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
            (Role::Enroll, _) => Err(ApiError::Forbidden(
                "an enrollment token may only enroll hosts (POST /v1/agent/enroll); check in with the token the enrollment gave".to_owned(),
            )),
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

/// Fails with 403 naming the label unless `labels` keep a host inside the
/// enrollment selector its token is bound to (`whose` says whose selector,
/// for the message).
pub fn check_labels(
    selector: &Selector,
    labels: &BTreeMap<String, String>,
    whose: &str,
) -> Result<(), ApiError> {
    let Some((key, requirement)) = selector.unmet_by(|key| labels.get(key).map(String::as_str))
    else {
        return Ok(());
    };
    let label = match labels.get(key) {
        Some(value) => format!("label {key}={value} is outside"),
        None => format!("label {key} is missing from"),
    };
    Err(ApiError::Forbidden(format!(
        "{label} {whose} selector {selector} (it needs {requirement})"
    )))
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
        let token = state
            .tokens()
            .find(secret, state.store())
            .await
            .map_err(|error| ApiError::Unavailable(format!("checking the token: {error}")))?
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "unknown token; use the admin token from <data-dir>/admin.token or one made with sluice token create".to_owned(),
                )
            })?;
        let now = state.now();
        token.check_usable(now)?;
        // The agents' calls have their own bound (the check-in queue).
        if !parts.uri.path().starts_with("/v1/agent/") {
            state.limit_rate(&token.hash)?;
        }
        if token.touch(now) {
            // Not awaited: a lost last use costs nothing but its time.
            let hash = token.hash.clone();
            let (_, _pending) =
                state.change(|_, at, writes| writes.push(Write::TokenUsed { hash, at }));
        }
        Ok(Caller(token, crate::audit::Source::of(&parts.extensions)))
    }
}

#[cfg(test)]
mod tests {
    use sluice_store::TokenRole;

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
    fn a_token_made_while_another_was_revoked_is_left_to_the_store() {
        let tokens = Tokens::default();
        let made = TokenRecord::new("ab".repeat(32), TokenRole::Agent, Timestamp::UNIX_EPOCH);
        let before = tokens.revocations();
        tokens.revoke(&["cd".repeat(32)]);
        tokens.insert_unless_revoked(&made, before);
        assert!(tokens.by_hash(&made.hash).is_none());
        tokens.insert_unless_revoked(&made, tokens.revocations());
        assert!(tokens.by_hash(&made.hash).is_some());
    }

    /// A store lookup under way while the token is revoked does not put
    /// it back in memory: it asks again, and the store no longer knows it.
    #[tokio::test]
    async fn a_lookup_racing_a_revocation_does_not_bring_the_token_back() {
        let secret = new_secret().expect("a secret");
        let record = TokenRecord::new(
            hash_secret(&secret),
            TokenRole::Viewer,
            Timestamp::UNIX_EPOCH,
        );
        let store = Arc::new(crate::test_store::TestStore::failing(Vec::new()));
        store.lookup_gate.forget_permits(usize::MAX);
        // The first lookup reads the token as it was; the second, after the
        // revocation, finds nothing.
        store
            .lookups
            .lock()
            .expect("lock")
            .push_back(record.clone());
        let tokens = Arc::new(Tokens::default());
        let finding = tokio::spawn({
            let (tokens, store, secret) = (Arc::clone(&tokens), Arc::clone(&store), secret.clone());
            async move { tokens.find(&secret, &*store).await }
        });
        // The lookup is waiting in the store; the token is revoked meanwhile.
        while store
            .lookups_begun
            .load(std::sync::atomic::Ordering::Acquire)
            == 0
        {
            tokio::task::yield_now().await;
        }
        tokens.revoke(std::slice::from_ref(&record.hash));
        store.lookup_gate.add_permits(2);
        let found = finding
            .await
            .expect("the lookup")
            .expect("the store answered");
        assert!(found.is_none(), "a revoked token came back: {found:?}");
        assert!(tokens.by_hash(&record.hash).is_none());
    }

    #[test]
    fn touching_writes_the_last_use_every_few_minutes_at_most() {
        let record = TokenRecord::new("ab".repeat(32), TokenRole::Agent, Timestamp::UNIX_EPOCH);
        let token = Token::of(&record).expect("a token");
        let start: Timestamp = "2026-03-01T09:00:00Z".parse().expect("a time");
        assert!(token.touch(start), "never written");
        assert!(!token.touch(start + jiff::SignedDuration::from_secs(60)));
        assert_eq!(
            token.last_used(),
            Some(start + jiff::SignedDuration::from_secs(60))
        );
        assert!(token.touch(start + USE_WRITTEN_EVERY));
    }

    #[test]
    fn expired_and_revoked_tokens_are_not_usable() {
        let now: Timestamp = "2026-03-01T09:00:00Z".parse().expect("a time");
        let record = TokenRecord {
            expires_at: Some(now),
            ..TokenRecord::new("ab".repeat(32), TokenRole::Viewer, Timestamp::UNIX_EPOCH)
        };
        let tokens = Tokens::default();
        let token = tokens.insert(&record).expect("a token");
        assert!(token
            .check_usable(now - jiff::SignedDuration::from_secs(1))
            .is_ok());
        let expired = token.check_usable(now).expect_err("expired");
        assert!(
            expired
                .to_string()
                .contains("expired at 2026-03-01T09:00:00"),
            "{expired}"
        );
        tokens.revoke(std::slice::from_ref(&record.hash));
        let revoked = token
            .check_usable(now - jiff::SignedDuration::from_secs(1))
            .expect_err("revoked");
        assert!(revoked.to_string().contains("revoked"), "{revoked}");
    }

    #[test]
    fn a_stored_selector_that_does_not_parse_refuses_the_token() {
        let record = TokenRecord {
            selector: Some("site in (".to_owned()),
            ..TokenRecord::new("ab".repeat(32), TokenRole::Agent, Timestamp::UNIX_EPOCH)
        };
        assert!(Tokens::default().insert(&record).is_none());
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
