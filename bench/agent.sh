#!/usr/bin/env bash
# Benchmark: the resident memory and CPU of one `sluice-agent` (release
# build) checking in with a real `sluice server`, read from /proc.
#
# The agent manages one component (version_cmd `cat`, so every check-in also
# runs a shell). After a warm-up, it samples VmRSS every second for the
# measurement window and reads utime+stime of the agent itself (and,
# separately, of the commands it ran) at both ends.
#
# HEALTH: `none` (default) gives the component no health_cmd; `every` gives
# it one (a shell appending a line to a file, which counts the checks),
# run before every check-in; a number N also sets health_interval = "Ns"
# (each such check reads version_cmd first, so it runs two shells). With a
# long INTERVAL_S and a short N, the window measures health checks alone.
#
# usage: bench/agent.sh [SECONDS] [INTERVAL_S] [HEALTH]     (default 120 s, check-in every 10 s, none)
set -euo pipefail
cd "$(dirname "$0")/.."
window=${1:-120}
interval=${2:-10}
health=${3:-none}
case "$health" in
  none | every) ;;
  *[!0-9]* | '' | 0) echo "HEALTH must be none, every or a number of seconds, not $health" >&2; exit 2 ;;
esac
cargo build --release --quiet -p sluice -p sluice-agent
sluice=target/release/sluice
agent=target/release/sluice-agent
work=$(mktemp -d)
server_pid=""
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$sluice" server --listen 127.0.0.1:0 --data-dir "$work/data" --checkin-interval "$interval" \
  >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q 'listening on http://' "$work/server.out" 2>/dev/null && break
  sleep 0.1
done
url=$(sed -n 's/.*listening on \(http:\/\/[^ ]*\).*/\1/p' "$work/server.out" | head -1)
[ -n "$url" ] || { echo "the server did not start:" >&2; cat "$work/server.err" >&2; exit 1; }

host=bench-agent.example.net
SLUICE_SERVER=$url SLUICE_DATA_DIR=$work/data "$sluice" token create --role agent --host "$host" --reason benchmark \
  2>/dev/null >"$work/agent.token"
echo "1.0" >"$work/version"
: >"$work/health-runs"
# The agent's own interval only times its first check-in (within a fifth of
# it); the server's answer sets the rest.
cat >"$work/agent.toml" <<TOML
server = "$url"
token_file = "$work/agent.token"
id = "$host"
interval = "1s"
labels = { role = "bench", site = "local" }
state_file = "$work/state.json"

[[component]]
name = "app"
version_cmd = "cat $work/version"
apply_cmd = "echo \"\$SLUICE_VERSION\" > $work/version"
timeout = "1m"
TOML
if [ "$health" != none ]; then
  echo "health_cmd = \"echo >> $work/health-runs\"" >>"$work/agent.toml"
fi
if [ "$health" != none ] && [ "$health" != every ]; then
  echo "health_interval = \"${health}s\"" >>"$work/agent.toml"
fi
RUST_LOG=warn "$agent" --config "$work/agent.toml" 2>"$work/agent.err" &
agent_pid=$!

ticks=$(getconf CLK_TCK)
# utime stime cutime cstime: fields 14-17 of /proc/PID/stat (after the comm).
cpu() { sed 's/^.*) //' "/proc/$agent_pid/stat" | awk '{print $12, $13, $14, $15}'; }
sleep 5   # warm-up: start, first check-in
read -r u0 s0 cu0 cs0 < <(cpu)
checks0=$(wc -l <"$work/health-runs")
max_rss=0
sum_rss=0
for _ in $(seq 1 "$window"); do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$agent_pid/status")
  sum_rss=$((sum_rss + rss))
  [ "$rss" -gt "$max_rss" ] && max_rss=$rss
  sleep 1
done
read -r u1 s1 cu1 cs1 < <(cpu)
checks=$(( $(wc -l <"$work/health-runs") - checks0 ))
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$agent_pid/status")
threads=$(awk '/^Threads:/ {print $2}' "/proc/$agent_pid/status")
checkins=$(( window / interval ))
own=$(( (u1 - u0) + (s1 - s0) ))
children=$(( (cu1 - cu0) + (cs1 - cs0) ))
reported=$(curl -fsS -H "Authorization: Bearer $(cat "$work/data/admin.token")" "$url/v1/hosts/$host" 2>/dev/null || echo '?')
echo "sluice-agent $(date -u +%F), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo "window ${window}s, check-in every ${interval}s (~${checkins} check-ins), health ${health} (${checks} health checks), threads ${threads}"
printf 'VmRSS  mean %.1f MB, max %.1f MB; VmHWM (peak) %.1f MB\n' \
  "$(echo "$sum_rss / $window / 1024" | bc -l)" "$(echo "$max_rss / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)"
per_checkin="n/a"
if [ "$checkins" -gt 0 ]; then
  per_checkin=$(printf '%.1f ms' "$(echo "1000 * $own / $ticks / $checkins" | bc -l)")
fi
printf 'CPU    agent %.2f s over %d s (%.3f %%), %s per check-in; commands it ran %.2f s\n' \
  "$(echo "$own / $ticks" | bc -l)" "$window" "$(echo "100 * $own / $ticks / $window" | bc -l)" \
  "$per_checkin" "$(echo "$children / $ticks" | bc -l)"
if [ "$checks" -gt 0 ]; then
  printf 'per health check: agent %.2f ms, commands %.2f ms (all of the window'"'"'s CPU, check-ins included, over its health checks)\n' \
    "$(echo "1000 * $own / $ticks / $checks" | bc -l)" "$(echo "1000 * $children / $ticks / $checks" | bc -l)"
fi
echo "server's view of the host: $reported"
