#!/usr/bin/env bash
# Fuzzing for longer than ./scripts/test does: one target (or all) of fuzz/
# for SECONDS each, on every core but one, keeping what it finds in
# fuzz/corpus/TARGET (not committed) so that the next run starts there.
#
# usage: bench/fuzz.sh TARGET|all [SECONDS]      (default 600 s)
#   targets: plan selector fleet checkin agent_config
#
# A panic stops the run and leaves the input in fuzz/artifacts/TARGET/;
# replay it with `cd fuzz && cargo +nightly fuzz run -s none -a TARGET FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: bench/fuzz.sh TARGET|all [SECONDS]}
seconds=${2:-600}
if [ "$target" = all ]; then
    targets=(plan selector fleet checkin agent_config)
else
    targets=("$target")
fi
jobs=$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))
cd fuzz
cargo +nightly fuzz build --sanitizer none --debug-assertions
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    before=$(find "corpus/$t" -type f | wc -l)
    nice -n 19 cargo +nightly fuzz run --sanitizer none --debug-assertions "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -fork="$jobs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1
    after=$(find "corpus/$t" -type f | wc -l)
    printf '%s: %s s on %s jobs, corpus %s -> %s inputs, no panic\n' "$t" "$seconds" "$jobs" "$before" "$after"
done
