"""Start ``chatlead serve`` as a subprocess on a flushed Redis database, for benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def start_server(
    redis_url: str,
    port: int,
    settings: dict[str, str],
    preexec: Callable[[], None] | None = None,
    *,
    flush: bool = True,
) -> subprocess.Popen[bytes]:
    """Flush ``redis_url`` (unless ``flush`` is false: a restart on the same data), start
    the server with ``CHATLEAD_<settings>``, wait until ready."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATLEAD_")}
    env["CHATLEAD_REDIS_URL"] = redis_url
    env.update({f"CHATLEAD_{key.upper()}": value for key, value in settings.items()})
    if flush:
        subprocess.run(["redis-cli", "-u", redis_url, "flushdb"], check=True, capture_output=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=preexec,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.terminate()
    raise RuntimeError("chatlead did not become ready")
