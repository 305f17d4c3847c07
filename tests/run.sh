#!/usr/bin/env bash
# The one command that runs every test: installs the real peers the suite
# needs (idempotent, seconds when present), then checks formatting, lints
# and tests the whole workspace (including the fuzz corpora replay), and
# ends with one line totalling every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/peers/install.sh redis proxies etcd kafka rocketmq browser
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
