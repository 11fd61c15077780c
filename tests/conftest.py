"""Real parts for tests: Redis, the app under uvicorn, a signing-aware receiver.

Redis is the one on 127.0.0.1:6379 when reachable (database ``CHATLEAD_TEST_DB``,
default 9, flushed per test), else an embedded server started for the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
import uvicorn
import websockets
from chatlead import keys
from chatlead.app import create_app
from chatlead.config import Settings
from chatlead.lean_websocket import LeanWebSocketProtocol
from chatlead.store import Store
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
ROOT = Path(__file__).resolve().parent.parent


def _local_redis_up() -> bool:
    try:
        return bool(redis.Redis(socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if _local_redis_up():
        yield f"redis://127.0.0.1:6379/{os.environ.get('CHATLEAD_TEST_DB', '9')}"
        return
    from chatlead.embedded import EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="chatlead-redis-") as tmp:
        embedded = EmbeddedRedis(Path(tmp))
        yield embedded.start()
        embedded.stop()


@pytest.fixture
async def rds(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(name="redis")
async def redis_bytes(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """The suite's Redis, answering bytes (as the delivery loop's client does)."""
    client = aioredis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client as the delivery loop configures it (no redirects followed)."""
    async with httpx.AsyncClient(timeout=15, follow_redirects=False) as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll ``condition`` (sync or async) until truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


# --- webhook receiver ---------------------------------------------------------


class _Server(ThreadingHTTPServer):
    # http.server's backlog of 5 drops connection attempts when the delivery loop
    # opens many at once; the retransmitted SYNs then cost seconds
    request_queue_size = 128
    daemon_threads = True


@dataclass
class Receiver:
    """A real HTTP endpoint that verifies Standard Webhooks signatures."""

    secret: str = SECRET
    fail_next: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    url: str = ""
    _server: _Server | None = None

    def start(self, port: int = 0) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append({"headers": headers, "body": body, "at": time.time()})
                if receiver.delay:
                    time.sleep(receiver.delay)
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self._answer(receiver.fail_status)
                    return
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError:
                    receiver.rejected += 1
                    self._answer(401)
                    return
                receiver.events.append({"id": headers["webhook-id"], **payload})
                self._answer(204)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                if status >= 300 and receiver.retry_after:
                    self.send_header("retry-after", receiver.retry_after)
                if 300 <= status < 400:
                    self.send_header("location", "http://127.0.0.1:9/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[str]:
        return [event["id"] for event in self.events]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


# --- the app ------------------------------------------------------------------


def hook_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    """Settings that send signed leads to ``receiver`` (as process env or app overrides)."""
    return {
        "webhook_url": receiver.url,
        "webhook_secret": SECRET,
        "webhook_allow_private": "true",
        **extra,
    }


def settings_for(url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"redis_url": url, "retry_schedule": "0,0.2s,0.5s"}
    return Settings(**{**base, **overrides})


@dataclass
class RunningApp:
    base: str
    ws_url: str
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.server.should_exit = True
        done, _ = await asyncio.wait({self.task}, timeout=15)
        if not done:  # a stuck graceful shutdown must not hang the suite
            for task in asyncio.all_tasks():  # say where it is stuck
                task.print_stack(file=sys.stderr)
            self.server.force_exit = True
            await asyncio.wait_for(self.task, 10)


async def start_app(
    settings: Settings, sock: socket.socket | None = None, **uvicorn_options: Any
) -> RunningApp:
    """The app on ``sock`` (bound, not yet listening), else on a free port."""
    if sock is None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings),
        ws=LeanWebSocketProtocol,  # what `chatlead serve` runs
        ws_max_size=settings.max_frame,
        ws_per_message_deflate=False,
        log_level="warning",
        lifespan="on",
        **uvicorn_options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_for(lambda: server.started, 10)
    return RunningApp(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws", server, task)


@pytest.fixture
async def app_factory(rds: aioredis.Redis, redis_url: str) -> AsyncIterator[Any]:
    """``await app_factory(**settings)`` runs the real app on a free port."""
    running: list[RunningApp] = []

    async def factory(
        uvicorn_options: dict[str, Any] | None = None, **overrides: Any
    ) -> RunningApp:
        app = await start_app(settings_for(redis_url, **overrides), **(uvicorn_options or {}))
        running.append(app)
        return app

    yield factory
    for app in running:
        await app.stop()


@pytest.fixture
async def app(app_factory: Any, receiver: Receiver) -> RunningApp:
    """The app with a signed webhook to ``receiver``."""
    return await app_factory(  # type: ignore[no-any-return]
        webhook_url=receiver.url, webhook_secret=SECRET, webhook_allow_private=True
    )


# --- a real widget-side client ------------------------------------------------


class Visitor:
    """A protocol client over a real socket; collects every frame it receives."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}
        self._n = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, url: str, site: str = "default", origin: str | None = None, **hello: Any
    ) -> AsyncIterator[Visitor]:
        async with websockets.connect(f"{url}?site={site}", origin=origin) as ws:  # type: ignore[arg-type]
            visitor = cls(ws)
            await visitor.send({"type": "hello", "site": site, **hello})
            visitor.welcome = await visitor.expect("welcome")
            yield visitor

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def expect(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind:
                return frame

    def next_id(self) -> str:
        self._n += 1
        return f"c{self._n}"

    async def field(self, name: str, value: str, frame_id: str | None = None) -> dict[str, Any]:
        """Send a field answer; return the ack or error answering it."""
        frame_id = frame_id or self.next_id()
        await self.send({"type": "field", "id": frame_id, "name": name, "value": value})
        while True:
            frame = await self.recv()
            if frame["type"] in ("ack", "error") and frame.get("id") == frame_id:
                return frame

    async def message(self, text: str, frame_id: str | None = None) -> dict[str, Any]:
        frame_id = frame_id or self.next_id()
        await self.send({"type": "message", "id": frame_id, "text": text})
        while True:
            frame = await self.recv()
            if frame["type"] in ("ack", "error") and frame.get("id") == frame_id:
                return frame


FULL_CONVERSATION = [
    ("name", "Ada Lovelace"),
    ("email", "ada@example.com"),
    ("phone", "+1 202 555 0143"),
    ("message", "My boiler is leaking"),
]


# --- signing in to the admin ------------------------------------------------------


def admin_headers(redis_url: str) -> dict[str, str]:
    """``Authorization`` with the admin token of a server without ``ADMIN_TOKEN``.

    Read from Redis, where the server keeps it (made here when no server has yet,
    exactly as a server makes it: whoever comes first sets it).
    """
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.set(keys.ADMIN_TOKEN, secrets.token_urlsafe(32), nx=True)
        return {"authorization": f"Bearer {client.get(keys.ADMIN_TOKEN)}"}
    finally:
        client.close()


def admin_url(redis_url: str, base: str) -> str:
    """A fresh sign-in link, as ``chatlead admin-url`` prints it for an operator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATLEAD_")}
    result = subprocess.run(
        [sys.executable, "-m", "chatlead", "admin-url", "--base", base],
        env={**env, "CHATLEAD_REDIS_URL": redis_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()


# --- the real server as a process (for kill tests) ------------------------------


@dataclass
class ServerProcess:
    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, command: str = "serve", *extra: str) -> ServerProcess:
        args = [sys.executable, "-m", "chatlead", command, *extra]
        if command == "serve":
            args += ["--port", str(self.port)]
        self.log = Path(tempfile.mkstemp(prefix="chatlead-", suffix=".log")[1])
        with open(self.log, "ab") as out:
            # a session of its own, so teardown can stop it with all it started
            self.proc = subprocess.Popen(
                args,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if command == "serve":
            self._wait_healthy()
        return self

    def _wait_healthy(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"server not ready: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log else ""

    def kill(self) -> None:
        """SIGKILL the chatlead process only (a crash: what it started may live on)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def kill_all(self) -> None:
        """SIGKILL the process and everything it started (workers, embedded Redis)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def process_factory(rds: aioredis.Redis, redis_url: str) -> Iterator[Any]:
    """``process_factory(**env)`` -> a not yet started ServerProcess."""
    made: list[ServerProcess] = []

    def factory(
        port: int | None = None, redis: str | None = redis_url, **env: str
    ) -> ServerProcess:
        full = {k: v for k, v in os.environ.items() if not k.startswith("CHATLEAD_")}
        if redis is not None:
            full["CHATLEAD_REDIS_URL"] = redis
        full.update({f"CHATLEAD_{k.upper()}": v for k, v in env.items()})
        proc = ServerProcess(full, port or free_port())
        made.append(proc)
        return proc

    yield factory
    for proc in made:
        # gracefully first: the embedded server runs in a session of its own, and only
        # a stopping chatlead stops it
        proc.terminate()
        proc.kill_all()


# --- a Redis of the test's own (to kill and restart) ----------------------------

REDIS_SERVER = shutil.which("redis-server")


class OwnRedis:
    """A test-owned redis-server with an fsync-always append-only file."""

    def __init__(self, directory: Path, *options: str) -> None:
        self.dir = directory
        self.port = free_port()
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str(self.dir / "redis.log"),
                *self.options,
            ]
        )
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                break
            except (redis.AuthenticationError, redis.ResponseError):
                break  # up, and wants a password
            except redis.ConnectionError:
                subprocess.run(["sleep", "0.02"], check=True)
        client.close()
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    if REDIS_SERVER is None:
        pytest.skip("redis-server binary not installed (Debian package redis-server)")
    server = OwnRedis(tmp_path).start()
    yield server
    server.kill()


# --- shared by several test modules ----------------------------------------------


async def seed_sessions(store: Store, count: int, idle_ms: int, fwd: str = "always") -> list[str]:
    """``count`` open sessions written by the real create script, idle after ``idle_ms``."""
    ids = [secrets.token_hex(12) for _ in range(count)]
    meta = {
        "site": "default",
        "idle": str(idle_ms),
        "fwd": fwd,
        "tok": "x",
        "uid": "u",
        "step": "name",
    }
    for start in range(0, count, 500):
        await asyncio.gather(
            *(
                store.create_session(sid, meta, [{"from": "bot", "text": "hi"}])
                for sid in ids[start : start + 500]
            )
        )
    return ids


def metric_value(text: str, name: str) -> float:
    """One sample of a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")
