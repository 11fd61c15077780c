"""The SSRF guard: which addresses are public, and which targets pass."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import trustme
from chatlead.errors import DeliveryError
from chatlead.formats.guard import check_target, is_public_address, pinned_client


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # NAT64 of a public address
    ],
)
def test_public(ip):
    assert is_public_address(ip)


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata, link-local
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.251",  # multicast (is_global alone says yes)
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "::ffff:169.254.169.254",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fe80::1%eth0",
        "ff02::1",
        "ff0e::1",  # global-scope multicast
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:db8::1",  # documentation
        "not-an-ip",
        "",
    ],
)
def test_not_public(ip):
    assert not is_public_address(ip)


async def test_https_to_public_ip_passes():
    await check_target("https://93.184.216.34/hooks/lead", allow_private=False)
    await check_target("https://[2606:4700:4700::1111]:8443/x", allow_private=False)


async def test_http_is_refused_without_allow_private():
    with pytest.raises(DeliveryError, match="https"):
        await check_target("http://93.184.216.34/hook", allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.8:8443/hook",
        "https://[fc00::1]/hook",
    ],
)
async def test_private_literals_are_refused(url):
    with pytest.raises(DeliveryError, match="non-public address"):
        await check_target(url, allow_private=False)


async def test_names_are_resolved_and_checked():
    # "localhost" resolves (from /etc/hosts, no network) to loopback only.
    with pytest.raises(DeliveryError, match="localhost resolves to a non-public address"):
        await check_target("https://localhost:9/hook", allow_private=False)


async def test_unresolvable_name_is_a_connection_error():
    with pytest.raises(httpx.ConnectError, match="cannot resolve"):
        await check_target("https://no-such-host.invalid/hook", allow_private=False)


async def test_allow_private_lets_dev_targets_through():
    await check_target("http://127.0.0.1:8080/hook", allow_private=True)
    await check_target("http://localhost/hook", allow_private=True)


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/x", "file:///etc/passwd", "https:///x"])
async def test_other_schemes_are_refused_even_when_private_allowed(url):
    with pytest.raises(DeliveryError, match="http"):
        await check_target(url, allow_private=True)


async def test_error_does_not_quote_the_url_path():
    with pytest.raises(DeliveryError) as caught:
        await check_target("gopher://hooks.example/catch/123/s3cr3t-token", allow_private=False)
    assert "s3cr3t" not in str(caught.value)


class _Rebinding:
    """A resolver that answers ``first`` once, then ``then`` (a DNS-rebinding name)."""

    def __init__(self, first: str, then: str) -> None:
        self.answers = [first, then]
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return [self.answers[min(self.calls, 2) - 1]]


@pytest.fixture
def tls_receiver() -> Iterator[tuple[int, list[str], trustme.CA]]:
    """An https server on loopback with a certificate for ``hooks.example``."""
    ca = trustme.CA()
    cert = ca.issue_cert("hooks.example")
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append(self.headers["host"])
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], seen, ca
    httpd.shutdown()
    httpd.server_close()


async def test_a_name_rebinding_to_loopback_after_the_check_never_reaches_it(tls_receiver):
    port, seen, ca = tls_receiver
    resolver = _Rebinding("93.184.216.34", "127.0.0.1")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    await check_target(f"https://hooks.example:{port}/", False, resolve=resolver)  # public: passes
    async with pinned_client(0.5, public_only=True, resolve=resolver, ssl_context=context) as http:
        with pytest.raises((DeliveryError, httpx.HTTPError)):
            await http.post(f"https://hooks.example:{port}/", content=b"{}")
    # the send resolved once more and saw loopback: refused before connecting
    assert resolver.calls == 2
    assert seen == []


async def test_the_client_connects_to_the_address_it_checked(tls_receiver):
    port, seen, ca = tls_receiver
    resolver = _Rebinding("93.184.216.34", "127.0.0.1")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with pinned_client(0.5, public_only=True, resolve=resolver, ssl_context=context) as http:
        with pytest.raises(httpx.HTTPError):  # the public address is unreachable here
            await http.post(f"https://hooks.example:{port}/", content=b"{}")
    assert resolver.calls == 1  # no second lookup could point the connection elsewhere
    assert seen == []


async def test_a_pinned_connection_keeps_sni_certificate_checks_and_host(tls_receiver):
    port, seen, ca = tls_receiver
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def to_loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async with pinned_client(
        2, public_only=False, resolve=to_loopback, ssl_context=context
    ) as http:
        response = await http.post(f"https://hooks.example:{port}/", content=b"{}")
        assert response.status_code == 204
        with pytest.raises(httpx.ConnectError, match="certificate"):  # the name is verified
            await http.post(f"https://other.example:{port}/", content=b"{}")
    assert seen == [f"hooks.example:{port}"]


async def test_public_only_refuses_loopback_answers(tls_receiver):
    port, seen, ca = tls_receiver

    async def to_loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async with pinned_client(2, public_only=True, resolve=to_loopback) as http:
        with pytest.raises(DeliveryError, match="non-public"):
            await http.post(f"https://hooks.example:{port}/", content=b"{}")
    assert seen == []
