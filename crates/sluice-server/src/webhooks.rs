//! Webhook delivery: the events of the durable log POSTed to each
//! webhook's receiver, at least once, in `seq` order (so in order per
//! rollout), run by the leader only.
//!
//! A term runs [`run`]: it reads the stored webhooks ([`Store::webhooks`])
//! and keeps one delivery task per webhook, started and stopped as
//! webhooks are added and removed ([`AppState::wake_webhooks`]) and all
//! stopped with the term. A task pages the log after its webhook's cursor
//! ([`Store::events_after`]) and delivers the events its filter wants one
//! at a time: a 2xx moves the cursor, durably, through the group commit
//! (fenced like every write of the term, so a deposed leader's cursor is
//! never stored); anything else is retried, the same event, with a backoff
//! from 1 s doubling up to `--webhook-retry-max`. The cursor is written
//! only once the receiver acknowledged, so an event may be delivered twice
//! (a crash, or a lost leadership, between the answer and the write),
//! never lost. Events the filter does not want move the cursor too, one
//! write per page. No lock is held while sending: a receiver that keeps
//! failing is marked failing (after [`FAILING_AFTER`] failures in a row:
//! in `GET /v1/webhooks`, the log and `sluice_webhook_failing`) and never
//! holds up a rollout.

use std::collections::HashMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sluice_store::{StoredEvent, StoredWebhook, WebhookDelivery, WebhookRecord, Write};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// How long a receiver has to answer one delivery.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The first retry's wait; each next one doubles, up to the retry maximum.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The default of `--webhook-retry-max`.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(60);

/// Failed deliveries in a row after which a webhook is failing.
pub const FAILING_AFTER: i64 = 3;

/// How often a task that delivered everything looks for new events the
/// term's committer did not signal (an enrollment's, written in a
/// transaction of its own); those it commits wake the task at once.
const POLL: Duration = Duration::from_secs(1);

/// Events read from the log at a time.
const PAGE: u32 = 100;

/// How deliveries are sent.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// With [`TIMEOUT`] as its timeout.
    pub client: reqwest::Client,
    /// The longest wait between two retries of a failing delivery.
    pub retry_max: Duration,
}

impl WebhookSettings {
    pub fn new(retry_max: Duration) -> anyhow::Result<WebhookSettings> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("sluice-server/", env!("CARGO_PKG_VERSION")))
            .timeout(TIMEOUT)
            .build()
            .map_err(|error| anyhow::anyhow!("building the HTTP client for webhooks: {error}"))?;
        Ok(WebhookSettings { client, retry_max })
    }
}

/// One delivery as it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `X-Sluice-Event`: the event's kind.
    pub event: String,
    /// `X-Sluice-Delivery`: `<webhook id>-<seq>`, the same on every retry.
    pub id: String,
    pub body: Vec<u8>,
}

/// Runs the term's deliveries until `stopped` resolves (see the module's
/// documentation).
pub async fn run(state: AppState, settings: WebhookSettings, mut stopped: oneshot::Receiver<()>) {
    let mut tasks: HashMap<String, (oneshot::Sender<()>, JoinHandle<()>)> = HashMap::new();
    loop {
        let retry = match state.store().webhooks().await {
            Ok(hooks) => {
                reconcile(&state, &settings, &mut tasks, hooks).await;
                None
            }
            Err(error) => {
                tracing::warn!(%error, "reading the webhooks failed; trying again");
                Some(FIRST_RETRY)
            }
        };
        tokio::select! {
            _ = &mut stopped => break,
            () = state.webhooks_woken() => {}
            () = tokio::time::sleep(retry.unwrap_or(Duration::MAX)), if retry.is_some() => {}
        }
    }
    for (id, (stop, handle)) in tasks {
        let _ = stop.send(());
        if let Err(error) = handle.await {
            tracing::error!(%error, webhook = %id, "a webhook's delivery ended abnormally");
        }
        // Another replica delivers from now on: this one says nothing of it.
        state.metrics().webhook_failing(&id, None);
    }
}

/// Starts a task for each webhook without one, stops those of webhooks
/// removed.
async fn reconcile(
    state: &AppState,
    settings: &WebhookSettings,
    tasks: &mut HashMap<String, (oneshot::Sender<()>, JoinHandle<()>)>,
    hooks: Vec<StoredWebhook>,
) {
    let gone: Vec<String> = tasks
        .keys()
        .filter(|id| !hooks.iter().any(|hook| &hook.webhook.id == *id))
        .cloned()
        .collect();
    for id in gone {
        if let Some((stop, handle)) = tasks.remove(&id) {
            let _ = stop.send(());
            if let Err(error) = handle.await {
                tracing::error!(%error, webhook = %id, "a webhook's delivery ended abnormally");
            }
            state.metrics().webhook_failing(&id, None);
            tracing::info!(webhook = %id, "webhook removed: delivery stopped");
        }
    }
    for hook in hooks {
        if tasks.contains_key(&hook.webhook.id) {
            continue;
        }
        let (stop, stopped) = oneshot::channel();
        let id = hook.webhook.id.clone();
        tracing::info!(webhook = %id, receiver = %redacted(&hook.webhook.url), after = hook.delivery.delivered_seq, "webhook delivery started");
        let task = Task {
            state: state.clone(),
            settings: settings.clone(),
            webhook: hook.webhook,
            delivery: hook.delivery,
        };
        tasks.insert(id, (stop, tokio::spawn(task.run(stopped))));
    }
}

/// One webhook's delivery.
struct Task {
    state: AppState,
    settings: WebhookSettings,
    webhook: WebhookRecord,
    delivery: WebhookDelivery,
}

impl Task {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let id = self.webhook.id.clone();
        self.state
            .metrics()
            .webhook_failing(&id, Some(self.delivery.failures >= FAILING_AFTER));
        let mut written = self.state.committer().events_written();
        loop {
            // Seen before the read: a commit after it wakes the wait below.
            written.borrow_and_update();
            let page = match self
                .state
                .store()
                .events_after(self.delivery.delivered_seq, PAGE)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, webhook = %id, "reading the event log failed; trying again");
                    Vec::new()
                }
            };
            let full = page.len() == PAGE as usize;
            let mut skipped = None;
            for stored in page {
                if !self.wants(&stored.event.kind) {
                    skipped = Some(stored.seq);
                    continue;
                }
                // Its cursor write covers the events skipped before it.
                let seq = stored.seq;
                let delivery = delivery(&self.webhook, stored);
                let Some(()) = self.deliver(seq, &delivery, &mut stopped).await else {
                    return;
                };
                skipped = None;
            }
            if let Some(seq) = skipped {
                self.delivery.delivered_seq = seq;
                self.save().await;
            }
            if !full {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = written.changed() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        }
    }

    fn wants(&self, kind: &str) -> bool {
        self.webhook.events.is_empty() || self.webhook.events.iter().any(|k| k == kind)
    }

    /// Sends `delivery` until the receiver acknowledges it, then stores the
    /// cursor at its event, `seq`; `None` when the term stopped first.
    async fn deliver(
        &mut self,
        seq: i64,
        delivery: &Delivery,
        stopped: &mut oneshot::Receiver<()>,
    ) -> Option<()> {
        let id = self.webhook.id.clone();
        let mut backoff = FIRST_RETRY;
        loop {
            let sent = tokio::select! {
                _ = &mut *stopped => return None,
                sent = send(&self.settings.client, &self.webhook, delivery) => sent,
            };
            let now = self.state.now();
            self.delivery.last_attempt_at = Some(now);
            match sent {
                Ok(_) => {
                    if self.delivery.failures >= FAILING_AFTER {
                        tracing::info!(webhook = %id, "webhook delivers again");
                    }
                    self.delivery.delivered_seq = seq;
                    self.delivery.failures = 0;
                    self.delivery.last_error = None;
                    self.delivery.last_success_at = Some(now);
                    self.state.metrics().webhook_failing(&id, Some(false));
                    self.save().await;
                    return Some(());
                }
                Err(Failed { error, .. }) => {
                    self.delivery.failures += 1;
                    self.delivery.last_error = Some(error.clone());
                    let failing = self.delivery.failures >= FAILING_AFTER;
                    if failing {
                        tracing::warn!(
                            webhook = %id,
                            receiver = %redacted(&self.webhook.url),
                            failures = self.delivery.failures,
                            %error,
                            retry_in_ms = backoff.as_millis() as u64,
                            "webhook failing"
                        );
                    } else {
                        tracing::info!(webhook = %id, %error, retry_in_ms = backoff.as_millis() as u64, "webhook delivery failed");
                    }
                    self.state.metrics().webhook_failing(&id, Some(failing));
                    self.save().await;
                    tokio::select! {
                        _ = &mut *stopped => return None,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.settings.retry_max);
                }
            }
        }
    }

    /// Makes the delivery's state durable; a failure is logged (the cursor
    /// then lags: at worst, events are delivered again).
    async fn save(&self) {
        let id = self.webhook.id.clone();
        let delivery = self.delivery.clone();
        let ((), pending) = self.state.change(|_, _, writes| {
            writes.push(Write::WebhookDelivery { id, delivery });
        });
        if let Err(error) = pending.durable().await {
            tracing::warn!(%error, webhook = %self.webhook.id, "storing the webhook's delivery failed");
        }
    }
}

/// The delivery of a stored event to `webhook`, in its format.
pub fn delivery(webhook: &WebhookRecord, stored: StoredEvent) -> Delivery {
    let id = format!("{}-{}", webhook.id, stored.seq);
    let event = stored.event.kind.clone();
    let view = crate::routes::rollouts::event_view(stored);
    let body = if webhook.format == "slack" {
        slack(&summary(&view))
    } else {
        serde_json::to_vec(&view).unwrap_or_default()
    };
    Delivery { event, id, body }
}

/// A Slack incoming webhook's body.
pub fn slack(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap_or_default()
}

/// One readable line of an event: where, what, who, and its scalar fields.
pub fn summary(event: &sluice_api::rollout::EventView) -> String {
    let mut line = match &event.rollout {
        Some(rollout) => format!("sluice: rollout {rollout} {}", event.kind),
        None => format!("sluice: {}", event.kind),
    };
    if let Some(actor) = &event.actor {
        line.push_str(&format!(" by {actor}"));
    }
    let fields: Vec<String> = event
        .data
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            let value = match value {
                serde_json::Value::String(text) => shorten(text),
                serde_json::Value::Number(number) => number.to_string(),
                serde_json::Value::Bool(flag) => flag.to_string(),
                _ => return None,
            };
            Some(format!("{key}={value}"))
        })
        .take(8)
        .collect();
    if !fields.is_empty() {
        line.push_str(": ");
        line.push_str(&fields.join(", "));
    }
    line
}

/// A webhook's URL as logs and the audit log show it: its scheme, host and
/// port only, since the rest may be a credential (a Slack webhook's path
/// is its secret).
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let port = parsed
                .port()
                .map(|port| format!(":{port}"))
                .unwrap_or_default();
            let rest = if parsed.path() == "/" && parsed.query().is_none() {
                "/"
            } else {
                "/…"
            };
            format!(
                "{}://{}{port}{rest}",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default()
            )
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Text cut to 120 characters, on one line.
fn shorten(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match line.char_indices().nth(120) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line,
    }
}

/// `sha256=<hex HMAC-SHA256 of body keyed by secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    pub error: String,
}

/// POSTs `delivery` to the webhook's URL: `Ok` with the status on 2xx,
/// else why not.
pub async fn send(
    client: &reqwest::Client,
    webhook: &WebhookRecord,
    delivery: &Delivery,
) -> Result<u16, Failed> {
    let mut request = client
        .post(&webhook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Sluice-Event", &delivery.event)
        .header("X-Sluice-Delivery", &delivery.id)
        .body(delivery.body.clone());
    if let Some(secret) = &webhook.secret {
        request = request.header("X-Sluice-Signature", signature(secret, &delivery.body));
    }
    let failed = |error: String| Failed {
        status: None,
        error,
    };
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
        Ok(response) => Err(Failed {
            status: Some(response.status().as_u16()),
            error: format!("the receiver answered {}", response.status()),
        }),
        Err(error) if error.is_timeout() => Err(failed(format!(
            "the receiver did not answer within {} s",
            TIMEOUT.as_secs()
        ))),
        Err(error) if error.is_connect() => Err(failed(format!(
            "cannot connect to the receiver: {}",
            root_cause(&error)
        ))),
        Err(error) => Err(failed(format!("sending failed: {}", root_cause(&error)))),
    }
}

/// The innermost cause of an error, which says the most (connection refused).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2.
    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_redacted_url_keeps_the_scheme_host_and_port_only() {
        assert_eq!(
            redacted("https://hooks.slack.com/services/T0/B0/XXXX"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(redacted("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/");
        assert_eq!(
            redacted("http://h.example.net?key=1"),
            "http://h.example.net/…"
        );
    }

    #[test]
    fn a_slack_summary_names_the_rollout_the_kind_and_its_fields() {
        let event = sluice_api::rollout::EventView {
            seq: 7,
            rollout: Some("r-3".to_owned()),
            at: "2026-12-07T09:00:00Z".to_owned(),
            actor: Some("alice".to_owned()),
            kind: "stage_started".to_owned(),
            data: serde_json::json!({"index": 1, "name": "canary", "percent": 5.0, "hosts": []}),
        };
        assert_eq!(
            summary(&event),
            "sluice: rollout r-3 stage_started by alice: index=1, name=canary, percent=5.0"
        );
    }
}
