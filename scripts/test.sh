#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run calls this).
#   formatting and lints → unit, property, integration and end-to-end tests (debug) →
#   the 10 GiB streaming test (release) → a short run of every fuzz target.
# COFFER_STREAM_GIB and FUZZ_SECONDS shorten the long steps for a quick local run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
cargo test --doc
cargo test --release --test streaming -- --ignored --nocapture
if [ -x scripts/fuzz.sh ]; then
    scripts/fuzz.sh
fi
