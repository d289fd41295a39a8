"""Composition root: builds the database, the PBX backend and the dialer from Settings."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import posixpath
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from voicecast.campaigns.compliance import GateEnv
from voicecast.clock import Clock, clock_from_env
from voicecast.compliance.suppression import load_store_key
from voicecast.config import (
    ExposedPart,
    PbxNodeSettings,
    Settings,
    check_private_file,
    exposure_warnings,
)
from voicecast.dialer.controller import Dialer
from voicecast.dialer.flow import FlowPlan, amd_settings
from voicecast.dialer.inbound import CallbackLine
from voicecast.dialer.prompts import Speaker, scenario_prompts
from voicecast.errors import ConfigError, NotFoundError
from voicecast.journal.store import SYSTEM, acting_as
from voicecast.pbx.asterisk import (
    AsteriskBackend,
    AsteriskEndpoint,
    AsteriskPool,
    InboundHandler,
)
from voicecast.pbx.base import DEFAULT_NODE, NodeSpec, PbxBackend, TrunkSpec
from voicecast.sandbox import Sandbox, SandboxView
from voicecast.storage.db import make_engine, migrate, session_factory
from voicecast.storage.models import AudioMessage, Campaign

log = logging.getLogger(__name__)

DRAIN_GRACE = 30.0  # seconds calls in progress may take to finish on SIGTERM

_P = ParamSpec("_P")
_R = TypeVar("_R")


def as_system(fn: Callable[_P, Coroutine[Any, Any, _R]]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """Run the coroutine function ``fn`` as ``acting_as("system")``, and so every task it
    creates (a task copies the context at creation): the dialer's and the scheduler's
    journal entries are the system's even when a CLI command (``cli:...``) started them.
    The web requests it serves set their own user
    (:func:`voicecast.web.server.journal_middleware`).
    """

    @functools.wraps(fn)
    async def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with acting_as(SYSTEM):
            return await fn(*args, **kwargs)

    return run


@dataclass
class Runtime:
    """What every command needs: settings, the migrated database, the PBX facts."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    sandbox: SandboxView | None

    @property
    def sounds_dir(self) -> Path:
        """Host folder where campaign audio is published for the PBX."""
        if self.sandbox is not None:
            return self.sandbox.sounds_dir
        return self.settings.path(self.settings.pbx.sounds_dir)

    @property
    def sounds_dir_on_pbx(self) -> str:
        """The same folder as Asterisk sees it."""
        if self.sandbox is not None:
            return self.sandbox.sounds_dir_on_pbx
        pbx = self.settings.pbx
        return pbx.sounds_dir_on_pbx or str(self.settings.path(pbx.sounds_dir))

    @property
    def replies_dir(self) -> Path:
        """Host folder where Asterisk writes callees' replies (scenario record nodes)."""
        if self.sandbox is not None and self.sandbox.replies_dir is not None:
            return self.sandbox.replies_dir
        return self.settings.path(self.settings.pbx.replies_dir)

    @property
    def replies_dir_on_pbx(self) -> str:
        """The same folder as Asterisk sees it."""
        if self.sandbox is not None and self.sandbox.replies_dir_on_pbx:
            return self.sandbox.replies_dir_on_pbx
        pbx = self.settings.pbx
        return pbx.replies_dir_on_pbx or str(self.settings.path(pbx.replies_dir))

    @property
    def audio_store(self) -> Path:
        """voicecast's own audio library folder."""
        return self.settings.path(self.settings.audio.store_dir)

    def store_key(self, session: Session) -> tuple[bytes, bool]:
        """The keyed-hash key of the opt-out and opposition lists (``[compliance]
        hash_key_file``), created on first use: ``(key, created)``.

        Raises:
            HashKeyError: the file is missing while hashed data exists, malformed, or
                readable by others (see :func:`~voicecast.compliance.suppression.load_store_key`).
        """
        return load_store_key(session, self.settings.path(self.settings.compliance.hash_key_file))

    def report_zone(self) -> tzinfo:
        """The report's zone (``[report] timezone``, else this machine's local zone).

        Raises:
            ConfigError: an unknown IANA zone name.
        """
        name = self.settings.report.timezone
        if not name:
            local = datetime.now(UTC).astimezone().tzinfo
            return local if local is not None else UTC
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"[report] timezone: unknown zone {name!r}") from exc


def open_runtime(settings: Settings) -> Runtime:
    """Open (and migrate) the database; read the sandbox's facts when it is enabled.

    Raises:
        ConfigError: the database cannot be reached or logged into (one line naming it,
            password hidden, and the driver's reason).
    """
    engine = make_engine(settings.database_url())
    try:
        migrate(engine)
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        url = engine.url.render_as_string(hide_password=True)
        engine.dispose()
        raise ConfigError(f"cannot open the database {url}: {reason}") from None
    view = Sandbox(settings).view() if settings.sandbox.enabled else None
    return Runtime(settings, engine, session_factory(engine), view)


def endpoint(runtime: Runtime) -> AsteriskEndpoint:
    """The Asterisk to drive: the sandbox's, or ``[ami]`` + ``[pbx]``."""
    s = runtime.settings
    view = runtime.sandbox
    return AsteriskEndpoint(
        ami_host="127.0.0.1" if view else s.ami.host,
        ami_port=view.ami_port if view else s.ami.port,
        username="voicecast" if view else s.ami.username,
        secret=view.secret if view else s.ami.secret,
        agi_host=s.fastagi.host,
        agi_port=s.fastagi.port,
        agi_url=s.fastagi.agi_url,
        dial_string=view.dial_string if view else s.pbx.dial_string,
        context=s.pbx.originate_context,
        connect_timeout=s.ami.connect_timeout,
        action_timeout=s.ami.action_timeout,
        agi_timeout=s.fastagi.command_timeout,
        keepalive=s.ami.keepalive,
    )


def node_secret(settings: Settings, node: PbxNodeSettings) -> str:
    """A ``[[pbx.nodes]]`` entry's AMI secret: ``ami_secret``, or the first line of
    ``ami_secret_file`` (a file only its owner may read, see
    :func:`voicecast.config.check_private_file`).

    Raises:
        ConfigError: the file is missing, unreadable, empty or readable by others.
    """
    if not node.ami_secret_file:
        return node.ami_secret
    path = settings.path(node.ami_secret_file)
    what = f"[[pbx.nodes]] {node.name} ami_secret_file"
    check_private_file(path, what)
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc})") from None
    if not secret:
        raise ConfigError(f"{what} {path} is empty")
    return secret


def pbx_nodes(runtime: Runtime, inbound: InboundHandler) -> tuple[PbxBackend, tuple[NodeSpec, ...]]:
    """The PBX backend to dial through and the nodes it spreads calls over; ``inbound``
    serves calls to a campaign's caller ID (the call-back line).

    Without ``[[pbx.nodes]]``: one :class:`AsteriskBackend` (the sandbox's, or ``[ami]`` +
    ``[pbx]``) as one node named ``default`` with ``[pbx] max_channels`` and one trunk
    paced at ``[pbx] cps``. With nodes: an :class:`AsteriskPool`, one AMI connection per
    node, each Originate carrying this controller's FastAGI URL as that node reaches it.

    Raises:
        ConfigError: a node's AMI secret file is unusable (:func:`node_secret`).
    """
    s = runtime.settings
    if not s.pbx.nodes:
        spec = NodeSpec(
            DEFAULT_NODE.name,
            s.pbx.max_channels or None,
            (TrunkSpec("default", None, s.pbx.cps or None),),
        )
        return AsteriskBackend(endpoint(runtime), inbound=inbound), (spec,)
    base = endpoint(runtime)
    members: list[tuple[str, AsteriskEndpoint]] = []
    specs: list[NodeSpec] = []
    for node in s.pbx.nodes:
        trunks = tuple(TrunkSpec(t.name, t.dial_string, t.cps) for t in node.trunks) or (
            TrunkSpec("default", s.pbx.dial_string, s.pbx.cps or None),
        )
        members.append(
            (
                node.name,
                dataclasses.replace(
                    base,
                    ami_host=node.ami_host,
                    ami_port=node.ami_port,
                    username=node.ami_username,
                    secret=node_secret(s, node),
                    agi_url=node.agi_url or s.fastagi.agi_url,
                    dial_string=trunks[0].dial_string or s.pbx.dial_string,
                ),
            )
        )
        specs.append(NodeSpec(node.name, node.max_channels, trunks))
    return AsteriskPool(members, inbound=inbound), tuple(specs)


def plan_builder(runtime: Runtime) -> Callable[[Campaign], FlowPlan]:
    """Build a campaign's call-flow plan: its scenario (the default one when it has none),
    the sounds it plays (every library audio it uses is published into the PBX's sounds
    folder here, where the dialer runs; texts are spoken by local TTS) and its AMD and
    voicemail settings.

    Raises:
        ConfigError: the campaign's audio was deleted or its scenario no longer loads.
        AudioError: a stored audio file is missing or changed, or cannot be published.
    """
    from voicecast.audio.library import get_audio, pbx_playback_name, publish
    from voicecast.dialer.inbound import language_for
    from voicecast.dialer.prompts import OPTOUT_TEXTS, PromptSet
    from voicecast.scenarios.model import (
        MESSAGE_AUDIO,
        SPECIAL_AUDIO,
        VOICEMAIL_AUDIO,
        Prompt,
        Scenario,
        ScenarioError,
        default_scenario,
    )

    def build(campaign: Campaign) -> FlowPlan:
        talk = speaker(runtime)
        voice_name = campaign.tts_voice
        language = (
            ("fr" if voice_name.startswith("fr") else "en")
            if voice_name
            else language_for(campaign.caller_id)
        )
        voice = talk.voice(language, voice_name, campaign.tts_speed)
        texts = OPTOUT_TEXTS[language]
        audio: dict[str, str] = {}
        with runtime.sessions() as s:
            for special, audio_id in (
                (MESSAGE_AUDIO, campaign.message_id),
                (VOICEMAIL_AUDIO, campaign.voicemail_message_id or campaign.message_id),
            ):
                msg = s.get(AudioMessage, audio_id) if audio_id else None
                if audio_id and msg is None:
                    raise ConfigError(f"campaign {campaign.name}: its message audio was deleted")
                if msg is not None:
                    publish(msg, runtime.audio_store, runtime.sounds_dir)
                    audio[special] = pbx_playback_name(msg, runtime.sounds_dir_on_pbx)
            try:
                scenario = (
                    Scenario.model_validate(campaign.scenario)
                    if campaign.scenario
                    else default_scenario(
                        campaign.optout_key or None,
                        announce_text=texts["announce"],
                        confirm_text=texts["confirm"],
                    )
                )
            except (ScenarioError, ValueError) as exc:
                raise ConfigError(f"campaign {campaign.name}: its scenario: {exc}") from exc
            if scenario.confirm is None:  # an opt-out by key is always confirmed aloud
                scenario = scenario.model_copy(update={"confirm": Prompt(text=texts["confirm"])})
            for _node, prompt in scenario_prompts(scenario):
                name = prompt.audio
                if name and name not in SPECIAL_AUDIO and name not in audio:
                    try:
                        msg = get_audio(s, name)
                    except NotFoundError as exc:
                        raise ConfigError(f"campaign {campaign.name}: its scenario: {exc}") from exc
                    publish(msg, runtime.audio_store, runtime.sounds_dir)
                    audio[name] = pbx_playback_name(msg, runtime.sounds_dir_on_pbx)
        if MESSAGE_AUDIO not in audio and not campaign.message_text:
            raise ConfigError(f"campaign {campaign.name}: it has neither audio nor text")
        return FlowPlan(
            message=audio.get(MESSAGE_AUDIO, ""),
            voicemail_message=audio.get(VOICEMAIL_AUDIO, ""),
            optout_key=campaign.optout_key or None,
            deliver_to=campaign.deliver_to or "both",
            scenario=scenario,
            prompts=PromptSet(
                talk,
                voice,
                audio,
                campaign.message_text,
                campaign.optout_key or None,
            ),
            replies_dir_on_pbx=runtime.replies_dir_on_pbx,
            replies_dir=str(runtime.replies_dir),
            **amd_settings(campaign.amd),
        )

    return build


def gate_env(runtime: Runtime) -> GateEnv:
    """The compliance gate's key (created on first use), packs and settings.

    Raises:
        ConfigError: an invalid ``[compliance]`` window.
        HashKeyError: the key file is unusable, or missing while hashed lists exist.
    """
    with runtime.sessions() as s:
        key, _ = runtime.store_key(s)
    try:
        return GateEnv.build(key, runtime.settings.compliance)
    except ValueError as exc:
        raise ConfigError(f"[compliance]: {exc}") from exc


def make_clock(runtime: Runtime) -> Clock:
    """The controller's clock (shifted only by ``VOICECAST_CLOCK_START`` on the sandbox)."""
    return clock_from_env(sandbox=runtime.sandbox is not None)


def speaker(runtime: Runtime) -> Speaker:
    """Local text-to-speech into the PBX's sounds folder (``<sounds_dir>/tts``)."""
    return Speaker(
        cache_dir=runtime.sounds_dir / "tts",
        cache_dir_on_pbx=posixpath.join(runtime.sounds_dir_on_pbx, "tts"),
        max_duration=runtime.settings.audio.max_duration,
    )


def make_dialer(runtime: Runtime) -> Dialer:
    """A dialer on the configured PBX (not started), serving the call-back line too."""
    gate = gate_env(runtime)
    clock = make_clock(runtime)
    line = CallbackLine(runtime.sessions, gate.key, speaker(runtime).speak, clock)
    backend, nodes = pbx_nodes(runtime, line.serve)
    return Dialer(
        runtime.sessions,
        backend,
        plan_builder(runtime),
        gate=gate,
        max_call_duration=runtime.settings.dialer.max_call_duration,
        clock=clock,
        recordings_max_days=runtime.settings.retention.recordings_days,
        alert_after=runtime.settings.dialer.alert_after_pbx_failures,
        nodes=nodes,
    )


def log_exposure(settings: Settings, parts: tuple[ExposedPart, ...]) -> list[str]:
    """Log at WARNING what ``parts`` of this configuration expose beyond loopback
    (:func:`voicecast.config.exposure_warnings`); returns the lines logged."""
    lines = exposure_warnings(settings, parts)
    for line in lines:
        log.warning("%s", line)
    return lines


@as_system
async def run_dialer(
    runtime: Runtime,
    campaign_names: list[str] | None = None,
    *,
    on_started: Callable[[Dialer], Coroutine[Any, Any, None]] | None = None,
    wait_for_pbx: bool = False,
) -> bool:
    """Start the dialer and run it until the named campaigns finish (or forever when None).

    SIGTERM/SIGINT stop new Originates and let calls in progress finish (up to
    :data:`DRAIN_GRACE` seconds) before returning.

    Args:
        on_started: run beside the dialer once it has started (at once when
            ``wait_for_pbx``: e.g. the console shows the PBX as down meanwhile).
        wait_for_pbx: a PBX unreachable at start-up is waited for with back-off
            (:meth:`Dialer.start`) instead of raising :class:`PbxUnavailable`.

    Returns:
        True when a signal stopped it, False when the campaigns finished.
    """
    log_exposure(runtime.settings, ("ami", "fastagi"))
    dialer = make_dialer(runtime)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    started = False

    def request_stop() -> None:
        stop_requested.set()
        if not started:
            log.warning("stop requested while waiting for the PBX")
            dialer.abort_start()
            return
        log.warning("stop requested: finishing calls in progress (up to %ss)", DRAIN_GRACE)

    def handle_signals(on: bool) -> None:
        """SIGTERM/SIGINT call ``request_stop`` (``on``), or get their default back."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                if on:
                    loop.add_signal_handler(sig, request_stop)
                else:
                    loop.remove_signal_handler(sig)

    watcher: asyncio.Task[None] | None = None
    if wait_for_pbx:
        handle_signals(True)
        if on_started is not None:
            watcher = asyncio.create_task(on_started(dialer))
    try:
        started = await dialer.start(wait_for_pbx=wait_for_pbx)
    except BaseException:
        if watcher is not None:
            watcher.cancel()
        raise
    if not started:  # stopped while waiting for the PBX: nothing was dialled
        handle_signals(False)
        await dialer.stop()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        return True
    runner = asyncio.create_task(dialer.run(campaign_names))
    handle_signals(True)
    if on_started is not None and watcher is None:
        watcher = asyncio.create_task(on_started(dialer))
    stopper = asyncio.create_task(stop_requested.wait())
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        handle_signals(False)
        stopper.cancel()
        await dialer.stop(grace=DRAIN_GRACE if stop_requested.is_set() else 0.0)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    if runner.done() and not runner.cancelled() and runner.exception() is not None:
        raise runner.exception()  # type: ignore[misc]
    return stop_requested.is_set()


@as_system
async def serve_forever(runtime: Runtime) -> None:
    """``voicecast serve``: the dialer (every running campaign, FastAGI, the call-back line),
    the webhook delivery worker (:class:`voicecast.webhooks.DeliveryWorker`), the daily
    retention purge (:class:`voicecast.retention.RetentionJob`, at ``[retention] run_at``
    and at start when the last run is over a day old) and, when ``[web] enabled``, the web
    console and API in the same event loop, until SIGTERM/SIGINT (calls in progress get
    :data:`DRAIN_GRACE` seconds to finish).

    Raises:
        VoicecastError: the web port is taken (before any call is placed).
    """
    from voicecast.retention import daily_retention
    from voicecast.web.server import WebContext, start_web
    from voicecast.webhooks import DeliveryWorker

    # the webhook outbox's worker: exactly one per serve process, with or without the web
    # console (the dialer queues events either way)
    worker = DeliveryWorker(
        runtime.sessions,
        timeout=runtime.settings.web.webhook_timeout,
        max_attempts=runtime.settings.web.webhook_max_attempts,
        keep=timedelta(days=runtime.settings.web.webhook_keep_days),
    )
    webhooks = asyncio.create_task(worker.run(), name="webhooks")
    try:
        async with daily_retention(runtime.sessions, runtime.settings, make_clock(runtime)):
            if not runtime.settings.web.enabled:
                await run_dialer(runtime, None, wait_for_pbx=True)
                return
            web = WebContext(runtime, make_clock(runtime))
            runner = await start_web(web)  # before dialling: a taken port fails at once

            async def attach(dialer: Dialer) -> None:
                web.dialer = dialer

            try:
                await run_dialer(runtime, None, on_started=attach, wait_for_pbx=True)
            finally:
                await runner.cleanup()
    finally:
        webhooks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await webhooks
