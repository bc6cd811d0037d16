#!/usr/bin/env bash
# Benchmark: the server with a million hosts, as a new user gets there —
# the fleet imported in chunks of 50,000 through `sluice hosts import`, a
# 3-stage rollout over it created and started — then restarted.
#
# Prints the server's resident memory (VmRSS) and its peak (VmHWM) after the
# import and after the rollout started, the time from the restart's exec to
# `/healthz` answering 200 (and to the rollout being served), and the memory
# after the restart.
#
# usage: bench/server-1m.sh [N] [CHUNK]
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-1000000}
chunk=${2:-50000}
fleet=bench/out/fleet-$hosts.json
[ -f "$fleet" ] || python3 bench/gen_fleet.py "$hosts" "$fleet"
cargo build --release --quiet -p sluice
sluice=./target/release/sluice
work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

python3 - "$fleet" "$chunk" "$work/chunks" <<'PY'
import json, pathlib, sys
fleet, size, out = json.load(open(sys.argv[1])), int(sys.argv[2]), pathlib.Path(sys.argv[3])
out.mkdir()
for start in range(0, len(fleet), size):
    (out / f"{start // size:04d}.json").write_text(json.dumps(fleet[start:start + size]))
PY

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export SLUICE_SERVER=http://127.0.0.1:$port
memory() {
    awk '/^VmRSS|^VmHWM/ { printf "%s %d MB  ", $1, $2 / 1024 }' "/proc/$server_pid/status"
    echo
}
start_server() {
    local started=$(date +%s.%N)
    "$sluice" server --listen "127.0.0.1:$port" --data-dir "$work/data" >>"$work/server.log" 2>&1 &
    server_pid=$!
    until curl -fsS "$SLUICE_SERVER/healthz" >/dev/null 2>&1; do
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
        sleep 0.05
    done
    echo "serving after $(echo "$(date +%s.%N) - $started" | bc) s"
}

echo "$hosts hosts in chunks of $chunk; $(nproc) cores; $(date -u +%FT%TZ)"
start_server
export SLUICE_TOKEN=$(cat "$work/data/admin.token")
started=$(date +%s)
for file in "$work"/chunks/*.json; do
    "$sluice" hosts import "$file" --reason benchmark >/dev/null
done
echo "imported in $(( $(date +%s) - started )) s"
printf 'after the import:        '; memory
id=$("$sluice" rollout create -f bench/plan-3-stages.yaml --start --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$sluice" rollout status "$id" --output json >/dev/null
printf 'rollout %s started:     ' "$id"; memory

kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=
printf 'restart: '
start_server
printf 'after the restart:       '; memory
"$sluice" rollout status "$id" --output json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("rollout", d["id"], d["state"], "admitted", d["admitted"], "of", d["selected"])'
grep 'memory restored' "$work/server.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g'
