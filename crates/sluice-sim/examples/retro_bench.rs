//! The retrospective's benchmark (`bench/report.sh`): a rehearsal of PLAN
//! over FLEET with a fault (untimed), then, RUNS times, the report built
//! from its record (`retro::build`, the all-at-once simulation included)
//! and rendered as Markdown, HTML, JSON and the SVG chart, each timed.
//!
//! usage: retro_bench FLEET.json PLAN.yaml FAULT [RUNS]

use std::time::Instant;

use sluice_core::fleet::parse_fleet;
use sluice_core::plan::parse_plan;
use sluice_sim::retro::{self, render};
use sluice_sim::{rehearse, Config, Fault};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [fleet, plan, fault, rest @ ..] = args.as_slice() else {
        return Err("usage: retro_bench FLEET.json PLAN.yaml FAULT [RUNS]".to_owned());
    };
    let runs: usize = match rest.first() {
        Some(runs) => runs.parse().map_err(|e| format!("RUNS {runs:?}: {e}"))?,
        None => 3,
    };
    let fleet = std::fs::read(fleet).map_err(|e| format!("reading {fleet}: {e}"))?;
    let hosts = parse_fleet(&fleet).map_err(|e| e.to_string())?;
    let plan = std::fs::read_to_string(plan).map_err(|e| format!("reading {plan}: {e}"))?;
    let plan = parse_plan(&plan).map_err(|e| e.to_string())?;
    let config = Config {
        seed: 1,
        faults: vec![Fault::parse(fault).map_err(|e| e.to_string())?],
        ..Config::default()
    };
    let started = Instant::now();
    let rehearsal = rehearse(&plan, &hosts, &config);
    println!(
        "rehearsal: {} hosts, {} admitted, {} events, {} samples, {} ({:.2} s, untimed below)",
        hosts.len(),
        rehearsal.rollout.admitted(),
        rehearsal.events.len(),
        rehearsal.samples.len(),
        rehearsal.report.final_state,
        started.elapsed().as_secs_f64()
    );
    println!("| run | build | md | html | json | svg | total |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for run in 1..=runs {
        let t0 = Instant::now();
        let report = retro::of_rehearsal(&plan, &hosts, &config, &rehearsal);
        let t1 = Instant::now();
        let md = render::markdown(&report, "chart.svg");
        let t2 = Instant::now();
        let html = render::html(&report);
        let t3 = Instant::now();
        let json = render::json(&report);
        let t4 = Instant::now();
        let svg = render::chart(&report);
        let t5 = Instant::now();
        let ms = |a: Instant, b: Instant| format!("{:.0} ms", (b - a).as_secs_f64() * 1e3);
        println!(
            "| {run} | {} | {} | {} | {} | {} | {} |",
            ms(t0, t1),
            ms(t1, t2),
            ms(t2, t3),
            ms(t3, t4),
            ms(t4, t5),
            ms(t0, t5)
        );
        if run == runs {
            println!(
                "sizes: md {} KB, html {} KB, json {} KB, svg {} KB; {} failed hosts, all at once {}",
                md.len() / 1024,
                html.len() / 1024,
                json.len() / 1024,
                svg.len() / 1024,
                report.blast_radius.hosts_failed,
                report.blast_radius.all_at_once.hosts_failed
            );
        }
    }
    Ok(())
}
