#!/usr/bin/env bash
# Check-in load benchmark: the real `sluice server` against two bare axum
# handlers — one that reads the body without parsing it (the loopback HTTP
# limit), one that parses the same request — in the same run, on this
# machine; with --targets, also three replicas on PostgreSQL (see
# bench/README.md).
#
# usage: bench/checkin.sh [--hosts N] [--duration 10s] [--connections 64]
#        [--targets raw,bare,sluice,pg-one,pg-three] [--pin] …
#        (bench/checkin.sh --help lists every option)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p sluice -p sluice-bench-checkin
exec ./target/release/sluice-bench-checkin "$@"
