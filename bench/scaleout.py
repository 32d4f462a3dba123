"""Scale-out benchmark: 100 concurrent fetches of one 8 MiB object through `filefetch serve
--root s3://...` from moto's S3 server, against the same 100 downloads straight from moto
with boto3 (one GET each, written to disk as filefetch does). Prints the times, their
ratio (goal: filefetch adds at most 20 %) and the server's peak RSS (goal: at most 64 MiB).
A program that prints figures, not a test; not part of test.sh.

    bash tests/run-scaleout.sh -q -k shipped   # once: the venv with moto and boto3, the build
    target/scaleout-venv/bin/python bench/scaleout.py [--clients 100] [--mib 8] [--rounds 3]

FILEFETCH_BIN picks the binary (default: target/debug/filefetch, which the test profile
builds optimized, as tests/run-scaleout.sh does). Loopback only; every process it starts is
killed on exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "scaleout"))
os.environ.setdefault("FILEFETCH_BIN", str(REPO / "target" / "debug" / "filefetch"))

from conftest import BIN, BUCKET, PREFIX, MiB, Moto, Proc, store_env  # noqa: E402


def hwm_kib(pid: int) -> int:
    """Peak resident set (VmHWM) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def through_filefetch(port: int, clients: int, dest: Path) -> float:
    started = time.monotonic()
    fetches = [
        subprocess.Popen(
            [str(BIN), "fetch", "127.0.0.1", str(port), "object", "-o", str(dest / f"{i}"),
             "-q", "--timeout", "60"],
            stdin=subprocess.DEVNULL,
        )
        for i in range(clients)
    ]
    codes = [f.wait(timeout=300) for f in fetches]
    took = time.monotonic() - started
    if any(codes):
        raise SystemExit(f"filefetch fetch failed: exit codes {sorted(set(codes))}")
    return took


def through_boto3(s3, clients: int, dest: Path) -> float:
    def one(i: int):
        body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/object")["Body"]
        with open(dest / f"{i}", "wb") as out:
            shutil.copyfileobj(body, out, 1 << 20)

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))
    return time.monotonic() - started


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--mib", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import boto3
    from botocore.config import Config

    moto = Moto()
    server = None
    try:
        moto.bucket()
        data = os.urandom(args.mib * MiB)
        moto.put(f"{PREFIX}/object", data)
        server = Proc(
            [BIN, "serve", "0", "--bind", "127.0.0.1", "--root", f"s3://{BUCKET}/{PREFIX}"],
            env=store_env(moto.endpoint),
        )
        port = int(server.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        s3 = boto3.client(
            "s3",
            endpoint_url=moto.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(max_pool_connections=args.clients, s3={"addressing_style": "path"}),
        )
        times = {"filefetch": [], "boto3": []}
        for round_ in range(args.rounds):
            # Alternate which goes first, so that neither always meets a warmer moto.
            order = ["filefetch", "boto3"] if round_ % 2 == 0 else ["boto3", "filefetch"]
            for subject in order:
                with tempfile.TemporaryDirectory(prefix="ff-scaleout-") as tmp:
                    dest = Path(tmp)
                    if subject == "filefetch":
                        took = through_filefetch(port, args.clients, dest)
                    else:
                        took = through_boto3(s3, args.clients, dest)
                    sample = (dest / "0").read_bytes()
                    if sample != data or len(os.listdir(dest)) != args.clients:
                        raise SystemExit(f"{subject}: wrong or missing files")
                times[subject].append(took)
                print(f"round {round_ + 1}: {subject:9} {took:6.2f} s", flush=True)
        peak = hwm_kib(server.pid) / 1024
    finally:
        if server is not None:
            server.kill()
        moto.kill()

    ff, direct = (statistics.median(times[s]) for s in ("filefetch", "boto3"))
    total = args.clients * args.mib
    ratio = ff / direct
    print()
    print(f"{args.clients} concurrent fetches of one {args.mib} MiB object ({total} MiB), "
          f"median of {args.rounds}:")
    print(f"  through filefetch: {ff:.2f} s ({total / ff:.0f} MiB/s)")
    print(f"  boto3 from moto:   {direct:.2f} s ({total / direct:.0f} MiB/s)")
    print(f"  ratio {ratio:.2f}x (goal <= 1.20x: {'met' if ratio <= 1.2 else 'not met'})")
    print(f"  server peak RSS {peak:.1f} MiB (goal <= 64 MiB: {'met' if peak <= 64 else 'not met'})")


if __name__ == "__main__":
    main()
