//! Forwarding keeps secrets out of the logs: two replicas on one
//! PostgreSQL database, both logging at debug level; a standby forwards
//! an agent's check-in, operator calls (one with an unknown token), a
//! one-time sign-in link's making and its use to the leader. Neither
//! replica's log shows a token, the link's nonce or the session's cookie.

use std::collections::BTreeMap;

use sluice_api::admin::Role;
use sluice_api::agent::{CheckinRequest, ComponentReport, ReportState};
use sluice_api::host::ImportHost;
use sluice_api::HostId;
use sluice_client::Client;
use sluice_store::testing::TempPgDatabase;
use sluice_testkit::browse::{set_cookie, visit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_forwards_without_logging_a_secret() {
    let db = TempPgDatabase::create().await;
    let (leader, standby) =
        crate::leader_and_standby(db.url(), |replica| replica.log_filter("debug")).await;
    let client = standby.client();

    let id = HostId::parse("fwd.test").expect("a host id");
    let labels = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
    client
        .import_hosts(
            &[ImportHost {
                id: id.clone(),
                labels: labels.clone(),
                components: BTreeMap::from([("app".to_owned(), "1.0".to_owned())]),
            }],
            "e2e",
        )
        .await
        .expect("an import through the standby");
    let agent = client
        .create_token(Role::Agent, Some(&id), None, "e2e")
        .await
        .expect("a token made through the standby")
        .token;
    client
        .with_token(&agent)
        .expect("an agent client")
        .checkin(&CheckinRequest {
            host: id.clone(),
            labels,
            components: BTreeMap::from([(
                "app".to_owned(),
                ComponentReport {
                    version: "1.0".to_owned(),
                    state: ReportState::Ok,
                    message: None,
                    drifted: false,
                },
            )]),
        })
        .await
        .expect("a check-in through the standby");
    let unknown = format!("slc_{}", "7a".repeat(32));
    let refused = Client::builder(standby.url())
        .token(&unknown)
        .build()
        .expect("a client")
        .hosts(None, None)
        .await
        .expect_err("an unknown token is refused");
    assert_eq!(refused.status(), Some(401), "{refused}");
    assert!(!refused.to_string().contains(&unknown), "{refused}");

    let link = standby.sluice(&["dashboard"]).await.ok().stdout();
    let path = link
        .trim()
        .strip_prefix(standby.url())
        .expect("a link on the standby")
        .to_owned();
    let nonce = path.strip_prefix("/signin/link/").expect("a link path");
    let signed_in = visit(standby.url(), &path);
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");
    let session = set_cookie(&signed_in, "sluice_session")
        .expect("a session cookie")
        .to_owned();
    let again = visit(leader.url(), &path);
    assert!(
        again.starts_with("HTTP/1.1 410"),
        "once, on any replica: {again}"
    );

    let secrets = [
        ("the admin token", leader.admin_token()),
        ("an agent's token", agent.as_str()),
        ("an unknown token", unknown.as_str()),
        ("a sign-in link's nonce", nonce),
        ("a session's cookie", session.as_str()),
    ];
    for (whose, log) in [("a", leader.log()), ("b", standby.log())] {
        let log = log.join("\n");
        assert!(log.contains("DEBUG"), "{whose} logged at debug level");
        for (what, secret) in secrets {
            let shown: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
            assert!(
                shown.is_empty(),
                "replica {whose}'s log shows {what}:\n{}",
                shown.join("\n")
            );
        }
    }
}
