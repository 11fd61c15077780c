"""Load test of the ``/ws`` endpoint: chatlead against a bare websockets echo baseline.

Each target runs as its own subprocess (optionally pinned with ``taskset``); the load
comes from ``--clients`` separate client processes so that one Python client, which
saturates near 15-25k msg/s, is not what is being measured.

Two modes:

* closed loop (default): every session sends a message, waits for its ``ack``, sends
  the next. Gives the throughput ceiling; latency here is sessions / throughput.
* open loop (``--rate R``): R msg/s in total are offered on a fixed schedule spread
  over the sessions; latency is measured from the *scheduled* send time, so a slow
  server (or a late client) cannot hide queueing delay (no coordinated omission).

Example::

    python benchmarks/ws_load.py --sessions 200 --messages 50
    python benchmarks/ws_load.py --sessions 200 --messages 50 --rate 2000
    python benchmarks/ws_load.py --target echo --clients 2

Prints one result per target and a markdown table row ready to paste into
``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime
import json
import multiprocessing
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["LoadSpec", "Summary", "main"]

HERE = Path(__file__).resolve().parent
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
CONNECT_CONCURRENCY = 50
TEXT = "Hi there, I would like to know more about your pricing"


@dataclass(frozen=True)
class LoadSpec:
    """What every client process does (shared, picklable)."""

    url: str
    sessions: int
    messages: int
    warmup: int
    rate: float | None
    clients: int
    timeout: float


@dataclass
class ClientResult:
    """One client process's raw samples (seconds, ``time.perf_counter`` clock)."""

    latencies: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    finished: float = 0.0
    cpu: float = 0.0
    failure: str | None = None


@dataclass(frozen=True)
class Summary:
    target: str
    acked: int
    errors: Counter[str]
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    lag_p99_ms: float | None
    server_cpu_s: float | None = None
    redis_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    others_cores: float | None = None
    stalls: tuple[str, ...] = ()

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        lag = "" if self.lag_p99_ms is None else f"  send-lag p99 {self.lag_p99_ms:.2f} ms"
        cpu = ""
        if self.server_cpu_s is not None and self.acked:
            cpu += f"  server CPU {self.server_cpu_s / self.acked * 1e6:.0f} µs/msg"
        if self.redis_cpu_s is not None and self.acked:
            cpu += f"  redis CPU {self.redis_cpu_s / self.acked * 1e6:.0f} µs/msg"
        if self.acked:
            cpu += f"  client CPU {self.client_cpu_s / self.acked * 1e6:.0f} µs/msg"
        if self.others_cores is not None:
            cpu += f"  other load {self.others_cores:.2f} cores"
        if self.stalls:
            cpu += f"  Redis stalls: {', '.join(self.stalls)}"
        return (
            f"{self.target:18s} {self.acked:7d} acks in {self.seconds:6.2f} s = "
            f"{self.rate:8.0f} msg/s  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:7.2f} ms  "
            f"max {self.max_ms:7.2f} ms  errors {dict(self.errors) or 0}{lag}{cpu}"
        )


# --- load client (runs inside each client process) ---------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


def _message(frame_id: str) -> str:
    return json.dumps({"type": "message", "id": frame_id, "text": TEXT})


async def _open_session(url: str, gate: asyncio.Semaphore) -> ClientConnection:
    async with gate:
        ws = await connect(url, compression=None, max_size=None, ping_interval=None)
        await ws.send(json.dumps({"type": "hello", "site": "default"}))
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "welcome":
                return ws
            if frame.get("type") == "error":
                raise RuntimeError(f"hello refused: {frame}")


async def _closed_loop(
    ws: ClientConnection, prefix: str, count: int, result: ClientResult, record: bool
) -> None:
    """Send, wait for the matching ack, send the next."""
    clock = time.perf_counter
    for k in range(count):
        frame_id = f"{prefix}{k}"
        sent = clock()
        await ws.send(_message(frame_id))
        while True:
            frame = json.loads(await ws.recv())
            kind = frame.get("type")
            if frame.get("id") == frame_id and kind in ("ack", "error"):
                break  # bot `message` frames and other ids are ignored
        if kind == "error":
            result.errors[frame.get("code", "?")] += 1
        if record:
            result.latencies.append(clock() - sent)
            result.sent_at.append(sent)


async def _open_loop(
    ws: ClientConnection, prefix: str, slot: int, spec: LoadSpec, t0: float, result: ClientResult
) -> None:
    """Send on a fixed schedule, never waiting for acks; a reader matches them up.

    Global message number ``slot + k * sessions`` is due at ``t0 + number / rate``, so
    the offered load is ``rate`` msg/s over all sessions of all client processes.
    """
    assert spec.rate
    clock = time.perf_counter
    due: dict[str, float] = {}

    async def read() -> None:
        remaining = spec.messages
        while remaining:
            frame = json.loads(await ws.recv())
            if frame.get("type") not in ("ack", "error"):
                continue
            scheduled = due.pop(frame.get("id"), None)
            if scheduled is None:
                continue
            result.latencies.append(clock() - scheduled)
            result.sent_at.append(scheduled)
            if frame["type"] == "error":
                result.errors[frame.get("code", "?")] += 1
            remaining -= 1

    reader = asyncio.create_task(read())
    for k in range(spec.messages):
        scheduled = t0 + (slot + k * spec.sessions) / spec.rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        frame_id = f"{prefix}{k}"
        due[frame_id] = scheduled
        result.send_lags.append(max(0.0, clock() - scheduled))
        await ws.send(_message(frame_id))
    await reader


def _my_sessions(spec: LoadSpec, index: int) -> list[int]:
    """Global session slots of client ``index`` (interleaved across clients)."""
    return list(range(index, spec.sessions, spec.clients))


async def _client(spec: LoadSpec, index: int, ready: Any, go: Any, start_at: Any) -> ClientResult:
    result = ClientResult()
    slots = _my_sessions(spec, index)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    conns = await asyncio.gather(*(_open_session(spec.url, gate) for _ in slots))
    try:
        warm = [
            _closed_loop(ws, f"w{index}.{s}.", spec.warmup, result, False)
            for ws, s in zip(conns, slots, strict=True)
        ]
        await asyncio.gather(*warm)
        ready.put(index)
        await asyncio.to_thread(go.wait)
        t0 = start_at.value
        await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
        result.started = t0
        cpu = time.process_time()
        if spec.rate:
            runs = [
                _open_loop(ws, f"m{index}.{s}.", s, spec, t0, result)
                for ws, s in zip(conns, slots, strict=True)
            ]
        else:
            runs = [
                _closed_loop(ws, f"m{index}.{s}.", spec.messages, result, True)
                for ws, s in zip(conns, slots, strict=True)
            ]
        await asyncio.wait_for(asyncio.gather(*runs), spec.timeout)
        result.finished = time.perf_counter()
        result.cpu = time.process_time() - cpu
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return result


def _run(coro: Coroutine[Any, Any, ClientResult]) -> ClientResult:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _client_process(
    spec: LoadSpec, index: int, cpu: int | None, ready: Any, go: Any, start_at: Any, out: Any
) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        out.put(_run(_client(spec, index, ready, go, start_at)))
    except BaseException as exc:  # reported by the parent; a child must not hang it
        ready.put(index)
        out.put(ClientResult(failure=f"client {index}: {exc!r}"))


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its child processes."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def redis_cpu(redis_url: str) -> float:
    """CPU seconds the whole Redis server has used (every client, every db)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        info = client.info("cpu")
    finally:
        client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_stalls(redis_url: str, since: float, threshold_ms: float = 50.0) -> list[str]:
    """Redis commands (anyone's) that ran longer than ``threshold_ms`` since ``since``.

    Redis runs one command at a time for all its clients: on a shared server another
    user's slow FLUSHDB or script stalls every request of the benchmark. Reads the
    slow log, which keeps commands slower than ``slowlog-log-slower-than``.
    """
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        entries = client.slowlog_get(128)
    finally:
        client.close()
    return [
        f"{entry['command'].decode(errors='replace').split(' ')[0]} "
        f"{entry['duration'] / 1000:.0f} ms"
        for entry in entries
        if entry["start_time"] >= since and entry["duration"] >= threshold_ms * 1000
    ]


def machine_busy() -> float:
    """CPU seconds all processes on this machine have used (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Meters:
    """Where to read CPU use from during the measured phase (None: not measured)."""

    server_pid: int | None = None
    redis_url: str | None = None

    def read(self) -> tuple[float | None, float | None, float]:
        return (
            process_cpu(self.server_pid) if self.server_pid else None,
            redis_cpu(self.redis_url) if self.redis_url else None,
            machine_busy(),
        )


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def write_samples(path: Path, results: list[ClientResult]) -> None:
    """CSV of every sample: send (or scheduled) time from the start, latency in ms."""
    t0 = min(r.started for r in results)
    rows = sorted(
        (sent - t0, latency)
        for r in results
        for sent, latency in zip(r.sent_at, r.latencies, strict=True)
    )
    with path.open("w") as out:
        out.write("sent_s,latency_ms\n")
        out.writelines(f"{sent:.6f},{latency * 1000:.3f}\n" for sent, latency in rows)


def run_load(
    target: str,
    spec: LoadSpec,
    client_cpu: int | None,
    meters: Meters = Meters(),
    samples: Path | None = None,
) -> Summary:
    """Run the clients against ``spec.url`` and merge their samples."""
    ctx = multiprocessing.get_context("fork")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    start_at = ctx.Value("d", 0.0)
    procs = [
        ctx.Process(target=_client_process, args=(spec, i, client_cpu, ready, go, start_at, out))
        for i in range(spec.clients)
    ]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            ready.get(timeout=spec.timeout)
        cpu_before = meters.read()
        wall_start = time.time()
        start_at.value = time.perf_counter() + 0.2
        go.set()
        results = [out.get(timeout=spec.timeout + 10) for _ in procs]
        cpu_after = meters.read()
        stalls = redis_stalls(meters.redis_url, int(wall_start)) if meters.redis_url else []
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    failures = [r.failure for r in results if r.failure]
    if failures:
        raise RuntimeError("; ".join(failures))
    if samples is not None:
        write_samples(samples, results)
    latencies = sorted(x for r in results for x in r.latencies)
    # load from outside this benchmark (other users of a shared machine) during the run
    server_cpu = _delta(cpu_after[0], cpu_before[0])
    client_cpu = sum(r.cpu for r in results)
    elapsed = max(r.finished for r in results) - min(r.started for r in results)
    others = None
    if server_cpu is not None:
        ours = server_cpu + client_cpu
        redis_part = _delta(cpu_after[1], cpu_before[1])
        others = cpu_after[2] - cpu_before[2] - ours - (redis_part or 0.0)
    lags = sorted(x for r in results for x in r.send_lags)
    return Summary(
        target=target,
        acked=len(latencies),
        errors=sum((r.errors for r in results), Counter()),
        seconds=elapsed,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        max_ms=latencies[-1] * 1000 if latencies else float("nan"),
        lag_p99_ms=_percentile(lags, 0.99) * 1000 if lags else None,
        server_cpu_s=server_cpu,
        redis_cpu_s=_delta(cpu_after[1], cpu_before[1]),
        client_cpu_s=client_cpu,
        # /proc counts in 10 ms ticks: too coarse to say anything about a sub-second run
        others_cores=max(0.0, others / elapsed) if others is not None and elapsed >= 1 else None,
        stalls=tuple(stalls),
    )


# --- servers under test ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(port: int, path: str | None) -> bool:
    try:
        if path is None:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class RunFailed(RuntimeError):
    """A load run broke off (a client failed or timed out); the server log is attached."""


@contextlib.contextmanager
def server_process(
    argv: list[str], env: dict[str, str], port: int, cpu: int | None, health: str | None
) -> Iterator[int]:
    """Run a server subprocess until the block exits; wait until it answers."""
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    with tempfile.TemporaryDirectory(prefix="ws_load.") as workdir:
        log_path = Path(workdir) / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, env=env, cwd=workdir, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while not _healthy(port, health):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{argv} did not start:\n{tail}")
                time.sleep(0.05)
            try:
                yield proc.pid  # taskset execs the server: same pid
            except Exception as exc:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                raise RunFailed(f"{exc}\n  server log:\n    " + "\n    ".join(tail)) from exc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def py_spy(pid: int | None, out: Path | None) -> Iterator[None]:
    """Sample ``pid`` (and its worker processes) with py-spy while the block runs."""
    if pid is None or out is None:
        yield
        return
    argv = ["py-spy", "record", "--pid", str(pid), "--subprocesses", "--rate", "250", "--gil"]
    argv += ["--format", "raw", "--output", str(out), "--nonblocking"]
    recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes the file on SIGINT
        _, err = recorder.communicate(timeout=30)
        if recorder.returncode not in (0, -signal.SIGINT):
            print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)


def _flush(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


TARGETS = ("chatlead", "echo", "asgi", "asgi-redis", "asgi-redis-batched")


@dataclass(frozen=True)
class Target:
    """A server to start (or an already running one when ``argv`` is empty)."""

    name: str
    url: str
    argv: list[str]
    env: dict[str, str]
    port: int
    health: str | None
    uses_redis: bool

    def run(self, cpu: int | None) -> contextlib.AbstractContextManager[int | None]:
        if not self.argv:
            return contextlib.nullcontext()
        return server_process(self.argv, self.env, self.port, cpu, self.health)


def target(name: str, args: argparse.Namespace) -> Target:
    """How to start ``name`` on a free port with ``args.workers`` processes."""
    port = free_port()
    workers = ["--workers", str(args.workers)]
    env = dict(os.environ)
    if name.startswith("chatlead"):
        if args.url:
            return Target(name, args.url, [], env, 0, None, True)
        if "@" in name:  # chatlead@REV: the server package as of git revision REV
            env["PYTHONPATH"] = source_tree(name.split("@", 1)[1])
        env |= {
            "CHATLEAD_REDIS_URL": args.redis_url,
            "CHATLEAD_MSG_RATE": "100000",
            "CHATLEAD_MSG_BURST": "100000",
            "CHATLEAD_IDLE_TIMEOUT": "1h",
            "CHATLEAD_MAX_CONN_PER_IP": str(max(1000, args.sessions + 100)),
        }
        argv = [sys.executable, "-m", "server", "serve", "--port", str(port), *workers]
        url = f"ws://127.0.0.1:{port}/ws?site=default"
        return Target(name, url, argv, env, port, "/healthz", True)
    if name == "echo":
        argv = [sys.executable, str(HERE / "echo_server.py"), "--port", str(port), *workers]
        return Target(name, f"ws://127.0.0.1:{port}/", argv, env, port, None, False)
    argv = [sys.executable, str(HERE / "asgi_baseline.py"), "--port", str(port), *workers]
    if name.startswith("asgi-redis"):
        argv += ["--redis-url", args.redis_url]
    if name == "asgi-redis-batched":
        argv.append("--batched")
    url = f"ws://127.0.0.1:{port}/ws"
    return Target(name, url, argv, env, port, None, name.startswith("asgi-redis"))


# --- reporting ---------------------------------------------------------------


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {platform.python_version()}"


def _git(*argv: str) -> str:
    return subprocess.run(
        ["git", "-C", str(HERE.parent), *argv], capture_output=True, text=True, check=True
    ).stdout.strip()


def code_version() -> str:
    """The commit the server package runs from, ``+dirty`` with local changes."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "server")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


_SOURCES: dict[str, str] = {}


def source_tree(revision: str) -> str:
    """A directory holding the repository as of ``revision`` (extracted once)."""
    if revision not in _SOURCES:
        root = tempfile.mkdtemp(prefix=f"chatlead-{revision}.")
        atexit.register(shutil.rmtree, root, True)
        archive = subprocess.run(
            ["git", "-C", str(HERE.parent), "archive", revision],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
        _SOURCES[revision] = root
    return _SOURCES[revision]


def table_header() -> str:
    return (
        "| date | machine | mode | sessions × msgs | clients | pinning | workers | target "
        "| code | msg/s | p50 / p99 / max ms | server CPU µs/msg | other load (cores) "
        "| ÷ echo |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )


def table_rows(args: argparse.Namespace, runs: dict[str, Summary]) -> list[str]:
    """One markdown row per target of one repetition."""
    mode = f"open {args.rate:g} msg/s" if args.rate else "closed"
    pinning = (
        f"server cpu {args.server_cpu}, client cpu {args.client_cpu}"
        if args.server_cpu is not None or args.client_cpu is not None
        else "none"
    )
    common = [
        datetime.date.today().isoformat(),
        machine(),
        mode,
        f"{args.sessions} × {args.messages}",
        str(args.clients),
        pinning,
        str(args.workers),
    ]
    echo = runs.get("echo")
    rows = []
    for name, run in runs.items():
        code = "—"
        if name.startswith("chatlead"):
            code = name.split("@", 1)[1] if "@" in name else code_version()
        cpu = "—" if run.server_cpu_s is None else f"{run.server_cpu_s / run.acked * 1e6:.0f}"
        other = "—" if run.others_cores is None else f"{run.others_cores:.2f}"
        ratio = (
            "—" if echo is None or args.rate or name == "echo" else f"{run.rate / echo.rate:.2f}"
        )
        cells = [
            *common,
            name.split("@", 1)[0],
            code,
            f"{run.rate:,.0f}",
            f"{run.p50_ms:.2f} / {run.p99_ms:.2f} / {run.max_ms:.2f}",
            cpu,
            other,
            ratio,
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


# --- command line ------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--messages", type=int, default=50, help="measured messages per session")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured messages per session")
    parser.add_argument("--rate", type=float, default=None, help="open loop: total msg/s")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument(
        "--target",
        type=_targets,
        default="both",
        help=f"comma list of {', '.join(TARGETS)}, chatlead@REV (the server package "
        "at git revision REV, to compare commits); 'both' = chatlead,echo",
    )
    parser.add_argument("--url", default=None, help="a running chatlead /ws URL (not started)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="flushed before each run")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--server-cpu", type=int, default=None, help="taskset the servers")
    parser.add_argument("--client-cpu", type=int, default=None, help="pin the clients")
    parser.add_argument("--repeat", type=int, default=1, help="runs per target")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument(
        "--samples",
        type=Path,
        default=None,
        help="write every latency sample as CSV to SAMPLES, target name inserted like --profile",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record each server with py-spy (raw format) to PROFILE with the target "
        "name inserted before the suffix (/tmp/p.raw -> /tmp/p.chatlead.raw)",
    )
    return parser


def _run_target(name: str, args: argparse.Namespace) -> Summary:
    server = target(name, args)
    if server.uses_redis:
        _flush(args.redis_url)
    spec = LoadSpec(
        url=server.url,
        sessions=args.sessions,
        messages=args.messages,
        warmup=args.warmup,
        rate=args.rate,
        clients=args.clients,
        timeout=args.timeout,
    )
    with server.run(args.server_cpu) as pid:
        meters = Meters(pid, args.redis_url if server.uses_redis else None)
        profile = args.profile and args.profile.with_suffix(f".{name}{args.profile.suffix}")
        samples = args.samples and args.samples.with_suffix(f".{name}{args.samples.suffix}")
        with py_spy(pid, profile):
            return run_load(name, spec, args.client_cpu, meters, samples)


def _targets(value: str) -> list[str]:
    names = ["chatlead", "echo"] if value == "both" else value.split(",")
    unknown = {n for n in names if not n.startswith("chatlead@")} - set(TARGETS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown target(s) {sorted(unknown)}; use {TARGETS}")
    return names


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.clients > args.sessions:
        raise SystemExit("--clients must not exceed --sessions")
    mode = f"open loop, {args.rate:g} msg/s offered" if args.rate else "closed loop"
    print(
        f"# {machine()}; {mode}; {args.sessions} sessions × {args.messages} messages "
        f"(+{args.warmup} warm-up); {args.clients} client process(es); workers {args.workers}; "
        f"code {code_version()}"
    )
    rows = []
    for _ in range(args.repeat):
        runs = {}
        for name in args.target:
            try:
                runs[name] = _run_target(name, args)
            except RunFailed as exc:
                print(f"{name:18s} FAILED: {exc}", flush=True)
                continue
            print(runs[name].line(), flush=True)
        if "echo" in runs and not args.rate:
            for name in [n for n in runs if n != "echo"]:
                print(f"ratio {name}/echo = {runs[name].rate / runs['echo'].rate:.2f}")
        rows += table_rows(args, runs)
    print()
    print(table_header())
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
