//! Dashboard sessions: a user signs in with one of the API's bearer tokens
//! (viewer, operator or admin; agent tokens cannot), and gets a random
//! session secret in an HttpOnly, SameSite=Strict cookie. A session lasts
//! [`LIFETIME`] from sign-in, or until the user signs out.
//!
//! Sessions are state like tokens: each is stored (`Write::Session`, table
//! `dashboard_sessions`) through the group commit before its cookie is
//! handed out, its sign-out (`Write::SessionEnded`) before the answer, and
//! the leader loads them with the rest of its state, so a signed-in user
//! stays signed in across a restart and a change of leader. What is stored
//! is the SHA-256 of the secret (as for tokens), the hash of the token it
//! was signed in with (the session acts with that token's role and name)
//! and its times. Its CSRF token is derived from the secret ([`csrf_of`]):
//! nothing in the database lets anyone sign in or forge a form. Expired
//! sessions are not honoured, not loaded, and deleted from the store when
//! memory is loaded and at every sign-in. The one-shot message of the next
//! page ([`Flash`]) stays in memory: losing it at a restart loses a notice.
//! Every POST form carries the session's CSRF token, compared in constant
//! time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use jiff::Timestamp;
use sluice_api::admin::Role;
use sluice_store::SessionRecord;

use super::{DashError, Dashboard};
use crate::auth::{hash_secret, Caller, Need, Token, Tokens};

/// The session cookie.
pub const COOKIE_NAME: &str = "sluice_session";
/// The cookie that pairs a sign-in form with its browser (login CSRF).
pub const SIGNIN_COOKIE: &str = "sluice_signin";
/// How long a session lasts after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// A one-shot message shown on the next page (the outcome of an action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub error: bool,
    pub text: String,
}

#[derive(Debug)]
struct Session {
    token: Arc<Token>,
    expires: Timestamp,
    flash: Option<Flash>,
}

impl Session {
    /// The stored session `record`, acting with `token`.
    fn of(record: &SessionRecord, token: Arc<Token>) -> Session {
        Session {
            token,
            expires: record.expires_at,
            flash: None,
        }
    }
}

/// The signed-in sessions by the hash of their secret, and the one-time
/// sign-in links not used yet by theirs ([`super::link`]).
#[derive(Debug, Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<String, Session>>,
    links: Mutex<HashMap<String, SessionRecord>>,
}

/// A new session for the token of `token_hash`, signed in at `now`: its
/// secret (the cookie's value) and its record, to be stored before it is
/// used ([`Sessions::insert`] once durable).
pub fn new_session(token_hash: &str, now: Timestamp) -> Result<(String, SessionRecord), DashError> {
    let secret = random_hex(32)?;
    let expires_at = now
        .checked_add(LIFETIME)
        .map_err(|error| DashError::Internal(format!("the session's expiry: {error}")))?;
    let record = SessionRecord {
        hash: hash_secret(&secret),
        token: token_hash.to_owned(),
        created_at: now,
        expires_at,
    };
    Ok((secret, record))
}

/// The CSRF token of the session whose secret is `secret`: a hash of its
/// own, so it is never stored, and neither it nor the stored hash gives the
/// other or the secret away.
pub fn csrf_of(secret: &str) -> String {
    hash_secret(&format!("sluice dashboard csrf\0{secret}"))
}

impl Sessions {
    /// Honours the stored session `record` for `token` from now on; expired
    /// sessions are dropped on the way.
    pub fn insert(&self, record: &SessionRecord, token: Arc<Token>, now: Timestamp) {
        let mut sessions = self.lock();
        sessions.retain(|_, session| session.expires > now);
        sessions.insert(record.hash.clone(), Session::of(record, token));
    }

    /// Replaces every session and sign-in link with the stored `records`
    /// (memory rebuilt from the store), each session acting with its token
    /// as `tokens` knows it. Those expired at `now`, and sessions whose
    /// token is not known, are left out. Returns how many sessions were
    /// loaded, and how many sessions and links had expired.
    pub fn replace_all(
        &self,
        records: &[SessionRecord],
        tokens: &Tokens,
        now: Timestamp,
    ) -> (usize, usize) {
        let mut sessions = self.lock();
        let mut links = self.lock_links();
        sessions.clear();
        links.clear();
        let mut expired = 0;
        for record in records {
            if record.expires_at <= now {
                expired += 1;
                continue;
            }
            if super::link::is_link(&record.hash) {
                links.insert(record.hash.clone(), record.clone());
            } else if let Some(token) = tokens.by_hash(&record.token) {
                sessions.insert(record.hash.clone(), Session::of(record, token));
            }
        }
        (sessions.len(), expired)
    }

    /// The live session of `secret` at `now`, taking its one-shot message.
    fn take(&self, secret: &str, now: Timestamp) -> Option<(Arc<Token>, Option<Flash>)> {
        let hash = hash_secret(secret);
        let mut sessions = self.lock();
        let session = sessions.get_mut(&hash)?;
        // A session ends with its token, revoked or expired.
        if session.expires <= now || session.token.check_usable(now).is_err() {
            sessions.remove(&hash);
            return None;
        }
        Some((Arc::clone(&session.token), session.flash.take()))
    }

    /// Leaves a message for the next page of the session of `secret`.
    pub fn flash(&self, secret: &str, flash: Flash) {
        if let Some(session) = self.lock().get_mut(&hash_secret(secret)) {
            session.flash = Some(flash);
        }
    }

    /// Ends the session of `secret` in memory; returns its hash, whose
    /// `Write::SessionEnded` ends it in the store.
    pub fn remove(&self, secret: &str) -> String {
        let hash = hash_secret(secret);
        self.lock().remove(&hash);
        hash
    }

    /// The hashes of the sessions signed in with the token of `token_hash`.
    pub fn of_token(&self, token_hash: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, session)| session.token.hash == token_hash)
            .map(|(hash, _)| hash.clone())
            .collect()
    }

    /// Ends the sessions of these hashes in memory (their end is durable).
    pub fn end(&self, hashes: &[String]) {
        let mut sessions = self.lock();
        for hash in hashes {
            sessions.remove(hash);
        }
    }

    /// Honours the stored sign-in link `record` until it is used or
    /// expires; expired links are dropped on the way.
    pub fn insert_link(&self, record: &SessionRecord, now: Timestamp) {
        let mut links = self.lock_links();
        links.retain(|_, link| link.expires_at > now);
        links.insert(record.hash.clone(), record.clone());
    }

    /// Takes the sign-in link of `hash` for good: its record if it was
    /// live at `now`, else `None` (used, expired or never made). Whoever
    /// takes it is the only one ever to.
    pub fn take_link(&self, hash: &str, now: Timestamp) -> Option<SessionRecord> {
        self.lock_links()
            .remove(hash)
            .filter(|link| link.expires_at > now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_hash.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_links(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionRecord>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The signed-in user of a request. Extracting it from a request without a
/// live session fails with [`DashError::SignIn`] (back to this page after).
#[derive(Debug, Clone)]
pub struct User {
    /// The session's secret, from its cookie.
    pub session: String,
    pub caller: Caller,
    pub csrf: String,
    pub flash: Option<Flash>,
}

impl User {
    pub fn actor(&self) -> &str {
        self.caller.actor()
    }

    pub fn role(&self) -> &'static str {
        self.caller.role().as_str()
    }

    /// Whether the user may act on rollouts (operator or admin).
    pub fn can_operate(&self) -> bool {
        self.caller.require(Need::Operate).is_ok()
    }

    /// Whether the user may freeze the fleet (admin).
    pub fn is_admin(&self) -> bool {
        self.caller.role() == Role::Admin
    }

    /// Fails with 403 unless `given` is this session's CSRF token.
    pub fn check_csrf(&self, given: &str) -> Result<(), DashError> {
        if constant_time_eq(given.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(DashError::Forbidden(
                "the form's csrf token does not match this session; reload the page and try again"
                    .to_owned(),
            ))
        }
    }
}

impl FromRequestParts<Dashboard> for User {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, state: &Dashboard) -> Result<User, DashError> {
        let now = state.app.now();
        let found = cookie(&parts.headers, COOKIE_NAME)
            .and_then(|secret| Some((secret, state.app.sessions().take(secret, now)?)));
        match found {
            Some((secret, (token, flash))) => Ok(User {
                session: secret.to_owned(),
                caller: Caller(token),
                csrf: csrf_of(secret),
                flash,
            }),
            None if parts.method == Method::GET => Err(DashError::SignIn {
                next: parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned(),
            }),
            None => Err(DashError::Forbidden(
                "not signed in (or the session expired); sign in at /signin first".to_owned(),
            )),
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the whole site, and
/// `Secure` when the server is reached over TLS. An empty `value` with
/// `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    )
}

/// Where to go after signing in: a path on this site, else the overview
/// (no open redirect to another site).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// `bytes` random bytes from the OS, in hex.
pub fn random_hex(bytes: usize) -> Result<String, DashError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)
        .map_err(|error| DashError::Internal(format!("reading the OS random source: {error}")))?;
    Ok(hex::encode(buffer))
}

/// Compares without stopping at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use sluice_store::{TokenRecord, TokenRole};

    use super::*;

    fn token(role: Role) -> Arc<Token> {
        let record = TokenRecord {
            name: Some("alice".to_owned()),
            ..TokenRecord::new(
                "ab".repeat(32),
                crate::vocabulary::stored_role(role),
                Timestamp::UNIX_EPOCH,
            )
        };
        Arc::new(Token::of(&record).expect("a token"))
    }

    #[test]
    fn cookies_are_secure_over_tls_only() {
        let plain = set_cookie(COOKIE_NAME, "abc", LIFETIME, false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"), "{plain}");
        let tls = set_cookie(COOKIE_NAME, "abc", LIFETIME, true);
        assert!(tls.ends_with("; Secure"), "{tls}");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            "a=1; sluice_session=abc; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&headers, COOKIE_NAME), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/rollouts/r-1?tab=hosts")),
            "/rollouts/r-1?tab=hosts"
        );
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a time")
    }

    /// A new session of `token`, honoured in `sessions` from `now`.
    fn signed_in(
        sessions: &Sessions,
        token: Arc<Token>,
        now: Timestamp,
    ) -> (String, SessionRecord) {
        let (secret, record) = new_session(&"ab".repeat(32), now).expect("session");
        sessions.insert(&record, token, now);
        (secret, record)
    }

    #[test]
    fn sessions_end_on_sign_out_and_flash_once() {
        let sessions = Sessions::default();
        let now = at("2026-03-01T09:00:00Z");
        let (secret, record) = signed_in(&sessions, token(Role::Operator), now);
        assert_eq!(secret.len(), 64);
        assert_eq!(record.hash, hash_secret(&secret), "only the hash is kept");
        assert_eq!(record.expires_at, at("2026-03-01T21:00:00Z"));
        sessions.flash(
            &secret,
            Flash {
                error: false,
                text: "paused".to_owned(),
            },
        );
        let (_, flash) = sessions.take(&secret, now).expect("live session");
        assert_eq!(flash.map(|f| f.text).as_deref(), Some("paused"));
        let (_, flash) = sessions.take(&secret, now).expect("still live");
        assert_eq!(flash, None, "the flash goes");
        assert_eq!(sessions.remove(&secret), record.hash);
        assert!(sessions.take(&secret, now).is_none());
        assert!(
            sessions.take(&record.hash, now).is_none(),
            "the hash is no secret"
        );
    }

    #[test]
    fn csrf_tokens_are_the_sessions_own_and_not_their_hash() {
        let (secret, record) = new_session("token", at("2026-03-01T09:00:00Z")).expect("session");
        let csrf = csrf_of(&secret);
        assert_eq!(csrf.len(), 64);
        assert_eq!(csrf, csrf_of(&secret), "the same for the whole session");
        assert_ne!(csrf, record.hash);
        let (other, _) = new_session("token", at("2026-03-01T09:00:00Z")).expect("session");
        assert_ne!(csrf, csrf_of(&other));
    }

    #[test]
    fn expired_sessions_are_gone() {
        let sessions = Sessions::default();
        let now = at("2026-03-01T09:00:00Z");
        let (secret, record) = signed_in(&sessions, token(Role::Admin), now);
        assert!(sessions.take(&secret, record.expires_at).is_none());
        assert_eq!(sessions.lock().len(), 0, "and dropped");
        // A sign-in drops those expired meanwhile.
        let (_, first) = signed_in(&sessions, token(Role::Admin), now);
        signed_in(&sessions, token(Role::Admin), first.expires_at);
        assert_eq!(sessions.lock().len(), 1);
    }

    #[test]
    fn a_session_ends_with_its_token_revoked_or_expired() {
        let tokens = Tokens::default();
        let now = at("2026-03-01T09:00:00Z");
        let expiring = TokenRecord {
            expires_at: Some(at("2026-03-01T10:00:00Z")),
            ..TokenRecord::new("ab".repeat(32), TokenRole::Viewer, now)
        };
        let revoked = TokenRecord::new("cd".repeat(32), TokenRole::Admin, now);
        let sessions = Sessions::default();
        let mut secrets = Vec::new();
        for record in [&expiring, &revoked] {
            let token = tokens.insert(record).expect("a token");
            let (secret, session) = new_session(&record.hash, now).expect("session");
            sessions.insert(&session, token, now);
            secrets.push(secret);
        }
        assert!(sessions.take(&secrets[0], now).is_some());
        assert!(sessions.take(&secrets[1], now).is_some());
        tokens.revoke(std::slice::from_ref(&revoked.hash));
        assert!(sessions.take(&secrets[1], now).is_none(), "revoked");
        let later = at("2026-03-01T10:00:00Z");
        assert!(sessions.take(&secrets[0], later).is_none(), "expired");
    }

    #[test]
    fn loaded_sessions_act_with_their_token_unless_expired_or_unknown() {
        let tokens = Tokens::default();
        let now = at("2026-03-01T09:00:00Z");
        let viewer = TokenRecord {
            name: Some("alice".to_owned()),
            ..TokenRecord::new("ab".repeat(32), TokenRole::Viewer, now)
        };
        tokens.insert(&viewer);
        let (live_secret, live) = new_session(&viewer.hash, now).expect("session");
        let (expired_secret, mut expired) = new_session(&viewer.hash, now).expect("session");
        expired.expires_at = now;
        let (orphan_secret, orphan) = new_session(&"cd".repeat(32), now).expect("session");
        let sessions = Sessions::default();
        let counts = sessions.replace_all(&[live, expired, orphan], &tokens, now);
        assert_eq!(counts, (1, 1), "one loaded, one had expired");
        let (token, _) = sessions.take(&live_secret, now).expect("loaded");
        assert_eq!((token.role, token.actor.as_str()), (Role::Viewer, "alice"));
        assert!(sessions.take(&expired_secret, now).is_none());
        assert!(sessions.take(&orphan_secret, now).is_none());
        assert_eq!(sessions.lock().len(), 1);
    }

    #[test]
    fn sign_in_links_are_taken_once_and_only_while_live() {
        let sessions = Sessions::default();
        let now = at("2026-03-01T09:00:00Z");
        let link = |hash: &str| SessionRecord {
            hash: format!("link:{hash}"),
            token: "ab".repeat(32),
            created_at: now,
            expires_at: at("2026-03-01T09:01:00Z"),
        };
        sessions.insert_link(&link("1"), now);
        sessions.insert_link(&link("2"), now);
        assert_eq!(sessions.take_link("link:1", now), Some(link("1")));
        assert_eq!(sessions.take_link("link:1", now), None, "once");
        assert_eq!(
            sessions.take_link("link:2", link("2").expires_at),
            None,
            "not at its expiry"
        );
        assert!(sessions.lock_links().is_empty(), "and gone");
        // Loaded apart from sessions, expired ones left out.
        let tokens = Tokens::default();
        let mut old = link("3");
        old.expires_at = now;
        let counts = sessions.replace_all(&[link("4"), old], &tokens, now);
        assert_eq!(counts, (0, 1), "no session; one link had expired");
        assert!(sessions.lock().is_empty(), "a link is no session");
        assert!(sessions.take_link("link:4", now).is_some());
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let user = User {
            session: "s".to_owned(),
            caller: Caller(token(Role::Viewer)),
            csrf: "abcd".to_owned(),
            flash: None,
        };
        assert!(user.check_csrf("abcd").is_ok());
        assert!(user.check_csrf("abce").is_err());
        assert!(user.check_csrf("abc").is_err());
        assert!(user.check_csrf("").is_err());
        assert!(!user.can_operate() && !user.is_admin());
    }
}
