"""The command lines.

``filefetch-py serve|fetch`` (or ``python -m filefetch serve|fetch``) is the Rust
``filefetch`` command's twin: the same subcommands, options, defaults and exit codes (see
``EXIT_CODES``), but for ``--config``, progress bars and the lines that report retries. ``python -m filefetch.server PORT`` and ``python -m filefetch.client HOST
PORT FILENAME`` are drop-ins for the original scripts and keep their command lines: status 1
on any failure, 2 for bad arguments, 130 when interrupted.

Values are only parsed here; their ranges are the library's to check, and its
InvalidArgumentError (naming the setting) is a usage error, status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ._errors import (
    AbortedError,
    ChecksumMismatchError,
    ConnectError,
    DestinationExistsError,
    Error,
    IncompleteTransferError,
    InterruptedTransferError,
    InvalidArgumentError,
    LocalError,
    NotFoundError,
    ProtocolError,
    ServerClosedError,
    TimedOutError,
    TooLargeError,
)
from ._native import Server, fetch, fetch_many

INTERRUPTED = 130

# The exit status for each exception class, as the Rust command's (cli/src/exit.rs) and the
# README's error table give it for the matching kind. Searched in order: a subclass comes
# before its base (IncompleteTransferError is a ProtocolError).
EXIT_CODES: tuple[tuple[type[Error], int], ...] = (
    (NotFoundError, 3),
    (DestinationExistsError, 4),
    (TimedOutError, 5),
    (ConnectError, 8),
    (IncompleteTransferError, 7),
    (ProtocolError, 6),  # ServerClosedError too
    (TooLargeError, 9),
    (ChecksumMismatchError, 10),
    (InvalidArgumentError, 2),
    (LocalError, 1),
    (AbortedError, 1),
    (InterruptedTransferError, INTERRUPTED),
)

EXIT_STATUS_HELP = """\
exit status:
  0    success
  1    local I/O or other error (including a port that cannot be listened on)
  2    usage error (bad arguments, invalid file name, a value out of range)
  3    the server has no such file (StatusCode 0)
  4    the destination exists (it is left untouched)
  5    timed out
  6    protocol error (malformed response, truncated header, excess data,
       server closed without a response)
  7    incomplete transfer
  8    cannot resolve the host or connect to it
  9    the file is larger than --max-size (nothing was read)
  10   the data does not have the SHA-256 digest asked for (nothing was kept)
  130  interrupted (Ctrl-C)

With several files, 0 means every file arrived; otherwise the status is 130 if
interrupted, else that of the first failed file in the order the names were given."""

SERVER_CLOSED_HINT = (
    " (the original server.py closes the connection this way when it has no such file)"
)


def exit_code(error: Error) -> int:
    """The exit status for a library exception."""
    for cls, code in EXIT_CODES:
        if isinstance(error, cls):
            return code
    return 1


def _message(error: Error) -> str:
    text = str(error)
    if isinstance(error, ServerClosedError):
        text += SERVER_CLOSED_HINT
    return text


def _port(text: str) -> int:
    """A port for the drop-in scripts, which check it while parsing as the originals did."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port number: {text!r} (0 to 65535)")
    return port


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def _log_to_stdout() -> None:
    """Show the server's per-connection log lines on stdout, each with the time."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger = logging.getLogger("filefetch")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_server(
    port: int,
    root: str = ".",
    binds: Sequence[str] = ("0.0.0.0",),
    grace: float = 10.0,
    interrupted_twice: int = 0,
    settings: Optional[Mapping[str, Any]] = None,
) -> int:
    """Serve `root` on each of `binds` at `port` until Ctrl-C, logging each connection. The
    first Ctrl-C stops accepting and gives transfers in flight `grace` seconds to finish (then
    status 0); a second one stops at once (then status `interrupted_twice`). `settings` are
    further keywords of Server."""
    _log_to_stdout()
    try:
        server = Server(port, root, host=list(binds), grace_period=grace, **(settings or {}))
    except Error as e:
        print(f"error: {_message(e)}", file=sys.stderr)
        return exit_code(e)
    stopping = False
    try:
        with server:
            # A Ctrl-C from the moment the address is shown is the first, graceful one.
            try:
                for host_shown, real_port in server.addresses:
                    print(
                        f"Waiting for connection on {_shown(host_shown, real_port)}, "
                        f"serving {os.path.abspath(root)}",
                        flush=True,
                    )
                # As the Rust command prints it, after the listening lines.
                metrics = server.metrics_address
                if metrics is not None:
                    print(f"metrics on http://{_shown(*metrics)}/metrics", flush=True)
                server.serve_forever()
            except KeyboardInterrupt:
                stopping = True
                print(
                    f"Stopping: transfers in flight have {grace:g} s to finish "
                    "(Ctrl-C again to stop at once)",
                    flush=True,
                )
                server.shutdown()
                print("Interrupted, server stopped", flush=True)
    except KeyboardInterrupt:
        # Leaving the block closed the server at once.
        print("Interrupted, server stopped", flush=True)
        return interrupted_twice if stopping else 0
    except Error as e:
        print(f"error: {_message(e)}", file=sys.stderr)
        return exit_code(e)
    return 0


def run_client(host: str, port: int, name: str) -> int:
    """The drop-in client: fetch `name` from `host`:`port` into the current directory."""
    print(f"Connecting to {host}:{port} for {name}", flush=True)
    try:
        path = fetch(host, port, name)
    except Error as e:
        print(f"error: {_message(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted, nothing was saved", file=sys.stderr)
        return INTERRUPTED
    size = path.stat().st_size
    print(f"Download succeeded: received {size} bytes of {name}, saved as {path}", flush=True)
    return 0


class UsageError(Exception):
    """A command line that cannot be run as given (exit status 2)."""


def parse_sha256_sums(text: str) -> dict[str, str]:
    """The digests of a list as ``sha256sum`` writes it (``<hex>  <name>`` or ``<hex>
    *<name>``, ``\\`` before a line whose name has escapes), by name (a leading ``./``
    dropped), as the Rust command reads ``--sha256-file``."""
    digests: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        escaped = line.startswith("\\")
        body = line[1:] if escaped else line
        digest, rest = body[:64], body[64:]
        if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise UsageError(f"invalid sha256 list: line {number}: not 64 hexadecimal digits: {line!r}")
        if rest.startswith("  ") or rest.startswith(" *"):
            name = rest[2:]
        else:
            name = ""
        if not name:
            raise UsageError(f"invalid sha256 list: line {number}: not `<64 hex digits>  <name>`: {line!r}")
        if escaped:
            name = _unescape(name, number, line)
        name = name.removeprefix("./")
        digest = digest.lower()
        if digests.setdefault(name, digest) != digest:
            raise UsageError(
                f"invalid sha256 list: line {number}: {name!r} is listed twice, with two digests"
            )
    return digests


def _unescape(name: str, number: int, line: str) -> str:
    out, chars = [], iter(name)
    for c in chars:
        if c != "\\":
            out.append(c)
            continue
        nxt = next(chars, "")
        if nxt not in ("\\", "n", "r"):
            raise UsageError(f"invalid sha256 list: line {number}: bad escape in the name: {line!r}")
        out.append({"\\": "\\", "n": "\n", "r": "\r"}[nxt])
    return "".join(out)


def _names(args: argparse.Namespace) -> list[str]:
    """The names on the command line, then those of ``--from`` (one a line, ``-``: stdin)."""
    names = list(args.names)
    if args.from_file is not None:
        try:
            if args.from_file == "-":
                text = sys.stdin.read()
            else:
                with open(args.from_file, encoding="utf-8") as f:
                    text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read the names from {args.from_file}: {e}") from None
        names += [line.removesuffix("\r") for line in text.split("\n") if line.strip()]
    if not names:
        raise UsageError("no file name given (NAME..., or --from FILE)")
    return names


def _digests(args: argparse.Namespace, names: list[str]) -> Optional[dict[str, str]]:
    """Each name's expected digest, from ``--sha256`` (one name only) or ``--sha256-file``."""
    if args.sha256 is not None and args.sha256_file is not None:
        raise UsageError("--sha256 and --sha256-file cannot be used together")
    if args.sha256 is not None:
        if len(names) > 1:
            raise UsageError("--sha256 checks one file: with several names use --sha256-file")
        return {names[0]: args.sha256}
    if args.sha256_file is None:
        return None
    try:
        with open(args.sha256_file, encoding="utf-8") as f:
            sums = parse_sha256_sums(f.read())
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {args.sha256_file}: {e}") from None
    digests = {}
    for name in names:
        digest = sums.get(name, sums.get(name.rsplit("/", 1)[-1]))
        if digest is None:
            raise UsageError(f"{name} is not listed in {args.sha256_file}")
        digests[name] = digest
    return digests


def run_fetch(args: argparse.Namespace) -> int:
    """``python -m filefetch fetch``: as ``filefetch fetch`` does, with its exit codes."""
    try:
        names = _names(args)
        digests = _digests(args, names)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    common: dict[str, Any] = {
        "overwrite": args.overwrite,
        "timeout": args.timeout,
        "connect_timeout": args.connect_timeout,
        "max_time": args.max_time,
        "speed_limit": args.speed_limit,
        "speed_time": args.speed_time,
        "max_size": args.max_size,
        "retries": args.retries,
        "retry_delay": args.retry_delay,
    }
    if len(names) > 1 or args.print_sha256:
        return _fetch_list(args, names, digests, common)
    try:
        path = fetch(
            args.host,
            args.port,
            names[0],
            args.output,
            sha256=(digests or {}).get(names[0]),
            **common,
        )
    except Error as e:
        print(f"error: {_message(e)}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        print("Interrupted, nothing was saved", file=sys.stderr)
        return INTERRUPTED
    if not args.quiet:
        print(f"received {path.stat().st_size} bytes into {path}", flush=True)
    return 0


def sha256sum_line(digest: str, path: str) -> str:
    """The line ``sha256sum`` writes for `path`: ``\\`` first and the name escaped when it
    holds a backslash or a line break."""
    if any(c in path for c in "\\\n\r"):
        escaped = path.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{digest}  {escaped}"
    return f"{digest}  {path}"


def _fetch_list(
    args: argparse.Namespace,
    names: list[str],
    digests: Optional[dict[str, str]],
    common: dict[str, Any],
) -> int:
    """Several names, ``--jobs`` at a time (or one with ``--print-sha256``): a line for each
    file, then (for several) a summary; the exit status is 130 if interrupted, else that of
    the first failed file in the order given."""
    several = len(names) > 1
    try:
        results = fetch_many(
            args.host,
            args.port,
            names,
            args.output,
            jobs=args.jobs,
            sha256=digests,
            compute_sha256=args.print_sha256,
            **common,
        )
    except Error as e:
        print(f"error: {_message(e)}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        print("Interrupted, nothing was saved", file=sys.stderr)
        return INTERRUPTED
    fetched, size, failed, interrupted, status = 0, 0, 0, 0, 0
    for result in results:
        if result.ok:
            fetched += 1
            size += result.size or 0
            if args.print_sha256 and result.sha256 is not None:
                print(sha256sum_line(result.sha256, str(result.path)), flush=True)
            elif not args.quiet:
                print(f"received {result.size} bytes into {result.path}", flush=True)
            continue
        error = result.error
        if isinstance(error, (InterruptedTransferError, KeyboardInterrupt)):
            interrupted += 1
            continue
        failed += 1
        code = exit_code(error) if isinstance(error, Error) else 1
        status = status or code
        text = _message(error) if isinstance(error, Error) else str(error)
        print(f"error: {result.name}: {text}" if several else f"error: {text}", file=sys.stderr)
    if not several:
        return INTERRUPTED if interrupted else status
    summary = f"fetched {fetched} of {len(names)} files, {size} bytes"
    counts = [f"{n} {what}" for n, what in ((failed, "failed"), (interrupted, "interrupted")) if n]
    if counts:
        summary += "; " + ", ".join(counts)
    if interrupted:
        status = INTERRUPTED
    if status or not args.quiet:
        print(summary, file=sys.stderr)
    return status


def server_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m filefetch.server PORT``: the original server.py's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m filefetch.server",
        description="Serve the files of the current directory (0 picks a free port).",
    )
    parser.add_argument("port", type=_port, help="port to listen on")
    args = parser.parse_args(argv)
    return run_server(args.port)


def client_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m filefetch.client HOST PORT FILENAME``: the original client.py's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m filefetch.client",
        description="Fetch a file into the current directory; never overwrites.",
    )
    parser.add_argument("host", help="server name or address")
    parser.add_argument("port", type=_port, help="server port")
    parser.add_argument("filename", help="name of the file on the server")
    args = parser.parse_args(argv)
    return run_client(args.host, args.port, args.filename)


def parser(prog: str = "filefetch-py") -> argparse.ArgumentParser:
    """The command line of ``filefetch-py`` and ``python -m filefetch``, as the Rust command's
    (cli/src/args.rs)."""
    formatter = argparse.RawDescriptionHelpFormatter
    top = argparse.ArgumentParser(
        prog=prog,
        description="Fetch a file from a server, or serve a directory, with the 0x497E "
        "FileRequest/FileResponse protocol.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=formatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve the files beneath a directory",
        epilog=EXIT_STATUS_HELP,
        formatter_class=formatter,
    )
    serve.add_argument("port", type=_integer, help="port to listen on (0: any free port)")
    serve.add_argument("--root", metavar="DIR", default=".", help="directory to serve (default: .)")
    serve.add_argument(
        "--bind",
        dest="binds",
        metavar="ADDR",
        action="append",
        help="address to listen on, combined with PORT; repeat for several "
        "(:: for IPv6 and IPv4 both; default: 0.0.0.0)",
    )
    # The option's former name, kept for scripts that use it.
    serve.add_argument("--host", dest="binds", action="append", help=argparse.SUPPRESS)
    serve.add_argument(
        "--max-connections",
        metavar="N",
        type=_integer,
        default=10000,
        help="most connections served at once; more wait in the listen backlog (default: 10000)",
    )
    serve.add_argument(
        "--request-timeout",
        metavar="SECS",
        type=_seconds,
        default=1.0,
        help="seconds a client has, from connecting, to send its whole request (default: 1)",
    )
    serve.add_argument(
        "--send-timeout",
        metavar="SECS",
        type=_seconds,
        default=10.0,
        help="seconds a client may read nothing before it is dropped (default: 10)",
    )
    serve.add_argument(
        "--grace",
        metavar="SECS",
        type=_seconds,
        default=10.0,
        help="seconds transfers in flight may take to finish after Ctrl-C (default: 10)",
    )
    serve.add_argument(
        "--threads",
        metavar="N",
        type=_integer,
        default=0,
        help="worker threads (0: one per CPU core; the default)",
    )
    serve.add_argument(
        "--file-cache",
        metavar="SECS",
        type=_seconds,
        default=1.0,
        help="seconds a small file stays open for reuse by later requests of the same name "
        "(0: open every file afresh; default: 1)",
    )
    serve.add_argument(
        "--portable",
        action="store_true",
        help="use the portable code paths instead of system-specific fast ones",
    )
    serve.add_argument(
        "--proxy-protocol",
        action="store_true",
        help="expect a PROXY protocol header (v1 or v2) before every request, as a load "
        "balancer sends it (HAProxy: send-proxy or send-proxy-v2), and log the client it names "
        "as the peer; connections without one are closed unanswered. Only behind such a load "
        "balancer: a client reaching the server directly could claim any address",
    )
    # --allow and --deny share one list, so that the rules keep the order they were given in.
    serve.add_argument(
        "--allow",
        dest="access",
        metavar="CIDR",
        action="append",
        type=lambda network: f"allow {network}",
        help="serve clients in this network (10.0.0.0/8, 2001:db8::/32, or one address); "
        "repeatable. Rules are checked in the order given, --allow and --deny alike, and the "
        "first that matches decides; a client that none matches is refused if there is any "
        "--allow, served otherwise. The client is the one a PROXY header names with "
        "--proxy-protocol",
    )
    serve.add_argument(
        "--deny",
        dest="access",
        metavar="CIDR",
        action="append",
        type=lambda network: f"deny {network}",
        help="close connections from clients in this network without a response; repeatable "
        "(see --allow for the order)",
    )
    serve.add_argument(
        "--max-per-address",
        metavar="N",
        type=_integer,
        default=0,
        help="at most N connections at once from one client address (0: no limit; the "
        "default); one more is closed unanswered",
    )
    serve.add_argument(
        "--rate-limit",
        metavar="BYTES",
        type=_integer,
        default=0,
        help="send at most this many bytes a second on each connection (0: no limit; the "
        "default)",
    )
    serve.add_argument(
        "--total-rate-limit",
        metavar="BYTES",
        type=_integer,
        default=0,
        help="send at most this many bytes a second over all connections together (0: no "
        "limit; the default)",
    )
    serve.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        help="also serve metrics for Prometheus over HTTP at this address and port, at "
        "/metrics (for instance 127.0.0.1:9100 or [::1]:9100; port 0 picks a free one). "
        "Anyone who can reach it can read them",
    )

    get = commands.add_parser(
        "fetch",
        help="download files from a server",
        epilog=EXIT_STATUS_HELP,
        formatter_class=formatter,
    )
    get.add_argument("host", help="server host name or IPv4/IPv6 address")
    get.add_argument("port", type=_integer, help="server port")
    get.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="names of the files on the server; several are fetched at once, each over its "
        "own connection (see --jobs)",
    )
    get.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="also fetch the names listed in FILE, one a line (-: standard input); blank "
        "lines are skipped",
    )
    get.add_argument(
        "-j",
        "--jobs",
        metavar="N",
        type=_integer,
        default=4,
        help="files fetched at once, each over its own connection (1 to 64; default: 4)",
    )
    get.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="where to write the file (default: the name's last component, here); an "
        "existing directory receives it under that name; with several names it must be an "
        "existing directory",
    )
    get.add_argument("--overwrite", action="store_true", help="replace the destination if it exists")
    get.add_argument(
        "--timeout",
        metavar="SECS",
        type=_seconds,
        default=1.0,
        help="seconds to wait for any data before giving up (default: 1)",
    )
    get.add_argument(
        "--connect-timeout",
        metavar="SECS",
        type=_seconds,
        default=5.0,
        help="seconds to wait for a connection to each address of the host (default: 5)",
    )
    get.add_argument(
        "--max-time",
        metavar="SECS",
        type=_seconds,
        help="seconds the whole fetch may take, connecting included (no limit by default)",
    )
    get.add_argument(
        "--speed-limit",
        metavar="BYTES",
        type=_integer,
        default=0,
        help="give up when fewer than this many bytes a second arrive over --speed-time "
        "seconds (off by default)",
    )
    get.add_argument(
        "--speed-time",
        metavar="SECS",
        type=_seconds,
        default=30.0,
        help="seconds over which --speed-limit is measured (default: 30)",
    )
    get.add_argument(
        "--max-size",
        metavar="BYTES",
        type=_integer,
        help="refuse a file larger than this many bytes, before any of it is read "
        "(no limit by default)",
    )
    get.add_argument(
        "--sha256",
        metavar="HEX",
        help="the file's SHA-256 digest (one NAME only): a file whose data differs is not "
        "kept (exit 10)",
    )
    get.add_argument(
        "--sha256-file",
        metavar="SUMS",
        help="check each file against its digest in SUMS, a list as sha256sum writes it, "
        "looked up under the requested name, then under its last component; a name missing "
        "from the list is a usage error, before anything is fetched",
    )
    get.add_argument(
        "--print-sha256",
        action="store_true",
        help="print each file's SHA-256 digest as sha256sum does (<hex>  <path>) instead of "
        "the received line, even with -q; the digest is computed as the data arrives",
    )
    get.add_argument(
        "--retry",
        dest="retries",
        metavar="N",
        type=_integer,
        default=0,
        help="try up to N more times when an attempt fails in a way the next may not (the "
        "host unreachable, the connection cut, a timeout other than --max-time's); nothing "
        "partial is kept (default: 0)",
    )
    get.add_argument(
        "--retry-delay",
        metavar="SECS",
        type=_seconds,
        default=0.25,
        help="seconds to wait before the first retry; each later wait doubles, up to 10 s "
        "(default: 0.25)",
    )
    get.add_argument("-q", "--quiet", action="store_true", help="print no success line")
    return top


def main(argv: Optional[Sequence[str]] = None, prog: str = "filefetch-py") -> int:
    """``filefetch-py serve|fetch ...`` (the console script), or ``python -m filefetch`` with
    that `prog`."""
    args = parser(prog).parse_args(argv)
    if args.command == "serve":
        return run_server(
            args.port,
            args.root,
            args.binds or ["0.0.0.0"],
            args.grace,
            interrupted_twice=INTERRUPTED,
            settings={
                "max_connections": args.max_connections,
                "request_timeout": args.request_timeout,
                "send_timeout": args.send_timeout,
                "threads": args.threads,
                "file_cache": args.file_cache,
                "portable": args.portable,
                "proxy_protocol": args.proxy_protocol,
                "access": args.access or [],
                "max_per_address": args.max_per_address,
                "rate_limit": args.rate_limit,
                "total_rate_limit": args.total_rate_limit,
                "metrics": args.metrics,
            },
        )
    return run_fetch(args)
