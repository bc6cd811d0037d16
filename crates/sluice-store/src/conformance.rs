//! The conformance suite: what every [`Store`] backend must do, written once.
//!
//! Each case is a `pub async fn(&dyn Backend)`;
//! [`store_conformance_suite!`](crate::store_conformance_suite) turns the
//! whole list into one `#[tokio::test]` per case for a backend, in the style
//! of quickwit's `metastore_test_suite!`. A backend's test file
//! implements [`Backend`] (how to open its database, again and again, and how
//! to make it look migrated by a newer sluice) and invokes the macro:
//!
//! ```text
//! mod conformance {
//!     use super::*;
//!     sluice_store::store_conformance_suite!(TempSqlite::new());
//! }
//! ```
//!
//! The expression is evaluated (and awaited) once per test, so each case gets
//! a database of its own. The calling crate needs `tokio` (with `macros` and
//! `rt`) among its dev-dependencies.
//!
//! Cases compare loaded lists after sorting them: the order of [`Loaded`]'s
//! lists is not part of the contract, the order of events is.

use std::collections::BTreeMap;

use serde_json::json;

use crate::{
    AuditQuery, AuditRecord, BudgetRecord, ComponentRecord, Enrolled, Enrollment, FreezeRecord,
    HostComponentRecord, HostRecord, Loaded, LogQuery, NewEvent, Part, PinRecord, ReportedState,
    RolloutHostRecord, RolloutRecord, SampleRecord, SessionRecord, StateSampleRecord, Store,
    StoreError, StoredEvent, StoredWebhook, Timestamp, TokenPage, TokenRecord, TokenRole,
    WebhookDelivery, WebhookRecord, Write,
};

/// A backend under test: one database, opened as often as a case needs.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Opens the database (creating and migrating it on first use). Every
    /// call reaches the same data.
    async fn open(&self) -> Result<Box<dyn Store>, StoreError>;

    /// Records `version` as applied, as a newer sluice's migration would.
    /// Called while no store is open.
    async fn record_schema_version(&self, version: i64) -> Result<(), StoreError>;

    /// Runs `sql` (the same in every dialect) on the database behind the
    /// store's back, as a damaged or hand-edited database would look.
    async fn execute(&self, sql: &str) -> Result<(), StoreError>;
}

/// Generates one `#[tokio::test]` per conformance case, each running against
/// a fresh backend made by awaiting `$backend` (an expression of a future of
/// something implementing [`Backend`]).
#[macro_export]
macro_rules! store_conformance_suite {
    ($backend:expr) => {
        $crate::__store_conformance_cases!(
            $backend;
            empty_store_loads_nothing,
            hosts_upsert_and_replace_labels,
            host_components_latest_write_wins,
            host_components_keep_their_drift,
            rollouts_upsert_and_load,
            rollout_hosts_load_only_for_active_rollouts,
            events_are_ordered_and_paged,
            fleet_wide_events_are_in_no_rollout,
            the_whole_log_is_read_in_commit_order,
            the_log_is_filtered_by_rollout_and_kinds,
            freeze_turns_on_and_off,
            the_budget_is_set_replaced_and_lifted,
            pins_are_set_replaced_and_removed,
            webhooks_start_at_the_end_of_the_log_and_keep_their_delivery,
            tokens_are_stored,
            tokens_are_found_by_their_hash,
            tokens_keep_their_lifecycle_and_are_revoked,
            tokens_are_paged_by_hash_and_role,
            enrollment_takes_a_use_and_binds_the_host,
            enrollment_refuses_expired_used_up_unknown_and_enrolled,
            concurrent_enrollments_never_exceed_the_uses,
            dashboard_sessions_are_kept_until_they_end_or_expire,
            components_hold_their_stable_version,
            a_failed_batch_leaves_nothing_behind,
            writes_naming_unknown_hosts_or_rollouts_are_refused,
            a_batch_may_refer_forward_to_its_own_writes,
            a_large_batch_round_trips,
            the_load_comes_in_parts_and_pages,
            data_survives_reopening,
            schema_version_is_at_least_one,
            a_newer_schema_is_refused,
            samples_are_kept_per_rollout_in_time_order,
            state_samples_are_written_with_the_batch,
            times_are_kept_to_the_microsecond_and_ordered_as_times,
            unreadable_roles_and_states_fail_the_load_naming_the_row,
            audit_entries_are_numbered_filtered_and_paged,
            an_enrollment_is_audited_with_it,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_cases {
    ($backend:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() -> ::std::result::Result<(), $crate::StoreError> {
                let backend = $backend.await;
                $crate::conformance::$case(&backend).await
            }
        )+
    };
}

// ---- fixtures ----

/// An audit entry of `kind` by the token named `actor` at `minute`.
pub fn audit_entry(kind: &str, actor: &str, minute: u32) -> AuditRecord {
    AuditRecord {
        at: at(minute),
        actor_id: format!("{:0<16}", actor.len()),
        actor_name: actor.to_owned(),
        actor_role: TokenRole::Admin,
        source: Some("192.0.2.7".to_owned()),
        kind: kind.to_owned(),
        target: None,
        reason: Some(format!("{kind} by {actor}")),
        data: json!({ "minute": minute }),
    }
}

/// A time `minute` minutes into the test's day.
fn at(minute: u32) -> Timestamp {
    time("2026-03-01T00:00:00Z") + jiff::SignedDuration::from_mins(i64::from(minute))
}

fn time(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not a time: {e}"))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn host(id: &str, pairs: &[(&str, &str)], last_seen: Option<u32>) -> HostRecord {
    HostRecord {
        id: id.to_owned(),
        labels: labels(pairs),
        last_seen: last_seen.map(at),
    }
}

fn host_component(
    host: &str,
    component: &str,
    version: &str,
    state: Option<ReportedState>,
    minute: u32,
) -> HostComponentRecord {
    HostComponentRecord {
        host: host.to_owned(),
        component: component.to_owned(),
        version: version.to_owned(),
        state,
        message: None,
        drifted: false,
        at: at(minute),
    }
}

fn rollout(id: &str, name: &str, state: &str) -> RolloutRecord {
    RolloutRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        component: "docker-engine".to_owned(),
        state: state.to_owned(),
        plan: format!("name: {name}\ncomponent: docker-engine\nversion: 17.03.1\n"),
        header: json!({"stage": 0, "phase": "progressing", "strata": ["role=web,site=sto"]}),
        created_at: at(0),
        updated_at: at(0),
    }
}

fn rollout_host(rollout: &str, host: &str, state: &str) -> RolloutHostRecord {
    RolloutHostRecord {
        rollout: rollout.to_owned(),
        host: host.to_owned(),
        record: json!({
            "state": state,
            "before": "1.12.6",
            "rank": u64::MAX,
            "weight": 0.1,
            "note": "ü \"quoted\"\n",
        })
        .to_string(),
    }
}

fn event(rollout: Option<&str>, kind: &str, minute: u32) -> NewEvent {
    NewEvent {
        rollout: rollout.map(str::to_owned),
        at: at(minute),
        actor: Some("alice".to_owned()),
        kind: kind.to_owned(),
        data: json!({"n": minute}),
    }
}

/// A session whose hash is byte `n` repeated, expiring at `expires`.
fn session(n: u8, expires: u32) -> SessionRecord {
    SessionRecord {
        hash: format!("{n:02x}").repeat(32),
        token: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752".to_owned(),
        created_at: at(0),
        expires_at: at(expires),
    }
}

fn freeze(reason: &str, minute: u32) -> FreezeRecord {
    FreezeRecord {
        actor: "alice".to_owned(),
        reason: reason.to_owned(),
        since: at(minute),
    }
}

/// `loaded` with every list in a fixed order, for comparisons.
pub fn sorted(mut loaded: Loaded) -> Loaded {
    loaded.hosts.sort_by(|a, b| a.id.cmp(&b.id));
    loaded
        .host_components
        .sort_by(|a, b| (&a.host, &a.component).cmp(&(&b.host, &b.component)));
    loaded.components.sort_by(|a, b| a.name.cmp(&b.name));
    loaded.rollouts.sort_by(|a, b| a.id.cmp(&b.id));
    loaded
        .rollout_hosts
        .sort_by(|a, b| (&a.rollout, &a.host).cmp(&(&b.rollout, &b.host)));
    loaded.tokens.sort_by(|a, b| a.hash.cmp(&b.hash));
    loaded.sessions.sort_by(|a, b| a.hash.cmp(&b.hash));
    loaded
}

async fn load(store: &dyn Store) -> Result<Loaded, StoreError> {
    Ok(sorted(store.load().await?))
}

fn kinds(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.kind.as_str()).collect()
}

fn assert_increasing(events: &[StoredEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "sequence numbers must increase: {} then {}",
            pair[0].seq,
            pair[1].seq
        );
    }
}

/// One write of every kind, consistent with itself.
fn sample_batch() -> Vec<Write> {
    vec![
        Write::Host(host("a", &[("role", "web"), ("site", "sto")], Some(1))),
        Write::Host(host("b", &[("role", "db"), ("site", "ash")], None)),
        Write::HostComponent(host_component(
            "a",
            "docker-engine",
            "1.12.6",
            Some(ReportedState::Ok),
            1,
        )),
        Write::HostComponent(host_component("b", "docker-engine", "1.12.6", None, 1)),
        Write::Component(ComponentRecord {
            name: "docker-engine".to_owned(),
            stable_version: Some("1.12.6".to_owned()),
        }),
        Write::Rollout(rollout("r-1", "docker-17", "running")),
        Write::RolloutHost(rollout_host("r-1", "a", "admitted")),
        Write::Event(event(Some("r-1"), "created", 2)),
        Write::Event(event(None, "freeze_on", 3)),
        Write::Freeze(Some(freeze("incident 42", 3))),
        Write::Token(TokenRecord {
            hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
            role: TokenRole::Agent,
            host: Some("a".to_owned()),
            name: None,
            created_at: at(0),
            selector: None,
            expires_at: None,
            uses_left: None,
            last_used_at: None,
        }),
        Write::Session(session(0xa1, 720)),
    ]
}

// ---- cases ----

/// A new store loads nothing, has no events, and takes an empty batch.
pub async fn empty_store_loads_nothing(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    assert_eq!(store.load().await?, Loaded::default());
    assert_eq!(store.events("r-1", 0, 100).await?, vec![]);
    store.commit(&[]).await?;
    assert_eq!(store.load().await?, Loaded::default());
    Ok(())
}

/// Writing a host again replaces its labels (dropped labels are gone) and
/// its last check-in; other hosts are untouched.
pub async fn hosts_upsert_and_replace_labels(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let a = host("a", &[("role", "web"), ("site", "sto")], Some(1));
    let b = host("b", &[("role", "db")], None);
    store
        .commit(&[Write::Host(a.clone()), Write::Host(b.clone())])
        .await?;
    assert_eq!(load(&*store).await?.hosts, vec![a, b.clone()]);

    let a2 = host("a", &[("role", "edge"), ("pool", "ü-1")], Some(5));
    store.commit(&[Write::Host(a2.clone())]).await?;
    assert_eq!(load(&*store).await?.hosts, vec![a2.clone(), b.clone()]);

    // An imported host (never seen) written again loses nothing it is given.
    let b2 = host("b", &[], Some(7));
    store.commit(&[Write::Host(b2.clone())]).await?;
    assert_eq!(load(&*store).await?.hosts, vec![a2, b2]);
    Ok(())
}

/// A host's component holds the last write, within a batch and across
/// batches; its other components are separate rows.
pub async fn host_components_latest_write_wins(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let nginx = host_component("a", "nginx", "1.25", Some(ReportedState::Ok), 1);
    store
        .commit(&[
            Write::Host(host("a", &[], Some(1))),
            Write::HostComponent(host_component("a", "docker-engine", "1.12.6", None, 0)),
            Write::HostComponent(nginx.clone()),
        ])
        .await?;

    let failed = HostComponentRecord {
        message: Some("E: version '17.03.1' not found\n".to_owned()),
        ..host_component(
            "a",
            "docker-engine",
            "17.03.1",
            Some(ReportedState::Failed),
            3,
        )
    };
    store
        .commit(&[
            Write::HostComponent(host_component(
                "a",
                "docker-engine",
                "17.03.1",
                Some(ReportedState::Applying),
                2,
            )),
            Write::HostComponent(failed.clone()),
        ])
        .await?;
    assert_eq!(
        load(&*store).await?.host_components,
        vec![failed, nginx.clone()]
    );

    // A later report without a message clears the old one.
    let ok = host_component("a", "docker-engine", "1.12.6", Some(ReportedState::Ok), 4);
    store.commit(&[Write::HostComponent(ok.clone())]).await?;
    assert_eq!(load(&*store).await?.host_components, vec![ok, nginx]);
    Ok(())
}

/// Whether a host's component drifted round-trips with its report, in
/// pages of the large table too, and a later report replaces it.
pub async fn host_components_keep_their_drift(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let drifted = |host: &str, minute| HostComponentRecord {
        drifted: true,
        ..host_component(
            host,
            "docker-engine",
            "1.12.6",
            Some(ReportedState::Ok),
            minute,
        )
    };
    // More hosts than one page of the large tables holds.
    let ids: Vec<String> = (0..10_050).map(|i| format!("h{i:05}")).collect();
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        batch.push(Write::Host(host(id, &[], Some(1))));
        let record = if i % 7 == 0 {
            drifted(id, 1)
        } else {
            host_component(id, "docker-engine", "17.03.1", Some(ReportedState::Ok), 1)
        };
        batch.push(Write::HostComponent(record.clone()));
        expected.push(record);
    }
    store.commit(&batch).await?;
    assert_eq!(load(&*store).await?.host_components, expected);
    assert_eq!(expected.iter().filter(|c| c.drifted).count(), 1436);

    // Back at the desired version: no longer drifted.
    let back = host_component(
        &ids[0],
        "docker-engine",
        "17.03.1",
        Some(ReportedState::Ok),
        2,
    );
    store.commit(&[Write::HostComponent(back.clone())]).await?;
    expected[0] = back;
    assert_eq!(load(&*store).await?.host_components, expected);
    drop(store);
    let reopened = backend.open().await?;
    assert_eq!(load(&*reopened).await?.host_components, expected);
    Ok(())
}

/// A rollout written again replaces its row; every field round-trips,
/// the opaque header included.
pub async fn rollouts_upsert_and_load(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let r1 = rollout("r-1", "docker-17", "pending");
    let r2 = rollout("r-2", "nginx-1.27", "pending");
    store
        .commit(&[Write::Rollout(r1.clone()), Write::Rollout(r2.clone())])
        .await?;
    assert_eq!(load(&*store).await?.rollouts, vec![r1.clone(), r2.clone()]);

    let r1_running = RolloutRecord {
        state: "running".to_owned(),
        header: json!({
            "stage": 2,
            "phase": "baking",
            "bake_until": at(30).to_string(),
            "gates": [{"name": "errors", "value": 0.25, "ok": true}, null],
            "note": "naïve \"quotes\" \\ and\nnewlines",
            "big": 9_007_199_254_740_993_i64,
        }),
        updated_at: at(20),
        ..r1
    };
    store.commit(&[Write::Rollout(r1_running.clone())]).await?;
    assert_eq!(load(&*store).await?.rollouts, vec![r1_running, r2]);
    Ok(())
}

/// Rollout hosts load for pending, running and paused rollouts only; a
/// rollout host written again replaces its record.
pub async fn rollout_hosts_load_only_for_active_rollouts(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let states = [
        "pending",
        "running",
        "paused",
        "completed",
        "aborted",
        "rolled_back",
    ];
    let mut batch = vec![
        Write::Host(host("a", &[], None)),
        Write::Host(host("b", &[], None)),
    ];
    for (i, state) in states.iter().enumerate() {
        let id = format!("r-{i}");
        batch.push(Write::Rollout(rollout(&id, &format!("rollout-{i}"), state)));
        batch.push(Write::RolloutHost(rollout_host(&id, "a", "admitted")));
        batch.push(Write::RolloutHost(rollout_host(&id, "b", "waiting")));
    }
    store.commit(&batch).await?;

    let loaded = load(&*store).await?;
    assert_eq!(
        loaded.rollouts.len(),
        states.len(),
        "terminal rollouts load too"
    );
    assert_eq!(
        loaded.rollout_hosts,
        vec![
            rollout_host("r-0", "a", "admitted"),
            rollout_host("r-0", "b", "waiting"),
            rollout_host("r-1", "a", "admitted"),
            rollout_host("r-1", "b", "waiting"),
            rollout_host("r-2", "a", "admitted"),
            rollout_host("r-2", "b", "waiting"),
        ]
    );

    // r-1 admits b; r-0 completes, so its hosts are no longer loaded.
    store
        .commit(&[
            Write::RolloutHost(rollout_host("r-1", "b", "admitted")),
            Write::Rollout(rollout("r-0", "rollout-0", "completed")),
        ])
        .await?;
    assert_eq!(
        load(&*store).await?.rollout_hosts,
        vec![
            rollout_host("r-1", "a", "admitted"),
            rollout_host("r-1", "b", "admitted"),
            rollout_host("r-2", "a", "admitted"),
            rollout_host("r-2", "b", "waiting"),
        ]
    );
    Ok(())
}

/// A rollout's events come oldest first with increasing sequence numbers
/// (which order commits across the whole store), and page with `after` and
/// `limit`.
pub async fn events_are_ordered_and_paged(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    store
        .commit(&[
            Write::Rollout(rollout("r-1", "one", "running")),
            Write::Rollout(rollout("r-2", "two", "running")),
            Write::Event(event(Some("r-1"), "created", 1)),
            Write::Event(event(Some("r-2"), "created", 1)),
            Write::Event(event(Some("r-1"), "started", 2)),
        ])
        .await?;
    let mut batch = Vec::new();
    for minute in 10..35 {
        batch.push(Write::Event(event(Some("r-1"), "host_updated", minute)));
    }
    store.commit(&batch).await?;

    let all = store.events("r-1", 0, 1000).await?;
    assert_eq!(all.len(), 27);
    assert_eq!(&kinds(&all)[..3], ["created", "started", "host_updated"]);
    assert_eq!(all[0].event, event(Some("r-1"), "created", 1));
    assert_eq!(all[26].event, event(Some("r-1"), "host_updated", 34));
    assert_increasing(&all);

    let r2 = store.events("r-2", 0, 1000).await?;
    assert_eq!(r2.len(), 1);
    assert!(
        all[0].seq < r2[0].seq && r2[0].seq < all[1].seq,
        "sequence numbers follow commit order across rollouts"
    );

    // Paging: `after` is exclusive, `limit` caps the page.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events("r-1", after, 10).await?;
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(
        store.events("r-1", all[0].seq, 1).await?,
        vec![all[1].clone()]
    );
    assert_eq!(store.events("r-1", all[26].seq, 10).await?, vec![]);
    assert_eq!(store.events("r-1", 0, 0).await?, vec![]);
    assert_eq!(store.events("r-9", 0, 10).await?, vec![]);
    Ok(())
}

/// Fleet-wide events (no rollout) are stored but belong to no rollout's list.
pub async fn fleet_wide_events_are_in_no_rollout(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let on = NewEvent {
        actor: None,
        ..event(None, "freeze_on", 2)
    };
    store
        .commit(&[
            Write::Rollout(rollout("r-1", "one", "running")),
            Write::Event(event(Some("r-1"), "created", 1)),
            Write::Event(on),
            Write::Event(event(Some("r-1"), "paused", 3)),
        ])
        .await?;
    let events = store.events("r-1", 0, 100).await?;
    assert_eq!(kinds(&events), ["created", "paused"]);
    assert!(
        events[1].seq - events[0].seq >= 2,
        "the fleet-wide event took a sequence number between them"
    );
    assert_eq!(store.events("", 0, 100).await?, vec![]);
    Ok(())
}

/// The whole log — every rollout's events and the fleet-wide ones — comes
/// in commit order and pages with `after` and `limit`, as the events
/// stream and webhooks read it.
pub async fn the_whole_log_is_read_in_commit_order(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    assert_eq!(store.events_after(0, 100).await?, vec![]);
    store
        .commit(&[
            Write::Rollout(rollout("r-1", "one", "running")),
            Write::Rollout(rollout("r-2", "two", "running")),
            Write::Event(event(Some("r-1"), "created", 1)),
            Write::Event(event(None, "freeze_on", 2)),
            Write::Event(event(Some("r-2"), "created", 3)),
        ])
        .await?;
    store
        .commit(&[Write::Event(event(Some("r-1"), "paused", 4))])
        .await?;

    let all = store.events_after(0, 100).await?;
    assert_eq!(kinds(&all), ["created", "freeze_on", "created", "paused"]);
    assert_eq!(all[1].event, event(None, "freeze_on", 2));
    assert_eq!(all[2].event.rollout.as_deref(), Some("r-2"));
    assert_increasing(&all);

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_after(after, 3).await?;
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(store.events_after(all[3].seq, 10).await?, vec![]);
    assert_eq!(store.events_after(0, 0).await?, vec![]);
    Ok(())
}

/// The whole log filtered by rollout and kinds: from `after` oldest first,
/// without it the newest `limit` matching events, oldest first.
pub async fn the_log_is_filtered_by_rollout_and_kinds(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let query = |rollout: Option<&str>, kinds: &[&str], after: Option<i64>, limit: u32| LogQuery {
        rollout: rollout.map(str::to_owned),
        kinds: kinds.iter().map(|kind| (*kind).to_owned()).collect(),
        after,
        limit,
    };
    assert_eq!(store.log_events(&query(None, &[], None, 10)).await?, vec![]);
    store
        .commit(&[
            Write::Rollout(rollout("r-1", "one", "running")),
            Write::Rollout(rollout("r-2", "two", "running")),
            Write::Event(event(Some("r-1"), "created", 1)),
            Write::Event(event(None, "freeze_on", 2)),
            Write::Event(event(Some("r-2"), "created", 3)),
            Write::Event(event(Some("r-1"), "paused", 4)),
            Write::Event(event(Some("r-1"), "resumed", 5)),
        ])
        .await?;
    let all = store.events_after(0, 100).await?;
    assert_eq!(
        store.log_events(&query(None, &[], Some(0), 100)).await?,
        all
    );
    // The tail: the newest, oldest first.
    let tail = store.log_events(&query(None, &[], None, 2)).await?;
    assert_eq!(kinds(&tail), ["paused", "resumed"]);
    assert_eq!(tail, all[3..]);
    let r1 = store.log_events(&query(Some("r-1"), &[], None, 10)).await?;
    assert_eq!(kinds(&r1), ["created", "paused", "resumed"]);
    let after = store
        .log_events(&query(Some("r-1"), &[], Some(all[0].seq), 1))
        .await?;
    assert_eq!(kinds(&after), ["paused"]);
    let created = store
        .log_events(&query(None, &["created", "freeze_on"], Some(0), 10))
        .await?;
    assert_eq!(kinds(&created), ["created", "freeze_on", "created"]);
    let both = store
        .log_events(&query(Some("r-2"), &["created", "paused"], None, 10))
        .await?;
    assert_eq!(both, all[2..3]);
    assert_eq!(
        store.log_events(&query(Some("r-3"), &[], None, 10)).await?,
        vec![]
    );
    Ok(())
}

/// The freeze is on after `Some`, replaced by a later `Some`, off after
/// `None`; within a batch the last write counts.
pub async fn freeze_turns_on_and_off(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    assert_eq!(load(&*store).await?.freeze, None);

    let first = freeze("incident 41", 1);
    store.commit(&[Write::Freeze(Some(first.clone()))]).await?;
    assert_eq!(load(&*store).await?.freeze, Some(first));

    let second = freeze("incident 42", 2);
    store.commit(&[Write::Freeze(Some(second.clone()))]).await?;
    assert_eq!(load(&*store).await?.freeze, Some(second.clone()));

    store.commit(&[Write::Freeze(None)]).await?;
    assert_eq!(load(&*store).await?.freeze, None);
    store.commit(&[Write::Freeze(None)]).await?;
    assert_eq!(load(&*store).await?.freeze, None);

    store
        .commit(&[Write::Freeze(Some(second)), Write::Freeze(None)])
        .await?;
    assert_eq!(load(&*store).await?.freeze, None);

    let third = freeze("game day", 3);
    store
        .commit(&[
            Write::Freeze(None),
            Write::Event(event(None, "freeze_on", 3)),
            Write::Freeze(Some(third.clone())),
        ])
        .await?;
    assert_eq!(load(&*store).await?.freeze, Some(third));
    Ok(())
}

fn budget(max_in_flight: &str, per_stratum: Option<&str>, minute: u32) -> BudgetRecord {
    BudgetRecord {
        max_in_flight: max_in_flight.to_owned(),
        per_stratum: per_stratum.map(str::to_owned),
        spread: vec!["role".to_owned(), "site".to_owned()],
        actor: "alice".to_owned(),
        reason: "many teams, one fleet".to_owned(),
        since: at(minute),
    }
}

fn pin(host: &str, component: &str, version: &str, expires: u32) -> PinRecord {
    PinRecord {
        host: host.to_owned(),
        component: component.to_owned(),
        version: version.to_owned(),
        expires_at: at(expires),
        actor: "alice".to_owned(),
        reason: "taste-test".to_owned(),
        since: at(1),
    }
}

/// The budget is set by `Some`, replaced by a later `Some`, lifted by
/// `None`; within a batch the last write counts.
pub async fn the_budget_is_set_replaced_and_lifted(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    assert_eq!(load(&*store).await?.budget, None);

    let first = budget("2%", Some("10%"), 1);
    store.commit(&[Write::Budget(Some(first.clone()))]).await?;
    assert_eq!(load(&*store).await?.budget, Some(first));

    let second = BudgetRecord {
        spread: Vec::new(),
        ..budget("50", None, 2)
    };
    store.commit(&[Write::Budget(Some(second.clone()))]).await?;
    assert_eq!(load(&*store).await?.budget, Some(second.clone()));

    store.commit(&[Write::Budget(None)]).await?;
    assert_eq!(load(&*store).await?.budget, None);

    store
        .commit(&[Write::Budget(None), Write::Budget(Some(second.clone()))])
        .await?;
    assert_eq!(load(&*store).await?.budget, Some(second));
    Ok(())
}

fn webhook(id: &str, secret: Option<&str>) -> WebhookRecord {
    WebhookRecord {
        id: id.to_owned(),
        url: format!("https://hooks.example.net/{id}"),
        events: vec!["stage_started".to_owned(), "completed".to_owned()],
        format: "json".to_owned(),
        secret: secret.map(str::to_owned),
        created_at: at(1),
        created_by: "admin".to_owned(),
    }
}

/// A webhook is stored with its delivery after the last event stored
/// before its batch (the batch's own events are delivered); its delivery's
/// progress replaces the stored one, optional columns set and cleared; a
/// removed webhook is gone, and progress written for it is no error.
pub async fn webhooks_start_at_the_end_of_the_log_and_keep_their_delivery(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    assert_eq!(store.webhooks().await?, vec![]);
    let (a, b) = (webhook("wh-a", Some("s3cret")), webhook("wh-b", None));
    store.commit(&[Write::Webhook(a.clone())]).await?;
    store
        .commit(&[
            Write::Rollout(rollout("r-1", "one", "running")),
            Write::Event(event(Some("r-1"), "created", 1)),
            Write::Event(event(None, "freeze_on", 2)),
        ])
        .await?;
    store
        .commit(&[
            Write::Webhook(b.clone()),
            Write::Event(event(Some("r-1"), "paused", 3)),
        ])
        .await?;
    let log = store.events_after(0, 10).await?;
    assert_eq!(kinds(&log), ["created", "freeze_on", "paused"]);
    let stored = store.webhooks().await?;
    assert_eq!(
        stored,
        [
            StoredWebhook {
                webhook: a.clone(),
                delivery: WebhookDelivery::default(),
            },
            StoredWebhook {
                webhook: b.clone(),
                delivery: WebhookDelivery {
                    delivered_seq: log[1].seq,
                    ..WebhookDelivery::default()
                },
            },
        ]
    );

    let failing = WebhookDelivery {
        delivered_seq: log[0].seq,
        failures: 3,
        last_error: Some("connection refused".to_owned()),
        last_attempt_at: Some(at(5)),
        last_success_at: Some(at(4)),
    };
    store
        .commit(&[Write::WebhookDelivery {
            id: a.id.clone(),
            delivery: failing.clone(),
        }])
        .await?;
    assert_eq!(store.webhooks().await?[0].delivery, failing);
    let delivered = WebhookDelivery {
        delivered_seq: log[2].seq,
        failures: 0,
        last_error: None,
        last_attempt_at: Some(at(6)),
        last_success_at: Some(at(6)),
    };
    store
        .commit(&[Write::WebhookDelivery {
            id: a.id.clone(),
            delivery: delivered.clone(),
        }])
        .await?;
    assert_eq!(store.webhooks().await?[0].delivery, delivered);

    store
        .commit(&[
            Write::WebhookRemoved(a.id.clone()),
            Write::WebhookDelivery {
                id: a.id.clone(),
                delivery: failing,
            },
        ])
        .await?;
    let left: Vec<String> = (store.webhooks().await?)
        .into_iter()
        .map(|w| w.webhook.id)
        .collect();
    assert_eq!(left, ["wh-b"]);
    Ok(())
}

/// Pins round-trip by host and component; a later pin of the same pair
/// replaces the earlier one, a removal deletes it, and within a batch the
/// writes count in order.
pub async fn pins_are_set_replaced_and_removed(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    assert_eq!(load(&*store).await?.pins, Vec::new());

    let a = pin("a.example.net", "kernel", "6.1", 120);
    let b = pin("a.example.net", "docker", "25.0", 60);
    let c = pin("b.example.net", "kernel", "6.2", 90);
    store
        .commit(&[
            Write::Pin(a.clone()),
            Write::Pin(b.clone()),
            Write::Pin(c.clone()),
        ])
        .await?;
    assert_eq!(load(&*store).await?.pins, [b.clone(), a.clone(), c.clone()]);

    let a2 = pin("a.example.net", "kernel", "6.3", 240);
    store
        .commit(&[
            Write::Pin(a2.clone()),
            Write::PinRemoved {
                host: "b.example.net".to_owned(),
                component: "kernel".to_owned(),
            },
        ])
        .await?;
    assert_eq!(load(&*store).await?.pins, [b.clone(), a2]);

    // Set and removed in one batch: removed; removed and set again: set.
    store
        .commit(&[
            Write::Pin(c.clone()),
            Write::PinRemoved {
                host: "b.example.net".to_owned(),
                component: "kernel".to_owned(),
            },
            Write::PinRemoved {
                host: "a.example.net".to_owned(),
                component: "kernel".to_owned(),
            },
            Write::PinRemoved {
                host: "a.example.net".to_owned(),
                component: "docker".to_owned(),
            },
            Write::Pin(b.clone()),
        ])
        .await?;
    assert_eq!(load(&*store).await?.pins, [b]);
    Ok(())
}

/// Tokens round-trip, with and without a host and a name.
pub async fn tokens_are_stored(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let agent = TokenRecord {
        hash: "1b4f0e9851971998e732078544c96b36c3d01cedf7caa332359d6f1d83567014".to_owned(),
        role: TokenRole::Agent,
        // Bound to a host that has not checked in yet.
        host: Some("sto-playlist-a1.example.net".to_owned()),
        name: None,
        created_at: at(1),
        selector: None,
        expires_at: None,
        uses_left: None,
        last_used_at: None,
    };
    let admin = TokenRecord {
        hash: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752".to_owned(),
        role: TokenRole::Admin,
        host: None,
        name: Some("first start".to_owned()),
        created_at: at(0),
        selector: None,
        expires_at: None,
        uses_left: None,
        last_used_at: None,
    };
    store
        .commit(&[Write::Token(agent.clone()), Write::Token(admin.clone())])
        .await?;
    assert_eq!(load(&*store).await?.tokens, vec![agent, admin]);
    Ok(())
}

/// A token is found by the hash of its secret, with its role, host and
/// name, also one written by another handle on the database (another
/// process) after this one was opened; an unknown hash finds nothing.
pub async fn tokens_are_found_by_their_hash(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let agent = TokenRecord {
        hash: "1b4f0e9851971998e732078544c96b36c3d01cedf7caa332359d6f1d83567014".to_owned(),
        role: TokenRole::Agent,
        host: Some("sto-playlist-a1.example.net".to_owned()),
        name: Some("a1".to_owned()),
        created_at: at(1),
        selector: None,
        expires_at: None,
        uses_left: None,
        last_used_at: None,
    };
    assert_eq!(store.token(&agent.hash).await?, None);
    store.commit(&[Write::Token(agent.clone())]).await?;
    assert_eq!(store.token(&agent.hash).await?, Some(agent));
    assert_eq!(store.token(&"00".repeat(32)).await?, None);

    let viewer = TokenRecord {
        hash: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752".to_owned(),
        role: TokenRole::Viewer,
        host: None,
        name: None,
        created_at: at(2),
        selector: None,
        expires_at: None,
        uses_left: None,
        last_used_at: None,
    };
    let other = backend.open().await?;
    other.commit(&[Write::Token(viewer.clone())]).await?;
    assert_eq!(store.token(&viewer.hash).await?, Some(viewer));
    Ok(())
}

/// An enrollment token with `uses` uses left, expiring at `expires`.
fn enroll_token(hash: &str, uses: i64, expires: Option<Timestamp>) -> TokenRecord {
    TokenRecord {
        selector: Some("site in (sto, lon)".to_owned()),
        expires_at: expires,
        uses_left: Some(uses),
        name: Some("fleet".to_owned()),
        ..TokenRecord::new(hash.to_owned(), TokenRole::Enroll, at(0))
    }
}

/// `host` enrolling with the enrollment token of `hash` at minute `minute`.
fn enrollment(enroll_hash: &str, host: &str, minute: u32) -> Enrollment {
    let hash = format!(
        "{:0>64}",
        host.bytes().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let hash: String = hash.chars().rev().take(64).collect();
    Enrollment {
        enroll_token: enroll_hash.to_owned(),
        token: TokenRecord {
            host: Some(host.to_owned()),
            selector: Some("site in (sto, lon)".to_owned()),
            ..TokenRecord::new(hash, TokenRole::Agent, at(minute))
        },
        event: NewEvent {
            rollout: None,
            at: at(minute),
            actor: Some("fleet".to_owned()),
            kind: "host_enrolled".to_owned(),
            data: serde_json::json!({ "host": host }),
        },
        audit: AuditRecord {
            target: Some(host.to_owned()),
            ..audit_entry("host_enrolled", "fleet", minute)
        },
        now: at(minute),
    }
}

/// Tokens are read a page at a time, in the order of their hash: at most
/// `limit`, from a hash (or a prefix of one) on, of one role if asked.
pub async fn tokens_are_paged_by_hash_and_role(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let token = |hex: &str, role| TokenRecord {
        host: (role == TokenRole::Agent).then(|| "a.example.net".to_owned()),
        ..TokenRecord::new(hex.repeat(32), role, at(1))
    };
    // Written out of order; created at the same time.
    let tokens = [
        token("33", TokenRole::Viewer),
        token("11", TokenRole::Viewer),
        token("44", TokenRole::Admin),
        token("22", TokenRole::Agent),
    ];
    let writes: Vec<Write> = tokens.iter().cloned().map(Write::Token).collect();
    store.commit(&writes).await?;
    let page = |role, from: Option<&str>, limit| {
        let store = &store;
        let query = TokenPage {
            role,
            from: from.map(str::to_owned),
            limit,
        };
        async move {
            let page = store.tokens_page(&query).await?;
            Ok::<_, StoreError>(
                page.into_iter()
                    .map(|t| t.hash[..2].to_owned())
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(page(None, None, 2).await?, ["11", "22"]);
    // From just past the second token's 16-digit id.
    assert_eq!(page(None, Some("2222222222222223"), 2).await?, ["33", "44"]);
    assert_eq!(page(None, Some(&"33".repeat(32)), 10).await?, ["33", "44"]);
    assert_eq!(page(Some(TokenRole::Viewer), None, 10).await?, ["11", "33"]);
    assert_eq!(page(Some(TokenRole::Viewer), Some("12"), 10).await?, ["33"]);
    assert_eq!(
        page(Some(TokenRole::Enroll), None, 10).await?,
        Vec::<String>::new()
    );
    assert_eq!(page(None, Some("45"), 10).await?, Vec::<String>::new());
    // A page holds the whole record.
    let first = store
        .tokens_page(&TokenPage {
            limit: 1,
            ..TokenPage::default()
        })
        .await?;
    assert_eq!(first, [tokens[1].clone()]);
    Ok(())
}

/// Expiry, selector, uses left and last use round-trip; a use only moves
/// the last use later; a revoked token is gone, and so are the tokens of a
/// revoked host, others kept.
pub async fn tokens_keep_their_lifecycle_and_are_revoked(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let enroll = enroll_token(&"e1".repeat(32), 5000, Some(at(60 * 24)));
    let a = TokenRecord {
        host: Some("a.example.net".to_owned()),
        ..TokenRecord::new("a1".repeat(32), TokenRole::Agent, at(1))
    };
    let b = TokenRecord {
        host: Some("b.example.net".to_owned()),
        ..TokenRecord::new("b1".repeat(32), TokenRole::Agent, at(1))
    };
    store
        .commit(&[
            Write::Token(enroll.clone()),
            Write::Token(a.clone()),
            Write::Token(b.clone()),
        ])
        .await?;
    assert_eq!(store.token(&enroll.hash).await?, Some(enroll.clone()));
    store
        .commit(&[
            Write::TokenUsed {
                hash: a.hash.clone(),
                at: at(5),
            },
            Write::TokenUsed {
                hash: a.hash.clone(),
                at: at(3),
            },
        ])
        .await?;
    store
        .commit(&[Write::TokenUsed {
            hash: a.hash.clone(),
            at: at(4),
        }])
        .await?;
    let used = store.token(&a.hash).await?.expect("stored");
    assert_eq!(used.last_used_at, Some(at(5)), "a use only moves it later");
    // A token written again keeps the store's count and last use.
    store
        .commit(&[Write::Token(TokenRecord {
            uses_left: Some(1),
            ..enroll.clone()
        })])
        .await?;
    assert_eq!(
        store.token(&enroll.hash).await?.and_then(|t| t.uses_left),
        Some(5000)
    );

    store
        .commit(&[Write::TokenRevoked(enroll.hash.clone())])
        .await?;
    assert_eq!(store.token(&enroll.hash).await?, None);
    store
        .commit(&[Write::HostTokensRevoked("a.example.net".to_owned())])
        .await?;
    assert_eq!(store.token(&a.hash).await?, None);
    let left: Vec<String> = store.tokens().await?.into_iter().map(|t| t.hash).collect();
    assert_eq!(left, vec![b.hash.clone()]);
    assert_eq!(load(&*store).await?.tokens, vec![b]);
    Ok(())
}

/// An enrollment takes one use, stores the host's token (bound to its host
/// and selector) with its event, and says how many uses are left.
pub async fn enrollment_takes_a_use_and_binds_the_host(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let enroll = enroll_token(&"e1".repeat(32), 2, Some(at(60)));
    store.commit(&[Write::Token(enroll.clone())]).await?;
    let first = enrollment(&enroll.hash, "a.example.net", 1);
    assert_eq!(store.enroll(&first).await?, Enrolled::Done { uses_left: 1 });
    assert_eq!(
        store.token(&first.token.hash).await?,
        Some(first.token.clone())
    );
    let stored = store.token(&enroll.hash).await?.expect("stored");
    assert_eq!(
        (stored.uses_left, stored.last_used_at),
        (Some(1), Some(at(1)))
    );
    Ok(())
}

/// What an enrollment refuses writes nothing: an expired, used-up or
/// unknown token (or one of another role), a host already bound to a token.
pub async fn enrollment_refuses_expired_used_up_unknown_and_enrolled(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let live = enroll_token(&"e1".repeat(32), 1, Some(at(60)));
    let expired = enroll_token(&"e2".repeat(32), 9, Some(at(10)));
    let viewer = TokenRecord::new("f1".repeat(32), TokenRole::Viewer, at(0));
    let bound = TokenRecord {
        host: Some("taken.example.net".to_owned()),
        ..TokenRecord::new("a1".repeat(32), TokenRole::Agent, at(0))
    };
    store
        .commit(&[
            Write::Token(live.clone()),
            Write::Token(expired.clone()),
            Write::Token(viewer.clone()),
            Write::Token(bound),
        ])
        .await?;
    let taken = enrollment(&live.hash, "taken.example.net", 1);
    assert_eq!(store.enroll(&taken).await?, Enrolled::AlreadyEnrolled);
    assert_eq!(
        store.token(&live.hash).await?.and_then(|t| t.uses_left),
        Some(1),
        "the use is given back"
    );
    assert_eq!(
        store
            .enroll(&enrollment(&expired.hash, "x.example.net", 10))
            .await?,
        Enrolled::Expired(at(10))
    );
    assert_eq!(
        store
            .enroll(&enrollment(&viewer.hash, "x.example.net", 1))
            .await?,
        Enrolled::UnknownToken
    );
    assert_eq!(
        store
            .enroll(&enrollment(&"00".repeat(32), "x.example.net", 1))
            .await?,
        Enrolled::UnknownToken
    );
    assert_eq!(
        store
            .enroll(&enrollment(&live.hash, "x.example.net", 2))
            .await?,
        Enrolled::Done { uses_left: 0 }
    );
    assert_eq!(
        store
            .enroll(&enrollment(&live.hash, "y.example.net", 3))
            .await?,
        Enrolled::UsedUp
    );
    let hosts: Vec<Option<String>> = store.tokens().await?.into_iter().map(|t| t.host).collect();
    assert!(
        !hosts.contains(&Some("y.example.net".to_owned())),
        "{hosts:?}"
    );
    Ok(())
}

/// Enrollments running at once, through separate handles on the database
/// (as replicas would), take exactly the uses the token had: every other
/// one is used up, and one host enrolling twice at once is bound once.
pub async fn concurrent_enrollments_never_exceed_the_uses(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    const USES: i64 = 5;
    const HOSTS: usize = 24;
    let setup = backend.open().await?;
    let enroll = enroll_token(&"e1".repeat(32), USES, None);
    let other = enroll_token(&"e2".repeat(32), 10, None);
    setup
        .commit(&[Write::Token(enroll.clone()), Write::Token(other.clone())])
        .await?;
    let handles = [
        backend.open().await?,
        backend.open().await?,
        backend.open().await?,
    ];
    let handles: Vec<std::sync::Arc<dyn Store>> =
        handles.into_iter().map(std::sync::Arc::from).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..HOSTS {
        let store = std::sync::Arc::clone(&handles[i % handles.len()]);
        let e = enrollment(&enroll.hash, &format!("h{i}.example.net"), 1);
        tasks.spawn(async move { store.enroll(&e).await });
    }
    // One host, twice at once, with two enrollment tokens.
    for (i, hash) in [&enroll.hash, &other.hash].into_iter().enumerate() {
        let store = std::sync::Arc::clone(&handles[i]);
        let mut e = enrollment(hash, "twice.example.net", 1);
        e.token.hash = format!("{:0>64}", i + 1);
        tasks.spawn(async move { store.enroll(&e).await });
    }
    let mut done = 0;
    let mut used_up = 0;
    while let Some(result) = tasks.join_next().await {
        match result.expect("the task ran")? {
            Enrolled::Done { .. } => done += 1,
            Enrolled::UsedUp => used_up += 1,
            Enrolled::AlreadyEnrolled => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let tokens = setup.tokens().await?;
    let twice = tokens
        .iter()
        .filter(|t| t.host.as_deref() == Some("twice.example.net"))
        .count();
    assert_eq!(twice, 1, "one host bound once");
    let by_enroll = tokens
        .iter()
        .filter(|t| t.host.as_deref().is_some_and(|h| h.starts_with('h')))
        .count();
    let left = |hash: &str| {
        tokens
            .iter()
            .find(|t| t.hash == hash)
            .and_then(|t| t.uses_left)
    };
    let taken = (USES - left(&enroll.hash).unwrap_or(-1)) + (10 - left(&other.hash).unwrap_or(-1));
    assert_eq!(
        i64::try_from(by_enroll + twice).expect("small"),
        taken,
        "every use taken bound one host"
    );
    assert!(
        by_enroll <= USES as usize,
        "{by_enroll} hosts enrolled with {USES} uses"
    );
    assert_eq!(done, by_enroll + twice);
    assert!(used_up >= HOSTS - USES as usize, "{used_up} used up");
    Ok(())
}

/// Dashboard sessions round-trip, expired ones too (the store knows no
/// clock); `SessionEnded` deletes one, and `SessionsExpired(t)` every one
/// expiring at or before `t`; a failed batch leaves them as they were, and
/// they survive reopening.
pub async fn dashboard_sessions_are_kept_until_they_end_or_expire(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let (a, b, c) = (session(1, 10), session(2, 20), session(3, 30));
    store
        .commit(&[
            Write::Session(c.clone()),
            Write::Session(a.clone()),
            Write::Session(b.clone()),
        ])
        .await?;
    assert_eq!(
        load(&*store).await?.sessions,
        [a.clone(), b.clone(), c.clone()]
    );

    // A sign-out, and one of a session the store does not hold.
    store
        .commit(&[
            Write::SessionEnded(b.hash.clone()),
            Write::SessionEnded("ff".repeat(32)),
        ])
        .await?;
    assert_eq!(load(&*store).await?.sessions, [a.clone(), c.clone()]);

    // Expiring at the time given counts as expired.
    store.commit(&[Write::SessionsExpired(at(10))]).await?;
    assert_eq!(load(&*store).await?.sessions, std::slice::from_ref(&c));

    // A sign-in and its sign-out in one batch leave nothing; an expiry
    // beside a new session deletes the old ones only.
    let (d, e) = (session(4, 40), session(5, 50));
    store
        .commit(&[
            Write::Session(d.clone()),
            Write::SessionEnded(d.hash.clone()),
            Write::SessionsExpired(at(30)),
            Write::Session(e.clone()),
        ])
        .await?;
    assert_eq!(load(&*store).await?.sessions, std::slice::from_ref(&e));

    // A batch refused at its commit (an event of a rollout that does not
    // exist) keeps none of its session writes.
    let refused = store
        .commit(&[
            Write::Session(session(6, 60)),
            Write::SessionEnded(e.hash.clone()),
            Write::SessionsExpired(at(100)),
            Write::Event(event(Some("r-9"), "created", 1)),
        ])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Refused(_))),
        "{refused:?}"
    );
    assert_eq!(load(&*store).await?.sessions, std::slice::from_ref(&e));
    drop(store);

    let store = backend.open().await?;
    assert_eq!(load(&*store).await?.sessions, [e]);
    Ok(())
}

/// A component write creates the component and sets (or clears) its stable
/// version.
pub async fn components_hold_their_stable_version(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let component = |name: &str, stable: Option<&str>| ComponentRecord {
        name: name.to_owned(),
        stable_version: stable.map(str::to_owned),
    };
    store
        .commit(&[Write::Component(component("docker-engine", None))])
        .await?;
    assert_eq!(
        load(&*store).await?.components,
        vec![component("docker-engine", None)]
    );

    store
        .commit(&[
            Write::Component(component("docker-engine", Some("17.03.1"))),
            Write::Component(component("nginx", Some("1.25"))),
        ])
        .await?;
    assert_eq!(
        load(&*store).await?.components,
        vec![
            component("docker-engine", Some("17.03.1")),
            component("nginx", Some("1.25")),
        ]
    );

    store
        .commit(&[Write::Component(component("nginx", None))])
        .await?;
    assert_eq!(
        load(&*store).await?.components,
        vec![
            component("docker-engine", Some("17.03.1")),
            component("nginx", None),
        ]
    );
    Ok(())
}

/// A batch with a write the store refuses (a second rollout with a taken
/// name) fails as a whole, with an error naming the name, and leaves
/// nothing behind: neither the writes before the bad one nor those after.
/// The store goes on working.
pub async fn a_failed_batch_leaves_nothing_behind(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    store.commit(&sample_batch()).await?;
    let before = load(&*store).await?;
    let events_before = store.events("r-1", 0, 100).await?;

    let bad = [
        Write::Host(host("a", &[("role", "changed")], Some(9))),
        Write::Host(host("c", &[], Some(9))),
        Write::HostComponent(host_component(
            "c",
            "docker-engine",
            "17.03.1",
            Some(ReportedState::Ok),
            9,
        )),
        Write::Event(event(Some("r-1"), "paused", 9)),
        Write::Freeze(None),
        Write::Component(ComponentRecord {
            name: "nginx".to_owned(),
            stable_version: None,
        }),
        Write::Rollout(rollout("r-2", "docker-17", "pending")),
        Write::Token(TokenRecord {
            hash: "00".repeat(32),
            role: TokenRole::Viewer,
            host: None,
            name: None,
            created_at: at(9),
            selector: None,
            expires_at: None,
            uses_left: None,
            last_used_at: None,
        }),
    ];
    match store.commit(&bad).await {
        Err(error @ StoreError::Refused(_)) => {
            assert!(!error.is_transient(), "{error}");
            let message = error.to_string();
            assert!(
                message.contains("rollout r-2") && message.contains("\"docker-17\""),
                "the error names the refused rollout and its name: {message}"
            );
        }
        other => {
            panic!("a duplicate rollout name must fail the batch as refused: {other:?}")
        }
    }
    assert_eq!(load(&*store).await?, before);
    assert_eq!(store.events("r-1", 0, 100).await?, events_before);

    // Renaming the rollout in place is fine, and the store still commits.
    let renamed = rollout("r-1", "docker-17-take-2", "running");
    store
        .commit(&[
            Write::Rollout(renamed.clone()),
            Write::Rollout(rollout("r-2", "docker-17", "pending")),
        ])
        .await?;
    let names: Vec<String> = load(&*store)
        .await?
        .rollouts
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["docker-17-take-2", "docker-17"]);
    Ok(())
}

/// Host components, rollout hosts and events must name a host or rollout
/// the store knows; a batch that does not is refused whole.
pub async fn writes_naming_unknown_hosts_or_rollouts_are_refused(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    store.commit(&sample_batch()).await?;
    let before = load(&*store).await?;

    let dangling: [Write; 4] = [
        Write::HostComponent(host_component("ghost", "docker-engine", "1", None, 5)),
        Write::RolloutHost(rollout_host("r-1", "ghost", "admitted")),
        Write::RolloutHost(rollout_host("r-9", "a", "admitted")),
        Write::Event(event(Some("r-9"), "created", 5)),
    ];
    let named = [
        ["host component", "ghost/docker-engine", "ghost"],
        ["rollout host", "r-1/ghost", "ghost"],
        ["rollout host", "r-9/a", "r-9"],
        ["event", "created", "r-9"],
    ];
    for (write, words) in dangling.into_iter().zip(named) {
        let batch = [Write::Host(host("c", &[], Some(5))), write];
        match store.commit(&batch).await {
            Err(error @ StoreError::Refused(_)) => {
                assert!(!error.is_transient(), "{error}");
                let message = error.to_string();
                for word in words {
                    assert!(
                        message.contains(word),
                        "the error names the write ({word}): {message}"
                    );
                }
            }
            other => panic!("{:?} must be refused, got {other:?}", batch[1]),
        }
        assert_eq!(load(&*store).await?, before);
    }

    // The store goes on committing.
    store
        .commit(&[
            Write::Host(host("c", &[], Some(6))),
            Write::HostComponent(host_component("c", "docker-engine", "1", None, 6)),
        ])
        .await?;
    assert_eq!(load(&*store).await?.hosts.len(), before.hosts.len() + 1);
    Ok(())
}

/// Within a batch, a write may name a host or rollout that a later write of
/// the same batch creates: only the committed whole must be consistent.
pub async fn a_batch_may_refer_forward_to_its_own_writes(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    store
        .commit(&[
            Write::Event(event(Some("r-1"), "created", 1)),
            Write::RolloutHost(rollout_host("r-1", "a", "waiting")),
            Write::HostComponent(host_component("a", "docker-engine", "1.12.6", None, 1)),
            Write::Rollout(rollout("r-1", "one", "pending")),
            Write::Host(host("a", &[], None)),
        ])
        .await?;
    let loaded = load(&*store).await?;
    assert_eq!(loaded.hosts.len(), 1);
    assert_eq!(loaded.rollout_hosts.len(), 1);
    assert_eq!(store.events("r-1", 0, 10).await?.len(), 1);
    Ok(())
}

/// Ten thousand hosts (and as many component reports and rollout hosts, and
/// a thousand events) in one batch, as a `hosts import` sends them, come
/// back whole.
pub async fn a_large_batch_round_trips(backend: &dyn Backend) -> Result<(), StoreError> {
    const HOSTS: usize = 10_001;
    const EVENTS: u32 = 1_001;
    let store = backend.open().await?;
    let hosts: Vec<HostRecord> = (0..HOSTS)
        .map(|i| {
            let site = ["sto", "ash", "lon"][i % 3];
            host(
                &format!("host-{i:05}.{site}.example.net"),
                &[
                    ("role", if i % 2 == 0 { "web" } else { "db" }),
                    ("site", site),
                ],
                None,
            )
        })
        .collect();
    let mut batch: Vec<Write> = vec![Write::Rollout(rollout("r-1", "big", "running"))];
    batch.extend(hosts.iter().cloned().map(Write::Host));
    batch.extend(
        hosts.iter().map(|h| {
            Write::HostComponent(host_component(&h.id, "docker-engine", "1.12.6", None, 0))
        }),
    );
    batch.extend((0..EVENTS).map(|m| Write::Event(event(Some("r-1"), "host_admitted", m))));
    batch.extend(
        hosts
            .iter()
            .map(|h| Write::RolloutHost(rollout_host("r-1", &h.id, "waiting"))),
    );
    // The same hosts again, relabelled: the later writes win.
    batch.extend(hosts.iter().take(100).map(|h| {
        let mut h = h.clone();
        h.labels.insert("pool".to_owned(), "b".to_owned());
        Write::Host(h)
    }));
    store.commit(&batch).await?;

    let loaded = load(&*store).await?;
    assert_eq!(loaded.hosts.len(), HOSTS);
    assert_eq!(loaded.host_components.len(), HOSTS);
    assert_eq!(loaded.rollout_hosts.len(), HOSTS);
    assert_eq!(
        loaded.rollout_hosts[HOSTS - 1],
        rollout_host("r-1", &hosts[HOSTS - 1].id, "waiting")
    );
    assert_eq!(
        loaded.hosts[0].labels.get("pool").map(String::as_str),
        Some("b")
    );
    assert_eq!(
        loaded.hosts[99].labels.get("pool").map(String::as_str),
        Some("b")
    );
    assert_eq!(loaded.hosts[100], hosts[100]);
    assert_eq!(loaded.hosts[HOSTS - 1], hosts[HOSTS - 1]);

    let events = store.events("r-1", 0, 5_000).await?;
    assert_eq!(events.len(), EVENTS as usize);
    assert_increasing(&events);
    let minutes: Vec<serde_json::Value> =
        events.iter().map(|e| e.event.data["n"].clone()).collect();
    let expected: Vec<serde_json::Value> = (0..EVENTS).map(|m| json!(m)).collect();
    assert_eq!(minutes, expected, "events keep their batch order");
    Ok(())
}

/// `load_parts` hands the small tables over first, then each large table a
/// page at a time (more than one page here), every row once, and the same
/// rows as `load`.
pub async fn the_load_comes_in_parts_and_pages(backend: &dyn Backend) -> Result<(), StoreError> {
    const HOSTS: usize = 10_001;
    let store = backend.open().await?;
    let ids: Vec<String> = (0..HOSTS)
        .map(|i| format!("host-{i:05}.example.net"))
        .collect();
    let mut batch = vec![
        Write::Rollout(rollout("r-1", "big", "running")),
        Write::Component(ComponentRecord {
            name: "docker-engine".to_owned(),
            stable_version: None,
        }),
    ];
    for id in &ids {
        batch.push(Write::Host(host(id, &[("role", "web")], None)));
        batch.push(Write::HostComponent(host_component(
            id,
            "docker-engine",
            "1.12.6",
            None,
            0,
        )));
        batch.push(Write::RolloutHost(rollout_host("r-1", id, "healthy")));
    }
    store.commit(&batch).await?;

    let mut kinds: Vec<(&str, usize)> = Vec::new();
    let mut parts = Loaded::default();
    store
        .load_parts(&mut |part| {
            let (kind, rows) = match &part {
                Part::Components(rows) => ("components", rows.len()),
                Part::Rollouts(rows) => ("rollouts", rows.len()),
                Part::Freeze(freeze) => ("freeze", usize::from(freeze.is_some())),
                Part::Tokens(rows) => ("tokens", rows.len()),
                Part::Sessions(rows) => ("sessions", rows.len()),
                Part::Budget(budget) => ("budget", usize::from(budget.is_some())),
                Part::Pins(rows) => ("pins", rows.len()),
                Part::Hosts(rows) => ("hosts", rows.len()),
                Part::HostComponents(rows) => ("host_components", rows.len()),
                Part::RolloutHosts(rows) => ("rollout_hosts", rows.len()),
            };
            kinds.push((kind, rows));
            parts.absorb(part);
        })
        .await?;
    let mut order: Vec<&str> = kinds.iter().map(|(kind, _)| *kind).collect();
    order.dedup();
    assert_eq!(
        order,
        [
            "components",
            "rollouts",
            "freeze",
            "tokens",
            "sessions",
            "budget",
            "pins",
            "hosts",
            "host_components",
            "rollout_hosts"
        ],
        "every kind once, in this order: {kinds:?}"
    );
    for large in ["hosts", "host_components", "rollout_hosts"] {
        let pages: Vec<usize> = kinds
            .iter()
            .filter(|(kind, _)| *kind == large)
            .map(|(_, rows)| *rows)
            .collect();
        assert!(pages.len() > 1, "{large} in more than one page: {pages:?}");
        assert_eq!(pages.iter().sum::<usize>(), HOSTS, "{large}: {pages:?}");
    }
    let parts = sorted(parts);
    let loaded: Vec<&str> = parts.hosts.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(loaded, ids, "every host once");
    assert_eq!(parts, load(&*store).await?);
    Ok(())
}

/// Everything committed is there after the store is dropped and opened
/// again, and new events number after the old ones.
pub async fn data_survives_reopening(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    store.commit(&sample_batch()).await?;
    let before = load(&*store).await?;
    let events_before = store.events("r-1", 0, 100).await?;
    assert_eq!(events_before.len(), 1);
    drop(store);

    let store = backend.open().await?;
    assert_eq!(load(&*store).await?, before);
    assert_eq!(store.events("r-1", 0, 100).await?, events_before);

    store
        .commit(&[Write::Event(event(Some("r-1"), "started", 10))])
        .await?;
    let events = store.events("r-1", 0, 100).await?;
    assert_eq!(kinds(&events), ["created", "started"]);
    assert_increasing(&events);
    Ok(())
}

/// A migrated database reports its schema version, the same after reopening.
pub async fn schema_version_is_at_least_one(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let version = store.schema_version().await?;
    assert!(version >= 1, "schema version {version}");
    drop(store);
    let store = backend.open().await?;
    assert_eq!(store.schema_version().await?, version);
    Ok(())
}

/// A database migrated by a newer sluice is refused, naming both versions.
pub async fn a_newer_schema_is_refused(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let known = store.schema_version().await?;
    store.commit(&sample_batch()).await?;
    drop(store);

    backend.record_schema_version(known + 1).await?;
    match backend.open().await {
        Err(StoreError::SchemaTooNew { found, known: k }) => {
            assert_eq!((found, k), (known + 1, known));
        }
        Err(other) => panic!("expected SchemaTooNew, got {other:?}"),
        Ok(_) => panic!("a database with schema version {} was opened", known + 1),
    }
    Ok(())
}

/// Samples of hosts by version come back per rollout, oldest first; one at
/// the same rollout and time replaces the stored one; they survive reopening.
pub async fn samples_are_kept_per_rollout_in_time_order(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let sample = |rollout: &str, minute: u32, versions: &[(&str, u64)]| SampleRecord {
        rollout: rollout.to_owned(),
        at: at(minute),
        versions: versions
            .iter()
            .map(|(version, hosts)| ((*version).to_owned(), *hosts))
            .collect(),
    };
    let store = backend.open().await?;
    assert_eq!(store.samples("r-1").await?, []);
    store.add_samples(&[]).await?;
    store
        .add_samples(&[
            sample("r-1", 2, &[("1.12.6", 90), ("17.03.1", 10)]),
            sample("r-2", 1, &[("2.0", 5)]),
            sample("r-1", 1, &[("1.12.6", 100)]),
        ])
        .await?;
    store
        .add_samples(&[sample("r-1", 2, &[("1.12.6", 80), ("17.03.1", 20)])])
        .await?;
    let expected = vec![
        sample("r-1", 1, &[("1.12.6", 100)]),
        sample("r-1", 2, &[("1.12.6", 80), ("17.03.1", 20)]),
    ];
    assert_eq!(store.samples("r-1").await?, expected);
    assert_eq!(
        store.samples("r-2").await?,
        [sample("r-2", 1, &[("2.0", 5)])]
    );
    drop(store);
    let store = backend.open().await?;
    assert_eq!(store.samples("r-1").await?, expected);
    Ok(())
}

/// Samples of hosts by state are writes of a batch: the last of a rollout
/// and time wins, one at a stored key replaces it, a refused batch leaves
/// none behind, and they come back per rollout, oldest first, after
/// reopening.
pub async fn state_samples_are_written_with_the_batch(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let sample = |rollout: &str, minute: u32, failed: u64| StateSampleRecord {
        rollout: rollout.to_owned(),
        at: at(minute),
        counts: [
            ("failed".to_owned(), failed),
            ("healthy".to_owned(), 10 - failed),
        ]
        .into_iter()
        .collect(),
    };
    let store = backend.open().await?;
    assert_eq!(store.state_samples("r-1").await?, []);
    store
        .commit(&[
            Write::StateSample(sample("r-1", 2, 1)),
            Write::StateSample(sample("r-2", 1, 0)),
            Write::StateSample(sample("r-1", 1, 0)),
            Write::StateSample(sample("r-1", 2, 2)),
        ])
        .await?;
    store
        .commit(&[Write::StateSample(sample("r-1", 3, 3))])
        .await?;
    store
        .commit(&[Write::StateSample(sample("r-1", 3, 4))])
        .await?;
    let refused = store
        .commit(&[
            Write::StateSample(sample("r-1", 4, 5)),
            Write::RolloutHost(RolloutHostRecord {
                rollout: "missing".to_owned(),
                host: "missing".to_owned(),
                record: "{}".to_owned(),
            }),
        ])
        .await;
    assert!(
        refused.is_err(),
        "a batch naming a missing rollout was kept"
    );
    let expected = vec![
        sample("r-1", 1, 0),
        sample("r-1", 2, 2),
        sample("r-1", 3, 4),
    ];
    assert_eq!(store.state_samples("r-1").await?, expected);
    assert_eq!(store.state_samples("r-2").await?, [sample("r-2", 1, 0)]);
    drop(store);
    let store = backend.open().await?;
    assert_eq!(store.state_samples("r-1").await?, expected);
    Ok(())
}

/// Times come back as the times they were, to the microsecond (finer parts
/// are dropped, in every backend), whatever offset they were written with;
/// samples come back in time order even where the times' texts would sort
/// otherwise.
pub async fn times_are_kept_to_the_microsecond_and_ordered_as_times(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let precise = time("2026-03-01T09:30:00.123456789Z");
    let offset = time("2026-03-01T11:30:00.5+02:00");
    let seen = HostRecord {
        last_seen: Some(precise),
        ..host("a", &[], None)
    };
    store
        .commit(&[
            Write::Host(seen),
            Write::HostComponent(HostComponentRecord {
                at: offset,
                ..host_component("a", "nginx", "1.25", None, 0)
            }),
        ])
        .await?;
    let loaded = load(&*store).await?;
    assert_eq!(
        loaded.hosts[0].last_seen,
        Some(time("2026-03-01T09:30:00.123456Z"))
    );
    assert_eq!(
        loaded.host_components[0].at,
        time("2026-03-01T09:30:00.500000Z")
    );

    let sample = |at: Timestamp| SampleRecord {
        rollout: "r-1".to_owned(),
        at,
        versions: BTreeMap::from([("1.0".to_owned(), 1)]),
    };
    let times = [
        time("2026-03-01T10:00:00.5Z"),
        time("2026-03-01T10:00:00Z"),
        time("2026-03-01T09:59:59.999999Z"),
        time("2026-03-01T10:00:00.000001Z"),
        time("2026-03-01T12:00:00+03:00"),
        time("2099-12-31T23:59:59Z"),
    ];
    store.add_samples(&times.map(sample)).await?;
    let mut sorted = times.to_vec();
    sorted.sort();
    let stored: Vec<Timestamp> = store
        .samples("r-1")
        .await?
        .into_iter()
        .map(|s| s.at)
        .collect();
    assert_eq!(stored, sorted);
    Ok(())
}

/// A stored role or report state this sluice does not know fails the load
/// with an error naming the table, the row and the column: serving without
/// the token, or with a made-up state, would be worse than not starting.
pub async fn unreadable_roles_and_states_fail_the_load_naming_the_row(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    store.commit(&sample_batch()).await?;
    drop(store);

    backend
        .execute("UPDATE tokens SET role = 'superuser'")
        .await?;
    let store = backend.open().await?;
    match store.load().await {
        Err(error @ StoreError::Corrupt(_)) => {
            let message = error.to_string();
            for word in ["tokens", "9f86d081884c", "role", "superuser"] {
                assert!(message.contains(word), "{word} in: {message}");
            }
        }
        other => panic!("an unknown role must fail the load: {other:?}"),
    }
    drop(store);

    backend.execute("UPDATE tokens SET role = 'agent'").await?;
    backend
        .execute("UPDATE host_components SET state = 'exploded' WHERE host = 'a'")
        .await?;
    let store = backend.open().await?;
    match store.load().await {
        Err(error @ StoreError::Corrupt(_)) => {
            let message = error.to_string();
            for word in ["host_components", "a/docker-engine", "state", "exploded"] {
                assert!(message.contains(word), "{word} in: {message}");
            }
        }
        other => panic!("an unknown state must fail the load: {other:?}"),
    }
    Ok(())
}

/// The audit log keeps every field, numbers entries in commit order
/// (within a batch, in batch order), filters by actor (id or name), kind
/// and time, pages with `after`, and without a starting point gives its
/// newest entries, oldest first.
pub async fn audit_entries_are_numbered_filtered_and_paged(
    backend: &dyn Backend,
) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let query = |limit| AuditQuery {
        limit,
        ..AuditQuery::default()
    };
    assert!(store.audit(&query(10)).await?.is_empty());
    let first = AuditRecord {
        target: Some("r-1".to_owned()),
        source: None,
        reason: None,
        ..audit_entry("rollout_created", "alice", 1)
    };
    store
        .commit(&[
            Write::Audit(first.clone()),
            Write::Audit(audit_entry("rollout_started", "alice", 2)),
        ])
        .await?;
    store
        .commit(&[
            Write::Audit(audit_entry("freeze_on", "bob", 3)),
            Write::Audit(audit_entry("freeze_off", "alice", 4)),
        ])
        .await?;
    let all = store.audit(&query(10)).await?;
    let kinds: Vec<&str> = all.iter().map(|e| e.entry.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "rollout_created",
            "rollout_started",
            "freeze_on",
            "freeze_off"
        ]
    );
    assert_eq!(all[0].entry, first, "every field as written");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{all:?}");

    // The tail: the newest two, oldest first.
    let tail = store.audit(&query(2)).await?;
    assert_eq!(
        tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [all[2].seq, all[3].seq]
    );
    // From a cursor, the oldest after it.
    let after = store
        .audit(&AuditQuery {
            after: Some(all[0].seq),
            limit: 2,
            ..AuditQuery::default()
        })
        .await?;
    assert_eq!(
        after.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [all[1].seq, all[2].seq]
    );
    // Since a time (inclusive), by actor name or id, by kind.
    let since = store
        .audit(&AuditQuery {
            since: Some(at(3)),
            limit: 10,
            ..AuditQuery::default()
        })
        .await?;
    assert_eq!(since.len(), 2);
    let alice = store
        .audit(&AuditQuery {
            actor: Some("alice".to_owned()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await?;
    assert_eq!(alice.len(), 3);
    let by_id = store
        .audit(&AuditQuery {
            actor: Some(audit_entry("x", "bob", 0).actor_id),
            kind: Some("freeze_on".to_owned()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await?;
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].entry.actor_name, "bob");
    // A refused batch leaves no audit entry behind.
    let refused = store
        .commit(&[
            Write::Audit(audit_entry("rollout_created", "alice", 5)),
            Write::RolloutHost(rollout_host("r-404", "nowhere", "waiting")),
        ])
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(store.audit(&query(10)).await?.len(), 4);
    // Numbers go on after a reopening.
    drop(store);
    let store = backend.open().await?;
    store
        .commit(&[Write::Audit(audit_entry("token_created", "alice", 6))])
        .await?;
    let again = store.audit(&query(10)).await?;
    assert_eq!(again.len(), 5);
    assert!(again[4].seq > all[3].seq);
    Ok(())
}

/// An enrollment's audit entry is written with it, and a refused one
/// writes none.
pub async fn an_enrollment_is_audited_with_it(backend: &dyn Backend) -> Result<(), StoreError> {
    let store = backend.open().await?;
    let enroll = enroll_token(&"e1".repeat(32), 1, None);
    store.commit(&[Write::Token(enroll.clone())]).await?;
    let first = enrollment(&enroll.hash, "a.example.net", 1);
    assert_eq!(store.enroll(&first).await?, Enrolled::Done { uses_left: 0 });
    let second = enrollment(&enroll.hash, "b.example.net", 2);
    assert_eq!(store.enroll(&second).await?, Enrolled::UsedUp);
    let entries = store
        .audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await?;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].entry, first.audit);
    Ok(())
}
