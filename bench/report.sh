#!/usr/bin/env bash
# Benchmark: the rollout retrospective of a 100,000-host rollout. A
# rehearsal of bench/plan-report.yaml over the generated fleet, with 5 % of
# the edge role failing (untimed), then the report built from its record
# (the all-at-once simulation included) and rendered as Markdown, HTML, JSON
# and SVG, each timed, best of RUNS (the target: under 1 s in all).
#
# usage: bench/report.sh [HOSTS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-100000}
runs=${2:-3}
cargo build --release --quiet -p sluice-sim --example retro_bench
echo "$(nproc) cores; $(date -u +%F); load $(cut -d' ' -f1-3 /proc/loadavg)"
fleet=bench/out/fleet-$hosts.json
[ -f "$fleet" ] || python3 bench/gen_fleet.py "$hosts" "$fleet"
./target/release/examples/retro_bench "$fleet" bench/plan-report.yaml "role=edge:fail:p=0.05" "$runs"
