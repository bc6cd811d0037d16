//! The backend-independent half of reading: rows as a backend fetched them,
//! turned into records.
//!
//! A row is a tuple of columns in the order of the statement that read it,
//! with the times as the dialect stores them ([`StoredTime`]: SQLite's
//! canonical text, PostgreSQL's raw `timestamptz`) and JSON as text. Every
//! stored value is parsed here — a time, JSON, a role, a report state — and
//! one that does not parse fails with [`StoreError::Corrupt`] naming the
//! table, the row's key and the column, never a default.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::batch::token_key;
use crate::{
    AuditRecord, BudgetRecord, ComponentRecord, FreezeRecord, HostComponentRecord, HostRecord,
    NewEvent, PinRecord, ReportedState, RolloutHostRecord, RolloutRecord, SampleRecord,
    SessionRecord, StateSampleRecord, StoreError, StoredAudit, StoredEvent, StoredWebhook,
    Timestamp, TokenRecord, TokenRole, UnknownName, WebhookDelivery, WebhookRecord,
};

/// Rows per page when `load` reads a large table.
pub(crate) const PAGE: i64 = 10_000;

/// A time as a dialect stores it. `Display` shows the stored value as it
/// is, for messages about a row that holds one.
pub(crate) trait StoredTime: Sized + fmt::Display {
    /// The stored form of `at`, truncated to the microsecond; an error
    /// says why the store cannot keep it.
    fn store(at: Timestamp) -> Result<Self, String>;

    /// The time stored; an error says why it is not one.
    fn timestamp(self) -> Result<Timestamp, String>;
}

/// A stored value that does not parse: names the table, the row and the column.
pub(crate) fn corrupt<'a, E: fmt::Display>(
    table: &'a str,
    key: &'a str,
    column: &'a str,
) -> impl FnOnce(E) -> StoreError + 'a {
    move |e| StoreError::Corrupt(format!("{table} row {key}, column {column}: {e}"))
}

fn json<V: serde::de::DeserializeOwned>(
    text: &str,
    table: &str,
    key: &str,
    column: &str,
) -> Result<V, StoreError> {
    serde_json::from_str(text).map_err(corrupt(table, key, column))
}

fn time<T: StoredTime>(
    stored: T,
    table: &str,
    key: &str,
    column: &str,
) -> Result<Timestamp, StoreError> {
    stored.timestamp().map_err(corrupt(table, key, column))
}

fn name<V: FromStr<Err = UnknownName>>(
    text: &str,
    table: &str,
    key: &str,
    column: &str,
) -> Result<V, StoreError> {
    text.parse().map_err(corrupt(table, key, column))
}

/// `id, labels, last_seen`.
pub(crate) type HostRow<T> = (String, String, Option<T>);

pub(crate) fn host<T: StoredTime>(
    (id, labels, last_seen): HostRow<T>,
) -> Result<HostRecord, StoreError> {
    let labels = json(&labels, "hosts", &id, "labels")?;
    host_with_labels((id, labels, last_seen))
}

/// A host whose labels the dialect parsed already (SQLite reads a page of
/// hosts as one JSON document).
pub(crate) fn host_with_labels<T: StoredTime>(
    (id, labels, last_seen): (String, BTreeMap<String, String>, Option<T>),
) -> Result<HostRecord, StoreError> {
    let last_seen = last_seen
        .map(|at| time(at, "hosts", &id, "last_seen"))
        .transpose()?;
    Ok(HostRecord {
        id,
        labels,
        last_seen,
    })
}

/// `host, component, version, state, message, drifted, at`.
pub(crate) type HostComponentRow<T> = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    bool,
    T,
);

pub(crate) fn host_component<T: StoredTime>(
    (host, component, version, state, message, drifted, at): HostComponentRow<T>,
) -> Result<HostComponentRecord, StoreError> {
    let key = format!("{host}/{component}");
    let state = state
        .map(|text| name::<ReportedState>(&text, "host_components", &key, "state"))
        .transpose()?;
    let at = time(at, "host_components", &key, "at")?;
    Ok(HostComponentRecord {
        host,
        component,
        version,
        state,
        message,
        drifted,
        at,
    })
}

/// `name, stable_version`.
pub(crate) type ComponentRow = (String, Option<String>);

pub(crate) fn component(
    (name, stable_version): ComponentRow,
) -> Result<ComponentRecord, StoreError> {
    Ok(ComponentRecord {
        name,
        stable_version,
    })
}

/// `id, name, component, state, plan, header, created_at, updated_at`.
pub(crate) type RolloutRow<T> = (String, String, String, String, String, String, T, T);

pub(crate) fn rollout<T: StoredTime>(
    (id, name, component, state, plan, header, created_at, updated_at): RolloutRow<T>,
) -> Result<RolloutRecord, StoreError> {
    Ok(RolloutRecord {
        header: json(&header, "rollouts", &id, "header")?,
        created_at: time(created_at, "rollouts", &id, "created_at")?,
        updated_at: time(updated_at, "rollouts", &id, "updated_at")?,
        id,
        name,
        component,
        state,
        plan,
    })
}

/// `rollout, host, record`: the record stays text (see [`RolloutHostRecord`]).
pub(crate) type RolloutHostRow = (String, String, String);

pub(crate) fn rollout_host(
    (rollout, host, record): RolloutHostRow,
) -> Result<RolloutHostRecord, StoreError> {
    Ok(RolloutHostRecord {
        rollout,
        host,
        record,
    })
}

/// `actor, reason, since` of the one row.
pub(crate) type FreezeRow<T> = (String, String, T);

pub(crate) fn freeze<T: StoredTime>(
    (actor, reason, since): FreezeRow<T>,
) -> Result<FreezeRecord, StoreError> {
    Ok(FreezeRecord {
        since: time(since, "freeze", "1", "since")?,
        actor,
        reason,
    })
}

/// `max_in_flight, per_stratum, spread, actor, reason, since` of the one row.
pub(crate) type BudgetRow<T> = (String, Option<String>, String, String, String, T);

pub(crate) fn budget<T: StoredTime>(
    (max_in_flight, per_stratum, spread, actor, reason, since): BudgetRow<T>,
) -> Result<BudgetRecord, StoreError> {
    let spread = json(&spread, "fleet_budget", "1", "spread")?;
    Ok(BudgetRecord {
        since: time(since, "fleet_budget", "1", "since")?,
        max_in_flight,
        per_stratum,
        spread,
        actor,
        reason,
    })
}

/// `host, component, version, expires_at, actor, reason, since`.
pub(crate) type PinRow<T> = (String, String, String, T, String, String, T);

pub(crate) fn pin<T: StoredTime>(
    (host, component, version, expires_at, actor, reason, since): PinRow<T>,
) -> Result<PinRecord, StoreError> {
    let row = format!("{host}/{component}");
    Ok(PinRecord {
        expires_at: time(expires_at, "pins", &row, "expires_at")?,
        since: time(since, "pins", &row, "since")?,
        host,
        component,
        version,
        actor,
        reason,
    })
}

/// `hash, role, host, name, created_at, selector, expires_at, uses_left,
/// last_used_at`.
pub(crate) type TokenRow<T> = (
    String,
    String,
    Option<String>,
    Option<String>,
    T,
    Option<String>,
    Option<T>,
    Option<i64>,
    Option<T>,
);

pub(crate) fn token<T: StoredTime>(
    (hash, role, host, name_, created_at, selector, expires_at, uses_left, last_used_at): TokenRow<
        T,
    >,
) -> Result<TokenRecord, StoreError> {
    // The hash is not a secret, but a prefix names the row well enough.
    let key = token_key(&hash);
    let maybe = |at: Option<T>, column| at.map(|at| time(at, "tokens", &key, column)).transpose();
    Ok(TokenRecord {
        role: name::<TokenRole>(&role, "tokens", &key, "role")?,
        created_at: time(created_at, "tokens", &key, "created_at")?,
        expires_at: maybe(expires_at, "expires_at")?,
        last_used_at: maybe(last_used_at, "last_used_at")?,
        hash,
        host,
        name: name_,
        selector,
        uses_left,
    })
}

/// `id, url, events, format, secret, created_at, created_by, delivered_seq,
/// failures, last_error, last_attempt_at, last_success_at`.
pub(crate) type WebhookRow<T> = (
    String,
    String,
    String,
    String,
    Option<String>,
    T,
    String,
    i64,
    i64,
    Option<String>,
    Option<T>,
    Option<T>,
);

pub(crate) fn webhook<T: StoredTime>(
    (
        id,
        url,
        events,
        format,
        secret,
        created_at,
        created_by,
        delivered_seq,
        failures,
        last_error,
        last_attempt_at,
        last_success_at,
    ): WebhookRow<T>,
) -> Result<StoredWebhook, StoreError> {
    let maybe = |at: Option<T>, column| at.map(|at| time(at, "webhooks", &id, column)).transpose();
    let delivery = WebhookDelivery {
        delivered_seq,
        failures,
        last_error,
        last_attempt_at: maybe(last_attempt_at, "last_attempt_at")?,
        last_success_at: maybe(last_success_at, "last_success_at")?,
    };
    Ok(StoredWebhook {
        webhook: WebhookRecord {
            events: json(&events, "webhooks", &id, "events")?,
            created_at: time(created_at, "webhooks", &id, "created_at")?,
            id,
            url,
            format,
            secret,
            created_by,
        },
        delivery,
    })
}

/// `hash, token, created_at, expires_at`.
pub(crate) type SessionRow<T> = (String, String, T, T);

pub(crate) fn session<T: StoredTime>(
    (hash, token, created_at, expires_at): SessionRow<T>,
) -> Result<SessionRecord, StoreError> {
    // Named by the start of its hash, as a token is.
    let key = token_key(&hash);
    Ok(SessionRecord {
        created_at: time(created_at, "dashboard_sessions", &key, "created_at")?,
        expires_at: time(expires_at, "dashboard_sessions", &key, "expires_at")?,
        hash,
        token,
    })
}

/// `seq, rollout, at, actor, kind, data`.
pub(crate) type EventRow<T> = (i64, Option<String>, T, Option<String>, String, String);

pub(crate) fn event<T: StoredTime>(
    (seq, rollout, at, actor, kind, data): EventRow<T>,
) -> Result<StoredEvent, StoreError> {
    let key = seq.to_string();
    Ok(StoredEvent {
        seq,
        event: NewEvent {
            data: json(&data, "events", &key, "data")?,
            at: time(at, "events", &key, "at")?,
            rollout,
            actor,
            kind,
        },
    })
}

/// `seq, at, actor_id, actor_name, actor_role, source, kind, target,
/// reason, data`.
pub(crate) type AuditRow<T> = (
    i64,
    T,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
);

pub(crate) fn audit<T: StoredTime>(
    (seq, at, actor_id, actor_name, actor_role, source, kind, target, reason, data): AuditRow<T>,
) -> Result<StoredAudit, StoreError> {
    let key = seq.to_string();
    Ok(StoredAudit {
        seq,
        entry: AuditRecord {
            at: time(at, "audit", &key, "at")?,
            actor_role: name(&actor_role, "audit", &key, "actor_role")?,
            data: json(&data, "audit", &key, "data")?,
            actor_id,
            actor_name,
            source,
            kind,
            target,
            reason,
        },
    })
}

/// `rollout, at, versions`.
pub(crate) type SampleRow<T> = (String, T, String);

pub(crate) fn sample<T: StoredTime>(
    (rollout, at, versions): SampleRow<T>,
) -> Result<SampleRecord, StoreError> {
    let key = format!("{rollout}/{at}");
    Ok(SampleRecord {
        versions: json(&versions, "rollout_samples", &key, "versions")?,
        at: time(at, "rollout_samples", &key, "at")?,
        rollout,
    })
}

/// `rollout, at, counts`.
pub(crate) type StateSampleRow<T> = (String, T, String);

pub(crate) fn state_sample<T: StoredTime>(
    (rollout, at, counts): StateSampleRow<T>,
) -> Result<StateSampleRecord, StoreError> {
    let key = format!("{rollout}/{at}");
    Ok(StateSampleRecord {
        counts: json(&counts, "rollout_state_samples", &key, "counts")?,
        at: time(at, "rollout_state_samples", &key, "at")?,
        rollout,
    })
}

/// Turns every row into a record, failing at the first that does not parse.
pub(crate) fn each<R, T>(
    rows: Vec<R>,
    record: impl Fn(R) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(record).collect()
}
