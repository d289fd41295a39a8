"""Reads what the gate needs about callees from the database, in batches.

The only I/O half of the gate: :func:`load_facts` turns rows of (number, contact fields)
into :class:`~voicecast.compliance.gate.ContactFacts` with a fixed number of queries per
batch (consent ledger, opt-outs, national lists, refusals, stored attempts).
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from voicecast.compliance.consent import consent_states
from voicecast.compliance.gate import ConsentView, ContactFacts, profile_of
from voicecast.compliance.packs import PackSet, department_zone
from voicecast.compliance.suppression import last_refusals, opposition_hits, opted_out
from voicecast.compliance.types import Purpose
from voicecast.compliance.zones import french_department_from_fields
from voicecast.storage.models import CallAttempt

CHUNK = 500
ATTEMPT_LOOKBACK = timedelta(days=31)  # longest cap period (30 days) plus a margin
MACHINE_LOOKBACK = timedelta(hours=24)

PROFESSIONAL_KEYS = frozenset(
    {
        # the contact importer's canonical field, and the headers it maps to it
        "professional",
        "professionnel",
        "pro",
        "b2b",
        "is professional",
        "type de client",
        "type client",
        "customer type",
        "client type",
    }
)
PROFESSIONAL_VALUES = frozenset(
    {
        "yes",
        "oui",
        "true",
        "1",
        "x",
        "y",
        "o",
        "pro",
        "professional",
        "professionnel",
        "professionnelle",
        "b2b",
        "business",
        "company",
        "entreprise",
        "societe",
    }
)


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def is_professional(fields: Mapping[str, Any]) -> bool:
    """True when the contact's imported fields mark it professional (B2B).

    Recognised columns (case and accents ignored): ``professional`` (the importer's field),
    ``pro``, ``b2b``, ``type de client``, ``customer type``; recognised values: yes/oui/
    true/1/x, ``pro``, ``professional``, ``b2b``, ``business``, ``entreprise``... Generic
    columns such as ``type`` or ``segment`` are not read: a consumer wrongly marked
    professional would lose the consent requirement.
    """
    for key, value in fields.items():
        if _fold(str(key)) in PROFESSIONAL_KEYS and _fold(str(value)) in PROFESSIONAL_VALUES:
            return True
    return False


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def attempt_history(
    session: Session, numbers: Sequence[str], now: datetime
) -> tuple[dict[str, list[datetime]], dict[str, datetime]]:
    """Stored attempts to ``numbers`` by every campaign in the last 31 days up to ``now``.

    Returns (number -> ascending attempt start instants (UTC), number -> when a machine last
    answered in the last 24 h). An attempt that was never sent to the PBX does not count.
    """
    starts: dict[str, list[datetime]] = defaultdict(list)
    machines: dict[str, datetime] = {}
    for chunk in _chunks(numbers):
        rows = session.execute(
            select(CallAttempt.number, CallAttempt.created_at)
            .where(
                CallAttempt.number.in_(chunk),
                CallAttempt.created_at > now - ATTEMPT_LOOKBACK,
                CallAttempt.created_at <= now,
                or_(CallAttempt.originate_sent_at.is_not(None), CallAttempt.state != "ended"),
            )
            .order_by(CallAttempt.created_at)
        )
        for number, created in rows:
            starts[number].append(created)
        for number, last in session.execute(
            select(CallAttempt.number, func.max(CallAttempt.ended_at))
            .where(
                CallAttempt.number.in_(chunk),
                CallAttempt.outcome == "machine",
                CallAttempt.ended_at > now - MACHINE_LOOKBACK,
                CallAttempt.ended_at <= now,
            )
            .group_by(CallAttempt.number)
        ):
            if last is not None:
                machines[number] = last
    return starts, machines


def load_facts(
    session: Session,
    key: bytes,
    packs: PackSet,
    contacts: Sequence[tuple[str, Mapping[str, Any]]],
    purpose: Purpose,
    now: datetime,
) -> list[ContactFacts]:
    """The gate's facts for each (E.164 number, contact fields) row, in the same order.

    Args:
        key: the keyed-hash key of opt-out and opposition lists.
        purpose: the campaign's purpose (selects the consent ledger's purpose).
        now: the instant of the decision (aware); consents recorded after it are ignored.
    """
    # a malformed number is blocked by the gate (no region); never look it up
    numbers = sorted({n for n, _ in contacts if profile_of(n).region})
    consents = consent_states(session, numbers, purpose.value, now)
    opted = opted_out(session, key, numbers)
    refusals = last_refusals(session, key, numbers)
    by_list: dict[str, list[str]] = defaultdict(list)
    for n in numbers:
        pack = packs.for_region(profile_of(n).region)
        if pack.national_list:
            by_list[pack.national_list].append(n)
    listed: set[str] = set()
    for name, members in by_list.items():
        listed |= opposition_hits(session, key, name, members)
    starts, machines = attempt_history(session, numbers, now)
    out: list[ContactFacts] = []
    for number, fields in contacts:
        profile = profile_of(number)  # no region unless strict E.164: blocked as invalid
        state = consents.get(number)
        consent = (
            ConsentView(
                granted=state.status == "granted",
                recorded_at=state.recorded_at,
                source=state.source,
                proof_ref=state.proof_ref,
                consent_id=state.id,
                batch=state.batch,
                wording_version=state.wording_version,
            )
            if state is not None
            else None
        )
        subdivision = (
            french_department_from_fields(dict(fields))
            if packs.for_region(profile.region) is packs.fr
            else None
        )
        zone = department_zone(subdivision)
        out.append(
            ContactFacts(
                profile=profile,
                subdivision=subdivision,
                extra_zones=(zone,) if zone and zone not in profile.zones else (),
                professional=is_professional(fields),
                consent=consent,
                opted_out=number in opted,
                on_national_list=number in listed,
                last_refusal=refusals.get(number),
                attempts=tuple(starts.get(number, ())),
                last_machine_at=machines.get(number),
            )
        )
    return out
