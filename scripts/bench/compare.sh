#!/usr/bin/env bash
# Side-by-side benchmark of coffer against restic, rustic, borg and bupstash.
#
# Installs the peer tools when missing (peers.sh), builds coffer in release mode, measures the
# backup stages on their own (criterion, for the pipeline bound), then runs compare.py, which
# generates the datasets under /tmp/coffer-bench (--work), times every tool on them and writes
# docs/benchmarks.{md,json} and docs/benchmarks-chart.svg (--out).
# Every argument is passed to compare.py, e.g.:
#
#   scripts/bench/compare.sh                        # the full benchmark (needs about 50 GiB of scratch space)
#   scripts/bench/compare.sh --scale 0.01 --out /tmp/bench   # a one-minute smoke test
#   scripts/bench/compare.sh --datasets mixed --tools coffer,restic
#   eval "$(scripts/garage.sh start)" && scripts/bench/compare.sh --s3   # also S3 (Garage)
#   scripts/bench/compare.py --render docs/benchmarks.json --stages target/criterion   # report again
#   scripts/bench/compare.py --help                 # all options
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"  # rustic and bupstash come from cargo install

scripts/bench/peers.sh
# The stages incompressible data goes through, each alone on one core: compare.py derives the
# two-core pipeline bound from them.
cargo bench --bench stages -- \
    '^(chunking/random_64MiB|hash_1MiB/(keyed_blob_id|blake3_plain)|seal_blob_1MiB/zstd1_incompressible|io/(read_file_64MiB|write_pack_32MiB))$'
# After the benchmark, which leaves in target/release a coffer built with the test
# dependencies' features (0.6 MB larger, so slower to start cold): the binary users get.
cargo build --release
exec python3 scripts/bench/compare.py --coffer "$root/target/release/coffer" \
    --stages "$root/target/criterion" "$@"
