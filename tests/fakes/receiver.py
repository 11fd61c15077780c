"""A plain webhook receiver that records what it is sent and answers ``status``."""

from __future__ import annotations

from . import Answer, FakeServer, Seen

__all__ = ["FakeReceiver"]


class FakeReceiver(FakeServer):
    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status

    def handle(self, request: Seen) -> Answer:
        return Answer(self.status, {"ok": self.status < 300})
