#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed number of executions, one after
# the other, and prints one line of figures per target. Not part of the test
# command (tests/run.sh): a full run takes hours. The checked-in corpora are
# replayed by `cargo test` instead.
#
# Usage: fuzz/run-all.sh [RUNS] [-- LIBFUZZER_ARGS...]
#   RUNS   executions per target (default 10000000)
# Environment:
#   FUZZ_TARGETS     space-separated targets to run (default: every target)
#   FUZZ_SANITIZER   cargo-fuzz sanitizer (default none: the codecs hold no
#                    unsafe code, so AddressSanitizer finds nothing a panic
#                    would not, and it costs about half the execution rate)
# Needs cargo-fuzz (tests/peers/install.sh fuzz). A crash stops the run with
# libFuzzer's exit status; its input is left under fuzz/artifacts/TARGET/ —
# fix the decoder, then add the input to fuzz/corpus/TARGET/ so `cargo test`
# replays it.
set -euo pipefail

RUNS=${1:-10000000}
[[ $# -gt 0 ]] && shift
[[ ${1:-} == "--" ]] && shift
[[ $RUNS =~ ^[0-9]+$ ]] || { echo "run-all.sh: RUNS must be a number, not '$RUNS'" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
PEERS_BIN=${CUTOVER_PEERS:-$HOME/.cache/cutover-peers}/bin
export PATH="$PEERS_BIN:$PATH"
command -v cargo-fuzz >/dev/null || { echo "run-all.sh: cargo-fuzz missing; run tests/peers/install.sh fuzz" >&2; exit 2; }
# cargo-fuzz needs nightly flags (-Z sanitizer); the stable toolchain accepts
# them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

cd "$HERE"
if [[ -n ${FUZZ_TARGETS:-} ]]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
    mapfile -t TARGETS < <(cargo fuzz list)
fi
SANITIZER=${FUZZ_SANITIZER:-none}
[[ ${#TARGETS[@]} -gt 0 ]] || { echo "run-all.sh: no fuzz targets found" >&2; exit 2; }
for target in "${TARGETS[@]}"; do
    # Fuzz into a scratch copy so the checked-in corpus only grows by hand.
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    cp -r "corpus/$target/." "$work/"
    log="$work.log"
    start=$(date +%s)
    cargo fuzz run -s "$SANITIZER" "$target" "$work" -- -runs="$RUNS" -print_final_stats=1 "$@" >"$log" 2>&1 || {
        status=$?
        tail -n 40 "$log" >&2
        echo "run-all.sh: $target failed (status $status); see fuzz/artifacts/$target/" >&2
        exit "$status"
    }
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    echo "$target: ${execs:-?} executions in ${secs}s, coverage ${cov:-?} edges, no crash"
    rm -rf "$work" "$log"
    trap - EXIT
done
