"""Turns the figures bench/run.sh records into a table of medians and ratios (printed and
written as Markdown) and a plot.

    report.py RAW.tsv [--markdown OUT.md] [--plot OUT.png]

RAW.tsv has one figure per line: scenario, subject, metric, value. Only the standard library
is needed for the table; the plot needs matplotlib and is skipped without it.
"""

import argparse
import statistics
import sys
from collections import defaultdict

MIB = 1024.0  # KiB per MiB


def load(path):
    figures = defaultdict(list)
    meta = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            scenario, subject, metric, value = parts
            if scenario == "meta":
                meta[metric] = value
                continue
            try:
                figures[(scenario, subject, metric)].append(float(value))
            except ValueError:
                pass
    return figures, meta


class Figures:
    def __init__(self, figures):
        self.figures = figures

    def runs(self, scenario, subject, metric):
        return self.figures.get((scenario, subject, metric), [])

    def median(self, scenario, subject, metric):
        values = self.runs(scenario, subject, metric)
        return statistics.median(values) if values else float("nan")

    def best(self, scenario, subject, metric):
        values = self.runs(scenario, subject, metric)
        return min(values) if values else float("nan")

    def spread(self, scenario, subject, metric):
        values = self.runs(scenario, subject, metric)
        if len(values) < 2:
            return ""
        return f" ({min(values):.3g}-{max(values):.3g})"


def rows(fig, meta):
    """(scenario, what, filefetch, anchor, ratio, target, met) for each target."""
    m = fig.median
    out = []

    ff1, curl1, dd1 = m("s1", "filefetch", "seconds"), m("s1", "nginx+curl", "seconds"), m("s1", "copy", "seconds")
    iperf = m("s1", "iperf3", "seconds")
    r = ff1 / curl1
    out.append(("1", "1 GiB onto tmpfs: time vs nginx + curl",
                f"{ff1:.3f} s{fig.spread('s1', 'filefetch', 'seconds')}",
                f"{curl1:.3f} s{fig.spread('s1', 'nginx+curl', 'seconds')}",
                f"{r:.2f}x", "<= 0.65x", r <= 0.65))
    r = ff1 / dd1
    out.append(("1", "1 GiB onto tmpfs: time vs local copy (dd bs=4M)",
                f"{ff1:.3f} s", f"{dd1:.3f} s{fig.spread('s1', 'copy', 'seconds')}",
                f"{r:.2f}x", "<= 1.3x", r <= 1.3))
    # On a machine with other load, the fastest run of each is the least disturbed one.
    b_ff, b_curl, b_dd = (fig.best("s1", s, "seconds") for s in ("filefetch", "nginx+curl", "copy"))
    out.append(("1", "same two ratios from the fastest run of each (least disturbed by other load)",
                f"{b_ff:.3f} s", f"curl {b_curl:.3f} s, dd {b_dd:.3f} s",
                f"{b_ff / b_curl:.2f}x, {b_ff / b_dd:.2f}x", "<= 0.65x, <= 1.3x",
                b_ff / b_curl <= 0.65 and b_ff / b_dd <= 1.3))
    out.append(("1", "loopback TCP alone (iperf3, 1 GiB, not written)", "",
                f"{iperf:.3f} s ({8 * 1.073741824 / iperf:.1f} Gbit/s)", f"{ff1 / iperf:.2f}x", "(floor)", None))
    # The second filefetch server, on the portable (buffered) send path; the same client.
    p1 = m("s1", "filefetch-portable", "seconds")
    if fig.runs("s1", "filefetch-portable", "seconds"):
        out.append(("1", "same 1 GiB, server on its portable (buffered) send path: time vs the fast path (sendfile)",
                    f"{p1:.3f} s{fig.spread('s1', 'filefetch-portable', 'seconds')}",
                    f"fast path {ff1:.3f} s; nginx + curl {curl1:.3f} s",
                    f"{p1 / ff1:.2f}x fast ({p1 / curl1:.2f}x curl)", "", None))

    ff2, orig2 = m("s2", "filefetch", "seconds"), m("s2", "original", "seconds")
    r = orig2 / ff2
    out.append(("2", "largest file the originals move: speed-up over server.py + client.py",
                f"{ff2:.3f} s{fig.spread('s2', 'filefetch', 'seconds')}",
                f"{orig2:.3f} s{fig.spread('s2', 'original', 'seconds')}",
                f"{r:.1f}x faster", ">= 5x", r >= 5))
    failed2 = sum(fig.runs("s2", "original", "failed_attempts"))
    if failed2:
        out.append(("2", "client.py attempts that timed out against server.py (retried)", "",
                    f"{failed2:.0f}", "", "", None))

    out.extend(scenario3(fig, meta))

    srv = max(fig.runs("s4", "filefetch", "server_peak_rss_kib") or [float("nan")]) / MIB
    out.append(("4", "server peak RSS serving the 1 GiB file",
                f"{srv:.1f} MiB",
                f"nginx {m('s4', 'nginx', 'server_peak_rss_kib') / MIB:.1f} MiB (all processes); "
                f"server.py {m('s4', 'original', 'server_peak_rss_kib') / MIB:.0f} MiB "
                "serving the scenario 2 file",
                "", "<= 16 MiB", srv <= 16))
    if fig.runs("s4", "filefetch-portable", "server_peak_rss_kib"):
        srv_p = max(fig.runs("s4", "filefetch-portable", "server_peak_rss_kib")) / MIB
        out.append(("4", "same, server on its portable (buffered) send path",
                     f"{srv_p:.1f} MiB", f"fast path {srv:.1f} MiB", "", "<= 16 MiB", srv_p <= 16))
    cli = max(fig.runs("s1", "filefetch", "client_rss_kib") or [float("nan")]) / MIB
    out.append(("4", "client peak RSS fetching the 1 GiB file",
                f"{cli:.1f} MiB", f"curl {m('s1', 'nginx+curl', 'client_rss_kib') / MIB:.1f} MiB",
                "", "<= 16 MiB", cli <= 16))
    idle = m("s4", "filefetch", "idle_10k_rss_kib") / MIB
    opened = m("s4", "filefetch", "idle_10k_open")
    held = m("s4", "filefetch", "idle_10k_held")
    nginx_held = m("s4", "nginx", "idle_10k_held")
    out.append(("4", "server RSS holding 10,000 idle connections",
                f"{idle:.1f} MiB ({opened:.0f} open, {held:.0f} held by the server)",
                f"nginx {m('s4', 'nginx', 'idle_10k_rss_kib') / MIB:.1f} MiB "
                f"({m('s4', 'nginx', 'idle_10k_open'):.0f} open, {nginx_held:.0f} held)",
                "", "<= 64 MiB", idle <= 64 and held >= 10000))

    # Stalled clients: each asked for the 1 GiB file and reads nothing. Held: the fewest of
    # the load generator's open connections, the server's, and those still open at the end.
    stalled = {}
    for subject in ("filefetch", "filefetch-portable"):
        if not fig.runs("s4", subject, "stall_2k_rss_kib"):
            continue
        rss = m("s4", subject, "stall_2k_rss_kib") / MIB
        base = m("s4", subject, "stall_base_rss_kib") / MIB
        held = min(m("s4", subject, k) for k in ("stall_2k_open", "stall_2k_server_connections",
                                                   "stall_2k_still_open"))
        per = (rss - base) * MIB / held if held > 0 else float("nan")
        stalled[subject] = (rss, base, held, per)
    if "filefetch" in stalled:
        rss, base, held, per = stalled["filefetch"]
        out.append(("4", "server RSS holding 2,000 stalled clients (each asked for the 1 GiB file, "
                         "reads nothing): fast path (sendfile)",
                    f"{rss:.1f} MiB ({held:.0f} held)", f"{base:.1f} MiB before: {per:.1f} KiB a client",
                    "", "< 64 MiB", rss < 64 and held >= 2000))
    if "filefetch-portable" in stalled:
        rss, base, held, per = stalled["filefetch-portable"]
        fast = stalled.get("filefetch", (float("nan"),))[0]
        out.append(("4", "same, portable (buffered) send path",
                    f"{rss:.1f} MiB ({held:.0f} held)",
                    f"{base:.1f} MiB before: {per:.1f} KiB a client; fast path {fast:.1f} MiB",
                    f"{rss / fast:.2f}x fast", "< 64 MiB", rss < 64 and held >= 2000))
    if stalled:
        kern = {s: m("s4", s, "stall_2k_kernel_tcp_kib") / MIB for s in stalled}
        out.append(("4", "same, kernel TCP memory the stalled connections took (not in RSS; machine-wide count)",
                    ", ".join(f"{'portable' if s.endswith('portable') else 'fast'} {v:.0f} MiB" for s, v in kern.items()),
                    "", "", "", None))

    p99 = max(fig.runs("s5", "filefetch", "p99_ms") or [float("nan")])
    errs = sum(fig.runs("s5", "filefetch", "errors"))
    out.append(("5", "1 KiB fetches during a 1,000-connection idle flood: worst p99, errors",
                f"{p99:.2f} ms, {errs:.0f} errors",
                f"nginx {max(fig.runs('s5', 'nginx', 'p99_ms') or [float('nan')]):.2f} ms, "
                f"{sum(fig.runs('s5', 'nginx', 'errors')):.0f} errors",
                "", "<= 10 ms, 0 errors", p99 <= 10 and errs == 0))
    return out

def round_ratios(fig, scenario, metric, a, b):
    """a/b for each round: the suite runs the subjects of a round back to back, in the same
    order every round, so the i-th run of each belongs to the i-th round."""
    return [x / y for x, y in zip(fig.runs(scenario, a, metric), fig.runs(scenario, b, metric)) if y > 0]


def scenario3(fig, meta):
    """Scenario 3's rows: server CPU time per request against the floor (the headline, when
    the run has the floor), then requests/s, latency and the load generator's share."""
    m = fig.median
    out = []
    cpu = "server_cpu_us_per_request"
    cpu_ff, cpu_ng, cpu_fl = m("s3", "filefetch", cpu), m("s3", "nginx", cpu), m("s3", "floor", cpu)
    has_floor = bool(fig.runs("s3", "floor", cpu))
    access_log = meta.get("nginx_access_log")
    nginx_label = f"nginx (access_log {access_log})" if access_log else "nginx"
    if has_floor:
        r = cpu_ff / cpu_fl
        out.append(("3", "1 KiB files, 32 clients, connection per file: server CPU time per request "
                         "(user + system) vs the floor (bench/floor.c: accept, read, one write, close)",
                    f"{cpu_ff:.1f} us{fig.spread('s3', 'filefetch', cpu)}",
                    f"floor {cpu_fl:.1f} us{fig.spread('s3', 'floor', cpu)}",
                    f"{r:.2f}x", "<= 1.2x", r <= 1.2))
        per_round = round_ratios(fig, "s3", cpu, "filefetch", "floor")
        if per_round:
            p = statistics.median(per_round)
            out.append(("3", "same, median of the per-round ratios (filefetch, nginx and the floor "
                             "run back to back in each round)", "", "",
                        f"{p:.2f}x ({min(per_round):.2f}-{max(per_round):.2f})", "<= 1.2x", p <= 1.2))
        ng_round = round_ratios(fig, "s3", cpu, "nginx", "floor")
        out.append(("3", f"same, {nginx_label}: server CPU time per request (all its processes)",
                    f"{cpu_ff:.1f} us",
                    f"nginx {cpu_ng:.1f} us{fig.spread('s3', 'nginx', cpu)}",
                    f"nginx {cpu_ng / cpu_fl:.2f}x floor"
                    + (f" (per round {statistics.median(ng_round):.2f}x)" if ng_round else "")
                    + f"; filefetch {cpu_ff / cpu_ng:.2f}x nginx", "", None))
    else:
        out.append(("3", "1 KiB files, 32 clients, connection per file: server CPU time per request "
                         "(user + system)",
                    f"{cpu_ff:.1f} us", f"{nginx_label} {cpu_ng:.1f} us", f"{cpu_ff / cpu_ng:.2f}x", "", None))

    # Requests/s: on 2 cores the load generator takes about as much CPU as the server, so
    # these measure the pair; no target.
    ff3, ng3, fl3 = m("s3", "filefetch", "rps"), m("s3", "nginx", "rps"), m("s3", "floor", "rps")
    floor_rps = f"; floor {fl3:,.0f}/s" if has_floor else ""
    out.append(("3", "same load: requests/s vs nginx (the load generator shares the 2 cores)",
                f"{ff3:,.0f}/s{fig.spread('s3', 'filefetch', 'rps')}",
                f"nginx {ng3:,.0f}/s{fig.spread('s3', 'nginx', 'rps')}{floor_rps}",
                f"{ff3 / ng3:.2f}x nginx" + (f", {ff3 / fl3:.2f}x floor" if has_floor else ""), "", None))
    b3 = max(fig.runs("s3", "filefetch", "rps") or [float("nan")]) / max(fig.runs("s3", "nginx", "rps") or [float("nan")])
    out.append(("3", "same, requests/s: ratio of the best run of each", "", "", f"{b3:.2f}x nginx", "", None))
    pairs = round_ratios(fig, "s3", "rps", "filefetch", "nginx")
    if pairs:
        p3 = statistics.median(pairs)
        out.append(("3", "same, requests/s: median of the per-round ratios", "", "",
                    f"{p3:.2f}x nginx ({min(pairs):.2f}-{max(pairs):.2f})", "", None))
    floor_p99 = f"; floor {m('s3', 'floor', 'p99_ms'):.2f} ms" if has_floor else ""
    out.append(("3", "same, p99 latency",
                f"{m('s3', 'filefetch', 'p99_ms'):.2f} ms", f"nginx {m('s3', 'nginx', 'p99_ms'):.2f} ms{floor_p99}",
                "", "", None))
    lg_ff, lg_ng, lg_fl = (m("s3", s, "client_cpu_us") for s in ("filefetch", "nginx", "floor"))
    out.append(("3", "same, load generator CPU time per request (it shares the 2 cores)",
                f"{lg_ff:.1f} us", f"nginx {lg_ng:.1f} us" + (f"; floor {lg_fl:.1f} us" if has_floor else ""),
                "", "", None))
    if fig.runs("s3", "filefetch-portable", "rps"):
        p3 = m("s3", "filefetch-portable", "rps")
        out.append(("3", "same 1 KiB load, server on its portable (buffered) send path: requests/s vs the fast path",
                    f"{p3:,.0f}/s{fig.spread('s3', 'filefetch-portable', 'rps')}",
                    f"fast path {ff3:,.0f}/s; nginx {ng3:,.0f}/s",
                    f"{p3 / ff3:.2f}x fast ({p3 / ng3:.2f}x nginx)", "", None))
        cpu_p = m("s3", "filefetch-portable", cpu)
        out.append(("3", "same, portable path: server CPU time per request, p99 latency",
                    f"{cpu_p:.1f} us, {m('s3', 'filefetch-portable', 'p99_ms'):.2f} ms",
                    f"fast path {cpu_ff:.1f} us, {m('s3', 'filefetch', 'p99_ms'):.2f} ms",
                    f"{cpu_p / cpu_ff:.2f}x CPU" + (f", {cpu_p / cpu_fl:.2f}x floor" if has_floor else ""),
                    "", None))
    errors3 = sum(sum(fig.runs("s3", s, "errors")) for s in ("filefetch", "nginx", "floor", "filefetch-portable"))
    if errors3:
        out.append(("3", "errors (all runs, all servers)", "", "", f"{errors3:.0f}", "", None))
    return out


def syscalls(fig):
    """Scenario 3's system calls per request under strace -c: {subject: (requests, {name:
    (calls per request, % of syscall time, us per call)})}, for the subjects that have them."""
    out = {}
    for subject in ("filefetch", "floor"):
        requests = fig.runs("s3", subject, "strace_requests")
        if not requests:
            continue
        calls = {}
        prefix = "syscalls_per_request:"
        for (scenario, subj, metric), values in fig.figures.items():
            if scenario == "s3" and subj == subject and metric.startswith(prefix) and values:
                name = metric[len(prefix):]
                calls[name] = (values[-1],
                               (fig.runs("s3", subject, "syscall_time_pct:" + name) or [float("nan")])[-1],
                               (fig.runs("s3", subject, "syscall_us_per_call:" + name) or [float("nan")])[-1])
        errors = (fig.runs("s3", subject, "strace_errors") or [0])[-1]
        out[subject] = (requests[-1], calls, errors)
    return out


def syscall_table(fig):
    """Markdown lines of the system-call table (none when the run has no strace figures)."""
    table = syscalls(fig)
    if "filefetch" not in table:
        return []
    ff_requests, ff, ff_errors = table["filefetch"]
    floor = table.get("floor")
    lines = ["**Syscalls per request (filefetch server, strace -c)**", "",
             "Scenario 3's load (32 clients, 1 KiB, a connection per request) with strace -f -c "
             "attached to the server (all its threads), "
             f"each call's count divided by the requests served meanwhile ({ff_requests:,.0f}"
             + (f", {ff_errors:.0f} errors" if ff_errors else "")
             + (f"; the floor {floor[0]:,.0f}" + (f", {floor[2]:.0f} errors" if floor[2] else "") if floor else "")
             + "). The time shares are strace's: "
             "tracing slows every call, and calls that wait (futex, epoll_wait, clock_nanosleep) "
             "count their waiting.", ""]
    head = "| system call | filefetch calls per request | filefetch share of syscall time |"
    rule = "|---|---|---|"
    if floor:
        head += " floor calls per request | floor share of syscall time |"
        rule += "---|---|"
    lines += [head, rule]
    names = sorted(set(ff) | set(floor[1] if floor else ()),
                   key=lambda n: (-ff.get(n, (0,))[0], -(floor[1].get(n, (0,))[0] if floor else 0), n))

    def cells(calls, name):
        if name not in calls:
            return " | "
        per, pct, _ = calls[name]
        return f"{per:.3f} | {pct:.1f} %"

    for name in names:
        row = f"| {name} | {cells(ff, name)} |"
        if floor:
            row += f" {cells(floor[1], name)} |"
        lines.append(row)
    total = f"| total | {sum(v[0] for v in ff.values()):.3f} | 100 % |"
    if floor:
        total += f" {sum(v[0] for v in floor[1].values()):.3f} | 100 % |"
    lines.append(total)
    return lines


def machine_line(meta):
    return "Machine: " + ", ".join(
        f"{k.replace('_', ' ')} {meta[k]}" for k in
        ("cpu", "cores", "memory_gib", "kernel", "os", "virtualization", "nginx", "curl", "iperf3", "python",
         "strace", "loadavg_start", "loadavg_end") if k in meta) + "."


def markdown(fig, meta):
    lines = []
    lines.append(machine_line(meta))
    lines.append("")
    lines.append(f"Run of {meta.get('date', '?')}: medians of {meta.get('runs', '?')} alternating runs "
                 "(range in brackets).")
    lines.append("")
    lines.append("| # | scenario | filefetch | anchor | ratio | target | met |")
    lines.append("|---|---|---|---|---|---|---|")
    for sc, what, ff, anchor, ratio, target, met in rows(fig, meta):
        mark = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {sc} | {what} | {ff} | {anchor} | {ratio} | {target} | {mark} |")
    table = syscall_table(fig)
    if table:
        lines.append("")
        lines.extend(table)
    return "\n".join(lines) + "\n"


def plot(fig, meta, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib not available, no plot", file=sys.stderr)
        return
    blue, grey, light = "#1f5fa8", "#8a8a8a", "#c8c8c8"
    portable = "#7aa9dc"  # filefetch on its portable (buffered) send path
    f, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    f.suptitle(f"filefetch benchmarks, {meta.get('date', '')}: {meta.get('cores', '?')} cores, "
               f"{meta.get('cpu', '')}, kernel {meta.get('kernel', '?')}, "
               f"virtualization {meta.get('virtualization', '?')}", fontsize=11)

    def bars(ax, entries, title, unit, target=None, target_label=None):
        entries = [e for e in entries if fig.runs(*e[1])]
        names = [e[0] for e in entries]
        med = [fig.median(*e[1]) for e in entries]
        colors = [portable if "portable" in n else blue if n.startswith("filefetch")
                  else light if n.startswith("floor") else grey for n in names]
        ax.bar(names, med, color=colors)
        for i, e in enumerate(entries):
            runs = fig.runs(*e[1])
            ax.scatter([i] * len(runs), runs, color="black", s=8, zorder=3)
            label = f"{med[i]:,.0f}" if med[i] >= 1000 else f"{med[i]:.3g}"
            ax.annotate(label, (i, med[i]), ha="center", va="bottom", fontsize=8)
        if target is not None:
            ax.axhline(target, color="#c0392b", linestyle="--", linewidth=1)
            ax.annotate(target_label, (len(entries) - 0.5, target), ha="right", va="bottom",
                        fontsize=8, color="#c0392b")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", labelsize=8)

    curl = fig.median("s1", "nginx+curl", "seconds")
    dd = fig.median("s1", "copy", "seconds")
    bars(axes[0][0], [("filefetch", ("s1", "filefetch", "seconds")),
                      ("filefetch\nportable", ("s1", "filefetch-portable", "seconds")),
                      ("nginx+curl", ("s1", "nginx+curl", "seconds")),
                      ("dd copy", ("s1", "copy", "seconds")),
                      ("iperf3\n(no write)", ("s1", "iperf3", "seconds"))],
         "1. 1 GiB onto tmpfs (lower is better)", "seconds",
         min(0.65 * curl, 1.3 * dd), "target: min(0.65x curl, 1.3x dd)")
    orig = fig.median("s2", "original", "seconds")
    bars(axes[0][1], [("filefetch", ("s2", "filefetch", "seconds")),
                      ("server.py +\nclient.py", ("s2", "original", "seconds"))],
         "2. largest file the originals move (lower is better)", "seconds", orig / 5, "target: 1/5 of original")
    # Scenario 3: server CPU time per request against the floor; each bar's label carries the
    # requests/s of the same runs (which the load generator, sharing the cores, bounds too).
    s3 = [("filefetch", "filefetch"), ("filefetch\nportable", "filefetch-portable"), ("nginx", "nginx"),
          ("floor", "floor")]
    if fig.runs("s3", "floor", "server_cpu_us_per_request"):
        floor = fig.median("s3", "floor", "server_cpu_us_per_request")
        bars(axes[0][2], [(f"{name}\n{fig.median('s3', subject, 'rps'):,.0f}/s",
                           ("s3", subject, "server_cpu_us_per_request")) for name, subject in s3],
             "3. 1 KiB, 32 clients, conn/request: server CPU per request\n(lower is better; requests/s below)",
             "us per request", 1.2 * floor, "target: 1.2x floor")
    else:
        bars(axes[0][2], [(name, ("s3", subject, "rps")) for name, subject in s3],
             "3. 1 KiB, 32 clients, conn/request (higher is better)", "requests/s")

    ax = axes[1][0]
    mem = [("filefetch\nserving 1 GiB", ("s4", "filefetch", "server_peak_rss_kib")),
           ("filefetch\nclient 1 GiB", ("s1", "filefetch", "client_rss_kib")),
           ("nginx\nserving 1 GiB", ("s4", "nginx", "server_peak_rss_kib")),
           ("curl\n1 GiB", ("s1", "nginx+curl", "client_rss_kib"))]
    vals = [fig.median(*e[1]) / MIB for e in mem]
    ax.bar([e[0] for e in mem], vals, color=[blue, blue, grey, grey])
    for i, v in enumerate(vals):
        ax.annotate(f"{v:.1f}", (i, v), ha="center", va="bottom", fontsize=8)
    ax.axhline(16, color="#c0392b", linestyle="--", linewidth=1)
    ax.annotate("target: 16 MiB", (3.5, 16), ha="right", va="bottom", fontsize=8, color="#c0392b")
    ax.set_title("4. peak RSS, one 1 GiB transfer (lower is better)", fontsize=10)
    ax.set_ylabel("MiB")
    ax.tick_params(axis="x", labelsize=8)

    ax = axes[1][1]
    idle = [("filefetch\n10k idle", fig.median("s4", "filefetch", "idle_10k_rss_kib") / MIB, blue),
            ("nginx\n10k idle", fig.median("s4", "nginx", "idle_10k_rss_kib") / MIB, grey),
            ("filefetch\n2k stalled", fig.median("s4", "filefetch", "stall_2k_rss_kib") / MIB, blue),
            ("filefetch portable\n2k stalled", fig.median("s4", "filefetch-portable", "stall_2k_rss_kib") / MIB,
             portable)]
    ax.bar([n for n, _, _ in idle], [v for _, v, _ in idle], color=[c for _, _, c in idle])
    for i, (_, v, _) in enumerate(idle):
        ax.annotate(f"{v:.1f}", (i, v), ha="center", va="bottom", fontsize=8)
    ax.axhline(64, color="#c0392b", linestyle="--", linewidth=1)
    ax.annotate("target: 64 MiB", (len(idle) - 0.5, 64), ha="right", va="bottom", fontsize=8, color="#c0392b")
    ax.set_title("4. server RSS: 10,000 idle, 2,000 stalled clients", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylabel("MiB")

    ax = axes[1][2]
    labels, x = ["p50", "p99", "max"], range(3)
    for off, (subject, color) in ((-0.2, ("filefetch", blue)), (0.2, ("nginx", grey))):
        vals = [fig.median("s5", subject, k) for k in ("p50_ms", "p99_ms", "max_ms")]
        ax.bar([i + off for i in x], vals, width=0.4, color=color, label=subject)
        for i, v in zip(x, vals):
            ax.annotate(f"{v:.2f}", (i + off, v), ha="center", va="bottom", fontsize=7)
    ax.axhline(10, color="#c0392b", linestyle="--", linewidth=1)
    ax.annotate("target p99: 10 ms", (2.4, 10), ha="right", va="bottom", fontsize=8, color="#c0392b")
    ax.set_xticks(list(x), labels)
    ax.set_yscale("log")
    ax.set_title("5. 1 KiB fetch latency, 1,000 idle connections open", fontsize=10)
    ax.set_ylabel("ms (log)")
    ax.legend(fontsize=8)

    f.tight_layout()
    f.savefig(path, dpi=110)
    print(f"plot written to {path}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw")
    ap.add_argument("--markdown")
    ap.add_argument("--plot")
    args = ap.parse_args()
    figures, meta = load(args.raw)
    fig = Figures(figures)
    text = markdown(fig, meta)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)
    if args.plot:
        plot(fig, meta, args.plot)


if __name__ == "__main__":
    main()
