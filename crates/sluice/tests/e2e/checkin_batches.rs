//! Check-ins forwarded in batches: two real `sluice server` replicas on a
//! fresh PostgreSQL database. Hundreds of agents check in through the
//! standby at once, among them one whose token is bound to another host,
//! one with an unknown token and one with a malformed body: the standby
//! sends them to the leader in batches, and each agent gets its own answer
//! — its own desired versions or its own refusal — and each report is
//! the leader's, durable, under its own host. Only replicas may send a
//! batch.

use std::collections::BTreeMap;

use sluice_api::admin::Role;
use sluice_api::agent::{CheckinRequest, ComponentReport, ReportState};
use sluice_api::HostId;
use sluice_client::Client;
use sluice_store::testing::TempPgDatabase;
use sluice_testkit::Cluster;

use crate::audit::request_from;

const AGENTS: usize = 300;

/// Host `b-i`'s check-in, reporting `app` at version `1.i`.
fn report(i: usize) -> CheckinRequest {
    CheckinRequest {
        host: HostId::parse(format!("b-{i}.test")).expect("a host id"),
        labels: BTreeMap::from([("role".to_owned(), "web".to_owned())]),
        components: BTreeMap::from([(
            "app".to_owned(),
            ComponentReport {
                version: format!("1.{i}"),
                state: ReportState::Ok,
                message: None,
                drifted: false,
            },
        )]),
    }
}

/// The value of the metric line starting with `name ` in `metrics`.
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_answers_each_check_in_of_a_batch_its_own() {
    let db = TempPgDatabase::create().await;
    let cluster = Cluster::start(db.url(), 2, "4s").await;
    let leadership = cluster.wait_for_leader(&[0, 1], None).await;
    let (leader, standby) = (leadership.leader, 1 - leadership.leader);
    let urls = cluster.urls();
    let admin = cluster.client(standby);
    let bound = admin
        .create_token(Role::Agent, Some(&report(0).host), None, "e2e")
        .await
        .expect("a token bound to b-0")
        .token;
    let bound = admin.with_token(&bound).expect("a client");
    let unknown = Client::builder(&urls[standby])
        .token(format!("slc_{}", "5c".repeat(32)))
        .build()
        .expect("a client");

    let reports: Vec<CheckinRequest> = (0..AGENTS).map(report).collect();
    let agents = futures_util::future::join_all(reports.iter().map(|report| admin.checkin(report)));
    let (wrong, stranger) = (report(1), report(2));
    let (answers, other_host, unknown, malformed) = tokio::join!(
        agents,
        bound.checkin(&wrong),
        unknown.checkin(&stranger),
        request_from(
            "127.0.0.1",
            &urls[standby],
            "POST",
            "/v1/agent/checkin",
            cluster.token(),
            r#"{"host": "b-3.test", "labels": {}, "components": {"app": {"version": 4}}}"#,
            &[],
        ),
    );
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap_or_else(|error| panic!("b-{i}'s check-in: {error}"));
        assert_eq!(
            answer.components["app"].version,
            format!("1.{i}"),
            "b-{i} got another host's answer: {answer:?}"
        );
    }
    let other_host = other_host.expect_err("a token bound to b-0 checks in only as b-0");
    assert_eq!(other_host.status(), Some(403), "{other_host}");
    let unknown = unknown.expect_err("an unknown token");
    assert_eq!(unknown.status(), Some(401), "{unknown}");
    let (status, malformed) = malformed;
    assert_eq!(status, 400, "{malformed}");
    assert!(malformed.contains("components.app.version"), "{malformed}");

    // Every report is the leader's, under its own host, read there.
    let on_leader = cluster.client(leader);
    for i in (0..AGENTS).step_by(7) {
        let host = on_leader
            .host(report(i).host.as_str())
            .await
            .unwrap_or_else(|error| panic!("b-{i} on the leader: {error}"));
        assert_eq!(host.components["app"].version, format!("1.{i}"));
    }
    // All went the batches' way, none the way of other requests.
    let (_, metrics) = cluster
        .get(standby, "/metrics")
        .await
        .expect("the standby's metrics");
    assert_eq!(
        metric(&metrics, "sluice_forwarded_checkin_batch_size_sum"),
        (AGENTS + 3) as f64
    );
    let batches = metric(&metrics, "sluice_forwarded_checkin_batch_size_count");
    assert!((1.0..=(AGENTS + 3) as f64).contains(&batches), "{batches}");

    // Nobody but a replica sends a batch: not without the cluster's key,
    // not with a guess at it, to either replica.
    for (replica, headers) in [
        (leader, &[][..]),
        (leader, &[("x-sluice-forward-key", "a guess")][..]),
        (standby, &[("x-sluice-forward-key", "a guess")][..]),
    ] {
        let (status, answer) = request_from(
            "127.0.0.1",
            &urls[replica],
            "POST",
            "/internal/v1/checkins",
            cluster.token(),
            "",
            headers,
        )
        .await;
        assert_eq!(status, 403, "{answer}");
    }
}
