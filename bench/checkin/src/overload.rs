//! `overload`: back-pressure under an open loop at a multiple of the
//! maximum check-in rate.
//!
//! 1. Starts `sluice server` on SQLite (release build, temp data dir).
//! 2. Measures its maximum check-in rate with a closed loop.
//! 3. Offers `--factor` × that rate in an open loop on `--connections`
//!    keep-alive connections (as many agents at once), each check-in of the
//!    next host in turn reporting a version that grows with every request
//!    (`1.K` for request K). Accepted (200) and refused (429) answers are
//!    counted apart; accepted ones are timed from their send and from the
//!    time they were due; the server's resident memory is sampled
//!    throughout.
//! 4. SIGKILLs the server at the end of the phase, requests still in
//!    flight, restarts it on the same data dir, and checks that every
//!    acknowledged report is in the store: for each host, the version
//!    stored is the last one acknowledged, or a later one (sent, made
//!    durable, but not answered before the kill).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::header::HeaderValue;
use hyper::StatusCode;
use sluice_client::{Client, HostQuery};
use tokio::sync::{Barrier, Semaphore};
use tokio::time::Instant;

use crate::load::{self, connect, send_checkin};
use crate::procs::Server;
use crate::setup;

#[derive(Debug, Clone, clap::Args)]
pub struct OverloadArgs {
    /// Distinct host ids, checked in in turn (not imported: their first
    /// check-in makes them)
    #[arg(long, default_value_t = 20_000)]
    pub hosts: usize,
    /// Length of the closed loop that measures the maximum rate
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    pub measure: Duration,
    /// Keep-alive connections of that closed loop (at most --checkin-queue:
    /// the maximum is measured without refusals)
    #[arg(long, default_value_t = 64)]
    pub measure_connections: usize,
    /// Length of the open loop
    #[arg(long, default_value = "20s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// The open loop offers this many times the maximum rate
    #[arg(long, default_value_t = 4.0)]
    pub factor: f64,
    /// Keep-alive connections of the open loop: agents checking in at once
    #[arg(long, default_value_t = 2048)]
    pub connections: usize,
    /// `sluice server --checkin-queue` (default: the server's)
    #[arg(long)]
    pub checkin_queue: Option<usize>,
    /// `sluice server --checkin-wait-ms` (default: the server's)
    #[arg(long)]
    pub checkin_wait_ms: Option<u64>,
    /// The sluice binary (default: `sluice` beside this binary)
    #[arg(long)]
    pub sluice: Option<PathBuf>,
    /// Where to write the Markdown results
    #[arg(long, default_value = "bench/out/overload-results.md")]
    pub out: PathBuf,
}

/// What the open loop measured.
#[derive(Debug)]
struct Outcome {
    accepted: u64,
    refused: u64,
    errors: u64,
    first_error: Option<String>,
    /// Accepted check-ins' latency from their send, µs.
    service: Histogram<u64>,
    /// From the time they were due, µs.
    intended: Histogram<u64>,
    /// Host → the highest K acknowledged.
    acknowledged: HashMap<usize, u64>,
}

pub async fn run(args: OverloadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.hosts > 0 && args.connections > 0 && args.measure_connections > 0,
        "--hosts and the connections must be at least 1"
    );
    anyhow::ensure!(args.factor > 0.0, "--factor must be more than 0");
    let sluice = setup::sluice_binary(args.sluice.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix("sluice-bench-overload-")
        .tempdir()
        .context("creating the data dir")?;
    let bounds = bounds(&args);
    let mut server = start(&sluice, dir.path(), &bounds)?;
    let token = std::fs::read_to_string(dir.path().join("data/admin.token"))
        .context("reading the admin token")?
        .trim()
        .to_owned();
    let authorization = HeaderValue::from_str(&format!("Bearer {token}"))?;
    let bodies = Arc::new(Bodies::new(args.hosts));
    let measure_connections = args
        .checkin_queue
        .map_or(args.measure_connections, |queue| {
            queue.min(args.measure_connections)
        });
    eprintln!("sluice on {} (pid {})", server.addr, server.pid());

    // Every host checks in once (so the loop below updates, as a fleet
    // does), then the closed loop measures the maximum.
    let warm = open_loop(
        server.addr,
        &authorization,
        &bodies,
        measure_connections,
        None,
        Duration::from_secs(3600),
        Some(args.hosts as u64),
        || {},
    )
    .await?;
    anyhow::ensure!(warm.errors == 0, "warm-up: {:?}", warm.first_error);
    let measured = open_loop(
        server.addr,
        &authorization,
        &bodies,
        measure_connections,
        None,
        args.measure,
        None,
        || {},
    )
    .await?;
    let max_rate = measured.accepted as f64 / args.measure.as_secs_f64();
    let offered = max_rate * args.factor;
    eprintln!(
        "maximum: {max_rate:.0} check-ins/s ({} refused); offering {offered:.0}/s for {:.0} s on {} connections",
        measured.refused,
        args.duration.as_secs_f64(),
        args.connections
    );

    let pid = server.pid();
    let rss = Arc::new(Mutex::new(Vec::<(f64, u64)>::new()));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (rss, sampling) = (Arc::clone(&rss), Arc::clone(&sampling));
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while sampling.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    if let Ok(mut samples) = rss.lock() {
                        samples.push((start.elapsed().as_secs_f64(), kib));
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let before = rss_kib(pid).unwrap_or(0);
    // The server's CPU time and the machine's over the phase.
    let ticks_before = (
        crate::procs::process_ticks(pid).ok(),
        crate::procs::machine_ticks().ok(),
    );
    let phase = std::time::Instant::now();
    let mut ticks_after = (None, None);
    // Killed as the phase ends, requests in flight.
    let addr = server.addr;
    // The server's own figures, read just before the end.
    let scrape = tokio::spawn({
        let wait = args.duration.saturating_sub(Duration::from_millis(500));
        async move {
            tokio::time::sleep(wait).await;
            load::get(addr, "/metrics").await.unwrap_or_default()
        }
    });
    let outcome = open_loop(
        addr,
        &authorization,
        &bodies,
        args.connections,
        Some(offered),
        args.duration,
        None,
        || {
            sampling.store(false, Ordering::Relaxed);
            ticks_after = (
                crate::procs::process_ticks(pid).ok(),
                crate::procs::machine_ticks().ok(),
            );
            if let Err(error) = server.kill() {
                eprintln!("killing the server: {error:#}");
            }
        },
    )
    .await?;
    let _ = sampler.join();
    let metrics = scrape.await.unwrap_or_default();
    let samples = rss.lock().map(|s| s.clone()).unwrap_or_default();
    let cpu = Cpu::over(ticks_before, ticks_after, phase.elapsed());
    drop(server);

    // Restarted on the same data: every acknowledged report is there.
    let server = start(&sluice, dir.path(), &bounds)?;
    let (checked, missing) = verify(server.addr, &token, &outcome.acknowledged).await?;
    drop(server);

    let report = report(
        &args,
        max_rate,
        offered,
        &outcome,
        (before, &samples),
        &metrics,
        cpu,
        (checked, &missing),
    );
    println!("{report}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &report)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("written to {}", args.out.display());
    anyhow::ensure!(
        missing.is_empty(),
        "{} acknowledged reports were lost",
        missing.len()
    );
    Ok(())
}

/// The server's bounds the run sets: `--checkin-queue`, `--checkin-wait-ms`.
fn bounds(args: &OverloadArgs) -> Vec<String> {
    let mut bounds = Vec::new();
    if let Some(queue) = args.checkin_queue {
        bounds.extend(["--checkin-queue".to_owned(), queue.to_string()]);
    }
    if let Some(wait) = args.checkin_wait_ms {
        bounds.extend(["--checkin-wait-ms".to_owned(), wait.to_string()]);
    }
    bounds
}

fn start(sluice: &Path, dir: &Path, bounds: &[String]) -> anyhow::Result<Server> {
    let data = dir.join("data").to_string_lossy().into_owned();
    let mut args = vec![
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        // The verification lists every host at once.
        "--api-rate",
        "0",
    ];
    args.extend(bounds.iter().map(String::as_str));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .context("opening the server's log")?;
    Server::start("sluice", sluice, &args, None, Stdio::from(log))
}

/// The check-in of host `i` reporting version `1.K`.
struct Bodies {
    hosts: usize,
    next: AtomicU64,
}

impl Bodies {
    fn new(hosts: usize) -> Bodies {
        Bodies {
            hosts,
            next: AtomicU64::new(0),
        }
    }

    /// The next request: its K, its host and its body.
    fn next(&self) -> (u64, usize, Bytes) {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let host = (k % self.hosts as u64) as usize;
        let body = format!(
            r#"{{"host":"{}","labels":{{"role":"overload"}},"components":{{"app":{{"version":"1.{k}","state":"ok"}}}}}}"#,
            host_id(host)
        );
        (k, host, Bytes::from(body))
    }
}

fn host_id(host: usize) -> String {
    format!("ov{host}.overload.example.net")
}

/// Check-ins on `connections` connections for `duration`: back to back
/// (`rate` none), or due at `rate` a second; or, with `count`, until that
/// many were answered. `on_end` runs as the time is up, before the
/// requests in flight are waited for.
#[allow(clippy::too_many_arguments)]
async fn open_loop(
    addr: SocketAddr,
    authorization: &HeaderValue,
    bodies: &Arc<Bodies>,
    connections: usize,
    rate: Option<f64>,
    duration: Duration,
    count: Option<u64>,
    on_end: impl FnOnce(),
) -> anyhow::Result<Outcome> {
    let host_header = HeaderValue::from_str(&addr.to_string())?;
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(addr).await?);
    }
    let barrier = Arc::new(Barrier::new(connections + 1));
    let due = Arc::new(Semaphore::new(0));
    let tickets = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(connections);
    for mut sender in senders {
        let (barrier, due, tickets, answered) = (
            Arc::clone(&barrier),
            Arc::clone(&due),
            Arc::clone(&tickets),
            Arc::clone(&answered),
        );
        let (bodies, host_header, authorization) = (
            Arc::clone(bodies),
            host_header.clone(),
            authorization.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut outcome = Outcome::new();
            barrier.wait().await;
            loop {
                let due_at = match rate {
                    None => None,
                    Some(rate) => {
                        let Ok(permit) = due.acquire().await else {
                            break;
                        };
                        permit.forget();
                        let k = tickets.fetch_add(1, Ordering::Relaxed);
                        Some(start + Duration::from_secs_f64(k as f64 / rate))
                    }
                };
                let sent = Instant::now();
                if sent >= deadline
                    || count.is_some_and(|count| answered.load(Ordering::Relaxed) >= count)
                {
                    break;
                }
                let (k, host, body) = bodies.next();
                let result = send_checkin(
                    &mut sender,
                    &host_header,
                    Some(&authorization),
                    body,
                    Duration::from_secs(30),
                )
                .await;
                let done = Instant::now();
                match result {
                    Ok((StatusCode::OK, _)) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        outcome.accepted += 1;
                        let micros = |from: Instant| (done - from).as_micros() as u64;
                        outcome.service.saturating_record(micros(sent));
                        outcome
                            .intended
                            .saturating_record(micros(due_at.unwrap_or(sent)));
                        let acked = outcome.acknowledged.entry(host).or_insert(k);
                        *acked = (*acked).max(k);
                    }
                    Ok((StatusCode::TOO_MANY_REQUESTS, _)) => outcome.refused += 1,
                    Ok((status, body)) => {
                        outcome.errors += 1;
                        outcome.first_error.get_or_insert_with(|| {
                            format!("{status}: {}", String::from_utf8_lossy(&body))
                        });
                    }
                    // Past the deadline the server is killed: not an error.
                    Err(_) if Instant::now() >= deadline => break,
                    Err(error) => {
                        outcome.errors += 1;
                        outcome
                            .first_error
                            .get_or_insert_with(|| format!("{error:#}"));
                        match connect(addr).await {
                            Ok(fresh) => sender = fresh,
                            Err(_) => break,
                        }
                    }
                }
            }
            outcome
        }));
    }
    barrier.wait().await;
    let pacer = rate.map(|rate| {
        let due = Arc::clone(&due);
        let begun = start.into_std();
        std::thread::spawn(move || load::pace(&due, begun, duration, rate))
    });
    match count {
        Some(count) => {
            while answered.load(Ordering::Relaxed) < count && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        None => tokio::time::sleep_until(deadline).await,
    }
    on_end();
    due.close();
    if let Some(pacer) = pacer {
        let _ = pacer.join();
    }
    let mut total = Outcome::new();
    for task in tasks {
        let part = task.await.context("a load task panicked")?;
        total.accepted += part.accepted;
        total.refused += part.refused;
        total.errors += part.errors;
        total.first_error = total.first_error.or(part.first_error);
        total.service.add(&part.service)?;
        total.intended.add(&part.intended)?;
        for (host, k) in part.acknowledged {
            let acked = total.acknowledged.entry(host).or_insert(k);
            *acked = (*acked).max(k);
        }
    }
    Ok(total)
}

impl Outcome {
    fn new() -> Outcome {
        let histogram =
            || Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds");
        Outcome {
            accepted: 0,
            refused: 0,
            errors: 0,
            first_error: None,
            service: histogram(),
            intended: histogram(),
            acknowledged: HashMap::new(),
        }
    }
}

/// The server's resident memory, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Reads every host back; (hosts checked, hosts whose stored version is
/// older than the last one acknowledged, with both).
async fn verify(
    addr: SocketAddr,
    token: &str,
    acknowledged: &HashMap<usize, u64>,
) -> anyhow::Result<(usize, Vec<(String, String, u64)>)> {
    let client = Client::builder(format!("http://{addr}"))
        .token(token)
        .timeout(Duration::from_secs(600))
        .build()?;
    let mut stored = HashMap::new();
    let mut offset = 0;
    loop {
        let page = client
            .hosts_page(&HostQuery {
                selector: Some("role=overload"),
                component: None,
                drifted: false,
                pinned: false,
                offset: Some(offset),
                limit: Some(100_000),
            })
            .await
            .context("listing the hosts after the restart")?;
        let count = page.hosts.len();
        for host in page.hosts {
            let version = host
                .components
                .get("app")
                .map(|app| app.version.clone())
                .unwrap_or_default();
            stored.insert(host.id, version);
        }
        offset += count;
        if count == 0 || offset as u64 >= page.total {
            break;
        }
    }
    let mut missing = Vec::new();
    for (&host, &k) in acknowledged {
        let id = host_id(host);
        let version = stored.get(&id).cloned().unwrap_or_default();
        let kept = version
            .strip_prefix("1.")
            .and_then(|k| k.parse::<u64>().ok())
            .is_some_and(|stored| stored >= k);
        if !kept {
            missing.push((id, version, k));
        }
    }
    Ok((acknowledged.len(), missing))
}

/// In the Prometheus text `metrics`, the count of histogram `name` and
/// how many of it were above bucket `le`.
fn above(metrics: &str, name: &str, le: &str) -> Option<(u64, u64)> {
    let value = |prefix: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .and_then(|rest| rest.trim().parse::<f64>().ok())
            .map(|value| value as u64)
    };
    let count = value(&format!("{name}_count "))?;
    let within = value(&format!("{name}_bucket{{le=\"{le}\"}} "))?;
    Some((count, count.saturating_sub(within)))
}

/// Where the CPU went over the open loop.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    /// The server's CPU time, seconds.
    server_s: Option<f64>,
    /// The machine's CPUs busy, as a share of all of them.
    machine_busy: Option<f64>,
    /// The length of the phase, seconds.
    elapsed_s: f64,
}

impl Cpu {
    fn over(
        before: (Option<u64>, Option<(u64, u64)>),
        after: (Option<u64>, Option<(u64, u64)>),
        elapsed: Duration,
    ) -> Cpu {
        let ticks = crate::procs::clock_ticks();
        let server_s = match (before.0, after.0) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before) as f64 / ticks),
            _ => None,
        };
        let machine_busy = match (before.1, after.1) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                Some(busy1.saturating_sub(busy0) as f64 / (total1 - total0) as f64)
            }
            _ => None,
        };
        Cpu {
            server_s,
            machine_busy,
            elapsed_s: elapsed.as_secs_f64(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &OverloadArgs,
    max_rate: f64,
    offered: f64,
    outcome: &Outcome,
    (before, samples): (u64, &[(f64, u64)]),
    metrics: &str,
    cpu: Cpu,
    (checked, missing): (usize, &[(String, String, u64)]),
) -> String {
    let ms = |histogram: &Histogram<u64>, q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let seconds = args.duration.as_secs_f64();
    let peak = samples.iter().map(|(_, kib)| *kib).max().unwrap_or(0);
    let last = samples.last().map_or(0, |(_, kib)| *kib);
    // Memory in the first and the second half of the run.
    let half = |first: bool| {
        samples
            .iter()
            .filter(|(t, _)| (*t < seconds / 2.0) == first)
            .map(|(_, kib)| *kib)
            .max()
            .unwrap_or(0)
    };
    let mut text = String::new();
    text.push_str("## Check-ins at 4 × the maximum rate (back-pressure)\n\n");
    text.push_str(&format!(
        "`sluice-bench-checkin overload --factor {} --duration {:.0}s --connections {}{}`: {} hosts, sluice on SQLite, {} CPUs\n\n",
        args.factor,
        seconds,
        args.connections,
        bounds(args).iter().fold(String::new(), |line, arg| line + " " + arg),
        args.hosts,
        crate::procs::cpus()
    ));
    text.push_str("| measure | value |\n| --- | --- |\n");
    let mut row = |name: &str, value: String| text.push_str(&format!("| {name} | {value} |\n"));
    row(
        "maximum rate (closed loop)",
        format!("{max_rate:.0} check-ins/s"),
    );
    row(
        "offered (open loop)",
        format!("{offered:.0} check-ins/s for {seconds:.0} s"),
    );
    let total = (outcome.accepted + outcome.refused + outcome.errors).max(1);
    row(
        "accepted (200)",
        format!(
            "{} ({:.0}/s, {:.0} %)",
            outcome.accepted,
            outcome.accepted as f64 / seconds,
            100.0 * outcome.accepted as f64 / total as f64
        ),
    );
    row("refused (429)", format!("{}", outcome.refused));
    row(
        "other errors",
        match &outcome.first_error {
            Some(first) => format!("{} (first: {first})", outcome.errors),
            None => outcome.errors.to_string(),
        },
    );
    row(
        "accepted latency from send: p50 / p99 / max",
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            ms(&outcome.service, 0.5),
            ms(&outcome.service, 0.99),
            outcome.service.max() as f64 / 1000.0
        ),
    );
    row(
        "accepted latency from due time: p50 / p99",
        format!(
            "{:.1} / {:.1} ms",
            ms(&outcome.intended, 0.5),
            ms(&outcome.intended, 0.99)
        ),
    );
    row(
        "server RSS: before / peak in 1st half / peak in 2nd half / last",
        format!(
            "{:.0} / {:.0} / {:.0} / {:.0} MiB",
            before as f64 / 1024.0,
            half(true) as f64 / 1024.0,
            half(false) as f64 / 1024.0,
            last as f64 / 1024.0
        ),
    );
    row(
        "server RSS peak",
        format!("{:.0} MiB", peak as f64 / 1024.0),
    );
    // Buckets: 0.1 ms × 2^i; counted over the whole run.
    if let Some((count, slow)) = above(metrics, "sluice_checkin_duration_seconds", "0.0512") {
        row(
            "server side, whole run: check-ins admitted / over 51 ms from admission to durable answer",
            format!("{count} / {slow}"),
        );
    }
    if let Some((count, slow)) = above(metrics, "sluice_commit_duration_seconds", "0.0512") {
        row(
            "server side, whole run: group commits / over 51 ms",
            format!("{count} / {slow}"),
        );
    }
    if let Some(server_s) = cpu.server_s {
        let answered = (outcome.accepted + outcome.refused).max(1);
        row(
            "server CPU over the open loop: seconds (cores) / per answer",
            format!(
                "{server_s:.1} s ({:.2} cores) / {:.0} µs",
                server_s / cpu.elapsed_s.max(f64::EPSILON),
                server_s * 1e6 / answered as f64
            ),
        );
    }
    if let Some(busy) = cpu.machine_busy {
        row(
            "machine's CPUs busy over the open loop (server and generator)",
            format!("{:.0} %", busy * 100.0),
        );
    }
    row(
        "after SIGKILL and restart",
        format!(
            "{checked} hosts with an acknowledged report, {} lost",
            missing.len()
        ),
    );
    for (id, stored, k) in missing.iter().take(10) {
        text.push_str(&format!(
            "\nlost: {id}: stored {stored:?}, acknowledged 1.{k}"
        ));
    }
    text
}
