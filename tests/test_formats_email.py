"""Format ``email``: the message (pure), the SMTP rules, then a real SMTP server on loopback.

The server is ``aiosmtpd`` on 127.0.0.1 (its own thread and loop); it records every
envelope it accepts, and answers what a test tells it to (``451``, ``550``), with
STARTTLS, implicit TLS or AUTH where a test asks for them (certificates from trustme).
"""

from __future__ import annotations

import email
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from chatlead import formats
from chatlead.errors import DeliveryError
from chatlead.formats import Context, email_alert
from chatlead.formats import send as dispatch
from chatlead.formats.email_alert import (
    MISSING_SETTINGS,
    build_message,
    parse_smtp_url,
    pick_address,
    plain_allowed,
    reply_result,
    send,
)
from chatlead.sites import FieldProblem
from fakes.leads import event_for, lead, site_with
from pydantic import ValidationError

from tests.conftest import free_port

SENDER = "Chatlead Alerts <alerts@chatlead.example>"
TO = ("ops@acme.example", "Sales Team <sales@acme.example>")
LINK = "https://chat.acme.example/admin/live?session=3f9a1c2e7b6d4e0f9a8b"
PASSWORD = "p@ss w/rd:%"
PASSWORD_IN_URL = "p%40ss%20w%2Frd%3A%25"


def email_event(the_lead=None, *, kind=None, allow_private=True, event_id="evt_1"):
    site = site_with(format="email", to=list(TO), allow_private=allow_private)
    event = event_for(site, lead() if the_lead is None else the_lead, event_id)
    return replace(event, type=kind) if kind else event


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    page = message.get_body(("html",))
    assert text is not None and page is not None
    return text.get_content(), page.get_content()


# --- the message (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        ("lead.completed", "New lead: Ada Lovelace (Acme Plumbing)"),
        ("lead.abandoned", "Abandoned chat: Ada Lovelace (Acme Plumbing)"),
        ("visitor.waiting", "Visitor waiting: Ada Lovelace (Acme Plumbing)"),
        ("lead.test", "[Test] New lead: Ada Lovelace (Acme Plumbing)"),
    ],
)
def test_subject_names_the_event(kind, subject):
    assert build_message(email_event(kind=kind), SENDER, LINK)["Subject"] == subject


def test_subject_falls_back_to_the_email_then_a_placeholder():
    by_email = build_message(email_event(lead({"email": "ada@example.com"})), SENDER, LINK)
    assert by_email["Subject"] == "New lead: ada@example.com (Acme Plumbing)"
    nobody = build_message(email_event(lead({"phone": "+14155550100"})), SENDER, LINK)
    assert nobody["Subject"] == "New lead: Website visitor (Acme Plumbing)"


def test_headers():
    event = email_event()
    message = build_message(event, SENDER, LINK)
    assert message["From"] == SENDER
    assert message["To"] == ", ".join(TO)
    assert message["Date"] == format_datetime(event.created_at)
    assert message["Reply-To"] == "ada@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith(
        "@chatlead.example>"
    )
    assert message.get_content_type() == "multipart/alternative"


def test_message_id_is_the_same_for_every_attempt_of_one_event():
    first = build_message(email_event(), SENDER, LINK)["Message-ID"]
    again = build_message(email_event(), SENDER, LINK)["Message-ID"]
    other = build_message(email_event(event_id="evt_2"), SENDER, LINK)["Message-ID"]
    assert first == again != other


def test_both_parts_carry_fields_transcript_and_link():
    text, page = parts(build_message(email_event(), SENDER, LINK))
    for body in (text, page):
        assert "Ada Lovelace" in body and "ada@example.com" in body
        assert "What&#x27;s your name?" in body or "What's your name?" in body
        assert "/admin/live?session=3f9a1c2e7b6d4e0f9a8b" in body
        assert "Open the conversation" in body
    assert "Name: Ada Lovelace" in text
    assert f'href="{LINK}"' in page
    assert 'href="mailto:ada@example.com"' in page


def test_every_visitor_value_is_escaped_in_html_and_intact_in_text():
    hostile = "<script>alert(1)</script>"
    the_lead = lead(
        {"name": f"Eve {hostile}", "<b>field</b>": 'x" onmouseover="y', "message": "a & b"}
    )
    text, page = parts(build_message(email_event(the_lead), SENDER, LINK))
    assert "<script>" not in page and "<b>field" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;field&lt;/b&gt;" in page  # a field's name is the visitor's too
    assert "x&quot; onmouseover=&quot;y" in page
    assert "a &amp; b" in page
    assert f"Name: Eve {hostile}" in text  # plain text is never rendered as HTML
    assert "Message: a & b" in text


def test_a_line_break_in_a_name_cannot_add_a_header():
    the_lead = lead(
        {"name": "Eve\r\nBcc: victim@evil.example\r\n", "email": "e@x.example\r\nCc: y@z"}
    )
    raw = build_message(email_event(the_lead), SENDER, LINK).as_bytes()
    parsed = email.message_from_bytes(raw, policy=default)
    assert parsed["Bcc"] is None and parsed["Cc"] is None
    assert parsed["Subject"] == "New lead: Eve Bcc: victim@evil.example (Acme Plumbing)"
    assert parsed["Reply-To"] is None  # not an address: no reply-to at all
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in header_block and b"\r\nCc:" not in header_block


def test_a_long_transcript_is_cut_in_html():
    the_lead = lead({"name": "Ada"})
    the_lead["transcript"] = [dict(the_lead["transcript"][0], message="z" * 900) for _ in range(20)]
    _, page = parts(build_message(email_event(the_lead), SENDER, LINK))
    assert page.count("z" * 900) == 11 and "[transcript truncated]" in page


# --- options and the SMTP rules (pure) -------------------------------------------------


def test_to_is_one_or_more_valid_addresses():
    made = formats.destination(
        {"format": "email", "to": "ops@acme.example, Sales <s@acme.example>"}
    )
    assert made.options.to == ("ops@acme.example", "Sales <s@acme.example>")
    with pytest.raises(FieldProblem) as missing:
        formats.destination({"format": "email"})
    assert missing.value.field == "to"
    with pytest.raises(ValidationError, match="min_length|at least 1"):
        formats.destination({"format": "email", "to": []})
    for bad in ("not-an-address", "a@@b.example", "ops@acme.example\r\nBcc: x@y", "x@"):
        with pytest.raises(ValidationError) as caught:
            formats.destination({"format": "email", "to": ["ok@acme.example", bad]})
        assert repr(bad.strip()) in str(caught.value)
    assert formats.get("email").requires == ()


def test_smtp_url_parts():
    server = parse_smtp_url(f"smtp://alerts%40acme.example:{PASSWORD_IN_URL}@mail.example")
    assert (server.host, server.port, server.implicit_tls) == ("mail.example", 587, False)
    assert (server.username, server.password) == ("alerts@acme.example", PASSWORD)
    assert PASSWORD not in repr(server)
    secure = parse_smtp_url("SMTPS://mail.example")
    assert (secure.port, secure.implicit_tls, secure.username) == (465, True, None)
    assert parse_smtp_url("smtp://127.0.0.1:2525").port == 2525
    for bad in (
        f"http://u:{PASSWORD_IN_URL}@mail.example",
        "smtp://",
        f"smtp://u:{PASSWORD_IN_URL}@h:99999",
    ):
        with pytest.raises(DeliveryError) as caught:
            parse_smtp_url(bad)
        assert PASSWORD not in str(caught.value) and PASSWORD_IN_URL not in str(caught.value)


def test_smtp_host_follows_the_private_address_rule():
    assert pick_address("mail.example", ["93.184.216.34"], allow_private=False) == "93.184.216.34"
    for blocked in (
        ["10.1.2.3"],
        ["93.184.216.34", "192.168.1.5"],
        ["127.0.0.1"],
        ["::ffff:10.0.0.1"],
    ):
        with pytest.raises(DeliveryError, match="non-public"):
            pick_address("mail.example", blocked, allow_private=False)
        assert pick_address("mail.example", blocked, allow_private=True) == blocked[0]
    assert pick_address("h", ["fe80::1%eth0"], allow_private=True) == "fe80::1"
    with pytest.raises(httpx.ConnectError):
        pick_address("mail.example", [], allow_private=True)


def test_mail_goes_without_tls_only_to_loopback():
    assert plain_allowed("127.0.0.1") and plain_allowed("127.8.9.1") and plain_allowed("::1")
    assert not plain_allowed("10.0.0.1") and not plain_allowed("93.184.216.34")
    assert not plain_allowed("localhost")  # names are resolved and checked first


def test_smtp_reply_codes():
    assert (reply_result(451, "try later").retryable, reply_result(421, "").retryable) == (
        True,
        True,
    )
    dead = reply_result(550, "5.1.1 no such\r\nuser")
    assert (dead.ok, dead.retryable, dead.error) == (False, False, "SMTP 550: 5.1.1 no such user")


# --- a real SMTP server ---------------------------------------------------------------


@dataclass
class Recorder:
    """aiosmtpd handler: records what it accepts; ``data_reply``/``rcpt_reply`` refuse."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    data_reply: str | None = None
    rcpt_reply: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.seen.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": email.message_from_bytes(envelope.content, policy=default),
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "user": session.auth_data.login if session.authenticated else None,
            }
        )
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        return [item["message"] for item in self.seen]


def _authenticator(server, session, envelope, mechanism, auth_data):
    good = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"alerts@acme.example",
        PASSWORD.encode(),
    )
    return AuthResult(success=good, handled=False, auth_data=auth_data)  # False: answer 535


@pytest.fixture(scope="module")
def certs() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for the name ``localhost``."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


class Smtpd:
    def __init__(self, **options: Any) -> None:
        self.handler = Recorder()
        self.port = free_port()
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=_authenticator,
            **options,
        )

    def url(self, scheme: str = "smtp", userinfo: str = "", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{userinfo}{host}:{self.port}"


@pytest.fixture
def smtpd() -> Iterator[Smtpd]:
    server = Smtpd(auth_require_tls=False)  # AUTH offered (not required) in clear on loopback
    server.controller.start()
    yield server
    server.controller.stop()


def context(http: httpx.AsyncClient, smtp_url: str | None, sender: str | None = SENDER) -> Context:
    return Context(
        http, public_url="https://chat.acme.example", smtp_url=smtp_url, smtp_from=sender
    )


async def localhost(host: str, port: int) -> list[str]:
    assert host == "localhost"
    return ["127.0.0.1"]


async def test_delivered_plain_to_loopback(smtpd: Smtpd, http: httpx.AsyncClient):
    result = await dispatch(context(http, smtpd.url()), email_event())
    assert (result.ok, result.retryable, result.status_code) == (True, False, None)
    assert "accepted" in result.response_snippet
    (seen,) = smtpd.handler.seen
    assert seen["from"] == "alerts@chatlead.example"
    assert seen["to"] == ["ops@acme.example", "sales@acme.example"]
    assert seen["tls"] is False and seen["user"] is None
    message = seen["message"]
    assert message["Subject"] == "New lead: Ada Lovelace (Acme Plumbing)"
    text, page = parts(message)
    assert "Name: Ada Lovelace" in text and "/admin/live?session=3f9a1c2e7b6d4e0f9a8b" in text
    assert f'href="{LINK}"' in page


async def test_hostile_values_arrive_escaped_in_html(smtpd: Smtpd, http: httpx.AsyncClient):
    name = "Eve <script>alert(1)</script>\r\nBcc: victim@evil.example"
    await send(context(http, smtpd.url()), email_event(lead({"name": name})))
    (seen,) = smtpd.handler.seen
    assert seen["to"] == ["ops@acme.example", "sales@acme.example"]  # no victim added
    message = seen["message"]
    assert message["Bcc"] is None
    text, page = parts(message)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Eve <script>alert(1)</script>" in text


async def test_a_retry_sends_the_same_message(smtpd: Smtpd, http: httpx.AsyncClient):
    event = email_event()
    for _ in range(2):
        assert (await send(context(http, smtpd.url()), event)).ok
    first, second = smtpd.handler.messages
    assert first["Message-ID"] == second["Message-ID"]
    assert first.get_body(("html",)).get_content() == second.get_body(("html",)).get_content()


@pytest.mark.parametrize(
    ("where", "reply", "retryable"),
    [
        ("data_reply", "451 4.3.0 Try again later", True),
        ("data_reply", "554 5.7.1 Rejected as spam", False),
        ("rcpt_reply", "450 4.2.1 Mailbox busy", True),
        ("rcpt_reply", "550 5.1.1 No such user", False),
    ],
)
async def test_4xx_is_retried_and_5xx_is_a_dead_letter(smtpd, http, where, reply, retryable):
    setattr(smtpd.handler, where, reply)
    result = await send(context(http, smtpd.url()), email_event())
    assert (result.ok, result.retryable) == (False, retryable)
    code, _, text = reply.partition(" ")
    assert result.error == f"SMTP {code}: {text}"
    assert smtpd.handler.seen == []


async def test_login_and_the_password_never_shows(smtpd: Smtpd, http: httpx.AsyncClient):
    good = smtpd.url(userinfo=f"alerts%40acme.example:{PASSWORD_IN_URL}@")
    assert (await send(context(http, good), email_event())).ok
    assert smtpd.handler.seen[0]["user"] == b"alerts@acme.example"
    wrong = smtpd.url(userinfo=f"alerts%40acme.example:{PASSWORD_IN_URL}x@")
    result = await send(context(http, wrong), email_event())
    assert (result.ok, result.retryable) == (False, False)
    assert result.error.startswith("SMTP 535")
    assert PASSWORD not in result.error and PASSWORD_IN_URL not in result.error


async def test_connection_refused_is_retried(http: httpx.AsyncClient):
    url = f"smtp://alerts:{PASSWORD_IN_URL}@127.0.0.1:{free_port()}"  # nothing listens
    result = await send(context(http, url), email_event())
    assert (result.ok, result.retryable) == (False, True)
    assert PASSWORD not in result.error and PASSWORD_IN_URL not in result.error


async def test_starttls_is_used_when_offered(certs, http, monkeypatch):
    server_tls, client_tls = certs
    monkeypatch.setattr(email_alert, "_tls", lambda: client_tls)
    smtpd = Smtpd(tls_context=server_tls, require_starttls=True)
    smtpd.controller.start()
    try:
        url = smtpd.url(host="localhost")  # the certificate's name; connected to 127.0.0.1
        result = await send(context(http, url), email_event(), resolve=localhost)
    finally:
        smtpd.controller.stop()
    assert result.ok, result.error
    assert smtpd.handler.seen[0]["tls"] is True


async def test_smtps_is_tls_from_the_start(certs, http, monkeypatch):
    server_tls, client_tls = certs
    monkeypatch.setattr(email_alert, "_tls", lambda: client_tls)
    smtpd = Smtpd(ssl_context=server_tls)
    smtpd.controller.start()
    try:
        result = await send(
            context(http, smtpd.url("smtps", host="localhost")), email_event(), resolve=localhost
        )
        wrong_name = await send(context(http, smtpd.url("smtps")), email_event())
    finally:
        smtpd.controller.stop()
    assert result.ok, result.error
    assert smtpd.handler.seen[0]["tls"] is True
    assert (wrong_name.ok, wrong_name.retryable) == (False, True)  # 127.0.0.1 is not on the cert
    assert len(smtpd.handler.seen) == 1


async def test_no_starttls_off_loopback_is_a_dead_letter(smtpd, http, monkeypatch):
    monkeypatch.setattr(email_alert, "plain_allowed", lambda ip: False)  # as if remote
    result = await send(context(http, smtpd.url()), email_event())
    assert (result.ok, result.retryable) == (False, False)
    assert "STARTTLS" in result.error
    assert smtpd.handler.seen == []


async def test_private_smtp_host_is_refused_without_allow_private(http: httpx.AsyncClient):
    event = email_event(allow_private=False)
    # refused before any connection: the address is checked first
    for url in (f"smtp://u:{PASSWORD_IN_URL}@10.20.30.40:587", "smtp://127.0.0.1:2525"):
        with pytest.raises(DeliveryError, match="non-public") as caught:
            await send(context(http, url), event)
        assert PASSWORD not in str(caught.value)

    async def private(host: str, port: int) -> list[str]:
        return ["192.168.1.20"]

    with pytest.raises(DeliveryError, match=r"mail\.acme\.example .*192\.168\.1\.20"):
        await send(context(http, "smtps://mail.acme.example"), event, resolve=private)


async def test_loopback_is_allowed_with_allow_private(smtpd: Smtpd, http: httpx.AsyncClient):
    assert (await send(context(http, smtpd.url()), email_event(allow_private=True))).ok


async def test_settings_are_required(http: httpx.AsyncClient):
    with pytest.raises(DeliveryError) as caught:
        await send(context(http, None), email_event())
    assert str(caught.value) == MISSING_SETTINGS
    with pytest.raises(DeliveryError, match=MISSING_SETTINGS):
        await send(context(http, "smtp://127.0.0.1:25", sender=None), email_event())
    with pytest.raises(DeliveryError, match="CHATLEAD_SMTP_FROM"):
        await send(context(http, "smtp://127.0.0.1:25", sender="not an address"), email_event())


async def test_a_silent_server_is_retried_within_the_lease(http, monkeypatch):
    import socket

    with socket.socket() as listener:  # the kernel accepts; nobody ever greets
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        monkeypatch.setattr(email_alert, "SESSION_TIMEOUT_S", 0.3)
        url = f"smtp://127.0.0.1:{listener.getsockname()[1]}"
        result = await send(context(http, url), email_event())
    assert (result.ok, result.retryable) == (False, True)
    assert result.error.startswith("TimeoutError")
