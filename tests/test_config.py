from __future__ import annotations

from pathlib import Path

import pytest

from server.config import load_settings, load_sites, parse_duration
from server.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("30d", 2592000), ("250ms", 0.25), ("5", 5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CHATLEAD_IDLE_TIMEOUT": "soon"}, "CHATLEAD_IDLE_TIMEOUT"),
        ({"CHATLEAD_IDLE_TIMEOUT": "500ms"}, "CHATLEAD_IDLE_TIMEOUT"),
        ({"CHATLEAD_MAX_FRAME": "-1"}, "CHATLEAD_MAX_FRAME"),
        ({"CHATLEAD_FORWARD_ABANDONED": "sometimes"}, "CHATLEAD_FORWARD_ABANDONED"),
        ({"CHATLEAD_REDIS_URL": "http://x"}, "CHATLEAD_REDIS_URL"),
        ({"CHATLEAD_RETRY_SCHEDULE": "0,soon"}, "CHATLEAD_RETRY_SCHEDULE"),
    ],
)
def test_bad_settings_fail_with_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(needle)
    assert "\n" not in str(info.value)


def test_comma_separated_origins_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATLEAD_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("CHATLEAD_WEBHOOK_SECRET", "whsec_bmV3,whsec_b2xk")
    settings = load_settings()
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    site = load_sites(settings)["default"]
    assert site.webhook.secrets == ("whsec_bmV3", "whsec_b2xk")


def test_origins_are_required_beyond_loopback() -> None:
    with pytest.raises(ConfigError, match="CHATLEAD_ALLOWED_ORIGINS"):
        load_sites(load_settings(host="0.0.0.0"))
    assert load_sites(load_settings())["default"].allowed_origins == ("*",)


def test_toml_sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_SECRET", "whsec_c2VjcmV0")
    path = tmp_path / "sites.toml"
    path.write_text(
        """
[sites.acme]
allowed_origins = ["https://acme.example"]
company = "Acme Plumbing"
idle_timeout = "10m"
phone_region = "GB"
[sites.acme.webhook]
url = "https://hooks.acme.example/leads"
secret = "env:ACME_SECRET"
[[sites.acme.flow]]
field = "name"
ask = "What's your name?"
required = true
[[sites.acme.flow]]
field = "service"
kind = "choice"
ask = "Which service?"
options = ["Repair", "Install"]
"""
    )
    sites = load_sites(load_settings(config=path))
    acme = sites["acme"]
    assert acme.idle_timeout == 600 and acme.webhook.secrets == ("whsec_c2VjcmV0",)
    assert [step.field for step in acme.flow] == ["name", "service"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("[sites.a]\ncolour = 'red'\n", "sites.a.colour"),
        ("[sites.a]\nidle_timeout = 'later'\n", "sites.a.idle_timeout"),
        ("[sites.a.webhook]\nformat = 'fax'\n", "sites.a.webhook.format"),
        ("[sites.a.webhook]\nsecret = 'env:NOPE_NOT_SET'\n", "NOPE_NOT_SET"),
        ("[other]\n", "unknown key 'other'"),
        ("[sites.a\n", "sites.toml"),
    ],
)
def test_bad_site_files_name_file_site_and_key(tmp_path: Path, body: str, needle: str) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")) as info:
        load_sites(load_settings(config=path))
    assert str(path) in str(info.value)


def test_example_site_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COPPER_API_KEY", "PULSE_API_KEY", "PULSE_API_SECRET"):
        monkeypatch.setenv(name, "k")
    for name in ("ACME_WEBHOOK_SECRET", "ACME_WEBHOOK_SECRET_OLD", "FABRIKAM_SECRET"):
        monkeypatch.setenv(name, "whsec_c2VjcmV0")
    root = Path(__file__).resolve().parent.parent
    sites = load_sites(load_settings(config=root / "examples" / "sites.toml"))
    assert set(sites) == {"acme", "brightsmile", "northwind", "fabrikam"}
    assert len(sites["acme"].webhook.secrets) == 2


@pytest.mark.parametrize(
    ("webhook", "needle"),
    [
        (
            "format = 'template'\nurl = 'https://x.example'\ntemplate = '{{ lead.'\n",
            "webhook.template",
        ),
        (
            "format = 'template'\nurl = 'https://x.example'\ntemplate = 'not json'\n",
            "webhook.template",
        ),
        ("format = 'pulse'\npulse_api_key = 'k'\npulse_api_secret = 's'\n", "base URL"),
        ("format = 'copper'\n", "COPPER_API_KEY"),
        ("secret = 'plain'\n", "whsec_"),
    ],
)
def test_bad_webhooks_fail_at_load(tmp_path: Path, webhook: str, needle: str) -> None:
    path = tmp_path / "sites.toml"
    path.write_text("[sites.a.webhook]\n" + webhook)
    with pytest.raises(ConfigError, match=needle):
        load_sites(load_settings(config=path))


def test_check_command_validates_without_starting(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "sites.toml"
    path.write_text("[sites.a]\nidle_timeout = 'x'\n")
    result = subprocess.run(
        [sys.executable, "-m", "server", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "sites.a.idle_timeout" in result.stderr
