#!/usr/bin/env bash
# Simulated safety: for each fault kind, the blast radius and the times to
# detect and to halt of the staged example plan (examples/plan-docker.yaml)
# the same with max_in_flight: 20 instead of 5 % (351 hosts), and the naive
# everything-at-once plan (examples/plan-all-at-once.yaml), on the 10k-host
# fixture fleet. Prints the Markdown table of
# bench/README.md ("Simulated safety"), also written to bench/out/safety.md.
#
# usage: bench/safety.sh [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-1}
cargo build --release --quiet -p sluice
mkdir -p bench/out
sed 's/^max_in_flight: 5%/max_in_flight: 20/' examples/plan-docker.yaml >bench/out/plan-docker-20-in-flight.yaml
python3 - "$seed" <<'PY' | tee bench/out/safety.md
import json, subprocess, sys

seed = sys.argv[1]
fleet = "examples/fleet-10k.json"
plans = [("staged", "examples/plan-docker.yaml"),
         ("staged, 20 in flight", "bench/out/plan-docker-20-in-flight.yaml"),
         ("all at once", "examples/plan-all-at-once.yaml")]
faults = ["", "all:fail", "role=edge:fail", "site=ash:fail:p=0.3", "all:fail-after=2h", "all:silent"]

def span(seconds):
    if seconds is None:
        return "—"
    total = round(seconds)
    d, h, m, s = total // 86400, total // 3600 % 24, total // 60 % 60, total % 60
    if d:
        return f"{d}d{h:02}h{m:02}m"
    if h:
        return f"{h}h{m:02}m{s:02}s"
    if m:
        return f"{m}m{s:02}s"
    return f"{s}s"

print(f"fleet {fleet}, seed {seed}, agents polling every 60s ±20 %")
print()
print("| fault | plan | final state | changed | failed (blast radius) | worst roles | detect | halt | duration |")
print("| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: |")
for fault in faults:
    for name, plan in plans:
        args = ["./target/release/sluice", "simulate", "--fleet", fleet, "--plan", plan,
                "--seed", seed, "--json"] + (["--fault", fault] if fault else [])
        r = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
        roles = sorted(r["failed_by_role"].items(), key=lambda kv: (-kv[1], kv[0]))
        worst = ", ".join(f"{role} {n}" for role, n in roles[:3]) or "—"
        if len(roles) > 3:
            worst += f" (+{len(roles) - 3} roles)"
        print(f"| {fault or 'none'} | {name} | {r['final_state']} | {r['hosts_changed']} of {r['hosts_selected']} "
              f"| {r['hosts_failed']} | {worst} | {span(r['time_to_detect_s'])} | {span(r['time_to_halt_s'])} "
              f"| {span(r['duration_s'])} |")
PY
