"""SQLAlchemy 2 typed models.

All timestamps are stored in UTC (:class:`UTCDateTime` refuses naive datetimes on write and
returns aware ones on read). Phone numbers are E.164 strings (``+33199000010``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime column that only ever holds UTC.

    Raises:
        ValueError: on write of a naive datetime (its zone would be a guess).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every voicecast table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class ContactList(Base):
    """A named list of contacts (one import target)."""

    __tablename__ = "contact_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    contacts: Mapped[list[Contact]] = relationship(back_populates="contact_list")


class Contact(Base):
    """One callee of a list: an E.164 number and the fields the user mapped at import."""

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("list_id", "phone_e164", name="uq_contact_list_phone"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("contact_lists.id", ondelete="CASCADE"))
    phone_e164: Mapped[str] = mapped_column(String(16), index=True)
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source_line: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    contact_list: Mapped[ContactList] = relationship(back_populates="contacts")


class AudioMessage(Base):
    """A message converted for Asterisk (8 kHz mono 16-bit WAV) kept in the audio store."""

    __tablename__ = "audio_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    file_name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    duration_ms: Mapped[int] = mapped_column(Integer)
    source_name: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Campaign(Base):
    """A broadcast of one message to one contact list, with its pacing and retry policy.

    ``status``: ``draft`` -> ``running`` -> ``completed`` (or ``paused`` / ``stopped``).
    Units: ``cps`` calls started per second; ``ring_timeout``, ``retry_delay`` seconds.
    """

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("contact_lists.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("audio_messages.id"))
    voicemail_message_id: Mapped[int | None] = mapped_column(ForeignKey("audio_messages.id"))
    caller_id: Mapped[str] = mapped_column(String(16))
    max_channels: Mapped[int] = mapped_column(Integer)
    cps: Mapped[float] = mapped_column(Float)
    ring_timeout: Mapped[float] = mapped_column(Float)
    retries: Mapped[int] = mapped_column(Integer)
    retry_delay: Mapped[float] = mapped_column(Float)
    retry_outcomes: Mapped[list[Any]] = mapped_column(default=list)
    amd: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="draft", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # Compliance declaration (migration 0002); see voicecast.compliance.
    purpose: Mapped[str | None] = mapped_column(String(20))
    audience: Mapped[str | None] = mapped_column(String(10))
    sender_name: Mapped[str | None] = mapped_column(String(200))
    on_behalf_of: Mapped[str | None] = mapped_column(String(200))
    optout_key: Mapped[str | None] = mapped_column(String(1))
    callback_number: Mapped[str | None] = mapped_column(String(16))
    legal_basis: Mapped[str | None] = mapped_column(String(40))
    hours: Mapped[str | None] = mapped_column(String(200))
    max_attempts_30d: Mapped[int | None] = mapped_column(Integer)
    starts_at: Mapped[datetime | None] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column()
    status_reason: Mapped[str | None] = mapped_column(Text)
    # Call flows (migration 0004): the scenario document (None = message then opt-out
    # announcement), who gets the message, and a text message spoken by local TTS.
    scenario: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    deliver_to: Mapped[str] = mapped_column(String(10), default="both", server_default="both")
    message_text: Mapped[str | None] = mapped_column(Text)
    tts_voice: Mapped[str | None] = mapped_column(String(200))
    tts_speed: Mapped[int | None] = mapped_column(Integer)

    contact_list: Mapped[ContactList] = relationship()
    message: Mapped[AudioMessage | None] = relationship(foreign_keys=[message_id])
    voicemail_message: Mapped[AudioMessage | None] = relationship(
        foreign_keys=[voicemail_message_id]
    )


class CampaignContact(Base):
    """One contact's progress through one campaign.

    ``state``: ``pending`` (waiting for ``next_attempt_at``, UTC), ``dialing`` (an attempt is
    in flight), ``done`` (``outcome`` is final).
    """

    __tablename__ = "campaign_contacts"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id", name="uq_campaign_contact"),
        Index("ix_campaign_contacts_due", "campaign_id", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    phone_e164: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str | None] = mapped_column(String(30))
    last_attempt_id: Mapped[str | None] = mapped_column(String(36))
    # The compliance gate's latest decision for this contact (migration 0002).
    gate_verdict: Mapped[str | None] = mapped_column(String(10))
    gate_reason: Mapped[str | None] = mapped_column(String(40))
    gate_source: Mapped[str | None] = mapped_column(String(200))
    gate_detail: Mapped[str | None] = mapped_column(Text)
    gate_at: Mapped[datetime | None] = mapped_column()

    contact: Mapped[Contact] = relationship()


class CallAttempt(Base):
    """One dial: created (and committed) before its Originate is sent.

    ``id`` is sent to Asterisk as the Originate ``ChannelId`` (the channel's Uniqueid), so
    every AMI event and FastAGI request of the call names it. ``state``: ``originating`` ->
    ``answered`` -> ``ended``; ``outcome`` is set when ``ended``. ``hangup_cause`` is the
    Q.850 cause; ``originate_reason`` the OriginateResponse Reason code.
    """

    __tablename__ = "call_attempts"
    __table_args__ = (
        Index("ix_call_attempts_state", "state"),
        # frequency caps count the attempts to one number across campaigns (migration 0002)
        Index("ix_call_attempts_number_created", "number", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    campaign_contact_id: Mapped[int] = mapped_column(
        ForeignKey("campaign_contacts.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[str] = mapped_column(String(16))
    attempt_no: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default="originating")
    controller: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    originate_sent_at: Mapped[datetime | None] = mapped_column()
    answered_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str | None] = mapped_column(String(30))
    originate_reason: Mapped[int | None] = mapped_column(Integer)
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    hangup_cause_text: Mapped[str | None] = mapped_column(String(100))
    amd_status: Mapped[str | None] = mapped_column(String(20))
    amd_cause: Mapped[str | None] = mapped_column(String(60))
    played: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    # Migration 0004: each scenario node's result, and the scenario's set_result value.
    steps: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    result: Mapped[str | None] = mapped_column(String(60))
    # Migration 0007: the PBX node and trunk it was placed on (scale-out: node capacity and
    # trunk CPS are counted across controllers; recovery lists the channels of that node).
    pbx_node: Mapped[str | None] = mapped_column(String(40))
    trunk: Mapped[str | None] = mapped_column(String(40))


class ControllerLease(Base):
    """The controller processes that dial for this database: one row each, renewed every
    second or so (``heartbeat_at``, UTC).

    On SQLite exactly one controller dials (row id 1, taken over once its ``heartbeat_at``
    is older than the timeout or its process is gone on this host). On PostgreSQL several
    controllers dial side by side, one row per ``holder``; the attempts of a controller
    whose lease expired are closed by the others (never re-sent).
    """

    __tablename__ = "controller_lease"

    id: Mapped[int] = mapped_column(primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime] = mapped_column()


class PacingSlot(Base):
    """The next instant (UTC) a call may start under one rate limit, shared by every
    controller (migration 0007). ``key``: ``campaign:<id>`` (the campaign's ``cps``) or
    ``trunk:<node>/<trunk>`` (the carrier trunk's ``cps``). A dial reserves the earliest
    instant all its limits allow and moves each ``next_at`` one interval (``1/cps``
    seconds) past it, in the transaction that writes its attempt (rows locked
    ``FOR UPDATE``)."""

    __tablename__ = "pacing_slots"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    next_at: Mapped[datetime] = mapped_column()


# --------------------------------------------------------------------------- compliance stores
# Migration 0002. Services: voicecast.compliance.consent / .suppression.


class Consent(Base):
    """One entry of the consent ledger (append-only: rows are never updated).

    The state of (``phone_e164``, ``purpose``) at an instant is the latest row whose
    ``recorded_at`` is at or before that instant (ties: ``withdrawn`` wins).

    ``purpose``: ``marketing`` | ``informational``; ``status``: ``granted`` | ``withdrawn``;
    ``recorded_at`` (UTC): when the person gave or withdrew it; ``source``: how it was
    collected (short token: ``form``, ``contract``, ``recording``, ``web``, ``import``...);
    ``proof_ref``: where the proof is (document id, recording file, URL); ``imported_at``
    (UTC): when voicecast stored it; ``batch``: the import it came with.
    """

    __tablename__ = "consents"
    __table_args__ = (
        Index("ix_consents_phone_purpose_recorded", "phone_e164", "purpose", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    phone_e164: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10))
    recorded_at: Mapped[datetime] = mapped_column()
    source: Mapped[str] = mapped_column(String(40))
    proof_ref: Mapped[str] = mapped_column(String(500))
    wording_version: Mapped[str | None] = mapped_column(String(100))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    batch: Mapped[str | None] = mapped_column(String(64))


class OptOut(Base):
    """A number that asked this organisation not to be called again (the company list).

    Stored as the keyed hash of its E.164 form (:func:`voicecast.compliance.keys.number_hash`);
    the plain number is not kept. ``recorded_at`` (UTC): the earliest request; ``source``:
    ``key-press`` | ``call-back`` | ``cli`` | ``import`` | ``api``.
    """

    __tablename__ = "opt_outs"

    number_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column()
    source: Mapped[str] = mapped_column(String(40))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(String(200))


class OppositionList(Base):
    """The stored version of a national opposition list (one row per list name).

    ``name``: ``bloctel`` (FR, Code conso L223-1) | ``us-dnc`` (US, 47 CFR 64.1200(c)(2)) |
    ``tps`` (GB, PECR reg. 21); ``list_date`` (UTC): date of that version of the list;
    ``entries``: distinct numbers stored; ``invalid_lines``: lines of the file that held no
    valid number; ``sha256``: of the imported file.
    """

    __tablename__ = "opposition_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)
    country: Mapped[str] = mapped_column(String(2))
    list_date: Mapped[datetime] = mapped_column(default=utcnow)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    entries: Mapped[int] = mapped_column(Integer)
    invalid_lines: Mapped[int] = mapped_column(Integer)
    source_file: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))


class OppositionEntry(Base):
    """One number of a national opposition list, as its keyed hash (CNIL guidance).

    SQLite stores it WITHOUT ROWID: the primary key is the only copy of the row.
    """

    __tablename__ = "opposition_entries"
    __table_args__ = (
        Index("ix_opposition_entries_number_hash", "number_hash"),
        {"sqlite_with_rowid": False},
    )

    list_id: Mapped[int] = mapped_column(
        ForeignKey("opposition_lists.id", ondelete="CASCADE"), primary_key=True
    )
    number_hash: Mapped[str] = mapped_column(String(64), primary_key=True)


class Refusal(Base):
    """A callee declined an offer (keyed hash of the number; ``refused_at`` UTC).

    France: no call or attempt for 60 days after it (Code de la consommation D223-9).
    """

    __tablename__ = "refusals"

    id: Mapped[int] = mapped_column(primary_key=True)
    number_hash: Mapped[str] = mapped_column(String(64), index=True)
    refused_at: Mapped[datetime] = mapped_column()
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(40))


class HashKeyCheck(Base):
    """Fingerprint of the key the stored opt-outs, opposition lists and refusals are hashed
    with (migration 0003; one row, id 1).

    ``fingerprint``: :func:`voicecast.compliance.keys.key_fingerprint` (HMAC-SHA256 of a
    fixed text under the key, hex), never the key itself; ``created_at`` (UTC): when it was
    stored. :func:`voicecast.compliance.suppression.load_store_key` refuses another key.
    """

    __tablename__ = "hash_key_check"
    __table_args__ = (CheckConstraint("id = 1", name="ck_hash_key_check_one_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GateDecision(Base):
    """One decision of the compliance gate for one dial (audit trail).

    ``verdict``: ``allow`` | ``defer`` | ``block``; ``reason``: a
    :class:`voicecast.compliance.types.Reason`; ``rule_source``: the legal source;
    ``decided_at``, ``until`` (UTC; ``until`` for ``defer``); ``attempt_id``: the
    :class:`CallAttempt` it allowed, if any.
    """

    __tablename__ = "gate_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    campaign_contact_id: Mapped[int] = mapped_column(
        ForeignKey("campaign_contacts.id", ondelete="CASCADE"), index=True
    )
    decided_at: Mapped[datetime] = mapped_column()
    verdict: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(40))
    rule_source: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text)
    until: Mapped[datetime | None] = mapped_column()
    attempt_id: Mapped[str | None] = mapped_column(String(36))


# --------------------------------------------------------------------------- call flows
# Migration 0004.


class Recording(Base):
    """A callee's reply captured by a scenario ``record`` node.

    ``path``: the WAV file as the PBX wrote it (host path); ``delete_after`` (UTC): when the
    retention of the node ends and the file is deleted; ``deleted_at`` (UTC): when the file
    was deleted. The row stays as the trace of the purge (it holds no voice and no number)
    until its call attempt's contact is deleted or the number is erased.
    """

    __tablename__ = "recordings"
    __table_args__ = (Index("ix_recordings_delete_after", "delete_after"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("call_attempts.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    node: Mapped[str] = mapped_column(String(40))
    path: Mapped[str] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delete_after: Mapped[datetime] = mapped_column()
    deleted_at: Mapped[datetime | None] = mapped_column()


class InboundCall(Base):
    """A call to one of the campaigns' caller IDs (the call-back opt-out line).

    ``called``: our number (E.164); ``caller``: the caller's number in E.164, None when
    withheld or unusable; ``campaign_id``: the last campaign that called that number, as
    announced to the caller; ``action``: ``identified`` (heard who called, did not opt
    out), ``opted_out`` (pressed the key), ``auto_opted_out`` (no recent campaign: opted out
    by calling), ``hidden_number`` (nothing could be done), ``not_ours`` (the number called
    is no campaign's caller ID or call-back number: nothing was done); ``steps``: what was
    played and pressed.
    """

    __tablename__ = "inbound_calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    called: Mapped[str] = mapped_column(String(16))
    caller: Mapped[str | None] = mapped_column(String(16))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(30))
    steps: Mapped[list[Any]] = mapped_column(default=list)


# --------------------------------------------------------------------------- web console
# Migration 0005: accounts, console sessions, API tokens, CRM webhooks.

ROLES: tuple[str, ...] = ("viewer", "supervisor", "admin")
"""Roles in increasing order of rights; each includes the rights of the ones before it."""


class User(Base):
    """A console / API account.

    ``role``: ``admin`` (users, settings, rule packs) | ``supervisor`` (campaigns, lists,
    audio, reports) | ``viewer`` (read only). ``password_hash``: argon2id (PHC string).
    ``totp_secret``: base32 RFC 6238 secret, set at enrolment start; ``totp_enrolled_at``
    (UTC) set once the user proved a code, until then the account must enrol at login.
    ``totp_last_step``: the last accepted 30-second step (a code is never accepted twice).
    ``recovery_codes``: argon2 hashes of the unused one-time recovery codes.
    ``failed_logins`` / ``locked_until`` (UTC): the lockout after repeated failures.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_enrolled_at: Mapped[datetime | None] = mapped_column()
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    recovery_codes: Mapped[list[Any]] = mapped_column(default=list)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'supervisor', 'admin')", name="ck_users_role"),
    )


class WebSession(Base):
    """A console login. The cookie carries a random token; only its SHA-256 is stored here.

    ``stage``: ``mfa`` (password checked, TOTP or recovery code still due), ``enrol``
    (password checked, TOTP enrolment due), ``full`` (logged in). Times in UTC.
    """

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    remote: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(200))


class ApiToken(Base):
    """A per-user REST API token (``Authorization: Bearer vc_...``); carries the user's role.

    Only the SHA-256 of the token is stored; ``prefix`` (its first characters) identifies it
    in listings. ``revoked_at`` (UTC) ends it.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class Webhook(Base):
    """A CRM endpoint that receives events as signed JSON POSTs.

    ``events``: event types it wants (``attempt.completed``, ``optout.created``).
    ``secret``: the HMAC-SHA256 key of the ``X-Voicecast-Signature`` header.
    """

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    events: Mapped[list[Any]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event to deliver to one webhook (the outbox, written in the event's transaction).

    ``status``: ``pending`` (due at ``next_attempt_at``, UTC) | ``delivered`` | ``failed``
    (gave up after the last retry). ``last_status``: the receiver's HTTP status, if any.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()


# --------------------------------------------------------------------------- proof journal
# Migration 0006. Service: voicecast.journal.


class JournalEntry(Base):
    """One entry of the proof journal: append-only and hash-chained.

    ``seq``: 1, 2, 3... without gaps (assigned from :class:`JournalHead`, not a database
    sequence, so a missing number always means a deleted entry); ``at`` (UTC): when it was
    written; ``kind``: what happened (``gate.decision``, ``call.attempt``,
    ``message.dropped``...: :mod:`voicecast.journal.kinds`); ``actor``: who did it
    (``system``, ``user:NAME``, ``cli:UNIXNAME``, ``callee``); ``subject``: the keyed hash
    of the person's E.164 number (:func:`voicecast.compliance.keys.number_hash`), never
    the number; ``data``: canonical JSON text (what is hashed is exactly what is stored);
    ``prev_hash``: ``hash`` of entry ``seq - 1`` (the anchor's for the first one);
    ``hash``: SHA-256 hex of the entry (:func:`voicecast.journal.chain.entry_hash`).

    Database triggers (migration 0006) refuse UPDATE, and DELETE of any entry past the
    purge anchor of :class:`JournalHead`.
    """

    __tablename__ = "journal_entries"
    __table_args__ = (
        Index("ix_journal_subject", "subject"),
        Index("ix_journal_at", "at"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column()
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(120))
    subject: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class JournalHead(Base):
    """The chain head (one row, ``id = 1``): the last entry's ``seq`` and ``hash``, and the
    purge anchor (``anchor_seq``/``anchor_hash``: the last entry removed by retention, 0 and
    the genesis hash before any purge).

    A truncated tail shows as ``seq`` beyond the last entry. Triggers refuse DELETE and
    any UPDATE that lowers ``seq`` or ``anchor_seq``.
    """

    __tablename__ = "journal_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    anchor_seq: Mapped[int] = mapped_column(Integer)
    anchor_hash: Mapped[str] = mapped_column(String(64))
