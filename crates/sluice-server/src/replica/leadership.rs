//! The leader's lease, kept by every replica of a cluster: the one module
//! whose decisions make a replica lead or stop leading.
//!
//! A standby tries to take the lease every second (it succeeds only once
//! the lease expired or was released) and otherwise reads who holds it, to
//! forward requests there. The replica that takes it starts a [`Term`]:
//! memory loaded from the store, commits fenced by the new epoch; it renews
//! the lease while it loads. A leader renews the lease every quarter of its
//! TTL and steps down when the renewal says the lease is gone, when its
//! commits were fenced off, or when it could not renew for three quarters
//! of the TTL (it stops answering at that point anyway, see the parent
//! module). Every replica writes a heartbeat every two seconds for
//! `GET /v1/cluster`; when the lease's renewal is due as well, the lease
//! goes first. A replica that stepped down says so once its term stopped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sluice_store::{Cluster, Lease};

use super::{Leader, Replica, Role, Term};

/// How often a standby tries to take the lease.
const POLL: Duration = Duration::from_secs(1);
/// How often every replica writes its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(2);

impl Replica {
    fn cluster(&self) -> Option<&Arc<dyn Cluster>> {
        self.cluster.as_ref()
    }

    fn renew_every(&self) -> Duration {
        self.lease_ttl / 4
    }
}

/// Tries once to take the lease and lead; `Ok(false)` when another replica
/// holds it. At start-up, so that the first replica of a cluster serves as
/// soon as it is built.
pub async fn try_lead(replica: &Arc<Replica>) -> anyhow::Result<bool> {
    let Some(cluster) = replica.cluster().cloned() else {
        return Ok(true);
    };
    let sent = replica.clock();
    match cluster
        .acquire(&replica.id, &replica.address, replica.lease_ttl)
        .await?
    {
        Some(lease) => {
            replica.touched(sent);
            take_over(replica, &cluster, lease, sent).await
        }
        None => {
            replica.touched(sent);
            look_for_leader(replica, &cluster).await;
            Ok(false)
        }
    }
}

/// Keeps the lease (or waits for it) until `stop` resolves.
pub async fn run(replica: Arc<Replica>, stop: impl Future<Output = ()>) {
    let Some(cluster) = replica.cluster().cloned() else {
        return;
    };
    tokio::pin!(stop);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = tokio::time::Instant::now();
    loop {
        let role = replica.role();
        let wait = match &role {
            Role::Leader(_) => replica.renew_every(),
            Role::Standby(_) => POLL,
        };
        // A change of role (a take-over, a step-down) times from now.
        next = next.min(tokio::time::Instant::now() + wait);
        let fenced = async {
            match &role {
                Role::Leader(term) => term.state.committer().fenced().await,
                Role::Standby(_) => std::future::pending().await,
            }
        };
        // Lease first: when the renewal (or the standby's attempt) is due
        // together with the heartbeat — after a stall, the process paused
        // or the runtime starved — it goes before the heartbeat, whose write
        // could otherwise hold it back past the lease's freshness.
        tokio::select! {
            biased;
            () = &mut stop => return,
            () = fenced => {
                if let Role::Leader(term) = &role {
                    step_down(&replica, &cluster, term, "the store fenced its commits off: another replica took the lease").await;
                }
                continue;
            }
            () = tokio::time::sleep_until(next) => {}
            _ = heartbeat.tick() => {
                let sent = replica.clock();
                match tokio::time::timeout(wait, cluster.heartbeat(&replica.id, &replica.address)).await {
                    Ok(Ok(())) => replica.touched(sent),
                    Ok(Err(error)) => tracing::warn!(%error, "could not write this replica's heartbeat"),
                    Err(_) => tracing::warn!("writing this replica's heartbeat timed out"),
                }
                continue;
            }
        }
        next = tokio::time::Instant::now() + wait;
        match role {
            Role::Leader(term) => renew(&replica, &cluster, &term).await,
            Role::Standby(_) => {
                let sent = replica.clock();
                let acquired = tokio::time::timeout(
                    POLL,
                    cluster.acquire(&replica.id, &replica.address, replica.lease_ttl),
                )
                .await;
                match acquired {
                    Ok(Ok(Some(lease))) => {
                        replica.touched(sent);
                        if let Err(error) = take_over(&replica, &cluster, lease, sent).await {
                            tracing::error!(error = %format!("{error:#}"), "could not take over as leader; this replica stays a standby");
                        }
                    }
                    Ok(Ok(None)) => {
                        replica.touched(sent);
                        look_for_leader(&replica, &cluster).await;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "could not reach the database for the lease");
                        replica.set_role(Role::Standby(None));
                    }
                    Err(_) => {
                        tracing::warn!("the database did not answer for the lease in time");
                        replica.set_role(Role::Standby(None));
                    }
                }
            }
        }
    }
}

/// Renews the leader's lease, stepping down when it is gone or could not
/// be renewed for three quarters of its TTL.
async fn renew(replica: &Arc<Replica>, cluster: &Arc<dyn Cluster>, term: &Arc<Term>) {
    let Some(epoch) = term.epoch else {
        return;
    };
    let sent = replica.clock();
    let renewed = tokio::time::timeout(
        replica.renew_every(),
        cluster.renew(&replica.id, epoch, replica.lease_ttl),
    )
    .await;
    match renewed {
        Ok(Ok(Some(_))) => {
            replica.touched(sent);
            term.set_renewed(sent);
        }
        Ok(Ok(None)) => {
            step_down(
                replica,
                cluster,
                term,
                "the lease expired or another replica took it",
            )
            .await;
        }
        failed => {
            match failed {
                Ok(Err(error)) => tracing::warn!(%error, epoch, "could not renew the lease"),
                _ => tracing::warn!(epoch, "renewing the lease timed out"),
            }
            if !replica.fresh(term) {
                let why = "the lease could not be renewed in time";
                step_down(replica, cluster, term, why).await;
            }
        }
    }
}

/// Reads who holds the lease, to forward there.
async fn look_for_leader(replica: &Replica, cluster: &Arc<dyn Cluster>) {
    let leader = match cluster.current().await {
        Ok(state) => state.held().map(|lease| Leader {
            id: lease.holder.clone(),
            address: lease.address.clone(),
            epoch: lease.epoch,
        }),
        Err(error) => {
            tracing::warn!(%error, "could not read the lease");
            None
        }
    };
    if let Role::Standby(known) = replica.role() {
        if known != leader {
            match &leader {
                Some(leader) => {
                    tracing::info!(leader = %leader.id, address = %leader.address, epoch = leader.epoch, "following the leader")
                }
                None => tracing::warn!("no replica holds the lease"),
            }
            replica.set_role(Role::Standby(leader));
        }
    }
}

/// Leads under `lease`: loads memory with commits fenced by its epoch,
/// renewing the lease meanwhile. Gives the lease back when the load fails.
async fn take_over(
    replica: &Arc<Replica>,
    cluster: &Arc<dyn Cluster>,
    lease: Lease,
    sent: u64,
) -> anyhow::Result<bool> {
    let epoch = lease.epoch;
    tracing::info!(epoch, "took the leader's lease; loading the state");
    let started = std::time::Instant::now();
    let store = cluster.fenced(&replica.id, epoch);
    let start = Term::start(
        &replica.settings,
        store,
        Arc::clone(&replica.metrics),
        Some(epoch),
        sent,
    );
    tokio::pin!(start);
    let mut renewed = sent;
    let term = loop {
        tokio::select! {
            term = &mut start => break term,
            () = tokio::time::sleep(replica.renew_every()) => {
                let now = replica.clock();
                match cluster.renew(&replica.id, epoch, replica.lease_ttl).await {
                    Ok(Some(_)) => renewed = now,
                    Ok(None) => anyhow::bail!("the lease of epoch {epoch} was lost while loading the state"),
                    Err(error) => tracing::warn!(%error, epoch, "could not renew the lease while loading"),
                }
            }
        }
    };
    let term = match term {
        Ok(term) => term,
        Err(error) => {
            let _ = cluster.release(&replica.id, epoch).await;
            return Err(error);
        }
    };
    term.set_renewed(renewed);
    let term = Arc::new(term);
    replica.set_role(Role::Leader(Arc::clone(&term)));
    tracing::info!(
        epoch,
        load_ms = started.elapsed().as_millis() as u64,
        "leading"
    );
    Ok(true)
}

/// Stops leading: requests are forwarded (or refused) from now on, the
/// term's tasks stop, and nothing it still holds is written.
async fn step_down(replica: &Replica, cluster: &Arc<dyn Cluster>, term: &Arc<Term>, why: &str) {
    let Role::Leader(current) = replica.role() else {
        return;
    };
    if !Arc::ptr_eq(&current, term) {
        return;
    }
    tracing::warn!(
        epoch = term.epoch,
        reason = why,
        "stepping down: this replica no longer leads"
    );
    replica.set_role(Role::Standby(None));
    term.stop(false).await;
    if let Some(epoch) = term.epoch {
        // Still ours only if it merely could not be renewed: hand it over.
        let _ =
            tokio::time::timeout(replica.renew_every(), cluster.release(&replica.id, epoch)).await;
    }
    tracing::info!(
        epoch = term.epoch,
        "stepped down: the term's tasks have stopped and nothing more of it is written"
    );
}
