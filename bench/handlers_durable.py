#!/usr/bin/env python3
"""What durable file events cost: many small uploads over one OpenSSH `sftp` session, with
no handler configured and with one handler that matches nothing (which makes the server
answer each upload only once its audit record is written). Servers listen on loopback only.

    cargo build --release && python3 bench/handlers_durable.py [--files 300] [--rounds 3]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("WHARF_BIN", str(ROOT / "target" / "release" / "wharf"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import conftest  # noqa: E402  (the test suite's server driver: free ports, loopback only)

HANDLER = """
[[handler]]
name = "idle"
on = ["upload.finished"]
path = "/never/*"
[handler.uuid-prefix]
"""


def measure(with_handler, files, rounds):
    root = Path(tempfile.mkdtemp(prefix="wharf-durable-"))
    server = conftest.WharfServer(root)
    try:
        if with_handler:
            with open(root / "wharf.toml", "a") as f:
                f.write(HANDLER)
        server.add_account("bench", password="durable-measure-pass-1")
        server.start()
        local = root / "f.txt"
        local.write_bytes(b"x" * 1024)
        times = []
        for r in range(rounds):
            script = f"mkdir r{r}\n" + "".join(f"put {local} r{r}/f{i}.txt\n" for i in range(files))
            started = time.time()
            server.sftp("bench", script)
            times.append(time.time() - started)
        return statistics.median(times)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"| configuration | {args.files} uploads of 1 KiB, one sftp session (median of {args.rounds}) |")
    print("|---|---:|")
    for label, with_handler in [("no handler", False), ("one handler", True)] * 2:
        print(f"| {label} | {measure(with_handler, args.files, args.rounds):.3f} s |")


if __name__ == "__main__":
    main()
