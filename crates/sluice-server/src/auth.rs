//! Bearer tokens and roles.
//!
//! A token is `slc_` followed by 64 hex digits from the OS's random source;
//! only its SHA-256 is stored. Roles: `agent` (check-in only, bound to one
//! host id), `viewer` (reads), `operator` (rollouts: create and act), `admin`
//! (everything, including tokens, freeze and import). Each handler states
//! what it needs with [`Caller::require`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use sluice_api::admin::Role;
use sluice_store::TokenRecord;

use crate::error::ApiError;
use crate::state::AppState;
use crate::vocabulary;

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

/// The known tokens by SHA-256 (hex) of their secret.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: RwLock<HashMap<String, Arc<Token>>>,
}

impl Tokens {
    pub fn insert(&self, record: &TokenRecord) {
        let role = vocabulary::wire_role(record.role);
        let actor = match &record.name {
            Some(name) if !name.trim().is_empty() => name.clone(),
            _ => format!(
                "{}-{}",
                record.role,
                &record.hash[..8.min(record.hash.len())]
            ),
        };
        let token = Token {
            role,
            host: record.host.clone(),
            actor,
        };
        self.by_hash
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(record.hash.clone(), Arc::new(token));
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

    pub fn get(&self, secret: &str) -> Option<Arc<Token>> {
        let hash = hash_secret(secret);
        self.by_hash
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&hash)
            .cloned()
    }

    pub fn has_admin(&self) -> bool {
        self.by_hash
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|token| token.role == Role::Admin)
    }
}

/// SHA-256 of a secret, lowercase hex.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// A new secret: `slc_` and 32 random bytes in hex.
pub fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("reading the OS random source: {error}"))?;
    let mut secret = String::with_capacity(4 + 64);
    secret.push_str("slc_");
    for byte in bytes {
        let _ = write!(secret, "{byte:02x}");
    }
    Ok(secret)
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
            .get(secret)
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
    fn secrets_are_prefixed_and_hash_to_hex() {
        let secret = new_secret().expect("random");
        assert!(secret.starts_with("slc_") && secret.len() == 68, "{secret}");
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
