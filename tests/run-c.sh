#!/usr/bin/env bash
# Builds libfilefetch (shared and static) and tests the C API from C:
#   1. checks that include/filefetch.h is what cbindgen generates from ffi/src;
#   2. stages an install prefix under the cargo target directory, target/c-api/prefix:
#      include/filefetch.h, lib/libfilefetch.so with its soname links, lib/libfilefetch.a,
#      lib/pkgconfig/filefetch.pc (from ffi/filefetch.pc.in);
#   3. compiles every tests/c/*_test.c with -std=c99 -Wall -Wextra -Wpedantic -Werror,
#      once against the shared library (flags from `pkg-config --cflags --libs filefetch`)
#      and once against the static one;
#   4. runs each program, then runs it again under valgrind, where any leak or memory
#      error fails the run (tests/c/valgrind.supp explains the two reports that are not).
# Installs pkg-config and valgrind with apt-get when they are missing and it can.
# Run from anywhere; prints "N passed, M failed" last and exits nonzero on any failure.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=tests/packages.sh
. tests/packages.sh

target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
work="$target/c-api"
prefix="$work/prefix"
bin="$work/bin"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
major="${version%%.*}"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

# --- tools ------------------------------------------------------------------------------
missing=()
command -v cc >/dev/null || missing+=(gcc libc6-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v valgrind >/dev/null || missing+=(valgrind)
install_packages "${missing[@]}"

# --- library and header -----------------------------------------------------------------
cargo build -p filefetch-ffi
if cargo test -p filefetch-ffi --test header -q >"$work.header.log" 2>&1; then
    pass "include/filefetch.h matches cbindgen's output"
else
    cat "$work.header.log"
    fail "include/filefetch.h is stale:" \
        "FILEFETCH_BLESS=1 cargo test -p filefetch-ffi --test header rewrites it"
fi
rm -f "$work.header.log"

rm -rf "$work"
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig" "$bin/shared" "$bin/static" "$work/run"
cp include/filefetch.h "$prefix/include/"
cp "$target/debug/libfilefetch.so" "$prefix/lib/libfilefetch.so.$version"
ln -s "libfilefetch.so.$version" "$prefix/lib/libfilefetch.so.$major"
ln -s "libfilefetch.so.$major" "$prefix/lib/libfilefetch.so"
cp "$target/debug/libfilefetch.a" "$prefix/lib/"

# What the static library needs besides itself (`rustc --print native-static-libs`).
static_deps="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@LIBS_PRIVATE@|$static_deps|" \
    ffi/filefetch.pc.in >"$prefix/lib/pkgconfig/filefetch.pc"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

soname="$(readelf -d "$prefix/lib/libfilefetch.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
if [ "$soname" = "libfilefetch.so.$major" ]; then
    pass "libfilefetch.so has soname $soname"
else
    fail "libfilefetch.so soname is '$soname', expected libfilefetch.so.$major"
fi
if cflags="$(pkg-config --cflags filefetch)" && libs="$(pkg-config --libs filefetch)"; then
    pass "pkg-config --cflags --libs filefetch: $cflags $libs"
else
    fail "pkg-config does not find filefetch"
    cflags="-I$prefix/include"
    libs="-L$prefix/lib -lfilefetch"
fi
# The static link names the archive itself, so the linker cannot pick the .so instead.
static_libs=""
for flag in $(pkg-config --static --libs-only-l filefetch 2>/dev/null || echo "$static_deps"); do
    [ "$flag" = "-lfilefetch" ] || static_libs="$static_libs $flag"
done

strict=(-std=c99 -Wall -Wextra -Wpedantic -Werror)
if command -v c++ >/dev/null; then
    if echo '#include "filefetch.h"' |
        c++ -x c++ -std=c++11 -Wall -Wextra -Werror $cflags -fsyntax-only -; then
        pass "filefetch.h compiles as C++"
    else
        fail "filefetch.h does not compile as C++"
    fi
fi

# --- compile ----------------------------------------------------------------------------
programs=()
for src in tests/c/*_test.c; do
    name="$(basename "$src" .c)"
    programs+=("$name")
    # shellcheck disable=SC2086 # word splitting of the pkg-config output is intended
    if cc "${strict[@]}" $cflags "$src" -o "$bin/shared/$name" $libs \
        -Wl,-rpath,"$prefix/lib" -pthread; then
        if readelf -d "$bin/shared/$name" | grep -q "NEEDED.*\[libfilefetch.so.$major\]"; then
            pass "compile $name against libfilefetch.so"
        else
            fail "$name does not load libfilefetch.so.$major"
        fi
    else
        fail "compile $name against libfilefetch.so"
    fi
    # shellcheck disable=SC2086
    if cc "${strict[@]}" $cflags "$src" -o "$bin/static/$name" \
        "$prefix/lib/libfilefetch.a" $static_libs -pthread; then
        if readelf -d "$bin/static/$name" | grep -q "NEEDED.*libfilefetch"; then
            fail "$name (static) still needs libfilefetch.so"
        else
            pass "compile $name against libfilefetch.a"
        fi
    else
        fail "compile $name against libfilefetch.a"
    fi
done

# --- run --------------------------------------------------------------------------------
valgrind_args=(
    --quiet
    --error-exitcode=97
    --leak-check=full
    --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite,indirect,possible
    --child-silent-after-fork=yes
    --num-callers=40
    --suppressions="$repo/tests/c/valgrind.supp"
)
checks=0
run() { # run <label> <command...>: passes when it exits 0 and reports no failed check
    local label="$1" log="$work/run/log"
    shift
    local status=0
    (cd "$work/run" && TMPDIR="$work/run" "$@") >"$log" 2>&1 || status=$?
    local summary
    summary="$(grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)"
    if [ "$status" = 0 ] && [ -n "$summary" ] && [[ "$summary" == *" 0 failed" ]]; then
        checks=$((checks + $(echo "$summary" | sed 's/.*: \([0-9]*\) passed.*/\1/')))
        pass "$label ($summary)"
    else
        cat "$log"
        fail "$label (exit status $status${summary:+, $summary})"
    fi
}
for name in "${programs[@]}"; do
    for link in shared static; do
        run "$name [$link]" "$bin/$link/$name"
        run "$name [$link, valgrind]" valgrind "${valgrind_args[@]}" "$bin/$link/$name"
    done
done

echo "C checks inside the programs: $checks"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
