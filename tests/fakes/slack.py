"""A fake Slack incoming webhook that enforces what Slack's documentation requires.

* ``POST`` to the hook's path (:attr:`FakeSlack.hook_url`), anything else ``404 no_service``;
  :meth:`FakeSlack.revoke` makes the hook answer ``404 no_service`` (deleted) or
  ``410 channel_is_archived``;
* a JSON object body (``400 invalid_payload`` otherwise) with ``text`` or ``blocks``
  (``400 no_text``);
* Block Kit limits (``400 invalid_blocks``): at most 50 blocks; a ``header`` is
  ``plain_text`` of 1-150 characters; a ``section`` has ``text`` of 1-3,000 characters
  and/or 1-10 ``fields`` of at most 2,000 each; a ``context`` has 1-10 elements; a
  ``button`` has ``plain_text`` of at most 75 characters and a ``url`` of at most 3,000;
  unknown block types are refused;
* every ``mrkdwn`` text (and the top-level ``text``) must have ``&``, ``<`` and ``>``
  escaped: this fake never expects a link or mention from chatlead, so a raw ``<`` or
  ``>``, or an ``&`` that starts no ``&amp;``/``&lt;``/``&gt;``, is recorded in
  :attr:`FakeSlack.problems` and refused with ``400 invalid_blocks``;
* success is ``200`` with the plain-text body ``ok``; :meth:`FakeSlack.fail_next`
  answers the next calls with a given status (``500 rollup_error`` and the like).
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import Answer, FakeServer, Seen

__all__ = ["FakeSlack"]

HOOK_PATH = "/services/T0CHATLEAD/B0ALERTS/s3cr3tW3bh00kT0k3n"
_BAD_AMP = re.compile(r"&(?!amp;|lt;|gt;)")


class FakeSlack(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.revoked: int | None = None
        self.failures: list[tuple[int, str]] = []

    @property
    def hook_url(self) -> str:
        """The webhook URL, as configured in the destination's ``url`` (a secret)."""
        return self.url + HOOK_PATH

    def revoke(self, status: int = 404) -> None:
        with self.lock:
            self.revoked = status

    def fail_next(self, status: int, reason: str = "rollup_error", times: int = 1) -> None:
        with self.lock:
            self.failures += [(status, reason)] * times

    # -- decisions ----------------------------------------------------------------

    def handle(self, request: Seen) -> Answer:
        if request.method != "POST" or request.path != HOOK_PATH:
            return Answer(404, text="no_service")
        if self.revoked is not None:
            return Answer(
                self.revoked, text="no_service" if self.revoked == 404 else "channel_is_archived"
            )
        if self.failures:
            status, reason = self.failures.pop(0)
            return Answer(status, text=reason)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return Answer(400, text="invalid_payload")
        try:
            body = json.loads(request.body)
        except ValueError:
            return Answer(400, text="invalid_payload")
        if not isinstance(body, dict):
            return Answer(400, text="invalid_payload")
        if not body.get("text") and not body.get("blocks"):
            return Answer(400, text="no_text")
        problems = self.check(body)
        if problems:
            self.problems += problems
            return Answer(400, text="invalid_blocks")
        self.messages.append(body)
        return Answer(200, text="ok")

    @staticmethod
    def check(body: dict[str, Any]) -> list[str]:
        """What Slack would refuse in ``body`` (empty: it would post it)."""
        problems: list[str] = []
        if "text" in body:
            problems += _escaping("text", body["text"])
        blocks = body.get("blocks", [])
        if not isinstance(blocks, list) or len(blocks) > 50:
            return [*problems, "blocks: not a list of at most 50"]
        for index, block in enumerate(blocks):
            problems += _block(f"blocks[{index}]", block)
        return problems


def _escaping(where: str, text: Any) -> list[str]:
    if not isinstance(text, str):
        return [f"{where}: not a string"]
    if "<" in text or ">" in text or _BAD_AMP.search(text):
        return [f"{where}: unescaped & < or > in {text[:80]!r}"]
    return []


def _text(where: str, obj: Any, limit: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        return [f"{where}: not a text object"]
    if plain_only and obj["type"] != "plain_text":
        return [f"{where}: must be plain_text"]
    text = obj.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= limit:
        return [f"{where}: text must be 1-{limit} characters"]
    return _escaping(where, text) if obj["type"] == "mrkdwn" else []


def _block(where: str, block: Any) -> list[str]:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "header":
        return _text(where, block.get("text"), 150, plain_only=True)
    if kind == "divider":
        return []
    if kind == "section":
        if "text" not in block and "fields" not in block:
            return [f"{where}: a section needs text or fields"]
        problems = _text(f"{where}.text", block["text"], 3000) if "text" in block else []
        if "fields" not in block:
            return problems
        fields = block["fields"]
        if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
            return [*problems, f"{where}.fields: 1-10 items"]
        for i, item in enumerate(fields):
            problems += _text(f"{where}.fields[{i}]", item, 2000)
        return problems
    if kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            return [f"{where}.elements: 1-10 items"]
        return [p for i, e in enumerate(elements) for p in _text(f"{where}[{i}]", e, 3000)]
    if kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            return [f"{where}.elements: 1-25 items"]
        return [p for i, e in enumerate(elements) for p in _button(f"{where}[{i}]", e)]
    return [f"{where}: unknown block type {kind!r}"]


def _button(where: str, element: Any) -> list[str]:
    if not isinstance(element, dict) or element.get("type") != "button":
        return [f"{where}: only buttons are expected"]
    problems = _text(f"{where}.text", element.get("text"), 75, plain_only=True)
    url = element.get("url")
    if url is not None and (not isinstance(url, str) or len(url) > 3000):
        problems.append(f"{where}.url: at most 3000 characters")
    if len(str(element.get("action_id", ""))) > 255:
        problems.append(f"{where}.action_id: at most 255 characters")
    return problems
