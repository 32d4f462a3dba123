#!/usr/bin/env bash
# Fuzzes the request decoder, the response decoder and name confinement with libFuzzer, each
# target for FUZZ_SECONDS (default 20) seconds, starting from the seed corpora in
# fuzz/corpus/<target>/. Fails on any crash, panic, timeout or out-of-memory.
#
# Works on the stable toolchain: the fuzz crate (fuzz/, its own workspace) is built with
# plain cargo and the coverage instrumentation cargo-fuzz would add (`-s none`); libFuzzer
# itself is compiled from source by the libfuzzer-sys crate, so only a C++ compiler is needed.
#
#   FUZZ_SECONDS=3600 bash tests/run-fuzz.sh              # long run, every target
#   FUZZ_SECONDS=3600 bash tests/run-fuzz.sh confine_name # one target
#   FUZZ_JOBS=2 ...                                       # parallel fuzzing processes per target
#
# New inputs found go to fuzz/work/corpus/<target>/ (not committed); a crash is saved in
# fuzz/artifacts/<target>/ and can be replayed with
#   fuzz/target/<triple>/release/<target> fuzz/artifacts/<target>/crash-...
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-20}"
jobs="${FUZZ_JOBS:-1}"
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(request_decode response_decode confine_name)
fi

# libFuzzer is C++.
# shellcheck source=tests/packages.sh
. ../tests/packages.sh
command -v c++ >/dev/null 2>&1 || install_packages g++

host="$(rustc -vV | sed -n 's/^host: //p')"
# The flags cargo-fuzz passes (with `--sanitizer none`). RUSTC_BOOTSTRAP lets the stable
# compiler accept them all; setting --target keeps them off build scripts.
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="$PWD/target"
echo "building fuzz targets (${targets[*]}) for $host"
cargo build --release --locked --target "$host" $(printf -- '--bin %s ' "${targets[@]}")

# The confinement target builds its file tree under TMPDIR; remove it afterwards.
work="$PWD/work"
mkdir -p "$work/tmp"
export TMPDIR="$work/tmp"
trap 'rm -rf "$work/tmp"' EXIT

for target in "${targets[@]}"; do
    bin="target/$host/release/$target"
    mkdir -p "$work/corpus/$target" "artifacts/$target"
    dict=()
    parallel=()
    if [ "$jobs" -gt 1 ]; then
        parallel=(-jobs="$jobs" -workers="$jobs")
    fi
    if [ -f "$target.dict" ]; then
        dict=(-dict="$target.dict")
    fi
    echo "fuzzing $target for ${seconds}s"
    # The first directory receives new inputs; the committed seeds are only read.
    if ! "$bin" "${dict[@]}" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=1100 \
        "${parallel[@]}" -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" \
        "$work/corpus/$target" "corpus/$target" 2>"$work/$target.log"; then
        tail -n 60 "$work/$target.log" >&2
        echo "run-fuzz.sh: $target FAILED; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^Done' "$work/$target.log" \
        | sed "s/^/  $target: /"
done
echo "fuzzing: no crashes in ${targets[*]}"
