#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ and runs each for a short time; fails if any crashes.
#
#   FUZZ_SECONDS=20      seconds per target (libFuzzer -max_total_time)
#   FUZZ_TARGETS="a b"   only these targets (default: all, as `cargo fuzz list` shows them)
#   FUZZ_TOOLCHAIN=nightly
#   FUZZ_ARGS="..."      extra libFuzzer flags, e.g. "-jobs=2 -workers=2"
#   CARGO_TARGET_DIR     honoured (default fuzz/target)
#
# Seeds are written to fuzz/corpus/<target>/ by the gen_corpus helper first; the corpora grow
# between runs (fuzz/corpus and fuzz/artifacts are gitignored). A crashing input is saved as
# fuzz/artifacts/<target>/crash-* (or timeout-*, oom-*); reproduce it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/crash-...
# Exit status: 0 no crash, 1 some target crashed, 2 the targets do not build.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
read -r -a extra <<<"${FUZZ_ARGS:-}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing the $toolchain toolchain" >&2
    rustup toolchain install "$toolchain" --profile minimal >&2
fi

# Build once, then run the binaries directly: `cargo fuzz run` would rebuild (and so fuzz
# whatever src/ holds by then, or fail on a half-edited tree) and would blur build failures
# with crashes.
if ! cargo "+$toolchain" fuzz build; then
    echo "fuzz.sh: the fuzz targets do not build" >&2
    exit 2
fi
triple=$(rustup run "$toolchain" rustc -vV | sed -n 's/^host: //p')
bin_dir="${CARGO_TARGET_DIR:-fuzz/target}/$triple/release"

ASAN_OPTIONS=detect_leaks=0 "$bin_dir/gen_corpus" fuzz/corpus

if [[ -n ${FUZZ_TARGETS:-} ]]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <(cargo "+$toolchain" fuzz list | grep -vx gen_corpus)
fi

failed=()
for t in "${targets[@]}"; do
    echo "=== fuzz $t for ${seconds}s" >&2
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    status=0
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0} "$bin_dir/$t" \
        -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$seconds" -print_final_stats=1 \
        "${extra[@]}" "fuzz/corpus/$t" || status=$?
    if ((status == 0)); then
        echo "=== $t: no crash" >&2
    else
        echo "=== $t: FAILED with exit $status; inputs in fuzz/artifacts/$t/" >&2
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz.sh: crashes in: ${failed[*]} (reproduce: $bin_dir/TARGET fuzz/artifacts/TARGET/crash-...)" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets ran ${seconds}s each without a crash" >&2
