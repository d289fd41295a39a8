"""The kinds of journal entries and what their ``data`` holds.

Data never holds a phone number, a name or any other contact field: people are named by
the entry's ``subject`` (the keyed hash of their number) only. Instants in data are UTC ISO
8601 strings; durations are seconds.
"""

from __future__ import annotations

import hashlib

GATE_DECISION = "gate.decision"
"""The compliance gate's verdict on one contact before a call (each one the dialer stores in
``gate_decisions``: every allow, and every defer or block that changed). Written by the
dialer, actor ``system``. Data: ``campaign``, ``campaign_id``, ``verdict`` (allow | defer |
block), ``reason``, ``rule_source``, ``detail`` (number scrubbed), ``decided_at`` (the
dialer's clock), ``until`` (defer), ``attempt_id`` (allow), ``legal_basis`` (allow: as in
``message.dropped``)."""

CALL_ATTEMPT = "call.attempt"
"""One finished call attempt (every ``call_attempts`` row, those never sent and those closed
after a controller stopped included). Data: ``campaign``, ``campaign_id``, ``attempt_id``,
``attempt_no``, ``caller_id``, ``outcome``, ``hangup_cause`` (Q.850),
``hangup_cause_text``, ``amd_status``, ``amd_cause``, ``started_at``,
``originate_sent_at``, ``answered_at``, ``ended_at``, ``result`` (the scenario's),
``error`` (number scrubbed)."""

MESSAGE_DROPPED = "message.dropped"
"""A message played to a person or left on an answering machine (one per attempt that
played more than 0 ms). Data: ``campaign``, ``campaign_id``, ``attempt_id``, ``audio``
(library name, or ``tts/tts-<key>`` for a spoken text), ``audio_sha256``, ``played_at``,
``played_ms``, ``completed`` (of the first prompt), ``prompts`` (every prompt heard:
``audio``, ``audio_sha256``, ``at``, ``ms``, ``completed``), ``caller_id``,
``delivered_to`` (human | machine), ``legal_basis`` (``basis``: consent | b2b | the
declared art. 6(1) basis; ``purpose``, ``audience``, ``rule_source``; consent: ``consent``
= ``{id, proof_ref_sha256, source, recorded_at, batch, wording_version}`` of the ledger row the
gate relied on; b2b: ``professional``; declared: ``declared``), ``purpose``, ``sender``,
``on_behalf_of``."""

OPTOUT_RECORDED = "optout.recorded"
"""A number added to the company opt-out list (only when new; one per number of an opt-out
file). Actor ``callee`` for a key press or a call-back. Data: ``source``, ``recorded_at``,
``campaign``, ``campaign_id`` (the note, free text, is not journaled)."""

CONSENT_RECORDED = "consent.recorded"
"""One consent given or withdrawn (a single record; a file is one ``consents.imported``).
Data: ``consent_id`` (ledger row), ``purpose``, ``status``, ``recorded_at``, ``source``,
``proof_ref_sha256`` (the reference is free text: the journal keeps its SHA-256 only),
``wording_version``, ``batch``."""


def proof_digest(proof_ref: str | None) -> str | None:
    """SHA-256 hex of a consent's proof reference (UTF-8), as the journal holds it.

    The reference is free text an operator may have typed a name into, and the journal is
    never erased: it keeps the digest, which still ties each entry to the ledger row (and to
    the document it names) without holding the text (GDPR art. 5(1)(c), 17).
    """
    if not proof_ref:
        return None
    return hashlib.sha256(proof_ref.encode("utf-8")).hexdigest()


CONSENTS_IMPORTED = "consents.imported"
"""A consent file imported (its rows carry ``batch``). Data: ``batch``, ``file_sha256``,
``rows``, ``imported``, ``duplicates``, ``rejected``, ``columns_kept``,
``columns_dropped``."""

CONTACTS_IMPORTED = "contacts.imported"
"""A contact file imported into a list (CLI, console or API). Data: ``list``, ``list_id``,
``file_sha256``, ``rows``, ``imported``, ``updated``, ``duplicates``, ``rejected``,
``columns_kept`` (phone first), ``fields`` (canonical names kept), ``columns_dropped``."""

OPPOSITION_IMPORTED = "opposition.imported"
"""A national opposition list (Bloctel, US DNC, TPS) imported. Data: ``list``, ``country``,
``list_date``, ``entries``, ``lines_read``, ``invalid_lines``, ``replaced_entries``,
``file_sha256``."""

REFUSAL_RECORDED = "refusal.recorded"
"""A person refused (60-day rule, Code conso D223-9). Data: ``campaign``, ``campaign_id``,
``source``, ``refused_at``."""

CAMPAIGN_CHANGED = "campaign.changed"
"""A campaign created, declared, started, paused, resumed, stopped or completed (the
dialer's own pauses and completions too, actor ``system``). Data: ``campaign``,
``campaign_id``, ``action``, ``status``, ``reason`` (status reason), and the declaration:
``purpose``, ``audience``, ``legal_basis``, ``sender``, ``on_behalf_of``, ``caller_id``."""

SUBJECT_EXPORTED = "subject.exported"
"""An access request (GDPR art. 15) answered. Data: ``records`` (count per kind)."""

SUBJECT_ERASED = "subject.erased"
"""An erasure (GDPR art. 17). Data: ``removed`` (count per kind), ``files``, ``opt_out``,
``nothing_held``, ``erased_at`` (the erasure instant, also the opt-out's)."""

SUBJECT_RECTIFIED = "subject.rectified"
"""A rectification (GDPR art. 16). Data: ``fields`` (names only), ``contacts``."""

RETENTION_PURGED = "retention.purged"
"""The retention job's work. Data: per kind ``{"cutoff", "count", "days", ...details}``,
and ``run_at``: ``{"clock"}``, the controller's clock instant of the run (the entry's own
``at`` is always the real write time, like every entry's)."""

JOURNAL_PURGED = "journal.purged"
"""Journal entries past retention removed. Data: ``through_seq``, ``through_hash``,
``count``, ``cutoff``."""

WEB_ACTION = "web.action"
"""A console or API request that changed data, or was refused on a rule (role, state).
Written by :func:`voicecast.web.server.journal_middleware`, the actor ``user:NAME``. Data:
``method``, ``route`` (the route template, ``/api/v1/campaigns/{name}/start``), ``target``
(the route's parameters; one that could be a phone number is left out and named in
``dropped``), ``status`` (HTTP), ``outcome`` (done | refused), ``code`` (the error code of
a refusal: forbidden | conflict), ``channel`` (console | api), ``via`` (session | token),
``token`` (``{"id", "name", "prefix"}`` of the API token used)."""

WEB_LOGIN = "web.login"
"""A console login event (security record, not a data change). Data: ``user`` (an
existing account's name, never a typed unknown name or a password), ``outcome``
(success | locked | logout), ``method`` (success: totp | recovery | enrolment),
``recovery_left`` (after a recovery code), ``until`` (locked: UTC). Failed attempts that do
not lock the account are not journaled (the lockout sums them up)."""

USER_CHANGED = "user.changed"
"""A console account or API token created, changed or removed. Data: ``user``,
``action`` (created | role_changed | disabled | enabled | unlocked | two_factor_reset |
two_factor_enrolled | token_created | token_revoked), ``role`` (created, role_changed),
``previous_role`` (role_changed), ``sessions_ended`` (disabled, two_factor_reset),
``token`` (``{"id", "name", "prefix"}``, token_*)."""


def journal_kinds() -> set[str]:
    """Every kind this module defines (the upper-case string constants)."""
    return {
        value
        for name, value in globals().items()
        if name.isupper() and isinstance(value, str) and "." in value
    }
