#!/usr/bin/env bash
# Takeover benchmark: three `sluice server` replicas on a fresh PostgreSQL
# database (127.0.0.1:5432, user postgres; created and dropped by the run),
# N hosts imported, a rollout of bench/plan-3-stages.yaml started, agents
# checking in through every replica; SIGKILL the leader and time the
# takeover: lease taken, state loaded, /readyz saying leader, and the first
# check-in answered by the new leader (see bench/README.md).
#
# usage: bench/takeover.sh [N] [OPTIONS]   (N hosts, default 100000;
#        bench/takeover.sh --help lists the options: --rounds, --agents, …)
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=100000
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
    hosts=$1
    shift
fi
cargo build --release --quiet -p sluice -p sluice-bench-checkin
exec ./target/release/sluice-bench-checkin takeover --hosts "$hosts" "$@"
