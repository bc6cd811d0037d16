//! The load generator: HTTP/1.1 keep-alive connections (hyper's low-level
//! client, one connection per task, no pool), each request a check-in of
//! the next host in turn (a shared counter, cycling over the fleet).
//!
//! - **Closed loop** ([`Load::Closed`]): C connections send back to back
//!   for a fixed time; completions within it over its length is the
//!   throughput.
//! - **Open loop** ([`Load::Open`]): requests are due at a fixed rate
//!   (request k at `start + k / rate`), whatever the answers; any free
//!   connection takes the next due request. Latency is measured from the
//!   time a request was *due*, so a slow answer that delays the requests
//!   behind it counts against them too (no coordinated omission), and also
//!   from the time it was actually sent. A pacer thread releases requests
//!   as they fall due (tokio's timer rounds up to whole milliseconds, which
//!   would add up to ~1 ms of the generator's own delay to every request).
//!
//! The simulated agents apply what they are told at once: a host whose
//! answer names the rollout's target version reports it from then on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};
use tokio::time::Instant;

use crate::fleet::{Bodies, TARGET_VERSION};

const CHECKIN: &str = "/v1/agent/checkin";
/// A request that takes longer is an error (and its connection is replaced).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One server under load, or several behind one name: connection `i` of a
/// phase goes to the `i`-th address, cycling.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: &'static str,
    addrs: Vec<(SocketAddr, HeaderValue)>,
    pub authorization: Option<HeaderValue>,
}

impl Target {
    pub fn new(
        name: &'static str,
        addrs: &[SocketAddr],
        token: Option<&str>,
    ) -> anyhow::Result<Target> {
        anyhow::ensure!(!addrs.is_empty(), "{name}: no address to send to");
        let authorization = token
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
            .transpose()
            .context("the token is not a valid header value")?;
        let addrs = addrs
            .iter()
            .map(|&addr| Ok((addr, HeaderValue::from_str(&addr.to_string())?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Target {
            name,
            addrs,
            authorization,
        })
    }

    /// The address of connection `i` and its `Host` header.
    fn addr(&self, i: usize) -> &(SocketAddr, HeaderValue) {
        &self.addrs[i % self.addrs.len()]
    }
}

/// The fleet's bodies and what each simulated agent runs; shared by all
/// connections of every phase.
#[derive(Debug)]
pub struct Agents {
    bodies: Vec<Bodies>,
    upgraded: Vec<AtomicBool>,
    next: AtomicU64,
}

impl Agents {
    /// Agents of the hosts of `bodies` (`Bytes` share their buffers, so
    /// several sets of agents may play the same hosts against different
    /// servers).
    pub fn new(bodies: Vec<Bodies>) -> Agents {
        Agents {
            upgraded: bodies.iter().map(|_| AtomicBool::new(false)).collect(),
            bodies,
            next: AtomicU64::new(0),
        }
    }

    /// The next host in turn.
    pub fn next_host(&self) -> usize {
        (self.next.fetch_add(1, Ordering::Relaxed) % self.bodies.len() as u64) as usize
    }

    /// Host `host`'s check-in as its agent would send it now.
    pub fn body(&self, host: usize) -> Bytes {
        let upgraded = self.upgraded[host].load(Ordering::Relaxed);
        self.bodies[host][usize::from(upgraded)].clone()
    }

    /// Learns from host `host`'s answer: told the target version, its agent
    /// applies it at once.
    pub fn answered(&self, host: usize, body: &[u8]) {
        if contains(body, TARGET_VERSION.as_bytes()) {
            self.upgraded[host].store(true, Ordering::Relaxed);
        }
    }

    pub fn hosts(&self) -> usize {
        self.bodies.len()
    }

    /// Hosts told to run the target version so far.
    pub fn upgraded(&self) -> usize {
        self.upgraded
            .iter()
            .filter(|u| u.load(Ordering::Relaxed))
            .count()
    }
}

/// What a phase measured.
#[derive(Debug)]
pub struct Phase {
    /// Answers 200 within the phase.
    pub ok: u64,
    /// Other statuses, transport errors and timeouts.
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency from the actual send, µs.
    pub service: Histogram<u64>,
    /// Latency from the time the request was due (open loop), µs; the same
    /// as `service` in a closed loop.
    pub intended: Histogram<u64>,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// Requests slower than [`SLOW`] (from due time): seconds into the
    /// phase they were due, and their latency in µs; at most [`MAX_SLOW`]
    /// per connection.
    pub slow: Vec<(f64, u64)>,
}

/// A request this slow is listed in [`Phase::slow`].
pub const SLOW: Duration = Duration::from_millis(20);
const MAX_SLOW: usize = 1000;

impl Phase {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs … 100 s, three significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// A phase's schedule.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// Back to back on every connection.
    Closed,
    /// Requests per second, due at a fixed rate.
    Open(f64),
}

/// Runs one phase of `duration` on `connections` connections; `on_start`
/// runs once every connection is open, right as the clock starts (CPU
/// sampling), `on_end` right as it stops.
pub async fn run_phase(
    target: &Target,
    agents: &Arc<Agents>,
    connections: usize,
    load: Load,
    duration: Duration,
    mut on_start: impl FnMut(),
    mut on_end: impl FnMut(),
) -> anyhow::Result<Phase> {
    let mut senders = Vec::with_capacity(connections);
    for i in 0..connections {
        senders.push(connect(target.addr(i).0).await?);
    }
    // Every task, plus this one, meets here; then the clock starts.
    let barrier = Arc::new(Barrier::new(connections + 1));
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());
    let tickets = Arc::new(AtomicU64::new(0));
    let due = Arc::new(Semaphore::new(0));
    let mut tasks = Vec::with_capacity(connections);
    for (index, sender) in senders.into_iter().enumerate() {
        let worker = Worker {
            target: target.clone(),
            index,
            agents: Arc::clone(agents),
            sender,
            barrier: Arc::clone(&barrier),
            start: Arc::clone(&start),
            tickets: Arc::clone(&tickets),
            due: Arc::clone(&due),
            load,
            duration,
        };
        tasks.push(tokio::spawn(worker.run()));
    }
    on_start();
    let _ = start.set(Instant::now());
    barrier.wait().await;
    let begun = *start.get().context("the phase's start")?;
    let pacer = match load {
        Load::Closed => None,
        Load::Open(rate) => {
            let due = Arc::clone(&due);
            let (begun, duration) = (begun.into_std(), duration);
            Some(std::thread::spawn(move || {
                pace(&due, begun, duration, rate)
            }))
        }
    };
    tokio::time::sleep_until(begun + duration).await;
    on_end();
    due.close();
    if let Some(pacer) = pacer {
        let _ = pacer.join();
    }
    let mut phase = Phase {
        ok: 0,
        errors: 0,
        elapsed: duration,
        service: histogram(),
        intended: histogram(),
        first_error: None,
        slow: Vec::new(),
    };
    for task in tasks {
        let part = task.await.context("a load task panicked")?;
        phase.ok += part.ok;
        phase.errors += part.errors;
        phase.service.add(&part.service)?;
        phase.intended.add(&part.intended)?;
        phase.first_error = phase.first_error.or(part.first_error);
        phase.slow.extend(part.slow);
    }
    phase.slow.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(phase)
}

struct Worker {
    target: Target,
    /// The connection's number, which says where it goes.
    index: usize,
    agents: Arc<Agents>,
    sender: SendRequest<Full<Bytes>>,
    barrier: Arc<Barrier>,
    start: Arc<std::sync::OnceLock<Instant>>,
    tickets: Arc<AtomicU64>,
    /// Open loop: a permit per request that fell due.
    due: Arc<Semaphore>,
    load: Load,
    duration: Duration,
}

impl Worker {
    async fn run(mut self) -> Phase {
        let mut phase = Phase {
            ok: 0,
            errors: 0,
            elapsed: self.duration,
            service: histogram(),
            intended: histogram(),
            first_error: None,
            slow: Vec::new(),
        };
        self.barrier.wait().await;
        let Some(&start) = self.start.get() else {
            return phase;
        };
        let deadline = start + self.duration;
        loop {
            let due = match self.load {
                Load::Closed => None,
                Load::Open(rate) => {
                    let Ok(permit) = self.due.acquire().await else {
                        break;
                    };
                    permit.forget();
                    // Permits are taken in order: the k-th taken is request k,
                    // already due.
                    let k = self.tickets.fetch_add(1, Ordering::Relaxed);
                    Some(start + Duration::from_secs_f64(k as f64 / rate))
                }
            };
            let sent = Instant::now();
            if sent >= deadline {
                break;
            }
            let outcome = self.checkin().await;
            let done = Instant::now();
            let late = done > deadline;
            if late && due.is_none() {
                // A closed loop's request finished after the phase: neither
                // counted nor timed.
                break;
            }
            match outcome {
                Ok(()) => {
                    // An open loop's request that was sent within the phase
                    // is timed even if it finishes after it (a stall at the
                    // end must not hide), but not counted in the throughput.
                    phase.ok += u64::from(!late);
                    let micros = |from: Instant| (done - from).as_micros() as u64;
                    phase.service.saturating_record(micros(sent));
                    let from = due.unwrap_or(sent);
                    phase.intended.saturating_record(micros(from));
                    if done - from >= SLOW && phase.slow.len() < MAX_SLOW {
                        phase
                            .slow
                            .push(((from - start).as_secs_f64(), micros(from)));
                    }
                }
                Err(error) => {
                    phase.errors += 1;
                    phase
                        .first_error
                        .get_or_insert_with(|| format!("{error:#}"));
                    match connect(self.target.addr(self.index).0).await {
                        Ok(sender) => self.sender = sender,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
            if late {
                break;
            }
        }
        phase
    }

    /// One check-in of the next host; Ok once a 200 and its body are in.
    async fn checkin(&mut self) -> anyhow::Result<()> {
        let host = self.agents.next_host();
        let (_, host_header) = self.target.addr(self.index);
        let (status, body) = send_checkin(
            &mut self.sender,
            host_header,
            self.target.authorization.as_ref(),
            self.agents.body(host),
            REQUEST_TIMEOUT,
        )
        .await?;
        if status != StatusCode::OK {
            anyhow::bail!("{status}: {}", String::from_utf8_lossy(&body));
        }
        self.agents.answered(host, &body);
        Ok(())
    }
}

/// Sends one check-in on `sender`; the answer's status and body.
pub async fn send_checkin(
    sender: &mut SendRequest<Full<Bytes>>,
    host_header: &HeaderValue,
    authorization: Option<&HeaderValue>,
    body: Bytes,
    timeout: Duration,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(CHECKIN)
        .header(HOST, host_header.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(authorization) = authorization {
        request = request.header(AUTHORIZATION, authorization.clone());
    }
    let request = request.body(Full::new(body))?;
    let exchange = async {
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .context("timed out")?
}

/// The pacer sleeps at least this long: at high rates it releases requests
/// in small batches rather than waking for each (its delay counts in the
/// latency from due time).
const PACER_QUANTUM: Duration = Duration::from_micros(100);

/// Releases a permit on `due` for each request as it falls due (request k
/// at `start + k / rate`) until `duration` is over; sleeps in between
/// (the OS timer, accurate to tens of µs) and releases every request that
/// fell due meanwhile at each wake-up.
pub(crate) fn pace(due: &Semaphore, start: std::time::Instant, duration: Duration, rate: f64) {
    let mut released: u64 = 0;
    loop {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(start);
        if elapsed >= duration || due.is_closed() {
            return;
        }
        // Requests due by now: k with k / rate <= elapsed.
        let due_by_now = (elapsed.as_secs_f64() * rate).floor() as u64 + 1;
        if due_by_now > released {
            due.add_permits((due_by_now - released) as usize);
            released = due_by_now;
        }
        let next = start + Duration::from_secs_f64(released as f64 / rate);
        let wait = next.saturating_duration_since(std::time::Instant::now());
        std::thread::sleep(wait.max(PACER_QUANTUM));
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A keep-alive HTTP/1.1 connection to `addr`.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// `GET path` on a fresh connection; the body as text (for `/metrics`).
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let (status, body) = get_any(addr, path).await?;
    anyhow::ensure!(status == StatusCode::OK, "GET {path}: {status}");
    Ok(body)
}

/// `GET path` on a fresh connection, whatever the status (for `/readyz`);
/// at most [`REQUEST_TIMEOUT`].
pub async fn get_any(addr: SocketAddr, path: &str) -> anyhow::Result<(StatusCode, String)> {
    let exchange = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .uri(path)
            .header(HOST, addr.to_string())
            .body(Empty::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| format!("GET {path}: timed out"))?
}
