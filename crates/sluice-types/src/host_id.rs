//! A host's id: its fully qualified domain name, as the agent reports it
//! and the fleet file names it.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

/// The longest host id: the longest DNS name.
pub const MAX_LEN: usize = 253;

/// The characters a host id may hold, for error messages and schemas.
pub const PATTERN: &str = "^[A-Za-z0-9._:-]{1,253}$";

/// A host's id: 1 to 253 ASCII letters, digits, `.`, `-`, `_` or `:` (an
/// FQDN, or an IPv6 address). Valid by construction: [`HostId::parse`] is
/// the only way in, and serde goes through it. Cheap to clone: the id is
/// one shared allocation, however many copies the server and its rollouts
/// hold.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct HostId(Arc<str>);

/// Why a string is not a host id; the message says what would be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{id:?} is not a host id; use the host's FQDN: 1 to 253 letters, digits, '.', '-', '_' or ':'"
)]
pub struct InvalidHostId {
    pub id: String,
}

impl HostId {
    pub fn parse(id: impl Into<String>) -> Result<HostId, InvalidHostId> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= MAX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
        if valid {
            Ok(HostId(Arc::from(id)))
        } else {
            Err(InvalidHostId { id })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared string, for whoever keeps the id (a rollout's host table).
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl TryFrom<String> for HostId {
    type Error = InvalidHostId;

    fn try_from(id: String) -> Result<HostId, InvalidHostId> {
        HostId::parse(id)
    }
}

impl From<HostId> for String {
    fn from(id: HostId) -> String {
        id.0.to_string()
    }
}

impl FromStr for HostId {
    type Err = InvalidHostId;

    fn from_str(id: &str) -> Result<HostId, InvalidHostId> {
        HostId::parse(id)
    }
}

impl Deref for HostId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for HostId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for HostId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for HostId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for HostId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn fqdns_and_addresses_are_host_ids() {
        for id in ["sto-playlist-a1.example.net", "h_1", "fe80::1", "a"] {
            assert_eq!(
                HostId::parse(id).map(|id| id.to_string()),
                Ok(id.to_owned())
            );
        }
    }

    #[test]
    fn anything_else_is_refused_saying_what_is_valid() {
        for id in ["", "a/b", "a b", "é.example.net", "tab\t"] {
            let error = HostId::parse(id).expect_err(id);
            assert!(error.to_string().contains("use the host's FQDN"), "{error}");
        }
        assert!(HostId::parse("a".repeat(253)).is_ok());
        assert!(HostId::parse("a".repeat(254)).is_err());
    }

    #[test]
    fn serde_goes_through_parse() {
        let id: HostId = serde_json::from_str("\"a.example.net\"").expect("valid");
        assert_eq!(id, "a.example.net");
        assert_eq!(
            serde_json::to_string(&id).expect("json"),
            "\"a.example.net\""
        );
        let error = serde_json::from_str::<HostId>("\"a b\"").expect_err("invalid");
        assert!(error.to_string().contains("is not a host id"), "{error}");
    }

    proptest! {
        /// The pattern the OpenAPI document states and `parse` agree.
        #[test]
        fn parse_accepts_exactly_the_pattern(id in "[ -~]{0,8}|[A-Za-z0-9._:-]{250,256}") {
            let by_pattern = !id.is_empty()
                && id.len() <= MAX_LEN
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
            prop_assert_eq!(HostId::parse(id.as_str()).is_ok(), by_pattern);
        }
    }
}
