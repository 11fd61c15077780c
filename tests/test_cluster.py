"""Redis Cluster: the same code on a real three-primary cluster (docs/ARCHITECTURE.md, Redis layout).

The cluster is started from the ``redis-server`` binary for this module; its URL
replaces the shared Redis here, so ``process_factory`` starts servers against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from chatlead import keys
from chatlead.errors import StoreMisconfigured
from chatlead.outbox import Outbox
from chatlead.redis_client import connect_redis
from chatlead.store import Store
from redis.asyncio.cluster import RedisCluster

from tests.admin.serving import csv_rows, serve, visit, wait_delivery, wait_status
from tests.agent_client import AgentClient
from tests.conftest import SECRET, Receiver, Visitor, wait_for

pytestmark = pytest.mark.slow

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
BUS_OFFSET = 10_000  # a node's cluster bus listens on its port + 10000

ADMIN_TOKEN = "cluster-test-admin-token-0123456789"
SCRAPER = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Cluster:
    ports: list[int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    clients: dict[int, redis.Redis] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def node(self, port: int) -> redis.Redis:
        """A plain client to one node (its own keys only)."""
        if port not in self.clients:
            self.clients[port] = redis.Redis(port=port, decode_responses=True, socket_timeout=5)
        return self.clients[port]

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _node_ports(count: int) -> list[int]:
    """Free ports whose bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20_000, 30_000)
        if port not in ports and _bindable(port) and _bindable(port + BUS_OFFSET):
            ports.append(port)
    return ports


def _poll(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if condition():
                return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout}s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server and redis-cli are needed to start a Redis Cluster")
    base = tmp_path_factory.mktemp("cluster")
    cluster = Cluster(_node_ports(3))
    try:
        for port in cluster.ports:
            data = base / str(port)
            data.mkdir()
            cluster.procs.append(_start_node(REDIS_SERVER, port, data))
        for port in cluster.ports:
            _poll(cluster.node(port).ping, 10, f"node {port} not up")
        created = subprocess.run(
            [REDIS_CLI, "--cluster", "create"]
            + [f"127.0.0.1:{port}" for port in cluster.ports]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        for port in cluster.ports:
            _poll(
                lambda port=port: cluster.node(port).cluster("info")["cluster_state"] == "ok",
                20,
                f"node {port} not in an ok cluster",
            )
        yield cluster
    finally:
        cluster.stop()


def _start_node(binary: str, port: int, data: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
        + ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        + ["--appendonly", "no", "--save", "", "--logfile", "redis.log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def redis_url(cluster: Cluster) -> str:
    """Overrides the shared Redis for this module (``process_factory`` uses it)."""
    return cluster.url


@pytest.fixture
async def rds(redis_url: str) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(redis_url, decode_responses=True)
    await client.flushall()  # every primary
    yield client
    await client.aclose()


def _session_keys_per_node(cluster: Cluster) -> dict[int, int]:
    return {port: len(cluster.node(port).keys("chatlead:{*}:s:*")) for port in cluster.ports}


async def test_two_servers_share_sessions_and_each_lead_arrives_once(
    cluster: Cluster, process_factory: Any, receiver: Receiver, rds: RedisCluster
) -> None:
    hook = {
        "webhook_url": receiver.url,
        "webhook_secret": SECRET,
        "webhook_allow_private": "true",
        "idle_timeout": "2s",
    }
    a = process_factory(**hook, admin_token=ADMIN_TOKEN).start()
    b = process_factory(**hook, admin_token=ADMIN_TOKEN).start()

    # a visitor starts on A and finishes on B
    async with Visitor.connect(a.ws_url) as v:
        await v.field("name", "Ada")
    done = v.welcome["session_id"]
    resume = {"session_id": done, "resume_token": v.welcome["resume_token"]}
    async with Visitor.connect(b.ws_url, **resume) as back:
        assert back.welcome["resumed"] is True
        assert {f["name"]: f["value"] for f in back.welcome["fields"]} == {"name": "Ada"}
        answers = [("email", "ada@example.com"), ("phone", ""), ("message", "Leak")]
        for name, value in answers:  # frame ids go on where the first socket stopped
            assert (await back.field(name, value, frame_id=f"b-{name}"))["type"] == "ack"
        assert (await back.expect("lead"))["status"] == "completed"

    # another visitor goes quiet with a tab on each server: both hear of it
    async with Visitor.connect(a.ws_url) as quiet:
        await quiet.field("name", "Bob")
        await quiet.field("email", "bob@example.com")
        gone = quiet.welcome["session_id"]
        again = {"session_id": gone, "resume_token": quiet.welcome["resume_token"]}
        async with Visitor.connect(b.ws_url, **again) as tab:
            for socket_ in (quiet, tab):
                lead = await socket_.expect("lead", timeout=10)
                assert lead == {"type": "lead", "status": "abandoned", "session_id": gone}

    # sessions without contact details: spread over every primary, never forwarded
    for n in range(48):
        if all(_session_keys_per_node(cluster).values()):
            break
        async with Visitor.connect((a, b)[n % 2].ws_url):
            pass
    per_node = _session_keys_per_node(cluster)
    assert all(per_node.values()), per_node
    assert all(cluster.node(port).dbsize() > per_node[port] for port in cluster.ports)

    await wait_for(lambda: len(receiver.events) >= 2, 10)
    await asyncio.sleep(2.5)  # the extra sessions' idle timeout: still nothing more
    assert receiver.rejected == 0
    assert sorted(receiver.ids()) == sorted([f"evt_{done}_completed", f"evt_{gone}_abandoned_1"])
    by_type = {event["type"]: event["data"] for event in receiver.events}
    assert by_type["lead.completed"]["sessionId"] == done
    assert {"name": "email", "value": "ada@example.com"} in by_type["lead.completed"]["fields"]
    assert by_type["lead.abandoned"]["sessionId"] == gone
    assert by_type["lead.abandoned"]["isAbandoned"] is True

    metrics = httpx.get(f"{a.base}/metrics", headers=SCRAPER, timeout=5)
    assert metrics.status_code == 200 and "chatlead_outbox_depth 0.0" in metrics.text
    for server in (a, b):
        server.terminate()
        assert server.proc.returncode == 0, server.output()


async def test_store_on_cluster(cluster: Cluster, redis_url: str, rds: RedisCluster) -> None:
    store = Store(connect_redis(redis_url), 16, 3600)
    try:
        assert store.cluster is not None
        await store.check()

        # many concurrent calls wait for a connection instead of failing
        ids = [f"{n:024x}" for n in range(200)]
        meta = {"site": "default", "idle": "100", "fwd": "always", "tok": "t", "uid": "u"}
        entry = {"from": "bot", "text": "Hi"}
        await asyncio.gather(*(store.create_session(sid, meta, [entry]) for sid in ids))
        loaded = await asyncio.gather(*(store.load_session(sid) for sid in ids))
        assert all(record is not None and record.seq == 1 for record in loaded)

        # a script the servers forgot (restart, failover) is loaded again
        await rds.script_flush()
        await asyncio.sleep(0.15)
        flagged: list[str] = []
        while len(flagged) < len(ids):
            flagged += (await store.sweep()).flagged
        assert sorted(flagged) == ids

        outbox = Outbox(store)
        await rds.script_flush()
        claims: list[Any] = []
        while len(claims) < len(ids):
            claims += await outbox.claim()
        event, session = await outbox.load_with_session(claims[0].event_id)
        assert event is not None and event.type == "lead.abandoned"
        assert session is not None and session.id == event.session_id
        attempt = {"status_code": 204, "latency_ms": 5, "error": None, "response": ""}
        assert await outbox.settle(claims[0], "delivered", attempt) == "ok"
        assert await outbox.replay(claims[0].event_id) == "ok"
        (test_event,) = await outbox.add_test_event("default")
        record, _ = await outbox.load_with_session(test_event)
        assert record is not None and record.type == "lead.test"
        lead = {"id": claims[0].event_id, "type": "lead.abandoned", "site": "default", "data": {}}
        assert await outbox.push_inbox(lead) is True
        assert [{k: v for k, v in e.items() if k != "at"} for e in await outbox.inbox()] == [lead]

        # eviction on any one primary is refused, naming it
        port = cluster.ports[2]
        cluster.node(port).config_set("maxmemory-policy", "allkeys-lru")
        try:
            with pytest.raises(StoreMisconfigured, match=f"allkeys-lru.* on 127.0.0.1:{port}"):
                await store.check()
        finally:
            cluster.node(port).config_set("maxmemory-policy", "noeviction")
        assert await rds.hget(keys.META, "shards") == "16"
    finally:
        await store.redis.aclose()


# --- the admin API on the cluster ---------------------------------------------


@pytest.mark.slow
async def test_admin_api_on_a_redis_cluster(cluster: Cluster, rds: RedisCluster) -> None:
    # rds: the cluster starts empty, so the report holds exactly these two sessions
    async with serve(redis_url=cluster.url) as on_cluster:
        ann = await visit(on_cluster, [("name", "Ann"), ("email", "ann@example.com")])
        ben = await visit(on_cluster, [("name", "Ben")])
        for sid in (ann, ben):
            await wait_status(on_cluster, sid, "abandoned")
        await wait_delivery(on_cluster, f"evt_{ann}_abandoned_1", "delivered")
        http = on_cluster.http
        report = (await http.get("/api/reports/abandoned")).json()
        assert {row["session_id"] for row in report["items"]} == {ann, ben}
        assert report["summary"]["abandoned"] == 2
        exported = csv_rows((await http.get("/api/reports/abandoned?format=csv")).text)
        assert [row["session_id"] for row in exported] == [r["session_id"] for r in report["items"]]
        assert (await http.get("/api/deliveries")).json()["items"][0]["status"] == "delivered"
        # the health settle.lua keeps in the event's shard, read across the nodes
        (health,) = (await http.get("/api/destinations")).json()["items"]
        assert (health["site"], health["destination"], health["state"]) == (
            "default",
            "webhook",
            "healthy",
        )
        assert health["last_success_ms"] > 0
        assert (await http.get("/admin/deliveries")).status_code == 200
        assert (await http.post(f"/api/deliveries/evt_{ann}_abandoned_1/replay")).status_code == 202
        assert (await http.post("/api/sites/default/test-event")).status_code == 202
        erased = await http.delete(f"/api/sessions/{ann}")
        assert erased.status_code == 200 and erased.json()["found"] is True
        assert (await http.get(f"/api/sessions/{ann}")).status_code == 404
        assert (await http.get("/admin")).status_code == 200


async def test_a_takeover_across_servers_on_a_cluster(
    cluster: Cluster, process_factory: Any, rds: RedisCluster
) -> None:
    a = process_factory(admin_token=ADMIN_TOKEN).start()
    b = process_factory(admin_token=ADMIN_TOKEN).start()
    made = httpx.post(
        f"{b.base}/api/agents",
        json={"id": "ana", "name": "Ana Diaz"},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=5,
    )
    assert made.status_code == 201, made.text
    async with (
        Visitor.connect(a.ws_url) as visitor,
        AgentClient.connect(b.base, made.json()["token"]) as agent,
    ):
        sid = visitor.welcome["session_id"]
        await agent.send({"type": "watch"})
        await agent.expect("session", session_id=sid)
        assert (await agent.join(sid))["agent"]["id"] == "ana"
        assert (await visitor.expect("agent"))["status"] == "joined"
        ack = await visitor.message("hello?")
        assert (await agent.expect("message", session_id=sid, seq=ack["seq"]))["text"] == "hello?"
        said = await agent.say(sid, "Hi!")
        assert (await visitor.expect("message"))["seq"] == said["seq"]
        await agent.send({"type": "leave", "session_id": sid})
        assert (await visitor.expect("agent"))["status"] == "left"
