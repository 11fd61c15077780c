"""Identified visitors (CONTRACT §13): ``data-user-id`` + ``data-user-hash`` make the
session's ``userId`` the site's own user and join it to their history; anything else
leaves the visitor anonymous, and the chat works either way."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from chatlead import identity, ws
from chatlead.identity import Identity, parse_identity, resolve, user_hash

from tests.agent_client import AgentClient, make_agent
from tests.conftest import Visitor, admin_headers

SECRET = "s3cret-identity-key-0123456789"
SITE_TOML = f"""
[sites.shop]
allowed_origins = ["http://127.0.0.1"]
identity_secret = "{SECRET}"

[sites.plain]
allowed_origins = ["http://127.0.0.1"]
"""


# --- pure ---------------------------------------------------------------------


def test_the_hash_is_hmac_sha256_hex_of_the_id() -> None:
    # what a site's own server computes for the tag
    assert user_hash("key", "u-1") == hmac.new(b"key", b"u-1", hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "u-1",
        [],
        {},
        {"id": ""},
        {"id": 7, "hash": "0" * 64},
        {"id": "x" * 129},
        {"id": "a\nb", "hash": "0" * 64},
    ],
)
def test_no_usable_id_is_no_claim(raw: Any) -> None:
    assert parse_identity(raw) is None


@pytest.mark.parametrize("digest", [None, "", "zz", "0" * 63, "g" * 64, "é" * 64, 5])
def test_a_malformed_hash_is_a_claim_that_cannot_hold(digest: Any) -> None:
    claimed = parse_identity({"id": "u-1", "hash": digest})
    assert claimed == Identity("u-1", "")
    assert resolve("shop", SECRET, claimed, "anon-1", "v_new").mismatch


def test_resolve() -> None:
    good = Identity("u-1", user_hash(SECRET, "u-1"))
    assert resolve("shop", SECRET, good, "anon-1", "v_new") == identity.Resolved("u-1", True)
    upper = Identity("u-1", user_hash(SECRET, "u-1").upper())
    assert parse_identity({"id": "u-1", "hash": upper.hash}) == good
    wrong = resolve("shop", SECRET, Identity("u-1", "0" * 64), "anon-1", "v_new")
    assert wrong.mismatch and not wrong.identified and wrong.user_id.startswith("v_")
    # an unproven id on a site with a secret never comes out as itself
    named = resolve("shop", SECRET, None, "u-1", "v_new")
    assert (
        named.user_id != "u-1"
        and named.user_id == resolve("shop", SECRET, None, "u-1", "x").user_id
    )
    assert resolve("shop", SECRET, None, None, "v_new").user_id == "v_new"
    # a site without a secret: the browser's id as before; a claim is ignored
    assert resolve("plain", None, None, "anon-1", "v_new").user_id == "anon-1"
    assert resolve("plain", None, good, "anon-1", "v_new") == identity.Resolved(
        "anon-1", False, mismatch=True
    )


# --- the real app -----------------------------------------------------------


@pytest.fixture
async def shop(app_factory: Any, tmp_path: Path) -> Any:
    path = tmp_path / "sites.toml"
    path.write_text(SITE_TOML, encoding="utf-8")
    ws._identity_warned.clear()
    return await app_factory(config=str(path))


def _hello(user_id: str, digest: str) -> dict[str, Any]:
    return {"user_id": "browser-uuid-1", "identity": {"id": user_id, "hash": digest}}


async def test_a_signed_user_is_the_user_id_and_an_agent_sees_their_earlier_chats(
    shop: Any, redis_url: str
) -> None:
    digest = user_hash(SECRET, "cust-42")
    origin = "http://127.0.0.1"
    async with Visitor.connect(shop.ws_url, "shop", origin, **_hello("cust-42", digest)) as first:
        assert first.welcome["user_id"] == "cust-42"
        assert (await first.field("name", "Ida Dent"))["type"] == "ack"
        earlier = first.welcome["session_id"]
    token = await make_agent(shop.base, redis_url, "ana")
    async with (
        Visitor.connect(shop.ws_url, "shop", origin, **_hello("cust-42", digest)) as second,
        AgentClient.connect(shop.base, token) as agent,
    ):
        sid = second.welcome["session_id"]
        assert sid != earlier and second.welcome["user_id"] == "cust-42"
        await agent.join(sid)
        history = next(f for f in agent.frames if f["type"] == "history")  # before the hold
        assert history["user_id"] == "cust-42"
        assert [s["session_id"] for s in history["sessions"]] == [earlier]
        assert history["sessions"][0]["status"] == "open"
    async with httpx.AsyncClient(headers=admin_headers(redis_url)) as api:
        detail = (await api.get(f"{shop.base}/api/sessions/{sid}")).json()
        assert detail["identified"] is True and detail["user_id"] == "cust-42"
        assert [e["id"] for e in detail["earlier"]] == [earlier]
        page = (await api.get(f"{shop.base}/admin/sessions/{sid}")).text
        assert f'href="/admin/sessions/{earlier}"' in page and "signed in" in page
        # erased: off the history
        assert (await api.delete(f"{shop.base}/api/sessions/{earlier}")).status_code in (200, 204)
        detail = (await api.get(f"{shop.base}/api/sessions/{sid}")).json()
        assert detail["earlier"] == []


async def test_a_wrong_hash_is_anonymous_logged_once_and_the_chat_works(
    shop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    origin = "http://127.0.0.1"
    caplog.set_level(logging.WARNING, "chatlead.ws")
    for digest in ("0" * 64, "not-a-hash"):
        async with Visitor.connect(shop.ws_url, "shop", origin, **_hello("cust-42", digest)) as v:
            assert v.welcome["user_id"].startswith("v_")
            assert (await v.field("name", "Eve Forger"))["type"] == "ack"
    # a page naming a user without any hash does not become that user either
    async with Visitor.connect(shop.ws_url, "shop", origin, user_id="cust-42") as v:
        assert v.welcome["user_id"] != "cust-42"
    warnings = [
        r.getMessage() for r in caplog.records if "identity_hash_mismatch" in r.getMessage()
    ]
    assert len(warnings) == 1 and "cust-42" not in warnings[0]


async def test_a_site_without_a_secret_ignores_the_claim(shop: Any) -> None:
    digest = user_hash(SECRET, "cust-42")
    async with Visitor.connect(
        shop.ws_url, "plain", "http://127.0.0.1", **_hello("cust-42", digest)
    ) as v:
        assert v.welcome["user_id"] == "browser-uuid-1"
