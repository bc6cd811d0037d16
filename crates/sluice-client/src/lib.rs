//! sluice-client: a typed async client for sluice's HTTP API (v1).
//!
//! One method per endpoint, taking and returning the `sluice-api` wire types;
//! every failure is a [`ClientError`] that carries the HTTP status and the
//! server's `{"error": {code, message, field}}`, or says that the server could
//! not be reached. The token travels as a bearer token. A server's address
//! is a [`ServerUrl`], shown without the password it may carry; one client
//! (one connection pool) can be turned to another server
//! ([`Client::with_server`]) or token ([`Client::with_token`]).
//! [`Client::download`] fetches from anywhere else (an artifact a payload
//! names) through the same pool and TLS trust, without the token.
//!
//! ```no_run
//! # async fn example() -> Result<(), sluice_client::ClientError> {
//! use sluice_api::rollout::Action;
//! use sluice_client::Client;
//!
//! let client = Client::builder("http://127.0.0.1:7070").token("s3cr3t").build()?;
//! let created = client.create_rollout(&std::fs::read_to_string("plan.yaml").unwrap_or_default()).await?;
//! client.action(&created.id, Action::Start, "canary approved in CHG-1234").await?;
//! # Ok(()) }
//! ```
//!
//! Architecture invariant: this crate knows the wire and HTTP, nothing else —
//! no store, no server, no engine, no command line — so that the agent, the
//! CLI and the tests can all use it and the agent stays small.

mod download;
mod error;
mod server;
mod sse;

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use sluice_api::admin::{
    ComponentList, FreezeView, Role, StableChange, StableRequest, TokenCreated, TokenList,
    TokenRequest, TokenRevoked,
};
use sluice_api::agent::{CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse};
use sluice_api::audit::AuditList;
use sluice_api::cluster::ClusterView;
use sluice_api::dashboard::SigninLink;
use sluice_api::error::ErrorBody;
use sluice_api::fleet::{BudgetRequest, BudgetView, PinRequest, PinView};
use sluice_api::host::{DesiredMap, HostList, HostView, ImportHost, ImportResult, Reenrolled};
use sluice_api::rollout::{
    Action, Created, EventList, EventView, Reason, RolloutDetail, RolloutList, RolloutSummary,
};
use sluice_api::webhook::{WebhookList, WebhookRequest, WebhookTestResult, WebhookView};
use sluice_api::HostId;

pub use download::{Download, DownloadError};
pub use error::ClientError;
pub use server::ServerUrl;
pub use sse::{SseEvent, SseParser};

/// Which hosts `GET /v1/hosts` lists: a label selector, a component,
/// drifted hosts only, and a page (hosts are ordered by id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostQuery<'a> {
    pub selector: Option<&'a str>,
    pub component: Option<&'a str>,
    /// Only hosts whose agent reports a component (`component`, if given)
    /// drifted from its desired version.
    pub drifted: bool,
    /// Only hosts with a component pinned to a version.
    pub pinned: bool,
    /// Skip this many matching hosts.
    pub offset: Option<usize>,
    /// At most this many (the server's default is 1000).
    pub limit: Option<usize>,
}

/// Which page of tokens `GET /v1/tokens` lists (see [`Client::tokens_page`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenFilter<'a> {
    /// Only tokens of this role.
    pub role: Option<Role>,
    /// The `next` of the page before.
    pub after: Option<&'a str>,
    /// At most this many (the server's default: 1000).
    pub limit: Option<u32>,
}

/// Which entries `GET /v1/audit` lists (see [`Client::audit`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// A token's id or name.
    pub actor: Option<String>,
    pub kind: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    /// The last `seq` read.
    pub after: Option<i64>,
    pub limit: Option<u32>,
}

/// Which events `GET /v1/events` lists or streams (see [`Client::log_events`]
/// and [`Client::follow_events`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this rollout's events.
    pub rollout: Option<String>,
    /// Only events of these kinds, comma-separated.
    pub kind: Option<String>,
    /// The last `seq` read.
    pub after: Option<i64>,
    /// At most this many in a page (a stream takes none).
    pub limit: Option<u32>,
}

/// A stream that sends nothing, not even its keep-alive comment, for this
/// long is taken for dead (the server sends one every 15 s).
const STREAM_SILENCE: Duration = Duration::from_secs(45);
/// No total timeout for a stream: it ends when the server ends it.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// An open `GET /v1/events?follow=true`: [`EventStream::next`] gives its
/// events one at a time.
#[derive(Debug)]
pub struct EventStream {
    response: reqwest::Response,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
    server: String,
}

impl EventStream {
    /// The next event; `None` once the server ended the stream (it shuts
    /// down). An error when the connection broke or fell silent: follow
    /// again after the last event's seq.
    pub async fn next(&mut self) -> Result<Option<EventView>, ClientError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return serde_json::from_str(&event.data)
                    .map(Some)
                    .map_err(|source| ClientError::Decode {
                        request: "GET /v1/events?follow=true".to_owned(),
                        source,
                    });
            }
            let chunk = tokio::time::timeout(STREAM_SILENCE, self.response.chunk())
                .await
                .map_err(|_| ClientError::Silent {
                    server: self.server.clone(),
                    silence: STREAM_SILENCE,
                })?
                .map_err(|source| {
                    ClientError::from_transport(&self.server, STREAM_TIMEOUT, source)
                })?;
            let Some(chunk) = chunk else {
                return Ok(None);
            };
            let mut events = Vec::new();
            self.parser.feed(&chunk, &mut events);
            self.ready.extend(events);
        }
    }
}

/// Builds a [`Client`]: the server URL, the token, timeouts.
#[derive(Clone)]
pub struct ClientBuilder {
    server: String,
    token: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    /// Extra trusted CA certificates (PEM), for a server whose certificate
    /// a private CA signed.
    ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl ClientBuilder {
    /// The bearer token sent with every request.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The bearer token, if any.
    pub fn maybe_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// How long one request may take in all (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Also trusts the CA certificates of this PEM bundle (beside the
    /// system's), for a server whose certificate a private CA signed.
    pub fn ca_certificate_pem(mut self, pem: Vec<u8>) -> Self {
        self.ca_pem = Some(pem);
        self
    }

    /// The `User-Agent` header (default `sluice-client/VERSION`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    pub fn build(self) -> Result<Client, ClientError> {
        let base = ServerUrl::parse(&self.server)?;
        let token = match self.token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|_| ClientError::InvalidToken)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        install_crypto_provider();
        let mut http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent);
        if let Some(pem) = &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|error| {
                ClientError::InvalidCaCertificate {
                    reason: error.to_string(),
                }
            })?;
            if certs.is_empty() {
                return Err(ClientError::InvalidCaCertificate {
                    reason: "no certificate in it".to_owned(),
                });
            }
            http = http.tls_certs_merge(certs);
        }
        let http = http.build().map_err(|source| ClientError::Request {
            request: "(building the HTTP client)".into(),
            source,
        })?;
        Ok(Client {
            http,
            display: base.to_string(),
            base,
            token,
            timeout: self.timeout,
        })
    }
}

/// rustls needs one process-wide crypto provider; sluice builds it with
/// `ring` (see the workspace manifest). Another already installed is kept.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A client of one sluice server. Cheap to clone (the connection pool is
/// shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: ServerUrl,
    /// `base` as messages show it (no password).
    display: String,
    token: Option<HeaderValue>,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.display)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client without a token, with the default timeouts.
    pub fn new(server: &str) -> Result<Client, ClientError> {
        Client::builder(server).build()
    }

    pub fn builder(server: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            server: server.into(),
            token: None,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            user_agent: concat!("sluice-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            ca_pem: None,
        }
    }

    /// The server's base URL, without a trailing slash (`http://127.0.0.1:7070`)
    /// nor the password it may carry.
    pub fn server(&self) -> &str {
        &self.display
    }

    /// The server this client talks to.
    pub fn server_url(&self) -> &ServerUrl {
        &self.base
    }

    /// The same client (the same connection pool, token and timeouts)
    /// talking to another server: an agent with a list of servers keeps
    /// one pool for them all.
    pub fn with_server(&self, server: &ServerUrl) -> Client {
        Client {
            base: server.clone(),
            display: server.to_string(),
            ..self.clone()
        }
    }

    /// The same client (the same connection pool, server and timeouts) with
    /// another bearer token: many agents of one process, each with the token
    /// bound to its host, share one pool.
    pub fn with_token(&self, token: &str) -> Result<Client, ClientError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| ClientError::InvalidToken)?;
        value.set_sensitive(true);
        Ok(Client {
            token: Some(value),
            ..self.clone()
        })
    }

    /// Whether requests carry a token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    // ---- agent -------------------------------------------------------------

    /// `POST /v1/agent/checkin`: report what the host runs, learn what it
    /// should run.
    pub async fn checkin(&self, report: &CheckinRequest) -> Result<CheckinResponse, ClientError> {
        let request = self.request(Method::POST, &["v1", "agent", "checkin"], &[]);
        self.send_json(request.json(report), "POST /v1/agent/checkin")
            .await
    }

    // ---- rollouts ----------------------------------------------------------

    /// `POST /v1/rollouts`: submit a plan (YAML or JSON text) as a new,
    /// pending rollout.
    pub async fn create_rollout(&self, plan: &str) -> Result<Created, ClientError> {
        self.create_rollout_at(plan, None).await
    }

    /// `POST /v1/rollouts?start_at=T`: a rollout scheduled to start by
    /// itself at `start_at` (RFC 3339 with an offset), or, with `None`,
    /// like [`Client::create_rollout`].
    pub async fn create_rollout_at(
        &self,
        plan: &str,
        start_at: Option<&str>,
    ) -> Result<Created, ClientError> {
        let query: Vec<(&str, &str)> = start_at.map(|at| ("start_at", at)).into_iter().collect();
        let content_type = if plan.trim_start().starts_with('{') {
            "application/json"
        } else {
            "application/yaml"
        };
        let request = self
            .request(Method::POST, &["v1", "rollouts"], &query)
            .header(CONTENT_TYPE, content_type)
            .body(plan.to_owned());
        self.send_json(request, "POST /v1/rollouts").await
    }

    /// `GET /v1/rollouts`.
    pub async fn rollouts(&self) -> Result<RolloutList, ClientError> {
        let request = self.request(Method::GET, &["v1", "rollouts"], &[]);
        self.send_json(request, "GET /v1/rollouts").await
    }

    /// `GET /v1/rollouts/{id}`.
    pub async fn rollout(&self, id: &str) -> Result<RolloutDetail, ClientError> {
        let request = self.request(Method::GET, &["v1", "rollouts", id], &[]);
        self.send_json(request, &format!("GET /v1/rollouts/{id}"))
            .await
    }

    /// `POST /v1/rollouts/{id}/{action}` with the reason recorded in the
    /// event log; answers the rollout as the action left it.
    pub async fn action(
        &self,
        id: &str,
        action: Action,
        reason: &str,
    ) -> Result<RolloutSummary, ClientError> {
        let request = self
            .request(Method::POST, &["v1", "rollouts", id, action.as_str()], &[])
            .json(&Reason {
                reason: reason.to_owned(),
            });
        self.send_json(request, &format!("POST /v1/rollouts/{id}/{action}"))
            .await
    }

    /// `GET /v1/rollouts/{id}/events`: events with `seq > after`, oldest
    /// first, at most `limit` of them (the server's default page otherwise).
    pub async fn events(
        &self,
        id: &str,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<EventList, ClientError> {
        let after = after.map(|after| after.to_string());
        let limit = limit.map(|limit| limit.to_string());
        let mut query = Vec::new();
        if let Some(after) = &after {
            query.push(("after", after.as_str()));
        }
        if let Some(limit) = &limit {
            query.push(("limit", limit.as_str()));
        }
        let request = self.request(Method::GET, &["v1", "rollouts", id, "events"], &query);
        self.send_json(request, &format!("GET /v1/rollouts/{id}/events"))
            .await
    }

    /// `GET /v1/events`: the whole log's events matching `filter`, oldest
    /// first (without `after`, the newest `limit`).
    pub async fn log_events(&self, filter: &EventFilter) -> Result<EventList, ClientError> {
        let query = event_query(filter);
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let request = self.request(Method::GET, &["v1", "events"], &query);
        self.send_json(request, "GET /v1/events").await
    }

    /// `GET /v1/events?follow=true`: the events matching `filter` (its
    /// `limit` is not sent) as they are written, from after `last_event_id`
    /// when given (sent as `Last-Event-ID`), else after `filter.after`,
    /// else from the log's end. Once this returns, where the stream starts
    /// is fixed.
    pub async fn follow_events(
        &self,
        filter: &EventFilter,
        last_event_id: Option<i64>,
    ) -> Result<EventStream, ClientError> {
        let filter = EventFilter {
            limit: None,
            ..filter.clone()
        };
        let mut query = event_query(&filter);
        query.push(("follow", "true".to_owned()));
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut request = self
            .request(Method::GET, &["v1", "events"], &query)
            .timeout(STREAM_TIMEOUT)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(seq) = last_event_id {
            request = request.header("Last-Event-ID", seq.to_string());
        }
        let response = self.send(request).await?;
        Ok(EventStream {
            response,
            parser: SseParser::default(),
            ready: std::collections::VecDeque::new(),
            server: self.display.clone(),
        })
    }

    /// The rollout's retrospective in `format` (`md`, `html`, `json`, or
    /// `svg` for its chart), as the server wrote it.
    pub async fn report(&self, id: &str, format: &str) -> Result<String, ClientError> {
        let request = self.request(
            Method::GET,
            &["v1", "rollouts", id, "report"],
            &[("format", format)],
        );
        let response = self.send(request).await?;
        response
            .text()
            .await
            .map_err(|source| self.transport_error(source))
    }

    /// `GET /v1/metrics/cohorts`: the cohorts of comparison gates, in the
    /// Prometheus text format (`sluice_cohort{rollout, cohort, host,
    /// instance} 1`).
    pub async fn cohorts(&self) -> Result<String, ClientError> {
        let request = self.request(Method::GET, &["v1", "metrics", "cohorts"], &[]);
        let response = self.send(request).await?;
        response
            .text()
            .await
            .map_err(|source| self.transport_error(source))
    }

    // ---- inventory ---------------------------------------------------------

    /// `GET /v1/hosts?selector=…&component=…`: the server's first page
    /// (1000 hosts, ordered by id); `total` says how many match.
    pub async fn hosts(
        &self,
        selector: Option<&str>,
        component: Option<&str>,
    ) -> Result<HostList, ClientError> {
        self.hosts_page(&HostQuery {
            selector,
            component,
            ..HostQuery::default()
        })
        .await
    }

    /// `GET /v1/hosts` with paging.
    pub async fn hosts_page(&self, query: &HostQuery<'_>) -> Result<HostList, ClientError> {
        let offset = query.offset.map(|offset| offset.to_string());
        let limit = query.limit.map(|limit| limit.to_string());
        let mut pairs = Vec::new();
        if let Some(selector) = query.selector {
            pairs.push(("selector", selector));
        }
        if let Some(component) = query.component {
            pairs.push(("component", component));
        }
        if query.drifted {
            pairs.push(("drifted", "true"));
        }
        if query.pinned {
            pairs.push(("pinned", "true"));
        }
        if let Some(offset) = &offset {
            pairs.push(("offset", offset.as_str()));
        }
        if let Some(limit) = &limit {
            pairs.push(("limit", limit.as_str()));
        }
        let request = self.request(Method::GET, &["v1", "hosts"], &pairs);
        self.send_json(request, "GET /v1/hosts").await
    }

    /// `GET /v1/hosts/{id}`.
    pub async fn host(&self, id: &str) -> Result<HostView, ClientError> {
        let request = self.request(Method::GET, &["v1", "hosts", id], &[]);
        self.send_json(request, &format!("GET /v1/hosts/{id}"))
            .await
    }

    /// `GET /v1/hosts/{id}/desired`: component → desired version.
    pub async fn desired(&self, id: &str) -> Result<DesiredMap, ClientError> {
        let request = self.request(Method::GET, &["v1", "hosts", id, "desired"], &[]);
        self.send_json(request, &format!("GET /v1/hosts/{id}/desired"))
            .await
    }

    /// `POST /v1/hosts/import`: register hosts (and the versions they run)
    /// without agents, for `reason` (recorded in the audit log).
    pub async fn import_hosts(
        &self,
        hosts: &[ImportHost],
        reason: &str,
    ) -> Result<ImportResult, ClientError> {
        let request = self
            .request(
                Method::POST,
                &["v1", "hosts", "import"],
                &[("reason", reason)],
            )
            .json(hosts);
        self.send_json(request, "POST /v1/hosts/import").await
    }

    // ---- admin -------------------------------------------------------------

    /// `GET /v1/components`.
    pub async fn components(&self) -> Result<ComponentList, ClientError> {
        let request = self.request(Method::GET, &["v1", "components"], &[]);
        self.send_json(request, "GET /v1/components").await
    }

    /// `PUT /v1/components/{name}/stable`: move the stable version (or,
    /// with `dry_run`, say how many hosts that would change at once).
    pub async fn set_stable(
        &self,
        component: &str,
        request: &StableRequest,
    ) -> Result<StableChange, ClientError> {
        let request = self
            .request(Method::PUT, &["v1", "components", component, "stable"], &[])
            .json(request);
        self.send_json(request, "PUT /v1/components/{name}/stable")
            .await
    }

    /// `GET /v1/freeze`.
    pub async fn freeze(&self) -> Result<FreezeView, ClientError> {
        let request = self.request(Method::GET, &["v1", "freeze"], &[]);
        self.send_json(request, "GET /v1/freeze").await
    }

    /// `GET /v1/cluster`: the replicas, the leader and the lease's epoch.
    pub async fn cluster(&self) -> Result<ClusterView, ClientError> {
        let request = self.request(Method::GET, &["v1", "cluster"], &[]);
        self.send_json(request, "GET /v1/cluster").await
    }

    /// `PUT /v1/freeze`: hold every rollout at once.
    pub async fn freeze_on(&self, reason: &str) -> Result<FreezeView, ClientError> {
        self.set_freeze(Method::PUT, reason).await
    }

    /// `DELETE /v1/freeze`: release the hold.
    pub async fn freeze_off(&self, reason: &str) -> Result<FreezeView, ClientError> {
        self.set_freeze(Method::DELETE, reason).await
    }

    /// `PUT` (on) or `DELETE` (off) `/v1/freeze` with the reason.
    async fn set_freeze(&self, method: Method, reason: &str) -> Result<FreezeView, ClientError> {
        let what = format!("{method} /v1/freeze");
        let request = self.request(method, &["v1", "freeze"], &[]).json(&Reason {
            reason: reason.to_owned(),
        });
        self.send_json(request, &what).await
    }

    /// `POST /v1/tokens`: a new token, for `reason` (recorded in the audit
    /// log); its secret is in the answer only.
    pub async fn create_token(
        &self,
        role: Role,
        host: Option<&HostId>,
        name: Option<&str>,
        reason: &str,
    ) -> Result<TokenCreated, ClientError> {
        self.request_token(&TokenRequest {
            role,
            host: host.cloned(),
            name: name.map(str::to_owned),
            selector: None,
            uses: None,
            expires: None,
            reason: reason.to_owned(),
        })
        .await
    }

    /// `POST /v1/tokens` with every field (an enrollment token's selector
    /// and uses, an expiry): a new token; its secret is in the answer only.
    pub async fn request_token(&self, token: &TokenRequest) -> Result<TokenCreated, ClientError> {
        let request = self
            .request(Method::POST, &["v1", "tokens"], &[])
            .json(token);
        self.send_json(request, "POST /v1/tokens").await
    }

    /// `POST /v1/signin-links`: a one-time dashboard sign-in link for this
    /// client's token.
    pub async fn signin_link(&self) -> Result<SigninLink, ClientError> {
        let request = self.request(Method::POST, &["v1", "signin-links"], &[]);
        self.send_json(request, "POST /v1/signin-links").await
    }

    /// `GET /v1/tokens`: every token (of `role`), never a secret: each
    /// page in turn, until the last.
    pub async fn tokens(&self, role: Option<Role>) -> Result<TokenList, ClientError> {
        let mut all = TokenList {
            tokens: Vec::new(),
            next: None,
        };
        let mut after = None;
        loop {
            let page = self
                .tokens_page(&TokenFilter {
                    role,
                    after: after.as_deref(),
                    limit: None,
                })
                .await?;
            all.tokens.extend(page.tokens);
            match page.next {
                // A cursor that did not move would ask for the same page again.
                Some(next) if after.as_ref() != Some(&next) => after = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// `GET /v1/tokens`: one page of tokens, in the order of their ids.
    pub async fn tokens_page(&self, filter: &TokenFilter<'_>) -> Result<TokenList, ClientError> {
        let limit = filter.limit.map(|limit| limit.to_string());
        let query: Vec<(&str, &str)> = [
            ("role", filter.role.map(|role| role.as_str())),
            ("after", filter.after),
            ("limit", limit.as_deref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
        .collect();
        let request = self.request(Method::GET, &["v1", "tokens"], &query);
        self.send_json(request, "GET /v1/tokens").await
    }

    /// `GET /v1/audit`: entries matching `filter`, oldest first (without
    /// `since` or `after`, the newest `limit`).
    pub async fn audit(&self, filter: &AuditFilter) -> Result<AuditList, ClientError> {
        let after = filter.after.map(|after| after.to_string());
        let limit = filter.limit.map(|limit| limit.to_string());
        let query: Vec<(&str, &str)> = [
            ("actor", filter.actor.as_deref()),
            ("kind", filter.kind.as_deref()),
            ("since", filter.since.as_deref()),
            ("after", after.as_deref()),
            ("limit", limit.as_deref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
        .collect();
        let request = self.request(Method::GET, &["v1", "audit"], &query);
        self.send_json(request, "GET /v1/audit").await
    }

    /// `DELETE /v1/tokens/{id}`: revokes the token of this id (or name),
    /// for `reason` (recorded in the audit log).
    pub async fn revoke_token(&self, id: &str, reason: &str) -> Result<TokenRevoked, ClientError> {
        let request = self
            .request(Method::DELETE, &["v1", "tokens", id], &[])
            .json(&Reason {
                reason: reason.to_owned(),
            });
        self.send_json(request, &format!("DELETE /v1/tokens/{id}"))
            .await
    }

    /// `POST /v1/agent/enroll` (with an enrollment token): the host's own
    /// token, shown once.
    pub async fn enroll(&self, enrollment: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        let request = self
            .request(Method::POST, &["v1", "agent", "enroll"], &[])
            .json(enrollment);
        self.send_json(request, "POST /v1/agent/enroll").await
    }

    /// `POST /v1/hosts/{id}/reenroll`: revokes the host's tokens so that it
    /// may enroll again, for `reason` (recorded in the audit log).
    pub async fn reenroll(&self, host: &str, reason: &str) -> Result<Reenrolled, ClientError> {
        let request = self
            .request(Method::POST, &["v1", "hosts", host, "reenroll"], &[])
            .json(&Reason {
                reason: reason.to_owned(),
            });
        self.send_json(request, &format!("POST /v1/hosts/{host}/reenroll"))
            .await
    }

    // ---- fleet operations ----------------------------------------------------

    /// `GET /v1/budget`: the change budget, what is in flight against it
    /// and the rollouts waiting.
    pub async fn budget(&self) -> Result<BudgetView, ClientError> {
        let request = self.request(Method::GET, &["v1", "budget"], &[]);
        self.send_json(request, "GET /v1/budget").await
    }

    /// `PUT /v1/budget`: set the change budget (or lift it, without
    /// `max_in_flight`).
    pub async fn set_budget(&self, budget: &BudgetRequest) -> Result<BudgetView, ClientError> {
        let request = self
            .request(Method::PUT, &["v1", "budget"], &[])
            .json(budget);
        self.send_json(request, "PUT /v1/budget").await
    }

    /// `PUT /v1/hosts/{id}/pins/{component}`: tell the host a version for
    /// a while.
    pub async fn pin(
        &self,
        host: &str,
        component: &str,
        pin: &PinRequest,
    ) -> Result<PinView, ClientError> {
        let request = self
            .request(Method::PUT, &["v1", "hosts", host, "pins", component], &[])
            .json(pin);
        self.send_json(request, &format!("PUT /v1/hosts/{host}/pins/{component}"))
            .await
    }

    /// `DELETE /v1/hosts/{id}/pins/{component}`: lift the pin.
    pub async fn unpin(
        &self,
        host: &str,
        component: &str,
        reason: &str,
    ) -> Result<PinView, ClientError> {
        let request = self
            .request(
                Method::DELETE,
                &["v1", "hosts", host, "pins", component],
                &[],
            )
            .json(&Reason {
                reason: reason.to_owned(),
            });
        self.send_json(
            request,
            &format!("DELETE /v1/hosts/{host}/pins/{component}"),
        )
        .await
    }

    /// `GET /v1/webhooks`: every webhook and how its delivery goes.
    pub async fn webhooks(&self) -> Result<WebhookList, ClientError> {
        let request = self.request(Method::GET, &["v1", "webhooks"], &[]);
        self.send_json(request, "GET /v1/webhooks").await
    }

    /// `POST /v1/webhooks`: deliver events to a receiver from now on.
    pub async fn add_webhook(&self, webhook: &WebhookRequest) -> Result<WebhookView, ClientError> {
        let request = self
            .request(Method::POST, &["v1", "webhooks"], &[])
            .json(webhook);
        self.send_json(request, "POST /v1/webhooks").await
    }

    /// `DELETE /v1/webhooks/{id}`: stop delivering to a webhook.
    pub async fn remove_webhook(&self, id: &str, reason: &str) -> Result<WebhookView, ClientError> {
        let request = self
            .request(Method::DELETE, &["v1", "webhooks", id], &[])
            .json(&Reason {
                reason: reason.to_owned(),
            });
        self.send_json(request, &format!("DELETE /v1/webhooks/{id}"))
            .await
    }

    /// `POST /v1/webhooks/{id}/test`: one test delivery, now.
    pub async fn test_webhook(&self, id: &str) -> Result<WebhookTestResult, ClientError> {
        let request = self.request(Method::POST, &["v1", "webhooks", id, "test"], &[]);
        self.send_json(request, &format!("POST /v1/webhooks/{id}/test"))
            .await
    }

    /// `GET /healthz`: succeeds when the server answers 2xx.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        let request = self.request(Method::GET, &["healthz"], &[]);
        self.send_ignoring_body(request).await
    }

    // ---- plumbing ----------------------------------------------------------

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.url().clone();
        // `base` is a validated http(s) URL, which always has path segments.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn request(&self, method: Method, segments: &[&str], query: &[(&str, &str)]) -> RequestBuilder {
        let request = self.http.request(method, self.url(segments, query));
        match &self.token {
            Some(token) => request.header(reqwest::header::AUTHORIZATION, token.clone()),
            None => request,
        }
    }

    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|source| self.transport_error(source))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = (status == reqwest::StatusCode::TOO_MANY_REQUESTS)
            .then(|| retry_after(response.headers()));
        let body = response
            .bytes()
            .await
            .map_err(|source| self.transport_error(source))?;
        let parsed = serde_json::from_slice::<ErrorBody>(&body);
        if let Some(retry_after) = retry_after {
            return Err(ClientError::Busy {
                server: self.display.clone(),
                retry_after,
                message: match parsed {
                    Ok(ErrorBody { error }) => error.message,
                    Err(_) => snippet(&body),
                },
            });
        }
        Err(match parsed {
            Ok(ErrorBody { error }) => ClientError::Api {
                status: status.as_u16(),
                error,
            },
            Err(_) => ClientError::Http {
                server: self.display.clone(),
                status: status.as_u16(),
                body: snippet(&body),
            },
        })
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        what: &str,
    ) -> Result<T, ClientError> {
        let response = self.send(request).await?;
        let body = response
            .bytes()
            .await
            .map_err(|source| self.transport_error(source))?;
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
            request: what.to_owned(),
            source,
        })
    }

    async fn send_ignoring_body(&self, request: RequestBuilder) -> Result<(), ClientError> {
        let response = self.send(request).await?;
        // Read the body so that the connection goes back to the pool.
        response
            .bytes()
            .await
            .map_err(|source| self.transport_error(source))?;
        Ok(())
    }

    fn transport_error(&self, source: reqwest::Error) -> ClientError {
        if source.is_builder() {
            return ClientError::Request {
                request: source
                    .url()
                    .map(|url| url.path().to_owned())
                    .unwrap_or_default(),
                source,
            };
        }
        ClientError::from_transport(&self.display, self.timeout, source)
    }
}

/// The query parameters of `filter`.
fn event_query(filter: &EventFilter) -> Vec<(&'static str, String)> {
    [
        ("rollout", filter.rollout.clone()),
        ("kind", filter.kind.clone()),
        ("after", filter.after.map(|after| after.to_string())),
        ("limit", filter.limit.map(|limit| limit.to_string())),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name, value)))
    .collect()
}

/// How long a 429 asks to wait: its `Retry-After` in seconds (at most an
/// hour), else 5 s (an HTTP date, or a proxy's 429 without one).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(5), |seconds| {
            Duration::from_secs(seconds.min(3600))
        })
}

/// The start of a non-JSON error body, on one line, for the error message.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > MAX {
        let cut: String = line.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_append_escaped_segments_and_keep_a_path_prefix() -> Result<(), ClientError> {
        let client = Client::new("http://proxy.example.net/sluice")?;
        let url = client.url(&["v1", "hosts", "a b/c"], &[("selector", "role in (x, y)")]);
        assert_eq!(
            url.as_str(),
            "http://proxy.example.net/sluice/v1/hosts/a%20b%2Fc?selector=role+in+%28x%2C+y%29"
        );
        assert_eq!(client.server(), "http://proxy.example.net/sluice");
        let client = Client::new("http://127.0.0.1:7070/")?;
        assert_eq!(
            client
                .url(&["v1", "rollouts", "r-7", "pause"], &[])
                .as_str(),
            "http://127.0.0.1:7070/v1/rollouts/r-7/pause"
        );
        assert_eq!(client.server(), "http://127.0.0.1:7070");
        Ok(())
    }

    #[test]
    fn another_server_keeps_the_token_and_takes_its_own_base() -> Result<(), ClientError> {
        let client = Client::builder("http://a.example.net:7070")
            .token("agent-token")
            .build()?;
        let other = client.with_server(&ServerUrl::parse("https://b.example.net/sluice")?);
        assert!(other.has_token());
        assert_eq!(other.server(), "https://b.example.net/sluice");
        assert_eq!(
            other.url(&["v1", "agent", "checkin"], &[]).as_str(),
            "https://b.example.net/sluice/v1/agent/checkin"
        );
        assert_eq!(client.server(), "http://a.example.net:7070", "unchanged");
        Ok(())
    }

    #[test]
    fn debug_output_never_shows_the_token() -> Result<(), ClientError> {
        let builder = Client::builder("http://127.0.0.1:7070").token("sekrit-token");
        assert!(!format!("{builder:?}").contains("sekrit"));
        let client = builder.build()?;
        assert!(!format!("{client:?}").contains("sekrit"));
        Ok(())
    }

    #[test]
    fn long_error_bodies_are_cut_to_one_line() {
        let body = format!("<html>\n<body>{}</body></html>", "x".repeat(500));
        let cut = snippet(body.as_bytes());
        assert!(cut.ends_with('…') && !cut.contains('\n'), "{cut}");
        assert_eq!(cut.chars().count(), 201);
    }
}
