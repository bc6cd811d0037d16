#!/usr/bin/env bash
# Benchmark: the resident memory and CPU of one `sluice-agent` (release
# build) checking in with a real `sluice server`, read from /proc.
#
# The agent manages one component (version_cmd `cat`, so every check-in also
# runs a shell). After a warm-up, it samples VmRSS every second for the
# measurement window and reads utime+stime of the agent itself (and,
# separately, of the commands it ran) at both ends.
#
# usage: bench/agent.sh [SECONDS] [INTERVAL_S]     (default 120 s, check-in every 10 s)
set -euo pipefail
cd "$(dirname "$0")/.."
window=${1:-120}
interval=${2:-10}
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
SLUICE_SERVER=$url SLUICE_DATA_DIR=$work/data "$sluice" token create --role agent --host "$host" \
  2>/dev/null >"$work/agent.token"
echo "1.0" >"$work/version"
cat >"$work/agent.toml" <<TOML
server = "$url"
token_file = "$work/agent.token"
id = "$host"
interval = "${interval}s"
labels = { role = "bench", site = "local" }
state_file = "$work/state.json"

[[component]]
name = "app"
version_cmd = "cat $work/version"
apply_cmd = "echo \"\$SLUICE_VERSION\" > $work/version"
timeout = "1m"
TOML
RUST_LOG=warn "$agent" --config "$work/agent.toml" 2>"$work/agent.err" &
agent_pid=$!

ticks=$(getconf CLK_TCK)
# utime stime cutime cstime: fields 14-17 of /proc/PID/stat (after the comm).
cpu() { sed 's/^.*) //' "/proc/$agent_pid/stat" | awk '{print $12, $13, $14, $15}'; }
sleep 5   # warm-up: start, first check-in
read -r u0 s0 cu0 cs0 < <(cpu)
max_rss=0
sum_rss=0
for _ in $(seq 1 "$window"); do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$agent_pid/status")
  sum_rss=$((sum_rss + rss))
  [ "$rss" -gt "$max_rss" ] && max_rss=$rss
  sleep 1
done
read -r u1 s1 cu1 cs1 < <(cpu)
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$agent_pid/status")
threads=$(awk '/^Threads:/ {print $2}' "/proc/$agent_pid/status")
checkins=$(( window / interval ))
own=$(( (u1 - u0) + (s1 - s0) ))
children=$(( (cu1 - cu0) + (cs1 - cs0) ))
reported=$(curl -fsS -H "Authorization: Bearer $(cat "$work/data/admin.token")" "$url/v1/hosts/$host" 2>/dev/null || echo '?')
echo "sluice-agent $(date -u +%F), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo "window ${window}s, check-in every ${interval}s (~${checkins} check-ins), threads ${threads}"
printf 'VmRSS  mean %.1f MB, max %.1f MB; VmHWM (peak) %.1f MB\n' \
  "$(echo "$sum_rss / $window / 1024" | bc -l)" "$(echo "$max_rss / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)"
printf 'CPU    agent %.2f s over %d s (%.3f %%), %.1f ms per check-in; commands it ran %.2f s\n' \
  "$(echo "$own / $ticks" | bc -l)" "$window" "$(echo "100 * $own / $ticks / $window" | bc -l)" \
  "$(echo "1000 * $own / $ticks / $checkins" | bc -l)" "$(echo "$children / $ticks" | bc -l)"
echo "server's view of the host: $reported"
