//! Webhooks (`GET|POST /v1/webhooks`, `DELETE /v1/webhooks/{id}`,
//! `POST /v1/webhooks/{id}/test`): the events of the log delivered to an
//! HTTP receiver, at least once, in order per rollout.

use crate::vocabulary::{EventKind, UnknownWord, WebhookFormat};
use crate::wire;

/// Longest webhook URL, in characters.
pub const MAX_URL_LENGTH: usize = 2048;

/// Longest secret, in bytes.
pub const MAX_SECRET_LENGTH: usize = 1024;

wire! {
/// `POST /v1/webhooks`: deliver events to `url` from now on.
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where each event is POSTed: an absolute `http` or `https` URL.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub url: String,
    /// The event kinds delivered (and `halted`: paused, rollback_started
    /// and aborted); empty or absent: every kind.
    #[serde(default)]
    pub events: Vec<String>,
    /// `json` (the event, as `GET /v1/rollouts/{id}/events` shows it;
    /// the default) or `slack` (`{"text": "…"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<WebhookFormat>,
    /// Signs each body: `X-Sluice-Signature: sha256=<hex HMAC-SHA256 of
    /// the body with this key>`. Never shown again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1024))]
    pub secret: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::reason))]
    pub reason: String,
}
}

wire! {
/// A webhook and how its delivery goes; never its secret.
pub struct WebhookView {
    pub id: String,
    pub url: String,
    /// The event kinds delivered; empty: every kind.
    pub events: Vec<EventKind>,
    pub format: WebhookFormat,
    /// Whether bodies are signed (a secret is set).
    pub signed: bool,
    /// RFC 3339.
    pub created_at: String,
    /// The name of the token that added it.
    pub created_by: String,
    /// The `seq` of the last event delivered (or not wanted): delivery
    /// goes on after it.
    pub delivered_seq: i64,
    /// Three failures in a row or more: the receiver is failing (delivery
    /// keeps retrying).
    pub failing: bool,
    /// Failed attempts since the last success.
    pub failures: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
}
}

wire! {
/// `GET /v1/webhooks`.
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}
}

wire! {
/// `POST /v1/webhooks/{id}/test`: what the receiver made of one
/// `webhook_test` delivery.
pub struct WebhookTestResult {
    /// The receiver answered 2xx.
    pub delivered: bool,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why the delivery failed (a status that is not 2xx, a timeout, no
    /// connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
}

/// The kinds a webhook's `events` name (see [`EventKind::named`]), each
/// once, in the vocabulary's order; empty: every kind.
pub fn event_filter<S: AsRef<str>>(words: &[S]) -> Result<Vec<EventKind>, UnknownWord> {
    let mut kinds = Vec::new();
    for word in words {
        kinds.extend(EventKind::named(word.as_ref().trim())?);
    }
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_expands_groups_and_keeps_each_kind_once() {
        let kinds =
            event_filter(&["completed", "halted", " paused", "stage_started"]).expect("valid");
        assert_eq!(
            kinds,
            [
                EventKind::StageStarted,
                EventKind::Completed,
                EventKind::Paused,
                EventKind::RollbackStarted,
                EventKind::Aborted
            ]
        );
        assert_eq!(event_filter::<&str>(&[]).expect("valid"), []);
        assert!(event_filter(&["completed", "done"]).is_err());
    }
}
