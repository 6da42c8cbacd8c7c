#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run calls this).
#   formatting and lints → a local Garage S3 server → unit, property, integration and
#   end-to-end tests (debug), S3 included → doc tests and API docs without warnings → the
#   10 GiB streaming test (release) → a short run of every fuzz target.
# COFFER_STREAM_GIB, COFFER_CRASH_TRIALS and FUZZ_SECONDS shorten the long steps locally.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tools the end-to-end tests call: setpriv (an unprivileged backup), mount/umount (tmpfs for
# -x and full-disk tests), mkfs.ext4 (a loop-mounted ext4 for the full-disk test of direct
# writes). Debian's util-linux, mount and e2fsprogs packages; installed when missing.
if ! command -v setpriv >/dev/null || ! command -v mount >/dev/null \
    || ! command -v mkfs.ext4 >/dev/null; then
    apt-get update -qq && apt-get install -y -qq util-linux mount e2fsprogs
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

garage_env=$(scripts/garage.sh start)
eval "$garage_env"
trap 'scripts/garage.sh stop "$GARAGE_DIR"' EXIT
echo "test.sh: Garage serves the S3 tests at $AWS_ENDPOINT_URL ($COFFER_S3_TEST_URL)"

cargo test --workspace --all-targets
cargo test --doc
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps  # broken or private links in the API docs
cargo test --release --test streaming -- --ignored --nocapture
scripts/fuzz.sh
