//! The server's settings.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};

/// How `sluice server` runs. [`Config::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port (see [`crate::Application::port`]).
    pub listen: SocketAddr,
    /// Holds the SQLite database (unless `database_url` is set) and
    /// `admin.token`.
    pub data_dir: PathBuf,
    /// Keep the state in this PostgreSQL database instead of SQLite in
    /// `data_dir`.
    pub database_url: Option<DatabaseUrl>,
    /// `next_checkin_s` in check-in answers.
    pub next_checkin_s: u64,
    /// Check-ins admitted and not yet answered, at most; more are answered
    /// 429 with `Retry-After` ([`crate::admission`]).
    pub checkin_queue: usize,
    /// Check-ins answered later than this after their admission make the
    /// server shed new ones (429) for as long (`None`: no bound in time;
    /// [`crate::admission`]).
    pub checkin_wait: Option<std::time::Duration>,
    /// Requests a second per token to every endpoint but the agents' and
    /// the ops ones (0: no limit; [`crate::admission::TokenRate`]).
    pub api_rate: u32,
    /// Events streams (`GET /v1/events?follow=true`) open at once, at most;
    /// one more is answered 429 with `Retry-After`.
    pub event_streams: usize,
    /// How often the controller ticks every rollout.
    pub tick_interval: Duration,
    /// The longest a Prometheus query may take (HTTP gates have their own
    /// `timeout` in the plan).
    pub gate_timeout: Duration,
    /// How comparison gates' cohorts are exported (`--cohort-instance`,
    /// `--cohort-max`).
    pub cohorts: crate::cohorts::CohortSettings,
    pub clock: Arc<dyn Clock>,
    /// Serve HTTPS with this certificate and key (PEM files) instead of HTTP.
    pub tls: Option<TlsFiles>,
    /// With `database_url`: how this replica takes part in the cluster.
    pub replica: ReplicaConfig,
    /// The longest wait between two retries of a failing webhook delivery.
    pub webhook_retry_max: Duration,
}

/// A replica's identity and its lease (PostgreSQL only: the embedded store
/// has one server, which leads).
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// The replica's id in `GET /v1/cluster` and the lease; default
    /// `HOSTNAME:PORT`.
    pub id: Option<String>,
    /// Where the other replicas forward requests to this one (when it
    /// leads); default the scheme and the listening address, or the host
    /// name when listening on every address.
    pub advertise_url: Option<String>,
    /// How long a lease lasts unless renewed. The leader renews it every
    /// quarter of this and stops deciding when it could not for three
    /// quarters; a standby takes over once it expires.
    pub lease_ttl: Duration,
    /// Trusted (PEM) besides the system's roots when forwarding to a leader
    /// that serves HTTPS with a private CA's certificate.
    pub peer_ca: Option<PathBuf>,
}

impl Default for ReplicaConfig {
    fn default() -> ReplicaConfig {
        ReplicaConfig {
            id: None,
            advertise_url: None,
            lease_ttl: Duration::from_secs(8),
            peer_ca: None,
        }
    }
}

/// The PEM files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Config {
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen,
            data_dir: data_dir.into(),
            database_url: None,
            next_checkin_s: 60,
            checkin_queue: crate::admission::DEFAULT_CHECKIN_QUEUE,
            checkin_wait: Some(crate::admission::DEFAULT_CHECKIN_WAIT),
            api_rate: crate::admission::DEFAULT_API_RATE,
            event_streams: crate::follow::MAX_STREAMS,
            tick_interval: Duration::from_secs(1),
            gate_timeout: Duration::from_secs(10),
            cohorts: crate::cohorts::CohortSettings::default(),
            clock: Arc::new(SystemClock),
            tls: None,
            replica: ReplicaConfig::default(),
            webhook_retry_max: crate::webhooks::DEFAULT_RETRY_MAX,
        }
    }
}

/// A `postgres://` URL. It may hold a password: it shows only redacted.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(url.into())
    }

    /// The URL itself, password included: for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&sluice_store::postgres::redact(&self.0))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&sluice_store::postgres::redact(&self.0))
    }
}

/// Request body limits, in bytes; a larger body is answered 413.
pub mod limits {
    /// A check-in: labels and a few components with short messages.
    pub const CHECKIN: usize = 256 * 1024;
    /// A plan file.
    pub const PLAN: usize = 1024 * 1024;
    /// A fleet file for `POST /v1/hosts/import`: a million hosts fit.
    pub const IMPORT: usize = 512 * 1024 * 1024;
    /// Every other body (a reason, a token request).
    pub const DEFAULT: usize = 64 * 1024;
}
