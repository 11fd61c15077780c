"""A site's texts per language (CONTRACT §13): ``[sites.<id>.texts.<lang>]``, checked at
start, and the bot speaking them to a visitor whose widget names that language."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from chatlead.config import load_settings
from chatlead.errors import ConfigError
from chatlead.site_config import load_sites
from chatlead.texts import language

from tests.conftest import Visitor, admin_headers

SITE_TOML = """
[sites.shop]
allowed_origins = ["http://127.0.0.1"]
greeting = "Hi! A quote in a minute."

[[sites.shop.flow]]
field = "name"
ask = "What's your name?"

[[sites.shop.flow]]
field = "service"
kind = "choice"
options = [{ label = "Leak", value = "leak" }, { label = "Drain", value = "drain" }]
ask = "What do you need?"

[[sites.shop.flow]]
field = "email"
ask = "Your email?"
required = true

[sites.shop.consent]
text = "We keep your details to answer you."
version = "v1"
marketing = "Send me offers"

[[sites.shop.triggers]]
id = "pricing"
after = "5s"
message = "Questions about prices?"

[sites.shop.texts.es]
greeting = "¡Hola! Un presupuesto en un minuto."
thanks = "¡Gracias! Te escribimos pronto."
asks = { name = "¿Cómo te llamas?", service = "¿Qué necesitas?", email = "¿Tu correo?" }
options = { service = { leak = "Fuga" } }
consent = { text = "Guardamos tus datos para responderte.", marketing = "Enviadme ofertas" }
triggers = { pricing = "¿Dudas sobre los precios?" }
"""


def _load(tmp_path: Path, body: str) -> Any:
    path = tmp_path / "sites.toml"
    path.write_text(body, encoding="utf-8")
    return load_sites(load_settings(config=path))


def test_a_site_in_spanish(tmp_path: Path) -> None:
    site = _load(tmp_path, SITE_TOML)["shop"]
    es = site.for_language("es")
    assert es.greeting == "¡Hola! Un presupuesto en un minuto."
    assert es.thanks == "¡Gracias! Te escribimos pronto." and site.thanks.startswith("Thanks!")
    assert [s.ask for s in es.flow] == ["¿Cómo te llamas?", "¿Qué necesitas?", "¿Tu correo?"]
    assert [(o.label, o.value) for o in es.flow[1].options] == [
        ("Fuga", "leak"),
        ("Drain", "drain"),
    ]
    assert es.consent is not None and es.consent.text.startswith("Guardamos")
    assert es.consent.marketing == "Enviadme ofertas" and es.consent.version == "v1"
    # no texts for it, or not one of the widget's: the site's own words
    assert site.for_language("fr") is site and site.for_language(None) is site
    assert site.for_session({"lang": "es"}) is es


@pytest.mark.parametrize(
    ("texts", "needle"),
    [
        ("[sites.shop.texts.xx]\ngreeting = 'x'\n", "sites.shop.texts.xx: no widget language 'xx'"),
        ("[sites.shop.texts.es]\nasks = { budget = 'x' }\n", "sites.shop.texts.es.asks.budget: "),
        (
            "[sites.shop.texts.es]\noptions = { name = { a = 'x' } }\n",
            "texts.es.options.name: not a",
        ),
        (
            "[sites.shop.texts.es]\noptions = { service = { roof = 'x' } }\n",
            "texts.es.options.service.roof: the step has no option",
        ),
        ("[sites.shop.texts.es]\ntriggers = { exit = 'x' }\n", "texts.es.triggers.exit: "),
        ("[sites.shop.texts.es]\ngreeting = ''\n", "texts.es.greeting"),
        ("[sites.shop.texts.es]\nhello = 'x'\n", "texts.es.hello"),
    ],
)
def test_a_translation_of_nothing_stops_the_start_naming_the_key(
    tmp_path: Path, texts: str, needle: str
) -> None:
    base = SITE_TOML.split("[sites.shop.texts.es]")[0]
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        _load(tmp_path, base + texts)


def test_consent_texts_need_the_sites_consent(tmp_path: Path) -> None:
    body = SITE_TOML.replace("[sites.shop.consent]", "[sites.shop.consent_gone]")
    body = (
        body.split("[sites.shop.consent_gone]")[0] + body.split('marketing = "Send me offers"')[1]
    )
    with pytest.raises(ConfigError, match=r"texts\.es\.consent: the site asks no consent"):
        _load(tmp_path, body)


def test_hello_lang_is_one_of_the_widgets() -> None:
    assert language("es") == "es" and language("he") == "he"
    for raw in ("xx", "ES", "es-MX", "", 3, None):
        assert language(raw) is None


async def test_the_bot_speaks_the_visitors_language(
    app_factory: Any, tmp_path: Path, redis_url: str
) -> None:
    path = tmp_path / "sites.toml"
    path.write_text(SITE_TOML, encoding="utf-8")
    app = await app_factory(config=str(path))
    origin = "http://127.0.0.1"
    async with Visitor.connect(app.ws_url, "shop", origin, lang="es") as v:
        said = [m["text"] for m in v.welcome["transcript"]]
        assert said[0] == "¡Hola! Un presupuesto en un minuto."
        assert v.welcome["consent"]["text"].startswith("Guardamos")
        await v.send({"type": "consent", "id": "k1", "version": "v1", "marketing": False})
        await v.expect("ack")
        assert (await v.field("name", "Lía"))["type"] == "ack"
        ask = await v.expect("message")
        assert ask["text"] == "¿Qué necesitas?"
        assert [o["label"] for o in ask["prompt"]["options"]] == ["Fuga", "Drain"]
        sid, token = v.welcome["session_id"], v.welcome["resume_token"]
    # resumed from a page in another language: the session keeps its own
    async with Visitor.connect(
        app.ws_url, "shop", origin, lang="fr", session_id=sid, resume_token=token
    ) as back:
        assert back.welcome["resumed"] and back.welcome["prompt"]["field"] == "service"
        assert (await back.field("service", "Fuga", "r1"))[
            "type"
        ] == "ack"  # the label it was shown
        assert (await back.expect("message"))["text"] == "¿Tu correo?"
        assert (await back.field("email", "lia@example.com", "r2"))["type"] == "ack"
        assert (await back.expect("message"))["text"] == "¡Gracias! Te escribimos pronto."
    async with httpx.AsyncClient(headers=admin_headers(redis_url)) as api:
        detail = (await api.get(f"{app.base}/api/sessions/{sid}")).json()
    assert detail["fields"]["service"] == "leak" and detail["page"]["lang"] == "es"
    async with Visitor.connect(app.ws_url, "shop", origin, lang="xx") as other:
        assert other.welcome["transcript"][0]["text"] == "Hi! A quote in a minute."
