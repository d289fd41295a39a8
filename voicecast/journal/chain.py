"""The journal's hash chain: canonical encoding, entry hashes and chain verification.

Pure functions, no database: :mod:`voicecast.journal.store` feeds them rows, and an auditor
can re-implement them from this description alone.

**Entry hash.** ``hash = SHA-256(canonical JSON of {"seq", "at", "kind", "actor",
"subject", "data", "prev"})`` in lowercase hex, where ``at`` is the UTC instant written
``YYYY-MM-DDTHH:MM:SS.ffffffZ``, ``data`` is the entry's data *as decoded JSON*, ``prev``
is the previous entry's hash (64 zeros for the first entry ever) and canonical JSON is
RFC 8785-style: keys sorted, no spaces (``","`` and ``":"``), UTF-8, non-ASCII characters
as themselves. Any edit of a field, a deleted entry, reordered entries or a truncated tail
changes or breaks the chain; :func:`verify_chain` names the first entry where it breaks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
"""``prev_hash`` of the very first entry."""


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON text: keys sorted, no whitespace, non-ASCII kept.

    Raises:
        TypeError: ``value`` holds something JSON cannot encode (datetime, bytes...).
        ValueError: ``value`` holds NaN or an infinity (not JSON).
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def format_instant(at: datetime) -> str:
    """``at`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (the form that is hashed).

    Raises:
        ValueError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("journal instants must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    *,
    seq: int,
    at: datetime,
    kind: str,
    actor: str,
    subject: str | None,
    data: str,
    prev_hash: str,
) -> str:
    """SHA-256 hex of one entry (see the module docstring for the exact encoding).

    Args:
        data: the stored canonical JSON text of the entry's data.

    Raises:
        ValueError: ``data`` is not JSON, or ``at`` is naive.
    """
    document = {
        "seq": seq,
        "at": format_instant(at),
        "kind": kind,
        "actor": actor,
        "subject": subject,
        "data": json.loads(data),
        "prev": prev_hash,
    }
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainEntry:
    """The fields of one stored entry, as read back (see
    :class:`voicecast.storage.models.JournalEntry`)."""

    seq: int
    at: datetime
    kind: str
    actor: str
    subject: str | None
    data: str
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        """The hash this entry's content should have (raises nothing: bad JSON gives "")."""
        try:
            return entry_hash(
                seq=self.seq,
                at=self.at,
                kind=self.kind,
                actor=self.actor,
                subject=self.subject,
                data=self.data,
                prev_hash=self.prev_hash,
            )
        except (ValueError, TypeError):
            return ""


@dataclass
class ChainReport:
    """What :func:`verify_chain` found.

    ``checked``: entries read; ``first_seq``/``last_seq``: the range read (None when empty);
    ``problems``: ``(seq, text)`` in chain order, the first one being where the chain
    first breaks; ``ok``: no problem.
    """

    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_seq: int | None = None
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the whole chain checked out."""
        return not self.problems

    def first_problem(self) -> str | None:
        """``"entry N: ..."`` for the first break, None when the chain is intact."""
        if not self.problems:
            return None
        seq, text = self.problems[0]
        return f"entry {seq}: {text}"


def verify_chain(
    entries: Iterable[ChainEntry],
    *,
    anchor_seq: int = 0,
    anchor_hash: str = GENESIS,
    head_seq: int | None = None,
    head_hash: str | None = None,
    max_problems: int = 100,
) -> ChainReport:
    """Check a run of entries, read in ``seq`` order, against the chain rules.

    Rules: the first entry is ``anchor_seq + 1`` and its ``prev_hash`` is ``anchor_hash``
    (after a retention purge the anchor is the last purged entry; before any, 0 and
    :data:`GENESIS`); each next entry has the next ``seq`` and carries the previous entry's
    stored hash; each entry's stored hash equals its recomputed hash; the last entry is the
    head (``head_seq``/``head_hash`` when given), so a truncated tail is caught.

    Each problem is reported once, against the entry where it shows: an edited entry
    (content does not match its hash), a missing one (gap in ``seq``: reported on the
    first missing number), a reordered or re-linked one (``prev_hash`` differs from the
    previous entry's hash), and entries missing after the last one.

    Args:
        entries: in ascending ``seq`` order (a database ``ORDER BY seq``).
        max_problems: stop collecting after this many (the first one matters most).

    Returns:
        A :class:`ChainReport`.
    """
    report = ChainReport(head_seq=head_seq)
    expected_seq = anchor_seq + 1
    expected_prev = anchor_hash
    last_hash = anchor_hash

    def problem(seq: int, text: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append((seq, text))

    for entry in entries:
        report.checked += 1
        if report.first_seq is None:
            report.first_seq = entry.seq
        report.last_seq = entry.seq
        if entry.seq > expected_seq:
            gap = (
                f"entries {expected_seq}-{entry.seq - 1}"
                if entry.seq - 1 > expected_seq
                else f"entry {expected_seq}"
            )
            problem(expected_seq, f"missing ({gap} deleted: the chain jumps to {entry.seq})")
        elif entry.seq < expected_seq:
            problem(entry.seq, f"out of order (after entry {expected_seq - 1})")
        # after a gap the broken link is already reported as missing entries
        if entry.seq == expected_seq and entry.prev_hash != expected_prev:
            problem(
                entry.seq,
                "does not follow the entry before it (its previous-entry hash differs: "
                "an entry was replaced, reordered or deleted)",
            )
        if entry.computed_hash() != entry.hash:
            problem(entry.seq, f"altered: its content does not match its hash ({entry.kind})")
        expected_seq = entry.seq + 1
        expected_prev = entry.hash
        last_hash = entry.hash
    if head_seq is not None:
        last = expected_seq - 1
        if head_seq > last:
            gap = f"entries {last + 1}-{head_seq}" if head_seq > last + 1 else f"entry {head_seq}"
            problem(
                last + 1,
                f"missing ({gap} deleted from the end: the chain head is entry {head_seq})",
            )
        elif head_seq < last:
            problem(
                head_seq + 1, f"beyond the chain head (entry {head_seq}): added outside voicecast"
            )
        elif head_hash is not None and head_hash != last_hash:
            problem(last, "does not match the chain head's hash")
    return report
