//! What can go wrong talking to a sluice server, typed so that a caller can
//! tell "the server said no" (its status and its `{"error": {code, message,
//! field}}`) from "the server could not be reached".

use std::error::Error as _;
use std::time::Duration;

use sluice_api::error::ErrorDetail;

/// One failed call to the sluice API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address is not an `http://` or `https://` URL.
    #[error("{url:?} is not a sluice server URL ({reason}); expected http://HOST:PORT or https://HOST:PORT")]
    InvalidUrl { url: String, reason: String },
    /// The extra CA certificate is not PEM.
    #[error("the CA certificate is not valid PEM ({reason}); give a PEM file with one or more -----BEGIN CERTIFICATE----- blocks")]
    InvalidCaCertificate { reason: String },
    /// The token has characters that cannot travel in an HTTP header.
    #[error("the token is not valid: it may hold only visible ASCII characters")]
    InvalidToken,
    /// No connection could be made: refused, unknown host, TLS handshake.
    #[error("cannot reach the sluice server at {server}: {reason}")]
    Unreachable {
        server: String,
        reason: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server took longer than the client's timeout to answer.
    #[error("the sluice server at {server} did not answer within {}s", timeout.as_secs_f64())]
    Timeout {
        server: String,
        timeout: Duration,
        #[source]
        source: reqwest::Error,
    },
    /// The connection broke while the request or its answer was in flight;
    /// the server may or may not have acted on it.
    #[error("lost the connection to the sluice server at {server}: {reason}")]
    Transport {
        server: String,
        reason: String,
        #[source]
        source: reqwest::Error,
    },
    /// A stream of events sent nothing, not even a keep-alive, for this
    /// long: the connection is taken for dead.
    #[error("the events stream from the sluice server at {server} was silent for {}s", silence.as_secs())]
    Silent { server: String, silence: Duration },
    /// The server refused the request with its JSON error body.
    #[error("{}", describe(error))]
    Api { status: u16, error: ErrorDetail },
    /// The server answered 429 Too Many Requests: its check-in queue is
    /// full, or the token's rate of requests is spent. Come back after
    /// `retry_after` (the server's `Retry-After`; 5 s when it gave none):
    /// not a failure of the request, nor an answer.
    #[error("the sluice server at {server} is busy, try again in {}s: {message}", retry_after.as_secs())]
    Busy {
        server: String,
        retry_after: Duration,
        /// The server's message (its error body's), or the body's start.
        message: String,
    },
    /// The server (or a proxy in front of it) answered an error status
    /// without sluice's error body.
    #[error("the server at {server} answered HTTP {status}{}", body_suffix(body))]
    Http {
        server: String,
        status: u16,
        body: String,
    },
    /// A successful answer that is not what this client expects (a server of
    /// another version, or not a sluice server at all).
    #[error("could not understand the answer to {request}: {source}")]
    Decode {
        request: String,
        #[source]
        source: serde_json::Error,
    },
    /// The request could not be built (its body did not serialise).
    #[error("could not build the request {request}: {source}")]
    Request {
        request: String,
        #[source]
        source: reqwest::Error,
    },
}

impl ClientError {
    /// The HTTP status the server answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Http { status, .. } => Some(*status),
            ClientError::Busy { .. } => Some(429),
            _ => None,
        }
    }

    /// The server's error body, if it sent one.
    pub fn api_error(&self) -> Option<&ErrorDetail> {
        match self {
            ClientError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// After a 429: how long the server asked to be left alone.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Busy { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The server's machine-readable error code (`conflict`, `invalid_plan`, …).
    pub fn code(&self) -> Option<&str> {
        self.api_error().map(|error| error.code.as_str())
    }

    /// True when no answer came back: unreachable, timed out, or cut off.
    /// Worth retrying later; the agent backs off on these.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::Timeout { .. }
                | ClientError::Transport { .. }
                | ClientError::Silent { .. }
        )
    }

    /// True when the server judged the request itself wrong (HTTP 4xx).
    pub fn is_client_error(&self) -> bool {
        self.status()
            .is_some_and(|status| (400..500).contains(&status))
    }

    /// Classifies a transport error from reqwest.
    pub(crate) fn from_transport(server: &str, timeout: Duration, source: reqwest::Error) -> Self {
        let server = server.to_owned();
        if source.is_timeout() {
            ClientError::Timeout {
                server,
                timeout,
                source,
            }
        } else if source.is_connect() {
            ClientError::Unreachable {
                reason: root_cause(&source),
                server,
                source,
            }
        } else {
            ClientError::Transport {
                reason: root_cause(&source),
                server,
                source,
            }
        }
    }
}

fn describe(error: &ErrorDetail) -> String {
    match &error.field {
        Some(field) if !field.is_empty() => format!("{field}: {}", error.message),
        _ => error.message.clone(),
    }
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// The innermost cause of a transport error, in the words an operator
/// expects: "connection refused" rather than reqwest's "error sending request
/// for url (…)".
pub(crate) fn root_cause(error: &reqwest::Error) -> String {
    let mut deepest: &dyn std::error::Error = error;
    let mut current = error.source();
    while let Some(cause) = current {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return describe_io(io);
        }
        deepest = cause;
        current = cause.source();
    }
    deepest.to_string()
}

fn describe_io(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        ErrorKind::ConnectionReset => "connection reset by the server".to_owned(),
        ErrorKind::ConnectionAborted => "connection aborted".to_owned(),
        ErrorKind::TimedOut => "connection timed out".to_owned(),
        ErrorKind::AddrNotAvailable => "address not available".to_owned(),
        ErrorKind::UnexpectedEof => "the server closed the connection".to_owned(),
        _ => {
            // "Network is unreachable (os error 101)" → "network is unreachable".
            let text = error.to_string();
            let text = match text.find(" (os error") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            lowercase_first(&text)
        }
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_as_the_field_then_the_message() {
        let error = ClientError::Api {
            status: 422,
            error: ErrorDetail {
                code: "invalid_plan".into(),
                message: "must be between 0 and 100".into(),
                field: Some("stages[1].percent at 7:16".into()),
            },
        };
        assert_eq!(
            error.to_string(),
            "stages[1].percent at 7:16: must be between 0 and 100"
        );
        assert_eq!(error.status(), Some(422));
        assert_eq!(error.code(), Some("invalid_plan"));
        assert!(error.is_client_error());
        assert!(!error.is_unreachable());
    }

    #[test]
    fn io_errors_lose_their_os_error_suffix() {
        let error = std::io::Error::from_raw_os_error(101);
        let text = describe_io(&error);
        assert!(!text.contains("os error"), "{text}");
        assert!(text.starts_with(|c: char| !c.is_uppercase()), "{text}");
    }
}
