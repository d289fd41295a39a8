"""The call-back opt-out line: calls to a campaign caller ID.

A person called by a campaign may call the number they saw back. The law asks for a simple,
free way to object (CPCE L34-5; Code de la consommation L221-16 and L223-1; GDPR art. 21(3);
47 CFR 64.1200(b)(2)-(3); PECR reg. 21 and Ofcom's guidance that the CLI must be a number
that can be called back). The line:

1. identifies the caller's number (the CLI, E.164; a national number is read in the country
   of the number called);
2. if a campaign called that number in the last ``recent_days`` days, says who called and
   why (sender, on whose behalf, the date of the call), then offers the opt-out key; a key
   press suppresses the number for the whole organisation and is confirmed;
3. if no campaign called it recently, there is nothing to explain: calling the line is the
   request, so the number is opted out at once and the caller hears the confirmation;
4. a withheld or unusable number cannot be opted out: the caller is told to call again
   from the number concerned;
5. a call to a number that is no campaign's caller ID or call-back number (another number
   of the trunk routed to this context) changes nothing: the caller is told so.

Every call is stored (:class:`~voicecast.storage.models.InboundCall`) with what was played
and pressed. The module knows nothing of Asterisk: it drives a
:class:`~voicecast.pbx.base.CallFlowSession` and speaks through a ``speak`` callable that
turns a text into a PBX sound (local text-to-speech).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from voicecast.audio.tts import render_text
from voicecast.clock import Clock
from voicecast.compliance.packs import FR_REGIONS
from voicecast.compliance.suppression import add_opt_out
from voicecast.compliance.zones import number_region, number_zones
from voicecast.contacts.importer import InvalidPhoneError, normalize_phone
from voicecast.dialer.prompts import OPTOUT_TEXTS
from voicecast.pbx.base import CallFlowSession
from voicecast.storage.models import CallAttempt, Campaign, InboundCall, utcnow

log = logging.getLogger(__name__)

Speak = Callable[[str, str], Awaitable[str]]
"""``speak(text, language)`` -> the PBX sound path of ``text`` spoken in ``language``
(``"fr"`` or ``"en"``)."""

DEFAULT_KEY = "9"
KEY_TIMEOUT = 8.0  # seconds to press the key after the announcement
ANNOUNCEMENTS = 2  # the identification is said at most twice

# Texts of the line, by language. Fields: {sender}, {on_behalf}, {date}, {why} (the
# campaign's declared purpose, WHY below), {key}. The confirmation after the key is the
# outbound flow's (prompts.OPTOUT_TEXTS).
TEXTS: dict[str, dict[str, str]] = {
    "fr": {
        "identify": (
            "Bonjour. Vous avez été appelé le {date} par {sender}, pour le compte de "
            "{on_behalf}, {why}. [pause 300ms] Pour ne plus recevoir d'appels de notre "
            "part, tapez {key}."
        ),
        "identify_same": (
            "Bonjour. Vous avez été appelé le {date} par {sender}, {why}. [pause 300ms] Pour "
            "ne plus recevoir d'appels de notre part, tapez {key}."
        ),
        "unknown": (
            "Bonjour. Votre numéro a été retiré de nos listes d'appel : il ne sera plus "
            "appelé par nos campagnes. Au revoir."
        ),
        "hidden": (
            "Bonjour. Votre numéro est masqué : nous ne pouvons pas le retirer de nos listes. "
            "Rappelez-nous depuis le numéro concerné, sans le masquer. Au revoir."
        ),
        "goodbye": "Votre numéro reste dans nos listes. Au revoir.",
        "not_ours": "Bonjour. Ce numéro ne reçoit pas d'appels. Au revoir.",
    },
    "en": {
        "identify": (
            "Hello. You were called on {date} by {sender}, on behalf of {on_behalf}, {why}. "
            "[pause 300ms] To stop receiving our calls, press {key}."
        ),
        "identify_same": (
            "Hello. You were called on {date} by {sender}, {why}. [pause 300ms] To stop "
            "receiving our calls, press {key}."
        ),
        "unknown": (
            "Hello. Your number has been removed from our call lists: our campaigns will not "
            "call it again. Goodbye."
        ),
        "hidden": (
            "Hello. Your number is withheld, so we cannot remove it from our lists. Please "
            "call again from the number concerned, without withholding it. Goodbye."
        ),
        "goodbye": "Your number stays on our lists. Goodbye.",
        "not_ours": "Hello. This number does not take calls. Goodbye.",
    },
}
# French-speaking callers: the French rule pack's regions and the Pacific territories.
# Why the person was called: the campaign's declared purpose (compliance.types.Purpose).
WHY: dict[str, dict[str, str]] = {
    "fr": {
        "marketing": "pour vous présenter une offre commerciale",
        "informational": "pour vous transmettre une information",
    },
    "en": {
        "marketing": "to present a commercial offer",
        "informational": "to give you some information",
    },
}
_FRENCH_REGIONS = FR_REGIONS | {"WF", "PF", "NC"}


def caller_e164(caller: str | None, called: str) -> str | None:
    """The caller's number in E.164, or None when withheld or not a valid number.

    ``caller`` is the CLI as the PBX gives it (``+33199000005``, ``0199000005``,
    ``anonymous``, empty); a number without ``+`` is read in the country of ``called``
    (our E.164 caller ID), as the contact importer reads it
    (:func:`voicecast.contacts.importer.normalize_phone`: French overseas numbers written
    nationally included).
    """
    region = number_region(called)
    if not caller or region is None:
        return None
    try:
        return normalize_phone(caller, region)
    except InvalidPhoneError:
        return None


def language_for(number: str) -> str:
    """``"fr"`` for French numbers (metropolitan, overseas and Pacific), ``"en"`` otherwise."""
    return "fr" if number_region(number) in _FRENCH_REGIONS else "en"


def spoken_date(when: datetime, number: str, language: str) -> str:
    """The day ``when`` (aware) in the callee's local time, as words TTS reads well."""
    zones = number_zones(number)
    local = when.astimezone(ZoneInfo(zones[0]) if zones else ZoneInfo("UTC"))
    if language == "fr":
        months = [
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ]
        return f"{local.day} {months[local.month - 1]}"
    return local.strftime("%B ") + str(local.day)


@dataclass(frozen=True)
class InboundSettings:
    """How the call-back line behaves.

    Attributes:
        recent_days: a campaign that called the number within this many days is announced.
        key: the opt-out key when the announced campaign has none.
    """

    recent_days: int = 90
    key: str = DEFAULT_KEY


class CallbackLine:
    """Serves calls to the campaigns' caller IDs (see the module docstring).

    Args:
        sessions: database sessions.
        hash_key: the key opt-outs are hashed with (:mod:`voicecast.compliance.keys`).
        speak: text -> PBX sound (local TTS).
        clock: the current time (UTC).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        hash_key: bytes,
        speak: Speak,
        clock: Clock,
        settings: InboundSettings | None = None,
    ) -> None:
        self.sessions = sessions
        self.hash_key = hash_key
        self.speak = speak
        self.clock = clock
        self.settings = settings or InboundSettings()

    def last_campaign(
        self, s: Session, number: str, now: datetime
    ) -> tuple[Campaign, datetime] | None:
        """The campaign that called ``number`` last, within ``recent_days``, and when."""
        since = now - timedelta(days=self.settings.recent_days)
        row = s.execute(
            select(Campaign, CallAttempt.created_at)
            .join(Campaign, Campaign.id == CallAttempt.campaign_id)
            .where(CallAttempt.number == number, CallAttempt.created_at >= since)
            .order_by(CallAttempt.created_at.desc())
            .limit(1)
        ).first()
        return (row[0], row[1]) if row else None

    def is_our_number(self, called: str) -> bool:
        """Whether ``called`` (E.164) is a campaign's caller ID or call-back number."""
        with self.sessions() as s:
            return (
                s.scalar(
                    select(Campaign.id)
                    .where(or_(Campaign.caller_id == called, Campaign.callback_number == called))
                    .limit(1)
                )
                is not None
            )

    async def serve(self, call: CallFlowSession, caller: str | None, called: str) -> str:
        """Handle one call-back; returns the action stored with its
        :class:`~voicecast.storage.models.InboundCall` row (see there).

        Never raises on a hangup: what happened until then is stored (``hung_up`` when the
        caller left before anything was decided).
        """
        now = self.clock.now()
        number = caller_e164(caller, called)
        language = language_for(number or called)
        texts = TEXTS[language]
        steps: list[dict[str, Any]] = []
        record = InboundCall(
            received_at=now, called=called[:16], caller=number, steps=steps, action="hung_up"
        )
        try:
            if not self.is_our_number(called):  # another number routed here: never opt out
                record.action = "not_ours"
                await self._say(call, texts["not_ours"], language, steps)
                return record.action
            if number is None:
                record.action = "hidden_number"
                await self._say(call, texts["hidden"], language, steps)
                return record.action
            with self.sessions() as s:
                found = self.last_campaign(s, number, now)
                if found is not None:
                    s.expunge(found[0])
            if found is None:
                self._opt_out(number, None, "call-back: no recent campaign")
                record.action = "auto_opted_out"
                await self._say(call, texts["unknown"], language, steps)
                return record.action
            campaign, when = found
            record.campaign_id = campaign.id
            record.action = "identified"
            key = campaign.optout_key or self.settings.key
            sender = campaign.sender_name or campaign.name
            behalf = campaign.on_behalf_of or sender
            template = texts["identify_same" if behalf == sender else "identify"]
            why = WHY[language].get(campaign.purpose or "", WHY[language]["informational"])
            text = render_text(  # values cleaned: a sender name cannot inject markup
                template,
                {
                    "sender": sender,
                    "on_behalf": behalf,
                    "date": spoken_date(when, number, language),
                    "why": why,
                    "key": key,
                },
            )
            for _ in range(ANNOUNCEMENTS):
                pressed = await self._say(call, text, language, steps, escape=key)
                if pressed is None and not call.hung_up:
                    pressed = await call.wait_for_digit(KEY_TIMEOUT)
                    steps.append({"step": "wait_for_digit", "digit": pressed})
                if pressed == key:
                    self._opt_out(number, campaign.id, f"call-back to {called}")
                    record.action = "opted_out"
                    confirm = OPTOUT_TEXTS[language]["confirm"]
                    await self._say(call, confirm, language, steps)
                    return record.action
                if call.hung_up:
                    return record.action
            await self._say(call, texts["goodbye"], language, steps)
            return record.action
        finally:
            action = record.action
            with self.sessions() as s, s.begin():
                s.add(record)
            log.info("call-back from %s to %s: %s", number or "a withheld number", called, action)
            if not call.hung_up:
                await call.hangup()

    async def _say(
        self,
        call: CallFlowSession,
        text: str,
        language: str,
        steps: list[dict[str, Any]],
        escape: str = "",
    ) -> str | None:
        if call.hung_up:
            return None
        sound = await self.speak(text, language)
        result = await call.play(sound, escape)
        steps.append(
            {
                "sound": sound,
                "ms": result.played_ms,
                "completed": result.completed,
                "digit": result.digit,
            }
        )
        return result.digit

    def _opt_out(self, number: str, campaign_id: int | None, note: str) -> None:
        with self.sessions() as s, s.begin():
            add_opt_out(
                s,
                self.hash_key,
                number,
                source="call-back",
                at=min(self.clock.now(), utcnow()),
                campaign_id=campaign_id,
                note=note[:200],
            )
