#!/usr/bin/env bash
# Check-in throughput with wrk, as a second opinion on bench/checkin.sh:
# each server pinned to CPU 0 (taskset), `wrk -t1 -cC` pinned to CPU 1,
# every request the next host's check-in (bench/checkin.lua cycles over
# HOSTS distinct hosts). Targets, alternating, ROUNDS times: the raw axum
# handler (reads the body, does not parse it: the loopback HTTP limit),
# the parsing one, and sluice prepared as the main benchmark prepares it
# (`sluice-bench-checkin serve`: SQLite, HOSTS imported hosts, its rollout
# running, warmed up). Prints a Markdown table (also written to
# bench/out/checkin-wrk-results.md) and sluice's ratio to each reference.
#
# usage: bench/checkin-wrk.sh [--hosts 20000] [--duration 10s] [--warmup 3s]
#                             [--connections 64] [--rounds 3]
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=20000 duration=10s warmup=3s connections=64 rounds=3
usage() { sed -n '/^# usage:/,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
        --hosts) hosts=$2 ;;
        --duration) duration=$2 ;;
        --warmup) warmup=$2 ;;
        --connections) connections=$2 ;;
        --rounds) rounds=$2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
    shift 2
done
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "needs two CPUs: the servers on CPU 0, wrk on CPU 1" >&2; exit 1; }
cargo build --release --quiet -p sluice -p sluice-bench-checkin
bin=./target/release/sluice-bench-checkin
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits for `PREFIX VALUE` in FILE, written by process PID; prints VALUE.
wait_for() {
    local file=$1 prefix=$2 pid=$3
    until grep -q "^$prefix " "$file" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { echo "process $pid stopped:" >&2; cat "$work"/*.log >&2; exit 1; }
        sleep 0.2
    done
    sed -n "s/^$prefix //p" "$file" | head -1
}

echo "preparing sluice with $hosts hosts (import, rollout, warm-up) …" >&2
"$bin" serve --hosts "$hosts" --pin >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
bodies=$(wait_for "$work/serve.out" bodies "${pids[-1]}")
token=$(wait_for "$work/serve.out" token "${pids[-1]}")
url_sluice=$(wait_for "$work/serve.out" "listening on" "${pids[-1]}")
taskset -c 0 "$bin" bare --handler raw >"$work/raw.out" 2>"$work/raw.log" &
pids+=($!)
url_raw=$(wait_for "$work/raw.out" "listening on" "${pids[-1]}")
taskset -c 0 "$bin" bare --handler parse >"$work/bare.out" 2>"$work/bare.log" &
pids+=($!)
url_bare=$(wait_for "$work/bare.out" "listening on" "${pids[-1]}")

# run_wrk NAME SECONDS: one wrk run against target NAME; prints its RESULT fields.
run_wrk() {
    local url_var=url_$1 bearer=
    [ "$1" = sluice ] && bearer=$token
    CHECKIN_BODIES=$bodies CHECKIN_TOKEN=$bearer taskset -c 1 \
        wrk -t1 -c"$connections" -d"$2" --timeout 10s -s bench/checkin.lua "${!url_var}/v1/agent/checkin" \
        | sed -n 's/^RESULT //p'
}
# field NAME FIELDS: the value of NAME=… in FIELDS.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }
# 1234567 → 1,234,567
thousands() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; }
# µs → ms with two decimals
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1e3 }'; }

targets=(raw bare sluice)
declare -A best
for target in "${targets[@]}"; do
    echo "warming up $target …" >&2
    run_wrk "$target" "$warmup" >/dev/null
    best[$target]=0
done
rows=
for round in $(seq "$rounds"); do
    row="| $round |"
    for target in "${targets[@]}"; do
        result=$(run_wrk "$target" "$duration")
        rate=$(awk -v r="$(field requests "$result")" -v d="$(field duration_us "$result")" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
        errors=$(( $(field socket_errors "$result") + $(field status_errors "$result") ))
        cell="$(thousands "$rate"), $(ms "$(field p50_us "$result")") / $(ms "$(field p99_us "$result")") ms"
        [ "$errors" -eq 0 ] || cell+=", **$errors errors**"
        echo "round $round, $target: $cell" >&2
        row="$row $cell |"
        [ "$rate" -gt "${best[$target]}" ] && best[$target]=$rate
    done
    rows+="$row"$'\n'
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
report=$(cat <<MD
### Check-in benchmark with wrk, $(date -u '+%Y-%m-%d %H:%M UTC')

- Machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), Linux $(uname -r).
- Command: \`bench/checkin-wrk.sh --hosts $hosts --duration $duration --warmup $warmup --connections $connections --rounds $rounds\`
- Load: \`wrk -t1 -c$connections -d$duration\` pinned to CPU 1, every server pinned to CPU 0; each request the next of $hosts distinct hosts' check-ins (bench/checkin.lua); every target warmed up for $warmup first, then the targets alternate.
- sluice: \`sluice-bench-checkin serve\` (SQLite, admin token, the benchmark's rollout running, warmed up until every host checked in once); the check-ins report what each host's agent was told by the end of the warm-up.

Check-ins/s, latency p50 / p99 ms (wrk's, from send):

| round | raw axum | bare axum | sluice |
| ---: | ---: | ---: | ---: |
${rows%$'\n'}

- Best of $rounds: raw axum $(thousands "${best[raw]}")/s, bare axum $(thousands "${best[bare]}")/s, sluice $(thousands "${best[sluice]}")/s.
- sluice / raw axum: **$(ratio "${best[sluice]}" "${best[raw]}")** (target ≥ 0.5); sluice / bare axum: **$(ratio "${best[sluice]}" "${best[bare]}")** (target ≥ 0.5).
MD
)
echo "$report"
mkdir -p bench/out
echo "$report" >bench/out/checkin-wrk-results.md
echo "written to bench/out/checkin-wrk-results.md" >&2
