#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run calls this).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
cargo test --doc
