"""The SSRF guard: which addresses are public, and which targets pass."""

from __future__ import annotations

import httpx
import pytest

from server.errors import DeliveryError
from server.formats.guard import check_target, is_public_address


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
