//! The results as Markdown: the machine, the command, the closed-loop runs,
//! the maximum throughputs and their ratio, the latencies at half of each
//! maximum, the CPU each process used, sluice's group commits, and whether
//! the targets are met.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::load::Phase;
use crate::procs::CpuUse;
use crate::RunArgs;

/// SPEC.md's targets.
const MIN_RATIO: f64 = 0.5;
const MAX_P99_MS: f64 = 10.0;

#[derive(Debug)]
pub struct Report {
    pub started: jiff::Timestamp,
    /// Cores busy on the machine in the second before the servers started.
    pub quiet: f64,
    pub args: RunArgs,
    pub machine: Machine,
    /// The rollout at the end, if one ran.
    pub rollout: Option<String>,
    /// Simulated agents told the target version, by the end.
    pub upgraded: usize,
    /// Bare axum first, then sluice.
    pub targets: Vec<Measured>,
}

/// One target's runs.
#[derive(Debug)]
pub struct Measured {
    pub name: &'static str,
    pub closed: Vec<Run>,
    /// The rate asked for and the run.
    pub open: Option<(f64, Run)>,
}

impl Measured {
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
            cores: std::thread::available_parallelism().map_or(0, usize::from),
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

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let a = &self.args;
        let m = &self.machine;
        let date = self.started.strftime("%Y-%m-%d %H:%M UTC");
        let _ = writeln!(out, "### Check-in benchmark, {date}\n");
        let _ = writeln!(
            out,
            "- Machine: {} cores ({}), {:.1} GiB memory, Linux {}.",
            m.cores, m.cpu, m.memory_gib, m.kernel
        );
        let mut command = format!(
            "bench/checkin.sh --hosts {} --duration {}s --warmup {}s --connections {} --open-connections {} --client-threads {}",
            a.hosts,
            a.duration.as_secs_f64(),
            a.warmup.as_secs_f64(),
            a.connections
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            a.open_connections,
            a.client_threads
        );
        if a.no_rollout {
            command.push_str(" --no-rollout");
        }
        if a.pin {
            command.push_str(" --pin");
        }
        let _ = writeln!(out, "- Command: `{command}`");
        let _ = writeln!(
            out,
            "- Load: {} distinct hosts, each request the next host in turn; the load generator runs on the same machine ({} runtime thread{}, {}), so it competes with the server for CPU (see the CPU rows).",
            thousands(a.hosts as f64),
            a.client_threads,
            if a.client_threads == 1 { "" } else { "s" },
            if a.pin {
                "pinned to CPU 1, both servers to CPU 0"
            } else {
                "nothing pinned"
            }
        );
        match &self.rollout {
            Some(rollout) => {
                let _ = writeln!(
                    out,
                    "- sluice: admin token, SQLite in a temp dir; a rollout running during every sluice phase, so each check-in feeds the engine; simulated agents apply what they are told at once ({} hosts took the target version). At the end: {rollout}.",
                    thousands(self.upgraded as f64)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "- sluice: admin token, SQLite in a temp dir; no rollout (`--no-rollout`)."
                );
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
                " **Not quiet: something else ran; these figures understate both servers.**"
            } else {
                ""
            }
        );
        let _ = writeln!(out);

        let [bare, sluice] = &self.targets[..] else {
            return out;
        };
        let _ = writeln!(
            out,
            "Closed loop by connections: check-ins/s, latency p50 / p99 ms, server + generator cores:\n"
        );
        let _ = writeln!(out, "| connections | {} | {} |", bare.name, sluice.name);
        let _ = writeln!(out, "| ---: | ---: | ---: |");
        let cell = |run: &Run| {
            format!(
                "{}, {:.2} / {:.2} ms, {:.2} + {:.2}",
                thousands(run.phase.throughput()),
                ms(&run.phase.service, 0.5),
                ms(&run.phase.service, 0.99),
                run.cpu.server,
                run.cpu.generator
            )
        };
        for (b, s) in bare.closed.iter().zip(&sluice.closed) {
            let _ = writeln!(out, "| {} | {} | {} |", b.connections, cell(b), cell(s));
        }
        let _ = writeln!(out);
        let (bb, sb) = (bare.best(), sluice.best());
        let ratio = sb.phase.throughput() / bb.phase.throughput();
        let per_request = |run: &Run, cores: f64| cores * 1e6 / run.phase.throughput();
        let cpu_ratio = per_request(bb, bb.cpu.server) / per_request(sb, sb.cpu.server);
        let _ = writeln!(out, "| | {} | {} | sluice / bare |", bare.name, sluice.name);
        let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
        let _ = writeln!(
            out,
            "| **max throughput**, closed loop, check-ins/s | {} ({} conns) | {} ({} conns) | **{ratio:.2}** |",
            thousands(bb.phase.throughput()),
            bb.connections,
            thousands(sb.phase.throughput()),
            sb.connections
        );
        let _ = writeln!(
            out,
            "| at max: server CPU, cores | {:.2} | {:.2} | |",
            bb.cpu.server, sb.cpu.server
        );
        let _ = writeln!(
            out,
            "| at max: load generator CPU, cores | {:.2} | {:.2} | |",
            bb.cpu.generator, sb.cpu.generator
        );
        let _ = writeln!(
            out,
            "| at max: whole machine busy, cores of {:.0} | {:.2} | {:.2} | |",
            bb.cpu.cores, bb.cpu.machine, sb.cpu.machine
        );
        let _ = writeln!(
            out,
            "| at max: other processes (the idle peer, the OS, anyone else), cores | {:.2} | {:.2} | |",
            bb.cpu.other(),
            sb.cpu.other()
        );
        let _ = writeln!(
            out,
            "| server CPU per check-in, µs | {:.1} | {:.1} | {cpu_ratio:.2} (bare / sluice) |",
            per_request(bb, bb.cpu.server),
            per_request(sb, sb.cpu.server)
        );
        let _ = writeln!(
            out,
            "| generator CPU per check-in, µs | {:.1} | {:.1} | |",
            per_request(bb, bb.cpu.generator),
            per_request(sb, sb.cpu.generator)
        );
        let mut p99s = Vec::new();
        if let (Some((br, bo)), Some((sr, so))) = (&bare.open, &sluice.open) {
            let _ = writeln!(
                out,
                "| **open loop at half max**, check-ins/s asked / done | {} / {} | {} / {} | |",
                thousands(*br),
                thousands(bo.phase.throughput()),
                thousands(*sr),
                thousands(so.phase.throughput())
            );
            let _ = writeln!(
                out,
                "| latency from due time, ms p50 / p90 / **p99** / max | {} | {} | |",
                latencies(&bo.phase.intended),
                latencies(&so.phase.intended)
            );
            let _ = writeln!(
                out,
                "| latency from send, ms p50 / p90 / p99 / max | {} | {} | |",
                latencies(&bo.phase.service),
                latencies(&so.phase.service)
            );
            let _ = writeln!(
                out,
                "| at half max: server / generator CPU, cores | {:.2} / {:.2} | {:.2} / {:.2} | |",
                bo.cpu.server, bo.cpu.generator, so.cpu.server, so.cpu.generator
            );
            p99s.push(ms(&so.phase.intended, 0.99));
        }
        let _ = writeln!(out);
        let commit_line = |label: &str, run: &Run, out: &mut String| {
            if let Some(c) = run.commits.filter(|c| c.commits > 0.0) {
                let seconds = run.phase.elapsed.as_secs_f64();
                let _ = writeln!(
                    out,
                    "- sluice group commit {label}: {:.0} commits/s, {:.1} check-ins and {:.1} writes per commit, {:.2} ms per commit on average ({:.0} % of the time committing).",
                    c.commits / seconds,
                    c.requests / c.commits,
                    c.writes / c.commits,
                    c.seconds / c.commits * 1e3,
                    c.seconds / seconds * 100.0
                );
            }
        };
        commit_line("at max", sb, &mut out);
        if let Some((_, so)) = &sluice.open {
            commit_line("at half max", so, &mut out);
        }
        for m in [bare, sluice] {
            if let Some((_, run)) = &m.open {
                let stalls = stalls(&run.phase.slow);
                if !stalls.is_empty() {
                    let listed: Vec<String> = stalls
                        .iter()
                        .take(12)
                        .map(|s| {
                            format!("{:.2} s ({} req, max {:.0} ms)", s.0, s.1, s.2 as f64 / 1e3)
                        })
                        .collect();
                    let _ = writeln!(
                        out,
                        "- {} at half max: requests ≥ {} ms came in {} burst{}, due at {}{}.",
                        m.name,
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
            }
        }
        let _ = writeln!(
            out,
            "- Latency \"from due time\" counts from when the open loop's schedule said to send (no coordinated omission; it includes the pacer's own delay, ~0.1 ms); \"from send\" from the actual write."
        );
        let p99 = p99s.first().copied().unwrap_or(f64::INFINITY);
        let _ = writeln!(
            out,
            "- Targets: throughput ratio {ratio:.2} ≥ {MIN_RATIO}: {}; sluice p99 at half max {p99:.2} ms < {MAX_P99_MS} ms: {}.",
            met(ratio >= MIN_RATIO),
            met(p99 < MAX_P99_MS)
        );
        out
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
