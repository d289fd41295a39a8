"""CLI of the compliance stores: ``consent``, ``optout``, ``opposition``, ``refusal``.

Registered on :data:`voicecast.cli.main` when :mod:`voicecast.cli` is imported (its last line
imports this module).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import phonenumbers
from rich.markup import escape
from rich.table import Table

from voicecast.cli import Ctx, _runtime, console, err_console, main, pass_ctx
from voicecast.compliance.types import Purpose
from voicecast.errors import VoicecastError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from voicecast.app import Runtime

REFUSAL_SILENCE = timedelta(days=60)
"""France: no call or attempt for 60 days after a refusal (Code de la consommation D223-9)."""


# --------------------------------------------------------------------------- helpers


def _region(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise click.BadParameter(f"{value!r} is not a region code such as FR, US, GB")
    return region


def _timezone(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(
            f"{value!r} is not an IANA time zone such as Europe/Paris"
        ) from None
    return value


timezone_option = click.option(
    "--timezone",
    "timezone_name",
    default="Europe/Paris",
    show_default=True,
    callback=_timezone,
    help="Zone of --at times written without an offset, and of the times shown.",
)

region_option = click.option(
    "--region",
    default="FR",
    show_default=True,
    callback=_region,
    help="Country (ISO 3166 code) of numbers written without +country code.",
)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _when(value: str | None, option: str, zone: tzinfo) -> datetime:
    """``value`` (ISO 8601; naive = ``zone``) as an aware UTC instant; now when None."""
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise VoicecastError(
            f"{option}: {value!r} is not ISO 8601 (e.g. 2025-03-01T14:30:00+01:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _local(value: datetime | None, zone: tzinfo) -> str:
    return "" if value is None else value.astimezone(zone).isoformat(timespec="seconds")


def _status_words(status: str) -> str:
    """How a consent status reads: "withdrawn" may be a refusal that never was a grant."""
    return "refused or withdrawn" if status == "withdrawn" else status


def _number(raw: str, region: str) -> str:
    from voicecast.compliance.numberfile import parse_number

    return parse_number(raw, region)


def _hash_key(runtime: Runtime, session: Session) -> bytes:
    """The keyed-hash key; created on first use, never while hashed data exists.

    Raises:
        HashKeyError: the key file is missing while the database holds hashes made with it,
            or it is malformed or readable by others.
    """
    key, created = runtime.store_key(session)
    if created:
        path = runtime.settings.path(runtime.settings.compliance.hash_key_file)
        err_console.print(
            f"created the hash key {path}: back it up with the database (without it the "
            "opt-out and opposition lists cannot be matched)",
            highlight=False,
            markup=False,
        )
    return key


def _print_samples(title: str, samples: list[tuple[int, str]], total: int) -> None:
    if not samples:
        return
    err_console.print(f"{title} ({total}):", highlight=False, markup=False)
    for line, reason in samples:
        err_console.print(f"  line {line}: {reason}", highlight=False, markup=False)
    if total > len(samples):
        err_console.print(f"  ... and {total - len(samples)} more", highlight=False, markup=False)


# --------------------------------------------------------------------------- consent


@main.group()
def consent() -> None:
    """The consent ledger: who agreed to be called, for what purpose, and the proof.

    \b
    Automated marketing calls need prior consent: France CPCE L34-5 (and, from
    2026-08-11, all canvassing of consumers: loi 2025-594 art. 13), US 47 CFR
    64.1200(a)(2)-(3), UK PECR reg. 19. The ledger is append-only: a withdrawal is a new
    record; the latest record at the time of the call decides.
    """


@consent.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--timezone",
    "timezone_name",
    default="Europe/Paris",
    show_default=True,
    callback=_timezone,
    help="Zone of dates written without an offset.",
)
@region_option
@click.option("--skip-invalid", is_flag=True, help="Import the valid rows, list the others.")
@click.option(
    "--purpose",
    type=click.Choice([p.value for p in Purpose]),
    help="Purpose of every row when the file has no purpose column.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def consent_import(
    ctx: Ctx,
    file: Path,
    timezone_name: str,
    region: str,
    skip_invalid: bool,
    purpose: str | None,
    as_json: bool,
) -> None:
    """Append the consent records of a CSV or .xlsx FILE to the ledger (all or nothing).

    \b
    Columns (header names in English or French, case and accents ignored):
      phone    phone, number, téléphone, mobile...
      purpose  purpose, finalité: marketing | informational (or --purpose for all rows)
      status   status, statut: granted | withdrawn (yes/no, opt-in/opt-out, oui/non,
               accordé/retiré)
      date     date, recorded_at, timestamp, consent date: ISO 8601, or dd/mm/yyyy
               [HH:MM[:SS]] in --timezone
      proof    proof, proof_ref, preuve: where the proof is kept
      source   (optional) form, contract, recording, email, paper, sms, web...
      wording  (optional) wording, wording_version, version
    An invalid row refuses the whole file (line and field named) unless --skip-invalid.
    """
    from voicecast.compliance.consent import import_consents

    runtime = _runtime(ctx)
    with runtime.sessions() as s, s.begin():
        summary = import_consents(
            s,
            file,
            default_region=region,
            timezone=timezone_name,
            skip_invalid=skip_invalid,
            purpose=purpose,
        )
    if as_json:
        _echo_json(summary.to_dict())
        return
    console.print(
        f"consents from {file}: {summary.imported} recorded, {summary.duplicates} already "
        f"in the ledger, {summary.rejected} rejected (batch {summary.batch})",
        highlight=False,
        markup=False,
    )
    _print_samples("rejected rows", summary.rejects[:20], summary.rejected)


@consent.command("add")
@click.argument("number")
@click.option(
    "--purpose", type=click.Choice([p.value for p in Purpose]), required=True, help="Purpose."
)
@click.option("--source", required=True, help="How it was collected: form, contract, web...")
@click.option("--proof", required=True, help="Where the proof is kept (document, recording...).")
@click.option("--wording", help="Version of the consent text the person saw.")
@click.option(
    "--withdrawn", is_flag=True, help="Record a refusal or withdrawal instead of a grant."
)
@click.option("--at", "at_text", help="When (ISO 8601; default now; no offset = --timezone).")
@timezone_option
@region_option
@pass_ctx
def consent_add(
    ctx: Ctx,
    number: str,
    purpose: str,
    source: str,
    proof: str,
    wording: str | None,
    withdrawn: bool,
    at_text: str | None,
    timezone_name: str,
    region: str,
) -> None:
    """Append one consent (or, with --withdrawn, a refusal or withdrawal) of NUMBER to the
    ledger. A time without an offset is read in --timezone, as in consent import."""
    from voicecast.compliance.consent import record_consent

    runtime = _runtime(ctx)
    zone = ZoneInfo(timezone_name)
    at = _when(at_text, "--at", zone)
    with runtime.sessions() as s, s.begin():
        record = record_consent(
            s,
            phone=number,
            purpose=purpose,
            status="withdrawn" if withdrawn else "granted",
            recorded_at=at,
            source=source,
            proof_ref=proof,
            wording_version=wording,
            default_region=region,
            key=_hash_key(runtime, s),
        )
    console.print(
        f"{record.phone_e164}: {record.purpose} consent {_status_words(record.status)} at "
        f"{_local(record.recorded_at, zone)} (source {record.source})",
        highlight=False,
        markup=False,
    )


@consent.command("show")
@click.argument("number")
@region_option
@click.option(
    "--timezone",
    "timezone_name",
    default="Europe/Paris",
    show_default=True,
    callback=_timezone,
    help="Zone of the times shown (ISO 8601 with their offset; --json: UTC).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@pass_ctx
def consent_show(ctx: Ctx, number: str, region: str, timezone_name: str, as_json: bool) -> None:
    """The ledger history of NUMBER (every purpose), oldest first, and what is in force now.

    A "withdrawn" record is a refusal or a withdrawal (it need not follow a grant)."""
    from voicecast.compliance.consent import PURPOSES, consent_history, consent_states

    runtime = _runtime(ctx)
    zone = ZoneInfo(timezone_name)
    e164 = _number(number, region)
    now = datetime.now(UTC)
    with runtime.sessions() as s:
        history = consent_history(s, e164)
        current = {p: consent_states(s, [e164], p, now).get(e164) for p in PURPOSES}
    rows = [
        {
            "recorded_at": r.recorded_at.isoformat(),
            "purpose": r.purpose,
            "status": r.status,
            "source": r.source,
            "proof_ref": r.proof_ref,
            "wording_version": r.wording_version,
            "imported_at": r.imported_at.isoformat(),
            "batch": r.batch,
        }
        for r in history
    ]
    if as_json:
        _echo_json(
            {
                "number": e164,
                "in_force": {p: (st.status if st else None) for p, st in current.items()},
                "records": rows,
            }
        )
        return
    if not history:
        console.print(f"{e164}: no consent recorded", highlight=False, markup=False)
        return
    table = Table()
    table.add_column("recorded", no_wrap=True)  # one ISO 8601 instant, never split
    for title in ("purpose", "status", "source", "proof", "wording"):
        table.add_column(title)
    for r in history:
        table.add_row(
            _local(r.recorded_at, zone),
            r.purpose,
            r.status,
            escape(r.source),
            escape(r.proof_ref),
            escape(r.wording_version or ""),
        )
    console.print(table)
    for purpose, state in current.items():
        text = (
            "none"
            if state is None
            else f"{_status_words(state.status)} since {_local(state.recorded_at, zone)}"
        )
        console.print(f"in force now, {purpose}: {text}", highlight=False, markup=False)


# --------------------------------------------------------------------------- opt-outs


@main.group()
def optout() -> None:
    """The organisation's opt-out list: numbers that asked not to be called again.

    \b
    The right to object to marketing is absolute (GDPR art. 21(2)-(3); CPCE L34-5); US
    company opt-outs are honoured within 10 business days (FCC 24-24). Numbers are kept
    as keyed hashes (CNIL guidance), apart from contact lists: re-importing or deleting a
    list does not lose them. Key presses and call-backs are recorded by the dialer.
    """


@optout.command("add")
@click.argument("number")
@click.option("--note", help="Free text (200 characters), e.g. how the request came.")
@region_option
@pass_ctx
def optout_add(ctx: Ctx, number: str, note: str | None, region: str) -> None:
    """Put NUMBER on the opt-out list (idempotent: the earliest request is kept)."""
    from voicecast.compliance.suppression import add_opt_out, opt_out_record

    runtime = _runtime(ctx)
    e164 = _number(number, region)
    with runtime.sessions() as s, s.begin():
        key = _hash_key(runtime, s)
        added = add_opt_out(s, key, e164, source="cli", at=datetime.now(UTC), note=note)
        record = opt_out_record(s, key, e164)
    since = _local(record.recorded_at if record else None, runtime.report_zone())
    console.print(
        f"{e164}: opted out" if added else f"{e164}: already opted out since {since}",
        highlight=False,
        markup=False,
    )


@optout.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@region_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def optout_import(ctx: Ctx, file: Path, region: str, as_json: bool) -> None:
    """Put every number of FILE on the opt-out list (CSV with a phone column, .xlsx, or one
    number per line); invalid lines are skipped and listed."""
    from voicecast.compliance.suppression import import_opt_outs

    runtime = _runtime(ctx)
    with runtime.sessions() as s, s.begin():
        key = _hash_key(runtime, s)
        summary = import_opt_outs(s, key, file, region)
    if as_json:
        _echo_json(summary.to_dict())
        return
    console.print(
        f"opt-outs from {file}: {summary.added} added, {summary.already} already opted out "
        f"or repeated, {summary.invalid_lines} invalid lines",
        highlight=False,
        markup=False,
    )
    _print_samples("invalid lines", summary.invalid_samples, summary.invalid_lines)


@optout.command("check")
@click.argument("number")
@region_option
@pass_ctx
def optout_check(ctx: Ctx, number: str, region: str) -> None:
    """Say whether NUMBER is on the opt-out list, and since when (exit status 0 either way)."""
    from voicecast.compliance.suppression import opt_out_record

    runtime = _runtime(ctx)
    e164 = _number(number, region)
    with runtime.sessions() as s, s.begin():
        record = opt_out_record(s, _hash_key(runtime, s), e164)
    if record is None:
        console.print(f"{e164}: not opted out", highlight=False, markup=False)
    else:
        console.print(
            f"{e164}: opted out since {_local(record.recorded_at, runtime.report_zone())} "
            f"({record.source})",
            highlight=False,
            markup=False,
        )


# --------------------------------------------------------------------------- opposition lists


def _as_of(value: str) -> datetime:
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0, 0), tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise VoicecastError(f"--as-of: {value!r} is not a date YYYY-MM-DD") from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@main.group()
def opposition() -> None:
    """National opposition lists ("do not call" registers), matched before every call.

    \b
      bloctel  France, Code de la consommation L223-1: scrub at least every 30 days
      us-dnc   US National Do Not Call Registry, 47 CFR 64.1200(c)(2): a version no
               older than 31 days
      tps      UK Telephone Preference Service, PECR reg. 21: screen at least every 28 days
    Numbers are stored only as keyed hashes (HMAC-SHA256), as CNIL guidance asks; keep the
    key file ([compliance] hash_key_file) backed up with the database.
    """


@opposition.command("import")
@click.argument("name", type=click.Choice(["bloctel", "us-dnc", "tps"]))
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--as-of",
    "as_of",
    metavar="YYYY-MM-DD",
    required=True,
    help="The date of this version of the list, as given by the registry download (not the "
    "day you import it): the freshness checks count from it (max age: Bloctel 30 days, "
    "US DNC 31, TPS 28).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def opposition_import(ctx: Ctx, name: str, file: Path, as_of: str, as_json: bool) -> None:
    """Replace the stored version of list NAME with the numbers of FILE (atomically).

    \b
    FILE: one number per line (Bloctel return file, TPS extract), a CSV/.xlsx with a
    phone column, or the US DNC download (AreaCode,PhoneNumber lines such as 202,5550123).
    National numbers are read as FR (bloctel), US (us-dnc) or GB (tps). Duplicates are
    stored once; invalid lines are counted and the first 20 listed. A file without any
    valid number is refused and the stored version kept. --as-of (required) is the date
    of the list version, as given by the registry download: it dates the list for the
    freshness checks (Bloctel 30 days, US DNC 31, TPS 28).
    """
    from voicecast.compliance.suppression import import_opposition_list

    runtime = _runtime(ctx)
    list_date = _as_of(as_of)
    with runtime.sessions() as s, s.begin():
        key = _hash_key(runtime, s)
        with err_console.status(f"{name}: reading and hashing {file}..."):
            summary = import_opposition_list(
                s, key, name, file, as_of=list_date, now=datetime.now(UTC)
            )
    if as_json:
        _echo_json(summary.to_dict())
        return
    replaced = (
        f" (replaces {summary.replaced_entries} entries)"
        if summary.replaced_entries is not None
        else ""
    )
    console.print(
        f"{name}: {summary.entries} numbers stored as of {summary.list_date.date()}{replaced}; "
        f"{summary.lines_read} lines read, {summary.invalid_lines} invalid",
        highlight=False,
        markup=False,
    )
    _print_samples("invalid lines", summary.invalid_samples, summary.invalid_lines)


@opposition.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_ctx
def opposition_status_cmd(ctx: Ctx, as_json: bool) -> None:
    """Each national list: entries, version date, age in days against its legal maximum
    (Bloctel 30 days, L223-1; US DNC 31 days, 64.1200(c)(2); TPS 28 days, PECR reg. 21).

    Also checks the hash key: when it is missing or is not the key the lists were hashed
    with, the stored lists cannot be matched (state "cannot be matched"; exit status 1)."""
    from voicecast.compliance.keys import HashKeyError
    from voicecast.compliance.packs import OPPOSITION_LISTS
    from voicecast.compliance.suppression import (
        hashed_data_present,
        load_store_key,
        opposition_status,
    )

    runtime = _runtime(ctx)
    settings = runtime.settings
    key_path = settings.path(settings.compliance.hash_key_file)
    now = datetime.now(UTC)
    key_problem: str | None = None
    with runtime.sessions() as s:
        stored = {info.name: info for info in opposition_status(s)}
        # no key and nothing hashed yet is fine (the first import creates it): not created here
        if key_path.exists() or hashed_data_present(s) is not None:
            try:
                load_store_key(s, key_path)
            except HashKeyError as exc:
                key_problem = str(exc)
    rows: list[dict[str, Any]] = []
    for name, spec in OPPOSITION_LISTS.items():
        info = stored.get(name)
        rows.append(
            {
                "name": name,
                "country": spec.country,
                "entries": info.entries if info else None,
                "list_date": info.list_date.isoformat() if info else None,
                "imported_at": info.imported_at.isoformat() if info else None,
                "age_days": info.age_days(now) if info else None,
                "max_age_days": spec.max_age_days,
                "state": _list_state(info, now, key_problem),
                "source": spec.source,
            }
        )
    if as_json:
        _echo_json(rows)
    else:
        table = Table("list", "country", "entries", "list date", "days old", "max", "state")
        for row in rows:
            table.add_row(
                row["name"],
                row["country"],
                "" if row["entries"] is None else str(row["entries"]),
                (row["list_date"] or "")[:10],
                "" if row["age_days"] is None else str(row["age_days"]),
                str(row["max_age_days"]),
                row["state"],
            )
        console.print(table)
    if key_problem is not None:
        raise VoicecastError(f"the opt-out and opposition lists cannot be matched: {key_problem}")


def _list_state(info: Any, now: datetime, key_problem: str | None) -> str:
    if info is None:
        return "not imported"
    if key_problem is not None:
        return "cannot be matched"
    return "stale" if info.stale(now) else "ok"


# --------------------------------------------------------------------------- refusals


@main.group()
def refusal() -> None:
    """Refusals: the callee declined the offer.

    France: no call or attempt to that number for 60 days afterwards (Code de la
    consommation D223-9). Numbers are kept as keyed hashes.
    """


@refusal.command("add")
@click.argument("number")
@click.option("--at", "at_text", help="When (ISO 8601; default now; no offset = --timezone).")
@timezone_option
@region_option
@pass_ctx
def refusal_add(
    ctx: Ctx, number: str, at_text: str | None, timezone_name: str, region: str
) -> None:
    """Record that NUMBER declined the offer (60 days of silence in France, D223-9).

    A time without an offset is read in --timezone."""
    from voicecast.compliance.suppression import add_refusal

    runtime = _runtime(ctx)
    zone = ZoneInfo(timezone_name)
    at = _when(at_text, "--at", zone)
    e164 = _number(number, region)
    with runtime.sessions() as s, s.begin():
        add_refusal(s, _hash_key(runtime, s), e164, at=at, source="cli")
    console.print(
        f"{e164}: refusal recorded at {_local(at, zone)}; in France no call before "
        f"{_local(at + REFUSAL_SILENCE, zone)} (Code de la consommation D223-9)",
        highlight=False,
        markup=False,
    )
