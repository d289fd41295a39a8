"""Live figures of one campaign, computed from the database (so they hold whichever process
dials): calls up now, calls started per second, outcome counts, the AMD split, the gate's
deferred / blocked counts by reason, and progress.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voicecast.storage.models import CallAttempt, Campaign, CampaignContact

CPS_WINDOW = 10.0
"""Seconds over which :attr:`CampaignStats.cps` averages the Originates sent."""


@dataclass
class CampaignStats:
    """A snapshot of one campaign.

    ``calls_up``: attempts sent to the PBX and not ended; ``cps``: Originates sent per
    second over the last :data:`CPS_WINDOW` seconds; ``attempts``: attempts made in all;
    ``outcomes``: contacts by final outcome; ``amd``: answered attempts by AMD status
    (``HUMAN``, ``MACHINE``, ``NOTSURE``...); ``deferred`` / ``blocked``: contacts whose
    latest gate decision is that verdict, by reason; ``contacts`` / ``done``: progress
    (``progress`` = done / contacts, 0..1); ``at``: the snapshot time (ISO 8601, UTC).
    """

    campaign: str
    status: str
    status_reason: str | None
    at: str
    calls_up: int
    cps: float
    attempts: int
    contacts: int
    done: int
    pending: int
    dialing: int
    progress: float
    outcomes: dict[str, int] = field(default_factory=dict)
    amd: dict[str, int] = field(default_factory=dict)
    deferred: dict[str, int] = field(default_factory=dict)
    blocked: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the WebSocket and ``GET /api/v1/campaigns/{name}/status``)."""
        return asdict(self)


def campaign_stats(session: Session, campaign: Campaign, now: datetime) -> CampaignStats:
    """Compute :class:`CampaignStats` for ``campaign`` at ``now`` (aware, UTC)."""
    cid = campaign.id
    calls_up = session.scalar(
        select(func.count())
        .select_from(CallAttempt)
        .where(
            CallAttempt.campaign_id == cid,
            CallAttempt.originate_sent_at.is_not(None),
            CallAttempt.state != "ended",
        )
    )
    recent = session.scalar(
        select(func.count())
        .select_from(CallAttempt)
        .where(
            CallAttempt.campaign_id == cid,
            CallAttempt.originate_sent_at >= now - timedelta(seconds=CPS_WINDOW),
        )
    )
    attempts = session.scalar(
        select(func.count()).select_from(CallAttempt).where(CallAttempt.campaign_id == cid)
    )
    states = dict(
        session.execute(
            select(CampaignContact.state, func.count())
            .where(CampaignContact.campaign_id == cid)
            .group_by(CampaignContact.state)
        ).all()
    )
    outcomes = dict(
        session.execute(
            select(CampaignContact.outcome, func.count())
            .where(CampaignContact.campaign_id == cid, CampaignContact.outcome.is_not(None))
            .group_by(CampaignContact.outcome)
        ).all()
    )
    amd = dict(
        session.execute(
            select(CallAttempt.amd_status, func.count())
            .where(CallAttempt.campaign_id == cid, CallAttempt.amd_status.is_not(None))
            .group_by(CallAttempt.amd_status)
        ).all()
    )
    gate: dict[str, dict[str, int]] = {"defer": {}, "block": {}}
    for verdict, reason, n in session.execute(
        select(CampaignContact.gate_verdict, CampaignContact.gate_reason, func.count())
        .where(
            CampaignContact.campaign_id == cid,
            CampaignContact.gate_verdict.in_(("defer", "block")),
        )
        .group_by(CampaignContact.gate_verdict, CampaignContact.gate_reason)
    ).all():
        gate[verdict or "defer"][reason or "unknown"] = n
    contacts = sum(states.values())
    done = states.get("done", 0)
    return CampaignStats(
        campaign=campaign.name,
        status=campaign.status,
        status_reason=campaign.status_reason,
        at=now.isoformat(timespec="seconds"),
        calls_up=calls_up or 0,
        cps=round((recent or 0) / CPS_WINDOW, 2),
        attempts=attempts or 0,
        contacts=contacts,
        done=done,
        pending=states.get("pending", 0),
        dialing=states.get("dialing", 0),
        progress=round(done / contacts, 4) if contacts else 0.0,
        outcomes={str(k): v for k, v in outcomes.items()},
        amd={str(k): v for k, v in amd.items()},
        deferred=gate["defer"],
        blocked=gate["block"],
    )
