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


def _short(digest: Any, size: int = 12) -> str:
    """The first ``size`` characters of a hash, with ``…`` when cut."""
    text = str(digest or "")
    return text if len(text) <= size else text[:size] + "…"


def _seconds(ms: Any) -> str:
    try:
        return f"{int(ms or 0) / 1000:.1f} s"
    except (TypeError, ValueError):
        return "? s"


def _heard(data: dict[str, Any]) -> tuple[str, str, Text]:
    """The drop's (audio lines, SHA-256 lines, heard lines): each prompt heard, its short
    digest, and how long it played and whether to its end (a key press or a hang-up cuts a
    message off); with several prompts, one line each in the same order, then the total."""
    prompts = [p for p in data.get("prompts") or [] if isinstance(p, dict)]
    if not prompts:
        prompts = [
            {
                "audio": data.get("audio"),
                "audio_sha256": data.get("audio_sha256"),
                "ms": data.get("played_ms"),
                "completed": data.get("completed"),
            }
        ]
    heard = Text()
    for n, p in enumerate(prompts):
        done = bool(p.get("completed"))
        if n:
            heard.append("\n")
        heard.append(f"{_seconds(p.get('ms'))}, ")
        heard.append("complete" if done else "cut off", style="" if done else "bold")
    if len(prompts) > 1:
        total = data.get("played_ms")
        if total is None:
            total = sum(int(p.get("ms") or 0) for p in prompts)
        heard.append(f"\n{_seconds(total)} in all")
    names = "\n".join(str(p.get("audio") or "?") for p in prompts)
    digests = "\n".join(_short(p.get("audio_sha256")) or "-" for p in prompts)
    return names, digests, heard


def _drop_basis(item: dict[str, Any], basis_text: Any) -> Text:
    """The drop's legal basis; for a consent, what the ledger row it names holds now
    (``consent_ledger``, :func:`voicecast.journal.proof.consent_ledger_checks`)."""
    basis = item["data"].get("legal_basis")
    check = item.get("consent_ledger")
    if not check or not isinstance(basis, dict):
        return Text(basis_text(basis))
    consent = dict(basis.get("consent") or {})
    if check["state"] == "same":
        text = Text(basis_text({**basis, "consent": {**consent, "proof_ref": check["proof_ref"]}}))
        text.append("\nledger row unchanged: its proof matches the journaled SHA-256")
        return text
    text = Text(basis_text(basis))
    if check["state"] == "changed":
        text.append(
            f"\nledger row #{check['id']} CHANGED after the drop: its proof is now "
            f"{check['proof_ref']!r}, whose SHA-256 ({_short(check['ledger_sha256'])}) is "
            "not the journaled one",
            style="bold red",
        )
    else:
        text.append(
            f"\nledger row #{check['id']} gone (erased or past retention): only the journaled "
            "SHA-256 of its proof remains (full value: --json)"
        )
    return text


def _print_proof(proof: dict[str, Any], zone: tzinfo) -> None:
    """The human form of :func:`voicecast.journal.proof.subject_proof` (rich tables, or one
    block of lines per record when the terminal is too narrow for them; times in the
    report's zone)."""
    from voicecast.cli_layout import Field, print_records
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
        print_records(
            out,
            "Contacts holding this number",
            [Field("List"), Field("Contact", justify="right"), Field("Added"), Field("B2B")],
            [
                (
                    c["list"] or "(deleted)",
                    str(c["contact_id"]),
                    _at(c["created_at"], zone),
                    {True: "professional", False: "no", None: ""}[c["professional"]],
                )
                for c in contacts
            ],
        )
        memberships = [m for c in contacts for m in c["campaigns"]]
        if memberships:
            print_records(
                out,
                "Campaigns and the legal basis each relies on for it",
                [
                    Field("Campaign"),
                    Field("Status"),
                    Field("Purpose"),
                    Field("Legal basis", whole=False, min_width=20),
                    Field("State"),
                    Field("Outcome"),
                    Field("Attempts", justify="right"),
                    Field("Gate now", whole=False, min_width=12),
                ],
                [
                    (
                        m["campaign"],
                        m["status"],
                        f"{m['purpose'] or 'marketing'}/{m['audience'] or 'b2c'}",
                        m["legal_basis_text"],
                        m["state"],
                        m["outcome"],
                        str(m["attempts"]),
                        f"{m['gate_now']['verdict']} ({m['gate_now']['reason']})",
                    )
                    for m in memberships
                ],
            )
        else:
            out.print(Text("In no campaign yet."))
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
        print_records(
            out,
            "Consent ledger",
            [
                Field("Recorded"),
                Field("Ledger #", justify="right"),
                Field("Purpose"),
                Field("Status"),
                Field("Source"),
                Field("Proof", whole=False, min_width=12),
                Field("Batch"),
                Field("Seq", justify="right"),
            ],
            [
                (
                    _at(c["recorded_at"], zone),
                    str(c["id"]),
                    c["purpose"],
                    c["status"],
                    c["source"],
                    c["proof_ref"],
                    c["batch"],
                    (c["journal"] or {}).get("seq"),
                )
                for c in proof["consents"]
            ],
        )
    _print_journal(proof, zone, basis_text)


def _print_journal(proof: dict[str, Any], zone: tzinfo, basis_text: Any) -> None:
    """The journal half of :func:`_print_proof`."""
    from voicecast.cli_layout import Field, print_records

    out = console
    journal = proof["journal"]
    entry = [Field("Seq", justify="right"), Field("Entry hash")]
    if journal["drops"]:
        rows = []
        for e in journal["drops"]:
            d = e["data"]
            audio, digests, heard = _heard(d)
            rows.append(
                (
                    _at(d.get("played_at") or e["at"], zone),
                    d.get("campaign"),
                    d.get("delivered_to"),
                    audio,
                    digests,
                    heard,
                    d.get("caller_id"),
                    _drop_basis(e, basis_text),
                    str(e["seq"]),
                    _short(e["hash"]),
                )
            )
        print_records(
            out,
            "Message drops (journal)",
            [
                Field("Played"),
                Field("Campaign"),
                Field("To"),
                Field("Audio"),
                Field("Audio SHA-256"),
                Field("Heard", whole=False, min_width=10),
                Field("Caller ID"),
                Field("Legal basis", whole=False, min_width=24),
                *entry,
            ],
            rows,
        )
    else:
        out.print(Text("No message drop in the journal."))
    if journal["gate_decisions"]:
        print_records(
            out,
            "Gate decisions (journal)",
            [
                Field("Decided"),
                Field("Campaign"),
                Field("Verdict"),
                Field("Reason"),
                Field("Rule source", whole=False, min_width=12),
                Field("Until"),
                *entry,
            ],
            [
                (
                    _at(e["data"].get("decided_at") or e["at"], zone),
                    e["data"].get("campaign"),
                    e["data"].get("verdict"),
                    e["data"].get("reason"),
                    e["data"].get("rule_source"),
                    _at(e["data"].get("until"), zone),
                    str(e["seq"]),
                    _short(e["hash"]),
                )
                for e in journal["gate_decisions"]
            ],
        )
    if journal["attempts"]:
        print_records(
            out,
            "Call attempts (journal)",
            [
                Field("Started"),
                Field("Campaign"),
                Field("#", justify="right"),
                Field("Caller ID"),
                Field("Outcome"),
                Field("Q.850", justify="right"),
                Field("AMD"),
                *entry,
            ],
            [
                (
                    _at(e["data"].get("started_at") or e["at"], zone),
                    e["data"].get("campaign"),
                    e["data"].get("attempt_no"),
                    e["data"].get("caller_id"),
                    e["data"].get("outcome"),
                    e["data"].get("hangup_cause"),
                    e["data"].get("amd_status"),
                    str(e["seq"]),
                    _short(e["hash"]),
                )
                for e in journal["attempts"]
            ],
        )
    rest = [*journal["rights"], *journal["other"], *journal["imports"]]
    if rest:
        keys = ("source", "purpose", "status", "proof_ref_sha256", "batch", "list", "campaign")

        def what(d: dict[str, Any]) -> str:
            shown = {k: d[k] for k in keys if d.get(k) not in (None, "")}
            if "proof_ref_sha256" in shown:
                shown["proof_ref_sha256"] = _short(shown["proof_ref_sha256"])
            return ", ".join(f"{k}={v}" for k, v in shown.items())

        print_records(
            out,
            "Opt-outs, refusals, consents, imports and other entries (journal)",
            [
                Field("At"),
                Field("Kind"),
                Field("Actor"),
                Field("What", whole=False, min_width=20),
                *entry,
            ],
            [
                (
                    _at(e["at"], zone),
                    e["kind"],
                    e["actor"],
                    what(e["data"]),
                    str(e["seq"]),
                    _short(e["hash"]),
                )
                for e in sorted(rest, key=lambda item: int(item["seq"]))
            ],
        )
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
    SHA-256, how much was heard, caller ID, when, legal basis and whether the consent
    ledger row it relied on is unchanged), gate decision and attempt, each with the journal
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
        # written before the commit: an answer that could not be written is not journaled
        # as given (the subject.exported entry rolls back with the error)
        if output is None:
            click.echo(text, nl=False)
        else:
            _write_private(output, text)
    if output is None:
        return
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
        files = (
            f"{result.files_removed} of {len(result.files)} file(s) deleted "
            f"({_counted(result.file_kinds)})"
            if result.files
            else "no file held"
        )
        console.print(
            f"{e164}: erased {_counted(result.removed)}; {files}",
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
    The journal records which fields changed (names only, never values); a rectification
    that changes nothing is not journaled. Speech already rendered with the old values is
    deleted. professional takes yes/no (oui, non, true, false, 1, 0, b2b, b2c...);
    postal_code a postal code (75001, SW1A 1AA). Correct the source (CRM) too: the next
    import of the old file would bring the old values back.
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
            f"{e164}: nothing changed: {result.contacts} contact(s) in {lists} already had "
            "these values",
            highlight=False,
            markup=False,
        )
        return
    console.print(
        f"{e164}: {', '.join(result.fields)} corrected in {result.changed} contact(s) ({lists})",
        highlight=False,
        markup=False,
    )
