"""The pipelined connection of the visitor hot path, against real Redis servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.resp import Pipe, pack, pack_script_call
from tests.conftest import REDIS_SERVER, OwnRedis


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
