//! Dashboard sessions: a user signs in with one of the API's bearer tokens
//! (viewer, operator or admin; agent tokens cannot), and gets a random
//! session id in an HttpOnly, SameSite=Strict cookie. The server keeps the
//! session (the token's role and actor, a CSRF token, an optional one-shot
//! message) in memory until it expires or the user signs out; a restart
//! signs everyone out. Every POST form carries the session's CSRF token,
//! compared in constant time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use sluice_api::admin::Role;

use super::{DashError, Dashboard};
use crate::auth::{Caller, Need, Token};

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
    csrf: String,
    expires: Instant,
    flash: Option<Flash>,
}

/// The signed-in sessions by id.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `token`; returns its id. Expired sessions are
    /// dropped on the way.
    pub fn create(&self, token: Arc<Token>) -> Result<String, DashError> {
        let id = random_hex(32)?;
        let csrf = random_hex(32)?;
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, session| session.expires > now);
        sessions.insert(
            id.clone(),
            Session {
                token,
                csrf,
                expires: now + LIFETIME,
                flash: None,
            },
        );
        Ok(id)
    }

    /// The live session `id`, taking its one-shot message.
    fn take(&self, id: &str) -> Option<(Arc<Token>, String, Option<Flash>)> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(id)?;
        if session.expires <= Instant::now() {
            sessions.remove(id);
            return None;
        }
        Some((
            Arc::clone(&session.token),
            session.csrf.clone(),
            session.flash.take(),
        ))
    }

    /// Leaves a message for the session's next page.
    pub fn flash(&self, id: &str, flash: Flash) {
        if let Some(session) = self.lock().get_mut(id) {
            session.flash = Some(flash);
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The signed-in user of a request. Extracting it from a request without a
/// live session fails with [`DashError::SignIn`] (back to this page after).
#[derive(Debug, Clone)]
pub struct User {
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
        let found = cookie(&parts.headers, COOKIE_NAME)
            .and_then(|id| Some((id.to_owned(), state.sessions.take(id)?)));
        match found {
            Some((session, (token, csrf, flash))) => Ok(User {
                session,
                caller: Caller(token),
                csrf,
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
    let mut hex = String::with_capacity(bytes * 2);
    for byte in buffer {
        let _ = write!(hex, "{byte:02x}");
    }
    Ok(hex)
}

/// Compares without stopping at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role) -> Arc<Token> {
        Arc::new(Token {
            role,
            host: None,
            actor: "alice".to_owned(),
        })
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

    #[test]
    fn sessions_end_on_sign_out_and_flash_once() {
        let sessions = Sessions::default();
        let id = sessions.create(token(Role::Operator)).expect("session");
        assert_eq!(id.len(), 64);
        sessions.flash(
            &id,
            Flash {
                error: false,
                text: "paused".to_owned(),
            },
        );
        let (_, csrf, flash) = sessions.take(&id).expect("live session");
        assert_eq!(csrf.len(), 64);
        assert_eq!(flash.map(|f| f.text).as_deref(), Some("paused"));
        let (_, again, flash) = sessions.take(&id).expect("still live");
        assert_eq!(
            (again, flash),
            (csrf, None),
            "the csrf token stays, the flash goes"
        );
        sessions.remove(&id);
        assert!(sessions.take(&id).is_none());
    }

    #[test]
    fn expired_sessions_are_gone() {
        let sessions = Sessions::default();
        let id = sessions.create(token(Role::Admin)).expect("session");
        if let Some(session) = sessions.lock().get_mut(&id) {
            session.expires = Instant::now() - Duration::from_secs(1);
        }
        assert!(sessions.take(&id).is_none());
        assert!(sessions.lock().is_empty(), "and dropped");
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
