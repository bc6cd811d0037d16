//! The backend-independent half of [`Store::commit`](crate::Store::commit):
//! a batch sorted by kind, ready for multi-row statements.
//!
//! Each kind of write touches its own table and nothing reads across tables
//! while a batch is applied (foreign keys are checked at commit), so writes
//! of different kinds commute: a batch grouped by kind, each group in batch
//! order, ends in exactly the state of the writes applied one by one. A
//! backend then writes each group with a few multi-row statements in its own
//! dialect, instead of one round trip per write — a `hosts import` that
//! interleaves hosts and their components would otherwise pay that for
//! every row.
//!
//! What stays ordered: writes of one kind (the last write of a row wins;
//! events take their sequence numbers in batch order; rollouts meet the
//! unique-name rule in batch order). Dashboard sessions are written, then
//! the ended ones deleted, then the expired ones: a session is never
//! written after its end (its hash is new at sign-in), and one written
//! after an expiry that covers it was expired anyway.
//!
//! Also shared: the words a refused batch is reported in (which kind of
//! write, which key), finding the write that names a host or rollout that
//! does not exist when a backend only says "foreign key constraint failed",
//! and the JSON text of labels and samples as both dialects write it.

use std::collections::{BTreeSet, HashSet};
use std::hash::Hash;

use crate::{
    AuditRecord, BudgetRecord, ComponentRecord, FreezeRecord, HostComponentRecord, HostRecord,
    NewEvent, PinRecord, RolloutHostRecord, RolloutRecord, SampleRecord, SessionRecord,
    StateSampleRecord, StoreError, Timestamp, TokenRecord, WebhookDelivery, WebhookRecord, Write,
};

/// A batch's writes by kind, each kind in batch order.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Grouped<'a> {
    pub hosts: Vec<&'a HostRecord>,
    pub host_components: Vec<&'a HostComponentRecord>,
    pub components: Vec<&'a ComponentRecord>,
    pub rollouts: Vec<&'a RolloutRecord>,
    pub rollout_hosts: Vec<&'a RolloutHostRecord>,
    pub events: Vec<&'a NewEvent>,
    pub audit: Vec<&'a AuditRecord>,
    /// The last freeze write, if any: each replaces the one before. `Some(None)`
    /// turns the freeze off.
    pub freeze: Option<Option<&'a FreezeRecord>>,
    pub tokens: Vec<&'a TokenRecord>,
    /// The hashes of revoked tokens.
    pub revoked_tokens: Vec<&'a str>,
    /// The hosts whose tokens were revoked.
    pub revoked_hosts: Vec<&'a str>,
    /// Tokens used: hash and time.
    pub tokens_used: Vec<(&'a str, Timestamp)>,
    pub sessions: Vec<&'a SessionRecord>,
    /// The hashes of the sessions that ended.
    pub ended_sessions: Vec<&'a str>,
    /// The latest expiry written, if any: sessions expiring at or before it
    /// are deleted (an earlier one deletes a subset of them).
    pub sessions_expired: Option<Timestamp>,
    pub state_samples: Vec<&'a StateSampleRecord>,
    /// The last budget write, if any. `Some(None)` lifts the budget.
    pub budget: Option<Option<&'a BudgetRecord>>,
    /// Pins set and removed, in batch order (a pin may be set and lifted
    /// in one batch).
    pub pins: Vec<PinChange<'a>>,
    /// Webhooks added, removed and their deliveries, in batch order.
    pub webhooks: Vec<WebhookChange<'a>>,
}

/// A webhook added, removed (its id), or its delivery's progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum WebhookChange<'a> {
    Added(&'a WebhookRecord),
    Removed(&'a str),
    Delivery(&'a str, &'a WebhookDelivery),
}

/// A pin set, or removed (host, component).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PinChange<'a> {
    Set(&'a PinRecord),
    Removed(&'a str, &'a str),
}

/// Groups `batch` by kind, preserving order within each kind.
pub(crate) fn group(batch: &[Write]) -> Grouped<'_> {
    let mut g = Grouped::default();
    for write in batch {
        match write {
            Write::Host(r) => g.hosts.push(r),
            Write::HostComponent(r) => g.host_components.push(r),
            Write::Component(r) => g.components.push(r),
            Write::Rollout(r) => g.rollouts.push(r),
            Write::RolloutHost(r) => g.rollout_hosts.push(r),
            Write::Event(r) => g.events.push(r),
            Write::Audit(r) => g.audit.push(r),
            Write::Freeze(r) => g.freeze = Some(r.as_ref()),
            Write::Token(r) => g.tokens.push(r),
            Write::TokenRevoked(hash) => g.revoked_tokens.push(hash),
            Write::HostTokensRevoked(host) => g.revoked_hosts.push(host),
            Write::TokenUsed { hash, at } => g.tokens_used.push((hash, *at)),
            Write::Session(r) => g.sessions.push(r),
            Write::SessionEnded(hash) => g.ended_sessions.push(hash),
            Write::SessionsExpired(at) => {
                g.sessions_expired = g.sessions_expired.max(Some(*at));
            }
            Write::StateSample(r) => g.state_samples.push(r),
            Write::Budget(r) => g.budget = Some(r.as_ref()),
            Write::Pin(r) => g.pins.push(PinChange::Set(r)),
            Write::PinRemoved { host, component } => {
                g.pins.push(PinChange::Removed(host, component));
            }
            Write::Webhook(r) => g.webhooks.push(WebhookChange::Added(r)),
            Write::WebhookRemoved(id) => g.webhooks.push(WebhookChange::Removed(id)),
            Write::WebhookDelivery { id, delivery } => {
                g.webhooks.push(WebhookChange::Delivery(id, delivery));
            }
        }
    }
    g
}

/// The last write of each key, in batch order: a single multi-row upsert
/// may not touch a row twice in PostgreSQL, and the last write wins anyway.
pub(crate) fn latest<'a, T, K: Eq + Hash>(rows: &[&'a T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let mut seen = HashSet::with_capacity(rows.len());
    let mut kept: Vec<&T> = rows
        .iter()
        .rev()
        .copied()
        .filter(|row| seen.insert(key(*row)))
        .collect();
    kept.reverse();
    kept
}

/// Names a run of rows for an error: `kind key`, or `N kinds, key … key`.
pub(crate) fn describe<T>(kind: &str, rows: &[&T], key: impl Fn(&T) -> String) -> String {
    match rows {
        [] => format!("no {kind}s"),
        [one] => format!("{kind} {}", key(one)),
        [first, .., last] => format!("{} {kind}s, {} … {}", rows.len(), key(first), key(last)),
    }
}

pub(crate) fn host_component_key(c: &HostComponentRecord) -> String {
    format!("{}/{}", c.host, c.component)
}

pub(crate) fn rollout_host_key(rh: &RolloutHostRecord) -> String {
    format!("{}/{}", rh.rollout, rh.host)
}

pub(crate) fn event_key(e: &NewEvent) -> String {
    match &e.rollout {
        Some(rollout) => format!("{} of rollout {rollout}", e.kind),
        None => format!("{} (fleet-wide)", e.kind),
    }
}

pub(crate) fn audit_key(e: &AuditRecord) -> String {
    format!("{} by {}", e.kind, e.actor_id)
}

/// A token in messages: the start of its hash (not a secret, but short).
pub(crate) fn token_key(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// What a refused rollout whose name is taken says.
pub(crate) fn taken_name(r: &RolloutRecord, holder: Option<&str>) -> String {
    match holder {
        Some(holder) => format!(
            "a rollout named {:?} already exists ({holder}); cannot store rollout {} under that name",
            r.name, r.id
        ),
        None => format!(
            "a rollout named {:?} already exists; cannot store rollout {} under that name",
            r.name, r.id
        ),
    }
}

/// The labels of each host as JSON text.
pub(crate) fn labels(hosts: &[&HostRecord]) -> Result<Vec<String>, StoreError> {
    hosts
        .iter()
        .map(|h| {
            serde_json::to_string(&h.labels)
                .map_err(|e| StoreError::Refused(format!("encoding labels of host {}: {e}", h.id)))
        })
        .collect()
}

/// Samples as they are written: the last of each rollout and time (to the
/// microsecond, which is what is kept), the time as the dialect stores it
/// (`time`) and the versions as JSON text.
pub(crate) fn samples<T>(
    samples: &[SampleRecord],
    time: impl Fn(Timestamp) -> Result<T, String>,
) -> Result<Vec<(&str, T, String)>, StoreError> {
    let all: Vec<&SampleRecord> = samples.iter().collect();
    let kept = latest(&all, |s| {
        (s.rollout.as_str(), s.at.as_nanosecond().div_euclid(1_000))
    });
    kept.into_iter()
        .map(|s| {
            let key = || format!("sample of rollout {} at {}", s.rollout, s.at);
            let at = time(s.at).map_err(|e| StoreError::Refused(format!("{}: {e}", key())))?;
            let versions = serde_json::to_string(&s.versions)
                .map_err(|e| StoreError::Refused(format!("encoding the {}: {e}", key())))?;
            Ok((s.rollout.as_str(), at, versions))
        })
        .collect()
}

impl Grouped<'_> {
    /// The hosts and the rollouts that the batch's writes name without
    /// writing them: they must already be stored.
    pub fn references(&self) -> (BTreeSet<&str>, BTreeSet<&str>) {
        let written_hosts: HashSet<&str> = self.hosts.iter().map(|h| h.id.as_str()).collect();
        let written_rollouts: HashSet<&str> = self.rollouts.iter().map(|r| r.id.as_str()).collect();
        let hosts = (self.host_components.iter().map(|c| c.host.as_str()))
            .chain(self.rollout_hosts.iter().map(|rh| rh.host.as_str()))
            .filter(|host| !written_hosts.contains(host))
            .collect();
        let rollouts = (self.rollout_hosts.iter().map(|rh| rh.rollout.as_str()))
            .chain(self.events.iter().filter_map(|e| e.rollout.as_deref()))
            .filter(|rollout| !written_rollouts.contains(rollout))
            .collect();
        (hosts, rollouts)
    }

    /// Says which writes name a host in `missing_hosts` or a rollout in
    /// `missing_rollouts` (the first, and how many more).
    pub fn dangling(
        &self,
        missing_hosts: &BTreeSet<&str>,
        missing_rollouts: &BTreeSet<&str>,
    ) -> Option<String> {
        let host = |host: &str| format!("host {host:?}, which does not exist");
        let rollout = |rollout: &str| format!("rollout {rollout}, which does not exist");
        let mut found = Vec::new();
        for c in &self.host_components {
            if missing_hosts.contains(c.host.as_str()) {
                found.push(format!(
                    "host component {} names {}",
                    host_component_key(c),
                    host(&c.host)
                ));
            }
        }
        for rh in &self.rollout_hosts {
            if missing_rollouts.contains(rh.rollout.as_str()) {
                found.push(format!(
                    "rollout host {} names {}",
                    rollout_host_key(rh),
                    rollout(&rh.rollout)
                ));
            } else if missing_hosts.contains(rh.host.as_str()) {
                found.push(format!(
                    "rollout host {} names {}",
                    rollout_host_key(rh),
                    host(&rh.host)
                ));
            }
        }
        for e in &self.events {
            if let Some(id) = e
                .rollout
                .as_deref()
                .filter(|id| missing_rollouts.contains(id))
            {
                found.push(format!("event {} names {}", event_key(e), rollout(id)));
            }
        }
        let first = found.first()?;
        Some(match found.len() {
            1 => first.clone(),
            n => format!("{first} (and {} more writes like it)", n - 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str) -> HostRecord {
        HostRecord {
            id: id.to_owned(),
            labels: Default::default(),
            last_seen: None,
        }
    }

    fn component(name: &str) -> ComponentRecord {
        ComponentRecord {
            name: name.to_owned(),
            stable_version: None,
        }
    }

    fn freeze(reason: &str) -> FreezeRecord {
        FreezeRecord {
            actor: "ops".to_owned(),
            reason: reason.to_owned(),
            since: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn writes_are_grouped_by_kind_in_batch_order() {
        let (a, b, c) = (host("a"), host("b"), host("c"));
        let (web, db) = (component("web"), component("db"));
        let batch = vec![
            Write::Host(c.clone()),
            Write::Component(web.clone()),
            Write::Host(a.clone()),
            Write::Component(db.clone()),
            Write::Host(b.clone()),
        ];
        assert_eq!(
            group(&batch),
            Grouped {
                hosts: vec![&c, &a, &b],
                components: vec![&web, &db],
                ..Grouped::default()
            }
        );
    }

    #[test]
    fn the_last_freeze_write_counts() {
        let on = freeze("incident");
        let batch = vec![Write::Freeze(Some(freeze("first"))), Write::Freeze(None)];
        assert_eq!(group(&batch).freeze, Some(None));
        let batch = vec![
            Write::Freeze(None),
            Write::Component(component("web")),
            Write::Freeze(Some(on.clone())),
        ];
        assert_eq!(group(&batch).freeze, Some(Some(&on)));
        assert_eq!(group(&[Write::Component(component("web"))]).freeze, None);
    }

    #[test]
    fn sessions_keep_their_writes_and_ends_and_the_latest_expiry() {
        let session = SessionRecord {
            hash: "ab".repeat(32),
            token: "cd".repeat(32),
            created_at: jiff::Timestamp::UNIX_EPOCH,
            expires_at: jiff::Timestamp::MAX,
        };
        let late: jiff::Timestamp = "2026-03-01T12:00:00Z".parse().expect("time");
        let batch = vec![
            Write::SessionsExpired(late),
            Write::Session(session.clone()),
            Write::SessionEnded("ef".repeat(32)),
            Write::SessionsExpired(jiff::Timestamp::UNIX_EPOCH),
        ];
        let ended = "ef".repeat(32);
        assert_eq!(
            group(&batch),
            Grouped {
                sessions: vec![&session],
                ended_sessions: vec![ended.as_str()],
                sessions_expired: Some(late),
                ..Grouped::default()
            }
        );
    }

    #[test]
    fn an_empty_batch_has_no_writes() {
        assert_eq!(group(&[]), Grouped::default());
    }

    #[test]
    fn latest_keeps_the_last_write_of_each_key_in_batch_order() {
        let rows = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        let refs: Vec<&(&str, i32)> = rows.iter().collect();
        let kept: Vec<i32> = latest(&refs, |row| row.0).iter().map(|row| row.1).collect();
        assert_eq!(kept, [3, 4, 5]);
    }

    #[test]
    fn describe_names_one_row_or_the_ends_of_a_run() {
        let (a, b, c) = (host("a"), host("b"), host("c"));
        let key = |h: &HostRecord| h.id.clone();
        assert_eq!(describe("host", &[&a], key), "host a");
        assert_eq!(describe("host", &[&a, &b, &c], key), "3 hosts, a … c");
        assert_eq!(describe::<HostRecord>("host", &[], key), "no hosts");
    }

    #[test]
    fn dangling_names_the_writes_that_refer_to_missing_rows() {
        let component = HostComponentRecord {
            host: "ghost".to_owned(),
            component: "nginx".to_owned(),
            version: "1".to_owned(),
            state: None,
            message: None,
            drifted: false,
            at: jiff::Timestamp::UNIX_EPOCH,
        };
        let event = NewEvent {
            rollout: Some("r-9".to_owned()),
            at: jiff::Timestamp::UNIX_EPOCH,
            actor: None,
            kind: "created".to_owned(),
            data: serde_json::json!({}),
        };
        let batch = vec![
            Write::Host(host("a")),
            Write::HostComponent(component),
            Write::Event(event.clone()),
            Write::Event(event),
        ];
        let g = group(&batch);
        let (hosts, rollouts) = g.references();
        assert_eq!(hosts, BTreeSet::from(["ghost"]));
        assert_eq!(rollouts, BTreeSet::from(["r-9"]));
        assert_eq!(
            g.dangling(&hosts, &BTreeSet::new()).as_deref(),
            Some("host component ghost/nginx names host \"ghost\", which does not exist")
        );
        assert_eq!(
            g.dangling(&BTreeSet::new(), &rollouts).as_deref(),
            Some(
                "event created of rollout r-9 names rollout r-9, which does not exist \
                 (and 1 more writes like it)"
            )
        );
        assert_eq!(g.dangling(&BTreeSet::new(), &BTreeSet::new()), None);
    }
}
