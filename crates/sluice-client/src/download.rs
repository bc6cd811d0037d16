//! Downloads from anywhere, not the sluice API: the artifact a desired
//! version's payload names (`url`), which the agent fetches before it
//! applies. Through the client's own connection pool and TLS trust (the
//! system's roots and its extra CA), but never with its token: the bearer
//! token is for the sluice server alone, and an artifact server is another
//! party. The body comes a chunk at a time, so that the caller can hash and
//! write it as it arrives and stop at a size cap.

use std::fmt;
use std::time::Duration;

use reqwest::Url;

use crate::error::root_cause;
use crate::Client;

/// A download that could not be made or finished.
#[derive(Debug, thiserror::Error)]
#[error("cannot download {url}: {reason}")]
pub struct DownloadError {
    /// The URL, without the password it may carry.
    pub url: String,
    pub reason: String,
}

/// A download whose answer has begun: its status was 2xx, and its body is
/// read with [`Download::chunk`].
pub struct Download {
    response: reqwest::Response,
    url: String,
    timeout: Duration,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("url", &self.url)
            .field("status", &self.response.status().as_u16())
            .finish()
    }
}

impl Client {
    /// `GET url` (`http://` or `https://`), without the client's token,
    /// the whole download bounded by `timeout` (the body included);
    /// redirects are followed. An answer other than 2xx is an error.
    pub async fn download(&self, url: &str, timeout: Duration) -> Result<Download, DownloadError> {
        let parsed = Url::parse(url).map_err(|error| DownloadError {
            url: url.to_owned(),
            reason: format!("it is not a URL ({error})"),
        })?;
        let shown = without_credentials(&parsed);
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(DownloadError {
                url: shown,
                reason: format!(
                    "the scheme is {:?}; artifacts are downloaded over http:// or https://",
                    parsed.scheme()
                ),
            });
        }
        let failed = |reason: String| DownloadError {
            url: shown.clone(),
            reason,
        };
        let response = self
            .http
            .get(parsed.clone())
            .timeout(timeout)
            .send()
            .await
            .map_err(|error| failed(transport(&error, timeout)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!(
                "the server answered HTTP {}",
                status.as_u16()
            )));
        }
        Ok(Download {
            response,
            url: shown,
            timeout,
        })
    }
}

impl Download {
    /// The URL, without the password it may carry.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The body's length, when the server said it.
    pub fn content_length(&self) -> Option<u64> {
        self.response.content_length()
    }

    /// The next piece of the body; `None` once it is all read.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, DownloadError> {
        match self.response.chunk().await {
            Ok(chunk) => Ok(chunk.map(Vec::from)),
            Err(error) => Err(DownloadError {
                url: self.url.clone(),
                reason: transport(&error, self.timeout),
            }),
        }
    }
}

/// `url` as messages show it: no user name, no password.
fn without_credentials(url: &Url) -> String {
    let mut shown = url.clone();
    // A URL that cannot have credentials has none to hide.
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// What went wrong on the way, in an operator's words.
fn transport(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!(
            "not downloaded within {}s (the component's timeout)",
            timeout.as_secs_f64()
        )
    } else {
        root_cause(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_shown() {
        let url = Url::parse("https://deploy:s3cr3t@repo.example.net/pool/a.deb").expect("a URL");
        assert_eq!(
            without_credentials(&url),
            "https://repo.example.net/pool/a.deb"
        );
    }

    #[tokio::test]
    async fn only_http_and_https_urls_are_downloaded() {
        let client = Client::new("http://127.0.0.1:1").expect("a client");
        let error = client
            .download("ftp://repo.example.net/a.deb", Duration::from_secs(1))
            .await
            .expect_err("ftp is refused");
        assert_eq!(
            error.to_string(),
            "cannot download ftp://repo.example.net/a.deb: the scheme is \"ftp\"; artifacts are downloaded over http:// or https://"
        );
        let error = client
            .download("repo/a.deb", Duration::from_secs(1))
            .await
            .expect_err("not a URL");
        assert!(error.reason.starts_with("it is not a URL"), "{error}");
    }
}
