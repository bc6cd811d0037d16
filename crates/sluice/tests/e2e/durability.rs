//! Issue 3, point 2: an acknowledged check-in is never lost. Many agents
//! report at once, the server is killed with SIGKILL in the middle of it,
//! and after a restart on the same data dir every report that was answered
//! 200 is there (or a later report of the same host).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sluice_api::agent::ReportState;
use sluice_api::host::ImportHost;
use sluice_api::HostId;
use sluice_testkit::{wait_for, Sandbox, DEADLINE};
use tokio::sync::Notify;

use crate::fleet::{for_each_concurrent, report, Rng, COMPONENT, WORKERS};

/// Hosts each reporting task plays; each host reports several times.
const HOSTS_PER_TASK: usize = 25;

/// The version of the `n`th report: every report of the run is distinct,
/// and a host's later reports have larger `n`.
fn version(n: u64) -> String {
    format!("v-{n}")
}

fn number(version: &str) -> Option<u64> {
    version.strip_prefix("v-")?.parse().ok()
}

/// What the reporting tasks saw, shared with the test.
#[derive(Default)]
struct Ledger {
    /// Host → the numbers of its reports answered 200.
    acknowledged: Mutex<HashMap<String, Vec<u64>>>,
    /// Host → the highest number it ever sent (answered or not).
    sent: Mutex<HashMap<String, u64>>,
    acks: AtomicUsize,
    in_flight: AtomicUsize,
    /// Set once the test has killed the server: errors are expected then.
    killed: AtomicBool,
    reached: Notify,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_checkins_survive_sigkill() {
    let mut rng = Rng::from_env("acknowledged_checkins_survive_sigkill");
    let mut sandbox = Sandbox::start().await;
    let hosts: Vec<ImportHost> = (0..WORKERS * HOSTS_PER_TASK)
        .map(|i| ImportHost {
            id: HostId::parse(format!("durable-{i:04}.sto.example.net")).expect("a host id"),
            labels: [("role".to_owned(), format!("r{}", i % 7))].into(),
            components: [(COMPONENT.to_owned(), version(0))].into(),
        })
        .collect();
    sandbox
        .client()
        .import_hosts(&hosts, "e2e")
        .await
        .expect("importing the hosts");

    // Kill after a few hundred acknowledgements, at a random count.
    let kill_after = rng.range(400, 900) as usize;
    let ledger = Arc::new(Ledger::default());
    let hosts = Arc::new(hosts);
    let reporters = {
        let client = sandbox.client().clone();
        let ledger = Arc::clone(&ledger);
        let hosts = Arc::clone(&hosts);
        tokio::spawn(for_each_concurrent(WORKERS, WORKERS, move |task| {
            let client = client.clone();
            let ledger = Arc::clone(&ledger);
            let hosts = Arc::clone(&hosts);
            async move {
                let mine = &hosts[task * HOSTS_PER_TASK..(task + 1) * HOSTS_PER_TASK];
                // Report numbers unique over the run: task-major, increasing.
                let mut n = 0u64;
                loop {
                    for host in mine {
                        n += 1;
                        let number = n * WORKERS as u64 + task as u64;
                        let request = report(host, &version(number), ReportState::Ok);
                        ledger
                            .sent
                            .lock()
                            .expect("ledger")
                            .insert(host.id.to_string(), number);
                        ledger.in_flight.fetch_add(1, Ordering::SeqCst);
                        let answer = client.checkin(&request).await;
                        ledger.in_flight.fetch_sub(1, Ordering::SeqCst);
                        match answer {
                            Ok(_) => {
                                ledger
                                    .acknowledged
                                    .lock()
                                    .expect("ledger")
                                    .entry(host.id.to_string())
                                    .or_default()
                                    .push(number);
                                if ledger.acks.fetch_add(1, Ordering::SeqCst) + 1 == kill_after {
                                    ledger.reached.notify_one();
                                }
                            }
                            // The server is gone: this agent stops here.
                            Err(_) if ledger.killed.load(Ordering::SeqCst) => return,
                            Err(error) => panic!("check-in of {} failed: {error}", host.id),
                        }
                    }
                }
            }
        }))
    };

    ledger.reached.notified().await;
    // Kill while reports are on the wire, so that some are cut off.
    let in_flight_at_kill = wait_for("check-ins in flight", DEADLINE, || {
        let in_flight = ledger.in_flight.load(Ordering::SeqCst);
        async move { (in_flight > 0).then_some(in_flight) }
    })
    .await;
    ledger.killed.store(true, Ordering::SeqCst);
    sandbox.kill9();
    reporters
        .await
        .expect("the reporting tasks end once the server is gone");
    let acknowledged = ledger.acknowledged.lock().expect("ledger").clone();
    let sent = ledger.sent.lock().expect("ledger").clone();
    let acks: usize = acknowledged.values().map(Vec::len).sum();
    eprintln!(
        "killed the server after {acks} acknowledged check-ins of {} hosts, {in_flight_at_kill} in flight",
        acknowledged.len()
    );
    assert!(acks >= kill_after, "{acks} acknowledged");

    sandbox.restart().await;
    let client = sandbox.client().clone();
    let ids: Vec<String> = hosts.iter().map(|host| host.id.to_string()).collect();
    let views = for_each_concurrent(ids.len(), WORKERS, {
        let ids = ids.clone();
        move |i| {
            let client = client.clone();
            let id = ids[i].clone();
            async move { client.host(&id).await }
        }
    })
    .await;
    let mut lost = Vec::new();
    for (id, view) in ids.iter().zip(views) {
        let view = view.unwrap_or_else(|error| panic!("GET /v1/hosts/{id}: {error}"));
        let stored = &view
            .components
            .get(COMPONENT)
            .unwrap_or_else(|| panic!("{id} lost its {COMPONENT} after the restart"))
            .version;
        let stored_number =
            number(stored).unwrap_or_else(|| panic!("{id} shows a version never sent: {stored}"));
        // Never a report that was not sent.
        let highest_sent = sent.get(id).copied().unwrap_or(0);
        assert!(
            stored_number <= highest_sent,
            "{id} shows {stored}, but the highest version it sent was {}",
            version(highest_sent)
        );
        // Every acknowledged report, or a later one.
        let highest_acknowledged = acknowledged
            .get(id)
            .and_then(|numbers| numbers.iter().max().copied())
            .unwrap_or(0);
        if stored_number < highest_acknowledged {
            lost.push(format!(
                "{id}: {} was acknowledged, the restarted server shows {stored}",
                version(highest_acknowledged)
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged reports lost in the crash:\n{}",
        lost.len(),
        lost.join("\n")
    );
}
