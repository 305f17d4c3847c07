#!/usr/bin/env bash
# The one command that runs every test: installs the real peers the suite
# needs (idempotent, seconds when present), then lints and tests the whole
# workspace, including the fuzz corpora replay.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/peers/install.sh redis proxies etcd kafka
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
