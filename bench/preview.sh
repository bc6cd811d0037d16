#!/usr/bin/env bash
# Benchmark: `sluice plan preview` of the 4-stage example plan and of a
# 5-stage plan over a generated fleet of N hosts (default 1,000,000), text
# and --json, wall time and peak memory, best of 3.
#
# usage: bench/preview.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-1000000}
fleet=bench/out/fleet-$hosts.json
[ -f "$fleet" ] || python3 bench/gen_fleet.py "$hosts" "$fleet"
cargo build --release --quiet -p sluice
echo "fleet: $hosts hosts, $(du -m "$fleet" | cut -f1) MB; $(nproc) cores; $(date -u +%F)"
for plan in examples/plan-docker.yaml bench/plan-5-stages.yaml; do
  for mode in text json; do
    flag=(); [ "$mode" = json ] && flag=(--json)
    best=""
    for _ in 1 2 3; do
      line=$(/usr/bin/time -f "%e %M" ./target/release/sluice plan preview -f "$plan" --fleet "$fleet" "${flag[@]}" 2>&1 >/dev/null | tail -1)
      if [ -z "$best" ] || awk -v a="${line% *}" -v b="${best% *}" 'BEGIN{exit !(a<b)}'; then best=$line; fi
    done
    printf '%-28s %-5s %6s s wall  %5d MB peak RSS\n' "$plan" "$mode" "${best% *}" $(( ${best#* } / 1024 ))
  done
done
