#!/usr/bin/env bash
# Builds libfilefetch (shared and static), installs it as any C library, and tests the C API
# from C:
#   1. checks that include/filefetch.h is what cbindgen generates from ffi/src;
#   2. installs with the top-level Makefile (`make install PROFILE=debug`) into an install
#      prefix under the cargo target directory, target/c-api/prefix: include/filefetch.h,
#      lib/libfilefetch.so with its soname links, lib/libfilefetch.a,
#      lib/pkgconfig/filefetch.pc, lib/cmake/filefetch/filefetchConfig{,Version}.cmake;
#      checks the links, the soname, and that the shared library exports exactly the
#      functions the header declares, every one named filefetch_*;
#   3. compiles every tests/c/*_test.c with -std=c99 -Wall -Wextra -Wpedantic -Werror,
#      once against the shared library (flags from `pkg-config --cflags --libs filefetch`)
#      and once against the static one;
#   4. runs each program, and runs it again under valgrind, where any leak or memory
#      error fails the run (tests/c/valgrind.supp explains the two reports that are not);
#      two runs at a time, each in a directory of its own;
#   5. installs again into a staging directory (DESTDIR=target/c-api/stage,
#      PREFIX=/opt/filefetch): the files must name /opt/filefetch and never the staging
#      directory; then builds and runs the consumer projects of tests/c/consumers against
#      the installed trees: pkgconfig/Makefile against the prefix (PKG_CONFIG_PATH) and
#      against the staged tree (PKG_CONFIG_SYSROOT_DIR), found at run time through
#      LD_LIBRARY_PATH; cmake/CMakeLists.txt (find_package(filefetch CONFIG)) against the
#      staged tree, which the relocatable CMake files allow, shared and static, found at run
#      time through the RUNPATH CMake gives build-tree programs; and finally
#      `make uninstall`, which must leave the staging directory empty.
# Installs pkg-config, valgrind, make and cmake with apt-get when they are missing and it can.
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
command -v make >/dev/null || missing+=(make)
command -v cmake >/dev/null || missing+=(cmake)
command -v nm >/dev/null || missing+=(binutils)
install_packages "${missing[@]}"

# --- library and header -----------------------------------------------------------------
mkdir -p "$target"
make -C "$repo" --no-print-directory PROFILE=debug build
if cargo test -p filefetch-ffi --test header -q >"$work.header.log" 2>&1; then
    pass "include/filefetch.h matches cbindgen's output"
else
    cat "$work.header.log"
    fail "include/filefetch.h is stale:" \
        "FILEFETCH_BLESS=1 cargo test -p filefetch-ffi --test header rewrites it"
fi
rm -f "$work.header.log"

rm -rf "$work"
mkdir -p "$bin/shared" "$bin/static" "$work/run"
if make -C "$repo" --no-print-directory PROFILE=debug PREFIX="$prefix" install \
    >"$work/install.log" 2>&1; then
    pass "make install PREFIX=$prefix"
else
    cat "$work/install.log"
    fail "make install PREFIX=$prefix"
fi
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

lib="$prefix/lib"
links="$(readlink "$lib/libfilefetch.so" || true) $(readlink "$lib/libfilefetch.so.$major" || true)"
if [ "$links" = "libfilefetch.so.$major libfilefetch.so.$version" ] &&
    [ -f "$lib/libfilefetch.so.$version" ] && [ ! -L "$lib/libfilefetch.so.$version" ]; then
    pass "libfilefetch.so -> libfilefetch.so.$major -> libfilefetch.so.$version"
else
    fail "soname links: libfilefetch.so, libfilefetch.so.$major point to '$links'"
fi
soname="$(readelf -d "$prefix/lib/libfilefetch.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
if [ "$soname" = "libfilefetch.so.$major" ]; then
    pass "libfilefetch.so has soname $soname"
else
    fail "libfilefetch.so soname is '$soname', expected libfilefetch.so.$major"
fi

# Only the API is exported: every defined dynamic symbol is a filefetch_* function that the
# header declares, and every function the header declares is exported. rustc's own version
# script (global: every `#[no_mangle]` function, the dependencies' too; local: *) and
# ffi/build.rs's --exclude-libs,ALL (the dependencies' symbols stay local) decide it; this
# checks the result. Ignored (none today): the names of symbol-version definitions, which a
# version script would add as absolute symbols. No linker-made symbol (_init, _fini, _end,
# _edata, __bss_start) is exported, so none is ignored.
version_nodes="$(readelf -V -W "$prefix/lib/libfilefetch.so" |
    sed -n '/\.gnu\.version_d/,/^$/s/.*Name: \([^ ]*\).*/\1/p' | sort -u)"
nm -D --defined-only -P "$prefix/lib/libfilefetch.so" | awk '{ sub(/@.*/, "", $1); print $1 }' |
    sort -u | if [ -n "$version_nodes" ]; then grep -vxF "$version_nodes" || true; else cat; fi \
    >"$work/exported"
sed -n 's/^[a-z].*[ *]\(filefetch_[a-z0-9_]*\)(.*/\1/p' include/filefetch.h | sort -u \
    >"$work/declared"
foreign="$(grep -v '^filefetch_' "$work/exported" || true)"
if [ -z "$foreign" ] && cmp -s "$work/exported" "$work/declared"; then
    pass "libfilefetch.so exports exactly the $(wc -l <"$work/declared") functions of filefetch.h"
else
    [ -z "$foreign" ] || echo "exported, not filefetch_*: $(echo "$foreign" | tr '\n' ' ')"
    diff "$work/declared" "$work/exported" |
        sed -n 's/^</  declared, not exported:/p; s/^>/  exported, not declared:/p'
    fail "libfilefetch.so exports other symbols than the functions of filefetch.h"
fi

if cflags="$(pkg-config --cflags filefetch)" && libs="$(pkg-config --libs filefetch)"; then
    pass "pkg-config --cflags --libs filefetch: $cflags $libs"
else
    fail "pkg-config does not find filefetch"
    cflags="-I$prefix/include"
    libs="-L$prefix/lib -lfilefetch"
fi
# The static link names the archive itself, so the linker cannot pick the .so instead; the
# system libraries it needs are the .pc file's Libs.private (rustc's native-static-libs).
static_libs=""
for flag in $(pkg-config --static --libs-only-l filefetch 2>/dev/null || true); do
    [ "$flag" = "-lfilefetch" ] || static_libs="$static_libs $flag"
done
if [ -n "$static_libs" ]; then
    pass "the static library's system libraries:$static_libs"
else
    fail "filefetch.pc gives no system libraries for the static library (Libs.private)"
fi

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
# Each run gets a directory of its own (its working directory and TMPDIR) and a log; two run
# at once, since a program under valgrind keeps one core busy and leaves the other idle.
# Results are reported in order once all have ended.
labels=()
launch() { # launch <label> <command...>
    local id="${#labels[@]}"
    labels+=("$1")
    shift
    mkdir -p "$work/run/$id"
    (
        status=0
        (cd "$work/run/$id" && TMPDIR="$work/run/$id" "$@") >"$work/run/$id.log" 2>&1 ||
            status=$?
        echo "$status" >"$work/run/$id.status"
    ) &
    while (($(jobs -rp | wc -l) >= 2)); do
        wait -n || true
    done
}
report() { # report <id>: passes when the run exited 0 and reported no failed check
    local id="$1" log="$work/run/$1.log"
    local label="${labels[$id]}" status
    status="$(cat "$work/run/$id.status" 2>/dev/null || echo "unknown")"
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
        launch "$name [$link]" "$bin/$link/$name"
        launch "$name [$link, valgrind]" valgrind "${valgrind_args[@]}" "$bin/$link/$name"
    done
done
wait
for id in "${!labels[@]}"; do
    report "$id"
done

# --- installing elsewhere, and programs built against the installed trees ---------------
# A second install, staged: DESTDIR prefixes where the files go, PREFIX what they say.
stage="$work/stage"
staged="$stage/opt/filefetch"
if make -C "$repo" --no-print-directory PROFILE=debug PREFIX=/opt/filefetch DESTDIR="$stage" \
    install >"$work/install.log" 2>&1; then
    pass "make install DESTDIR=$stage PREFIX=/opt/filefetch"
else
    cat "$work/install.log"
    fail "make install DESTDIR=$stage PREFIX=/opt/filefetch"
fi
expected_files="include/filefetch.h
lib/cmake/filefetch/filefetchConfig.cmake
lib/cmake/filefetch/filefetchConfigVersion.cmake
lib/libfilefetch.a
lib/libfilefetch.so
lib/libfilefetch.so.$major
lib/libfilefetch.so.$version
lib/pkgconfig/filefetch.pc"
staged_files="$(cd "$stage" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort)"
if [ "$staged_files" = "$(echo "$expected_files" | sed 's|^|opt/filefetch/|')" ]; then
    pass "the staged tree holds the $(echo "$expected_files" | wc -l) files under opt/filefetch"
else
    echo "$staged_files"
    fail "the staged tree holds other files than expected"
fi
if grep -rlF "$stage" "$staged/lib/pkgconfig" "$staged/lib/cmake" >/dev/null; then
    fail "installed files name the staging directory $stage"
elif grep -qx 'prefix=/opt/filefetch' "$staged/lib/pkgconfig/filefetch.pc" &&
    grep -qx 'libdir=${prefix}/lib' "$staged/lib/pkgconfig/filefetch.pc"; then
    pass "filefetch.pc names PREFIX (/opt/filefetch), not DESTDIR"
else
    cat "$staged/lib/pkgconfig/filefetch.pc"
    fail "filefetch.pc does not name /opt/filefetch"
fi

consumers="$work/consumers"
cp -r tests/c/consumers "$consumers"
consumer_run() { # consumer_run <label> <command...>: runs a consumer in a scratch directory
    local label="$1" log="$work/consumer.log"
    shift
    rm -rf "$work/consumer-run"
    mkdir -p "$work/consumer-run"
    if (cd "$work/consumer-run" && timeout 60 "$@") >"$log" 2>&1 &&
        grep -q "fetched 100000 bytes" "$log"; then
        pass "$label: $(tail -n 1 "$log")"
    else
        cat "$log"
        fail "$label"
    fi
}

# pkg-config + make, against the prefix; the library found through LD_LIBRARY_PATH.
if make -C "$consumers/pkgconfig" >"$work/consumer-build.log" 2>&1; then
    pass "consumer pkgconfig/Makefile builds against $prefix"
    consumer_run "consumer pkgconfig/Makefile runs (LD_LIBRARY_PATH=$prefix/lib)" \
        env LD_LIBRARY_PATH="$prefix/lib" "$consumers/pkgconfig/app"
else
    cat "$work/consumer-build.log"
    fail "consumer pkgconfig/Makefile builds against $prefix"
fi
# Against the staged tree: pkg-config prefixes the .pc file's /opt/filefetch paths with the
# sysroot, as for a cross or staged build.
make -C "$consumers/pkgconfig" clean >/dev/null
if PKG_CONFIG_PATH="" PKG_CONFIG_LIBDIR="$staged/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$stage" \
    make -C "$consumers/pkgconfig" >"$work/consumer-build.log" 2>&1 &&
    grep -qF -- "-I$staged/include" "$work/consumer-build.log"; then
    pass "consumer pkgconfig/Makefile builds against the staged tree (PKG_CONFIG_SYSROOT_DIR)"
    consumer_run "consumer pkgconfig/Makefile runs (LD_LIBRARY_PATH=$staged/lib)" \
        env LD_LIBRARY_PATH="$staged/lib" "$consumers/pkgconfig/app"
else
    cat "$work/consumer-build.log"
    fail "consumer pkgconfig/Makefile builds against the staged tree"
fi

# CMake, against the staged tree: only a relocatable package finds its files there. The
# programs find libfilefetch.so through the RUNPATH CMake gives programs in a build tree.
cmake_build="$work/consumer-cmake"
if cmake -S "$consumers/cmake" -B "$cmake_build" -DCMAKE_PREFIX_PATH="$staged" \
    -DFILEFETCH_VERSION_WANTED="$major.0" >"$work/consumer-build.log" 2>&1 &&
    cmake --build "$cmake_build" >>"$work/consumer-build.log" 2>&1; then
    pass "consumer cmake/CMakeLists.txt builds against $staged (find_package filefetch $major.0)"
    if readelf -d "$cmake_build/app" | grep -q "NEEDED.*\[libfilefetch.so.$major\]" &&
        readelf -d "$cmake_build/app" | grep -q "R.*PATH.*$staged/lib"; then
        pass "consumer app needs libfilefetch.so.$major, found through its RUNPATH"
    else
        readelf -d "$cmake_build/app"
        fail "consumer app does not load libfilefetch.so.$major from $staged/lib"
    fi
    consumer_run "consumer cmake app (filefetch::filefetch) runs" "$cmake_build/app"
    if [ -x "$cmake_build/app_static" ] &&
        ! readelf -d "$cmake_build/app_static" | grep -q "NEEDED.*libfilefetch"; then
        consumer_run "consumer cmake app_static (filefetch::filefetch_static) runs" \
            "$cmake_build/app_static"
    else
        fail "consumer app_static missing, or linked to libfilefetch.so"
    fi
else
    cat "$work/consumer-build.log"
    fail "consumer cmake/CMakeLists.txt builds against $staged"
fi
if cmake -S "$consumers/cmake" -B "$cmake_build-next" -DCMAKE_PREFIX_PATH="$staged" \
    -DFILEFETCH_VERSION_WANTED="$((major + 1)).0" >"$work/consumer-build.log" 2>&1; then
    fail "find_package(filefetch $((major + 1)).0) accepts $version"
else
    pass "find_package(filefetch $((major + 1)).0) refuses $version"
fi

if make -C "$repo" --no-print-directory PROFILE=debug PREFIX=/opt/filefetch DESTDIR="$stage" \
    uninstall >"$work/install.log" 2>&1 &&
    [ -z "$(find "$stage" \( -type f -o -type l \))" ]; then
    pass "make uninstall leaves the staged tree empty"
else
    cat "$work/install.log"
    find "$stage" \( -type f -o -type l \)
    fail "make uninstall leaves files behind"
fi

echo "C checks inside the programs: $checks"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
