#!/usr/bin/env bash
# Back-pressure benchmark: `sluice server` on SQLite, its maximum check-in
# rate measured with a closed loop, then 4 × that rate offered in an open
# loop on many connections: accepted and refused (429) check-ins, accepted
# latency, the server's memory over the run; then SIGKILL, restart, and
# every acknowledged report checked in the store (see bench/README.md).
#
# usage: bench/overload.sh [OPTIONS]   (bench/overload.sh --help lists them:
#        --factor, --duration, --connections, --checkin-queue, …)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p sluice -p sluice-bench-checkin
exec ./target/release/sluice-bench-checkin overload "$@"
