"""CLI of the proof journal: ``voicecast journal verify|export|verify-bundle|public-key|show``.

Registered on :data:`voicecast.cli.main` when :mod:`voicecast.cli` is imported.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from voicecast.cli import Ctx, _runtime, console, err_console, main, pass_ctx
from voicecast.errors import VoicecastError

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _instant(value: str | None, option: str, zone: tzinfo, *, end: bool = False) -> datetime | None:
    """``--from``/``--to`` as an aware instant: ISO 8601, naive read in ``zone``; a bare date
    is the start of that day, or for ``end`` the start of the next (the day is included)."""
    if value is None:
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise VoicecastError(
            f"{option}: {value!r} is not a date or ISO 8601 instant (e.g. 2026-11-01 or "
            "2026-11-01T14:30:00+01:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    if end and _DATE_ONLY.fullmatch(text):
        parsed = (parsed.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=zone)
    return parsed


def _require_database(ctx: Ctx) -> None:
    """Refuse to read a journal that does not exist: opening a missing SQLite file would
    create an empty one and report it intact (a cron job run from the wrong folder).

    Raises:
        VoicecastError: the configured SQLite database file does not exist.
    """
    from voicecast.storage.db import sqlite_file

    path = sqlite_file(ctx.settings.database_url())
    if path is not None and not path.exists():
        where = ctx.settings.source or "no voicecast.toml found: defaults"
        raise VoicecastError(
            f"no database at {path} ({where}): run voicecast from your installation's "
            "folder or pass --config"
        )


@main.group()
def journal() -> None:
    """The proof journal: hash-chained record of every gate decision, call, message drop,
    opt-out, consent, import, erasure and console/API change.

    \b
    People appear only as the keyed hash of their number. Entries cannot be updated or
    deleted (database triggers); `verify` finds any entry edited, removed or reordered
    behind voicecast's back, `export` hands an auditor a signed copy.
    """


@journal.command("verify")
@click.option(
    "--against",
    "bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also check that the entries of this exported bundle are still in the database, "
    "unchanged (catches a truncated tail whose chain head was rewritten too).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def journal_verify(ctx: Ctx, bundle: Path | None, as_json: bool) -> None:
    """Check the whole chain: every entry's hash, every link, no gap, the head.

    Exits 0 when intact, 1 when broken, naming the first broken entry.
    """
    from voicecast.journal.bundle import compare_with_database, verify_bundle
    from voicecast.journal.store import head, verify

    _require_database(ctx)
    if bundle is not None:
        from voicecast.journal.bundle import load_signing_key

        key_path = ctx.settings.path(ctx.settings.journal.signing_key_file)
        if not key_path.exists():
            raise VoicecastError(
                f"no journal signing key at {key_path}: a bundle can only vouch for this "
                "database when it is signed with this organisation's key"
            )
        sound = verify_bundle(bundle, load_signing_key(key_path, create=False).public_key())
        if not sound.ok:
            raise VoicecastError(
                f"{bundle} is not a sound bundle ({sound.problems[0]}): it cannot vouch for "
                "the database; check it with `voicecast journal verify-bundle`"
            )
    runtime = _runtime(ctx)
    with runtime.sessions() as s:
        try:
            h = head(s)
        except LookupError:
            err_console.print(
                "[bold red]journal broken:[/] the chain head (table journal_head) was deleted "
                "outside voicecast",
                highlight=False,
            )
            sys.exit(1)
        report = verify(s)
        problems = [f"entry {seq}: {text}" for seq, text in report.problems]
        if bundle is not None:
            problems += compare_with_database(s, bundle)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": not problems,
                    "checked": report.checked,
                    "first_seq": report.first_seq,
                    "last_seq": report.last_seq,
                    "head": {"seq": h.seq, "hash": h.hash},
                    "anchor": {"seq": h.anchor_seq, "hash": h.anchor_hash},
                    "problems": problems,
                },
                indent=2,
            )
        )
    elif not problems:
        span = f"entries {report.first_seq}-{report.last_seq}" if report.checked else "no entries"
        console.print(
            f"journal intact: {report.checked} entries checked ({span}), head {h.hash[:16]}…",
            highlight=False,
        )
        if h.anchor_seq:
            console.print(
                f"entries 1-{h.anchor_seq} were purged by retention; the chain is anchored on "
                f"entry {h.anchor_seq}'s hash {h.anchor_hash[:16]}…",
                highlight=False,
            )
    else:
        err_console.print(f"[bold red]journal broken:[/] {problems[0]}", highlight=False)
        for line in problems[1:20]:
            err_console.print(f"  {line}", highlight=False, markup=False)
        if len(problems) > 20:
            err_console.print(f"  … and {len(problems) - 20} more", highlight=False)
    if problems:
        sys.exit(1)


@journal.command("export")
@click.option("--from", "since", metavar="WHEN", help="First day or instant (report zone).")
@click.option("--to", "until", metavar="WHEN", help="Last day (included) or end instant.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The bundle to write (.zip).",
)
@click.option("--force", is_flag=True, help="Export even if the chain does not verify.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file at --output.")
@pass_ctx
def journal_export(
    ctx: Ctx, since: str | None, until: str | None, output: Path, force: bool, overwrite: bool
) -> None:
    """Write a signed bundle of the entries between --from and --to, for an auditor.

    \b
    The bundle (a ZIP) holds the entries, a manifest (range, first and last hashes, the
    chain head) and its Ed25519 signature. The signing key ([journal] signing_key_file) is
    created on first export: give auditors `voicecast journal public-key`.
    """
    from voicecast.app import make_clock
    from voicecast.journal.bundle import export_bundle, load_signing_key
    from voicecast.journal.store import verify

    _require_database(ctx)
    if output.exists() and not overwrite:
        raise VoicecastError(f"{output} exists: choose another name, or add --overwrite")
    if not output.parent.is_dir():
        raise VoicecastError(f"{output.parent} is not a folder: create it first")
    runtime = _runtime(ctx)
    zone = runtime.report_zone()
    start = _instant(since, "--from", zone)
    end = _instant(until, "--to", zone, end=True)
    if start is not None and end is not None and end <= start:
        raise VoicecastError("--to must be after --from")
    settings = runtime.settings
    key_path = settings.path(settings.journal.signing_key_file)
    created = not key_path.exists()
    key = load_signing_key(key_path)
    if created:
        err_console.print(
            f"created the journal signing key {key_path}: back it up; auditors check bundles "
            "with `voicecast journal public-key`",
            highlight=False,
            markup=False,
        )
    with runtime.sessions() as s:
        if not force:
            report = verify(s)
            if not report.ok:
                raise VoicecastError(
                    f"the journal does not verify ({report.first_problem()}); "
                    "run `voicecast journal verify`, or export anyway with --force"
                )
        result = export_bundle(
            s,
            key,
            output,
            since=start,
            until=end,
            now=make_clock(runtime).now(),
            organisation=settings.organisation.name,
        )
    if result.count:
        console.print(
            f"wrote {output}: {result.count} entries ({result.first_seq}-{result.last_seq}), "
            "signed",
            highlight=False,
        )
    else:
        console.print(f"wrote {output}: no entries in that range (signed, empty)", highlight=False)
    if not result.chain.ok:
        err_console.print(
            f"warning: the journal does not verify: {result.chain.first_problem()}",
            highlight=False,
            markup=False,
        )


@journal.command("verify-bundle")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    "key_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The organisation's public key (PEM) obtained from it directly. Without it, the "
    "copy inside the bundle is used: that proves integrity, not who signed.",
)
@click.option("--json", "as_json", is_flag=True)
def journal_verify_bundle(bundle: Path, key_file: Path | None, as_json: bool) -> None:
    """Check an exported bundle on its own (no database needed): signature, digest, chain.

    Exits 0 when sound, 1 otherwise.
    """
    from voicecast.journal.bundle import load_public_key, verify_bundle

    public = None
    if key_file is not None:
        try:
            public = load_public_key(key_file.read_bytes())
        except OSError as exc:
            raise VoicecastError(f"{key_file}: cannot read it ({exc.strerror})") from None
    report = verify_bundle(bundle, public)
    meta = report.manifest.get("entries", {})
    if as_json:
        out: dict[str, Any] = {
            "ok": report.ok,
            "entries": report.count,
            "first_seq": meta.get("first_seq"),
            "last_seq": meta.get("last_seq"),
            "key_id": report.key_id,
            "key_given": public is not None,
            "problems": report.problems,
        }
        click.echo(json.dumps(out, indent=2))
    elif report.ok:
        span = (
            f"{report.count} entries ({meta.get('first_seq')}-{meta.get('last_seq')})"
            if report.count
            else "no entries (an empty range)"
        )
        console.print(f"bundle sound: {span}, signed by key {report.key_id[:16]}…", highlight=False)
        if public is None:
            err_console.print(
                "note: checked with the key inside the bundle; pass --public-key with the "
                "organisation's key to know who signed it",
                highlight=False,
            )
    else:
        err_console.print(f"[bold red]bundle broken:[/] {report.problems[0]}", highlight=False)
        for line in report.problems[1:20]:
            err_console.print(f"  {line}", highlight=False, markup=False)
    if not report.ok:
        sys.exit(1)


@journal.command("public-key")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def journal_public_key(ctx: Ctx, output: Path | None) -> None:
    """Print (or write) the public key that checks exported bundles, and its id."""
    from voicecast.journal.bundle import key_id, load_signing_key, public_pem

    settings = ctx.settings
    key_path = settings.path(settings.journal.signing_key_file)
    created = not key_path.exists()
    key = load_signing_key(key_path)
    if created:
        err_console.print(
            f"created the journal signing key {key_path} (no export had made one yet): back "
            "it up with the database; bundles are signed with it from now on",
            highlight=False,
            markup=False,
        )
    pem = public_pem(key)
    if output is not None:
        output.write_text(pem, encoding="ascii")
        err_console.print(f"wrote {output} (key id {key_id(key)})", highlight=False)
    else:
        click.echo(pem, nl=False)
        err_console.print(f"key id (SHA-256 of the raw key): {key_id(key)}", highlight=False)


@journal.command("show")
@click.option("--from", "since", metavar="WHEN", help="First day or instant (report zone).")
@click.option("--to", "until", metavar="WHEN", help="Last day (included) or end instant.")
@click.option("--kind", "kinds", multiple=True, help="Only this kind (repeatable).")
@click.option("--number", help="Only the entries about this phone number.")
@click.option("--region", default="FR", show_default=True, help="Country of a national number.")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="The most recent N entries.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines, every field.")
@pass_ctx
def journal_show(
    ctx: Ctx,
    since: str | None,
    until: str | None,
    kinds: tuple[str, ...],
    number: str | None,
    region: str,
    limit: int,
    as_json: bool,
) -> None:
    """List the most recent journal entries (oldest first), filtered: a table in a wide
    terminal, else each entry on a line with its data below it (long data is cut: --json
    prints every field in full)."""
    from sqlalchemy import select

    from voicecast.journal.chain import format_instant
    from voicecast.journal.kinds import journal_kinds
    from voicecast.journal.store import subject_of
    from voicecast.storage.models import JournalEntry

    _require_database(ctx)
    known = journal_kinds()
    unknown = sorted(set(kinds) - known)
    if unknown:
        raise click.BadParameter(
            f"unknown kind {', '.join(unknown)}; kinds: {', '.join(sorted(known))}",
            param_hint="--kind",
        )
    runtime = _runtime(ctx)
    zone = runtime.report_zone()
    start = _instant(since, "--from", zone)
    end = _instant(until, "--to", zone, end=True)
    with runtime.sessions() as s:
        query = select(JournalEntry)
        if start is not None:
            query = query.where(JournalEntry.at >= start)
        if end is not None:
            query = query.where(JournalEntry.at < end)
        if kinds:
            query = query.where(JournalEntry.kind.in_(kinds))
        if number is not None:
            from voicecast.compliance.numberfile import parse_number

            key, _created = runtime.store_key(s)
            query = query.where(
                JournalEntry.subject == subject_of(key, parse_number(number, region))
            )
        rows = list(reversed(s.scalars(query.order_by(JournalEntry.seq.desc()).limit(limit)).all()))
    if as_json:
        for row in rows:
            click.echo(
                json.dumps(
                    {
                        "seq": row.seq,
                        "at": format_instant(row.at),
                        "kind": row.kind,
                        "actor": row.actor,
                        "subject": row.subject,
                        "data": json.loads(row.data),
                        "prev_hash": row.prev_hash,
                        "hash": row.hash,
                    },
                    ensure_ascii=False,
                )
            )
        return
    if not rows:
        console.print("no journal entries match", highlight=False)
        return
    _print_entries(rows, zone)


SHOW_DATA_CHARS = (120, 1500)
"""``journal show``: the most characters of an entry's data shown in the table (wide
terminal) and under the entry (narrow terminal); ``--json`` prints it all."""

_DIGEST = re.compile(r"[0-9a-f]{64}")


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _short_digests(value: Any) -> Any:
    """``value`` (parsed JSON) with every SHA-256 hex string cut to its first 12 digits and
    ``…`` (the narrow layout; ``--json`` keeps them whole)."""
    if isinstance(value, str) and _DIGEST.fullmatch(value):
        return value[:12] + "…"
    if isinstance(value, dict):
        return {k: _short_digests(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_short_digests(v) for v in value]
    return value


def _print_entries(rows: list[Any], zone: tzinfo) -> None:
    """``journal show``'s entries (``JournalEntry`` rows): a table when the terminal is wide
    enough for every column but the data whole and the data at least 40 cells wide; else
    one line per entry (seq, instant, kind, actor, subject) with its data below, indented
    and wrapped, SHA-256 digests cut to 12 digits (times in ``zone``)."""
    from rich.padding import Padding

    from voicecast.cli_layout import Field, cell_text, print_records, table_widths

    fields = [
        Field("seq", justify="right"),
        Field("at"),
        Field("kind"),
        Field("actor"),
        Field("subject"),
        Field("data", whole=False, min_width=40),
    ]
    table = [
        [
            cell_text(value)
            for value in (
                str(row.seq),
                row.at.astimezone(zone).isoformat(timespec="seconds"),
                row.kind,
                row.actor,
                (row.subject or "")[:12],
                _cut(row.data, SHOW_DATA_CHARS[0]),
            )
        ]
        for row in rows
    ]
    if table_widths(fields, table, console.width) is not None:
        print_records(console, None, fields, table, stacked=False)
        return
    for row, cells in zip(rows, table, strict=True):
        head = Text(f"#{row.seq}  {cells[1].plain}  ", style="bold")
        head.append(row.kind, style="bold")
        head.append(f"  {row.actor}")
        if row.subject:
            head.append(f"  subject {row.subject[:12]}")
        console.print(head)
        try:  # spaced JSON wraps at item boundaries
            data = json.dumps(
                _short_digests(json.loads(row.data)), ensure_ascii=False, separators=(", ", ": ")
            )
        except ValueError:
            data = row.data
        console.print(Padding(Text(_cut(data, SHOW_DATA_CHARS[1])), (0, 0, 0, 4), expand=False))
