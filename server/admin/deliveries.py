"""The delivery log (pure): one outbox event and its attempts, as the API shows them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from .. import keys
from .params import int_or_zero, iso_ms

__all__ = ["DeliveryAttempt", "DeliveryItem", "DeliveryPage", "delivery_item"]


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    at: str
    status_code: int | None
    latency_ms: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryItem:
    """One outbox event as ``/api/deliveries`` shows it (exact §5 shape)."""

    id: str
    event: str
    session_id: str
    site: str
    destination: str
    status: Literal["pending", "delivered", "dead"]
    attempts: list[DeliveryAttempt]
    created_at: str
    next_attempt_at: str | None


def _attempt(raw: str) -> DeliveryAttempt | None:
    try:
        data: dict[str, Any] = json.loads(raw)
        code = data.get("status_code")
        latency = data.get("latency_ms")
        error = data.get("error")
        return DeliveryAttempt(
            at=iso_ms(int(data["at"])),
            status_code=code if isinstance(code, int) else None,
            latency_ms=float(latency) if isinstance(latency, int | float) else None,
            error=str(error) if error else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None


def delivery_item(event_id: str, raw: dict[str, str], attempts: list[str]) -> DeliveryItem | None:
    """The log entry of one event from its hash and attempt list; None if it is gone."""
    status = raw.get("status")
    if status not in ("pending", "delivered", "dead") or "created" not in raw:
        return None
    parsed = [a for a in map(_attempt, attempts) if a is not None]
    due = raw.get("next") if status == "pending" else None
    return DeliveryItem(
        id=event_id,
        event=raw.get("type", ""),
        session_id=raw.get("session", ""),
        site=raw.get("site", ""),
        destination=keys.event_destination(event_id),
        status=status,  # type: ignore[arg-type]
        attempts=parsed,
        created_at=iso_ms(int_or_zero(raw["created"])),
        next_attempt_at=iso_ms(int_or_zero(due)) if due else None,
    )


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    items: list[DeliveryItem]
    next_cursor: str | None
