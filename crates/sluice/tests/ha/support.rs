//! What the tests of replicas share: the 10k fixture imported into a
//! cluster of three replicas on a fresh PostgreSQL database, the plan they
//! roll out, the agents that play its hosts, and what the database holds
//! once the dust settled, read with the store's own load (what a new leader
//! reads).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sluice_api::host::ImportHost;
use sluice_api::rollout::RolloutDetail;
use sluice_store::testing::TempPgDatabase;
use sluice_store::{Loaded, PgStore, Store as _, StoredEvent};
use sluice_testkit::{wait_for, Agents, Amount, Cluster, Plan, Stage, DEADLINE};

/// The component every test rolls out, and the version it rolls out.
pub const COMPONENT: &str = "docker-engine";
pub const TARGET: &str = "17.03.1";
/// Short, so that takeovers are quick; the shortest `--lease-ttl` takes.
pub const LEASE_TTL: &str = "2s";
/// Roles of one site of the fixture: 263 hosts in 5 strata.
const ROLES: [&str; 5] = ["dns", "vault", "cache", "logs", "share"];
/// Hosts outside the plan that check in too, and must never be told the target.
const OUTSIDERS: usize = 60;

/// The 10k-host fleet shipped with the repo (the spec's fixture).
pub fn fleet_10k() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet-10k.json")
}

/// The hosts the plans select: one site, some roles.
pub fn selector() -> String {
    format!("site=ash, role in ({})", ROLES.join(", "))
}

fn selected(host: &ImportHost) -> bool {
    let label = |name: &str| host.labels.get(name).map(String::as_str);
    label("site") == Some("ash") && label("role").is_some_and(|role| ROLES.contains(&role))
}

/// A plan over [`selector`] spread over role and site, admitting at most
/// 10 % of its hosts at once, with `stages`.
pub fn plan(name: &str, stages: impl IntoIterator<Item = Stage>) -> Plan {
    Plan::new(name, COMPONENT, TARGET)
        .selector(&selector())
        .spread(&["role", "site"])
        .max_in_flight(Amount::Percent(10))
        .stages(stages)
}

/// Three replicas on `db` with the fixture imported through the second
/// (a standby: the import is forwarded to the leader); the fixture's hosts.
pub async fn cluster_with_fleet(db: &TempPgDatabase) -> (Cluster, Vec<ImportHost>) {
    let cluster = Cluster::start(db.url(), 3, LEASE_TTL).await;
    let text = std::fs::read(fleet_10k()).expect("reading the fixture");
    let fleet: Vec<ImportHost> = serde_json::from_slice(&text).expect("parsing the fixture");
    assert_eq!(cluster.import(1, &fleet_10k()).await, fleet.len() as u64);
    (cluster, fleet)
}

/// The agents of the selected hosts and a few others, checking in through
/// every replica of `cluster` in turn.
pub fn agents(cluster: &Cluster, fleet: &[ImportHost]) -> Agents {
    let (inside, outside): (Vec<&ImportHost>, Vec<&ImportHost>) =
        fleet.iter().partition(|host| selected(host));
    let hosts = inside
        .into_iter()
        .chain(outside.into_iter().take(OUTSIDERS))
        .cloned()
        .collect();
    Agents::new(&cluster.urls(), cluster.token(), hosts, COMPONENT, TARGET)
}

/// The admin client of every replica in `which`.
pub fn clients(cluster: &Cluster, which: &[usize]) -> Vec<sluice_client::Client> {
    which
        .iter()
        .map(|&index| cluster.client(index).clone())
        .collect()
}

/// Rollout `id` as the first of `ask` that answers sees it.
pub async fn detail(cluster: &Cluster, ask: &[usize], id: &str) -> Result<RolloutDetail, String> {
    let mut seen = Vec::new();
    for &index in ask {
        match cluster.client(index).rollout(id).await {
            Ok(detail) => return Ok(detail),
            Err(error) => seen.push(format!("r{}: {error}", index + 1)),
        }
    }
    Err(seen.join("; "))
}

/// How far rollout `id` got: hosts admitted plus hosts healthy. It only grows.
pub fn progress(detail: &RolloutDetail) -> u64 {
    detail.summary.admitted + detail.summary.healthy
}

/// Waits until rollout `id` got further than `from`, as `ask` see it.
pub async fn wait_for_progress(cluster: &Cluster, ask: &[usize], id: &str, from: u64, what: &str) {
    wait_for(what, DEADLINE, || async {
        let now = progress(&detail(cluster, ask, id).await?);
        if now > from {
            Ok(now)
        } else {
            Err(format!("still {now}"))
        }
    })
    .await;
}

/// Everything the database holds, as a leader loads it, and every event
/// of rollout `id`.
pub async fn stored(db: &TempPgDatabase, id: &str) -> (Loaded, Vec<StoredEvent>) {
    let store = PgStore::open(db.url()).await.expect("opening the database");
    let loaded = store.load().await.expect("loading the database");
    let events = store
        .events(id, 0, 1_000_000)
        .await
        .expect("reading the events");
    store.close().await;
    (loaded, events)
}

/// Per host, the message of the component's report the database holds.
pub fn reports(loaded: &Loaded) -> BTreeMap<String, Option<String>> {
    loaded
        .host_components
        .iter()
        .filter(|record| record.component == COMPONENT)
        .map(|record| (record.host.clone(), record.message.clone()))
        .collect()
}

/// Asserts that every acknowledged report is in `db`, and that the agents
/// acknowledged some.
pub async fn no_acknowledged_report_lost(agents: &Agents, db: &TempPgDatabase, id: &str) {
    let (loaded, _) = stored(db, id).await;
    let acknowledged = agents.check_stored(&reports(&loaded));
    assert!(acknowledged > 0, "no report was acknowledged");
}

/// Asserts that the hosts told the target are exactly `expected`.
#[track_caller]
pub fn told_exactly(agents: &Agents, expected: &BTreeSet<String>, when: &str) {
    let told = agents.told();
    assert_eq!(
        told.len(),
        expected.len(),
        "{when}: {} hosts told {TARGET}, the preview admits {}",
        told.len(),
        expected.len()
    );
    assert_eq!(&told, expected, "{when}: the hosts told are the preview's");
}
