#!/usr/bin/env bash
# Check-in load benchmark: the real `sluice server` against a bare axum
# handler, in the same run, on this machine (see bench/README.md).
#
# usage: bench/checkin.sh [--hosts N] [--duration 10s] [--connections 64] …
#        (bench/checkin.sh --help lists every option)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p sluice -p sluice-bench-checkin
exec ./target/release/sluice-bench-checkin "$@"
