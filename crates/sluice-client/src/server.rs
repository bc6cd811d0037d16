//! A sluice server's address, valid by construction ([`ServerUrl`]): an
//! `http://` or `https://` URL with a host, perhaps a path prefix (a server
//! behind a proxy at `/sluice`), no query or fragment. Shown, in messages
//! and logs, without the password the URL may carry.

use std::fmt;
use std::str::FromStr;

use reqwest::Url;

use crate::ClientError;

/// The base URL of a sluice server. Two spellings of one address are equal
/// (`https://A:443` and `https://a/`), so a list of servers can refuse
/// duplicates.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServerUrl {
    /// Normalised, its path ending in `/` so that segments are appended to
    /// the prefix.
    url: Url,
}

impl ServerUrl {
    /// Accepts `http://host[:port][/prefix]` and `https://…`, nothing else.
    pub fn parse(text: &str) -> Result<ServerUrl, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        if !trimmed.contains("://") {
            return Err(invalid("it has no scheme"));
        }
        let mut url = Url::parse(trimmed).map_err(|error| invalid(&error.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid(&format!("the scheme is {:?}", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("it has a query or fragment"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(ServerUrl { url })
    }

    /// The whole URL, a password included if it carries one: to build a
    /// client with, never to show (use `Display`).
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The URL requests are made from.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }
}

/// Without a trailing slash, and with `***` for a password
/// (`https://user:***@sluice.example.net:7070`).
impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        if shown.password().is_some() && shown.set_password(Some("***")).is_err() {
            // An http(s) URL with a host always takes a password.
            return write!(f, "{}://…", shown.scheme());
        }
        f.write_str(shown.as_str().trim_end_matches('/'))
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerUrl({self})")
    }
}

impl FromStr for ServerUrl {
    type Err = ClientError;

    fn from_str(text: &str) -> Result<ServerUrl, ClientError> {
        ServerUrl::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_must_be_http_or_https_with_a_host() {
        for good in [
            "http://127.0.0.1:7070",
            "http://127.0.0.1:7070/",
            "https://sluice.example.net",
            "http://proxy.example.net/sluice",
        ] {
            assert!(ServerUrl::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:7070",
            "ftp://host",
            "http://",
            "http://host/?x=1",
            "",
        ] {
            let error = ServerUrl::parse(bad).err().map(|e| e.to_string());
            let error = error.unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert!(error.contains("expected http://HOST:PORT"), "{error}");
        }
    }

    #[test]
    fn spellings_of_one_address_are_equal() -> Result<(), ClientError> {
        let same = [
            "https://sluice.example.net",
            "https://SLUICE.example.net:443/",
            " https://sluice.example.net/ ",
        ];
        for text in same {
            assert_eq!(
                ServerUrl::parse(text)?,
                ServerUrl::parse(same[0])?,
                "{text}"
            );
        }
        assert_ne!(
            ServerUrl::parse("https://sluice.example.net:7070")?,
            ServerUrl::parse("http://sluice.example.net:7070")?
        );
        Ok(())
    }

    #[test]
    fn a_password_is_never_shown() -> Result<(), ClientError> {
        let url = ServerUrl::parse("https://proxy:hunter2@sluice.example.net:7070/sluice")?;
        assert_eq!(
            url.to_string(),
            "https://proxy:***@sluice.example.net:7070/sluice"
        );
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(url.as_str().contains("hunter2"), "requests still carry it");
        assert_eq!(
            ServerUrl::parse("http://127.0.0.1:7070/")?.to_string(),
            "http://127.0.0.1:7070"
        );
        Ok(())
    }
}
