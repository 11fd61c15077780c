"""``hello.attribution`` and ``hello.trigger`` become lead fields (CONTRACT §13)."""

from __future__ import annotations

from chatlead import protocol
from chatlead.attribution import MAX_ATTRIBUTION_VALUE, parse_attribution, parse_trigger
from chatlead.session import PAGE_FIELDS, page_meta


def test_known_keys_are_kept_unknown_dropped_values_capped() -> None:
    raw = {
        "utm_source": "google",
        "gclid": "x" * 5000,
        "first_landing_page": "https://acme.example/?utm_source=google",
        "first_seen": "2026-12-01T10:00:00.000Z",
        "evil": "drop me",
        "utm_term": 7,
        "utm_content": "  ",
    }
    kept = dict(parse_attribution(raw))
    assert kept == {
        "utm_source": "google",
        "gclid": "x" * MAX_ATTRIBUTION_VALUE,
        "first_landing_page": "https://acme.example/?utm_source=google",
        "first_seen": "2026-12-01T10:00:00.000Z",
    }
    assert parse_attribution(["utm_source"]) == () and parse_attribution(None) == ()


def test_a_trigger_is_a_short_name() -> None:
    assert parse_trigger("api") == "api" and parse_trigger("exit_intent") == "exit_intent"
    assert parse_trigger("<b>") is None and parse_trigger(3) is None
    assert parse_trigger("a" * 65) is None


def test_hello_carries_them_and_a_bad_one_is_not_a_bad_frame() -> None:
    frame = protocol.parse_client_frame(
        '{"type":"hello","site":"acme","attribution":{"fbclid":"F1","x":"y"},"trigger":"api"}'
    )
    assert isinstance(frame, protocol.Hello)
    assert frame.attribution == (("fbclid", "F1"),) and frame.trigger == "api"
    loose = protocol.parse_client_frame('{"type":"hello","site":"acme","attribution":"no"}')
    assert isinstance(loose, protocol.Hello) and loose.attribution == ()


def test_the_page_url_wins_and_the_kept_first_touch_fills_in() -> None:
    meta = page_meta(
        "https://acme.example/quote?utm_source=bing&msclkid=M1",
        None,
        (("utm_source", "google"), ("utm_medium", "cpc"), ("first_seen", "2026-12-01")),
        "after",
    )
    assert meta == {
        "page_url": "https://acme.example/quote?utm_source=bing&msclkid=M1",
        "utm_source": "bing",
        "msclkid": "M1",
        "utm_medium": "cpc",
        "first_seen": "2026-12-01",
        "trigger": "after",
    }
    assert set(meta) <= set(PAGE_FIELDS)
