"""``voicecast subject proof``: the proof that every call to one number was lawful.

:func:`subject_proof` gathers, for one E.164 number: every contact currently holding it
(list, campaigns, the legal basis each campaign relies on for it, the gate's verdict now),
its consent ledger, opt-out and refusals, and, from the proof journal (entries whose
``subject`` is the number's keyed hash), every message drop (audio, its SHA-256, caller ID,
when, legal basis), gate decision, attempt, opt-out, refusal and consent change, each with
its journal ``seq`` and entry ``hash`` so an auditor finds it in an exported bundle.

Why: the controller must be able to demonstrate that processing is lawful (GDPR art. 5(2),
7(1) for consent); CNIL guidance on canvassing asks for the proof of consent and of the
opposition checks; the Code de la consommation (L223-1, D223-9) and CPCE L34-5 frame the
calls themselves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from voicecast.campaigns.compliance import campaign_rules
from voicecast.compliance.consent import PURPOSES, consent_states
from voicecast.compliance.facts import load_facts
from voicecast.compliance.gate import allowed_basis, decide
from voicecast.compliance.keys import is_e164
from voicecast.compliance.packs import PackSet, build_packs
from voicecast.compliance.suppression import opt_out_record
from voicecast.compliance.types import Verdict
from voicecast.errors import VoicecastError
from voicecast.journal import kinds
from voicecast.journal.chain import ChainEntry
from voicecast.journal.events import basis_text, legal_basis
from voicecast.journal.kinds import proof_digest
from voicecast.journal.store import head, iter_entries, subject_of, verify
from voicecast.storage.models import (
    Campaign,
    CampaignContact,
    Consent,
    Contact,
    ContactList,
    Refusal,
    utcnow,
)

VERIFY_LIMIT = 200_000
"""Longest journal (entries) :func:`subject_proof` verifies by itself (a few seconds);
beyond it the report says to run ``voicecast journal verify``."""

VERIFY_HINT = "voicecast journal verify"

SECTIONS: dict[str, str] = {
    kinds.MESSAGE_DROPPED: "drops",
    kinds.GATE_DECISION: "gate_decisions",
    kinds.CALL_ATTEMPT: "attempts",
    kinds.OPTOUT_RECORDED: "rights",
    kinds.REFUSAL_RECORDED: "rights",
    kinds.CONSENT_RECORDED: "rights",
}
"""Where each kind of the subject's entries goes in the report (others: ``other``)."""


class ProofError(VoicecastError, ValueError):
    """The number given is not E.164."""


def entry_dict(entry: ChainEntry) -> dict[str, Any]:
    """A journal entry as the report shows it: ``seq``, ``hash``, ``at`` (UTC), ``kind``,
    ``actor``, ``data`` (parsed JSON)."""
    try:
        data = json.loads(entry.data)
    except ValueError:
        data = {"unreadable": entry.data}
    return {
        "seq": entry.seq,
        "hash": entry.hash,
        "at": entry.at,
        "kind": entry.kind,
        "actor": entry.actor,
        "data": data,
    }


def _consent_dict(row: Consent) -> dict[str, Any]:
    return {
        "id": row.id,
        "purpose": row.purpose,
        "status": row.status,
        "recorded_at": row.recorded_at,
        "source": row.source,
        "proof_ref": row.proof_ref,
        "wording_version": row.wording_version,
        "batch": row.batch,
        "imported_at": row.imported_at,
        "journal": None,
    }


LEDGER_SAME = "same"
LEDGER_CHANGED = "changed"
LEDGER_GONE = "gone"
"""The ``consent_ledger.state`` values of :func:`consent_ledger_checks`: the ledger row the
journaled legal basis names still holds the reference whose SHA-256 the journal kept
(``same``), holds another one (``changed``: the row was edited after the entry was
written), or is no longer in the ledger (``gone``: erased, GDPR art. 17, or past
retention)."""


def consent_ledger_checks(session: Session, e164: str, items: list[dict[str, Any]]) -> None:
    """Add ``consent_ledger`` to each journal item (:func:`entry_dict`) whose
    ``data.legal_basis`` is a consent: the ledger row it names, looked up now.

    ``consent_ledger`` = ``{"id", "state"`` (:data:`LEDGER_SAME` | :data:`LEDGER_CHANGED` |
    :data:`LEDGER_GONE`), ``"proof_ref_sha256"`` (the digest the journal holds),
    ``"proof_ref"`` (the row's reference now; None when gone), ``"ledger_sha256"`` (its
    SHA-256 now; None when gone)``}``. A row holding another number than ``e164`` counts
    as gone (its id was reused). Items without a consent basis are left as they are.

    Why: the journal keeps only the digest of the free-text reference (GDPR art. 5(1)(c));
    matching it against the ledger shows the proof relied on at the time is the one on
    file now (art. 5(2), 7(1)).
    """
    wanted: dict[int, list[tuple[dict[str, Any], Mapping[str, Any]]]] = {}
    for item in items:
        basis = item["data"].get("legal_basis") if isinstance(item["data"], dict) else None
        if not isinstance(basis, dict) or basis.get("basis") != "consent":
            continue
        consent = basis.get("consent")
        if isinstance(consent, dict) and isinstance(consent.get("id"), int):
            wanted.setdefault(consent["id"], []).append((item, consent))
    if not wanted:
        return
    rows = {
        row.id: row
        for row in session.scalars(select(Consent).where(Consent.id.in_(list(wanted))))
        if row.phone_e164 == e164
    }
    for cid, uses in wanted.items():
        row = rows.get(cid)
        for item, consent in uses:
            # entries written before the journal kept digests hold the reference itself
            journaled = consent.get("proof_ref_sha256") or proof_digest(consent.get("proof_ref"))
            if row is None:
                item["consent_ledger"] = {
                    "id": cid,
                    "state": LEDGER_GONE,
                    "proof_ref_sha256": journaled,
                    "proof_ref": None,
                    "ledger_sha256": None,
                }
                continue
            now_digest = proof_digest(row.proof_ref)
            item["consent_ledger"] = {
                "id": cid,
                "state": LEDGER_SAME if now_digest == journaled else LEDGER_CHANGED,
                "proof_ref_sha256": journaled,
                "proof_ref": row.proof_ref,
                "ledger_sha256": now_digest,
            }


def _chain_state(session: Session, verify_chain: bool | None) -> dict[str, Any]:
    h = head(session)
    entries = h.seq - h.anchor_seq
    state: dict[str, Any] = {
        "entries": entries,
        "head_seq": h.seq,
        "head_hash": h.hash,
        "verified": None,
        "problem": None,
        "hint": None,
    }
    run = entries <= VERIFY_LIMIT if verify_chain is None else verify_chain
    if not run:
        state["hint"] = VERIFY_HINT
        return state
    report = verify(session, max_problems=1)
    state["verified"] = report.ok
    state["problem"] = None if report.ok else report.first_problem()
    return state


def subject_proof(
    session: Session,
    key: bytes,
    e164: str,
    *,
    packs: PackSet | None = None,
    now: datetime | None = None,
    verify_chain: bool | None = None,
) -> dict[str, Any]:
    """Everything that proves the lawfulness of calls to ``e164`` (read only).

    Args:
        key: the keyed-hash key (:meth:`voicecast.app.Runtime.store_key`).
        e164: the number, E.164.
        packs: the rule packs (``GateEnv.packs``); default: the built-in ones with default
            settings.
        now: the instant of the report (aware; default now), for the consent in force and
            the gate's verdict now.
        verify_chain: verify the whole journal chain (True), not (False), or only when it
            holds at most :data:`VERIFY_LIMIT` entries (None).

    Returns:
        A JSON-able dict (instants are aware UTC datetimes): ``number``, ``subject``,
        ``generated_at``; ``contacts`` (each: ``contact_id``, ``list``, ``created_at``,
        ``professional``, ``campaigns``: ``campaign``, ``status``, ``purpose``,
        ``audience``, ``declared_legal_basis``, ``state``, ``outcome``, ``attempts``,
        ``legal_basis`` and ``legal_basis_text`` (what the gate relies on for this
        number now), ``gate_now`` (``verdict``, ``reason``, ``source``, ``until``));
        ``consent_in_force`` (purpose -> status, source, proof_ref, recorded_at, id, batch
        or None); ``consents`` (the ledger, each with the ``journal`` entry that recorded
        it: ``{seq, hash}``); ``opt_out``; ``refusals``; ``journal`` (``drops``,
        ``gate_decisions``, ``attempts``, ``rights`` (opt-outs, refusals, consents),
        ``other`` (export, erasure...), ``imports`` (the consent and contact imports
        behind the records above)), each entry as :func:`entry_dict` (drops and gate
        decisions relying on a consent also carry ``consent_ledger``:
        :func:`consent_ledger_checks`); ``chain``
        (``entries``, ``head_seq``, ``head_hash``, ``verified`` (None when not run),
        ``problem``, ``hint``).

    Raises:
        ProofError: ``e164`` is not E.164.
        LookupError: the journal head row is missing (database not migrated).
    """
    if not is_e164(e164):
        raise ProofError(f"number: not an E.164 number: {e164[:40]!r}")
    now = now or utcnow()
    packs = packs or build_packs()
    subject = subject_of(key, e164)

    # --- what the database holds now (plain dicts: reading the journal clears the session)
    contacts: list[dict[str, Any]] = []
    list_ids: set[int] = set()
    rows = session.execute(
        select(Contact, ContactList.name)
        .join(ContactList, ContactList.id == Contact.list_id)
        .where(Contact.phone_e164 == e164)
        .order_by(Contact.id)
    ).all()
    fields_of: dict[int, dict[str, Any]] = {}
    for contact, list_name in rows:
        fields_of[contact.id] = dict(contact.fields or {})
        list_ids.add(contact.list_id)
        contacts.append(
            {
                "contact_id": contact.id,
                "list": list_name,
                "list_id": contact.list_id,
                "created_at": contact.created_at,
                "professional": None,
                "campaigns": [],
            }
        )
    by_contact = {c["contact_id"]: c for c in contacts}
    memberships = session.execute(
        select(CampaignContact, Campaign)
        .join(Campaign, Campaign.id == CampaignContact.campaign_id)
        .where(CampaignContact.phone_e164 == e164)
        .order_by(Campaign.id)
    ).all()
    for cc, campaign in memberships:
        fields = fields_of.get(cc.contact_id, {})
        rules = campaign_rules(campaign)
        facts = load_facts(session, key, packs, [(e164, fields)], rules.purpose, now)[0]
        decision = decide(facts, rules, packs, now)
        try:
            allowed = decision if decision.verdict is Verdict.ALLOW else None
            allowed = allowed or allowed_basis(facts, rules, packs)
            basis: dict[str, Any] | None = legal_basis(rules, facts, allowed)
        except ValueError:  # an invalid number: no pack, no basis
            basis = None
        if basis is not None and basis.get("basis") == "consent" and facts.consent is not None:
            # live view: the ledger row's reference itself (the journal keeps its digest)
            basis["consent"] = {**basis["consent"], "proof_ref": facts.consent.proof_ref}
        owner = by_contact.get(cc.contact_id)
        if owner is not None:
            owner["professional"] = facts.professional
        membership = {
            "campaign": campaign.name,
            "campaign_id": campaign.id,
            "status": campaign.status,
            "purpose": campaign.purpose,
            "audience": campaign.audience,
            "declared_legal_basis": campaign.legal_basis,
            "sender": campaign.sender_name,
            "caller_id": campaign.caller_id,
            "state": cc.state,
            "outcome": cc.outcome,
            "attempts": cc.attempts,
            "last_gate": {"verdict": cc.gate_verdict, "reason": cc.gate_reason, "at": cc.gate_at},
            "legal_basis": basis,
            "legal_basis_text": basis_text(basis),
            "gate_now": {
                "verdict": decision.verdict.value,
                "reason": decision.reason.value,
                "source": decision.source,
                "until": decision.until,
            },
        }
        if owner is not None:
            owner["campaigns"].append(membership)
        else:  # the contact row is gone (list deleted) but its campaign progress is kept
            contacts.append(
                {
                    "contact_id": cc.contact_id,
                    "list": None,
                    "list_id": None,
                    "created_at": None,
                    "professional": facts.professional,
                    "campaigns": [membership],
                }
            )
    in_force: dict[str, Any] = {}
    for purpose in PURPOSES:
        state = consent_states(session, [e164], purpose, now).get(e164)
        in_force[purpose] = (
            None
            if state is None
            else {
                "status": state.status,
                "recorded_at": state.recorded_at,
                "source": state.source,
                "proof_ref": state.proof_ref,
                "wording_version": state.wording_version,
                "id": state.id,
                "batch": state.batch,
            }
        )
    consents = [
        _consent_dict(row)
        for row in session.scalars(
            select(Consent)
            .where(Consent.phone_e164 == e164)
            .order_by(Consent.recorded_at, Consent.id)
        )
    ]
    names: dict[int, str] = {
        cid: name for cid, name in session.execute(select(Campaign.id, Campaign.name))
    }
    record = opt_out_record(session, key, e164)
    opt_out = (
        None
        if record is None
        else {
            "recorded_at": record.recorded_at,
            "source": record.source,
            "campaign": names.get(record.campaign_id) if record.campaign_id else None,
        }
    )
    refusals = [
        {
            "refused_at": r.refused_at,
            "source": r.source,
            "campaign": names.get(r.campaign_id) if r.campaign_id else None,
        }
        for r in session.scalars(
            select(Refusal).where(Refusal.number_hash == subject).order_by(Refusal.refused_at)
        )
    ]

    # --- the journal -----------------------------------------------------------------------
    journal: dict[str, list[dict[str, Any]]] = {
        "drops": [],
        "gate_decisions": [],
        "attempts": [],
        "rights": [],
        "other": [],
        "imports": [],
    }
    by_consent_id: dict[int, dict[str, Any]] = {}
    for entry in iter_entries(session, subject=subject):
        item = entry_dict(entry)
        journal[SECTIONS.get(entry.kind, "other")].append(item)
        if entry.kind == kinds.CONSENT_RECORDED:
            cid = item["data"].get("consent_id")
            if isinstance(cid, int):
                by_consent_id[cid] = {"seq": entry.seq, "hash": entry.hash}
    batches = {c["batch"] for c in consents if c["batch"]}
    by_batch: dict[str, dict[str, Any]] = {}
    if batches or list_ids:
        for entry in iter_entries(
            session, kinds=(kinds.CONSENTS_IMPORTED, kinds.CONTACTS_IMPORTED)
        ):
            item = entry_dict(entry)
            data: Mapping[str, Any] = item["data"]
            if entry.kind == kinds.CONSENTS_IMPORTED and data.get("batch") in batches:
                journal["imports"].append(item)
                by_batch[str(data["batch"])] = {"seq": entry.seq, "hash": entry.hash}
            elif entry.kind == kinds.CONTACTS_IMPORTED and data.get("list_id") in list_ids:
                journal["imports"].append(item)
    for c in consents:
        c["journal"] = by_consent_id.get(c["id"]) or (by_batch.get(c["batch"] or ""))
    consent_ledger_checks(session, e164, [*journal["drops"], *journal["gate_decisions"]])

    return {
        "number": e164,
        "subject": subject,
        "generated_at": now,
        "contacts": contacts,
        "consent_in_force": in_force,
        "consents": consents,
        "opt_out": opt_out,
        "refusals": refusals,
        "journal": journal,
        "chain": _chain_state(session, verify_chain),
    }
