#!/usr/bin/env bash
# The benchmark suite: filefetch against nginx + curl, a local copy, loopback TCP (iperf3)
# and the original Python scripts, all in one run on 127.0.0.1. Scenarios 1 and 3 also run
# against a second filefetch server started with --portable (subject filefetch-portable: the
# buffered send path every system other than Linux uses), alternating with the others, and
# scenario 4 measures both servers holding 2,000 stalled clients.
#
# Scenario 3 (1 KiB files, 32 clients, a connection per request) measures each server's CPU
# time per request (user + system, from /proc, over the server's threads and processes) and
# compares it with a floor server (bench/floor.c, compiled here with gcc -O2: blocking
# accept, read the request, one write of header + 1 KiB from memory, close; one thread, no
# logging), which runs in the same rounds: filefetch, nginx, floor, filefetch-portable.
# Requests/s and latency are recorded too, but on 2 cores the load generator shares the CPU
# with the server, so they measure both. After the timed rounds, strace -f -c is attached to
# the filefetch server and to the floor for BENCH_STRACE_SECS seconds of the same load and
# each system call's count is divided by the requests served meanwhile.
#
#   ./bench/run.sh            # everything, 5 runs of each timed scenario (about 3 to 7 minutes)
#   BENCH_RUNS=3 ./bench/run.sh
#   BENCH_RUNS=1 BENCH_LOAD_SECS=1 ./bench/run.sh   # a quick check that everything runs
#
# Installs what it lacks (nginx-light, curl, iperf3, time, strace, gcc: system packages;
# matplotlib in bench/.venv), builds the release binaries and the floor, runs every scenario
# alternating the subjects, then prints a table of medians and ratios (and the system calls
# per request) and writes bench/results/latest.{md,png,tsv}. Every process it starts is
# stopped on exit, whatever the exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
RUNS=${BENCH_RUNS:-5}
LOAD_SECS=${BENCH_LOAD_SECS:-5}
# How long the load generator runs while strace counts the servers' system calls.
STRACE_SECS=${BENCH_STRACE_SECS:-2}
BIG_MIB=1024
# Scenario 4's stalled clients: how many, and how long the load generator holds them (the
# server's RSS is read within that time, once it has settled).
STALL_CONNS=2000
STALL_SECS=5
ORIG_MIB=${BENCH_ORIG_MIB:-300}
RESULTS=$HERE/results
RELEASE=$REPO/target/release
FF=$RELEASE/filefetch
LOADGEN=$RELEASE/filefetch-loadgen

PIDS=()
WORK=""
DEST=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    [[ -n $WORK ]] && rm -rf "$WORK"
    [[ -n $DEST ]] && rm -rf "$DEST"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- what the suite needs
install_packages() {
    local missing=()
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
    command -v curl >/dev/null || missing+=(curl)
    command -v iperf3 >/dev/null || missing+=(iperf3)
    [[ -x /usr/bin/time ]] || missing+=(time)
    command -v strace >/dev/null || missing+=(strace)
    command -v gcc >/dev/null || missing+=(gcc)
    command -v python3 >/dev/null || missing+=(python3 python3-venv)
    ((${#missing[@]} == 0)) && return
    say "installing ${missing[*]}"
    [[ $(id -u) == 0 ]] || die "need root to install ${missing[*]}"
    # Keep the packages' own services (nginx on port 80) from starting: the suite runs its
    # own nginx from a generated configuration.
    local policy=/usr/sbin/policy-rc.d created=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
    fi
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    ((created)) && rm -f "$policy"
    return 0
}

setup_venv() {
    local venv=$HERE/.venv
    if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
        say "installing matplotlib into bench/.venv"
        python3 -m venv "$venv" &&
            "$venv/bin/pip" install -q --disable-pip-version-check matplotlib >/dev/null ||
            echo "bench: matplotlib unavailable; the plot will be skipped" >&2
    fi
    if [[ -x $venv/bin/python ]]; then PY=$venv/bin/python; else PY=python3; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (at most 10 s) until something accepts connections on the port.
wait_port() {
    local i
    for ((i = 0; i < 200; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    die "nothing listening on port $1"
}

now_ns() { date +%s%N; }

# Records one figure: scenario, subject, metric, value.
rec() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RAW"; }

# Runs a command (bounded by a timeout), records its wall time in seconds and, when a
# metric name is given, its peak RSS in KiB. Fails the suite if it fails.
timed() {
    local scenario=$1 subject=$2 rss_metric=$3
    shift 3
    local t0 t1 tf=$WORK/time.out
    t0=$(now_ns)
    if ! timeout 120 /usr/bin/time -f '%M' -o "$tf" "$@" >"$WORK/cmd.out" 2>&1; then
        cat "$WORK/cmd.out" >&2
        die "$subject failed: $*"
    fi
    t1=$(now_ns)
    rec "$scenario" "$subject" seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')"
    [[ -n $rss_metric ]] && rec "$scenario" "$subject" "$rss_metric" "$(tail -1 "$tf")"
    return 0
}

check_size() {
    local got
    got=$(stat -c %s "$1")
    [[ $got == "$2" ]] || die "$1 is $got bytes, expected $2"
}

# CPU time (user + system, in clock ticks) of a process and its children.
cpu_ticks() {
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$total"
}

vm() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# Sockets a process holds open (its listening sockets included).
sockets() { find "/proc/$1/fd" -lname 'socket:*' 2>/dev/null | wc -l; }
# The same over a process and its children (nginx's workers).
sockets_tree() {
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        total=$((total + $(sockets "$pid")))
    done
    echo "$total"
}

# Memory the kernel has charged to TCP sockets, machine-wide (other processes' included),
# in KiB.
tcp_mem_kib() { awk -v p="$(getconf PAGESIZE)" '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) * p / 1024 }' /proc/net/sockstat; }

# Sum of a field (VmRSS, VmHWM) over a process and its children (nginx's workers).
vm_tree() {
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        total=$((total + $(vm "$pid" "$2")))
    done
    echo "$total"
}

start_filefetch() { # port, extra options...
    local port=$1
    shift
    "$FF" serve "$port" --bind 127.0.0.1 --root "$WORK/root" "$@" >>"$WORK/filefetch.log" 2>&1 &
    FF_PID=$!
    PIDS+=("$FF_PID")
    wait_port "$port"
}

stop() { # pid
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

start_nginx() { # port
    local dir=$WORK/nginx
    mkdir -p "$dir"
    sed -e "s|@WORKERS@|$(nproc)|; s|@DIR@|$dir|g; s|@ROOT@|$WORK/root|; s|@PORT@|$1|" \
        "$HERE/nginx.conf.in" >"$dir/nginx.conf"
    nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/nginx-error.log" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_port "$1"
}

# Runs the load generator against a server; records the key=value figures it prints and
# the server's CPU time per request (all its threads and processes).
loadgen() { # scenario subject server-pid args...
    local scenario=$1 subject=$2 pid=$3 line kv before after requests
    shift 3
    before=$(cpu_ticks "$pid")
    line=$(timeout 120 "$LOADGEN" run "$@" 2>>"$WORK/loadgen.err" | tail -1)
    after=$(cpu_ticks "$pid")
    [[ $line == requests=* ]] || die "load generator failed: $(tail -3 "$WORK/loadgen.err")"
    for kv in $line; do
        rec "$scenario" "$subject" "${kv%%=*}" "${kv#*=}"
    done
    requests=${line#requests=}
    requests=${requests%% *}
    rec "$scenario" "$subject" server_cpu_us_per_request \
        "$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" 'BEGIN { printf "%.2f", t * 1e6 / hz / (n > 0 ? n : 1) }')"
}

# Scenario 3's floor (bench/floor.c): the kernel's per-connection work and nothing else.
start_floor() { # port
    "$WORK/floor" "$1" &
    FLOOR_PID=$!
    PIDS+=("$FLOOR_PID")
    wait_port "$1"
}

# Counts a server's system calls per request: strace -f -c attached to it (all its threads)
# while the load generator runs STRACE_SECS seconds of scenario 3's load against it, then
# detached (SIGTERM: strace detaches and writes its summary), leaving the server running.
# Each call's count is divided by the requests served meanwhile. Tracing slows every call
# several times over, so the requests/s under strace mean nothing; the counts do, and the
# times only as shares (those of calls that wait, such as futex or epoll_wait, include the
# waiting).
syscalls_per_request() { # subject pid port
    local subject=$1 pid=$2 port=$3 out=$WORK/strace.$1 line requests st i
    : >"$out.err"
    timeout -k 5 120 strace -f -c -p "$pid" -o "$out.txt" 2>"$out.err" &
    st=$!
    PIDS+=("$st")
    for ((i = 0; i < 200; i++)); do grep -qs attached "$out.err" && break; sleep 0.05; done
    if ! grep -qs attached "$out.err"; then
        stop "$st"
        echo "bench: strace could not attach to $subject: $(cat "$out.err")" >&2
        return 0
    fi
    line=$(timeout 60 "$LOADGEN" run --addr "127.0.0.1:$port" --proto filefetch --name 1k.bin \
        --concurrency 32 --seconds "$STRACE_SECS" --expect-bytes 1024 2>>"$WORK/loadgen.err" | tail -1) || true
    stop "$st"
    kill -0 "$pid" 2>/dev/null || die "$subject stopped while strace was attached"
    wait_port "$port" # still serving, strace gone
    [[ $line == requests=* ]] || die "load generator failed under strace: $(tail -3 "$WORK/loadgen.err")"
    requests=${line#requests=}
    requests=${requests%% *}
    ((requests > 0)) || die "no requests served to $subject under strace"
    rec s3 "$subject" strace_requests "$requests"
    rec s3 "$subject" strace_errors "$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")"
    # strace -c's table: % time, seconds, usecs/call, calls, [errors,] syscall.
    awk -v n="$requests" '
        $1 ~ /^[0-9.]+$/ && $NF != "total" && (NF == 5 || NF == 6) {
            printf "syscalls_per_request:%s\t%.4f\n", $NF, $4 / n
            printf "syscall_time_pct:%s\t%s\n", $NF, $1
            printf "syscall_us_per_call:%s\t%s\n", $NF, $3
        }' "$out.txt" |
        while IFS=$'\t' read -r metric value; do rec s3 "$subject" "$metric" "$value"; done
}

# ---------------------------------------------------------------- set-up
install_packages
setup_venv
ulimit -n "$(ulimit -Hn)"
# 10,000 idle connections need as many descriptors in the load generator, and the server
# fits its connection limit to two descriptors a connection (its socket and its file).
if (($(ulimit -n) < 24000)); then
    ulimit -Hn 65536 2>/dev/null && ulimit -n 65536 ||
        echo "bench: open file limit $(ulimit -n); the 10,000-connection figure may suffer" >&2
fi

say "building release binaries"
(cd "$REPO" && cargo build --release -q -p filefetch-cli -p filefetch-loadgen)

WORK=$(mktemp -d /var/tmp/filefetch-bench.XXXXXX)
DEST=$(mktemp -d /dev/shm/filefetch-bench.XXXXXX)
RAW=$WORK/raw.tsv
mkdir -p "$WORK/root" "$RESULTS"
chmod 755 "$WORK" # nginx's workers run as an unprivileged user
: >"$RAW"
gcc -O2 -o "$WORK/floor" "$HERE/floor.c" || die "cannot compile bench/floor.c"

rec meta machine cpu "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
rec meta machine cores "$(nproc)"
rec meta machine memory_gib "$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
rec meta machine kernel "$(uname -r)"
rec meta machine os "$(. /etc/os-release && echo "$PRETTY_NAME")"
rec meta machine virtualization "$(systemd-detect-virt 2>/dev/null || echo unknown)"
rec meta machine nginx "$(nginx -v 2>&1 | sed 's|.*/||')"
rec meta machine curl "$(curl --version | head -1 | cut -d' ' -f2)"
rec meta machine iperf3 "$(iperf3 --version | head -1 | cut -d' ' -f2)"
rec meta machine python "$(python3 --version | cut -d' ' -f2)"
rec meta machine strace "$(strace -V | head -1 | awk '{ print $NF }')"
# nginx's access log, as bench/nginx.conf.in sets it (the report says which).
access_log=$(sed -n 's/^[[:space:]]*access_log[[:space:]]\{1,\}\([^;]*\);.*/\1/p' "$HERE/nginx.conf.in" | head -1)
case $access_log in
"" | off) access_log="off" ;;
*buffer=* | *flush=*) access_log="on, buffered ($access_log)" ;;
*) access_log="on, unbuffered: a write per request" ;;
esac
rec meta suite nginx_access_log "$access_log"
rec meta machine loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
rec meta machine date "$(date -u +%Y-%m-%dT%H:%MZ)"
rec meta suite runs "$RUNS"

say "creating test files"
head -c $((BIG_MIB << 20)) /dev/urandom >"$WORK/root/big.bin"
head -c $((ORIG_MIB << 20)) /dev/urandom >"$WORK/root/orig.bin"
head -c 1024 /dev/urandom >"$WORK/root/1k.bin"
cat "$WORK/root/big.bin" "$WORK/root/orig.bin" >/dev/null # into the page cache
BIG=$((BIG_MIB << 20))
ORIG=$((ORIG_MIB << 20))
# The original scripts, where the interoperability tests find them too.
ORIGINAL=${FILEFETCH_REFERENCE:-$REPO/../shared/reference}/original
[[ -f $ORIGINAL/server.py && -f $ORIGINAL/client.py ]] ||
    die "the original scripts are expected in $ORIGINAL (set FILEFETCH_REFERENCE)"
cp "$ORIGINAL/server.py" "$ORIGINAL/client.py" "$WORK/"

FF_PORT=$(free_port)
FFP_PORT=$(free_port)
NGINX_PORT=$(free_port)
FLOOR_PORT=$(free_port)
start_nginx "$NGINX_PORT"

# The second filefetch server, on the portable (buffered) send path; its PID is FFP_PID.
start_portable() { # extra options...
    start_filefetch "$FFP_PORT" --portable "$@"
    FFP_PID=$FF_PID
}

# ---------------------------------------------------------------- 1: one 1 GiB file to tmpfs
say "scenario 1: 1 GiB, page-cached, onto tmpfs ($RUNS runs each)"
start_portable
start_filefetch "$FF_PORT"
# One untimed round first: the first 1 GiB written to a fresh tmpfs costs every subject more.
"$FF" fetch 127.0.0.1 "$FF_PORT" big.bin -o "$DEST/big.bin" >/dev/null
rm -f "$DEST/big.bin"
"$FF" fetch 127.0.0.1 "$FFP_PORT" big.bin -o "$DEST/big.bin" >/dev/null
rm -f "$DEST/big.bin"
curl -sSf -o "$DEST/big.bin" "http://127.0.0.1:$NGINX_PORT/big.bin"
rm -f "$DEST/big.bin"
dd if="$WORK/root/big.bin" of="$DEST/big.bin" bs=4M status=none
for ((run = 1; run <= RUNS; run++)); do
    rm -f "$DEST/big.bin"
    timed s1 filefetch client_rss_kib "$FF" fetch 127.0.0.1 "$FF_PORT" big.bin -o "$DEST/big.bin"
    check_size "$DEST/big.bin" "$BIG"
    ((run == 1)) && { cmp -s "$WORK/root/big.bin" "$DEST/big.bin" || die "filefetch: contents differ"; }
    rm -f "$DEST/big.bin"
    timed s1 nginx+curl client_rss_kib curl -sSf -o "$DEST/big.bin" "http://127.0.0.1:$NGINX_PORT/big.bin"
    check_size "$DEST/big.bin" "$BIG"
    rm -f "$DEST/big.bin"
    timed s1 copy "" dd if="$WORK/root/big.bin" of="$DEST/big.bin" bs=4M
    check_size "$DEST/big.bin" "$BIG"
    rm -f "$DEST/big.bin"
    # Loopback TCP alone: 1 GiB from memory to a reader that discards it.
    IPERF_PORT=$(free_port)
    iperf3 -s -1 -B 127.0.0.1 -p "$IPERF_PORT" >/dev/null 2>&1 &
    IPERF_PID=$!
    PIDS+=("$IPERF_PID")
    sleep 0.2
    secs=$(timeout 60 iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -n "$BIG" -Z -J |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["seconds"])')
    rec s1 iperf3 seconds "$secs"
    stop "$IPERF_PID"
    # The same client against the server on its portable (buffered) send path.
    rm -f "$DEST/big.bin"
    timed s1 filefetch-portable client_rss_kib "$FF" fetch 127.0.0.1 "$FFP_PORT" big.bin -o "$DEST/big.bin"
    check_size "$DEST/big.bin" "$BIG"
    ((run == 1)) && { cmp -s "$WORK/root/big.bin" "$DEST/big.bin" || die "filefetch-portable: contents differ"; }
    rm -f "$DEST/big.bin"
done
# 4: what serving the 1 GiB file cost the servers (peak over all the runs above).
rec s4 filefetch server_peak_rss_kib "$(vm "$FF_PID" VmHWM)"
rec s4 filefetch-portable server_peak_rss_kib "$(vm "$FFP_PID" VmHWM)"
rec s4 nginx server_peak_rss_kib "$(vm_tree "$NGINX_PID" VmHWM)"
stop "$FF_PID"
stop "$FFP_PID"

# ---------------------------------------------------------------- 2: against the originals
say "scenario 2: ${ORIG_MIB} MiB, filefetch against server.py + client.py ($RUNS runs each)"
ORIG_PORT=$(free_port)
(cd "$WORK/root" && exec python3 -u "$WORK/server.py" "$ORIG_PORT" >"$WORK/server.py.log" 2>&1) &
ORIG_PID=$!
PIDS+=("$ORIG_PID")
for ((i = 0; i < 100; i++)); do grep -q Waiting "$WORK/server.py.log" && break; sleep 0.05; done
start_filefetch "$FF_PORT"
for ((run = 1; run <= RUNS; run++)); do
    rm -f "$DEST/orig.bin"
    timed s2 filefetch "" "$FF" fetch 127.0.0.1 "$FF_PORT" orig.bin -o "$DEST/orig.bin"
    check_size "$DEST/orig.bin" "$ORIG"
    rm -f "$DEST/orig.bin"
    # At this size server.py takes close to client.py's 1 s timeout before its first byte,
    # so the original pair sometimes fails on its own; such a run is retried (and counted).
    for ((attempt = 1; ; attempt++)); do
        rm -f "$DEST/orig.bin"
        t0=$(now_ns)
        if (cd "$DEST" && timeout 120 python3 "$WORK/client.py" 127.0.0.1 "$ORIG_PORT" orig.bin) \
            >"$WORK/cmd.out" 2>&1 && grep -q "Download succeed" "$WORK/cmd.out"; then
            t1=$(now_ns)
            rec s2 original seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')"
            break
        fi
        rec s2 original failed_attempts 1
        ((attempt < 3)) || die "client.py failed 3 times in a row (try a smaller BENCH_ORIG_MIB): $(cat "$WORK/cmd.out")"
    done
    check_size "$DEST/orig.bin" "$ORIG"
done
rm -f "$DEST/orig.bin"
rec s4 original server_peak_rss_kib "$(vm "$ORIG_PID" VmHWM)"
stop "$ORIG_PID"
stop "$FF_PID"

# ---------------------------------------------------------------- 3: small files under load
say "scenario 3: 1 KiB files, 32 clients, a connection per file (${LOAD_SECS} s x $RUNS each)"
start_portable
start_filefetch "$FF_PORT"
start_floor "$FLOOR_PORT"
# Each round runs filefetch, nginx and the floor back to back, so that their ratios within a
# round compare servers that met the machine in about the same state.
for ((run = 1; run <= RUNS; run++)); do
    loadgen s3 filefetch "$FF_PID" --addr "127.0.0.1:$FF_PORT" --proto filefetch --name 1k.bin \
        --concurrency 32 --seconds "$LOAD_SECS" --expect-bytes 1024
    loadgen s3 nginx "$NGINX_PID" --addr "127.0.0.1:$NGINX_PORT" --proto http --name 1k.bin \
        --concurrency 32 --seconds "$LOAD_SECS" --expect-bytes 1024
    loadgen s3 floor "$FLOOR_PID" --addr "127.0.0.1:$FLOOR_PORT" --proto filefetch --name 1k.bin \
        --concurrency 32 --seconds "$LOAD_SECS" --expect-bytes 1024
    loadgen s3 filefetch-portable "$FFP_PID" --addr "127.0.0.1:$FFP_PORT" --proto filefetch --name 1k.bin \
        --concurrency 32 --seconds "$LOAD_SECS" --expect-bytes 1024
done
say "scenario 3: system calls per request (strace -f -c, ${STRACE_SECS} s each)"
syscalls_per_request filefetch "$FF_PID" "$FF_PORT"
syscalls_per_request floor "$FLOOR_PID" "$FLOOR_PORT"
stop "$FF_PID"
stop "$FFP_PID"
stop "$FLOOR_PID"

# ---------------------------------------------------------------- 5: idle-connection flood
say "scenario 5: 1 KiB fetches while 1,000 idle connections sit open"
start_filefetch "$FF_PORT"
for ((run = 1; run <= 2; run++)); do
    loadgen s5 filefetch "$FF_PID" --addr "127.0.0.1:$FF_PORT" --proto filefetch --name 1k.bin \
        --concurrency 1 --seconds "$LOAD_SECS" --expect-bytes 1024 --idle 1000
    loadgen s5 nginx "$NGINX_PID" --addr "127.0.0.1:$NGINX_PORT" --proto http --name 1k.bin \
        --concurrency 1 --seconds "$LOAD_SECS" --expect-bytes 1024 --idle 1000
done
stop "$FF_PID"

# ---------------------------------------------------------------- 4: 10,000 idle connections
say "scenario 4: server memory holding 10,000 idle connections"
# The request deadline is raised so that all 10,000 are held at once (by default each is
# dropped a second after it connects without sending a request).
start_filefetch "$FF_PORT" --request-timeout 60
hold_idle() { # subject port pid
    local out=$WORK/hold.out before base_sockets
    before=$(vm_tree "$3" VmRSS)
    base_sockets=$(sockets_tree "$3")
    timeout 60 "$LOADGEN" hold --addr "127.0.0.1:$2" --connections 10000 --seconds 4 >"$out" 2>>"$WORK/loadgen.err" &
    local hold=$!
    PIDS+=("$hold")
    for ((i = 0; i < 400; i++)); do grep -qs '^open=' "$out" && break; sleep 0.05; done
    sleep 1
    rec s4 "$1" idle_10k_open "$(sed -n 's/^open=//p' "$out")"
    # Held by the server itself (the rest, if any, wait in its listen backlog).
    rec s4 "$1" idle_10k_held "$(($(sockets_tree "$3") - base_sockets))"
    rec s4 "$1" idle_10k_rss_kib "$(vm_tree "$3" VmRSS)"
    rec s4 "$1" idle_base_rss_kib "$before"
    wait "$hold" || true
}
hold_idle filefetch "$FF_PORT" "$FF_PID"
stop "$FF_PID"
hold_idle nginx "$NGINX_PORT" "$NGINX_PID"
stop "$NGINX_PID"

# ---------------------------------------------------------------- 4: 2,000 stalled clients
say "scenario 4: server memory holding $STALL_CONNS stalled clients (fast path, portable path)"
# Each client requests the 1 GiB file and never reads, so the server's sends stall once the
# socket buffers are full; the server holds every one of them, mid-transfer, for as long as
# its send timeout (raised well past the measurement) allows. The clients announce an
# Ethernet-sized segment (1448 bytes) and ask for a 4 KiB receive buffer: over loopback's
# 64 KiB segments the kernel would otherwise give each server socket a send buffer of up to
# 4 MiB, 2,000 of them more than the machine's whole TCP memory limit. Kernel buffers do not
# count in RSS either way; the server's RSS is read once the clients are all connected and
# it and the server's socket count have held still for 1 s (at most 4 s), while they wait.
stall_clients() { # subject port pid
    local out=$WORK/stall.out base base_sockets tcp_before prev="" cur same=0 i
    base=$(vm "$3" VmRSS)
    base_sockets=$(sockets "$3")
    tcp_before=$(tcp_mem_kib)
    : >"$out"
    timeout 90 "$LOADGEN" stall --addr "127.0.0.1:$2" --connections "$STALL_CONNS" --name big.bin \
        --seconds "$STALL_SECS" --mss 1448 --recv-buffer 4096 >"$out" 2>>"$WORK/loadgen.err" &
    local st=$!
    PIDS+=("$st")
    for ((i = 0; i < 800; i++)); do grep -qs '^open=' "$out" && break; sleep 0.05; done
    for ((i = 0; i < 16 && same < 4; i++)); do
        sleep 0.25
        cur="$(vm "$3" VmRSS) $(sockets "$3")"
        if [[ $cur == "$prev" ]]; then same=$((same + 1)); else same=0; fi
        prev=$cur
    done
    rec s4 "$1" stall_2k_rss_kib "$(vm "$3" VmRSS)"
    rec s4 "$1" stall_2k_server_connections "$(($(sockets "$3") - base_sockets))"
    rec s4 "$1" stall_2k_settle_seconds "$(awk -v n="$i" 'BEGIN { printf "%.2f", n * 0.25 }')"
    rec s4 "$1" stall_2k_kernel_tcp_kib "$(($(tcp_mem_kib) - tcp_before))"
    rec s4 "$1" stall_base_rss_kib "$base"
    rec s4 "$1" stall_2k_open "$(sed -n 's/^open=//p' "$out")"
    # The load generator's own count after holding them STALL_SECS: the server dropped none.
    wait "$st" || true
    rec s4 "$1" stall_2k_still_open "$(tail -1 "$out" | sed -n 's/.*still_open=//p')"
}
start_filefetch "$FF_PORT" --send-timeout 300
stall_clients filefetch "$FF_PORT" "$FF_PID"
stop "$FF_PID"
start_portable --send-timeout 300
stall_clients filefetch-portable "$FFP_PORT" "$FFP_PID"
stop "$FFP_PID"

rec meta machine loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
cp "$RAW" "$RESULTS/latest.tsv"
"$PY" "$HERE/report.py" "$RESULTS/latest.tsv" --markdown "$RESULTS/latest.md" --plot "$RESULTS/latest.png"
