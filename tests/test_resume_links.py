"""Resume link tokens and redirect targets, pure (CONTRACT §11)."""

from __future__ import annotations

import base64

import pytest
from chatlead.formats.transcript_text import RESUME_LABEL, readable_transcript
from chatlead.resume_links import (
    TOKEN_CHARS,
    KeyRing,
    check_token,
    fragment_url,
    make_token,
    new_key,
    page_origin,
    redirect_target,
    resume_url,
    verify_token,
)
from hypothesis import given
from hypothesis import strategies as st

SID = "0123456789abcdef01234567"
NOW = 1_800_000_000
RING = KeyRing(new_key())


def _flip(token: str, at: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[at] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_a_token_names_its_session_until_it_expires() -> None:
    token = make_token(RING, SID, NOW + 60)
    assert len(token) == TOKEN_CHARS and "=" not in token
    link = check_token(RING, token, NOW)
    assert link is not None and link.session_id == SID and link.expires_s == NOW + 60
    assert check_token(RING, token, NOW + 60) is None  # expired at its second
    assert verify_token(RING, token) == link  # authentic, expired or not


def test_a_rotation_keeps_links_of_the_key_before_and_no_older() -> None:
    old = make_token(RING, SID, NOW + 60)
    once = RING.rotated(new_key(avoid=RING.current.id))
    assert check_token(once, old, NOW) is not None
    newer = make_token(once, SID, NOW + 60)
    assert newer != old and check_token(once, newer, NOW) is not None
    twice = once.rotated(new_key(avoid=once.current.id))
    assert check_token(twice, old, NOW) is None
    assert check_token(twice, newer, NOW) is not None
    assert KeyRing.loads(twice.dumps()) == twice


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "short",
        make_token(RING, SID, NOW + 60)[:-1],  # truncated
        make_token(RING, SID, NOW + 60) + "A",  # padded
        make_token(RING, SID, NOW + 60)[:-2] + "!!",  # not base64url
        make_token(KeyRing(new_key()), SID, NOW + 60),  # another server's key
        _flip(make_token(RING, SID, NOW + 60), 12),  # another session
        _flip(make_token(RING, SID, NOW + 60), 6),  # a later expiry
        _flip(make_token(RING, SID, NOW + 60), 0),  # another version
        _flip(make_token(RING, SID, NOW + 60), 52),  # the mac
    ],
)
def test_every_bad_token_is_refused(bad: str) -> None:
    assert check_token(RING, bad, NOW) is None


@given(st.text(max_size=100))
def test_no_text_passes_for_a_token(text: str) -> None:
    assert check_token(RING, text, NOW) is None


def test_only_session_ids_get_tokens() -> None:
    with pytest.raises(ValueError):
        make_token(RING, "not-a-session", NOW)


def test_the_fragment_replaces_any_fragment() -> None:
    assert fragment_url("https://a.example/p?q=1#top", "T") == (
        "https://a.example/p?q=1#chatlead-resume=T"
    )
    assert resume_url("https://chat.example/", "T") == "https://chat.example/r/T"


@pytest.mark.parametrize(
    ("page", "target"),
    [
        ("https://shop.example/quote?x=1", "https://shop.example/quote?x=1"),
        ("https://SHOP.example:443/quote", "https://SHOP.example:443/quote"),
        ("https://evil.example/", None),  # not the site's
        ("http://shop.example/", None),  # another scheme is another origin
        ("https://shop.example.evil.example/", None),
        ("https://user:pw@shop.example/", None),
        ("javascript:alert(1)//shop.example", None),
        ("//shop.example/", None),
        (None, None),
        ("", None),
    ],
)
def test_only_an_explicitly_allowed_page_is_a_redirect_target(
    page: str | None, target: str | None
) -> None:
    assert redirect_target(page, ("https://shop.example",)) == target


def test_a_wildcard_allow_list_never_makes_a_redirect() -> None:
    assert redirect_target("https://shop.example/", ("*",)) is None
    assert redirect_target("https://shop.example/", ("*", "https://shop.example")) == (
        "https://shop.example/"
    )


def test_page_origin_is_what_browsers_send() -> None:
    assert page_origin("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080"
    assert page_origin("https://[::1]:8443/") == "https://[::1]:8443"
    assert page_origin("https://a.example:99999/") is None


def test_a_note_ends_with_the_whole_resume_link() -> None:
    lead = {
        "userId": "v1",
        "transcript": [
            {"createdTime": "2026-12-01T10:00:00.000Z", "from": {"id": "bot"}, "message": "x" * 50}
        ]
        * 20,
    }
    url = "https://chat.example/r/" + "T" * 72
    text = readable_transcript(lead, 400, resume_url=url)
    assert len(text) <= 400 and text.endswith(f"\n\n{RESUME_LABEL}: {url}")
    assert readable_transcript({}, resume_url=url) == f"{RESUME_LABEL}: {url}"


def test_a_token_has_one_spelling() -> None:
    ring = KeyRing(new_key())
    token = make_token(ring, "ab" * 12, 2_000_000_000)
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spellings = [token[:-1] + c for c in last if c != token[-1]]
    assert all(verify_token(ring, other) is None for other in spellings)
    assert verify_token(ring, token) is not None
