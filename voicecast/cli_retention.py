"""CLI of retention and the record of processing: ``voicecast retention run|show``,
``voicecast register``.

Registered on :data:`voicecast.cli.main` when :mod:`voicecast.cli` is imported.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

import click

from voicecast.cli import Ctx, _runtime, console, err_console, main, pass_ctx
from voicecast.cli_layout import Field, print_records
from voicecast.errors import VoicecastError

if TYPE_CHECKING:
    from voicecast.retention import RetentionReport

KIND_LABELS: dict[str, str] = {
    "contacts": "contacts without activity",
    "call_attempts": "call attempts",
    "inbound_calls": "calls to the call-back line",
    "recordings": "recorded replies",
    "consents": "consents",
    "refusals": "refusals",
    "journal": "journal entries",
    "webhook_deliveries": "webhook deliveries",
    "opt_outs": "opt-outs",
    "opposition_lists": "opposition lists",
}


def _local(value: datetime | None, zone: tzinfo, *, date_only: bool = False) -> str:
    if value is None:
        return ""
    local = value.astimezone(zone)
    return local.date().isoformat() if date_only else local.isoformat(timespec="minutes")


def _print_report(report: RetentionReport, zone: tzinfo) -> None:
    when = _local(report.now, zone)
    if report.dry_run:
        console.print(f"retention as of {when} (dry run: nothing changed)", highlight=False)
    else:
        console.print(f"retention run at {when}", highlight=False)
    rows: list[list[str]] = []
    for item in report.kinds:
        handled = item.count is not None
        what = item.action
        if item.details:
            extra = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in item.details.items())
            what = f"{what} ({extra})"
        rows.append(
            [
                KIND_LABELS.get(item.kind, item.kind),
                f"{item.days} days" if item.days is not None else "",
                _local(item.cutoff, zone) if handled else "",
                str(item.count) if handled else "-",
                _local(item.oldest, zone, date_only=True),
                what,
            ]
        )
    # a table when it fits, else one block of lines per kind: cutoffs are never cut
    print_records(
        console,
        None,
        [
            Field("data", whole=False, min_width=12),
            Field("kept"),
            Field("cutoff"),
            Field("count", justify="right"),
            Field("oldest"),
            Field("what happens", whole=False),
        ],
        rows,
    )
    for item in report.kinds:
        if item.note:
            console.print(
                f"  {KIND_LABELS.get(item.kind, item.kind)}: {item.note}",
                highlight=False,
                markup=False,
            )
    if report.dry_run:
        console.print(
            f"would remove or anonymise {report.total()} item(s); run without --dry-run to do it",
            highlight=False,
        )
    else:
        console.print(
            f"removed or anonymised {report.total()} item(s); journal entry {report.journal_seq}",
            highlight=False,
        )


def _run(ctx: Ctx, dry_run: bool, as_json: bool) -> None:
    from voicecast.app import make_clock
    from voicecast.journal.store import acting_as, cli_actor
    from voicecast.retention import run_in_session

    runtime = _runtime(ctx)
    zone = runtime.report_zone()
    now = make_clock(runtime).now()
    with acting_as(cli_actor()):
        report = run_in_session(runtime.sessions, runtime.settings, now, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        _print_report(report, zone)


@main.group()
def retention() -> None:
    """Storage limitation (GDPR art. 5(1)(e)): purge what outlived its retention period.

    \b
    `voicecast serve` runs the purge daily at [retention] run_at (local time), and at
    start when the last run is over a day old. Periods: the [retention] section.
    """


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Show what would go; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def retention_run(ctx: Ctx, dry_run: bool, as_json: bool) -> None:
    """Purge or anonymise now everything past its retention period, and journal it.

    Prints, per kind of data: the period, the cutoff (times in [report] timezone, else
    local), how many items go and what happens to them (deleted, anonymised). Opt-outs
    and opposition lists are never purged.
    """
    _run(ctx, dry_run, as_json)


@retention.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def retention_show(ctx: Ctx, as_json: bool) -> None:
    """Same as `retention run --dry-run`, plus when the purge last ran."""
    from voicecast.retention import last_run

    _run(ctx, True, as_json)
    if not as_json:
        runtime = _runtime(ctx)
        with runtime.sessions() as s:
            last = last_run(s)
        zone = runtime.report_zone()
        console.print(
            f"last run: {_local(last, zone) if last else 'never'}",
            highlight=False,
        )


# --------------------------------------------------------------------------- register


@main.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "pdf"]),
    default="md",
    show_default=True,
    help="Markdown or PDF.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (default: standard output; a PDF needs a file or a pipe).",
)
@pass_ctx
def register(ctx: Ctx, fmt: str, output: Path | None) -> None:
    """Print the record of processing activities (GDPR art. 30(1)) of this installation.

    \b
    Built from the configuration ([organisation], [retention], [web], [compliance]) and
    the database (campaigns' declared purposes, webhook hosts, accounts). Values missing
    from [organisation] print as "to complete".
    """
    from voicecast.app import make_clock
    from voicecast.register import build_register, render_markdown, render_pdf

    runtime = _runtime(ctx)
    now = make_clock(runtime).now()
    with runtime.sessions() as s:
        reg = build_register(s, runtime.settings, now, zone=runtime.report_zone())
    data: bytes = render_pdf(reg) if fmt == "pdf" else render_markdown(reg).encode("utf-8")
    if output is not None:
        try:
            output.write_bytes(data)
        except OSError as exc:
            raise VoicecastError(f"cannot write {output}: {exc.strerror}") from exc
        err_console.print(f"record of processing written to {output}", highlight=False)
        return
    if fmt == "pdf" and sys.stdout.isatty():
        raise VoicecastError("a PDF is not for the terminal: give -o FILE (or pipe it)")
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
