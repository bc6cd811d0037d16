//! A rollout over three replicas, its agents spread over them: each stage
//! tells exactly the hosts `sluice plan preview` names, and no sample ever
//! finds more told, through any replica; a pause acknowledged by a standby
//! admits no further host; SIGKILL of the leader mid-stage: a standby takes
//! over (within the spec's bound, plus slack) and the rollout moves on under
//! it, no acknowledged report lost; the killed replica, restarted, rejoins
//! as a standby and serves.

use std::sync::Arc;

use sluice_api::rollout::{Phase, RolloutState};
use sluice_store::testing::TempPgDatabase;
use sluice_testkit::cluster::replica_id;
use sluice_testkit::{wait_for, Stage, DEADLINE};

use crate::support::{self, detail, progress, told_exactly, wait_for_progress};

const ALL: [usize; 3] = [0, 1, 2];

/// Waits until rollout `id` awaits approval at `stage`.
async fn awaiting_approval(
    cluster: &sluice_testkit::Cluster,
    ask: &[usize],
    id: &str,
    stage: usize,
) {
    wait_for(
        &format!("stage {} to await approval", stage + 1),
        DEADLINE,
        || async {
            let now = detail(cluster, ask, id).await?;
            if now.summary.stage == Some(stage)
                && now.summary.phase == Some(Phase::AwaitingApproval)
            {
                Ok(())
            } else {
                Err(format!("{:?}", now.summary))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_tell_their_quota_through_any_replica_and_a_killed_leader_is_replaced() {
    let _one = crate::ONE_AT_A_TIME.lock().await;
    let db = TempPgDatabase::create().await;
    let (mut cluster, fleet) = support::cluster_with_fleet(&db).await;
    let plan = cluster.write(
        "plan.yaml",
        support::plan(
            "ha-failover",
            [
                Stage::percent(5).named("canary").approve(),
                Stage::percent(40).named("forty").approve(),
                Stage::percent(100).named("all"),
            ],
        ),
    );
    let preview = cluster.preview(&plan, &support::fleet_10k()).await.stages;
    // Created and started through a standby, forwarded to the leader.
    let id = cluster.start_rollout(2, &plan, "ha: CHG-1").await;
    let agents = Arc::new(support::agents(&cluster, &fleet));
    let watch = agents.watch(support::clients(&cluster, &ALL), &id, preview.clone());
    let playing = agents.start();

    // The canary: exactly its preview, told through every replica.
    awaiting_approval(&cluster, &ALL, &id, 0).await;
    told_exactly(&agents, &preview[0], "the canary awaits approval");
    for (replica, told) in agents.told_through().iter().enumerate() {
        assert!(
            !told.is_empty(),
            "no host was told {} through {}",
            support::TARGET,
            replica_id(replica)
        );
    }
    cluster
        .rollout_action(1, &id, "approve", "ha: canaries healthy")
        .await;

    // A pause acknowledged by a standby admits no further host: once every
    // host checked in twice more, exactly the hosts admitted at the pause
    // were told.
    wait_for_progress(
        &cluster,
        &ALL,
        &id,
        preview[0].len() as u64 * 2,
        "stage 2 to admit",
    )
    .await;
    let paused = cluster
        .rollout_action(2, &id, "pause", "ha: error rate up")
        .await;
    assert_eq!(paused["state"], "paused", "{paused}");
    let admitted = paused["admitted"].as_u64().expect("admitted");
    assert!(admitted > preview[0].len() as u64, "{paused}");
    agents.wait_rounds(2).await;
    assert_eq!(agents.told().len() as u64, admitted, "told while paused");
    let now = detail(&cluster, &ALL, &id).await.expect("the rollout");
    assert_eq!(
        (now.summary.state, now.summary.admitted),
        (RolloutState::Paused, admitted)
    );
    cluster
        .rollout_action(0, &id, "resume", "ha: false alarm")
        .await;

    // SIGKILL of the leader mid-stage: a standby takes over, and the rollout
    // moves on under it.
    let before = cluster.leadership(&ALL).await.expect("a leader");
    let killed = before.leader;
    let survivors: Vec<usize> = ALL.into_iter().filter(|&i| i != killed).collect();
    cluster.replica_mut(killed).kill9();
    let after = cluster.wait_for_leader(&survivors, Some(&before)).await;
    assert_ne!(after.leader, killed);
    let moved = progress(
        &detail(&cluster, &survivors, &id)
            .await
            .expect("the rollout"),
    );
    wait_for_progress(
        &cluster,
        &survivors,
        &id,
        moved,
        "the rollout to move under the new leader",
    )
    .await;

    // The killed replica, restarted, rejoins as a standby, and serves.
    cluster.replica_mut(killed).restart().await;
    wait_for(
        "the restarted replica to serve as a standby",
        DEADLINE,
        || async {
            cluster.readiness(killed).await.and_then(|role| {
                if role == "standby" {
                    Ok(())
                } else {
                    Err(role)
                }
            })
        },
    )
    .await;
    let status = cluster
        .sluice(killed, &["cluster", "status", "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(status["answered_by"], replica_id(killed), "{status}");
    assert_eq!(status["leader"], replica_id(after.leader), "{status}");
    assert_eq!(status["epoch"], after.epoch, "{status}");
    let roles: Vec<(String, String)> = status["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("").to_owned(),
                r["role"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = ALL
        .iter()
        .map(|&i| {
            let role = if i == after.leader {
                "leader"
            } else {
                "standby"
            };
            (replica_id(i), role.to_owned())
        })
        .collect();
    assert_eq!(roles, expected, "{status}");

    // Stage 2 settles at exactly its preview; approved through the
    // rejoined replica, the rollout completes with exactly the last one.
    awaiting_approval(&cluster, &ALL, &id, 1).await;
    told_exactly(&agents, &preview[1], "stage 2 awaits approval");
    cluster
        .rollout_action(killed, &id, "approve", "ha: stage 2 healthy")
        .await;
    wait_for("the rollout to complete", DEADLINE, || async {
        let now = detail(&cluster, &ALL, &id).await?;
        if now.summary.state == RolloutState::Completed {
            Ok(())
        } else {
            Err(format!("{:?}", now.summary))
        }
    })
    .await;
    playing.stop().await;
    let watched = watch.stop().await;
    told_exactly(&agents, &preview[2], "the rollout completed");
    watched.assert_within_stages();
    for (stage, most) in &watched.most_told {
        assert!(
            *most <= preview[*stage].len(),
            "at stage {}, {most} hosts were told, its preview admits {}",
            stage + 1,
            preview[*stage].len()
        );
    }
    support::no_acknowledged_report_lost(&agents, &db, &id).await;
    eprintln!(
        "failover: {} rounds, {} samples, per replica: {:?}",
        agents.rounds(),
        watched.samples,
        agents.tally()
    );
}
