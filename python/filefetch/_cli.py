"""The command lines: ``python -m filefetch {serve,fetch}``, ``python -m filefetch.server`` and
``python -m filefetch.client``. Each prints what happens, one line per event, and returns an
exit status: 0 on success, 1 on failure, 2 for bad arguments, 130 when interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Optional

from ._errors import Error, ServerClosedError
from ._native import Server, fetch


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port number: {text!r} (0 to 65535)")
    return port


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"invalid timeout: {text!r} (seconds, above 0)")
    return seconds


def _log_to_stdout() -> None:
    """Show the server's per-connection log lines on stdout, each with the time."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger = logging.getLogger("filefetch")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _grace(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid grace period: {text!r} (seconds, 0 or more)")
    return seconds


def run_server(port: int, root: str = ".", host: str = "0.0.0.0", grace: float = 10.0) -> int:
    """Serve `root` on `host`:`port` until Ctrl-C, logging each connection. The first Ctrl-C
    stops accepting and gives transfers in flight `grace` seconds to finish; a second one
    stops at once."""
    _log_to_stdout()
    try:
        server = Server(port, root, host=host, grace_period=grace)
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        with server:
            host_shown, real_port = server.address
            print(
                f"Waiting for connection on {host_shown}:{real_port}, "
                f"serving {os.path.abspath(root)}",
                flush=True,
            )
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                print(
                    f"Stopping: transfers in flight have {grace:g} s to finish "
                    "(Ctrl-C again to stop at once)",
                    flush=True,
                )
                server.shutdown()
                raise
    except KeyboardInterrupt:
        print("Interrupted, server stopped", flush=True)
    return 0


def run_client(
    host: str,
    port: int,
    name: str,
    dest: Optional[str] = None,
    overwrite: bool = False,
    timeout: float = 1.0,
) -> int:
    """Fetch `name` from `host`:`port` into `dest` (default: its name, here)."""
    print(f"Connecting to {host}:{port} for {name}", flush=True)
    try:
        path = fetch(host, port, name, dest, overwrite=overwrite, timeout=timeout)
    except ServerClosedError as e:
        print(f"error: {e} (the server may have no such file)", file=sys.stderr)
        return 1
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted, nothing was saved", file=sys.stderr)
        return 130
    size = path.stat().st_size
    print(f"Download succeeded: received {size} bytes of {name}, saved as {path}", flush=True)
    return 0


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m filefetch serve|fetch ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m filefetch",
        description="Fetch and serve files with the 0x497E FileRequest/FileResponse protocol.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve a directory until Ctrl-C")
    serve.add_argument("port", type=_port, help="port to listen on (0 picks a free one)")
    serve.add_argument("--root", default=".", help="directory to serve (default: .)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    serve.add_argument(
        "--grace",
        type=_grace,
        default=10.0,
        help="seconds transfers in flight may take to finish after Ctrl-C (default: 10)",
    )

    get = commands.add_parser("fetch", help="fetch one file")
    get.add_argument("host", help="server name or address")
    get.add_argument("port", type=_port, help="server port")
    get.add_argument("name", help="name of the file on the server")
    get.add_argument("-o", "--output", help="where to save it (file or directory)")
    get.add_argument("--overwrite", action="store_true", help="replace an existing file")
    get.add_argument(
        "--timeout", type=_timeout, default=1.0, help="seconds to wait for data (default: 1)"
    )

    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_server(args.port, args.root, args.host, args.grace)
    return run_client(
        args.host, args.port, args.name, args.output, args.overwrite, args.timeout
    )
