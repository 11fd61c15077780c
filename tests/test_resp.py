"""The pipelined connection of the visitor hot path, against real Redis servers."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
import trustme
from chatlead.resp import Pipe, pack, pack_script_call, tls_context
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.conftest import REDIS_SERVER, OwnRedis, free_port


def test_pack_is_resp_bulk_strings() -> None:
    assert pack("SET", "k", 12) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"
    assert pack("ECHO", "é") == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"
    call = pack_script_call("abc", ["k1", "k2"], ["x", 5, b'{"a":1}'])
    assert call == pack("EVALSHA", "abc", 2, "k1", "k2", "x", 5, b'{"a":1}')


async def test_replies_come_back_in_order_with_errors_in_place(
    rds: aioredis.Redis, redis_url: str
) -> None:
    pipe = Pipe(redis_url)
    try:
        replies = await pipe.execute(
            [
                pack("SET", "chatlead:test:a", "1"),
                pack("INCR", "chatlead:test:a"),
                pack("HGET", "chatlead:test:a", "f"),  # wrong type: an error, in its place
                pack("EVALSHA", "0" * 40, 0),
                pack("GET", "chatlead:test:a"),
            ]
        )
    finally:
        pipe.close()
    assert replies[:2] == ["OK", 2]
    assert isinstance(replies[2], ResponseError) and isinstance(replies[3], NoScriptError)
    assert replies[4] == "2"
    assert await rds.get("chatlead:test:a") == "2"  # on the database of the URL


@pytest.fixture
def redis_with_password(tmp_path: Path) -> OwnRedis:  # type: ignore[misc]
    if REDIS_SERVER is None:
        pytest.skip("redis-server binary not installed (Debian package redis-server)")
    server = OwnRedis(tmp_path, "--requirepass", "s3cret").start()
    yield server
    server.kill()


async def test_password_database_and_reconnect(redis_with_password: OwnRedis) -> None:
    port = redis_with_password.port
    pipe = Pipe(f"redis://:s3cret@127.0.0.1:{port}/3")
    try:
        assert await pipe.execute([pack("SET", "k", "v")]) == ["OK"]
        redis_with_password.kill()
        with pytest.raises(RedisConnectionError):  # lost, or refused: never a reply
            await pipe.execute([pack("GET", "k")])
        redis_with_password.start()  # the append-only file brings the key back
        assert await pipe.execute([pack("GET", "k")]) == ["v"]
    finally:
        pipe.close()
    wrong = Pipe(f"redis://:nope@127.0.0.1:{port}/3")
    with pytest.raises(RedisConnectionError, match="setup"):
        await wrong.execute([pack("PING")])


async def test_a_batch_unanswered_in_time_fails_and_the_next_reconnects(redis_url: str) -> None:
    pipe = Pipe(redis_url, timeout=0.3)
    try:
        with pytest.raises(RedisTimeoutError):  # the server holds this connection's replies
            await pipe.execute([pack("BLPOP", "chatlead:test:nothing", 2)])
        assert await asyncio.wait_for(pipe.execute([pack("PING")]), 2) == ["PONG"]
    finally:
        pipe.close()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS, with a certificate from a throwaway CA."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server binary not installed (Debian package redis-server)")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(tmp_path / "srv.pem")
    port = free_port()
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tmp_path / "srv.pem"), "--tls-key-file", str(tmp_path / "srv.pem"),
         "--tls-ca-cert-file", str(tmp_path / "ca.pem"), "--tls-auth-clients", "no",
         "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis.from_url(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={tmp_path}/ca.pem")
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    client.close()
    yield port, tmp_path / "ca.pem"
    server.kill()
    server.wait()


async def _both_paths(url: str) -> tuple[object, object]:
    """What redis-py and the hot path's own connection each make of ``url``."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    pipe = Pipe(url, timeout=2, connect_timeout=2)
    try:
        outcomes: list[object] = []
        for attempt in (client.ping(), pipe.execute([pack("PING")])):
            try:
                outcomes.append(await attempt)
            except (RedisConnectionError, OSError) as exc:
                outcomes.append(type(exc).__name__)
        return outcomes[0], outcomes[1]
    finally:
        pipe.close()
        await client.aclose()


async def test_both_paths_read_a_rediss_urls_tls_options_alike(
    tls_redis: tuple[int, Path],
) -> None:
    port, ca = tls_redis
    base = f"rediss://127.0.0.1:{port}/0"
    # the URL's CA: both trust the server
    assert await _both_paths(f"{base}?ssl_ca_certs={ca}") == (True, ["PONG"])
    # the system's CAs only: both refuse the throwaway certificate
    refused = await _both_paths(base)
    assert refused[0] == refused[1] == "ConnectionError"
    # certificates not required (and so no host name check): both connect
    assert await _both_paths(f"{base}?ssl_cert_reqs=none") == (True, ["PONG"])


def test_tls_options_default_like_redis_py() -> None:
    strict = tls_context(parse_url("rediss://h:1/0"))
    assert strict is not None and strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    loose = tls_context(parse_url("rediss://h:1/0?ssl_check_hostname=false"))
    assert loose is not None and not loose.check_hostname
    assert tls_context(parse_url("redis://h:1/0")) is None
