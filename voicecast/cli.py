"""The ``voicecast`` command line."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from voicecast import __version__
from voicecast.compliance.types import LEGAL_BASES, Audience, Purpose
from voicecast.config import (
    DEFAULT_CONFIG_TEXT,
    DEFAULT_FILE,
    Settings,
    check_config_file,
    load_settings,
)
from voicecast.dialer.policy import AMD_CHOICES_NOTSURE, AMD_CHOICES_SILENCE, DELIVER_CHOICES
from voicecast.errors import VoicecastError

F = TypeVar("F", bound=Callable[..., Any])
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
SOUNDS_DIR = Path(__file__).resolve().parent.parent / "sounds"


class Ctx:
    """Per-invocation state: the config path and, lazily, the settings."""

    def __init__(self, config: str | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The settings, loaded once; the config file's permissions are checked first.

        Raises:
            ConfigError: invalid configuration, or a config file others may change, or
                read while it holds a secret (:func:`voicecast.config.check_config_file`).
        """
        if self._settings is None:
            settings = load_settings(self.config)
            check_config_file(settings)
            self._settings = settings
        return self._settings


pass_ctx = click.make_pass_decorator(Ctx)


class VoicecastGroup(click.Group):
    """Prints a VoicecastError as one clear line and exits 1 instead of a traceback.

    Every command runs as ``acting_as(cli_actor())``: the journal entries it writes (an
    import, an opt-out, a campaign started, a user added) name ``cli:<login name>``.
    ``voicecast serve`` and the dialer of ``campaign start --wait`` reset it to ``system``
    for the dialer's own entries (:func:`voicecast.app.run_dialer`).
    """

    def invoke(self, ctx: click.Context) -> Any:
        from voicecast.journal.store import acting_as, cli_actor

        try:
            with acting_as(cli_actor()):
                return super().invoke(ctx)
        except VoicecastError as exc:
            # the message is text, not markup: "[voicecast generic pack...]" must print
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            sys.exit(1)


@click.group(cls=VoicecastGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    metavar="PATH",
    envvar="VOICECAST_CONFIG",
    help="Config file (default: ./voicecast.toml when it exists).",
)
@click.option("--verbose", "-v", count=True, help="More log output (-vv for debug).")
@click.version_option(__version__, prog_name="voicecast")
@click.pass_context
def main(ctx: click.Context, config: str | None, verbose: int) -> None:
    """voicecast: voice broadcasting through your own Asterisk.

    \b
    Typical run:
      voicecast init
      voicecast sandbox up
      voicecast audio add message.mp3 --name welcome
      voicecast contacts import clients.csv --list clients
      voicecast campaign create spring --list clients --message welcome --caller-id 0162000000
      voicecast campaign start spring --wait
      voicecast report spring
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = Ctx(config)


def _runtime(ctx: Ctx) -> Any:
    from voicecast.app import open_runtime

    return open_runtime(ctx.settings)


# --- init ------------------------------------------------------------------------------------


@main.command()
@click.option("--force", is_flag=True, help="Overwrite an existing voicecast.toml.")
@pass_ctx
def init(ctx: Ctx, force: bool) -> None:
    """Write a commented voicecast.toml (if missing) and create/upgrade the database."""
    target = Path(ctx.config) if ctx.config else Path.cwd() / DEFAULT_FILE
    if target.exists() and not force:
        console.print(f"config: {target} exists (kept)")
    else:
        # created 0600 (never readable by others, even for an instant): the [ami] secret
        # goes in it; an existing file overwritten with --force is made 0600 too
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(DEFAULT_CONFIG_TEXT)
        console.print(f"config: wrote {target}")
    ctx.config = str(target)
    runtime = _runtime(ctx)
    console.print(f"database: {runtime.settings.database_url()} is up to date")


# --- sandbox ---------------------------------------------------------------------------------


@main.group()
def sandbox() -> None:
    """The local sandbox Asterisk with the simulated telephone network."""


def _sandbox(ctx: Ctx) -> Any:
    from voicecast.sandbox import Sandbox

    return Sandbox(ctx.settings, log=lambda m: err_console.print(m, highlight=False))


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key, value in status.items():
        table.add_row(key, "" if value is None else str(value))
    console.print(table)


@sandbox.command("up")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_ctx
def sandbox_up(ctx: Ctx, as_json: bool) -> None:
    """Provision (once) and (re)start the sandbox Asterisk with the current asterisk-conf/."""
    _print_status(_sandbox(ctx).up(), as_json)


@sandbox.command("down")
@pass_ctx
def sandbox_down(ctx: Ctx) -> None:
    """Stop the sandbox Asterisk."""
    stopped = _sandbox(ctx).down()
    console.print("sandbox stopped" if stopped else "sandbox was not running")


@sandbox.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_ctx
def sandbox_status(ctx: Ctx, as_json: bool) -> None:
    """Say what runs where: AMI and FastAGI addresses, Asterisk version, folders."""
    _print_status(_sandbox(ctx).status(), as_json)


@sandbox.command("call-back")
@click.argument("caller")
@click.argument("called")
@click.option("--press", default="", help="Keys the caller presses (0-9 * #), e.g. 9.")
@click.option(
    "--after", default=4.0, show_default=True, help="Seconds after the answer to press them."
)
@pass_ctx
def sandbox_call_back(ctx: Ctx, caller: str, called: str, press: str, after: float) -> None:
    """Call CALLED (one of our caller IDs) from CALLER through the simulated network.

    Tests the call-back opt-out line: `voicecast serve` (or a running campaign) must be up
    to answer. Prints what the caller heard (a WAV file) once voicecast hangs up.
    """
    from voicecast.sandbox import place_callback

    view = _sandbox(ctx).view()
    result = asyncio.run(place_callback(view, caller, called, press=press, after=after))
    console.print(f"call-back ended after {result.seconds:.1f} s; heard: {result.heard}")


# --- audio -----------------------------------------------------------------------------------


@main.group()
def audio() -> None:
    """The audio library (messages converted to 8 kHz mono 16-bit WAV for Asterisk)."""


@audio.command("add")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name to refer to it (letters, digits, _ -).")
@click.option("--replace", is_flag=True, help="Replace an existing audio of that name.")
@pass_ctx
def audio_add(ctx: Ctx, file: Path, name: str, replace: bool) -> None:
    """Convert FILE (WAV, MP3, OGG...) and add it to the library as NAME.

    The audio is resampled to 8 kHz mono 16-bit and its loudness normalised to
    [audio] loudness_lufs (default -18 LUFS, true peaks at most -2 dBTP).
    """
    from voicecast.audio.library import add_audio

    runtime = _runtime(ctx)
    a = runtime.settings.audio
    with runtime.sessions() as s, s.begin():
        msg = add_audio(
            s,
            runtime.audio_store,
            file,
            name,
            max_duration=a.max_duration,
            silence_threshold_dbfs=a.silence_threshold_dbfs,
            loudness=a.loudness_target(),
            replace=replace,
        )
        _print_added(runtime, msg)


def _print_added(runtime: Any, msg: Any) -> None:
    """One line about an audio message just added to the library."""
    a = runtime.settings.audio
    level = f", {a.loudness_lufs:.1f} LUFS" if a.normalise_loudness else ""
    console.print(
        f"audio {msg.name}: {msg.duration_ms / 1000:.1f} s, 8 kHz mono "
        f"16-bit WAV{level} ({runtime.audio_store / msg.file_name})",
        highlight=False,
    )


@audio.command("say")
@click.argument("name")
@click.option(
    "--text",
    required=True,
    help="What to say; [pause 500ms] or [pause 1.5s] for a pause (at most 10 s).",
)
@click.option(
    "--voice",
    help="espeak-ng voice (fr, en-gb, en-us...: see `audio voices`) or "
    "piper:/path/model.onnx (default: [audio] tts_voice).",
)
@click.option("--speed", type=int, help="Words per minute, 80 to 450 (default: [audio] tts_speed).")
@click.option("--pitch", type=int, help="espeak-ng pitch, 0 to 99 (default: the voice's, 50).")
@click.option("--replace", is_flag=True, help="Replace an existing audio of that name.")
@pass_ctx
def audio_say(
    ctx: Ctx,
    name: str,
    text: str,
    voice: str | None,
    speed: int | None,
    pitch: int | None,
    replace: bool,
) -> None:
    """Speak TEXT with the local text-to-speech and add it to the library as NAME.

    \b
    Examples:
      voicecast audio say rappel --text "Bonjour, [pause 500ms] ceci est un rappel."
      voicecast audio say notice --voice en-gb --speed 140 --text "Hello, this is Acme."
    """
    from voicecast.audio.library import add_speech

    settings = ctx.settings
    a = settings.audio
    spoken_by = a.tts_voice_for(voice, speed, pitch)
    runtime = _runtime(ctx)
    with runtime.sessions() as s, s.begin():
        msg = add_speech(
            s,
            runtime.audio_store,
            text,
            name,
            voice=spoken_by,
            cache_dir=settings.path(a.tts_cache_dir),
            max_duration=a.max_duration,
            silence_threshold_dbfs=a.silence_threshold_dbfs,
            loudness=a.loudness_target(),
            replace=replace,
        )
        _print_added(runtime, msg)


@audio.command("voices")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@pass_ctx
def audio_voices(ctx: Ctx, as_json: bool) -> None:
    """List the espeak-ng voices usable with `audio say --voice` and [audio] tts_voice."""
    from voicecast.audio.tts import available_voices

    voices = available_voices("espeak-ng")
    if as_json:
        click.echo(json.dumps({"espeak-ng": voices}))
        return
    default = ctx.settings.audio.tts_voice
    console.print(
        f"espeak-ng voices ({len(voices)}; [audio] tts_voice is {default!r}):", highlight=False
    )
    console.print(" ".join(voices), highlight=False)
    console.print(
        "A variant can follow a voice: fr+f3, en-gb+m2. Piper (optional, not downloaded): "
        "--voice piper:/path/to/model.onnx",
        highlight=False,
    )


@audio.command("list")
@pass_ctx
def audio_list(ctx: Ctx) -> None:
    """List the audio library."""
    from voicecast.storage.models import AudioMessage

    runtime = _runtime(ctx)
    table = Table("name", "seconds", "source", "added")
    with runtime.sessions() as s:
        for msg in s.scalars(select(AudioMessage).order_by(AudioMessage.name)):
            table.add_row(
                msg.name,
                f"{msg.duration_ms / 1000:.1f}",
                msg.source_name,
                msg.created_at.isoformat(timespec="seconds"),
            )
    console.print(table)


@audio.command("preview")
@click.argument("campaign_name", metavar="CAMPAIGN")
@click.option(
    "--contact",
    metavar="NUMBER",
    help="The list's contact whose fields fill the merge fields (E.164 or national); "
    "default: the list's first contact.",
)
@click.option(
    "--machine", is_flag=True, help="What an answering machine records, not what a person hears."
)
@click.option(
    "--default-region",
    default="FR",
    show_default=True,
    help="Country (ISO 3166 code) of a --contact written without +country code.",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="WAV file to write (8 kHz mono 16-bit; replaced atomically).",
)
@pass_ctx
def audio_preview(
    ctx: Ctx, campaign_name: str, contact: str | None, machine: bool, default_region: str, out: Path
) -> None:
    """Write what the callee of CAMPAIGN will hear to one WAV file, without calling.

    The campaign's scenario runs as the dialer runs it, for a callee who presses nothing:
    menus time out (replayed for each retry), transfers are not answered, recordings stay
    empty; 300 ms of silence separate two prompts. --machine gives what a mailbox records
    after the beep. Prints the file, its length and each prompt (node and sound).
    """
    from voicecast.audio.convert import atomic_write_bytes
    from voicecast.campaigns.preview import PreviewError, preview

    runtime = _runtime(ctx)
    result = preview(
        runtime,
        campaign_name,
        contact=contact,
        machine=machine,
        default_region=default_region.upper(),
    )
    try:
        atomic_write_bytes(out, result.wav_bytes())
    except OSError as exc:
        raise PreviewError(f"{out}: cannot write the preview: {exc}") from exc
    who = "an answering machine records" if machine else "a person hears"
    contact_note = f", contact {result.contact}" if result.contact else ", no contact"
    console.print(
        f"{out}: {result.duration_ms / 1000:.1f} s, what {who} "
        f"(campaign {campaign_name}{contact_note})",
        highlight=False,
        markup=False,
    )
    width = max([len("node"), *(len(step.node) for step in result.steps)])
    click.echo(f"{'at s':>7}  {'secs':>6}  {'node':<{width}}  sound")
    for step in result.steps:  # plain lines: sound paths are never cut to the terminal
        click.echo(
            f"{step.start_ms / 1000:>7.1f}  {step.duration_ms / 1000:>6.1f}  "
            f"{step.node:<{width}}  {step.sound}"
        )
    ended = f"ended by: {result.ended_by}"
    if result.truncated:
        ended += " (cut at [dialer] max_call_duration: the dialer hangs up then)"
    console.print(ended, highlight=False, markup=False)


# --- contacts --------------------------------------------------------------------------------


@main.group()
def contacts() -> None:
    """Contact lists."""


_CONSENT_HEADER = re.compile(r"consent|opt.?in|rgpd|gdpr|accord|preuve|proof", re.IGNORECASE)
"""Headers of dropped columns that look like consent data (the import points at
``voicecast consent import``)."""


@contacts.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--list", "list_name", required=True, help="List to import into (created).")
@click.option(
    "--default-region",
    default="FR",
    show_default=True,
    help="Country (ISO 3166 code) of numbers written without +country code.",
)
@click.option("--phone-column", help="Header of the phone column (default: recognised).")
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="FIELD=HEADER",
    help="Map a field (first_name, last_name, company, region, postal_code, professional) "
    "to a header.",
)
@click.option(
    "--rejects",
    type=click.Path(path_type=Path),
    help="Where to write rejected rows (default: FILE-rejects.csv beside FILE).",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Refuse a file with more data rows than this (split bigger files).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def contacts_import(
    ctx: Ctx,
    file: Path,
    list_name: str,
    default_region: str,
    phone_column: str | None,
    mappings: tuple[str, ...],
    rejects: Path | None,
    max_rows: int,
    as_json: bool,
) -> None:
    """Import a CSV (or .xlsx) of contacts into a list, in one transaction.

    Numbers are normalised to E.164; duplicates are merged; invalid rows are written with
    their line number and reason to a rejects CSV. Only the phone and the mapped fields are
    kept (data minimisation): other columns are dropped and listed in the summary.
    """
    from voicecast.contacts.importer import parse_contacts_file, write_rejects_csv
    from voicecast.contacts.service import ImportSummary, import_contacts

    field_map: dict[str, str] = {}
    for item in mappings:
        key, sep, header = item.partition("=")
        if not sep or not key.strip() or not header.strip():
            raise click.BadParameter(f"{item!r}: expected FIELD=HEADER", param_hint="--map")
        field_map[key.strip()] = header.strip()
    runtime = _runtime(ctx)
    result = parse_contacts_file(
        file,
        default_region=default_region.upper(),
        phone_column=phone_column,
        field_map=field_map or None,
        max_rows=max_rows,
    )
    rejects_path: Path | None = None
    with runtime.sessions() as s, s.begin():
        key, _created = runtime.store_key(s)
        imported, updated, dup_in_list = import_contacts(s, list_name, result, key=key)
        if result.rejects:  # before the commit: a rejects file that cannot be written
            rejects_path = rejects or file.with_name(f"{file.stem}-rejects.csv")  # undoes it
            write_rejects_csv(result, rejects_path)
    summary = ImportSummary.build(
        list_name, file, result, (imported, updated, dup_in_list), rejects_path
    )
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
        return
    console.print(
        f"list {list_name}: {imported} imported, {updated} updated, "
        f"{summary.duplicates} duplicates merged, {summary.rejected} rejected "
        f"({result.rows_read} rows read; phone column {result.phone_column!r})",
        highlight=False,
    )
    if result.erased:
        console.print(
            f"{result.erased} not imported: their number was erased at the person's request "
            "(GDPR art. 17); erase them from the source too",
            highlight=False,
        )
    if result.ignored_columns:
        console.print(f"columns not kept: {', '.join(result.ignored_columns)}", highlight=False)
        consent_like = [c for c in result.ignored_columns if _CONSENT_HEADER.search(c)]
        if consent_like:
            console.print(
                f"{', '.join(consent_like)}: consent data goes to the consent ledger with "
                f"`voicecast consent import {file} --purpose marketing|informational`; it "
                "needs a date column (date, recorded_at, consent date...) and, for granted "
                "consents, a proof column (proof, preuve...): see `voicecast consent import "
                "--help`",
                highlight=False,
                markup=False,
            )
    if rejects_path:
        console.print(f"rejected rows: {rejects_path}", highlight=False)


@contacts.command("lists")
@pass_ctx
def contacts_lists(ctx: Ctx) -> None:
    """List the contact lists and their sizes."""
    from sqlalchemy import func

    from voicecast.storage.models import Contact, ContactList

    runtime = _runtime(ctx)
    table = Table("list", "contacts", "created")
    with runtime.sessions() as s:
        for clist, n in s.execute(
            select(ContactList, func.count(Contact.id))
            .outerjoin(Contact, Contact.list_id == ContactList.id)
            .group_by(ContactList.id)
            .order_by(ContactList.name)
        ):
            table.add_row(clist.name, str(n), clist.created_at.isoformat(timespec="seconds"))
    console.print(table)


# --- campaigns -------------------------------------------------------------------------------


@main.group()
def campaign() -> None:
    """Create, start and watch campaigns."""


def _instant(value: str | None, option: str) -> datetime | None:
    """Parse an ISO 8601 instant with its offset (``2026-12-04T19:59+01:00``, ``...Z``)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: not an ISO 8601 instant", param_hint=option) from exc
    if parsed.tzinfo is None:
        raise click.BadParameter(
            f"{value!r}: give the offset, e.g. 2026-12-04T19:59+01:00 or ...Z", param_hint=option
        )
    return parsed


def amd_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Answering-machine detection options, shared by `campaign create` and `amd evaluate`:
    ``amd_on_silence``, ``amd_on_notsure`` and ``amd_params`` (``PARAM=VALUE`` strings)."""
    options = [
        click.option(
            "--amd-on-silence",
            type=click.Choice(AMD_CHOICES_SILENCE),
            default="machine",
            show_default=True,
            help="A silent answer counts as a machine, or as no answer.",
        ),
        click.option(
            "--amd-on-notsure",
            type=click.Choice(AMD_CHOICES_NOTSURE),
            default="human",
            show_default=True,
            help="What AMD's NOTSURE means.",
        ),
        click.option(
            "--amd",
            "amd_params",
            multiple=True,
            metavar="PARAM=MS",
            help="AMD() parameter override in ms (a count for maximum_number_of_words, a "
            "level for silence_threshold), e.g. --amd greeting=2000 (initial_silence, "
            "greeting, after_greeting_silence, total_analysis_time, min_word_length, "
            "between_words_silence, maximum_number_of_words, silence_threshold, "
            "maximum_word_length).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def declaration_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The compliance declaration's options, shared by `campaign create` and `declare`."""
    options = [
        click.option(
            "--purpose",
            type=click.Choice([p.value for p in Purpose]),
            help="Canvassing (consent, hours, caps, opposition lists apply) or a service "
            "notice (declare its --legal-basis).",
        ),
        click.option(
            "--audience",
            type=click.Choice([a.value for a in Audience]),
            help="Consumers or professionals called about their profession.",
        ),
        click.option("--sender", "sender_name", help="Who calls (named in the message)."),
        click.option("--on-behalf-of", help="Whose offer or notice it is."),
        click.option("--optout-key", help="Key that opts out during the message, e.g. 9."),
        click.option(
            "--callback", "callback_number", help="Free call-back number that records opt-outs."
        ),
        click.option(
            "--legal-basis",
            type=click.Choice(LEGAL_BASES),
            help="GDPR art. 6(1) basis of an informational campaign.",
        ),
        click.option(
            "--hours",
            help="The campaign's own window, tighter than the law, e.g. "
            "'mon-fri 10:00-12:00 14:00-18:00' (callee's local time).",
        ),
        click.option(
            "--max-attempts-30d",
            type=int,
            help="The campaign's own cap per number per 30 rolling days (lower than the law's).",
        ),
        click.option("--starts-at", help="Do not call before this instant (ISO 8601 + offset)."),
        click.option("--ends-at", help="Do not call from this instant on (ISO 8601 + offset)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _declaration(kwargs: dict[str, Any]) -> Any:
    from voicecast.campaigns.service import DeclarationSpec

    return DeclarationSpec(
        purpose=kwargs.pop("purpose"),
        audience=kwargs.pop("audience"),
        sender_name=kwargs.pop("sender_name"),
        on_behalf_of=kwargs.pop("on_behalf_of"),
        optout_key=kwargs.pop("optout_key"),
        callback_number=kwargs.pop("callback_number"),
        legal_basis=kwargs.pop("legal_basis"),
        hours=kwargs.pop("hours"),
        max_attempts_30d=kwargs.pop("max_attempts_30d"),
        starts_at=_instant(kwargs.pop("starts_at"), "--starts-at"),
        ends_at=_instant(kwargs.pop("ends_at"), "--ends-at"),
    )


@campaign.command("create")
@click.argument("name")
@click.option("--list", "list_name", required=True, help="Contact list to call.")
@click.option("--message", default="", help="Audio played to people (a library name).")
@click.option(
    "--text",
    "message_text",
    help="Instead of --message: a text spoken by local TTS, with merge fields such as "
    "{first_name} and pauses such as [pause 500ms] (the 'SMS vocal').",
)
@click.option("--voice", "tts_voice", help="TTS voice for texts (fr, en-gb, en-us...).")
@click.option("--speed", "tts_speed", type=int, help="TTS speed in words per minute.")
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scenario document (YAML or JSON): menus, transfers, recordings (default: the "
    "message, then the opt-out announcement).",
)
@click.option(
    "--deliver-to",
    type=click.Choice(DELIVER_CHOICES),
    default="both",
    show_default=True,
    help="Who gets the message: machines = voicemail drop only.",
)
@click.option("--beep-hz", type=int, help="Mailbox beep frequency used as a hint (Hz).")
@click.option("--voicemail-message", help="Audio left on answering machines (default: --message).")
@click.option("--caller-id", required=True, help="Number presented to callees (CLI).")
@click.option("--max-channels", type=int, help="Calls up at once at most.")
@click.option("--cps", type=float, help="Calls started per second at most.")
@click.option("--ring-timeout", type=float, help="Seconds to let a number ring.")
@click.option("--retries", type=int, help="Extra attempts for busy / no answer / congestion.")
@click.option("--retry-delay", type=float, help="Seconds between attempts.")
@click.option(
    "--retry-on", help="Comma-separated outcomes to retry (default busy,no_answer,congestion)."
)
@amd_options
@click.option(
    "--default-region",
    default="FR",
    show_default=True,
    help="Country of a caller ID written without +country code.",
)
@declaration_options
@pass_ctx
def campaign_create(
    ctx: Ctx,
    /,
    name: str,
    list_name: str,
    message: str,
    message_text: str | None,
    tts_voice: str | None,
    tts_speed: int | None,
    scenario_file: Path | None,
    deliver_to: str,
    beep_hz: int | None,
    voicemail_message: str | None,
    caller_id: str,
    max_channels: int | None,
    cps: float | None,
    ring_timeout: float | None,
    retries: int | None,
    retry_delay: float | None,
    retry_on: str | None,
    amd_on_silence: str,
    amd_on_notsure: str,
    amd_params: tuple[str, ...],
    default_region: str,
    **declared: Any,
) -> None:
    """Create campaign NAME (draft): who to call, what they hear, how fast, retries, and
    its compliance declaration (required before start: purpose, audience, sender, on whose
    behalf, opt-out means; see `voicecast campaign declare`)."""
    from voicecast.campaigns.service import (
        CampaignError,
        CampaignSpec,
        create_campaign,
        pacing,
        parse_amd_items,
    )
    from voicecast.scenarios.model import read_scenario_file

    declaration = _declaration(declared)
    try:
        parsed_amd = parse_amd_items(amd_params)
    except CampaignError as exc:
        raise click.BadParameter(str(exc), param_hint="--amd") from None
    runtime = _runtime(ctx)
    retry_outcomes: tuple[str, ...] | None = None
    if retry_on is not None:
        retry_outcomes = tuple(x.strip() for x in retry_on.split(",") if x.strip())
    spec = CampaignSpec(
        name=name,
        list_name=list_name,
        message=message,
        voicemail_message=voicemail_message,
        caller_id=caller_id,
        **pacing(
            runtime.settings.dialer,
            max_channels=max_channels,
            cps=cps,
            ring_timeout=ring_timeout,
            retries=retries,
            retry_delay=retry_delay,
        ),
        amd_on_silence=amd_on_silence,
        amd_on_notsure=amd_on_notsure,
        amd_params=parsed_amd,
        default_region=default_region.upper(),
        declaration=declaration,
        message_text=message_text,
        tts_voice=tts_voice,
        tts_speed=tts_speed,
        scenario_text=read_scenario_file(scenario_file) if scenario_file else None,
        deliver_to=deliver_to,
        beep_hz=beep_hz,
    )
    if retry_outcomes is not None:
        spec = dataclasses.replace(spec, retry_outcomes=retry_outcomes)
    with runtime.sessions() as s, s.begin():
        c = create_campaign(s, spec)
        console.print(
            f"campaign {c.name} created (draft): list {list_name}, caller ID {c.caller_id}, "
            f"{c.max_channels} channels, {c.cps:g} calls/s, {c.retries} retries every "
            f"{c.retry_delay:g} s",
            highlight=False,
        )
    _print_start_problems(runtime, name)


def _print_start_problems(runtime: Any, name: str) -> None:
    """Say now what would stop the campaign from starting (declaration, caller ID...)."""
    from voicecast.app import gate_env
    from voicecast.campaigns.compliance import campaign_problems
    from voicecast.campaigns.service import get_campaign

    env = gate_env(runtime)
    with runtime.sessions() as s:
        problems = campaign_problems(s, get_campaign(s, name), env, datetime.now(UTC))
    if problems:
        err_console.print(
            f"note: campaign {name} cannot start yet (fix with `voicecast campaign declare`, "
            "or see `voicecast campaign check`):",
            highlight=False,
            markup=False,
        )
        for p in problems:
            err_console.print(f"  - {p}", highlight=False, markup=False)


@campaign.command("declare")
@click.argument("name")
@declaration_options
@click.option(
    "--default-region",
    default="FR",
    show_default=True,
    help="Country of a call-back number written without +country code.",
)
@pass_ctx
def campaign_declare(ctx: Ctx, /, name: str, default_region: str, **declared: Any) -> None:
    """Set campaign NAME's compliance declaration (draft or paused campaigns).

    \b
    Required before start: --purpose, --audience, --sender, --on-behalf-of, and for
    marketing an opt-out means (--optout-key and/or --callback); informational campaigns
    give their --legal-basis. Options not given keep their value.
    """
    from voicecast.campaigns.service import declare_campaign

    spec = _declaration(declared)
    runtime = _runtime(ctx)
    with runtime.sessions() as s, s.begin():
        c = declare_campaign(s, name, spec, default_region.upper())
        console.print(
            f"campaign {c.name}: {c.purpose or '?'} / {c.audience or '?'}, sender "
            f"{c.sender_name or '?'} on behalf of {c.on_behalf_of or '?'}, opt-out "
            f"key {c.optout_key or '-'} call-back {c.callback_number or '-'}",
            highlight=False,
        )
    _print_start_problems(runtime, name)


@campaign.command("check")
@click.argument("name")
@click.option("--at", "at_text", help="Check as of this instant (ISO 8601 + offset); default now.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--contacts", "details", is_flag=True, help="Also list each contact's decision and reason."
)
@pass_ctx
def campaign_check(ctx: Ctx, name: str, at_text: str | None, as_json: bool, details: bool) -> None:
    """Dry run of the compliance gate: who campaign NAME would call now, defer or block.

    Nothing is dialled or written. Lists the campaign-level problems too (missing
    declaration, caller ID not allowed, stale national opposition list). Exit status 0
    when the campaign may run, 3 when a campaign-level problem forbids it.
    """
    from voicecast.app import gate_env
    from voicecast.campaigns.compliance import check_campaign
    from voicecast.campaigns.service import get_campaign
    from voicecast.compliance.types import reason_text

    runtime = _runtime(ctx)
    given = _instant(at_text, "--at")
    at = given or datetime.now(UTC)
    env = gate_env(runtime)
    with runtime.sessions() as s:
        result = check_campaign(s, get_campaign(s, name), env, at, details=details)
    data = result.as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        # times in the offset the user gave with --at, else the report's zone
        zone = given.tzinfo if given is not None and given.tzinfo else runtime.report_zone()

        def local(v: str | None) -> str:
            if not v:
                return "-"
            t = datetime.fromisoformat(v).astimezone(zone)
            return t.isoformat(timespec="seconds" if t.second else "minutes")

        console.print(f"campaign {name} as of {local(data['at'])}", highlight=False)
        console.print(f"  would call now: {data['would_call_now']}", highlight=False)
        for reason, d in data["deferred"].items():
            span = local(d["earliest"])
            if d["latest"] != d["earliest"]:
                span += f" .. {local(d['latest'])}"
            console.print(
                f"  deferred, {reason_text(reason)} ({reason}): {d['count']}, until {span}",
                highlight=False,
            )
        for reason, n in data["blocked"].items():
            console.print(f"  blocked, {reason_text(reason)} ({reason}): {n}", highlight=False)
        if data["already_done"]:
            console.print(f"  already done: {data['already_done']}", highlight=False)
        if data["problems"]:
            console.print("[bold red]the campaign may not dial:[/]")
            for p in result.problems:
                console.print(f"  - {p}", highlight=False, markup=False)
        else:
            console.print("  campaign-level checks: ok", highlight=False)
        if result.contacts is not None:  # one plain line per contact (grep-friendly)
            click.echo(f"{'number':<16} {'decision':<8} {'reason':<18} {'until':<25} detail")
            for c in result.contacts:
                reason = c["reason"] if c["reason"] != "ok" else "-"
                until = local(c["until"]) if c["until"] else "-"
                click.echo(
                    f"{c['number']:<16} {c['verdict']:<8} {reason:<18} {until:<25} "
                    f"{c['detail'] or '-'}"
                )
    if data["problems"]:
        sys.exit(3)


@campaign.command("list")
@pass_ctx
def campaign_list(ctx: Ctx) -> None:
    """List campaigns with their status and progress (done: contacts with a final outcome
    out of all, and how many are being dialled; created: in the report's time zone). Names
    are shown whole, to copy; in a terminal too narrow for the table each campaign is a
    block of lines."""
    from voicecast.campaigns.service import progress
    from voicecast.cli_layout import Field, print_records
    from voicecast.storage.models import Campaign

    runtime = _runtime(ctx)
    zone = runtime.report_zone()
    rows: list[tuple[str, ...]] = []
    with runtime.sessions() as s:
        for c in s.scalars(select(Campaign).order_by(Campaign.created_at)):
            p = progress(s, c.id)
            done = f"{p['done']}/{sum(p.values())}"
            if p["dialing"]:
                done += f" ({p['dialing']} dialing)"
            rows.append(
                (
                    c.name,
                    c.status,
                    c.purpose or "(undeclared)",
                    done,
                    c.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                    c.status_reason or "",
                )
            )
    if not rows:
        console.print("no campaigns yet (voicecast campaign create)", highlight=False)
        return
    print_records(
        console,
        None,
        [
            Field("campaign"),
            Field("status"),
            Field("purpose"),
            Field("done", justify="right"),
            Field("created", whole=False, min_width=10),
            Field("note", whole=False, min_width=8),
        ],
        rows,
    )


def start_and_wait(runtime: Any, name: str, wait: bool, show_progress: bool = True) -> None:
    """Start campaign ``name``; with ``wait``, dial until every contact has an outcome."""
    from voicecast.app import gate_env, make_clock, run_dialer
    from voicecast.campaigns.service import progress, start_campaign
    from voicecast.dialer.controller import lease_holder
    from voicecast.pbx.base import PbxUnavailable

    with runtime.sessions() as s, s.begin():
        c, queued = start_campaign(s, name, gate_env(runtime), make_clock(runtime).now())
        campaign_id = c.id
    console.print(f"campaign {name}: running ({queued} contacts queued)", highlight=False)
    if not wait:
        with runtime.sessions() as s:
            running = lease_holder(s)
        console.print(
            f"the running controller {running} dials it"
            if running
            else "no `voicecast serve` is running: start one, or use --wait",
            highlight=False,
        )
        return

    def snapshot() -> dict[str, int]:
        with runtime.sessions() as s:
            return progress(s, campaign_id)

    def counts() -> tuple[int, int]:
        p = snapshot()
        return p["done"], sum(p.values())

    zone = runtime.report_zone()

    def waiting_note(p: dict[str, int] | None = None) -> str:
        """' (next call ...)' when every remaining contact waits for a later instant."""
        from voicecast.compliance.types import reason_text
        from voicecast.storage.models import CampaignContact

        p = p if p is not None else snapshot()
        if p["dialing"] or not p["pending"]:
            return ""
        with runtime.sessions() as s:
            first = s.execute(
                select(CampaignContact.next_attempt_at, CampaignContact.gate_reason)
                .where(
                    CampaignContact.campaign_id == campaign_id,
                    CampaignContact.state == "pending",
                    CampaignContact.next_attempt_at.is_not(None),
                )
                .order_by(CampaignContact.next_attempt_at)
                .limit(1)
            ).first()
        due, reason = first if first is not None else (None, None)
        if due is None or due <= datetime.now(UTC) + timedelta(seconds=5):
            return ""
        why = f": {reason_text(reason)}" if reason and reason != "ok" else ""
        return f" (next call {due.astimezone(zone).isoformat(timespec='minutes')}{why})"

    async def watch(progress_bar: Progress | None) -> None:
        task = progress_bar.add_task(name, total=counts()[1]) if progress_bar else None
        while True:
            p = snapshot()
            if progress_bar is not None and task is not None:
                progress_bar.update(
                    task,
                    completed=p["done"],
                    total=sum(p.values()),
                    description=name + waiting_note(p),
                )
            await asyncio.sleep(0.5)

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show_progress,
    )
    with runtime.sessions() as s:
        holder = lease_holder(s)
    with bar:
        if holder is not None:
            console.print(f"dialing is done by the running controller {holder}", highlight=False)

            async def poll() -> None:
                watcher = asyncio.create_task(watch(bar))
                try:
                    while True:
                        with runtime.sessions() as s:
                            status = get_status(s, campaign_id)
                        if status != "running":
                            return
                        await asyncio.sleep(1.0)
                finally:
                    watcher.cancel()

            asyncio.run(poll())
        else:

            async def on_started(_dialer: Any) -> None:
                await watch(bar)

            try:
                interrupted = asyncio.run(run_dialer(runtime, [name], on_started=on_started))
            except PbxUnavailable as exc:
                hint = " (is the sandbox up? voicecast sandbox up)" if runtime.sandbox else ""
                raise VoicecastError(
                    f"{exc}{hint}; campaign {name} stays running and resumes with "
                    f"`voicecast campaign start {name} --wait` or `voicecast serve`"
                ) from exc
            if interrupted:
                left = counts()
                err_console.print(
                    f"stopped: campaign {name} stays running with {left[1] - left[0]} "
                    f"contact(s) to go{waiting_note()}; nothing dials them until "
                    f"`voicecast serve` or `voicecast campaign start {name} --wait` runs",
                    highlight=False,
                )
                sys.exit(130)
    with runtime.sessions() as s:
        from voicecast.storage.models import Campaign

        row = s.get(Campaign, campaign_id)
        status, reason = (row.status, row.status_reason) if row is not None else ("missing", None)
    if status != "completed":
        err_console.print(
            f"campaign {name}: {status}" + (f": {reason}" if reason else ""),
            highlight=False,
            markup=False,  # the reason is plain text: "[pbx]" is not rich markup
        )
        if reason and reason.startswith("alert:"):
            sys.exit(3)  # the dialer raised an alert: scripts must not read this as done


def get_status(session: Any, campaign_id: int) -> str:
    from voicecast.storage.models import Campaign

    c = session.get(Campaign, campaign_id)
    return c.status if c is not None else "missing"


@campaign.command("start")
@click.argument("name")
@click.option(
    "--wait",
    is_flag=True,
    help="Dial now, until every contact has a final outcome (progress bar). Exit status 3 "
    "when the dialer paused the campaign with an alert (its calls fail at the PBX).",
)
@pass_ctx
def campaign_start(ctx: Ctx, name: str, wait: bool) -> None:
    """Start (or resume) campaign NAME."""
    start_and_wait(_runtime(ctx), name, wait)


def _set_status(ctx: Ctx, name: str, status: str) -> None:
    from voicecast.campaigns.service import set_status

    runtime = _runtime(ctx)
    with runtime.sessions() as s, s.begin():
        set_status(s, name, status)
    console.print(f"campaign {name}: {status}", highlight=False)


@campaign.command("pause")
@click.argument("name")
@pass_ctx
def campaign_pause(ctx: Ctx, name: str) -> None:
    """Pause: no new calls; calls up now finish. `campaign start` resumes."""
    _set_status(ctx, name, "paused")


@campaign.command("stop")
@click.argument("name")
@pass_ctx
def campaign_stop(ctx: Ctx, name: str) -> None:
    """Stop: no new calls; calls up now finish."""
    _set_status(ctx, name, "stopped")


# --- report ----------------------------------------------------------------------------------


def render_report(rows: list[dict[str, Any]], fmt: str) -> str:
    """Render report rows as ``table`` (text), ``csv`` (cells through
    :func:`voicecast.csvsafe.neutralise_cell`) or ``json``."""
    from voicecast.campaigns.service import REPORT_COLUMNS
    from voicecast.csvsafe import neutralise_row

    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if fmt == "csv":
        # cells such as a contact named "=HYPERLINK(...)" get a leading apostrophe (OWASP
        # CSV Injection), as in the console's report.csv; E.164 numbers stay as they are
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(REPORT_COLUMNS)
        for row in rows:
            writer.writerow(neutralise_row(row[column] for column in REPORT_COLUMNS))
        return buf.getvalue()
    table = Table(
        "number", "outcome", "tries", "AMD", "AMD cause", "Q.850", "msg s", "last attempt", "note"
    )
    for r in rows:
        table.add_row(
            r["number"],
            r["outcome"] or f"({r['state']})",
            str(r["attempts"]),
            r["amd_status"],
            r["amd_cause"],
            str(r["q850_cause"]),
            f"{r['message_ms'] / 1000:.1f}" if isinstance(r["message_ms"], int) else "",
            r["last_attempt_at"],
            (
                f"{r['gate_reason']}: {r['gate_detail']}"
                if r["outcome"] == "blocked" or (r["state"] == "pending" and r["gate"] == "defer")
                else r["error"]
            )[:90],
        )
    out = Console(width=200, record=True, file=io.StringIO())
    out.print(table)
    return out.export_text()


@main.command()
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to a file.")
@pass_ctx
def report(ctx: Ctx, name: str, fmt: str, output: Path | None) -> None:
    """Per-contact results of campaign NAME: outcome, attempts, AMD, Q.850 cause, times."""
    from voicecast.campaigns.service import report_rows

    runtime = _runtime(ctx)
    zone = runtime.report_zone()
    with runtime.sessions() as s:
        rows = report_rows(s, name, zone)
    text = render_report(rows, fmt)
    if output:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise VoicecastError(f"cannot write the report to {output}: {exc.strerror}") from exc
        console.print(f"report written to {output}", highlight=False)
    else:
        click.echo(text, nl=not text.endswith("\n"))


# --- serve -----------------------------------------------------------------------------------


@main.command()
@pass_ctx
def serve(ctx: Ctx) -> None:
    """Run the long-lived server: the dialer for every running campaign, FastAGI, and the
    web console + REST API + /healthz + /metrics on ``[web] host:port``.

    SIGTERM stops new calls and lets calls in progress finish (up to 30 s).
    """
    from voicecast.app import serve_forever

    runtime = _runtime(ctx)
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    asyncio.run(serve_forever(runtime))


# --- demo ------------------------------------------------------------------------------------


@main.command()
@click.option("--keep-sandbox", is_flag=True, help="Leave the sandbox Asterisk running.")
@pass_ctx
def demo(ctx: Ctx, keep_sandbox: bool) -> None:
    """Call the shipped example list through the sandbox and print the report.

    Uses the sandbox Asterisk and its simulated network: nothing leaves this machine.
    """
    from voicecast.audio.library import add_audio
    from voicecast.campaigns.service import (
        CampaignSpec,
        DeclarationSpec,
        create_campaign,
        report_rows,
    )
    from voicecast.contacts.importer import parse_contacts_file
    from voicecast.contacts.service import import_contacts
    from voicecast.sandbox import Sandbox

    settings = ctx.settings
    if not settings.sandbox.enabled:
        raise VoicecastError("the demo runs on the sandbox: set [sandbox] enabled = true")
    sb = Sandbox(settings, log=lambda m: err_console.print(m, highlight=False))
    err_console.print("starting the sandbox Asterisk...")
    status = sb.up()
    err_console.print(
        f"{status['version']} on AMI {status['ami']}, FastAGI {status['fastagi']}", highlight=False
    )
    try:
        runtime = _runtime(ctx)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"demo-{stamp}"
        a = settings.audio
        result = parse_contacts_file(EXAMPLES_DIR / "contacts.csv", default_region="FR")
        # the hash key first: on a fresh database it stores its fingerprint in a transaction
        # of its own, which cannot get the write lock the one below holds (SQLite: "locked")
        with runtime.sessions() as s:
            key = runtime.store_key(s)[0]
        with runtime.sessions() as s, s.begin():
            add_audio(
                s,
                runtime.audio_store,
                SOUNDS_DIR / "example-message.wav",
                "demo-message",
                max_duration=a.max_duration,
                silence_threshold_dbfs=a.silence_threshold_dbfs,
                replace=True,
            )
            import_contacts(s, name, result, key=key)
            create_campaign(
                s,
                CampaignSpec(
                    name=name,
                    list_name=name,
                    message="demo-message",
                    caller_id="+33162000000",
                    max_channels=10,
                    cps=5,
                    ring_timeout=15,
                    retries=1,
                    retry_delay=5,
                    declaration=DeclarationSpec(
                        purpose="informational",
                        audience="b2c",
                        sender_name="Demo Energy",
                        on_behalf_of="Demo Energy",
                        optout_key="9",
                        legal_basis="contract",
                    ),
                ),
            )
        err_console.print(
            f"calling {len(result.contacts)} fictional numbers "
            "(last digit = simulated behaviour)...",
            highlight=False,
        )
        start_and_wait(runtime, name, wait=True)
        zone = runtime.report_zone()
        with runtime.sessions() as s:
            rows = report_rows(s, name, zone)
        click.echo(render_report(rows, "table"))
        click.echo(f"(report again: voicecast report {name} --format csv)")
    finally:
        if not keep_sandbox:
            sb.down()


# --- recordings ------------------------------------------------------------------------------


@main.group()
def recordings() -> None:
    """Callees' replies captured by scenario record nodes, and their retention purge."""


@recordings.command("list")
@click.option("--campaign", "campaign_name", help="Only this campaign's recordings.")
@pass_ctx
def recordings_list(ctx: Ctx, campaign_name: str | None) -> None:
    """List the recordings: attempt, node, length, when made, when deleted ([report] timezone)."""
    from voicecast.campaigns.service import get_campaign
    from voicecast.storage.models import Recording

    runtime = _runtime(ctx)
    zone = runtime.report_zone()

    def when(value: datetime | None) -> str:
        return value.astimezone(zone).isoformat(timespec="seconds") if value else ""

    table = Table()
    for header in ("attempt", "node", "duration s", "created", "delete after", "deleted"):
        table.add_column(header, overflow="fold")  # a narrow terminal wraps, never cuts
    with runtime.sessions() as s:
        query = select(Recording).order_by(Recording.created_at, Recording.id)
        if campaign_name is not None:
            query = query.where(Recording.campaign_id == get_campaign(s, campaign_name).id)
        for rec in s.scalars(query):
            table.add_row(
                rec.attempt_id,
                rec.node,
                f"{rec.duration_ms / 1000:.1f}",
                when(rec.created_at),
                when(rec.delete_after),
                when(rec.deleted_at),
            )
    console.print(table)


@recordings.command("purge")
@pass_ctx
def recordings_purge(ctx: Ctx) -> None:
    """Delete the recordings whose retention has ended (GDPR art. 5(1)(e)): their node's
    retention_days, at most [retention] recordings_days.

    `voicecast serve` (and a running campaign) does it every hour.
    """
    from voicecast.app import make_clock
    from voicecast.campaigns.retention import purge_recordings

    runtime = _runtime(ctx)
    now = make_clock(runtime).now()
    with runtime.sessions() as s, s.begin():
        max_age = timedelta(days=runtime.settings.retention.recordings_days)
        purged = purge_recordings(s, now, max_age)
    console.print(f"purged {purged} recording(s) whose retention ended", highlight=False)


# --- amd -------------------------------------------------------------------------------------


@main.group()
def amd() -> None:
    """Answering-machine detection (Asterisk AMD()): accuracy on a labelled set."""


@amd.command("evaluate")
@click.option(
    "--set",
    "set_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of WAVs with a labels.csv (file,label: human|machine|silence) "
    "[default: the shipped sounds/amd-eval].",
)
@amd_options
@click.option(
    "--concurrency", type=click.IntRange(1, 32), default=8, show_default=True, help="Calls at once."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def amd_evaluate(
    ctx: Ctx,
    set_dir: Path | None,
    amd_params: tuple[str, ...],
    amd_on_notsure: str,
    amd_on_silence: str,
    concurrency: int,
    as_json: bool,
) -> None:
    """Call the sandbox once per labelled recording, run AMD on each answer, and print the
    confusion matrices (label x AMD verdict, label x decision under the policy) and every
    recording's verdict and cause.

    Needs the sandbox running (`voicecast sandbox up`) and no dialer running (it listens on
    the FastAGI port).
    """
    from voicecast.amd_eval import DEFAULT_SET, evaluate, parse_amd_overrides, render_text

    params = parse_amd_overrides(amd_params)
    report = evaluate(
        _runtime(ctx),
        set_dir or DEFAULT_SET,
        params,
        on_notsure=amd_on_notsure,
        on_silence=amd_on_silence,
        concurrency=concurrency,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(render_text(report))


# --- user ------------------------------------------------------------------------------------


@main.group()
def user() -> None:
    """Console and API accounts: roles admin, supervisor, viewer; TOTP two-factor for all."""


def _login_url(settings: Settings) -> str:
    web = settings.web
    scheme = "https" if web.tls_cert else "http"
    host = f"[{web.host}]" if ":" in web.host else web.host
    return f"{scheme}://{host}:{web.port}/login"


def _read_new_password(from_stdin: bool) -> str:
    """The new account's password: one line of stdin, or typed twice (hidden)."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise VoicecastError("--password-stdin: no password on standard input")
        return password
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@user.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["admin", "supervisor", "viewer"]),
    required=True,
    help="admin: users and settings; supervisor: campaigns, lists, audio; viewer: read only.",
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@pass_ctx
def user_add(ctx: Ctx, name: str, role: str, password_stdin: bool) -> None:
    """Create the account NAME (e.g. the first admin).

    The password is asked twice unless --password-stdin is given (at least 12 characters,
    not containing the name). The first login asks to enrol TOTP two-factor authentication
    with an authenticator app.
    """
    from voicecast.web.accounts import create_user

    runtime = _runtime(ctx)
    password = _read_new_password(password_stdin)
    with runtime.sessions() as s, s.begin():
        create_user(s, name, role, password)
    console.print(f"user {name} ({role}) created", highlight=False)
    console.print(
        f"The first login at {_login_url(runtime.settings)} will ask to enrol TOTP "
        "two-factor authentication (scan the QR code with an authenticator app).",
        highlight=False,
    )


@user.command("list")
@pass_ctx
def user_list(ctx: Ctx) -> None:
    """List the accounts: role, two-factor enrolment, lockout, last login ([report] timezone)."""
    from voicecast.app import make_clock
    from voicecast.web.accounts import is_locked, list_users

    runtime = _runtime(ctx)
    zone = runtime.report_zone()
    now = make_clock(runtime).now()

    def when(value: datetime | None) -> str:
        return value.astimezone(zone).isoformat(timespec="seconds") if value else ""

    table = Table()
    for header in ("name", "role", "2FA", "locked until", "disabled", "last login"):
        table.add_column(header, overflow="fold")
    with runtime.sessions() as s:
        for u in list_users(s):
            table.add_row(
                u.name,
                u.role,
                "enrolled" if u.totp_enrolled_at else "pending",
                when(u.locked_until) if is_locked(u, now) else "",
                "yes" if u.disabled else "",
                when(u.last_login_at),
            )
    console.print(table)


def _user_change(ctx: Ctx, name: str, change: Callable[[Any, str], Any], done: str) -> None:
    runtime = _runtime(ctx)
    with runtime.sessions() as s, s.begin():
        change(s, name)
    console.print(f"user {name}: {done}", highlight=False)


@user.command("unlock")
@click.argument("name")
@pass_ctx
def user_unlock(ctx: Ctx, name: str) -> None:
    """Lift the lockout of NAME after too many failed logins."""
    from voicecast.web.accounts import unlock_user

    _user_change(ctx, name, unlock_user, "unlocked")


@user.command("reset-2fa")
@click.argument("name")
@pass_ctx
def user_reset_2fa(ctx: Ctx, name: str) -> None:
    """Forget the TOTP secret and recovery codes of NAME (lost phone) and end their
    sessions: they enrol again at their next login."""
    from voicecast.web.accounts import reset_two_factor

    _user_change(ctx, name, reset_two_factor, "two-factor reset, enrolment due at next login")


@user.command("disable")
@click.argument("name")
@pass_ctx
def user_disable(ctx: Ctx, name: str) -> None:
    """Disable NAME: no login, sessions ended, API tokens refused (not the last admin)."""
    from voicecast.web.accounts import set_disabled

    _user_change(ctx, name, lambda s, n: set_disabled(s, n, True), "disabled")


@user.command("enable")
@click.argument("name")
@pass_ctx
def user_enable(ctx: Ctx, name: str) -> None:
    """Enable NAME again."""
    from voicecast.web.accounts import set_disabled

    _user_change(ctx, name, lambda s, n: set_disabled(s, n, False), "enabled")


@user.command("token")
@click.argument("name")
@click.option("--name", "label", required=True, help="What the token is for (e.g. crm-sync).")
@pass_ctx
def user_token(ctx: Ctx, name: str, label: str) -> None:
    """Create a REST API token of NAME (it carries NAME's role) and print it, once.

    The token alone goes to stdout (TOKEN=$(voicecast user token ...)); send it as
    `Authorization: Bearer <token>`. Revoke it in the console's API tokens page.
    """
    from voicecast.app import make_clock
    from voicecast.web.accounts import create_api_token, get_user

    runtime = _runtime(ctx)
    with runtime.sessions() as s, s.begin():
        owner = get_user(s, name)
        token = create_api_token(s, owner.id, label, make_clock(runtime).now())
    err_console.print(
        f"API token {label!r} of {name} ({owner.role}); it is shown only now:", highlight=False
    )
    click.echo(token)


# these register their command groups on main
from voicecast import (  # noqa: E402
    cli_compliance,  # noqa: F401
    cli_journal,  # noqa: F401
    cli_retention,  # noqa: F401
    cli_subject,  # noqa: F401
)
