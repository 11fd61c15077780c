"""Top functions of a py-spy profile recorded with ``--format raw``.

``py-spy record -f raw`` writes one collapsed stack per line (``a;b;c count``). This
prints the functions with the most samples at the top of the stack (self) and
anywhere in it (inclusive), line numbers folded, as shares of all samples::

    python benchmarks/pyspy_top.py /tmp/chatlead.raw --top 25
    python benchmarks/pyspy_top.py /tmp/chatlead.raw --under Connection._apply
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

__all__ = ["load", "main"]

_LINE = re.compile(r":\d+\)$")


def load(path: Path, under: str | None = None) -> tuple[Counter[str], Counter[str], int]:
    """Self and inclusive sample counts per function, and the total sample count.

    With ``under``, only stacks through a function whose name contains ``under``
    are counted, and the total is still every sample (so shares stay comparable).
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
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
        for frame in set(frames):
            inclusive[frame] += samples
    return own, inclusive, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--under", default=None, help="only stacks through this function")
    args = parser.parse_args()
    own, inclusive, total = load(args.profile, args.under)
    print(f"{total} samples")
    for title, counts in (("self", own), ("inclusive", inclusive)):
        print(f"\n-- {title}")
        for name, samples in counts.most_common(args.top):
            print(f"{100 * samples / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
