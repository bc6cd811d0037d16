#!/usr/bin/env bash
# Benchmark: `sluice simulate` of the 5-stage benchmark plan over generated
# fleets (default 100,000 and 1,000,000 hosts): wall time and peak memory of
# the release binary, from reading the fleet file to the last byte of the
# report, best of 3 (1 for a million), plus what the simulation found (it
# must complete with every host changed).
#
# usage: bench/simulate.sh [N...]
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
cargo build --release --quiet -p sluice
echo "$(nproc) cores; $(date -u +%F); load $(cut -d' ' -f1-3 /proc/loadavg)"
for hosts in "${sizes[@]}"; do
  fleet=bench/out/fleet-$hosts.json
  [ -f "$fleet" ] || python3 bench/gen_fleet.py "$hosts" "$fleet"
  runs=3; [ "$hosts" -ge 1000000 ] && runs=1
  best=""
  for _ in $(seq "$runs"); do
    line=$(/usr/bin/time -f "%U %S %e %M" ./target/release/sluice simulate --fleet "$fleet" \
      --plan bench/plan-5-stages.yaml --seed 1 --json 2>&1 >bench/out/simulate-$hosts.json | tail -1)
    read -r user sys wall rss <<<"$line"
    if [ -z "$best" ] || awk -v a="$wall" -v b="${best%% *}" 'BEGIN{exit !(a<b)}'; then
      best="$wall $rss $(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')"
    fi
  done
  found=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print("%s, %d of %d hosts changed, %.0f min virtual" % (r["final_state"], r["hosts_changed"], r["hosts_selected"], r["duration_s"] / 60))' "bench/out/simulate-$hosts.json")
  read -r wall rss cpu <<<"$best"
  printf '%8d hosts  %6s s wall  %6s s CPU  %5d MB peak RSS  (%s)\n' "$hosts" "$wall" "$cpu" $(( rss / 1024 )) "$found"
done
