"""Benchmark: the compliance gate's decisions per second and memory on 1,000,000 contacts.

Run: ``.venv/bin/python bench/gate_throughput.py [--contacts N]``. Prints figures measured in
this one run (no pass/fail: machines are shared and noisy). Target: >= 100,000 decisions per
second on one core for :func:`voicecast.compliance.gate.decide`.

The synthetic population mixes France (metropolitan, Réunion/Mayotte with two zones), the
US (DC, Florida) and the UK, with consents, withdrawn consents, opt-outs, opposition-list
hits, refusals and attempt histories; "now" moves across a working day, an evening and a
weekend, like a dialer that decides at many instants.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from voicecast.compliance.gate import (
    CampaignRules,
    ConsentView,
    ContactFacts,
    NumberProfile,
    decide,
    profile_of,
)
from voicecast.compliance.packs import build_packs
from voicecast.compliance.types import Audience, Purpose, Verdict

PROFILES = [
    NumberProfile("+33199000000", "FR", ("Europe/Paris",), None),
    NumberProfile("+33261910000", "FR", ("Europe/Paris",), None),
    NumberProfile("+262692000000", "RE", ("Indian/Mayotte", "Indian/Reunion"), None),
    NumberProfile("+12025550100", "US", ("America/New_York",), "DC"),
    NumberProfile("+13055550100", "US", ("America/New_York",), "FL"),
    NumberProfile("+442079460000", "GB", ("Europe/London",), None),
]


def population(n: int, seed: int = 7) -> list[ContactFacts]:
    """``n`` synthetic callees (fictional numbers, shared profiles)."""
    rnd = random.Random(seed)
    base = datetime(2026, 11, 2, 9, tzinfo=UTC)
    granted = ConsentView(True, base - timedelta(days=40), "form", "proof")
    withdrawn = ConsentView(False, base - timedelta(days=3), "form", "proof")
    out: list[ContactFacts] = []
    for _ in range(n):
        r = rnd.random()
        attempts = tuple(
            base - timedelta(days=rnd.randint(0, 29), hours=rnd.randint(0, 23))
            for _ in range(rnd.choice((0, 0, 0, 1, 2, 4)))
        )
        out.append(
            ContactFacts(
                profile=rnd.choice(PROFILES),
                subdivision=rnd.choice((None, None, "75", "57")),
                professional=r < 0.1,
                consent=granted if r < 0.8 else (withdrawn if r < 0.85 else None),
                opted_out=rnd.random() < 0.02,
                on_national_list=rnd.random() < 0.05,
                last_refusal=base - timedelta(days=rnd.randint(1, 90))
                if rnd.random() < 0.03
                else None,
                attempts=tuple(sorted(attempts)),
                last_machine_at=None,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    args = parser.parse_args()
    packs = build_packs()
    rules = CampaignRules(Purpose.MARKETING, Audience.B2C)
    instants = [
        datetime(2026, 11, 4, 10, 30, tzinfo=UTC),  # Wednesday, open in Paris
        datetime(2026, 11, 4, 19, 30, tzinfo=UTC),  # Wednesday evening
        datetime(2026, 11, 7, 15, 0, tzinfo=UTC),  # Saturday
    ]

    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    people = population(args.contacts)
    build_s = time.perf_counter() - t0
    facts_bytes, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    for i, facts in enumerate(people):
        d = decide(facts, rules, packs, instants[i % 3])
        counts[d.verdict.value] = counts.get(d.verdict.value, 0) + 1
    elapsed = time.perf_counter() - t0
    rate = len(people) / elapsed

    # number -> profile (phonenumbers) on distinct numbers: done once per number, cached
    distinct = [f"+331990{i:05d}" for i in range(20_000)]
    profile_of.cache_clear()
    t0 = time.perf_counter()
    for n in distinct:
        profile_of(n)
    profile_rate = len(distinct) / (time.perf_counter() - t0)

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"contacts:                      {len(people):,}")
    print(
        f"decide():                      {rate:,.0f} decisions/s on one core "
        f"({elapsed:.2f} s; target >= 100,000/s: ratio {rate / 100_000:.2f})"
    )
    print(
        "verdicts:                      "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
    )
    print(
        f"facts in memory:               {facts_bytes / len(people):,.0f} bytes/contact "
        f"({facts_bytes / 2**20:,.0f} MiB; built in {build_s:.1f} s)"
    )
    print(f"number profile (phonenumbers): {profile_rate:,.0f} numbers/s, uncached")
    print(f"peak RSS:                      {rss_mb:,.0f} MiB")
    assert counts.get(Verdict.ALLOW.value, 0) > 0


if __name__ == "__main__":
    main()
