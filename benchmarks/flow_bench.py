"""Cost of the flow's decisions per visitor event: a flat flow against a branching one.

Times ``flow.on_field`` (what one ``field`` frame costs the server before Redis) over a
30-step flow, answering every step in turn, flat and with a ``when`` on every step and
scored choices. Pure functions, no I/O.

    python benchmarks/flow_bench.py --rounds 2000
"""

from __future__ import annotations

import argparse
import statistics
import time

from chatlead import flow
from chatlead.sites import FlowStep, Qualify, Site

STEPS = 30


def flat_site() -> Site:
    steps = [FlowStep(field=f"q{i}", ask=f"Question {i}?") for i in range(STEPS)]
    return Site(id="flat", flow=tuple(steps))


def branching_site() -> Site:
    steps = []
    for i in range(STEPS):
        options = ({"label": "Yes", "value": "yes", "score": 3}, {"label": "No", "value": "no"})
        when = None if i == 0 else {"any": [{"field": f"q{i - 1}", "in": ["yes", "no"]}]}
        steps.append(
            FlowStep(field=f"q{i}", ask=f"Question {i}?", kind="choice", options=options, when=when)
        )
    return Site(id="branching", flow=tuple(steps), qualify=Qualify(qualified_at=40))


def per_event_us(site: Site, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        fields: dict[str, str] = {}
        started = time.perf_counter()
        for step in site.flow:
            fields |= flow.on_field(site, fields, step.field, "yes").updates
        samples.append((time.perf_counter() - started) / len(site.flow))
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    flat, branching = flat_site(), branching_site()
    for _ in range(3):
        a, b = per_event_us(flat, args.rounds), per_event_us(branching, args.rounds)
        print(
            f"{STEPS}-step flow, per field event: flat {a:.1f} µs, branching {b:.1f} µs, +{b - a:.1f} µs"
        )


if __name__ == "__main__":
    main()
