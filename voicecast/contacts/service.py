"""Store a parsed contact file into a contact list (one transaction, owned by the caller).

Each import is journaled in that transaction (``contacts.imported``: list, the file's
SHA-256, counts, columns kept and dropped; :mod:`voicecast.journal`), whichever of the CLI,
the console or the API ran it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from voicecast.compliance.keys import is_e164, number_hash
from voicecast.contacts.importer import ParseResult
from voicecast.errors import VoicecastError
from voicecast.journal import kinds
from voicecast.journal.store import append as journal_append
from voicecast.storage.models import Contact, ContactList, OptOut, utcnow

CHUNK_SIZE = 2000
"""Rows per INSERT/UPDATE executemany batch."""

MAX_LIST_NAME = 200


@dataclass
class ImportSummary:
    """What one ``voicecast contacts import`` did, for display or ``--json`` output.

    Attributes:
        list_name: target list.
        file: the imported file (as given).
        rows_read: data rows in the file (header and blank rows excluded).
        imported: new contacts added to the list.
        updated: contacts already in the list whose fields changed.
        duplicates: rows whose number was already seen, in the file or in the list.
        rejected: rows not imported (see ``rejects_file``).
        erased: contacts not imported: their number was erased at the person's request.
        phone_column, field_columns, ignored_columns, encoding, delimiter: as in
            :class:`~voicecast.contacts.importer.ParseResult`.
        rejects_file: where the rejected rows were written, None if not written.
    """

    list_name: str
    file: str
    rows_read: int
    imported: int
    updated: int
    duplicates: int
    rejected: int
    erased: int
    phone_column: str
    field_columns: dict[str, str]
    ignored_columns: list[str]
    encoding: str
    delimiter: str | None
    rejects_file: str | None

    @classmethod
    def build(
        cls,
        list_name: str,
        file: Path | str,
        result: ParseResult,
        counts: tuple[int, int, int],
        rejects_file: Path | str | None = None,
    ) -> ImportSummary:
        """Combine a parse result and :func:`import_contacts`' ``counts`` into a summary.

        ``duplicates`` = duplicates within the file + numbers already in the list.
        """
        imported, updated, in_list = counts
        return cls(
            list_name=list_name,
            file=str(file),
            rows_read=result.rows_read,
            imported=imported,
            updated=updated,
            duplicates=result.duplicates + in_list,
            rejected=len(result.rejects),
            erased=result.erased,
            phone_column=result.phone_column,
            field_columns=dict(result.field_columns),
            ignored_columns=list(result.ignored_columns),
            encoding=result.encoding,
            delimiter=result.delimiter,
            rejects_file=None if rejects_file is None else str(rejects_file),
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready copy: every attribute by name (dicts and lists copied)."""
        return dataclasses.asdict(self)


def _chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [rows[i : i + CHUNK_SIZE] for i in range(0, len(rows), CHUNK_SIZE)]


def _erased_numbers(session: Session, key: bytes | None, numbers: list[str]) -> set[str]:
    """The numbers of ``numbers`` erased at the person's request (opt-out source
    ``erasure``); empty without a key."""
    from voicecast.compliance.suppression import ERASURE_SOURCE  # late: it imports contacts

    if key is None or not numbers:
        return set()
    hashes = {number_hash(key, n): n for n in set(numbers) if is_e164(n)}
    found: set[str] = set()
    keys = list(hashes)
    for start in range(0, len(keys), CHUNK_SIZE):
        chunk = keys[start : start + CHUNK_SIZE]
        found.update(
            session.scalars(
                select(OptOut.number_hash).where(
                    OptOut.number_hash.in_(chunk), OptOut.source == ERASURE_SOURCE
                )
            )
        )
    return {hashes[h] for h in found}


def import_contacts(
    session: Session, list_name: str, result: ParseResult, *, key: bytes | None = None
) -> tuple[int, int, int]:
    """Insert ``result.contacts`` into the list ``list_name`` (created if missing).

    With the keyed-hash ``key``, a number erased at the person's request (on the opt-out
    list with source ``erasure``, :func:`voicecast.subjects.erase_subject`) is not stored
    again: GDPR art. 17 and 19, a CRM export that still holds the person must not bring
    their data back. Those contacts are counted in ``result.erased``.

    Returns ``(imported, updated, duplicates_in_list)``: ``imported`` new contacts;
    ``duplicates_in_list`` contacts whose number was already in the list, merged (their
    non-empty new fields overwrite the stored ones); ``updated`` those of them whose fields
    actually changed. Re-importing the same file gives ``(0, 0, n)``.

    Existing numbers are loaded in one query, new rows are bulk-inserted and changed rows
    bulk-updated in chunks of :data:`CHUNK_SIZE`. Uses the caller's session and does NOT
    commit: the caller commits (or rolls back) the whole import as one transaction, with
    its ``contacts.imported`` journal entry (no subject: the data holds counts, the file's
    SHA-256 and column names only).

    Raises:
        VoicecastError: ``list_name`` is empty or longer than 200 characters.
        sqlalchemy.exc.SQLAlchemyError: a database error (the caller rolls back).
    """
    name = list_name.strip()
    if not name or len(name) > MAX_LIST_NAME:
        raise VoicecastError(f"a list name must have 1 to {MAX_LIST_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise VoicecastError("a list name cannot hold line breaks or other control characters")
    contact_list = session.scalar(select(ContactList).where(ContactList.name == name))
    if contact_list is None:
        contact_list = ContactList(name=name)
        session.add(contact_list)
        session.flush()
    list_id = contact_list.id

    existing: dict[str, tuple[int, dict[str, Any]]] = {
        phone: (contact_id, fields or {})
        for phone, contact_id, fields in session.execute(
            select(Contact.phone_e164, Contact.id, Contact.fields).where(Contact.list_id == list_id)
        )
    }

    erased = _erased_numbers(session, key, [c.phone_e164 for c in result.contacts])
    result.erased = 0
    new_rows: dict[str, dict[str, Any]] = {}
    changed: dict[int, dict[str, Any]] = {}
    in_list = 0
    for contact in result.contacts:
        if contact.phone_e164 in erased:
            result.erased += 1
            continue
        pending = new_rows.get(contact.phone_e164)
        if pending is not None:  # only if the result was built by hand with duplicates
            pending["fields"] = {**contact.fields, **pending["fields"]}
            continue
        found = existing.get(contact.phone_e164)
        if found is None:
            new_rows[contact.phone_e164] = {
                "list_id": list_id,
                "phone_e164": contact.phone_e164,
                "fields": dict(contact.fields),
                "source_line": contact.line,
            }
            continue
        in_list += 1
        contact_id, stored = found
        merged = {**stored, **contact.fields}
        if merged != stored:
            changed[contact_id] = merged
            existing[contact.phone_e164] = (contact_id, merged)

    now = utcnow()
    inserts = [{**row, "created_at": now, "updated_at": now} for row in new_rows.values()]
    for chunk in _chunks(inserts):
        session.execute(insert(Contact), chunk)
    updates = [{"id": cid, "fields": f, "updated_at": now} for cid, f in changed.items()]
    for chunk in _chunks(updates):
        session.execute(update(Contact), chunk)
    journal_append(
        session,
        kinds.CONTACTS_IMPORTED,
        {
            "list": name,
            "list_id": list_id,
            "file_sha256": result.file_sha256,
            "rows": result.rows_read,
            "imported": len(new_rows),
            "updated": len(changed),
            "duplicates": result.duplicates + in_list,
            "rejected": len(result.rejects),
            "erased_not_imported": result.erased,
            "columns_kept": [result.phone_column, *result.field_columns.values()],
            "fields": sorted(result.field_columns),
            "columns_dropped": list(result.ignored_columns),
        },
    )
    return len(new_rows), len(changed), in_list
