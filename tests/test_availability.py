"""Appointment slots (CONTRACT §12, Slots), the pure grid: days, hours, lead time,
horizon, blocked days, and the two days a year when the clocks change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from chatlead.availability import Availability, free_slots, slot_at
from pydantic import ValidationError

NY = {"timezone": "America/New_York", "days": ["mon", "tue", "wed", "thu", "fri"]}


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _values(av: Availability, now: str, held: set[str] | None = None, limit: int = 50) -> list[str]:
    return [s.value for s in free_slots(av, _ms(now), held or set(), limit)]


def test_the_contract_example() -> None:
    av = Availability(
        **NY,
        hours="08:00-17:00",
        slot="2h",
        lead_time="4h",
        horizon="7d",
        blocked=["2026-12-25"],
        offer=6,
    )
    # Wednesday 2 Dec 2026, 09:30 in New York (14:30 UTC): the first slot is 4 h later
    slots = free_slots(av, _ms("2026-12-02T14:30:00+00:00"), set())
    assert [s.option() for s in slots[:2]] == [
        {"label": "Wed 2 Dec, 14:00–16:00", "value": "2026-12-02T19:00:00Z"},
        {"label": "Thu 3 Dec, 08:00–10:00", "value": "2026-12-03T13:00:00Z"},
    ]
    assert len(slots) == 6
    assert [s.label for s in slots][2:] == [
        "Thu 3 Dec, 10:00–12:00",
        "Thu 3 Dec, 12:00–14:00",
        "Thu 3 Dec, 14:00–16:00",
        "Fri 4 Dec, 08:00–10:00",
    ]  # 16:00 does not fit a 2 h slot before 17:00


def test_weekends_blocked_days_held_slots_and_the_horizon() -> None:
    av = Availability(**NY, hours="09:00-11:00", slot="1h", horizon="7d", blocked=["2026-12-25"])
    days = {v[:10] for v in _values(av, "2026-12-21T00:00:00+00:00")}
    # Friday 25 is blocked, the weekend is closed, Monday 28 is past the horizon
    assert days == {"2026-12-21", "2026-12-22", "2026-12-23", "2026-12-24"}
    held = {"2026-12-21T14:00:00Z"}
    assert _values(av, "2026-12-21T00:00:00+00:00", held)[0] == "2026-12-21T15:00:00Z"
    # a day later, Monday 28 is within the seven days
    assert "2026-12-28T14:00:00Z" in _values(av, "2026-12-22T00:00:00+00:00")


def test_spring_forward_day() -> None:
    # Sunday 8 March 2026: 02:00 -> 03:00 in New York; 02:00 and 02:30 do not exist
    av = Availability(timezone="America/New_York", days=["sun"], hours="01:00-04:00", slot="30m")
    values = _values(av, "2026-03-08T00:00:00+00:00")
    labels = [s.label for s in free_slots(av, _ms("2026-03-08T00:00:00+00:00"), set(), 50)]
    assert labels[:4] == [
        "Sun 8 Mar, 01:00–01:30",
        "Sun 8 Mar, 01:30–03:00",  # 30 minutes later the clock reads 03:00
        "Sun 8 Mar, 03:00–03:30",
        "Sun 8 Mar, 03:30–04:00",
    ]
    assert values[:4] == [
        "2026-03-08T06:00:00Z",  # EST, UTC-5
        "2026-03-08T06:30:00Z",
        "2026-03-08T07:00:00Z",  # EDT, UTC-4
        "2026-03-08T07:30:00Z",
    ]


def test_fall_back_day() -> None:
    # Sunday 1 November 2026: 02:00 -> 01:00 in New York; 01:00-02:00 happens twice
    av = Availability(timezone="America/New_York", days=["sun"], hours="00:00-03:00", slot="1h")
    slots = free_slots(av, _ms("2026-11-01T00:00:00+00:00"), set(), 50)[:3]
    assert [s.value for s in slots] == [
        "2026-11-01T04:00:00Z",  # 00:00 EDT
        "2026-11-01T05:00:00Z",  # 01:00 EDT, the first of the two
        "2026-11-01T07:00:00Z",  # 02:00 EST
    ]
    assert [s.label for s in slots] == [
        "Sun 1 Nov, 00:00–01:00",
        "Sun 1 Nov, 01:00–01:00",  # an hour later the clock reads 01:00 again
        "Sun 1 Nov, 02:00–03:00",
    ]


def test_a_value_must_be_one_the_grid_offers_now() -> None:
    av = Availability(**NY, hours="08:00-17:00", slot="2h", lead_time="4h", horizon="7d")
    now = _ms("2026-12-02T14:30:00+00:00")
    assert slot_at(av, "2026-12-03T13:00:00Z", now) is not None
    assert slot_at(av, "2026-12-02T19:00:00Z", now) is not None
    for crafted in (
        "2026-12-03T13:30:00Z",  # not on the grid
        "2026-12-02T15:00:00Z",  # sooner than the lead time
        "2026-12-19T13:00:00Z",  # past the horizon
        "2026-12-05T13:00:00Z",  # a Saturday
        "2026-12-03T13:00:00+00:00",  # not the spelling offers use
        "2026-12-03T13:00:00",
        "tomorrow",
        "",
    ):
        assert slot_at(av, crafted, now) is None, crafted


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("timezone", "Mars/Olympus"),
        ("days", ["someday"]),
        ("days", []),
        ("hours", "9-5"),
        ("hours", "17:00-08:00"),
        ("slot", "10h"),
        ("slot", "1m"),
        ("horizon", "2y"),
        ("offer", 0),
        ("offer", 100),
    ],
)
def test_bad_availability(key: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Availability(**{"timezone": "UTC", key: value})  # type: ignore[arg-type]


def test_the_whole_year_has_no_gap_and_no_overlap() -> None:
    av = Availability(timezone="Europe/Berlin", days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                      hours="00:00-23:00", slot="1h", horizon="366d")  # fmt: skip
    slots = free_slots(av, _ms("2026-01-01T00:00:00+00:00"), set(), 10_000)
    starts = [datetime.fromisoformat(s.value) for s in slots]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert all(s.tzinfo == UTC for s in starts)
