"""The kinds of journal entries and what their ``data`` holds.

Data never holds a phone number, a name or any other contact field: people are named by
the entry's ``subject`` (the keyed hash of their number) only. Instants in data are UTC ISO
8601 strings; durations are seconds.
"""

from __future__ import annotations

GATE_DECISION = "gate.decision"
"""The compliance gate's verdict on one contact before a call. Data: ``campaign``,
``verdict`` (allow | defer | block), ``reason``, ``rule_source``, ``until`` (defer)."""

CALL_ATTEMPT = "call.attempt"
"""One finished call attempt. Data: ``campaign``, ``attempt_id``, ``attempt_no``,
``caller_id``, ``outcome``, ``hangup_cause`` (Q.850), ``amd_status``, ``started_at``,
``answered_at``, ``ended_at``, ``error``."""

MESSAGE_DROPPED = "message.dropped"
"""A message played to a person or left on an answering machine. Data: ``campaign``,
``attempt_id``, ``audio`` (name), ``audio_sha256``, ``caller_id``, ``delivered_to``
(human | machine), ``played_at``, ``legal_basis`` (consent reference or the B2B /
informational basis), ``purpose``, ``sender``."""

OPTOUT_RECORDED = "optout.recorded"
"""A number added to the company opt-out list. Data: ``source``, ``campaign``."""

CONSENT_RECORDED = "consent.recorded"
"""One consent given or withdrawn. Data: ``purpose``, ``status``, ``recorded_at``,
``source``, ``proof_ref``."""

CONSENTS_IMPORTED = "consents.imported"
"""A consent file imported. Data: ``batch``, ``file_sha256``, ``rows``, ``rejected``."""

CONTACTS_IMPORTED = "contacts.imported"
"""A contact file imported into a list. Data: ``list``, ``file_sha256``, ``imported``,
``rejected``, ``columns_kept``, ``columns_dropped``."""

OPPOSITION_IMPORTED = "opposition.imported"
"""A national opposition list (Bloctel, US DNC, TPS) imported. Data: ``list``,
``list_date``, ``entries``, ``file_sha256``."""

REFUSAL_RECORDED = "refusal.recorded"
"""A person refused (60-day rule, Code conso D223-9). Data: ``campaign``, ``source``."""

CAMPAIGN_CHANGED = "campaign.changed"
"""A campaign created, started, paused, resumed, stopped or completed. Data: ``campaign``,
``action``, ``status``."""

SUBJECT_EXPORTED = "subject.exported"
"""An access request (GDPR art. 15) answered. Data: ``records`` (count per kind)."""

SUBJECT_ERASED = "subject.erased"
"""An erasure (GDPR art. 17). Data: ``removed`` (count per kind), ``files``."""

SUBJECT_RECTIFIED = "subject.rectified"
"""A rectification (GDPR art. 16). Data: ``fields`` (names only), ``contacts``."""

RETENTION_PURGED = "retention.purged"
"""The retention job's work. Data: per kind ``{"cutoff", "count"}``."""

JOURNAL_PURGED = "journal.purged"
"""Journal entries past retention removed. Data: ``through_seq``, ``through_hash``,
``count``, ``cutoff``."""

WEB_ACTION = "web.action"
"""A console or API request that changed data. Data: ``method``, ``route``, ``target``
(the route's parameters), ``status``."""

USER_CHANGED = "user.changed"
"""A console account or API token created, changed or removed. Data: ``user``,
``action``."""
