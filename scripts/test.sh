#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run calls this).
#   formatting and lints → a local Garage S3 server → unit, property, integration and
#   end-to-end tests (debug), S3 included → the 10 GiB streaming test (release) → a short run
#   of every fuzz target.
# COFFER_STREAM_GIB, COFFER_CRASH_TRIALS and FUZZ_SECONDS shorten the long steps locally.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets -- -D warnings

garage_env=$(scripts/garage.sh start)
eval "$garage_env"
trap 'scripts/garage.sh stop "$GARAGE_DIR"' EXIT
echo "test.sh: Garage serves the S3 tests at $AWS_ENDPOINT_URL ($COFFER_S3_TEST_URL)"

cargo test --all-targets
cargo test --doc
cargo test --release --test streaming -- --ignored --nocapture
scripts/fuzz.sh
