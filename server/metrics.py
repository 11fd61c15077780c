"""Prometheus metrics: what the hot path counts, and the text a scrape gets.

Counters and histograms are updated where things happen (a few hundred
nanoseconds each). With ``serve --workers N`` every worker writes them to files in
``PROMETHEUS_MULTIPROC_DIR`` (set by the CLI) and a scrape, answered by any worker,
sums all of them. What Redis knows for every process (the outbox depth, the open
sessions) is read from Redis when scraped (``admin/routes_metrics.py`` serves
``/metrics`` behind the admin token unless ``METRICS_PUBLIC=true``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .protocol import CLIENT_FRAME_TYPES

__all__ = [
    "ACK_SECONDS",
    "AGENT_FIRST_RESPONSE",
    "AGENT_SOCKETS",
    "CONNECTIONS",
    "DELIVERIES",
    "DELIVERY_SECONDS",
    "FRAMES",
    "FRAME_COUNTERS",
    "MESSAGES",
    "SESSIONS",
    "SWEEP_LAG",
    "SWEEP_SECONDS",
    "TAKEOVERS",
    "exposition",
    "forget_dead_workers",
]

log = logging.getLogger("chatlead.metrics")

REGISTRY = CollectorRegistry()

CONNECTIONS = Gauge(
    "chatlead_connections", "Open widget sockets", registry=REGISTRY, multiprocess_mode="livesum"
)
FRAMES = Counter(
    "chatlead_frames_total",
    "Client frames received, by protocol type (invalid: refused as bad_frame)",
    ["type"],
    registry=REGISTRY,
)
ACK_SECONDS = Histogram(
    "chatlead_ack_seconds",
    "Time from receiving a visitor frame to queueing its ack (includes the Redis step)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
FRAME_COUNTERS = {name: FRAMES.labels(name) for name in (*CLIENT_FRAME_TYPES, "invalid")}
"""Bound once: ``labels()`` on every frame showed up in profiles."""
SESSIONS = Counter(
    "chatlead_sessions_total",
    "Session lifecycle events seen by this process",
    ["event"],
    registry=REGISTRY,
)
TAKEOVERS = Counter(
    "chatlead_takeovers_total", "Sessions an agent took over (CONTRACT §10)", registry=REGISTRY
)
AGENT_FIRST_RESPONSE = Histogram(
    "chatlead_agent_first_response_seconds",
    "From a visitor's first unanswered message to an agent's reply",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
MESSAGES = Counter(
    "chatlead_messages_total",
    "Transcript messages stored by this process, by who wrote them",
    ["role"],
    registry=REGISTRY,
)
AGENT_SOCKETS = Gauge(
    "chatlead_agent_sockets", "Open agent sockets", registry=REGISTRY, multiprocess_mode="livesum"
)
SWEEP_SECONDS = Histogram(
    "chatlead_sweep_seconds",
    "Duration of one sweep pass over all shards",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
SWEEP_LAG = Gauge(
    "chatlead_sweeper_lag_seconds",
    "How late the last flagged session was flagged, past its deadline",
    registry=REGISTRY,
    multiprocess_mode="max",
)
DELIVERIES = Counter(
    "chatlead_delivery_attempts_total",
    "Delivery attempts by outcome (delivered, retry, dead, defer)",
    ["outcome"],
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "chatlead_delivery_seconds",
    "Latency of one delivery attempt",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
    registry=REGISTRY,
)


class _RedisGauges(Collector):
    """Gauges of the whole deployment, set from Redis at each scrape."""

    def __init__(self) -> None:
        self.outbox_depth = 0
        self.sessions_open = 0

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "chatlead_outbox_depth",
            "Events waiting for delivery (all processes)",
            value=self.outbox_depth,
        )
        yield GaugeMetricFamily(
            "chatlead_sessions_open",
            "Open sessions, i.e. waiting for the visitor or for abandonment (all processes)",
            value=self.sessions_open,
        )


REDIS_GAUGES = _RedisGauges()
_SHARED = CollectorRegistry()
_SHARED.register(REDIS_GAUGES)


def forget_dead_workers() -> None:
    """Drop the live gauges (open sockets) of workers that died without saying so.

    uvicorn restarts a killed worker but tells no one; the new worker clears the files
    of every worker pid that is gone, so ``chatlead_connections`` counts live sockets.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory is None:
        return
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        if not Path(f"/proc/{pid}").exists() and pid != os.getpid():
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def exposition(outbox_depth: int, sessions_open: int) -> bytes:
    """The text a Prometheus scrape gets: this process's (or every worker's) metrics
    and the deployment's gauges, read from Redis by the caller."""
    REDIS_GAUGES.outbox_depth = outbox_depth
    REDIS_GAUGES.sessions_open = sessions_open
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest(REGISTRY) + generate_latest(_SHARED)
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return generate_latest(merged) + generate_latest(_SHARED)
