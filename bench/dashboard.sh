#!/usr/bin/env bash
# Benchmark: how long the dashboard takes to answer its pages on the 10k
# fixture with a running rollout over 403 strata. Starts `sluice server` on
# a temp data dir, imports examples/fleet-10k.json, creates and starts
# bench/plan-dashboard.yaml (its canary admits 457 hosts over 403 strata),
# lets those hosts report as agents would (every 51st a failure, which
# pauses the rollout; the rest healthy at the target), signs in with an
# operator token, then times each page with curl (time to the last byte,
# localhost): best and median of N.
#
# usage: bench/dashboard.sh [N]     (PROFILE=dev for a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
profile=${PROFILE:-release}
cargo build --quiet --profile "$profile" -p sluice
bin=$PWD/target/$([ "$profile" = dev ] && echo debug || echo "$profile")/sluice
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" server --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"' EXIT
export SLUICE_SERVER=http://127.0.0.1:$port SLUICE_DATA_DIR=$work/data
for _ in $(seq 100); do curl -sf "$SLUICE_SERVER/healthz" >/dev/null && break; sleep 0.1; done
"$bin" hosts import examples/fleet-10k.json --reason benchmark >/dev/null
"$bin" rollout create -f bench/plan-dashboard.yaml --start >/dev/null 2>&1
admin=$(cat "$work/data/admin.token")
# Hosts told the target report it (healthy) or a failure, as agents would.
python3 - "$SLUICE_SERVER" "$admin" <<'PY'
import json, sys, urllib.request
server, token = sys.argv[1], sys.argv[2]
def call(method, path, body=None):
    request = urllib.request.Request(server + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)
fleet = json.load(open("examples/fleet-10k.json"))
def checkin(host, version, state):
    return call("POST", "/v1/agent/checkin", {"host": host["id"], "labels": host["labels"],
        "components": {"docker-engine": {"version": version, "state": state}}})
told = [h for h in fleet if checkin(h, "1.12.6", "ok")["components"]["docker-engine"]["version"] == "17.03.1"]
for i, host in enumerate(told):
    checkin(host, "17.03.1", "failed" if i % 51 == 50 else "ok")
print(f"{len(told)} hosts told the target reported", file=sys.stderr)
PY
operator=$("$bin" token create --role operator --name bench --reason benchmark 2>/dev/null | tail -1)
jar=$work/jar
curl -s -c "$jar" -b "$jar" "$SLUICE_SERVER/signin" >"$work/signin.html"
pairing=$(grep -o 'name="pairing" value="[0-9a-f]*"' "$work/signin.html" | grep -o '[0-9a-f]\{32\}')
curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "token=$operator" --data "pairing=$pairing" "$SLUICE_SERVER/signin"
echo "profile: $profile; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%F)"
printf '%-58s %9s %9s %8s\n' page best median bytes
for page in \
  "/" \
  "/rollouts" \
  "/rollouts/r-1" \
  "/rollouts/r-1?tab=hosts" \
  "/rollouts/r-1?tab=hosts&hstate=healthy&page=5" \
  "/rollouts/r-1?tab=hosts&stratum=role%3Dedge%2Csite%3Dsjc" \
  "/rollouts/r-1?tab=events" \
  "/rollouts/r-1?tab=gates" \
  "/hosts?selector=role%3Dconfig%2Csite%3Dsto" \
  "/hosts?q=a1" \
  "/hosts/lon-edge-a110.example.net"; do
  times=()
  for _ in $(seq "$runs"); do
    times+=("$(curl -s -b "$jar" -o "$work/page" -w '%{http_code} %{time_total}' "$SLUICE_SERVER$page")")
  done
  code=${times[0]% *}
  [ "$code" = 200 ] || { echo "$page answered $code" >&2; exit 1; }
  printf '%s\n' "${times[@]#* }" | sort -n | awk -v page="$page" -v bytes="$(wc -c <"$work/page")" \
    '{ t[NR] = $1 } END { printf "%-58s %7.1f ms %7.1f ms %8d\n", page, t[1] * 1000, t[int((NR + 1) / 2)] * 1000, bytes }'
done
