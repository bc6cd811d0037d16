//! The server processes (start, read their address, stop or kill) and CPU
//! accounting from `/proc`: per process (user + system time of all its
//! threads), for PostgreSQL (its processes serving the run's database and
//! its own background ones) and for the whole machine.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A server child process, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    child: Child,
    /// Kept open so that a late write to stdout does not kill the server.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts `command` and waits (at most 60 s) for its `listening on
    /// http://ADDR` line. With `cpu`, the process is pinned to that CPU.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        cpu: Option<usize>,
        stderr: Stdio,
    ) -> anyhow::Result<Server> {
        let mut command = match cpu {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpu.to_string()).arg(program);
                command
            }
            None => Command::new(program),
        };
        let mut child = command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Read the first line on a thread, so that a server that never
        // prints it cannot hang the benchmark.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line);
            let _ = tx.send((read.map(|_| line), reader));
        });
        let guard = Killer(Some(child));
        let (line, reader) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((Ok(line), reader)) => (line, reader),
            Ok((Err(error), _)) => bail!("{name}: reading its stdout: {error}"),
            Err(_) => bail!("{name} did not say where it listens within 60 s"),
        };
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|addr| addr.parse().ok())
            .with_context(|| format!("{name} printed {line:?}, not `listening on http://ADDR`"))?;
        Ok(Server {
            addr,
            child: guard.defuse(),
            _stdout: reader,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash: nothing is flushed, nothing handed over.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("sending SIGKILL")?;
        self.child
            .wait()
            .context("waiting for the killed process")?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Kills a child unless defused (a start that failed half-way).
struct Killer(Option<Child>);

impl Killer {
    fn defuse(mut self) -> Child {
        self.0.take().expect("defused once")
    }
}

impl Drop for Killer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM (a graceful stop: sluice flushes its group commit), then SIGKILL
/// after 10 s.
fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Pins every thread of this process (and the threads it starts later) to `cpu`.
pub fn pin_self(cpu: usize) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    anyhow::ensure!(status.success(), "taskset failed: {status}");
    Ok(())
}

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU time of a process, all threads, in clock ticks.
pub fn process_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("field {n} of {path}"))
    };
    Ok(field(14)? + field(15)?)
}

/// The machine's (busy, total) clock ticks, all CPUs, from `/proc/stat`.
pub fn machine_ticks() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().unwrap_or("");
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    anyhow::ensure!(values.len() >= 5, "unexpected /proc/stat: {line:?}");
    let total: u64 = values.iter().take(8).sum();
    // idle + iowait
    let idle = values[3] + values[4];
    Ok((total - idle, total))
}

/// The machine's CPUs, from `/proc/stat` (not this process's: it may be
/// pinned to one).
pub fn cpus() -> usize {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|line| {
            line.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count()
        .max(1)
}

/// Cores busy on the whole machine over `interval` (sleeps that long).
pub fn machine_busy(interval: Duration) -> anyhow::Result<f64> {
    let (busy0, total0) = machine_ticks()?;
    std::thread::sleep(interval);
    let (busy1, total1) = machine_ticks()?;
    let total = total1.saturating_sub(total0) as f64;
    let cores = cpus() as f64;
    Ok(if total > 0.0 {
        busy1.saturating_sub(busy0) as f64 / total * cores
    } else {
        0.0
    })
}

/// The PostgreSQL processes that work for `database`: the backends
/// connected to it and the server's own (the postmaster, the WAL writer,
/// the checkpointer, …), not the backends of other databases.
fn database_pids(database: &str) -> HashMap<u32, u64> {
    let mut pids = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    let ours = format!(" {database} ");
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        if std::fs::read_to_string(path.join("comm")).map_or(true, |c| c.trim() != "postgres") {
            continue;
        }
        // A backend's title: `postgres: 15/main: USER DATABASE HOST(PORT) STATE`.
        let title = std::fs::read(path.join("cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
            .unwrap_or_default();
        let client = title.contains('(') || title.contains("[local]");
        if title.contains(&ours) || !client {
            if let Ok(ticks) = process_ticks(pid) {
                pids.insert(pid, ticks);
            }
        }
    }
    pids
}

/// What CPU use is counted for: the processes of the server under load,
/// and the PostgreSQL database it uses, if any.
#[derive(Debug, Clone, Copy)]
pub struct Counted<'a> {
    pub servers: &'a [u32],
    pub database: Option<&'a str>,
}

/// CPU used by the servers, the load generator (this process), the
/// database and the machine, at one moment.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    server: u64,
    generator: u64,
    database: HashMap<u32, u64>,
    busy: u64,
    total: u64,
}

impl CpuSample {
    pub fn take(counted: Counted<'_>) -> anyhow::Result<CpuSample> {
        let (busy, total) = machine_ticks()?;
        let mut server = 0;
        for &pid in counted.servers {
            server += process_ticks(pid)?;
        }
        Ok(CpuSample {
            server,
            generator: process_ticks(std::process::id())?,
            database: counted.database.map(database_pids).unwrap_or_default(),
            busy,
            total,
        })
    }
}

/// CPU use over an interval, in cores (1.0 = one core fully busy).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// Every process of the target (three for a cluster).
    pub server: f64,
    pub generator: f64,
    /// PostgreSQL, for the targets on it (else 0).
    pub database: f64,
    /// The whole machine, all processes.
    pub machine: f64,
    /// The machine's cores.
    pub cores: f64,
}

impl CpuUse {
    /// Everything but the server, the generator and the database.
    pub fn other(&self) -> f64 {
        (self.machine - self.server - self.generator - self.database).max(0.0)
    }

    pub fn between(start: &CpuSample, end: &CpuSample, wall: Duration, ticks: f64) -> CpuUse {
        let seconds = wall.as_secs_f64().max(1e-9);
        let cores = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / ticks / seconds;
        let total = end.total.saturating_sub(start.total) as f64;
        let busy = end.busy.saturating_sub(start.busy) as f64;
        let machine_cores = total / ticks / seconds;
        // A database process that started during the interval counts whole.
        let database: u64 = end
            .database
            .iter()
            .map(|(pid, &ticks)| {
                ticks.saturating_sub(start.database.get(pid).copied().unwrap_or(0))
            })
            .sum();
        CpuUse {
            server: cores(start.server, end.server),
            generator: cores(start.generator, end.generator),
            database: cores(0, database),
            machine: if total > 0.0 {
                busy / total * machine_cores
            } else {
                0.0
            },
            cores: machine_cores,
        }
    }
}

/// Starts `perf record` of `pid` for `duration` into `file`.
pub fn perf_record(pid: u32, file: &Path, duration: Duration) -> anyhow::Result<Child> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Command::new("perf")
        .args(["record", "-F", "499", "--call-graph", "dwarf,16384", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(file)
        .arg("--")
        .arg("sleep")
        .arg(format!("{}", duration.as_secs_f64()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting perf (apt-get install linux-perf)")
}
