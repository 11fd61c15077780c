"""``[[sites.<id>.triggers]]``: validated when the site file loads (CONTRACT §13)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chatlead.config import load_settings
from chatlead.errors import ConfigError
from chatlead.site_config import load_sites


def sites_from(tmp_path: Path, body: str) -> dict[str, object]:
    path = tmp_path / "sites.toml"
    path.write_text("[sites.a]\n" + body)
    return load_sites(load_settings(config=path))  # type: ignore[return-value]


def test_triggers_load_with_durations_and_default_ids(tmp_path: Path) -> None:
    sites = sites_from(
        tmp_path,
        "[[sites.a.triggers]]\nid = 'pricing'\nurl_contains = '/pricing'\nafter = '20s'\n"
        "message = 'Questions about prices?'\n"
        "[[sites.a.triggers]]\nscroll = 60\nurl_matches = '^https://a\\.example/(blog|news)/'\n"
        "every = '7d'\nmessage = 'Enjoying the read?'\n"
        "[[sites.a.triggers]]\nexit_intent = true\nmessage = 'Before you go…'\n",
    )
    triggers = sites["a"].triggers  # type: ignore[attr-defined]
    assert [t.id for t in triggers] == ["pricing", "trigger-2", "trigger-3"]
    assert triggers[0].after == 20 and triggers[0].every == 86400
    assert triggers[1].scroll == 60 and triggers[1].every == 7 * 86400
    assert triggers[2].exit_intent is True


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("message = 'Hi'\n", "a trigger needs a condition"),
        ("after = '20s'\n", "triggers.0.message"),
        ("after = '20s'\nmessage = 'Hi'\nwhen = 'x'\n", "triggers.0.when"),
        ("scroll = 0\nmessage = 'Hi'\n", "triggers.0.scroll"),
        ("scroll = 101\nmessage = 'Hi'\n", "triggers.0.scroll"),
        ("url_matches = '(unclosed'\nmessage = 'Hi'\n", "not a regular expression"),
        ("url_matches = '(?<=x)y'\nmessage = 'Hi'\n", "browsers read differently"),
        ("url_matches = '(?P<n>x)'\nmessage = 'Hi'\n", "browsers read differently"),
        ("url_matches = '^(a+)+$'\nmessage = 'Hi'\n", "repeats a part that repeats itself"),
        ("url_matches = '/(\\\\w+-?)*$'\nmessage = 'Hi'\n", "repeats a part that repeats"),
        ("after = 'soon'\nmessage = 'Hi'\n", "triggers.0.after"),
        ("id = 'a b'\nafter = '1s'\nmessage = 'Hi'\n", "not a trigger id"),
    ],
)
def test_a_bad_trigger_stops_the_start_naming_it(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")) as info:
        sites_from(tmp_path, "[[sites.a.triggers]]\n" + body)
    assert "sites.a.triggers" in str(info.value)


def test_two_triggers_cannot_share_an_id(tmp_path: Path) -> None:
    rule = "[[sites.a.triggers]]\nid = 'x'\nafter = '1s'\nmessage = 'Hi'\n"
    with pytest.raises(ConfigError, match="each trigger id may appear once"):
        sites_from(tmp_path, rule + rule)
