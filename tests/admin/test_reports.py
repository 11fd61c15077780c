"""``server.reports``: periods, cursors, rows, CSV and summaries; and the inbox's rows,
filters and pages (``server.inbox``). Pure, no I/O."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chatlead.admin.csv import CSV_HEADER, csv_lines, csv_record, safe_cell
from chatlead.admin.deliveries import delivery_item
from chatlead.admin.inbox import (
    InboxQuery,
    InboxSelection,
    inbox_row,
    need_fields,
    parse_inbox_query,
)
from chatlead.admin.params import (
    DAY_MS,
    MAX_DAYS,
    QueryError,
    decode_cursor,
    encode_cursor,
    iso_ms,
    parse_limit,
    parse_period,
)
from chatlead.admin.rows import abandoned_row, row_values, session_row
from chatlead.admin.summary import summarize
from chatlead.outbox import decode_entry
from chatlead.protocol import iso_ms as protocol_iso_ms
from chatlead.sites import FlowStep, Site
from hypothesis import given
from hypothesis import strategies as st

NOW = 1_717_243_200_000  # 2024-06-01T12:00:00Z
SID = "0123456789abcdef01234567"


# --- periods ------------------------------------------------------------------


def test_default_period_is_the_last_30_days() -> None:
    period = parse_period(None, None, NOW)
    assert period.until_ms == NOW
    assert period.since_ms == NOW - 30 * DAY_MS


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("24h", None, (NOW - DAY_MS, NOW)),
        ("7d", "now", (NOW - 7 * DAY_MS, NOW)),
        ("90m", None, (NOW - 90 * 60_000, NOW)),
        ("2w", None, (NOW - 14 * DAY_MS, NOW)),
        # a bare date as `until` covers that whole day
        ("2024-05-01", "2024-05-31", (1_714_521_600_000, 1_717_200_000_000)),
        ("2024-05-01T09:30:00Z", None, (1_714_555_800_000, NOW)),
        ("2024-05-01T11:30:00+02:00", None, (1_714_555_800_000, NOW)),
        ("2024-05-01T09:30:00", None, (1_714_555_800_000, NOW)),  # naive means UTC
    ],
)
def test_since_and_until_accept_dates_times_and_relative(
    since: str, until: str | None, expected: tuple[int, int]
) -> None:
    period = parse_period(since, until, NOW)
    assert (period.since_ms, period.until_ms) == expected


@pytest.mark.parametrize(
    ("since", "until", "param", "words"),
    [
        ("yesterday", None, "since", "ISO-8601"),
        ("2024-13-01", None, "since", "ISO-8601"),
        ("7 days", None, "since", "ISO-8601"),
        (None, "2024-02-30", "until", "ISO-8601"),
        ("99999-01-01", None, "since", "ISO-8601"),
        ("2024-06-02", "2024-06-01", "since", "before"),
        ("2020-01-01", None, "since", f"{MAX_DAYS} days"),
        ("1969-12-01", "1970-01-02", "since", "1970"),
        ("-5d", None, "since", "ISO-8601"),
    ],
)
def test_bad_periods_name_the_parameter(
    since: str | None, until: str | None, param: str, words: str
) -> None:
    with pytest.raises(QueryError) as caught:
        parse_period(since, until, NOW)
    assert caught.value.param == param
    assert words in str(caught.value)


def test_limit() -> None:
    assert parse_limit(None) == 100
    assert parse_limit("7") == 7
    for bad in ("0", "1001", "-1", "ten", "1e3"):
        with pytest.raises(QueryError):
            parse_limit(bad)


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_iso_ms_is_exact(ms: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert iso_ms(ms) == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_iso_ms_matches_the_protocol_format(ms: int) -> None:
    assert iso_ms(ms) == protocol_iso_ms(ms)


# --- cursors ------------------------------------------------------------------


def test_cursor_round_trip_and_rejects_forgeries() -> None:
    import re

    member = re.compile(r"^[0-9a-f]{24}$")
    assert decode_cursor(encode_cursor(NOW, SID), member) == (NOW, SID)
    assert decode_cursor(None, member) is None
    for forged in ("abc", encode_cursor(NOW, "../../etc/passwd"), "%%%", encode_cursor(1, "x")):
        with pytest.raises(QueryError):
            decode_cursor(forged, member)


# --- rows ---------------------------------------------------------------------


def _values(**overrides: str) -> list[str]:
    base = {
        "status": "abandoned",
        "created": str(NOW - 60_000),
        "active": str(NOW - 30_000),
        "abandoned_at": str(NOW),
        "step": "phone",
        "recovered": "",
        "abandons": "1",
        "name": "Ada",
        "email": "ada@example.com",
        "phone": "",
        "company": "",
        "delivery": "delivered",
    }
    base.update(overrides)
    return list(base.values())


def test_row_from_raw_values() -> None:
    row = abandoned_row(SID, "acme", NOW, _values())
    assert row is not None
    assert row.started_at == "2024-06-01T11:59:00.000Z"
    assert row.last_activity_at == "2024-06-01T11:59:30.000Z"
    assert row.abandoned_at == "2024-06-01T12:00:00.000Z"
    assert (row.name, row.email, row.phone, row.company) == ("Ada", "ada@example.com", None, None)
    assert row.contactable and not row.recovered
    assert row.delivery == "delivered"


def test_row_flags() -> None:
    silent = abandoned_row(SID, "acme", NOW, _values(email="", delivery="", abandons=""))
    assert silent is not None and not silent.contactable and silent.delivery == "none"
    back = abandoned_row(SID, "acme", NOW, _values(status="open", recovered="1"))
    assert back is not None and back.recovered
    # came back once, then idled out again: not recovered from this abandonment
    again = abandoned_row(SID, "acme", NOW, _values(recovered="1"))
    assert again is not None and not again.recovered
    assert abandoned_row(SID, "acme", NOW, _values(status="")) is None  # erased or expired


def test_session_row_keeps_the_recovered_flag_of_any_return() -> None:
    row = session_row(SID, "acme", NOW, _values(status="abandoned", recovered="1"))
    assert row is not None and row.status == "abandoned" and row.recovered
    assert row.started_at == "2024-06-01T11:59:00.000Z" and row.step == "phone"
    assert (row.name, row.email, row.phone) == ("Ada", "ada@example.com", None)
    assert session_row(SID, "acme", NOW, _values(status="")) is None


def test_row_reads_at_an_offset() -> None:
    flat = _values(name="First") + _values(name="Second")
    row = abandoned_row(SID, "acme", NOW, flat, 12)
    assert row is not None and row.name == "Second"


# --- CSV ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+12025550143", "'+12025550143"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("Ada", "Ada"),
        ("", ""),
    ],
)
def test_safe_cell(value: str, cell: str) -> None:
    assert safe_cell(value) == cell


def _parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))


def test_csv_is_rfc4180_with_bom_and_formula_safe() -> None:
    tricky = 'Zoë "Z", =1+1\nline two'
    row = row_values(SID, "acme", NOW, _values(name=tricky, company="=cmd|' /C calc'!A0"))
    assert row is not None
    text = "".join(csv_lines([[row]], bom=True))
    assert text.startswith("\ufeffsession_id,site,")
    assert text.endswith("\r\n")
    header, values = _parse(text)
    assert header == list(CSV_HEADER)
    record = dict(zip(header, values, strict=True))
    assert record["name"] == tricky  # does not start with a formula character
    assert record["company"] == "'=cmd|' /C calc'!A0"
    assert record["contactable"] == "yes" and record["recovered"] == "no"
    assert record["delivery"] == "delivered"


@given(st.text(max_size=40), st.text(alphabet=' ,"\r\n=+-@\tab', max_size=12))
def test_any_captured_text_survives_a_csv_round_trip(text: str, tricky: str) -> None:
    row = row_values(SID, "acme", NOW, _values(name=text, company=tricky, step=tricky))
    assert row is not None
    _, values = _parse("".join(csv_lines([[row], [row]]))[: -len(csv_record(row))])
    assert len(values) == len(CSV_HEADER)
    record = dict(zip(CSV_HEADER, values, strict=True))
    assert record["name"] == safe_cell(text)
    assert record["company"] == safe_cell(tricky) and record["step"] == safe_cell(tricky)
    assert not record["name"].startswith(("=", "+", "-", "@", "\t", "\r"))


# --- summary ------------------------------------------------------------------

FLOW = (
    FlowStep(field="name", ask="Name?", required=True),
    FlowStep(field="email", ask="Email?", required=True),
    FlowStep(field="phone", ask="Phone?"),
)


def test_summary_totals_rate_and_drop_off() -> None:
    site = Site(id="acme", flow=FLOW)
    period = parse_period("2024-05-30", "2024-05-31", NOW)
    day1, day2 = period.first_day, period.last_day
    counters = [
        # two shards of one day, summed
        ("acme", day1, {"started": "6", "completed": "2", "abandoned": "3", "stop:name": "1"}),
        ("acme", day1, {"started": "4", "abandoned": "2", "stop:email": "2", "stop:phone": "1"}),
        ("acme", day2, {"started": "2", "completed": "1", "recovered": "1", "stop:old": "1"}),
        ("other", day1, {"started": "50"}),  # not in scope
        ("acme", day2 + 5, {"started": "50"}),  # outside the period
    ]
    summary = summarize([site], period, counters)
    assert (summary.started, summary.completed, summary.abandoned, summary.recovered) == (
        12,
        3,
        5,
        1,
    )
    assert summary.abandonment_rate == round(5 / 12, 4)
    assert summary.first_day == "2024-05-30" and summary.last_day == "2024-05-31"
    steps = [(s.step, s.reached, s.stopped) for s in summary.drop_off]
    # reached = started minus those who stopped earlier; a step no longer in the flow is kept
    assert steps == [("name", 12, 1), ("email", 11, 2), ("phone", 9, 1), ("old", 1, 1)]
    assert summary.drop_off[0].question == "Name?"
    assert [d.day for d in summary.daily] == ["2024-05-30", "2024-05-31"]
    assert [d.started for d in summary.daily] == [10, 2]


def test_summary_over_several_sites_merges_steps_by_name() -> None:
    a = Site(id="a", flow=FLOW)
    b = Site(id="b", flow=(FlowStep(field="email", ask="Mail?"), FlowStep(field="zip", ask="Zip?")))
    period = parse_period("2d", None, NOW)
    counters = [
        ("a", period.last_day, {"started": "4", "abandoned": "1", "stop:email": "1"}),
        ("b", period.last_day, {"started": "2", "abandoned": "2", "stop:zip": "2"}),
    ]
    summary = summarize([a, b], period, counters)
    assert [s.site for s in summary.sites] == ["a", "b"]
    assert [(s.step, s.reached, s.stopped) for s in summary.drop_off] == [
        ("name", 4, 0),
        ("email", 6, 1),
        ("phone", 3, 0),
        ("zip", 2, 2),
    ]
    empty = summarize([a], period, [])
    assert empty.abandonment_rate == 0.0 and len(empty.daily) == 3


# --- delivery log -------------------------------------------------------------


def test_delivery_item_has_the_contract_shape() -> None:
    raw = {
        "type": "lead.abandoned",
        "session": SID,
        "site": "acme",
        "status": "pending",
        "created": str(NOW),
        "next": str(NOW + 5000),
        "lease": "x",
    }
    attempts = [
        json.dumps({"at": NOW + 10, "status_code": 503, "latency_ms": 12.5, "error": "HTTP 503"}),
        "not json",
        json.dumps({"status_code": 200}),  # no time: skipped rather than invented
    ]
    item = delivery_item(f"evt_{SID}_abandoned_1", raw, attempts)
    assert item is not None
    assert item.next_attempt_at == "2024-06-01T12:00:05.000Z"
    assert item.created_at == "2024-06-01T12:00:00.000Z"
    assert [(a.status_code, a.error) for a in item.attempts] == [(503, "HTTP 503")]
    settled = delivery_item("e", {**raw, "status": "delivered"}, [])
    assert settled is not None and settled.next_attempt_at is None
    assert delivery_item("e", {}, []) is None


# --- the inbox (server.inbox) ---------------------------------------------------

INBOX_SID = re.compile(r"^[0-9a-f]{24}$")


def _entry(sid: str, kind: str = "completed", **fields: str) -> dict[str, Any]:
    suffix = "abandoned_1" if kind == "abandoned" else kind
    return {
        "id": f"evt_{sid}_{suffix}",
        "type": f"lead.{kind}",
        "site": "acme",
        "data": {
            "sessionId": sid,
            "fields": [{"name": k, "value": v} for k, v in fields.items()],
            "transcript": [{"createdTime": "2024-06-01T12:00:00.000Z", "message": "hi"}],
        },
    }


def _row(entry: dict[str, Any], handled: float | None = None) -> Any:
    row = inbox_row(entry, ("service", "message"), handled, INBOX_SID)
    assert row is not None
    return row


def test_inbox_row_says_what_the_visitor_needs() -> None:
    row = _row(_entry(SID, name="Ada", email="a@x.example", service="Leak", message="Under <sink>"))
    assert (row.name, row.email, row.phone) == ("Ada", "a@x.example", None)
    assert row.need == "Leak · Under <sink>" and row.event == "completed"
    assert row.session_id == SID and not row.test and row.messages == 1
    assert row.last_message_at == "2024-06-01T12:00:00.000Z"
    assert row.status == "new" and row.handled_at is None
    done = _row(_entry(SID), handled=NOW)
    assert done.status == "handled" and done.handled_at == "2024-06-01T12:00:00.000Z"
    assert done.need is None
    # a payload cannot smuggle a link target: odd session ids get no link
    odd = _row(_entry("../../admin", name="X"))
    assert odd.session_id is None
    assert _row(_entry(SID, kind="test")).test
    assert inbox_row({"id": "x", "data": "no"}, (), None, INBOX_SID) is None
    assert need_fields(["name", "email", "phone", "message"]) == ("message",)
    assert need_fields(["name", "email"]) == ("message",)


def test_inbox_entries_that_are_not_ours_are_skipped() -> None:
    assert decode_entry("not json") is None
    assert decode_entry("[1, 2]") is None
    assert decode_entry('{"type": "lead.completed"}') is None
    assert decode_entry('{"id": "evt_x"}') == {"id": "evt_x"}


def test_inbox_query_parameters() -> None:
    assert parse_inbox_query(None, None, None) == InboxQuery()
    assert parse_inbox_query("new", "tests", "  ada ") == InboxQuery("new", "tests", "ada")
    for args, param in (
        (("done", None, None), "status"),
        ((None, "spam", None), "kind"),
        ((None, None, "x" * 101), "q"),
    ):
        with pytest.raises(QueryError) as caught:
            parse_inbox_query(*args)
        assert caught.value.param == param


def _ids(n: int) -> list[str]:
    return [f"{i:024x}" for i in range(n)]


def test_inbox_selection_one_row_per_lead_newest_first_in_pages() -> None:
    sids = _ids(5)
    # newest first, as the list holds them: sids[1] came back and completed
    feed = [
        _row(_entry(sids[0], name="Zoe")),
        _row(_entry(sids[1], name="Yan")),
        _row(_entry(sids[1], kind="abandoned", name="Yan")),
        _row(_entry(sids[2], kind="test", name="Test Lead")),
        _row(_entry(sids[3], name="Xia"), handled=NOW),
        _row(_entry(sids[4], name="Wes")),
    ]
    first = InboxSelection(InboxQuery(), limit=2)
    first.feed(feed)
    page = first.page()
    assert [r.name for r in page.items] == ["Zoe", "Yan"] and page.items[1].event == "completed"
    assert first.done and page.next_cursor == f"evt_{sids[1]}_completed"
    rest = InboxSelection(InboxQuery(), limit=2, after=page.next_cursor)
    rest.feed(feed)
    assert [r.name for r in rest.page().items] == ["Xia", "Wes"]
    assert rest.page().next_cursor is None and not rest.done  # read to the end

    def names(query: InboxQuery) -> list[str | None]:
        selection = InboxSelection(query, limit=10)
        selection.feed(feed)
        return [r.name for r in selection.page().items]

    assert names(InboxQuery(status="handled")) == ["Xia"]
    assert names(InboxQuery(status="new")) == ["Zoe", "Yan", "Wes"]
    assert names(InboxQuery(kind="tests")) == ["Test Lead"]
    assert names(InboxQuery(kind="all")) == ["Zoe", "Yan", "Test Lead", "Xia", "Wes"]
    assert names(InboxQuery(search="YA")) == ["Yan"]
