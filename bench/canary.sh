#!/usr/bin/env bash
# Canary analysis in the simulator: when does the spec's fleet-wide
# threshold gate (sum(rate(container_restarts_total[5m])) > 0.5) and when
# does a comparison gate (the same restarts per host, canary / baseline
# > 1.5) see a change that doubles restarts on every edge host that gets
# it (--fault role=edge:degrade=2.0)? On the 10k-host fixture, each host
# restarting --metric-base 0.000045 times a second (±20 %): the healthy
# fleet sums to about 0.45, 10 % under the threshold.
#
# Three runs: both gates report_only (bench/plan-canary-report-only.yaml:
# the rollout goes on, and each gate's first failure is reported side by
# side), then each gate acting alone (examples/plan-canary.yaml without
# the other), for the halt and the hosts that got the change. Virtual
# time: a debug build gives the same figures. Prints the Markdown of
# bench/README.md ("Canary analysis"), also written to bench/out/canary.md.
#
# usage: bench/canary.sh [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-1}
cargo build --quiet -p sluice
mkdir -p bench/out
# The example plan with one gate only: the other's list dropped.
python3 - <<'PY'
import re
plan = open("examples/plan-canary.yaml").read()
prometheus = re.search(r"  prometheus:\n(    .*\n)+", plan).group(0)
compare = re.search(r"  compare:\n(    .*\n)+", plan).group(0)
open("bench/out/plan-threshold-only.yaml", "w").write(plan.replace(compare, ""))
open("bench/out/plan-compare-only.yaml", "w").write(plan.replace(prometheus, ""))
PY
python3 - "$seed" <<'PY' | tee bench/out/canary.md
import json, subprocess, sys

seed = sys.argv[1]
fleet = "examples/fleet-10k.json"
fault = "role=edge:degrade=2.0"

def simulate(plan):
    args = ["./target/debug/sluice", "simulate", "--fleet", fleet, "--plan", plan, "--seed", seed,
            "--fault", fault, "--metric-base", "0.000045", "--json"]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)

def span(seconds):
    if seconds is None:
        return "never"
    total = round(seconds)
    d, h, m, s = total // 86400, total // 3600 % 24, total // 60 % 60, total % 60
    if d:
        return f"{d}d{h:02}h{m:02}m"
    if h:
        return f"{h}h{m:02}m{s:02}s"
    if m:
        return f"{m}m{s:02}s"
    return f"{s}s"

def stage(report, index):
    if index is None:
        return "—"
    s = report["stages"][index]
    return f"{index + 1} ({s['percent']:g} %)"

def edge(report):
    return next((r["changed"] for r in report["by_role"] if r["role"] == "edge"), 0)

print(f"fleet {fleet} (1,152 edge hosts), seed {seed}, --fault {fault}, --metric-base 0.000045")
print()
both = simulate("bench/plan-canary-report-only.yaml")
print("Both gates report_only (the rollout completes; when each would have failed):")
print()
print("| gate | kind | first failing evaluation | in stage | evaluations | failing |")
print("| --- | --- | ---: | --- | ---: | ---: |")
for gate in both["gates"]:
    print(f"| {gate['name']} | {gate['kind']} | {span(gate['first_failing_s'])} | "
          f"{stage(both, gate['first_failing_stage'])} | {gate['evaluations']} | {gate['failing']} |")
print()
print("Each gate acting alone (on_failure: rollback):")
print()
print("| plan | final state | halted in stage | time to detect | time to halt | edge hosts that got the change |")
print("| --- | --- | --- | ---: | ---: | ---: |")
for name, plan in [("threshold only", "bench/out/plan-threshold-only.yaml"),
                   ("comparison only", "bench/out/plan-compare-only.yaml")]:
    r = simulate(plan)
    print(f"| {name} | {r['final_state']} | {stage(r, r['halt_stage'])} | {span(r['time_to_detect_s'])} | "
          f"{span(r['time_to_halt_s'])} | {edge(r)} |")
PY
