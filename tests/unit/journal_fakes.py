"""A fake PBX and a campaign builder for the proof-journal tests (dialer side).

The fake behaves by the number's last digit like the sandbox's simulated network
(../shared/SIM-PSTN.md), in milliseconds: 0 a person, 1 a person pressing 9, 2 an answering
machine, 3 busy, 4 no answer, 6 a number that does not exist.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from voicecast.campaigns.compliance import GateEnv
from voicecast.clock import Clock
from voicecast.config import ComplianceSettings
from voicecast.dialer.controller import Dialer
from voicecast.dialer.flow import FlowPlan
from voicecast.pbx.base import (
    AmdParams,
    CallFlowHandler,
    ChannelInfo,
    OriginateRequest,
    PbxListener,
    PbxUnavailable,
    PlayResult,
)
from voicecast.storage.models import (
    AudioMessage,
    Campaign,
    CampaignContact,
    Contact,
    ContactList,
    JournalEntry,
)

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
GATE = GateEnv.build(b"j" * 32, ComplianceSettings())
CALLER_ID = "+33162000000"
AUDIO_SHA = "ab" * 32
VOICEMAIL_SHA = "cd" * 32


class FakeCall:
    """An answered call: AMD says ``amd``; a callee of digit 1 presses 9 in the message."""

    def __init__(self, attempt_id: str, amd: tuple[str, str], presses: str | None) -> None:
        self.attempt_id = attempt_id
        self._amd = amd
        self._presses = presses
        self.hung_up = False

    async def detect_machine(self, params: AmdParams) -> tuple[str, str]:
        await asyncio.sleep(0.01)
        return self._amd

    async def wait_for_beep(
        self, silence_ms: int, resume_s: float, timeout: float, beep_hz: int = 1000
    ) -> str:
        return "beep"

    async def sound_exists(self, sound: str) -> bool:
        return True

    async def play(self, sound: str, escape_digits: str = "") -> PlayResult:
        await asyncio.sleep(0.02)
        if self._presses and self._presses in escape_digits:
            return PlayResult(400, False, self._presses)
        return PlayResult(1000, True)

    async def wait_for_digit(self, timeout: float) -> str | None:
        return None

    async def hangup(self) -> None:
        self.hung_up = True


@dataclass
class FakePbx:
    """Behaves by last digit like the sandbox's simulated network."""

    unavailable_first: int = 0
    originates: list[OriginateRequest] = field(default_factory=list)
    up: set[str] = field(default_factory=set)
    listener: PbxListener | None = None
    flow: CallFlowHandler | None = None

    async def start(self, listener: PbxListener, flow: CallFlowHandler) -> None:
        self.listener, self.flow = listener, flow
        listener.on_connection(True)

    async def stop(self, *, grace: float = 0.0) -> None:
        return None

    async def originate(self, request: OriginateRequest) -> None:
        if self.unavailable_first > 0:
            self.unavailable_first -= 1
            raise PbxUnavailable("AMI down (test)")
        self.originates.append(request)
        self.up.add(request.attempt_id)
        asyncio.get_running_loop().create_task(self._simulate(request))

    async def _simulate(self, req: OriginateRequest) -> None:
        assert self.listener is not None and self.flow is not None
        digit = req.number[-1]
        await asyncio.sleep(0.02)
        cause = 16
        if digit == "3":
            self.listener.on_originate_result(req.attempt_id, False, 5)
            self.listener.on_hangup(req.attempt_id, 17, "User busy", False)
            cause = 0
        elif digit == "4":
            self.listener.on_originate_result(req.attempt_id, False, 3)
            cause = 19
        elif digit == "6":
            self.listener.on_originate_result(req.attempt_id, False, 0)
            cause = 1
        else:
            self.listener.on_originate_result(req.attempt_id, True, 4)
            amd = ("MACHINE", "LONGGREETING-1500-1500") if digit == "2" else ("HUMAN", "HUMAN-1")
            presses = "9" if digit == "1" else None
            await self.flow(FakeCall(req.attempt_id, amd, presses))
            await asyncio.sleep(0.05)
        self.up.discard(req.attempt_id)
        self.listener.on_hangup(req.attempt_id, cause, "", True)

    async def list_channels(self) -> list[ChannelInfo]:
        return [ChannelInfo(f"Local/x-{a};1", a, "Up", a) for a in self.up]

    async def hangup(self, attempt_id: str, cause: int = 16) -> None:
        self.up.discard(attempt_id)


def plan(c: Campaign) -> FlowPlan:
    """The campaign's plan: its message and voicemail message in ``/snd``."""
    return FlowPlan(
        message="/snd/spring-message",
        voicemail_message="/snd/spring-voicemail",
        optout_key=c.optout_key,
    )


def make_campaign(
    sessions: sessionmaker[Session],
    numbers: list[str],
    *,
    purpose: str = "informational",
    legal_basis: str | None = "contract",
    audience: str = "b2c",
    name: str = "spring",
) -> int:
    """A running campaign over ``numbers`` (due at once); returns its id."""
    with sessions() as s, s.begin():
        clist = ContactList(name=f"{name}-list")
        message = AudioMessage(
            name="spring-message",
            file_name="spring-message.wav",
            sha256=AUDIO_SHA,
            duration_ms=1000,
            source_name="spring.wav",
        )
        voicemail = AudioMessage(
            name="spring-voicemail",
            file_name="spring-voicemail.wav",
            sha256=VOICEMAIL_SHA,
            duration_ms=1000,
            source_name="vm.wav",
        )
        s.add_all([clist, message, voicemail])
        s.flush()
        c = Campaign(
            name=name,
            list_id=clist.id,
            message_id=message.id,
            voicemail_message_id=voicemail.id,
            caller_id=CALLER_ID,
            max_channels=5,
            cps=100.0,
            ring_timeout=10,
            retries=0,
            retry_delay=0.0,
            retry_outcomes=["busy"],
            amd={},
            status="running",
            purpose=purpose,
            audience=audience,
            sender_name="Fictive Energie",
            on_behalf_of="Fictive Energie",
            optout_key="9",
            legal_basis=legal_basis,
        )
        s.add(c)
        s.flush()
        for i, n in enumerate(numbers):
            contact = Contact(
                list_id=clist.id,
                phone_e164=n,
                fields={"first_name": f"Camille{i}", "last_name": "Fictif"},
                source_line=i + 2,
            )
            s.add(contact)
            s.flush()
            s.add(
                CampaignContact(
                    campaign_id=c.id,
                    contact_id=contact.id,
                    phone_e164=n,
                    state="pending",
                    next_attempt_at=EPOCH,
                )
            )
        return c.id


def run_dialer(
    sessions: sessionmaker[Session],
    pbx: FakePbx,
    *,
    clock: Clock | None = None,
    before: Callable[[Dialer], None] | None = None,
    name: str = "spring",
) -> Dialer:
    """Run the dialer until the campaign is finished."""

    async def main() -> Dialer:
        dialer = Dialer(sessions, pbx, plan, gate=GATE, clock=clock)  # type: ignore[arg-type]
        if before is not None:
            before(dialer)
        await dialer.start()
        await asyncio.wait_for(dialer.run([name]), 30)
        await dialer.stop()
        return dialer

    return asyncio.run(main())


def entries(
    sessions: sessionmaker[Session], kind: str | None = None
) -> list[tuple[JournalEntry, dict[str, Any]]]:
    """The journal's entries (optionally of one kind) with their data parsed, seq order."""
    with sessions() as s:
        query = select(JournalEntry).order_by(JournalEntry.seq)
        if kind is not None:
            query = query.where(JournalEntry.kind == kind)
        rows = list(s.scalars(query))
        s.expunge_all()
    return [(row, json.loads(row.data)) for row in rows]


def assert_no_number(sessions: sessionmaker[Session], numbers: list[str]) -> None:
    """No entry's data holds any of ``numbers``, in E.164 or as its national digits."""
    for row, _data in entries(sessions):
        for n in numbers:
            digits = n.lstrip("+")
            national = digits[2:] if n.startswith("+33") else digits[-9:]
            for form in (n, digits, national):
                assert form not in row.data, (row.kind, form, row.data)
