"""Preview a campaign: what its callee will hear, as one WAV, without calling anyone.

:func:`preview` builds the campaign's call-flow plan exactly as the dialer does
(:func:`voicecast.app.plan_builder`: the same default scenario, voice, texts and audio) and
runs the dialer's own call flow (:func:`voicecast.dialer.flow.run_outbound_flow`, hence
:func:`voicecast.scenarios.runner.run_scenario`) against a fake answered call that never
presses a key:

- person (default): AMD says a person answered; the scenario runs from ``start``; menus
  time out (their prompt is replayed for each retry, with the menu's ``timeout`` of silence
  after each play, then the ``on_timeout`` branch); transfers are not answered
  (``NOANSWER``, then ``on_failure``); recordings capture nothing (0 ms); ``set_result`` and
  ``goto`` are followed; the run stops at a hangup, a node's ``max_visits`` or
  :data:`~voicecast.scenarios.model.MAX_STEPS` node executions.
- machine (``machine=True``): AMD says an answering machine; after the beep, the
  scenario's ``on_machine`` path when it has one, else the voicemail message
  (``$voicemail_message``: the campaign's voicemail audio, its message audio, or its text).

Each sound played is mapped back from the PBX's sounds folder
(``runtime.sounds_dir_on_pbx``) to the host file (``runtime.sounds_dir``, plus ``.wav``) and
the files are joined, with :data:`GAP_MS` of silence between two prompts, into 8 kHz mono
16-bit PCM. What is not audio from voicecast is left out: AMD's listening time, the mailbox
greeting, the record beep, the ringing of a transfer. The preview is cut at the dialer's
``[dialer] max_call_duration`` (the dialer hangs up then too).

Side effects: the same as the dialer's before a dial: library audio used by the campaign is
published into the sounds folder, and texts are rendered by local TTS into its ``tts``
cache. Nothing is written to the database; no number is opted out.
"""

from __future__ import annotations

import asyncio
import io
import posixpath
import wave
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from voicecast.app import Runtime, plan_builder
from voicecast.audio.convert import ASTERISK_RATE, ASTERISK_SAMPLE_WIDTH
from voicecast.audio.tts import TtsError
from voicecast.campaigns.service import get_campaign
from voicecast.contacts.importer import normalize_phone
from voicecast.dialer.flow import FlowPlan, FlowReport, run_outbound_flow
from voicecast.errors import VoicecastError
from voicecast.pbx.base import AmdParams, PlayResult, RecordResult, TransferResult
from voicecast.scenarios.model import Prompt
from voicecast.storage.models import Contact, ContactList

GAP_MS = 300
"""Silence put between two prompts played one after the other, in milliseconds."""

_BYTES_PER_MS = ASTERISK_RATE * ASTERISK_SAMPLE_WIDTH // 1000  # 16 bytes of PCM per ms


class PreviewError(VoicecastError):
    """A campaign cannot be previewed; the message names the campaign and the reason."""


@dataclass(frozen=True)
class PreviewStep:
    """One prompt of the preview.

    Attributes:
        node: the scenario node that played it (``_confirm`` for the opt-out confirmation,
            ``_voicemail`` for the voicemail message of a campaign without ``on_machine``).
        sound: the PBX sound path played (no extension), as the dialer would play it.
        file: the host WAV file it was read from.
        start_ms: where it starts in the preview, in milliseconds.
        duration_ms: how long it is in the preview, in milliseconds (shorter than the file
            only when the preview was cut).
    """

    node: str
    sound: str
    file: Path
    start_ms: int
    duration_ms: int


@dataclass(frozen=True)
class PreviewResult:
    """What :func:`preview` produced.

    Attributes:
        campaign: the campaign's name.
        contact: the E.164 number of the contact whose fields filled the merge fields, or
            None when the list has no contacts.
        machine: True for the answering-machine path.
        frames: the audio, 16-bit signed little-endian mono PCM at 8000 Hz.
        steps: the prompts played, in order.
        ended_by: how the call flow ended: ``hangup``, ``max_visits``, ``max_steps`` (see
            :class:`~voicecast.scenarios.runner.ScenarioReport`), ``voicemail`` for the
            voicemail message of a campaign without ``on_machine``, or
            ``max_call_duration`` when the preview was cut there.
        truncated: the preview was cut at ``[dialer] max_call_duration``.
    """

    campaign: str
    contact: str | None
    machine: bool
    frames: bytes
    steps: tuple[PreviewStep, ...]
    ended_by: str
    truncated: bool = False

    @property
    def duration_ms(self) -> int:
        """Length of the preview, in milliseconds."""
        return len(self.frames) // _BYTES_PER_MS

    def wav_bytes(self) -> bytes:
        """The preview as a RIFF WAV file: 8000 Hz, mono, 16-bit PCM."""
        buf = io.BytesIO()
        with wave.open(buf, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(ASTERISK_SAMPLE_WIDTH)
            out.setframerate(ASTERISK_RATE)
            out.writeframes(self.frames)
        return buf.getvalue()


def host_sound_file(sound: str, sounds_dir_on_pbx: str, sounds_dir: Path) -> Path:
    """The host WAV of a PBX sound path: ``<sounds_dir_on_pbx>/tts/x`` ->
    ``<sounds_dir>/tts/x.wav``.

    Raises:
        PreviewError: ``sound`` is not inside ``sounds_dir_on_pbx``, or climbs out of it.
    """
    base = sounds_dir_on_pbx.rstrip("/")
    parts = sound[len(base) + 1 :].split("/") if sound.startswith(base + "/") else []
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise PreviewError(
            f"sound {sound!r} is not inside the PBX's sounds folder {sounds_dir_on_pbx!r}: "
            "cannot find its file on this host"
        )
    return Path(sounds_dir, *parts[:-1], parts[-1] + ".wav")


def read_pcm(path: Path) -> bytes:
    """The samples of an 8 kHz mono 16-bit PCM WAV file (what the PBX plays).

    Raises:
        PreviewError: missing or unreadable file, or another format.
    """
    try:
        with wave.open(str(path), "rb") as w:
            shape = (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getcomptype())
            if shape != (ASTERISK_RATE, 1, ASTERISK_SAMPLE_WIDTH, "NONE"):
                raise PreviewError(
                    f"{path}: not an 8 kHz mono 16-bit PCM WAV ({shape[0]} Hz, {shape[1]} "
                    f"channel(s), {8 * shape[2]} bits)"
                )
            return w.readframes(w.getnframes())
    except FileNotFoundError:
        raise PreviewError(f"{path}: file not found") from None
    except (OSError, EOFError, wave.Error) as exc:
        raise PreviewError(f"{path}: cannot read the WAV file: {exc}") from exc


@dataclass
class _Piece:
    """One part of the timeline: a prompt (``step`` and its samples) or a wait (silence)."""

    pcm: bytes
    node: str = ""
    sound: str = ""
    file: Path | None = None

    @property
    def is_prompt(self) -> bool:
        return self.file is not None


class _PreviewContext:
    """:class:`~voicecast.scenarios.runner.ScenarioContext` of the preview: the campaign's
    prompts with one contact's fields; opting out does nothing."""

    def __init__(
        self, plan: FlowPlan, fields: Mapping[str, Any], caller_id: str, number: str | None
    ) -> None:
        self._plan = plan
        self._fields = dict(fields)
        self._caller_id = caller_id
        self._number = number or caller_id
        self.node = ""

    def sound_for(self, node_id: str, prompt: Prompt) -> str:
        """The prompt's PBX sound for the contact (texts rendered now; cached)."""
        prompts = self._plan.prompts
        if prompts is None:
            raise PreviewError("the campaign's plan has no prompts")
        self.node = node_id
        return prompts.sound_for(prompt, self._fields)

    def record_path(self, node_id: str) -> str:
        """A path nothing is written to (the fake call records nothing)."""
        return posixpath.join(self._plan.replies_dir_on_pbx or "/nonexistent", f"preview-{node_id}")

    def caller_id_for(self, rule: str) -> str:
        """As the dialer: the callee's number for ``callee``, else the campaign's."""
        return self._number if rule == "callee" else self._caller_id

    def opt_out(self) -> None:
        """Nothing: a preview never suppresses a number."""


@dataclass
class _PreviewCall:
    """A fake answered call that never presses a key and keeps what is played."""

    machine: bool
    ctx: _PreviewContext
    sounds_dir_on_pbx: str
    sounds_dir: Path
    max_ms: int
    attempt_id: str = "preview"
    timeline: list[_Piece] = field(default_factory=list)
    missing: list[tuple[str, Path]] = field(default_factory=list)
    cut: bool = False
    _hung_up: bool = False
    _bytes: int = 0

    def _add(self, piece: _Piece) -> None:
        """Keep ``piece``; past the longest call the line goes down, as the dialer's would
        (this also bounds the memory a long loop of menus could take)."""
        self.timeline.append(piece)
        self._bytes += len(piece.pcm)
        if self._bytes >= self.max_ms * _BYTES_PER_MS:
            self._hung_up = self.cut = True

    @property
    def hung_up(self) -> bool:
        return self._hung_up

    def _file(self, sound: str) -> Path:
        return host_sound_file(sound, self.sounds_dir_on_pbx, self.sounds_dir)

    async def detect_machine(self, params: AmdParams) -> tuple[str, str]:
        if self.machine:
            return "MACHINE", "LONGGREETING-1500-1500"
        return "HUMAN", "HUMAN-800-800"

    async def sound_exists(self, sound: str) -> bool:
        path = self._file(sound)
        if not path.is_file():
            self.missing.append((sound, path))
            return False
        return True

    async def play(self, sound: str, escape_digits: str = "") -> PlayResult:
        path = self._file(sound)
        pcm = read_pcm(path)
        self._add(_Piece(pcm, self.ctx.node, sound, path))
        return PlayResult(played_ms=len(pcm) // _BYTES_PER_MS, completed=True)

    async def wait_for_digit(self, timeout: float) -> str | None:
        self._add(_Piece(bytes(round(timeout * 1000) * _BYTES_PER_MS)))
        return None

    async def wait_for_beep(
        self, silence_ms: int, resume_s: float, timeout: float, beep_hz: int = 1000
    ) -> str:
        return "beep"

    async def record(
        self, path: str, max_seconds: float, silence_seconds: float, beep: bool
    ) -> RecordResult:
        return RecordResult(duration_ms=0, completed=True)

    async def transfer(
        self, kind: str, target: str, timeout: float, caller_id: str
    ) -> TransferResult:
        return TransferResult(status="NOANSWER")

    async def hangup(self) -> None:
        self._hung_up = True


def _pick_contact(
    session: Session, list_id: int, contact: str | None, default_region: str, list_name: str
) -> tuple[str | None, dict[str, Any]]:
    """(E.164 number, merge fields) of the named contact, or of the list's first one."""
    if contact is None:
        row = session.scalars(
            select(Contact).where(Contact.list_id == list_id).order_by(Contact.id).limit(1)
        ).first()
    else:
        try:
            number = normalize_phone(contact, default_region)
        except ValueError as exc:  # InvalidPhoneError, or an unknown region
            raise PreviewError(f"--contact {contact!r}: {exc}") from exc
        row = session.scalars(
            select(Contact).where(Contact.list_id == list_id, Contact.phone_e164 == number)
        ).first()
        if row is None:
            raise PreviewError(f"contact {number} is not in list {list_name!r}")
    if row is None:
        return None, {}
    return row.phone_e164, dict(row.fields or {})


def _assemble(pieces: list[_Piece], max_ms: int) -> tuple[bytes, tuple[PreviewStep, ...], bool]:
    """Join the timeline (a gap between two prompts), cut at ``max_ms``."""
    out = bytearray()
    steps: list[PreviewStep] = []
    previous: _Piece | None = None
    for piece in pieces:
        if piece.is_prompt and previous is not None and previous.is_prompt:
            out += bytes(GAP_MS * _BYTES_PER_MS)
        if piece.is_prompt:
            assert piece.file is not None
            steps.append(
                PreviewStep(
                    piece.node,
                    piece.sound,
                    piece.file,
                    len(out) // _BYTES_PER_MS,
                    len(piece.pcm) // _BYTES_PER_MS,
                )
            )
        out += piece.pcm
        previous = piece
    limit = max_ms * _BYTES_PER_MS
    if len(out) <= limit:
        return bytes(out), tuple(steps), False
    kept = [
        PreviewStep(s.node, s.sound, s.file, s.start_ms, min(s.duration_ms, max_ms - s.start_ms))
        for s in steps
        if s.start_ms < max_ms
    ]
    return bytes(out[:limit]), tuple(kept), True


def preview(
    runtime: Runtime,
    campaign_name: str,
    *,
    contact: str | None = None,
    machine: bool = False,
    default_region: str = "FR",
) -> PreviewResult:
    """What the callee of ``campaign_name`` will hear (see the module docstring).

    Blocking: it runs the call flow in its own event loop (not from a running one).

    Args:
        runtime: the opened runtime (settings, database, sounds folders).
        campaign_name: the campaign.
        contact: the number (E.164 or national, read in ``default_region``) of the list's
            contact whose fields fill the merge fields; None: the list's first contact (by
            id), or no fields when the list is empty.
        machine: what an answering machine records instead of what a person hears.
        default_region: ISO 3166 country of a ``contact`` written without ``+``.

    Returns:
        The audio (8 kHz mono 16-bit PCM), the prompts played and how the flow ended.

    Raises:
        NotFoundError: no such campaign.
        PreviewError: ``contact`` is not a valid number or not in the campaign's list; a
            merge field has no value (the message names it); a sound is missing or not a
            WAV; nothing is played on this path (the campaign's ``deliver_to``).
        ConfigError, AudioError: the plan cannot be built (as when the dialer starts the
            campaign: deleted or changed audio, a scenario that no longer loads).
    """
    with runtime.sessions() as s:
        campaign = get_campaign(s, campaign_name)
        clist = s.get(ContactList, campaign.list_id)
        list_name = clist.name if clist is not None else str(campaign.list_id)
        number, fields = _pick_contact(s, campaign.list_id, contact, default_region, list_name)
    plan = plan_builder(runtime)(campaign)
    max_ms = round(runtime.settings.dialer.max_call_duration * 1000)
    ctx = _PreviewContext(plan, fields, campaign.caller_id, number)
    call = _PreviewCall(machine, ctx, runtime.sounds_dir_on_pbx, runtime.sounds_dir, max_ms)
    report = FlowReport()
    try:
        asyncio.run(run_outbound_flow(call, plan, report, ctx=ctx))
    except TtsError as exc:
        empty = " (its list has no contacts)" if number is None else f" (contact {number})"
        raise PreviewError(f"campaign {campaign_name}{empty}: {exc}") from exc
    if call.missing:
        sound, path = call.missing[0]
        raise PreviewError(f"campaign {campaign_name}: sound {sound} is missing: no file {path}")
    if not any(p.is_prompt for p in call.timeline):
        why = report.note or "the call flow plays nothing on this path"
        raise PreviewError(f"campaign {campaign_name}: nothing to preview: {why}")
    frames, steps, truncated = _assemble(call.timeline, max_ms)
    ended_by: str = report.scenario.ended_by or ("voicemail" if machine else "hangup")
    if truncated or call.cut:
        ended_by, truncated = "max_call_duration", True
    return PreviewResult(
        campaign=campaign_name,
        contact=number,
        machine=machine,
        frames=frames,
        steps=steps,
        ended_by=ended_by,
        truncated=truncated,
    )
