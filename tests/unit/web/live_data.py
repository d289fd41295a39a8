"""Rows for the live dashboard, health and metrics tests: a campaign with contacts, and
attempts / gate decisions added straight into the database (as a dialer would)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from voicecast.app import Runtime
from voicecast.storage.models import (
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    ContactList,
    GateDecision,
)

NUMBERS = [f"+3319900{n:04d}" for n in range(10, 20)]


def seed_campaign(runtime: Runtime, name: str = "Spring offer", contacts: int = 4) -> int:
    """A running campaign with ``contacts`` pending contacts; returns its id."""
    with runtime.sessions() as s, s.begin():
        clist = ContactList(name=f"list of {name}")
        s.add(clist)
        s.flush()
        campaign = Campaign(
            name=name,
            list_id=clist.id,
            caller_id="+33199000001",
            max_channels=2,
            cps=1.0,
            ring_timeout=20,
            retries=0,
            retry_delay=60,
            retry_outcomes=[],
            amd={},
            status="running",
        )
        s.add(campaign)
        s.flush()
        for i, number in enumerate(NUMBERS[:contacts]):
            contact = Contact(list_id=clist.id, phone_e164=number, fields={}, source_line=i + 2)
            s.add(contact)
            s.flush()
            s.add(
                CampaignContact(
                    campaign_id=campaign.id,
                    contact_id=contact.id,
                    phone_e164=number,
                    state="pending",
                    next_attempt_at=datetime.now(UTC),
                )
            )
        return campaign.id


def add_attempt(
    runtime: Runtime,
    campaign_id: int,
    *,
    outcome: str | None = None,
    amd: str | None = None,
    at: datetime | None = None,
) -> str:
    """An attempt of the campaign's next pending contact: up (``outcome`` None) or ended with
    ``outcome`` (the contact is then done with it). Returns the attempt id."""
    at = at or datetime.now(UTC)
    aid = uuid.uuid4().hex
    with runtime.sessions() as s, s.begin():
        cc = (
            s.query(CampaignContact)
            .filter_by(campaign_id=campaign_id, state="pending")
            .order_by(CampaignContact.id)
            .first()
        )
        assert cc is not None, "no pending contact left"
        cc.attempts += 1
        cc.last_attempt_id = aid
        cc.state = "dialing" if outcome is None else "done"
        cc.outcome = outcome
        s.add(
            CallAttempt(
                id=aid,
                campaign_id=campaign_id,
                campaign_contact_id=cc.id,
                number=cc.phone_e164,
                attempt_no=cc.attempts,
                state="answered" if outcome is None else "ended",
                created_at=at,
                originate_sent_at=at,
                ended_at=None if outcome is None else at + timedelta(seconds=20),
                outcome=outcome,
                amd_status=amd,
            )
        )
    return aid


def add_gate_decision(runtime: Runtime, campaign_id: int, verdict: str, reason: str) -> None:
    """A gate decision for the campaign's first contact (and its latest-decision columns)."""
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        cc = (
            s.query(CampaignContact)
            .filter_by(campaign_id=campaign_id)
            .order_by(CampaignContact.id.desc())
            .first()
        )
        assert cc is not None
        cc.gate_verdict, cc.gate_reason = verdict, reason
        s.add(
            GateDecision(
                campaign_id=campaign_id,
                campaign_contact_id=cc.id,
                decided_at=now,
                verdict=verdict,
                reason=reason,
                rule_source="test",
                detail="test",
            )
        )
