"""What the dialer and the services write to the proof journal, and in what shape.

Each helper appends one entry in the caller's transaction (:func:`voicecast.journal.store.append`),
so the entry exists exactly when the fact it records (a gate decision, an attempt, a message
drop, a campaign's status) was committed. People are named by the entry's ``subject`` only
(the keyed hash of their number, :func:`~voicecast.journal.store.subject_of`); the data
never holds their number, name or any contact field: free texts that may quote a number
(attempt errors, gate details) pass through :func:`scrub` first.

Why: the journal is the controller's proof that each call was lawful and what it delivered
(GDPR art. 5(2) and 24, accountability; art. 30 records; CNIL guidance on canvassing: keep
the proof of consent and of opposition checks; Code de la consommation L223-1 / D223-9).
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from voicecast import digests
from voicecast.compliance.gate import CampaignRules, ContactFacts
from voicecast.compliance.types import Decision, Purpose, Verdict
from voicecast.journal import kinds
from voicecast.journal.kinds import proof_digest
from voicecast.journal.store import PendingEntry, append, subject_of
from voicecast.storage.models import AudioMessage, CallAttempt, Campaign, JournalEntry

if TYPE_CHECKING:
    from voicecast.dialer.flow import FlowPlan

SCRUBBED = "<number>"
"""What :func:`scrub` puts in place of the person's number in a free text."""

_DIGIT_RUN_RE = re.compile(r"\+?\d[\d .()/-]{6,}\d")
_MIN_RUN_DIGITS = 8


def subject_or_none(key: bytes, e164: str) -> str | None:
    """:func:`~voicecast.journal.store.subject_of`, or None for a number that is not E.164
    (a malformed contact the gate blocks as ``invalid_number``: no person to name)."""
    try:
        return subject_of(key, e164)
    except ValueError:
        return None


def scrub(text: str | None, number: str) -> str | None:
    """``text`` without the person's number, for journal data.

    Removes ``number`` as written, without its ``+``, its national significant number (so
    ``01 99 00 00 10`` style writings go too, once spaces are ignored) and any other run of
    at least 8 digits (a number written another way). None stays None.
    """
    if text is None:
        return None
    forms = {number, number.lstrip("+")}
    with contextlib.suppress(phonenumbers.NumberParseException):
        parsed = phonenumbers.parse(number, None)
        forms.add(phonenumbers.national_significant_number(parsed))
    for form in sorted((f for f in forms if len(f) >= 4), key=len, reverse=True):
        text = text.replace(form, SCRUBBED)

    def run(match: re.Match[str]) -> str:
        digits = sum(c.isdigit() for c in match.group(0))
        return SCRUBBED if digits >= _MIN_RUN_DIGITS else match.group(0)

    return _DIGIT_RUN_RE.sub(run, text)


# --------------------------------------------------------------------------- legal basis


def legal_basis(rules: CampaignRules, facts: ContactFacts, decision: Decision) -> dict[str, Any]:
    """What made an allowed dial lawful, as the gate saw it (mirrors its ``allow`` branch).

    Returns a JSON-able dict: ``basis`` = ``consent`` (with ``consent``: ledger row ``id``,
    ``proof_ref_sha256`` (:func:`proof_digest`), ``source``, ``recorded_at`` (UTC ISO),
    ``batch``, ``wording_version``),
    ``b2b`` (marketing to a professional without consent; ``professional``: the contact is
    marked so) or the informational campaign's declared GDPR art. 6(1) basis
    (``contract``, ``legitimate_interest``... or ``undeclared``; ``declared`` true); plus
    ``purpose``, ``audience`` and ``rule_source`` (the decision's legal source).
    """
    base: dict[str, Any] = {
        "purpose": rules.purpose.value,
        "audience": rules.audience.value,
        "rule_source": decision.source,
    }
    consent = facts.consent
    if consent is not None and consent.granted:
        return {
            "basis": "consent",
            **base,
            "consent": {
                "id": consent.consent_id,
                "proof_ref_sha256": proof_digest(consent.proof_ref),
                "source": consent.source,
                "recorded_at": consent.recorded_at,
                "batch": consent.batch,
                "wording_version": consent.wording_version,
            },
        }
    if rules.purpose is Purpose.MARKETING:
        return {"basis": "b2b", **base, "professional": facts.professional}
    return {"basis": rules.legal_basis or "undeclared", **base, "declared": True}


def basis_text(basis: Mapping[str, Any] | None) -> str:
    """One line for a human: ``consent: proof P (form, 2025-01-02T..., batch B, #12)``,
    ``B2B: professional contact``, ``contract (declared)``; ``unknown`` for None."""
    if not basis:
        return "unknown"
    kind = str(basis.get("basis") or "unknown")
    if kind == "consent":
        c = dict(basis.get("consent") or {})
        extra = [str(c.get(k)) for k in ("source", "recorded_at") if c.get(k)]
        if c.get("batch"):
            extra.append(f"batch {c['batch']}")
        if c.get("id") is not None:
            extra.append(f"#{c['id']}")
        tail = f" ({', '.join(extra)})" if extra else ""
        proof = c.get("proof_ref") or (
            f"sha256 {str(c['proof_ref_sha256'])[:12]}…" if c.get("proof_ref_sha256") else "?"
        )
        return f"consent: proof {proof}{tail}"
    if kind == "b2b":
        pro = "professional contact" if basis.get("professional") else "not marked professional"
        return f"B2B: {pro}"
    return f"{kind} (declared)"


# --------------------------------------------------------------------------- entries


def gate_decision_entry(
    key: bytes,
    *,
    campaign: str,
    campaign_id: int,
    number: str,
    decision: Decision,
    attempt_id: str | None,
    at: datetime,
    basis: Mapping[str, Any] | None = None,
) -> PendingEntry:
    """The ``gate.decision`` entry of a decision for ``number`` in ``campaign``, to append
    with :func:`~voicecast.journal.store.append_all` (several at once).

    Data: ``campaign``, ``campaign_id``, ``verdict``, ``reason``, ``rule_source``,
    ``detail`` (scrubbed), ``decided_at`` (``at``: the dialer's clock, UTC), ``until``
    (UTC, defer), ``attempt_id`` (allow) and, for an allow, ``legal_basis``
    (:func:`legal_basis`). The entry's own ``at`` is when it is written.
    """
    data: dict[str, Any] = {
        "campaign": campaign,
        "campaign_id": campaign_id,
        "verdict": decision.verdict.value,
        "reason": decision.reason.value,
        "rule_source": decision.source,
        "detail": scrub(decision.detail, number),
        "decided_at": at,
        "until": decision.until,
        "attempt_id": attempt_id,
    }
    if decision.verdict is Verdict.ALLOW:
        data["legal_basis"] = dict(basis) if basis is not None else None
    return PendingEntry(kinds.GATE_DECISION, data, subject_or_none(key, number))


def attempt_data(attempt: CallAttempt, *, campaign: str, caller_id: str) -> dict[str, Any]:
    """The ``call.attempt`` data of a finished attempt row (times UTC; ``error`` scrubbed)."""
    return {
        "campaign": campaign,
        "campaign_id": attempt.campaign_id,
        "attempt_id": attempt.id,
        "attempt_no": attempt.attempt_no,
        "caller_id": caller_id,
        "outcome": attempt.outcome,
        "hangup_cause": attempt.hangup_cause,
        "hangup_cause_text": attempt.hangup_cause_text,
        "amd_status": attempt.amd_status,
        "amd_cause": attempt.amd_cause,
        "started_at": attempt.created_at,
        "originate_sent_at": attempt.originate_sent_at,
        "answered_at": attempt.answered_at,
        "ended_at": attempt.ended_at,
        "result": attempt.result,
        "error": scrub(attempt.error, attempt.number),
    }


def call_attempt(
    session: Session, key: bytes, attempt: CallAttempt, *, campaign: str, caller_id: str
) -> JournalEntry:
    """Journal one finished attempt (``call.attempt``; data: :func:`attempt_data`)."""
    entry = call_attempt_entry(key, attempt, campaign=campaign, caller_id=caller_id)
    return append(session, entry.kind, entry.data, subject=entry.subject, actor=entry.actor)


def call_attempt_entry(
    key: bytes, attempt: CallAttempt, *, campaign: str, caller_id: str
) -> PendingEntry:
    """The ``call.attempt`` entry of a finished attempt (data: :func:`attempt_data`)."""
    return PendingEntry(
        kinds.CALL_ATTEMPT,
        attempt_data(attempt, campaign=campaign, caller_id=caller_id),
        subject_or_none(key, attempt.number),
    )


def message_dropped(session: Session, key: bytes, **what: Any) -> JournalEntry:
    """Journal a message played to a person or left on a machine (``message.dropped``):
    the entry of :func:`message_dropped_entry` (same keyword arguments), appended now."""
    entry = message_dropped_entry(key, **what)
    return append(session, entry.kind, entry.data, subject=entry.subject, actor=entry.actor)


def message_dropped_entry(
    key: bytes,
    *,
    number: str,
    campaign: str,
    campaign_id: int,
    attempt_id: str,
    caller_id: str,
    delivered_to: str,
    prompts: Sequence[Mapping[str, Any]],
    basis: Mapping[str, Any] | None,
    purpose: str | None,
    sender: str | None,
    on_behalf_of: str | None,
) -> PendingEntry:
    """The ``message.dropped`` entry of a message played to a person or left on a machine.

    Args:
        prompts: what was played, in order (:func:`played_prompts`); the first one is the
            entry's ``audio`` / ``audio_sha256`` / ``played_at``.
        basis: the allowing decision's :func:`legal_basis`.
        delivered_to: ``human`` or ``machine``.
    """
    first = prompts[0] if prompts else {}
    data = {
        "campaign": campaign,
        "campaign_id": campaign_id,
        "attempt_id": attempt_id,
        "audio": first.get("audio"),
        "audio_sha256": first.get("audio_sha256"),
        "played_at": first.get("at"),
        "played_ms": sum(int(p.get("ms") or 0) for p in prompts),
        "completed": bool(first.get("completed")),
        "prompts": [dict(p) for p in prompts],
        "caller_id": caller_id,
        "delivered_to": delivered_to,
        "legal_basis": dict(basis) if basis is not None else None,
        "purpose": purpose,
        "sender": sender,
        "on_behalf_of": on_behalf_of,
    }
    return PendingEntry(kinds.MESSAGE_DROPPED, data, subject_or_none(key, number))


CAMPAIGN_ACTIONS = ("created", "declared", "started", "paused", "resumed", "stopped", "completed")
"""The ``action`` values of ``campaign.changed``."""


def campaign_changed(
    session: Session,
    campaign: Campaign,
    action: str,
    *,
    actor: str | None = None,
) -> JournalEntry:
    """Journal a campaign's lifecycle change (``campaign.changed``).

    Data: ``campaign``, ``campaign_id``, ``action`` (:data:`CAMPAIGN_ACTIONS`), ``status``,
    ``reason`` (the campaign's ``status_reason``), and its declaration (``purpose``,
    ``audience``, ``legal_basis``, ``sender``, ``on_behalf_of``, ``caller_id``), which is
    the legal basis its calls rely on when it is not consent.

    Raises:
        ValueError: unknown ``action``.
    """
    if action not in CAMPAIGN_ACTIONS:
        raise ValueError(f"campaign action {action!r}: expected one of {CAMPAIGN_ACTIONS}")
    if campaign.id is None:
        session.flush()
    data = {
        "campaign": campaign.name,
        "campaign_id": campaign.id,
        "action": action,
        "status": campaign.status,
        "reason": campaign.status_reason,
        "purpose": campaign.purpose,
        "audience": campaign.audience,
        "legal_basis": campaign.legal_basis,
        "sender": campaign.sender_name,
        "on_behalf_of": campaign.on_behalf_of,
        "caller_id": campaign.caller_id,
    }
    return append(session, kinds.CAMPAIGN_CHANGED, data, actor=actor)


# --------------------------------------------------------------------------- audio played


def file_sha256(path: Path) -> str | None:
    """SHA-256 hex of a file's bytes, or None when it cannot be read."""
    try:
        return digests.file_sha256(path)
    except OSError:
        return None


@dataclass
class AudioIndex:
    """Names and SHA-256 of the sounds a campaign plays, by PBX sound path.

    Library audio is known from its :class:`~voicecast.storage.models.AudioMessage` row
    (the SHA-256 of the stored file, which :func:`voicecast.audio.library.publish` checked
    when it copied it for the PBX); texts spoken by local TTS (``<tts_on_pbx>/tts-<key>``)
    are named ``tts/tts-<key>`` and their host file (``<tts_dir>/tts-<key>.wav``) is hashed
    once (at most :attr:`max_files` kept).

    Attributes:
        known: PBX sound path -> (audio name, SHA-256).
        tts_on_pbx, tts_dir: the TTS cache folder as Asterisk sees it and on this host.
    """

    known: dict[str, tuple[str, str]] = field(default_factory=dict)
    tts_on_pbx: str = ""
    tts_dir: Path | None = None
    max_files: int = 4096
    _hashed: OrderedDict[str, str | None] = field(default_factory=OrderedDict)

    @classmethod
    def for_plan(cls, session: Session, campaign: Campaign, plan: FlowPlan) -> AudioIndex:
        """The index of a campaign's :class:`~voicecast.dialer.flow.FlowPlan` (its message,
        voicemail message and every library audio and TTS text of its scenario)."""
        from voicecast.scenarios.model import MESSAGE_AUDIO, VOICEMAIL_AUDIO

        index = cls()
        rows: dict[int, AudioMessage | None] = {}

        def by_id(audio_id: int | None) -> AudioMessage | None:
            if audio_id is None:
                return None
            if audio_id not in rows:
                rows[audio_id] = session.get(AudioMessage, audio_id)
            return rows[audio_id]

        message_id = campaign.message_id
        voicemail_id = campaign.voicemail_message_id or campaign.message_id
        prompts = plan.prompts
        if prompts is not None:
            for name, path in dict(prompts.audio).items():
                if name == MESSAGE_AUDIO:
                    msg = by_id(message_id)
                elif name == VOICEMAIL_AUDIO:
                    msg = by_id(voicemail_id)
                else:
                    msg = session.scalar(select(AudioMessage).where(AudioMessage.name == name))
                if msg is not None:
                    index.known[str(path)] = (msg.name, msg.sha256)
            index.tts_on_pbx = str(prompts.speaker.cache_dir_on_pbx).rstrip("/")
            index.tts_dir = Path(prompts.speaker.cache_dir)
        for path, audio_id in ((plan.message, message_id), (plan.voicemail_message, voicemail_id)):
            msg = by_id(audio_id)
            if path and msg is not None and path not in index.known:
                index.known[path] = (msg.name, msg.sha256)
        return index

    def lookup(self, sound: str) -> tuple[str, str | None]:
        """(audio name, SHA-256 or None) of a PBX sound path; an unknown sound is named by
        its last path part, without a hash."""
        found = self.known.get(sound)
        if found is not None:
            return found
        prefix = self.tts_on_pbx + "/"
        if self.tts_dir is not None and self.tts_on_pbx and sound.startswith(prefix):
            rel = sound[len(prefix) :]
            if rel and "/" not in rel and rel not in (".", ".."):
                if sound not in self._hashed:
                    self._hashed[sound] = file_sha256(self.tts_dir / f"{rel}.wav")
                    while len(self._hashed) > self.max_files:
                        self._hashed.popitem(last=False)
                return f"tts/{rel}", self._hashed[sound]
        return posixpath.basename(sound) or sound, None


def played_prompts(
    played: Sequence[Mapping[str, Any]],
    starts: Sequence[tuple[str, datetime]],
    index: AudioIndex | None,
) -> list[dict[str, Any]]:
    """The prompts actually heard (more than 0 ms played), in order, for
    :func:`message_dropped`: ``audio``, ``audio_sha256``, ``at`` (when its play started,
    UTC, from ``starts``: (sound, instant) in play order), ``ms``, ``completed``.

    Args:
        played: the attempt's play steps (``FlowReport.played``: ``sound``, ``ms``,
            ``completed``, ``missing``).
    """
    pending = list(starts)
    out: list[dict[str, Any]] = []
    for step in played:
        sound = str(step.get("sound") or "")
        at: datetime | None = None
        if not step.get("missing"):
            for i, (started, when) in enumerate(pending):
                if started == sound:
                    at = when
                    del pending[i]
                    break
        ms = int(step.get("ms") or 0)
        if ms <= 0:
            continue
        name, sha = index.lookup(sound) if index is not None else (posixpath.basename(sound), None)
        out.append(
            {
                "audio": name,
                "audio_sha256": sha,
                "at": at,
                "ms": ms,
                "completed": bool(step.get("completed")),
            }
        )
    return out
