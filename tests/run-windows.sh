#!/usr/bin/env bash
# Builds the Windows test programs on Linux and runs them under Wine:
#   1. installs what it lacks: the mingw-w64 C compiler and Wine (apt-get), and Rust's
#      x86_64-pc-windows-gnu target (rustup);
#   2. builds tests/windows/bcryptprimitives.dll, a stand-in for the DLL that Debian's Wine 8
#      lacks and that every Rust program needs at start-up (see the C file), and puts a copy
#      beside every Windows program run here;
#   3. builds the test executables of `filefetch` (the library's unit tests and every test in
#      core/tests) and `filefetch-cli` (cli/tests, which run the Windows `filefetch.exe`),
#      and the C library (`filefetch.dll`, with its import library), for x86_64-pc-windows-gnu;
#   4. compiles every tests/c/*_test.c with x86_64-w64-mingw32-gcc and the flags of
#      tests/run-c.sh (-std=c99 -Wall -Wextra -Wpedantic -Werror) against filefetch.dll;
#   5. runs each program under Wine, in a private Wine prefix under the target directory,
#      each bounded in time (WINDOWS_TEST_TIMEOUT seconds, 600 by default), and adds up
#      libtest's "test result" lines and the C programs' results.
# Prints the counts per suite (core, cli, C) and last "N passed, M failed, K skipped" (K: the
# tests marked #[ignore], and those that printed "SKIPPED ..." because what they need is
# missing here, such as symbolic links under Wine); exits nonzero on any failure, or when no
# test ran.
# Run from anywhere. Respects CARGO_TARGET_DIR (default: ./target); everything it makes goes
# under $CARGO_TARGET_DIR/windows-tests and $CARGO_TARGET_DIR/x86_64-pc-windows-gnu.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=tests/packages.sh
. tests/packages.sh

triple=x86_64-pc-windows-gnu
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
export CARGO_TARGET_DIR="$target"
work="$target/windows-tests"
limit="${WINDOWS_TEST_TIMEOUT:-600}"
started=$SECONDS

step() { printf '\n==> %s\n' "$*"; }

# --- tools ------------------------------------------------------------------------------
step "tools"
# Debian's wine64 package has the loader in /usr/lib/wine; the `wine` package (only
# recommended) adds the wrappers in /usr/bin.
find_wine() {
    wine=""
    wineserver=""
    local candidate
    for candidate in wine64 /usr/lib/wine/wine64 wine; do
        if command -v "$candidate" >/dev/null; then
            wine="$(command -v "$candidate")"
            break
        fi
    done
    for candidate in wineserver64 /usr/lib/wine/wineserver64 wineserver /usr/lib/wine/wineserver; do
        if command -v "$candidate" >/dev/null; then
            wineserver="$(command -v "$candidate")"
            break
        fi
    done
}
find_wine
missing=()
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
[ -n "$wine" ] && [ -n "$wineserver" ] || missing+=(wine64)
command -v timeout >/dev/null || missing+=(coreutils)
if ((${#missing[@]})); then
    install_packages "${missing[@]}"
    find_wine
    if [ -z "$wine" ] || [ -z "$wineserver" ]; then
        echo "wine64 installed, but no wine64 and wineserver programs found" >&2
        exit 1
    fi
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    rustup target add "$triple"
fi
echo "wine: $wine ($("$wine" --version 2>/dev/null || echo 'version unknown'))"
echo "mingw: $(x86_64-w64-mingw32-gcc --version | head -n 1)"

# --- Wine ---------------------------------------------------------------------------------
# A prefix of our own: no dialog (no Mono, no Gecko), no display needed for console programs,
# no debug chatter.
export WINEPREFIX="$work/wineprefix"
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml="
export WINEARCH=win64
unset DISPLAY WAYLAND_DISPLAY
# A property test failing under Wine must not leave its seeds in the source tree.
export PROPTEST_DISABLE_FAILURE_PERSISTENCE=1
cleanup() {
    # Ends every process of this prefix (tests left running by a timeout included).
    "$wineserver" -k >/dev/null 2>&1 || true
}
trap cleanup EXIT
mkdir -p "$work"
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    step "Wine prefix ($WINEPREFIX)"
    "$wine" wineboot --init >"$work/wineboot.log" 2>&1 || {
        cat "$work/wineboot.log"
        echo "wineboot --init failed" >&2
        exit 1
    }
    # The registry files are written when the server exits.
    "$wineserver" -w
fi
# The server stays up between programs (they start faster) until cleanup.
"$wineserver" -p >/dev/null 2>&1 || true
# Temporary files left by an earlier, interrupted run.
rm -rf "$WINEPREFIX"/drive_c/users/*/Temp/* "$WINEPREFIX"/drive_c/users/*/AppData/Local/Temp/* \
    2>/dev/null || true

# --- the shim DLL -------------------------------------------------------------------------
step "bcryptprimitives.dll (tests/windows)"
shim="$work/bcryptprimitives.dll"
x86_64-w64-mingw32-gcc -std=c99 -Wall -Wextra -Wpedantic -Werror -O2 -shared -s \
    -o "$shim" tests/windows/bcryptprimitives.c tests/windows/bcryptprimitives.def -ladvapi32
echo "built $shim"

# --- Rust test executables ----------------------------------------------------------------
step "cargo test --no-run --target $triple (filefetch, filefetch-cli)"
cargo test --no-run --target "$triple" --locked -p filefetch -p filefetch-cli \
    --message-format=json-render-diagnostics >"$work/build.json"
# One line per test executable: suite, label, executable, directory to run it in (its
# package's, as cargo does); and the `filefetch` command the cli tests run.
python3 - "$work/build.json" >"$work/executables.tsv" <<'EOF'
import json, os, sys
suites = {"filefetch": "core", "filefetch-cli": "cli"}
rows = set()
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    name = msg["target"]["name"]
    kinds = msg["target"]["kind"]
    pkg = msg["package_id"]
    suite = next((s for p, s in suites.items()
                  if f"#{p}@" in pkg or pkg.startswith(f"{p} ") or f"/{p}#" in pkg), None)
    manifest_dir = os.path.dirname(msg["manifest_path"])
    if suite is None:
        suite = {"core": "core", "cli": "cli"}.get(os.path.basename(manifest_dir))
    if suite is None:
        continue
    if msg["profile"]["test"]:
        label = ("unit tests " + os.path.relpath(msg["target"]["src_path"], manifest_dir)
                 if "lib" in kinds or "bin" in kinds else
                 os.path.relpath(msg["target"]["src_path"], manifest_dir))
        row = ("test", suite, f"{suite}/{label}", msg["executable"], manifest_dir)
    elif "bin" in kinds:
        row = ("bin", suite, name, msg["executable"], manifest_dir)
    else:
        continue
    rows.add(row)
order = {"core": 0, "cli": 1}
for row in sorted(rows, key=lambda r: (r[0], order[r[1]], "/unit" not in r[2], r[2])):
    print("\t".join(row))
EOF
if ! grep -q '^bin	cli	filefetch	' "$work/executables.tsv"; then
    echo "the build did not report the filefetch command (filefetch.exe)" >&2
    exit 1
fi
if ! grep -q '^test	' "$work/executables.tsv"; then
    echo "the build reported no test executable" >&2
    exit 1
fi

# --- C library and C tests ----------------------------------------------------------------
step "cargo build -p filefetch-ffi --target $triple"
# The test profile, like the executables above: the library crate is built once for both.
cargo build -p filefetch-ffi --target "$triple" --profile test --locked
lib_dir="$target/$triple/debug"
c_bin="$work/c"
rm -rf "$c_bin"
mkdir -p "$c_bin"

passed=0
failed=0
skipped=0
declare -A suite_passed suite_failed suite_skipped suite_programs
for suite in core cli C; do
    suite_passed[$suite]=0
    suite_failed[$suite]=0
    suite_skipped[$suite]=0
    suite_programs[$suite]=0
done
failures=()
count() { # count <suite> <passed> <failed> <skipped>
    suite_passed[$1]=$((suite_passed[$1] + $2))
    suite_failed[$1]=$((suite_failed[$1] + $3))
    suite_skipped[$1]=$((suite_skipped[$1] + $4))
    suite_programs[$1]=$((suite_programs[$1] + 1))
    passed=$((passed + $2))
    failed=$((failed + $3))
    skipped=$((skipped + $4))
}

step "compile tests/c/*_test.c with x86_64-w64-mingw32-gcc"
strict=(-std=c99 -Wall -Wextra -Wpedantic -Werror)
c_programs=()
for src in tests/c/*_test.c; do
    name="$(basename "$src" .c)"
    # -static: libgcc and winpthreads go into the program; filefetch.dll comes through its
    # import library, named as a file so that -static cannot pick libfilefetch.a instead.
    if x86_64-w64-mingw32-gcc "${strict[@]}" -Iinclude "$src" -o "$c_bin/$name.exe" \
        "$lib_dir/libfilefetch.dll.a" -lws2_32 -static -pthread; then
        echo "ok   compile $name"
        c_programs+=("$name")
    else
        echo "FAIL compile $name"
        count C 0 1 0
        failures+=("C $name: does not compile")
    fi
done
cp "$lib_dir/filefetch.dll" "$shim" "$c_bin/"

# --- run ----------------------------------------------------------------------------------
# Every directory a Windows program is started from gets the shim.
while IFS=$'\t' read -r _ _ _ exe _; do
    cp "$shim" "$(dirname "$exe")/"
done <"$work/executables.tsv"

logs="$work/logs"
rm -rf "$logs"
mkdir -p "$logs"

run_rust() { # run_rust <suite> <label> <exe> <dir>
    local suite="$1" label="$2" exe="$3" dir="$4"
    local log
    log="$logs/$(basename "$exe" .exe).log"
    local status=0 begun=$SECONDS
    # --show-output: what passing tests print, for their "SKIPPED ..." and "note: ..." lines.
    (cd "$dir" && timeout -k 10 "$limit" "$wine" "$exe" --show-output </dev/null) >"$log" 2>&1 ||
        status=$?
    local took="$((SECONDS - begun)) s"
    # libtest: "test result: ok. 17 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out"
    local result p=0 f=0 i=0
    result="$(grep -E '^test result: ' "$log" | tail -n 1 || true)"
    if [ -n "$result" ]; then
        p="$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$result")"
        f="$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$result")"
        i="$(sed -E 's/.* ([0-9]+) ignored.*/\1/' <<<"$result")"
    fi
    # A test that finds what it needs missing here (symbolic links under Wine) passes after
    # printing "SKIPPED <test>: <why>": it counts as skipped, like the ignored ones.
    local skips
    skips="$(grep -c '^SKIPPED ' "$log" || true)"
    p=$((p - skips))
    i=$((i + skips))
    if [ "$status" = 0 ] && [ -n "$result" ] && [ "$f" = 0 ]; then
        printf 'ok   %-34s %3d passed, %d skipped (%s)\n' "$label" "$p" "$i" "$took"
        grep -E '^(SKIPPED|note:) ' "$log" | sort -u | sed 's/^/       /' || true
        count "$suite" "$p" 0 "$i"
        return
    fi
    # Show why: the failures libtest lists, or the end of the output (long lines cut).
    if grep -q '^failures:$' "$log"; then
        sed -n '/^failures:$/,$p' "$log" | cut -c 1-1000
    else
        tail -n 40 "$log" | cut -c 1-1000
    fi
    local why="exit status $status"
    [ "$status" = 124 ] && why="timed out after ${limit}s"
    if [ -n "$result" ]; then
        printf 'FAIL %-34s %3d passed, %d failed, %d skipped (%s, %s)\n' "$label" "$p" "$f" \
            "$i" "$why" "$took"
        # A program that failed without a failing test (a crash at the end) still fails.
        [ "$f" = 0 ] && f=1
        count "$suite" "$p" "$f" "$i"
    else
        printf 'FAIL %-34s no test result (%s, %s)\n' "$label" "$why" "$took"
        count "$suite" 0 1 0
    fi
    # The names libtest lists in its last "failures:" block.
    local names name
    names="$(awk '/^failures:$/ { n = 0; inside = 1; next }
                  /^test result/ { inside = 0 }
                  inside && /^    [^ ]/ { names[n++] = substr($0, 5) }
                  END { for (k = 0; k < n; k++) print names[k] }' "$log")"
    if [ -n "$names" ]; then
        while read -r name; do
            failures+=("$label: $name")
        done <<<"$names"
    else
        failures+=("$label ($why)")
    fi
}

run_c() { # run_c <name>
    local name="$1" log="$logs/c-$1.log" run="$work/c-run"
    rm -rf "$run"
    mkdir -p "$run"
    local status=0
    (cd "$run" && timeout -k 10 "$limit" "$wine" "$c_bin/$name.exe" </dev/null) >"$log" 2>&1 ||
        status=$?
    # The programs end with "NAME: N passed, M failed" (checks inside the program).
    local summary
    summary="$(grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 || true)"
    summary="${summary%$'\r'}"
    if [ "$status" = 0 ] && [ -n "$summary" ] && [[ "$summary" == *" 0 failed" ]]; then
        c_checks=$((c_checks + $(sed 's/.*: \([0-9]*\) passed.*/\1/' <<<"$summary")))
        printf 'ok   %-34s (%s)\n' "C $name" "$summary"
        count C 1 0 0
    else
        cat "$log"
        local why="exit status $status"
        [ "$status" = 124 ] && why="timed out after ${limit}s"
        printf 'FAIL %-34s (%s%s)\n' "C $name" "$why" "${summary:+, $summary}"
        count C 0 1 0
        failures+=("C $name ($why${summary:+, $summary})")
    fi
}

step "run under Wine (at most ${limit}s per program)"
while IFS=$'\t' read -r kind suite label exe dir; do
    [ "$kind" = test ] || continue
    run_rust "$suite" "$label" "$exe" "$dir"
done <"$work/executables.tsv"
c_checks=0
for name in "${c_programs[@]}"; do
    run_c "$name"
done

# --- summary ------------------------------------------------------------------------------
step "summary"
for suite in core cli C; do
    what="test executables"
    [ "$suite" = C ] && what="programs, $c_checks checks inside them"
    printf '%-4s %5d passed, %d failed, %d skipped (%d %s)\n' "$suite:" \
        "${suite_passed[$suite]}" "${suite_failed[$suite]}" "${suite_skipped[$suite]}" \
        "${suite_programs[$suite]}" "$what"
done
if ((${#failures[@]})); then
    echo "failed:"
    printf '  %s\n' "${failures[@]}"
fi
echo "took $((SECONDS - started)) s"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
