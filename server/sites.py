"""Sites: what each business's chat asks and where its leads go.

The models (:class:`Site`, :class:`Webhook`, :class:`FlowStep`) are plain pydantic
data with no I/O, used by the pure flow, lead and format code; :mod:`chatlead.config`
loads them (from the environment or a TOML file).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .availability import Availability
from .conditions import Test, parse_when
from .consent import Consent
from .errors import FieldProblem
from .experiments import MAX_VARIANTS, Variant
from .recovery import REMINDER, Recovery
from .spam import Spam
from .steps import DEFAULT_FLOW, MAX_OPTIONS, Choice, FieldKind, FlowStep, check_flow
from .texts import THANKS, Texts, check_texts, translated
from .triggers import Trigger, unique_ids
from .units import parse_duration

__all__ = [
    "DEFAULT_FLOW",
    "FieldKind",
    "FieldProblem",
    "MAX_OPTIONS",
    "Choice",
    "FlowStep",
    "Qualify",
    "ForwardPolicy",
    "Site",
    "Destination",
    "EVENT_TYPES",
    "LEAD_EVENTS",
    "Route",
    "WEBHOOK",
    "first_problem",
    "is_loopback",
    "no_site_message",
]


def first_problem(exc: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """Where the first error is (field path) and what it says, never the value given."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, FieldProblem):
        loc = (*loc, cause.field)
    return loc, str(err["msg"]).removeprefix("Value error, ")


class ForwardPolicy(StrEnum):
    ALWAYS = "always"
    WITH_CONTACT = "with-contact"
    NEVER = "never"


LEAD_EVENTS = ("lead.completed", "lead.abandoned")
"""The events a destination takes unless it names its own."""
EVENT_TYPES = (*LEAD_EVENTS, "visitor.waiting")
"""Event types a destination may ask for (``lead.test`` goes wherever it is sent)."""
WEBHOOK = "webhook"
"""The name of the destination ``[sites.X.webhook]`` (or the environment) defines; its
event ids keep the form they had before sites had several destinations."""
Route = str | list[Any]
"""One destination an event goes to, as the session scripts get it: its event id
suffix, or ``[suffix, condition]`` when it has a ``when``."""
_DESTINATION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class Destination(BaseModel):
    """One place a site's events go, in one format (CONTRACT §9).

    The keys every format shares are fields here; a format's own keys (``copper_*``,
    ``hubspot_token``, ``to`` ...) are validated by that format's options model in
    :mod:`chatlead.formats` and kept in ``options``. ``url=None`` with the
    ``external-lead`` format means the built-in inbox.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = WEBHOOK
    format: str = "external-lead"
    events: tuple[str, ...] = LEAD_EVENTS
    when: dict[str, Any] | None = None
    """Only events whose lead fields meet it (:mod:`chatlead.conditions` normal form)."""
    url: str | None = None
    secrets: tuple[str, ...] = ()
    allow_private: bool = False
    template: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    options: Any = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _DESTINATION_NAME.match(value):
            raise ValueError(
                "use lowercase letters, digits, - and _ (up to 40), starting with a letter or digit"
            )
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for kind in value:
            if kind not in EVENT_TYPES:
                raise ValueError(f"unknown event {kind!r}; use {', '.join(EVENT_TYPES)}")
        if not value:
            raise ValueError("needs at least one event")
        return value

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, value: Any) -> dict[str, Any] | None:
        return None if value is None else parse_when(value)

    @field_validator("secrets")
    @classmethod
    def _secrets_are_whsec(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) > 2:
            raise ValueError("at most two secrets (new and old, during rotation)")
        for secret in value:
            if not secret.startswith("whsec_"):
                raise ValueError("a secret must look like whsec_<base64>")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        problem = None if value is None else _url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def is_inbox(self) -> bool:
        return self.format == "external-lead" and self.url is None

    def event_suffix(self) -> str:
        """What this destination's event ids add to the event's base id."""
        return "" if self.name == WEBHOOK else ":" + self.name

    def takes(self, event_type: str) -> bool:
        return event_type == "lead.test" or event_type in self.events


def _url_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute http(s) URL; the URL is never quoted (it may hold a token)."""
    if "://" not in url:
        return "has no scheme; include https:// (e.g. https://hooks.example.com/leads)"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return f"scheme {parts.scheme}:// is not supported; use https://"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"bad port for {parts.hostname}"
    return None if parts.hostname else "has no host"


class Qualify(BaseModel):
    """``[sites.X.qualify]``: the score at which a lead is qualified."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    qualified_at: int = Field(ge=0, le=100_000)


class Site(BaseModel):
    """Everything chatlead knows about one website it serves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    allowed_origins: tuple[str, ...] = ("*",)
    company: str | None = None
    idle_timeout: float = 900.0
    forward_abandoned: ForwardPolicy = ForwardPolicy.WITH_CONTACT
    phone_region: str = "US"
    greeting: str = "Hi! Leave us a few details and we'll get back to you."
    thanks: Annotated[str, Field(min_length=1, max_length=500)] = THANKS
    """What the bot says once the flow is done."""
    flow: tuple[FlowStep, ...] = DEFAULT_FLOW
    destinations: tuple[Destination, ...] = (Destination(),)
    """Where events go; the default is the built-in inbox (CONTRACT §9)."""
    source: str = "chat-widget"
    job_type_id: str | None = None
    availability_class_id: str | None = None
    place_id: str | None = None
    max_connections: Annotated[int | None, Field(ge=1)] = None
    """Open sockets for this site across all processes; unset: ``MAX_CONN_PER_SITE``."""
    qualify: Qualify | None = None
    triggers: tuple[Trigger, ...] = ()
    """Proactive openers shown by the widget (:mod:`chatlead.triggers`, CONTRACT §13)."""
    agent_wait: float = 60.0
    """How long a visitor waits for an agent before ``visitor.waiting`` (§10)."""
    recovery: Recovery | None = None
    """Reminder emails to the visitor after an abandonment (§11)."""
    consent: Consent | None = None
    """The notice a visitor agrees to before the first question (§12)."""
    spam: Spam = Spam()
    """Which sessions are flagged spam and kept from the destinations (§12)."""
    availability: Availability | None = None
    """The appointment slots a ``slot`` step offers (§12)."""
    variants: tuple[Variant, ...] = Field(default=(), max_length=MAX_VARIANTS)
    """An experiment's arms, each a greeting and flow instead of the site's (§12)."""
    texts: dict[str, Texts] = {}
    """The greeting, questions, labels, consent and trigger bubbles per language (§13)."""
    identity_secret: Annotated[str | None, Field(min_length=16, repr=False)] = None
    """Proves the page's signed-in user (``data-user-hash``, :mod:`chatlead.identity`)."""

    @field_validator("id")
    @classmethod
    def _site_id(cls, value: str) -> str:
        if not _SITE_ID.match(value):
            raise ValueError(f"{value!r} is not a site id; use letters, digits, - and _ (up to 64)")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_origin(origin) for origin in value)

    @field_validator("idle_timeout", "agent_wait", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: ValidationInfo) -> float:
        seconds = parse_duration(value)
        if seconds < 1:
            raise ValueError(f"{info.field_name} must be at least 1s")
        return seconds

    @field_validator("flow")
    @classmethod
    def _flow(cls, value: tuple[FlowStep, ...]) -> tuple[FlowStep, ...]:
        return check_flow(value)

    @model_validator(mode="after")
    def _slots_need_availability(self) -> Site:
        for i, step in enumerate(self.flow):
            if step.kind is FieldKind.SLOT and self.availability is None:
                raise FieldProblem(f"flow.{i}.kind", "a slot step needs [sites.<id>.availability]")
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise FieldProblem("variants", "each variant name may appear once in a site")
        return self

    def check_texts(self) -> None:
        """Every translation names something this site (or one of its variants) has.

        Raises:
            FieldProblem: naming the key, e.g. ``texts.es.asks.budget``.
        """
        flows = [self.flow, *(v.flow for v in self.variants if v.flow)]
        check_texts(self.texts, flows, [t.id for t in self.triggers], self.consent)

    def for_session(self, page: Mapping[str, str]) -> Site:
        """The site as a session's visitor sees it: its variant, in its language."""
        return self.for_variant(page.get("variant")).for_language(page.get("lang"))

    def for_language(self, lang: str | None) -> Site:
        """The site in ``lang`` where ``[sites.<id>.texts.<lang>]`` translates it; any
        other language: the site itself."""
        return self._language_sites.get(lang or "", self)

    @cached_property
    def _language_sites(self) -> dict[str, Site]:
        return {
            lang: self._changed(
                texts={}, **translated(self.greeting, self.thanks, self.flow, self.consent, words)
            )
            for lang, words in self.texts.items()
        }

    def for_variant(self, name: str | None) -> Site:
        """The site as variant ``name`` shows it (its greeting and flow); an unknown or
        no variant: the site itself."""
        return self._variant_sites.get(name or "", self)

    @cached_property
    def _variant_sites(self) -> dict[str, Site]:
        return {
            v.name: self._changed(
                variants=(), greeting=v.greeting or self.greeting, flow=v.flow or self.flow
            )
            for v in self.variants
        }

    def _changed(self, **changes: Any) -> Site:
        """This site with ``changes``, validated like any site."""
        own = {name: getattr(self, name) for name in type(self).model_fields}
        return Site.model_validate(own | changes)

    @field_validator("destinations")
    @classmethod
    def _unique_names(cls, value: tuple[Destination, ...]) -> tuple[Destination, ...]:
        names = [destination.name for destination in value]
        if len(set(names)) != len(names):
            raise ValueError("each destination name may appear once in a site")
        return value

    @cached_property
    def steps_by_field(self) -> dict[str, FlowStep]:
        return {step.field: step for step in self.flow}

    @cached_property
    def score_table(self) -> tuple[tuple[str, Test | None, dict[str, int]], ...]:
        """``(field, its when, {option value: score})`` of each step with a scored option."""
        return tuple(
            (step.field, step.asked_when, {o.value: o.score for o in step.options if o.score})
            for step in self.flow
            if any(o.score for o in step.options)
        )

    @cached_property
    def scores(self) -> bool:
        """Whether any answer changes the lead's score (options with scores, or qualify)."""
        return bool(self.score_table) or self.qualify is not None

    @field_validator("triggers")
    @classmethod
    def _trigger_ids(cls, value: tuple[Trigger, ...]) -> tuple[Trigger, ...]:
        return unique_ids(value)

    def destination(self, name: str) -> Destination | None:
        found = next((d for d in self.destinations if d.name == name), None)
        if found is None and name == REMINDER and self.recovery is not None:
            # built in: the visitor's reminder emails (chatlead.formats.reminder)
            return Destination(
                name=REMINDER, format=REMINDER, allow_private=self.recovery.allow_private
            )
        return found

    def routes_for(self, event_type: str) -> list[Route]:
        """Where ``event_type`` goes: each taking destination's event id suffix, with
        its ``when`` condition as ``[suffix, condition]`` (what the scripts evaluate)."""
        return [
            d.event_suffix() if d.when is None else [d.event_suffix(), d.when]
            for d in self.destinations
            if d.takes(event_type)
        ]

    def origin_allowed(self, origin: str | None) -> bool:
        return "*" in self.allowed_origins or origin in self.allowed_origins


_SITE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ORIGIN = re.compile(r"^https?://[^/?#\s]+$")


def _origin(origin: str) -> str:
    """``origin`` as browsers send it (no trailing slash), or ValueError saying what is wrong."""
    if origin == "*":
        return origin
    if "://" not in origin:
        raise ValueError(f"{origin!r} has no scheme; include https:// (https://{origin})")
    clean = origin.rstrip("/")
    if not _ORIGIN.match(clean):
        raise ValueError(f"{origin!r} is not an origin; write scheme://host[:port], no path")
    return clean


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def no_site_message(site_id: str, sites: Iterable[str]) -> str:
    return f"no site {site_id!r}; known sites: {', '.join(sorted(sites))}"
