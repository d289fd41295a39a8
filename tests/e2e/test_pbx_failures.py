"""End-to-end: calls that fail at the PBX (a carrier trunk that is down) pause the campaign
with an alert instead of burning the list, and each failed attempt keeps Asterisk's reason.

The sandbox dials ``PJSIP/{number}@down``, an endpoint that does not exist: Asterisk cannot
create the outgoing channel, as with a trunk that is down or a dial string with no route.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from voicecast.storage.models import CallAttempt, Campaign, CampaignContact

from .conftest import Workspace

pytestmark = pytest.mark.e2e

TRUNK_DOWN = 'dial_string = "PJSIP/{number}@down"\n'


def _set_trunk(ws: Workspace, down: bool) -> None:
    text = ws.config.read_text().replace(TRUNK_DOWN, "")
    if down:
        text = text.replace("[sandbox]\n", "[sandbox]\n" + TRUNK_DOWN, 1)
    ws.config.write_text(text)


def test_a_trunk_that_is_down_pauses_the_campaign_with_an_alert_and_resume_dials_again(
    workspace: Workspace, short_message: Path
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(short_message), "--name", "short")
    numbers = ["+33199000070", "+33199000072", "+33199000073", "+33199000080"]
    numbers += ["+33199000090", "+33261910010"]
    csv = ws.write_contacts("c.csv", numbers)
    ws.vc("contacts", "import", str(csv), "--list", "l", "--default-region", "FR")
    ws.create_campaign(
        "down", "l", "short", "--caller-id", "+33162000000", "--max-channels", "1", "--retries", "0"
    )
    _set_trunk(ws, down=True)
    proc = ws.vc("campaign", "start", "down", "--wait", check=False, timeout=120)
    assert proc.returncode == 3, proc.stderr  # an alert: not a finished campaign
    assert "campaign down: paused: alert: the last 5 call(s)" in " ".join(proc.stderr.split())

    with ws.sessions() as s:
        campaign = s.scalars(select(Campaign)).one()
        attempts = list(s.scalars(select(CallAttempt).order_by(CallAttempt.created_at)))
        states = {cc.phone_e164: cc.state for cc in s.scalars(select(CampaignContact))}
    assert campaign.status == "paused", campaign.status_reason
    assert campaign.status_reason is not None
    assert campaign.status_reason.startswith("alert: the last 5 call(s) all failed at the PBX")
    assert len(attempts) == 5  # the default [dialer] alert_after_pbx_failures
    for a in attempts:
        assert a.state == "ended" and a.outcome == "failed"
        assert a.error is not None and "Asterisk" in a.error, a.error
        assert "Reason 0" in a.error or "refused" in a.error, a.error
    assert set(states.values()) == {"pending"}  # nobody was reached: everyone is dialled later

    # the trunk is back: resuming dials every contact once more, through the network
    _set_trunk(ws, down=False)
    ws.vc("campaign", "start", "down", "--wait", timeout=240)
    with ws.sessions() as s:
        assert s.scalars(select(Campaign)).one().status == "completed"
        done = {cc.phone_e164: cc.outcome for cc in s.scalars(select(CampaignContact))}
        total = len(list(s.scalars(select(CallAttempt))))
    assert done["+33199000072"] == "machine" and done["+33199000073"] == "busy"
    assert done["+33199000070"] == "human"
    assert total == 5 + len(numbers)
