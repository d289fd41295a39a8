"""Benchmark: the compliance gate's decisions per second and memory on 1,000,000 contacts.

Run: ``.venv/bin/python bench/gate_throughput.py [--contacts N] [--quick] [--json FILE]``.
Prints figures measured in this one run (no pass/fail: machines are shared and noisy).
Target: >= 100,000 decisions per second on one core for
:func:`voicecast.compliance.gate.decide`. ``--quick``: 20,000 contacts, 2,000 in SQLite.

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
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import machine_info, write_json
from voicecast.campaigns.compliance import GateEnv, check_campaign
from voicecast.compliance.gate import (
    CampaignRules,
    ConsentView,
    ContactFacts,
    NumberProfile,
    decide,
    profile_of,
)
from voicecast.compliance.keys import number_hash
from voicecast.compliance.packs import build_packs
from voicecast.compliance.types import Audience, Purpose, Verdict
from voicecast.config import ComplianceSettings
from voicecast.storage.db import make_engine, migrate, session_factory
from voicecast.storage.models import AudioMessage, Campaign, Consent, Contact, ContactList, OptOut

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


def db_rate(n: int) -> tuple[float, dict[str, object]]:
    """``campaign check`` on ``n`` contacts in a SQLite file: facts read in batches from the
    database (consent ledger, opt-outs, opposition list, attempts) plus decide()."""
    key = b"b" * 32
    now = datetime(2026, 11, 4, 10, 30, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        sessions = session_factory(engine)
        numbers = [f"+331990{i:05d}" if i < 100_000 else f"+332619{i:05d}" for i in range(n)]
        with sessions() as s, s.begin():
            clist = ContactList(name="bench")
            audio = AudioMessage(
                name="m", file_name="m.wav", sha256="0" * 64, duration_ms=1, source_name="m"
            )
            s.add_all([clist, audio])
            s.flush()
            s.execute(
                insert(Contact),
                [{"list_id": clist.id, "phone_e164": p, "fields": {}} for p in numbers],
            )
            s.execute(
                insert(Consent),
                [
                    {
                        "phone_e164": p,
                        "purpose": "marketing",
                        "status": "granted",
                        "recorded_at": now - timedelta(days=5),
                        "source": "form",
                        "proof_ref": "bench",
                        "imported_at": now,
                    }
                    for i, p in enumerate(numbers)
                    if i % 5
                ],
            )
            s.execute(
                insert(OptOut),
                [
                    {"number_hash": number_hash(key, p), "recorded_at": now, "source": "cli"}
                    for p in numbers[::50]
                ],
            )
            campaign = Campaign(
                name="bench", list_id=clist.id, message_id=audio.id, caller_id="+33162000000",
                max_channels=1, cps=1, ring_timeout=30, retries=0, retry_delay=0,
                purpose="marketing", audience="b2c", sender_name="b", on_behalf_of="b",
                optout_key="9",
            )  # fmt: skip
            s.add(campaign)
        env = GateEnv.build(key, ComplianceSettings())
        with sessions() as s:
            campaign = s.query(Campaign).one()
            t0 = time.perf_counter()
            report = check_campaign(s, campaign, env, now)
            elapsed = time.perf_counter() - t0
        engine.dispose()
    return n / elapsed, report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, help="contacts (default 1,000,000)")
    parser.add_argument(
        "--db-contacts", type=int, help="contacts for the database run (default 100,000)"
    )
    parser.add_argument("--quick", action="store_true", help="20,000 contacts, 2,000 in SQLite")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.contacts is None:
        args.contacts = 20_000 if args.quick else 1_000_000
    if args.db_contacts is None:
        args.db_contacts = 2_000 if args.quick else 100_000
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

    db, summary = db_rate(args.db_contacts) if args.db_contacts else (0.0, {})

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
    if args.db_contacts:
        print(
            f"campaign check from SQLite:    {db:,.0f} contacts/s on {args.db_contacts:,} "
            f"contacts (facts read in batches of 500 + decide); "
            f"blocked {summary['blocked']}, would call {summary['would_call_now']:,}"
        )
    print(f"peak RSS:                      {rss_mb:,.0f} MiB")
    assert counts.get(Verdict.ALLOW.value, 0) > 0
    write_json(
        args.json,
        {
            "bench": "gate",
            "machine": machine_info(),
            "contacts": len(people),
            "decisions_per_s": rate,
            "decide_s": elapsed,
            "target_ratio": rate / 100_000,
            "verdicts": counts,
            "bytes_per_contact": facts_bytes / len(people),
            "profile_numbers_per_s": profile_rate,
            "db_contacts": args.db_contacts,
            "db_contacts_per_s": db,
            "peak_rss_mib": rss_mb,
        },
    )


if __name__ == "__main__":
    main()
