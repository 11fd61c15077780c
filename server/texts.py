"""A site's texts in the visitor's language (CONTRACT §13): ``[sites.<id>.texts.<lang>]``.

The widget says which of its languages it shows (``hello.lang``); a session keeps it
(lead field ``lang``), and the bot speaks the site's translation where there is one, and
the site's own words where not. Pure data and functions; checked when the config loads,
so a translation of a question the flow does not ask stops the start, naming the key.

```toml
[sites.acme.texts.es]
greeting = "¡Hola! Te preparamos un presupuesto en un minuto."
thanks = "¡Gracias! Te escribimos enseguida."
asks = { name = "¿Cómo te llamas?", email = "¿Tu correo electrónico?" }
options = { service = { leak = "Fuga", drain = "Desagüe" } }
consent = { text = "Guardamos tus datos para responderte.", marketing = "Enviadme ofertas" }
triggers = { pricing = "¿Dudas sobre los precios? Pregunta." }
```
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from .consent import Consent
from .errors import FieldProblem
from .steps import FieldKind, FlowStep

__all__ = ["LANGUAGES", "THANKS", "Texts", "check_texts", "language", "translated"]

LANGUAGES = ("en", "es", "fr", "de", "pt", "it", "nl", "pl", "tr", "ja", "ar", "he")
"""The widget's languages (``ar`` and ``he`` right to left)."""

THANKS = "Thanks! We have everything we need and will be in touch soon."
"""What the bot says once the flow is done, unless the site says otherwise."""

Line = Annotated[str, Field(min_length=1, max_length=500)]
Label = Annotated[str, Field(min_length=1, max_length=100)]


class ConsentTexts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: Annotated[str | None, Field(min_length=1, max_length=2000)] = None
    marketing: Annotated[str | None, Field(min_length=1, max_length=200)] = None


class Texts(BaseModel):
    """One language's words for a site; whatever is left out stays the site's own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    greeting: Line | None = None
    thanks: Line | None = None
    asks: dict[str, Line] = {}
    """A step's question, by its field."""
    options: dict[str, dict[str, Label]] = {}
    """A choice step's labels, by field, then by option value."""
    consent: ConsentTexts | None = None
    triggers: dict[str, Annotated[str, Field(min_length=1, max_length=300)]] = {}
    """A trigger's bubble, by trigger id."""


def language(raw: Any) -> str | None:
    """``hello.lang`` when it is one of :data:`LANGUAGES`, else None (never an error)."""
    return raw if isinstance(raw, str) and raw in LANGUAGES else None


def _step(step: FlowStep, texts: Texts) -> FlowStep:
    labels = texts.options.get(step.field, {})
    update: dict[str, Any] = {}
    if step.field in texts.asks:
        update["ask"] = texts.asks[step.field]
    if labels:
        update["options"] = tuple(
            o.model_copy(update={"label": labels[o.value]}) if o.value in labels else o
            for o in step.options
        )
    return step.model_copy(update=update) if update else step


def translated(
    greeting: str, thanks: str, flow: tuple[FlowStep, ...], consent: Consent | None, texts: Texts
) -> dict[str, Any]:
    """The site keys ``texts`` changes: ``greeting``, ``thanks``, ``flow`` and ``consent``."""
    changed: dict[str, Any] = {
        "greeting": texts.greeting or greeting,
        "thanks": texts.thanks or thanks,
        "flow": tuple(_step(step, texts) for step in flow),
    }
    if consent is not None and texts.consent is not None:
        own = texts.consent.model_dump(exclude_none=True)
        if consent.marketing is None:
            own.pop("marketing", None)
        changed["consent"] = consent.model_copy(update=own)
    return changed


def check_texts(
    texts: Mapping[str, Texts],
    flows: Iterable[tuple[FlowStep, ...]],
    trigger_ids: Iterable[str],
    consent: Consent | None,
) -> None:
    """Every translation names a language the widget has and something the site has.

    Raises:
        FieldProblem: naming the first key that does not, e.g. ``texts.es.asks.budget``.
    """
    steps: dict[str, FlowStep] = {}
    for flow in flows:
        for step in flow:
            steps.setdefault(step.field, step)
    triggers = set(trigger_ids)
    for lang, words in texts.items():
        where = f"texts.{lang}"
        if lang not in LANGUAGES:
            raise FieldProblem(where, f"no widget language {lang!r}; one of {', '.join(LANGUAGES)}")
        for field in words.asks:
            if field not in steps:
                raise FieldProblem(f"{where}.asks.{field}", "the flow asks no such field")
        for field, labels in words.options.items():
            _check_labels(f"{where}.options.{field}", steps.get(field), labels)
        for trigger in words.triggers:
            if trigger not in triggers:
                raise FieldProblem(f"{where}.triggers.{trigger}", "the site has no such trigger")
        if words.consent is not None:
            _check_consent(f"{where}.consent", words.consent, consent)


def _check_labels(where: str, step: FlowStep | None, labels: Mapping[str, str]) -> None:
    if step is None or step.kind is not FieldKind.CHOICE:
        raise FieldProblem(where, "not a choice step of the flow")
    values = {o.value for o in step.options}
    for value in labels:
        if value not in values:
            raise FieldProblem(f"{where}.{value}", "the step has no option of this value")


def _check_consent(where: str, words: ConsentTexts, consent: Consent | None) -> None:
    if consent is None:
        raise FieldProblem(where, "the site asks no consent")
    if words.marketing and consent.marketing is None:
        raise FieldProblem(f"{where}.marketing", "the site's consent offers no marketing opt-in")
