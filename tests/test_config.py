from __future__ import annotations

import re
from pathlib import Path

import pytest
from chatlead.config import describe, load_settings, unknown_env
from chatlead.errors import ConfigError
from chatlead.site_config import check_outgoing, load_sites
from chatlead.targets import check_targets
from chatlead.units import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("30d", 2592000), ("250ms", 0.25), ("0", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


def test_a_number_without_a_unit_is_refused_with_the_forms_to_write() -> None:
    with pytest.raises(ValueError, match="^15 has no unit; write 15s, 15m or 15h$"):
        parse_duration("15")
    assert format_duration(900) == "15m" and format_duration(0.2) == "200ms"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CHATLEAD_IDLE_TIMEOUT": "soon"}, "CHATLEAD_IDLE_TIMEOUT"),
        ({"CHATLEAD_IDLE_TIMEOUT": "500ms"}, "CHATLEAD_IDLE_TIMEOUT"),
        ({"CHATLEAD_MAX_FRAME": "-1"}, "CHATLEAD_MAX_FRAME"),
        ({"CHATLEAD_FORWARD_ABANDONED": "sometimes"}, "CHATLEAD_FORWARD_ABANDONED"),
        ({"CHATLEAD_REDIS_URL": "http://x"}, "CHATLEAD_REDIS_URL"),
        ({"CHATLEAD_RETRY_SCHEDULE": "0,soon"}, "CHATLEAD_RETRY_SCHEDULE"),
        ({"CHATLEAD_RETRY_SCHEDULE": "0,5,5m"}, "CHATLEAD_RETRY_SCHEDULE: 5 has no unit"),
        ({"CHATLEAD_RETENTION": "30"}, "CHATLEAD_RETENTION: 30 has no unit"),
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
    assert site.destinations[0].secrets == ("whsec_bmV3", "whsec_b2xk")


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
    assert acme.idle_timeout == 600 and acme.destinations[0].secrets == ("whsec_c2VjcmV0",)
    assert [step.field for step in acme.flow] == ["name", "service"]


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"CHATLEAD_WEBHOOK_SECRET": "supersecret"},
            "CHATLEAD_WEBHOOK_SECRET: a secret must look like whsec_<base64>",
        ),
        (
            {"CHATLEAD_WEBHOOK_FORMAT": "copper", "CHATLEAD_COPPER_API_KEY": "k"},
            "CHATLEAD_COPPER_USER_EMAIL: required for format 'copper'",
        ),
        (
            {"CHATLEAD_WEBHOOK_FORMAT": "template", "CHATLEAD_WEBHOOK_URL": "https://x.example"},
            "CHATLEAD_WEBHOOK_TEMPLATE: required for format 'template'",
        ),
        ({"CHATLEAD_WEBHOOK_FORMAT": "pulse"}, "CHATLEAD_PULSE_API_KEY: required"),
        ({"CHATLEAD_SITE": "my site"}, "CHATLEAD_SITE: 'my site' is not a site id"),
        ({"CHATLEAD_ALLOWED_ORIGINS": "example.com"}, "CHATLEAD_ALLOWED_ORIGINS: 'example.com'"),
        (
            {"CHATLEAD_ALLOWED_ORIGINS": "https://a.example/shop"},
            "CHATLEAD_ALLOWED_ORIGINS: 'https://a.example/shop' is not an origin",
        ),
        (
            {"CHATLEAD_WEBHOOK_URL": "hooks.example.com/leads"},
            "CHATLEAD_WEBHOOK_URL: has no scheme; include https://",
        ),
        (
            {"CHATLEAD_WEBHOOK_URL": "ftp://hooks.example.com"},
            "CHATLEAD_WEBHOOK_URL: scheme ftp:// is not supported",
        ),
        ({"CHATLEAD_WEBHOOK_TEMPLATE": "/no/such.j2"}, "CHATLEAD_WEBHOOK_TEMPLATE: cannot read"),
    ],
)
def test_env_site_errors_name_the_variable_never_the_secret(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], line: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_sites(load_settings())
    assert str(info.value).startswith(line) and "\n" not in str(info.value)
    assert "supersecret" not in str(info.value)


def test_env_site_template_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    template = tmp_path / "body.j2"
    template.write_text('{"who": {{ fields.name | tojson }}}')
    monkeypatch.setenv("CHATLEAD_WEBHOOK_FORMAT", "template")
    monkeypatch.setenv("CHATLEAD_WEBHOOK_URL", "https://crm.example/leads")
    monkeypatch.setenv("CHATLEAD_WEBHOOK_TEMPLATE", str(template))
    assert load_sites(load_settings())["default"].destinations[0].template == template.read_text()
    template.write_text("{{ not json")
    with pytest.raises(ConfigError, match="^CHATLEAD_WEBHOOK_TEMPLATE: template syntax"):
        load_sites(load_settings())


def test_origins_lose_a_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATLEAD_ALLOWED_ORIGINS", "https://a.example/,http://localhost:3000")
    site = load_sites(load_settings())["default"]
    assert site.allowed_origins == ("https://a.example", "http://localhost:3000")


def _resolver(table: dict[str, list[str]]) -> object:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://localhost/leads", "CHATLEAD_WEBHOOK_URL: http:// would send leads to localhost"),
        ("https://localhost/leads", "localhost is a loopback or private address (127.0.0.1)"),
        ("https://10.1.2.3/leads", "(10.1.2.3); set CHATLEAD_WEBHOOK_ALLOW_PRIVATE=true"),
        ("https://mixed.example/leads", "mixed.example is a loopback or private address (::1)"),
    ],
)
def test_private_and_http_targets_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, url: str, needle: str
) -> None:
    monkeypatch.setenv("CHATLEAD_WEBHOOK_URL", url)
    settings = load_settings()
    resolve = _resolver(
        {
            "localhost": ["127.0.0.1"],
            "10.1.2.3": ["10.1.2.3"],
            "mixed.example": ["93.184.215.14", "::1"],
        }
    )
    with pytest.raises(ConfigError) as info:
        check_targets(settings, load_sites(settings), resolve)  # type: ignore[arg-type]
    assert needle in str(info.value)
    monkeypatch.setenv("CHATLEAD_WEBHOOK_ALLOW_PRIVATE", "true")
    settings = load_settings()
    assert check_targets(settings, load_sites(settings), resolve) == []  # type: ignore[arg-type]


def test_public_and_unresolvable_targets_pass_a_file_site_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(
        "[sites.a.webhook]\nurl = 'https://crm.example/x'\n"
        "[sites.b.webhook]\nurl = 'https://gone.example/x'\n"
    )
    settings = load_settings(config=path)
    resolve = _resolver({"crm.example": ["93.184.215.14"]})
    warnings = check_targets(settings, load_sites(settings), resolve)  # type: ignore[arg-type]
    assert warnings == [f"{path}: sites.b.webhook.url: gone.example does not resolve now; "
                        "deliveries retry until it does"]  # fmt: skip
    path.write_text("[sites.a.webhook]\nurl = 'http://127.0.0.1:9/x'\n")
    settings = load_settings(config=path)
    with pytest.raises(ConfigError) as info:
        check_targets(settings, load_sites(settings), resolve)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{path}: sites.a.webhook.url: http://")
    assert "allow_private = true in [sites.a.webhook]" in str(info.value)


def test_describe_masks_secrets_and_writes_durations_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATLEAD_WEBHOOK_SECRET", "whsec_c2VjcmV0")
    monkeypatch.setenv("CHATLEAD_ADMIN_TOKEN", "t" * 30)
    monkeypatch.setenv("CHATLEAD_REDIS_URL", "redis://app:hunter2@db.example:6379/0")
    lines = describe(load_settings())
    text = "\n".join(lines)
    assert "c2VjcmV0" not in text and "ttt" not in text and "hunter2" not in text
    assert "CHATLEAD_WEBHOOK_SECRET=***" in lines and "CHATLEAD_ADMIN_TOKEN=***" in lines
    assert "CHATLEAD_REDIS_URL=redis://app:***@db.example:6379/0" in lines
    assert "CHATLEAD_IDLE_TIMEOUT=15m" in lines and "CHATLEAD_WEBHOOK_URL=(unset)" in lines
    assert "CHATLEAD_RETRY_SCHEDULE=0,5s,5m,30m,2h,5h,10h,10h" in lines


def test_unknown_env_names_get_the_nearest_setting() -> None:
    environ = [
        "CHATLEAD_IDLETIMEOUT",
        "CHATLEAD_IDLE_TIMEOUT",
        "chatlead_site",
        "CHATLEAD_ZZZ",
        "HOME",
    ]
    assert unknown_env(environ) == [
        ("CHATLEAD_IDLETIMEOUT", "CHATLEAD_IDLE_TIMEOUT"),
        ("CHATLEAD_ZZZ", None),
    ]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("[sites.a]\ncolour = 'red'\n", "sites.a.colour"),
        ("[sites.a]\nidle_timeout = 15\n", "sites.a.idle_timeout: 15 has no unit"),
        ("[sites.a]\nallowed_origins = ['a.example']\n", "sites.a.allowed_origins: 'a.example'"),
        ("[sites.a]\nidle_timeout = 'later'\n", "sites.a.idle_timeout"),
        ("[sites.a.webhook]\nformat = 'fax'\n", "sites.a.webhook.format"),
        ("[sites.a.webhook]\nsecret = 'env:NOPE_NOT_SET'\n", "NOPE_NOT_SET"),
        ("[other]\n", "unknown key 'other'"),
        ("[sites.a\n", "sites.toml"),
        ("[[sites.a.destinations]]\nurl = 'https://x.example'\n", "sites.a.destinations.0.name"),
        ("[[sites.a.destinations]]\nname = 'Big CRM'\n", "sites.a.destinations.Big CRM.name"),
        ("[[sites.a.destinations]]\nname = 'c'\nformat = 'fax'\n", "destinations.c.format"),
        (
            "[[sites.a.destinations]]\nname = 'c'\nformat = 'copper'\n",
            "destinations.c.copper_api_key: required for format 'copper'",
        ),
        (
            "[[sites.a.destinations]]\nname = 'c'\nevents = ['lead.sold']\n",
            "destinations.c.events: unknown event 'lead.sold'",
        ),
        ("[[sites.a.destinations]]\nname = 'c'\ncolour = 'red'\n", "destinations.c.colour"),
        (
            "[[sites.a.destinations]]\nname = 'c'\n[[sites.a.destinations]]\nname = 'c'\n",
            "sites.a.destinations: each destination name may appear once",
        ),
        ("[sites.a]\ndestinations = 'crm'\n", "sites.a.destinations: write each as"),
        (
            "[[sites.a.destinations]]\nname = 'c'\nwhen = { field = 'budget', equals = 'big' }\n",
            "destinations.c.when: field 'budget' is not asked by this site's flow",
        ),
        (
            "[[sites.a.destinations]]\nname = 'c'\nwhen = { score_at_least = 'lots' }\n",
            "destinations.c.when: 'score_at_least' must be a number",
        ),
        (
            "[sites.a.webhook]\nurl = 'https://x.example'\nwhen = { field = 'x', present = true }\n",
            "sites.a.webhook.when: field 'x'",
        ),
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
    for name in (
        "ACME_WEBHOOK_SECRET",
        "ACME_WEBHOOK_SECRET_OLD",
        "FABRIKAM_SECRET",
        "QUICKFIX_SECRET",
        "NORTHSTAR_SECRET",
    ):
        monkeypatch.setenv(name, "whsec_c2VjcmV0")
    root = Path(__file__).resolve().parent.parent
    sites = load_sites(load_settings(config=root / "examples" / "sites.toml"))
    assert set(sites) == {"acme", "brightsmile", "northwind", "fabrikam", "quickfix", "northstar"}
    assert len(sites["acme"].destinations[0].secrets) == 2
    quickfix = sites["quickfix"]
    assert quickfix.availability is not None and quickfix.availability.offer == 6
    assert quickfix.spam.min_fill == 3 and quickfix.spam.max_leads_per_ip == 5
    northstar = sites["northstar"]
    assert [v.name for v in northstar.variants] == ["full", "quick"]
    assert [s.field for s in northstar.for_variant("quick").flow] == ["budget", "email"]


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
        (
            "format = 'pulse'\npulse_api_key = 'k'\npulse_api_secret = 's'\n",
            "webhook.url: required for format 'pulse'",
        ),
        ("format = 'copper'\n", "webhook.copper_api_key: required"),
        ("format = 'template'\nurl = 'https://x.example'\n", "webhook.template: required"),
        ("url = 'hooks.example/x'\n", "webhook.url: has no scheme"),
        ("secret = 'plain'\n", "webhook.secret: a secret must look like whsec_"),
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
        [sys.executable, "-m", "chatlead", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "sites.a.idle_timeout" in result.stderr


def test_a_site_sends_to_each_of_its_destinations(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(
        "[sites.a.webhook]\nurl = 'https://hooks.example/leads'\n"
        "[[sites.a.destinations]]\nname = 'crm'\nformat = 'copper'\n"
        "copper_api_key = 'k'\ncopper_user_email = 'o@a.example'\nevents = ['lead.completed']\n"
    )
    site = load_sites(load_settings(config=path))["a"]
    webhook, crm = site.destinations
    assert (webhook.name, webhook.event_suffix(), crm.event_suffix()) == ("webhook", "", ":crm")
    assert crm.options.copper_user_email == "o@a.example"
    assert site.routes_for("lead.completed") == ["", ":crm"]
    assert site.routes_for("lead.abandoned") == [""]


def test_the_readme_site_file_blocks_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the README tells people to copy is valid as written."""
    for name in ("HUBSPOT_TOKEN", "SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET"):
        monkeypatch.setenv(name, "k")
    for name in ("PIPEDRIVE_TOKEN", "COPPER_API_KEY", "ACME_WEBHOOK_SECRET"):
        monkeypatch.setenv(name, "whsec_c2VjcmV0" if "SECRET" in name else "k")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x")
    monkeypatch.setenv("ACME_IDENTITY_SECRET", "a-long-enough-identity-secret")
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        path = tmp_path / "sites.toml"
        path.write_text(block)
        settings = load_settings(
            config=path, smtp_url="smtp://127.0.0.1:25", smtp_from="a@b.example"
        )
        sites = load_sites(settings)
        assert sites["acme"].destinations


def test_env_alerts_add_email_and_slack_destinations() -> None:
    settings = load_settings(
        notify_email="owner@acme.example, ops@acme.example",
        slack_webhook_url="https://hooks.slack.com/services/T0/B0/x",
        smtp_url="smtp://127.0.0.1:2525",
        smtp_from="leads@acme.example",
    )
    site = load_sites(settings)["default"]
    email, slack = site.destinations
    assert (email.name, email.format, email.options.to) == (
        "email",
        "email",
        ("owner@acme.example", "ops@acme.example"),
    )
    assert (slack.name, slack.format, slack.url) == (
        "slack",
        "slack",
        "https://hooks.slack.com/services/T0/B0/x",
    )
    assert "visitor.waiting" in email.events and "visitor.waiting" in slack.events
    check_outgoing(settings, {"default": site}, worker=False)
    with pytest.raises(ConfigError, match="CHATLEAD_PUBLIC_URL: required by the worker"):
        check_outgoing(settings, {"default": site}, worker=True)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"notify_email": "not-an-address"}, "CHATLEAD_NOTIFY_EMAIL"),
        ({"smtp_url": "mail.example:25"}, "CHATLEAD_SMTP_URL"),
        ({"public_url": "chat.example.com"}, "CHATLEAD_PUBLIC_URL"),
    ],
)
def test_bad_alert_settings_are_named(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_sites(load_settings(**env))


def test_an_email_destination_needs_the_smtp_settings() -> None:
    settings = load_settings(notify_email="owner@acme.example")
    sites = load_sites(settings)
    with pytest.raises(ConfigError, match="CHATLEAD_SMTP_URL: required by the email destination"):
        check_outgoing(settings, sites, worker=False)


def test_a_private_slack_url_names_its_setting() -> None:
    settings = load_settings(slack_webhook_url="http://127.0.0.1:9/hook")
    with pytest.raises(ConfigError, match="CHATLEAD_SLACK_WEBHOOK_URL"):
        check_targets(settings, load_sites(settings))


def test_env_site_native_crms() -> None:
    site = load_sites(load_settings(webhook_format="hubspot", hubspot_token="pat-1"))["default"]
    assert (site.destinations[0].format, site.destinations[0].options.hubspot_token) == (
        "hubspot",
        "pat-1",
    )
    with pytest.raises(ConfigError, match="CHATLEAD_PIPEDRIVE_TOKEN: required for format"):
        load_sites(load_settings(webhook_format="pipedrive"))
    with pytest.raises(ConfigError, match="CHATLEAD_NOTIFY_EMAIL"):
        load_sites(load_settings(webhook_format="email"))
    assert "pat-1" not in "\n".join(describe(load_settings(hubspot_token="pat-1")))
