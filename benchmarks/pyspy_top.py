"""Top functions of a py-spy profile recorded with ``--format raw``.

``py-spy record -f raw`` writes one collapsed stack per line (``a;b;c count``). This
prints the functions with the most samples at the top of the stack (self) and
anywhere in it (inclusive), line numbers folded, as shares of all samples::

    python benchmarks/pyspy_top.py /tmp/chatlead.raw --top 25
    python benchmarks/pyspy_top.py /tmp/chatlead.raw --under Connection._apply

Self samples are also summed by owner: the package (``redis``, ``uvicorn``,
``starlette``, ``server`` ...) of the innermost frame outside the standard library,
so a socket write inside ``asyncio.streams`` called by redis-py counts for ``redis``.
Samples with only standard-library frames (the event loop itself) count as
``event loop``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

__all__ = ["load", "main"]

_LINE = re.compile(r":\d+\)$")
_FILE = re.compile(r"\(([^/)]*)[/)]")


def load(
    path: Path, under: str | None = None
) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    """Self, inclusive and per-owner sample counts, and the total sample count.

    With ``under``, only stacks through a function whose name contains ``under``
    are counted, and the total is still every sample (so shares stay comparable).
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # py-spy occasionally writes a garbled process-name line
        samples = int(count)
        total += samples
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        if under is not None and not any(under in frame for frame in frames):
            continue
        own[frames[-1]] += samples
        owners[owner(frames)] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return own, inclusive, owners, total


def package(frame: str) -> str:
    """``redis`` for ``Redis.execute_command (redis/asyncio/client.py)``."""
    match = _FILE.search(frame)
    if match is None:
        return "?"
    head = match.group(1)
    return head.removesuffix(".py").split(":")[0] or "?"


def owner(frames: list[str]) -> str:
    """The innermost non-standard-library package in a stack (leaf last)."""
    for frame in reversed(frames):
        name = package(frame)
        if name not in sys.stdlib_module_names and name not in ("?", "<frozen runpy>"):
            return name
    return "event loop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--under", default=None, help="only stacks through this function")
    args = parser.parse_args()
    own, inclusive, owners, total = load(args.profile, args.under)
    print(f"{total} samples")
    for title, counts in (("self", own), ("by owner", owners), ("inclusive", inclusive)):
        print(f"\n-- {title}")
        for name, samples in counts.most_common(args.top):
            print(f"{100 * samples / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
