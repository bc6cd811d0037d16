//! The results as Markdown: the machine, the command, the closed-loop runs
//! of every target, the maximum throughputs and sluice's ratio to each
//! reference, the latencies at half of each maximum, the CPU each process
//! used, sluice's group commits, and whether the targets are met.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::load::Phase;
use crate::procs::CpuUse;
use crate::{Kind, RunArgs};

/// SPEC.md's targets: check-in throughput at least this share of the
/// reference's (the parsing handler's, and the raw handler's, the loopback
/// limit) …
const MIN_RATIO: f64 = 0.5;
/// … and, on PostgreSQL through any replica, this share of the parsing one's …
const MIN_RATIO_CLUSTER: f64 = 0.4;
/// … and a p99 under this at half of the maximum throughput.
const MAX_P99_MS: f64 = 10.0;

#[derive(Debug)]
pub struct Report {
    pub started: jiff::Timestamp,
    /// Cores busy on the machine in the second before the servers started.
    pub quiet: f64,
    pub args: RunArgs,
    pub machine: Machine,
    /// The sluice servers (SQLite, the PostgreSQL cluster) that ran.
    pub systems: Vec<System>,
    /// In the order of [`Kind`]: references first.
    pub targets: Vec<Measured>,
}

/// A sluice system under test, for the report's description.
#[derive(Debug)]
pub struct System {
    pub name: &'static str,
    /// What it stores in, and how its targets reach it.
    pub store: String,
    /// Its rollout (its id while running; a summary at the end), if one ran.
    pub rollout: Option<String>,
    /// Simulated agents told the target version, by the end.
    pub upgraded: usize,
}

/// One target's runs.
#[derive(Debug)]
pub struct Measured {
    pub kind: Kind,
    pub closed: Vec<Run>,
    /// The rate asked for and the run.
    pub open: Option<(f64, Run)>,
}

impl Measured {
    /// The maximum throughput, check-ins/s.
    pub fn max(&self) -> f64 {
        self.best().phase.throughput()
    }

    /// The closed-loop run of the highest throughput.
    pub fn best(&self) -> &Run {
        self.closed
            .iter()
            .max_by(|a, b| a.phase.throughput().total_cmp(&b.phase.throughput()))
            .expect("at least one closed-loop run")
    }
}

#[derive(Debug)]
pub struct Run {
    pub connections: usize,
    pub phase: Phase,
    pub cpu: CpuUse,
    /// sluice's group commits during the run.
    pub commits: Option<Commits>,
}

/// Totals of sluice's group-commit metrics (or their change over a run).
#[derive(Debug, Clone, Copy, Default)]
pub struct Commits {
    pub commits: f64,
    pub requests: f64,
    pub writes: f64,
    pub seconds: f64,
}

impl Commits {
    /// Reads `sluice_commit_*` from Prometheus text.
    pub fn parse(text: &str) -> Option<Commits> {
        let value = |name: &str| -> Option<f64> {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        };
        Some(Commits {
            commits: value("sluice_commit_duration_seconds_count")?,
            requests: value("sluice_commit_batch_requests_sum")?,
            writes: value("sluice_commit_batch_writes_sum")?,
            seconds: value("sluice_commit_duration_seconds_sum")?,
        })
    }

    pub fn since(&self, before: &Commits) -> Commits {
        Commits {
            commits: self.commits - before.commits,
            requests: self.requests - before.requests,
            writes: self.writes - before.writes,
            seconds: self.seconds - before.seconds,
        }
    }
}

/// What the figures were measured on.
#[derive(Debug)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu: String,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let meminfo = read("/proc/meminfo");
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown CPU".to_owned());
        Machine {
            cores: crate::procs::cpus(),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            cpu,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        }
    }
}

fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

fn latencies(histogram: &Histogram<u64>) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} / {:.2}",
        ms(histogram, 0.5),
        ms(histogram, 0.9),
        ms(histogram, 0.99),
        histogram.max() as f64 / 1000.0
    )
}

/// `12345.6` → `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
}

/// A target's open-loop run: the rate asked for, and the run.
fn open(t: &Measured) -> Option<(f64, &Run)> {
    t.open.as_ref().map(|(rate, run)| (*rate, run))
}

/// Server CPU per check-in, µs, of `cores` over a run.
fn per_request(run: &Run, cores: f64) -> f64 {
    cores * 1e6 / run.phase.throughput()
}

/// The command line a run was started with (no password).
fn command(a: &RunArgs) -> String {
    let list = |items: Vec<String>| items.join(",");
    let mut command = format!(
        "bench/checkin.sh --hosts {} --duration {}s --warmup {}s --connections {} --open-connections {} --client-threads {}",
        a.hosts,
        a.duration.as_secs_f64(),
        a.warmup.as_secs_f64(),
        list(a.connections.iter().map(ToString::to_string).collect()),
        a.open_connections,
        a.client_threads
    );
    if a.targets.as_slice() != Kind::DEFAULT {
        let names = a.targets.iter().map(|k| k.arg().to_owned()).collect();
        let _ = write!(command, " --targets {}", list(names));
    }
    if a.targets.iter().any(|k| k.is_cluster()) && a.postgres != crate::pg::DEFAULT_ADMIN_URL {
        let shown = match url::Url::parse(&a.postgres) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("…"));
                url.to_string()
            }
            _ => a.postgres.clone(),
        };
        let _ = write!(command, " --postgres {shown}");
    }
    if a.no_rollout {
        command.push_str(" --no-rollout");
    }
    if a.pin {
        command.push_str(" --pin");
    }
    command
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        self.header(&mut out);
        if self.targets.iter().any(|t| t.closed.is_empty()) || self.targets.is_empty() {
            return out;
        }
        self.closed_table(&mut out);
        self.summary_table(&mut out);
        self.ratio_table(&mut out);
        self.notes(&mut out);
        self.verdicts(&mut out);
        out
    }

    fn header(&self, out: &mut String) {
        let a = &self.args;
        let m = &self.machine;
        let date = self.started.strftime("%Y-%m-%d %H:%M UTC");
        let _ = writeln!(out, "### Check-in benchmark, {date}\n");
        let _ = writeln!(
            out,
            "- Machine: {} cores ({}), {:.1} GiB memory, Linux {}.",
            m.cores, m.cpu, m.memory_gib, m.kernel
        );
        let _ = writeln!(out, "- Command: `{}`", command(a));
        let _ = writeln!(
            out,
            "- Load: {} distinct hosts, each request the next host in turn; the load generator runs on the same machine ({} runtime thread{}, {}), so it competes with the server for CPU (see the CPU rows).",
            thousands(a.hosts as f64),
            a.client_threads,
            if a.client_threads == 1 { "" } else { "s" },
            match (a.pin, a.targets.iter().any(|k| k.is_cluster())) {
                (true, false) => "pinned to CPU 1, every server to CPU 0",
                (true, true) => "pinned to CPU 1, every server to CPU 0, PostgreSQL not pinned",
                (false, _) => "nothing pinned",
            }
        );
        for system in &self.systems {
            match &system.rollout {
                Some(rollout) => {
                    let _ = writeln!(
                        out,
                        "- {}: admin token, {}; a rollout running during every {} phase, so each check-in feeds the engine; simulated agents apply what they are told at once ({} hosts took the target version). At the end: {rollout}.",
                        system.name,
                        system.store,
                        system.name,
                        thousands(system.upgraded as f64)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "- {}: admin token, {}; no rollout (`--no-rollout`).",
                        system.name, system.store
                    );
                }
            }
        }
        let busiest = self
            .targets
            .iter()
            .flat_map(|m| m.closed.iter().chain(m.open.iter().map(|(_, run)| run)))
            .map(|run| run.cpu.other())
            .fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "- Quiet machine? {:.2} cores busy before the servers started; other processes took up to {busiest:.2} cores during a phase.{}",
            self.quiet,
            if busiest > 0.15 || self.quiet > 0.15 {
                " **Not quiet: something else ran; these figures understate every server.**"
            } else {
                ""
            }
        );
        let _ = writeln!(out);
    }

    /// `| name | name | … |` and its alignment row (numbers to the right),
    /// after a first column.
    fn columns(&self, first: &str, out: &mut String) {
        let names: Vec<&str> = self.targets.iter().map(|t| t.kind.name()).collect();
        let (head, align) = if first.is_empty() {
            ("| |".to_owned(), "---")
        } else {
            (format!("| {first} |"), "---:")
        };
        let _ = writeln!(out, "{head} {} |", names.join(" | "));
        let _ = writeln!(out, "| {align}{} |", " | ---:".repeat(names.len()));
    }

    /// A row of the summary table: a label, then a cell per target.
    fn row(&self, label: &str, cell: impl Fn(&Measured) -> String, out: &mut String) {
        let cells: Vec<String> = self.targets.iter().map(cell).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }

    fn has_database(&self) -> bool {
        self.targets.iter().any(|t| t.kind.is_cluster())
    }

    fn closed_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "Closed loop by connections: check-ins/s, latency p50 / p99 ms, server + generator cores{}:\n",
            if self.has_database() {
                " (on PostgreSQL: replicas + database + generator)"
            } else {
                ""
            }
        );
        self.columns("connections", out);
        let cell = |run: &Run| {
            let database = if run.cpu.database > 0.0 {
                format!(" + {:.2}", run.cpu.database)
            } else {
                String::new()
            };
            format!(
                "{}, {:.2} / {:.2} ms, {:.2}{database} + {:.2}",
                thousands(run.phase.throughput()),
                ms(&run.phase.service, 0.5),
                ms(&run.phase.service, 0.99),
                run.cpu.server,
                run.cpu.generator
            )
        };
        for (i, first) in self.targets[0].closed.iter().enumerate() {
            let cells: Vec<String> = self
                .targets
                .iter()
                .map(|t| t.closed.get(i).map_or_else(String::new, cell))
                .collect();
            let _ = writeln!(out, "| {} | {} |", first.connections, cells.join(" | "));
        }
        let _ = writeln!(out);
    }

    fn summary_table(&self, out: &mut String) {
        let database = self.has_database();
        self.columns("", out);
        self.row(
            "**max throughput**, closed loop, check-ins/s",
            |t| {
                let best = t.best();
                format!(
                    "{} ({} conns)",
                    thousands(best.phase.throughput()),
                    best.connections
                )
            },
            out,
        );
        let at_max = |label: &str, value: fn(&CpuUse) -> f64, out: &mut String| {
            self.row(label, |t| format!("{:.2}", value(&t.best().cpu)), out);
        };
        at_max(
            "at max: server CPU (every replica), cores",
            |c| c.server,
            out,
        );
        if database {
            at_max("at max: PostgreSQL CPU, cores", |c| c.database, out);
        }
        at_max("at max: load generator CPU, cores", |c| c.generator, out);
        let cores = self.targets[0].best().cpu.cores;
        at_max(
            &format!("at max: whole machine busy, cores of {cores:.0}"),
            |c| c.machine,
            out,
        );
        at_max(
            "at max: other processes (the idle peers, the OS, anyone else), cores",
            CpuUse::other,
            out,
        );
        let per_check_in = |label: &str, value: fn(&CpuUse) -> f64, out: &mut String| {
            self.row(
                label,
                |t| format!("{:.1}", per_request(t.best(), value(&t.best().cpu))),
                out,
            );
        };
        per_check_in("server CPU per check-in, µs", |c| c.server, out);
        if database {
            per_check_in("PostgreSQL CPU per check-in, µs", |c| c.database, out);
        }
        per_check_in("generator CPU per check-in, µs", |c| c.generator, out);
        if self.targets.iter().all(|t| t.open.is_some()) {
            self.row(
                "**open loop at half max**, check-ins/s asked / done",
                |t| match open(t) {
                    Some((rate, run)) => format!(
                        "{} / {}",
                        thousands(rate),
                        thousands(run.phase.throughput())
                    ),
                    None => String::new(),
                },
                out,
            );
            self.row(
                "latency from due time, ms p50 / p90 / **p99** / max",
                |t| open(t).map_or_else(String::new, |(_, run)| latencies(&run.phase.intended)),
                out,
            );
            self.row(
                "latency from send, ms p50 / p90 / p99 / max",
                |t| open(t).map_or_else(String::new, |(_, run)| latencies(&run.phase.service)),
                out,
            );
            self.row(
                &format!(
                    "at half max: server{} / generator CPU, cores",
                    if database { " / PostgreSQL" } else { "" }
                ),
                |t| match open(t) {
                    Some((_, run)) if database => format!(
                        "{:.2} / {:.2} / {:.2}",
                        run.cpu.server, run.cpu.database, run.cpu.generator
                    ),
                    Some((_, run)) => format!("{:.2} / {:.2}", run.cpu.server, run.cpu.generator),
                    None => String::new(),
                },
                out,
            );
        }
        let _ = writeln!(out);
    }

    /// Each sluice target against each reference of the same run.
    fn ratio_table(&self, out: &mut String) {
        let references: Vec<&Measured> = self
            .targets
            .iter()
            .filter(|t| t.kind.is_reference())
            .collect();
        let sluices = self.targets.iter().filter(|t| !t.kind.is_reference());
        if references.is_empty() || sluices.clone().next().is_none() {
            return;
        }
        let names: Vec<&str> = references.iter().map(|r| r.kind.name()).collect();
        let _ = writeln!(out, "Each sluice target against each reference:\n");
        let _ = writeln!(out, "| | {} |", names.join(" | "));
        let _ = writeln!(out, "| ---{} |", " | ---:".repeat(names.len()));
        for sluice in sluices {
            let best = sluice.best();
            let cells: Vec<String> = references
                .iter()
                .map(|r| format!("**{:.2}**", best.phase.throughput() / r.max()))
                .collect();
            let _ = writeln!(
                out,
                "| {}: max throughput / the reference's | {} |",
                sluice.kind.name(),
                cells.join(" | ")
            );
            let cells: Vec<String> = references
                .iter()
                .map(|r| {
                    let reference = per_request(r.best(), r.best().cpu.server);
                    format!("{:.2}", reference / per_request(best, best.cpu.server))
                })
                .collect();
            let _ = writeln!(
                out,
                "| {}: the reference's server CPU per check-in / its | {} |",
                sluice.kind.name(),
                cells.join(" | ")
            );
        }
        let _ = writeln!(out);
    }

    fn notes(&self, out: &mut String) {
        let commit_line = |label: &str, name: &str, run: &Run, out: &mut String| {
            if let Some(c) = run.commits.filter(|c| c.commits > 0.0) {
                let seconds = run.phase.elapsed.as_secs_f64();
                let _ = writeln!(
                    out,
                    "- {name} group commit {label}: {:.0} commits/s, {:.1} check-ins and {:.1} writes per commit, {:.2} ms per commit on average ({:.0} % of the time committing).",
                    c.commits / seconds,
                    c.requests / c.commits,
                    c.writes / c.commits,
                    c.seconds / c.commits * 1e3,
                    c.seconds / seconds * 100.0
                );
            }
        };
        for t in &self.targets {
            commit_line("at max", t.kind.name(), t.best(), out);
            if let Some((_, run)) = &t.open {
                commit_line("at half max", t.kind.name(), run, out);
            }
        }
        for t in &self.targets {
            let Some((_, run)) = &t.open else {
                continue;
            };
            let stalls = stalls(&run.phase.slow);
            if stalls.is_empty() {
                continue;
            }
            let listed: Vec<String> = stalls
                .iter()
                .take(12)
                .map(|s| format!("{:.2} s ({} req, max {:.0} ms)", s.0, s.1, s.2 as f64 / 1e3))
                .collect();
            let _ = writeln!(
                out,
                "- {} at half max: requests ≥ {} ms came in {} burst{}, due at {}{}.",
                t.kind.name(),
                crate::load::SLOW.as_millis(),
                stalls.len(),
                if stalls.len() == 1 { "" } else { "s" },
                listed.join(", "),
                if stalls.len() > listed.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            out,
            "- Latency \"from due time\" counts from when the open loop's schedule said to send (no coordinated omission; it includes the pacer's own delay, ~0.1 ms); \"from send\" from the actual write."
        );
    }

    fn verdicts(&self, out: &mut String) {
        let find = |kind: Kind| self.targets.iter().find(|t| t.kind == kind);
        let p99 = |t: &Measured| {
            t.open
                .as_ref()
                .map(|(_, run)| ms(&run.phase.intended, 0.99))
        };
        let mut verdicts = Vec::new();
        if let Some(sluice) = find(Kind::Sluice) {
            for reference in [Kind::Raw, Kind::Bare].into_iter().filter_map(find) {
                let ratio = sluice.max() / reference.max();
                verdicts.push(format!(
                    "sluice / {} {ratio:.2} ≥ {MIN_RATIO}: {}",
                    reference.kind.name(),
                    met(ratio >= MIN_RATIO)
                ));
            }
            if let Some(p99) = p99(sluice) {
                verdicts.push(format!(
                    "sluice p99 at half max {p99:.2} ms < {MAX_P99_MS} ms: {}",
                    met(p99 < MAX_P99_MS)
                ));
            }
        }
        if !verdicts.is_empty() {
            let _ = writeln!(out, "- Targets: {}.", verdicts.join("; "));
        }
        let mut verdicts = Vec::new();
        for cluster in [Kind::PgOne, Kind::PgThree].into_iter().filter_map(find) {
            if let Some(bare) = find(Kind::Bare) {
                let ratio = cluster.max() / bare.max();
                verdicts.push(format!(
                    "{} / {} {ratio:.2} ≥ {MIN_RATIO_CLUSTER}: {}",
                    cluster.kind.name(),
                    bare.kind.name(),
                    met(ratio >= MIN_RATIO_CLUSTER)
                ));
            }
            if let Some(p99) = p99(cluster) {
                verdicts.push(format!(
                    "{} p99 at half max {p99:.2} ms (< {MAX_P99_MS} ms: {})",
                    cluster.kind.name(),
                    met(p99 < MAX_P99_MS)
                ));
            }
        }
        if !verdicts.is_empty() {
            let _ = writeln!(out, "- High availability targets: {}.", verdicts.join("; "));
        }
    }
}

/// Slow requests (due second, µs) grouped into bursts: requests due
/// within 100 ms of the previous one belong to the same burst. Each burst:
/// (due second of its first request, requests, worst latency µs).
fn stalls(slow: &[(f64, u64)]) -> Vec<(f64, usize, u64)> {
    let mut bursts: Vec<(f64, usize, u64)> = Vec::new();
    let mut last = f64::NEG_INFINITY;
    for &(at, micros) in slow {
        match bursts.last_mut() {
            Some(burst) if at - last <= 0.1 => {
                burst.1 += 1;
                burst.2 = burst.2.max(micros);
            }
            _ => bursts.push((at, 1, micros)),
        }
        last = at;
    }
    bursts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(12_345.6), "12,346");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn groups_slow_requests_into_bursts() {
        let slow = [(1.0, 30_000), (1.05, 50_000), (3.0, 25_000)];
        assert_eq!(stalls(&slow), vec![(1.0, 2, 50_000), (3.0, 1, 25_000)]);
    }

    #[test]
    fn reads_commit_metrics() {
        let text =
            "# HELP x\nsluice_commit_batch_writes_sum 30.0\nsluice_commit_batch_writes_count 3\n\
                    sluice_commit_batch_requests_sum 12.0\nsluice_commit_duration_seconds_sum 0.5\n\
                    sluice_commit_duration_seconds_count 3\n";
        let c = Commits::parse(text).expect("parsed");
        assert_eq!(
            (c.commits, c.requests, c.writes, c.seconds),
            (3.0, 12.0, 30.0, 0.5)
        );
    }
}
