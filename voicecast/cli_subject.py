"""CLI of data-subject rights and proof: ``voicecast subject proof|export|erase|rectify``.

Registered on :data:`voicecast.cli.main` when :mod:`voicecast.cli` is imported.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from voicecast.cli import Ctx, _runtime, console, err_console, main, pass_ctx
from voicecast.cli_compliance import _hash_key, _local, _number, region_option
from voicecast.errors import VoicecastError


@main.group()
def subject() -> None:
    """One person's data, by phone number: proof of lawful calls, access, erasure,
    rectification (GDPR art. 15-17)."""


# --- proof ---------------------------------------------------------------------------------


def _proof_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _at(value: Any, zone: tzinfo) -> str:
    """An instant (datetime or ISO text, UTC) in the report's zone, to the second."""
    instant: datetime
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    else:
        return ""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return str(instant.astimezone(zone).isoformat(timespec="seconds"))


def _short(digest: Any, size: int = 16) -> str:
    text = str(digest or "")
    return text if len(text) <= size else text[:size] + "…"


def _proof_table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def _cells(*values: Any) -> list[Text]:
    return [Text("" if v is None else str(v)) for v in values]


def _print_proof(proof: dict[str, Any], zone: tzinfo) -> None:
    """The human form of :func:`voicecast.journal.proof.subject_proof` (rich tables; times
    in the report's zone)."""
    from voicecast.journal.events import basis_text

    out = console
    out.print(
        Text(
            f"Proof for {proof['number']} (journal subject {_short(proof['subject'])}); "
            f"times in {zone}"
        )
    )
    contacts = proof["contacts"]
    if contacts:
        table = _proof_table("Contacts holding this number", "List", "Contact", "Added", "B2B")
        for c in contacts:
            pro = {True: "professional", False: "no", None: ""}[c["professional"]]
            table.add_row(
                *_cells(c["list"] or "(deleted)", c["contact_id"], _at(c["created_at"], zone), pro)
            )
        out.print(table)
        table = _proof_table(
            "Campaigns and the legal basis each relies on for it",
            "Campaign",
            "Status",
            "Purpose",
            "Legal basis",
            "State",
            "Outcome",
            "Attempts",
            "Gate now",
        )
        for c in contacts:
            for m in c["campaigns"]:
                gate = m["gate_now"]
                table.add_row(
                    *_cells(
                        m["campaign"],
                        m["status"],
                        f"{m['purpose'] or 'marketing'}/{m['audience'] or 'b2c'}",
                        m["legal_basis_text"],
                        m["state"],
                        m["outcome"],
                        m["attempts"],
                        f"{gate['verdict']} ({gate['reason']})",
                    )
                )
        out.print(table)
    else:
        out.print(Text("No contact holds this number now."))
    for purpose, state in proof["consent_in_force"].items():
        if state is None:
            line = f"{purpose} consent: none recorded"
        else:
            line = (
                f"{purpose} consent: {state['status']} (proof {state['proof_ref'] or '-'}, "
                f"{state['source']}, {_at(state['recorded_at'], zone)}, ledger #{state['id']}"
                + (f", batch {state['batch']}" if state["batch"] else "")
                + ")"
            )
        out.print(Text(line))
    opt = proof["opt_out"]
    if opt is None:
        out.print(Text("opt-out: none"))
    else:
        where = f", campaign {opt['campaign']}" if opt["campaign"] else ""
        out.print(Text(f"opt-out: since {_at(opt['recorded_at'], zone)} ({opt['source']}{where})"))
    for r in proof["refusals"]:
        out.print(Text(f"refusal: {_at(r['refused_at'], zone)} ({r['source']})"))
    if proof["consents"]:
        table = _proof_table(
            "Consent ledger", "Recorded", "Purpose", "Status", "Source", "Proof", "Batch", "Seq"
        )
        for c in proof["consents"]:
            seq = (c["journal"] or {}).get("seq")
            table.add_row(
                *_cells(
                    _at(c["recorded_at"], zone),
                    c["purpose"],
                    c["status"],
                    c["source"],
                    c["proof_ref"],
                    c["batch"],
                    seq,
                )
            )
        out.print(table)
    _print_journal(proof, zone, basis_text)


def _print_journal(proof: dict[str, Any], zone: tzinfo, basis_text: Any) -> None:
    """The journal half of :func:`_print_proof`."""
    out = console
    journal = proof["journal"]
    if journal["drops"]:
        table = _proof_table(
            "Message drops (journal)",
            "Played",
            "Campaign",
            "To",
            "Audio",
            "Audio SHA-256",
            "Caller ID",
            "Legal basis",
            "Seq",
            "Entry hash",
        )
        for e in journal["drops"]:
            d = e["data"]
            table.add_row(
                *_cells(
                    _at(d.get("played_at") or e["at"], zone),
                    d.get("campaign"),
                    d.get("delivered_to"),
                    d.get("audio"),
                    _short(d.get("audio_sha256")),
                    d.get("caller_id"),
                    basis_text(d.get("legal_basis")),
                    e["seq"],
                    _short(e["hash"]),
                )
            )
        out.print(table)
    else:
        out.print(Text("No message drop in the journal."))
    if journal["gate_decisions"]:
        table = _proof_table(
            "Gate decisions (journal)",
            "Decided",
            "Campaign",
            "Verdict",
            "Reason",
            "Rule source",
            "Until",
            "Seq",
            "Entry hash",
        )
        for e in journal["gate_decisions"]:
            d = e["data"]
            table.add_row(
                *_cells(
                    _at(d.get("decided_at") or e["at"], zone),
                    d.get("campaign"),
                    d.get("verdict"),
                    d.get("reason"),
                    d.get("rule_source"),
                    _at(d.get("until"), zone),
                    e["seq"],
                    _short(e["hash"]),
                )
            )
        out.print(table)
    if journal["attempts"]:
        table = _proof_table(
            "Call attempts (journal)",
            "Started",
            "Campaign",
            "#",
            "Caller ID",
            "Outcome",
            "Q.850",
            "AMD",
            "Seq",
            "Entry hash",
        )
        for e in journal["attempts"]:
            d = e["data"]
            table.add_row(
                *_cells(
                    _at(d.get("started_at") or e["at"], zone),
                    d.get("campaign"),
                    d.get("attempt_no"),
                    d.get("caller_id"),
                    d.get("outcome"),
                    d.get("hangup_cause"),
                    d.get("amd_status"),
                    e["seq"],
                    _short(e["hash"]),
                )
            )
        out.print(table)
    rest = [*journal["rights"], *journal["other"], *journal["imports"]]
    if rest:
        table = _proof_table(
            "Opt-outs, refusals, consents, imports and other entries (journal)",
            "At",
            "Kind",
            "Actor",
            "What",
            "Seq",
            "Entry hash",
        )
        keys = ("source", "purpose", "status", "proof_ref", "batch", "list", "campaign")
        for e in sorted(rest, key=lambda item: int(item["seq"])):
            d = e["data"]
            what = ", ".join(f"{k}={d[k]}" for k in keys if d.get(k) not in (None, ""))
            table.add_row(
                *_cells(
                    _at(e["at"], zone), e["kind"], e["actor"], what, e["seq"], _short(e["hash"])
                )
            )
        out.print(table)
    chain = proof["chain"]
    if chain["verified"] is None:
        out.print(
            Text(
                f"journal chain: {chain['entries']} entries, not verified here; run "
                f"`{chain['hint']}`"
            )
        )
    elif chain["verified"]:
        out.print(
            Text(
                f"journal chain: verified, {chain['entries']} entries intact "
                f"(head {chain['head_seq']} {_short(chain['head_hash'])})"
            )
        )
    else:
        err_console.print(Text(f"journal chain: BROKEN: {chain['problem']}", style="bold red"))


@subject.command("proof")
@click.argument("number")
@region_option
@click.option("--json", "as_json", is_flag=True, help="Print the proof as JSON (times in UTC).")
@click.option(
    "--verify/--no-verify",
    "verify_chain",
    default=None,
    help="Verify the whole journal chain (default: only when it holds at most 200,000 "
    "entries; otherwise run `voicecast journal verify`).",
)
@pass_ctx
def subject_proof_command(
    ctx: Ctx, number: str, region: str, as_json: bool, verify_chain: bool | None
) -> None:
    """Show the proof that calls to NUMBER were lawful: every contact holding it, the legal
    basis each campaign relies on for it (consent and its proof, B2B, declared basis), its
    consents, opt-out and refusals, and from the proof journal every message drop (audio,
    SHA-256, caller ID, when, legal basis), gate decision and attempt, each with the journal
    sequence number and entry hash an auditor finds in an exported bundle (GDPR art. 5(2)).
    Read only; exits 2 when the journal chain is verified and found broken."""
    from voicecast.app import gate_env
    from voicecast.compliance.numberfile import parse_number
    from voicecast.journal.proof import subject_proof

    e164 = parse_number(number, region)
    runtime = _runtime(ctx)
    env = gate_env(runtime)
    with runtime.sessions() as s:
        proof = subject_proof(s, env.key, e164, packs=env.packs, verify_chain=verify_chain)
    if as_json:
        click.echo(json.dumps(proof, indent=2, ensure_ascii=False, default=_proof_json))
    else:
        _print_proof(proof, runtime.report_zone())
    if proof["chain"]["verified"] is False:
        sys.exit(2)


# --- export / erase / rectify ----------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (it holds personal data)."""
    import os

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise VoicecastError(f"-o {path}: cannot write the file ({exc.strerror or exc})") from None


_KIND_WORDS: dict[str, str] = {
    "contacts": "contact(s)",
    "campaign_contacts": "campaign membership(s)",
    "campaigns": "campaign membership(s)",
    "gate_decisions": "gate decision(s)",
    "call_attempts": "call attempt(s)",
    "recordings": "recorded repl(ies)",
    "consents": "consent record(s)",
    "refusals": "refusal(s)",
    "opposition_lists": "national opposition list match(es)",
    "inbound_calls": "inbound call(s)",
    "webhook_deliveries": "webhook deliveries",
    "opt_out_note": "opt-out note",
    "speech": "rendered speech file(s)",
    "uploads": "console upload(s)",
}


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {_KIND_WORDS.get(k, k)}" for k, n in counts.items() if n) or "nothing"


@subject.command("export", short_help="Everything held about NUMBER, as JSON (access).")
@click.argument("number")
@region_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON to this file (mode 0600) instead of the standard output.",
)
@pass_ctx
def subject_export(ctx: Ctx, number: str, region: str, output: Path | None) -> None:
    """Everything held about NUMBER, as JSON (GDPR art. 15 access request).

    \b
    The document (schema voicecast.subject-export, version 1) lists the contacts with
    that number in every list and their fields, campaign memberships and the gate's
    decisions, call attempts (times in UTC, outcome, hangup cause, AMD, what was played,
    keys pressed), recordings of replies (metadata), consent records, opt-out, refusals,
    national opposition lists, inbound calls, webhook deliveries and the proof journal's
    entries, with the purposes, recipients and retention periods. After an erasure it
    holds only the opt-out record. The export is journaled (subject.exported).
    """
    from voicecast.subjects import export_subject

    runtime = _runtime(ctx)
    e164 = _number(number, region)
    with runtime.sessions() as s, s.begin():
        doc = export_subject(s, _hash_key(runtime, s), e164, settings=runtime.settings)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    _write_private(output, text)
    err_console.print(f"{e164}: access document written to {output}", highlight=False, markup=False)


@subject.command("erase", short_help="Erase NUMBER but its keyed hash (erasure).")
@click.argument("number")
@region_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--vacuum",
    is_flag=True,
    help="SQLite: then rebuild the database file, so that no free space keeps an old copy "
    "of the erased rows (for a database used before this version; takes a moment alone "
    "with the database).",
)
@pass_ctx
def subject_erase(ctx: Ctx, number: str, region: str, yes: bool, vacuum: bool) -> None:
    """Erase everything held about NUMBER but its keyed hash (GDPR art. 17).

    \b
    Removes the number and the contact fields from every list, campaign, call attempt,
    recorded reply (with its WAV file), consent record, refusal, inbound call and webhook
    delivery, the speech rendered for the person and console uploads mentioning the
    number, in one transaction; then keeps the number's keyed hash on the opt-out list
    (source "erasure") so that it is never called again, even if a list holding it is
    imported later. The proof journal keeps its entries (they name the person by that
    hash only) and records the erasure. A number about which nothing is held is still
    put on the opt-out list. Refused while a call to the number is in progress.
    """
    from voicecast.subjects import SubjectFiles, collect_subject, erase_subject, summary_counts

    runtime = _runtime(ctx)
    e164 = _number(number, region)
    if not yes:
        with runtime.sessions() as s:
            doc = collect_subject(s, _hash_key(runtime, s), e164, settings=runtime.settings)
        held = summary_counts(doc)
        what = f"{_counted(held)} and their files" if held else "nothing held but the number"
        if not sys.stdin.isatty():
            raise VoicecastError(
                "subject erase asks for confirmation: add --yes to run it unattended"
            )
        click.confirm(
            f"Erase {e164} ({what})? Only its keyed hash stays, on the opt-out list",
            abort=True,
        )
    with runtime.sessions() as s, s.begin():
        result = erase_subject(s, _hash_key(runtime, s), e164, files=SubjectFiles.of(runtime))
    since = _local(result.opted_out_since, runtime.report_zone())
    if result.nothing_held:
        console.print(
            f"{e164}: nothing was held about this number; it is now on the opt-out list "
            f"(keyed hash only, since {since}, source {result.opt_out_source})",
            highlight=False,
            markup=False,
        )
    else:
        console.print(
            f"{e164}: erased {_counted(result.removed)}; "
            f"{result.files_removed} of {len(result.files)} file(s) deleted "
            f"({_counted(result.file_kinds)})",
            highlight=False,
            markup=False,
        )
        console.print(
            f"kept: its keyed hash on the opt-out list (since {since}, source "
            f"{result.opt_out_source}); the journal names it by that hash only",
            highlight=False,
            markup=False,
        )
    if vacuum:
        from voicecast.subjects import vacuum_database

        if vacuum_database(runtime.engine):
            console.print("database file rebuilt (VACUUM)", highlight=False, markup=False)
        else:
            err_console.print(
                "--vacuum: only SQLite files are rebuilt (PostgreSQL's autovacuum reclaims "
                "deleted rows)",
                highlight=False,
                markup=False,
            )
    elif not result.checkpointed:
        err_console.print(
            "note: the database was busy; its write-ahead log keeps the erased rows until "
            "the next checkpoint (automatic; or run this command again later)",
            highlight=False,
            markup=False,
        )
    for path in result.failed_files:
        err_console.print(f"could not delete {path}", highlight=False, markup=False)
    if result.failed_files:
        sys.exit(1)


def _changes(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r}: expected FIELD=VALUE", param_hint="--set")
        out[name.strip()] = value
    return out


@subject.command("rectify", short_help="Correct the contact fields of NUMBER.")
@click.argument("number")
@click.option(
    "--set",
    "items",
    multiple=True,
    required=True,
    metavar="FIELD=VALUE",
    help="A field and its correct value (repeatable; FIELD= removes it). Fields: "
    "first_name, last_name, company, region, postal_code, professional.",
)
@click.option("--list", "list_name", help="Only the contact of this list (default: every list).")
@region_option
@pass_ctx
def subject_rectify(
    ctx: Ctx, number: str, items: tuple[str, ...], list_name: str | None, region: str
) -> None:
    """Correct the contact fields of NUMBER (GDPR art. 16).

    \b
    Example:
      voicecast subject rectify "01 99 00 00 10" --set first_name=Camille --set company=
    The journal records which fields changed (names only, never values). Speech already
    rendered with the old values is deleted.
    """
    from voicecast.subjects import SubjectFiles, rectify_subject

    runtime = _runtime(ctx)
    e164 = _number(number, region)
    changes = _changes(items)
    with runtime.sessions() as s, s.begin():
        result = rectify_subject(
            s,
            _hash_key(runtime, s),
            e164,
            changes,
            list_name=list_name,
            files=SubjectFiles.of(runtime),
        )
    lists = ", ".join(result.lists)
    if result.changed == 0:
        console.print(
            f"{e164}: {result.contacts} contact(s) in {lists} already had these values",
            highlight=False,
            markup=False,
        )
        return
    console.print(
        f"{e164}: {', '.join(result.fields)} corrected in {result.changed} contact(s) ({lists})",
        highlight=False,
        markup=False,
    )
