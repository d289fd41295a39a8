"""REST API: contact lists, their contacts, and the contacts import (CSV / xlsx upload)."""

from __future__ import annotations

import asyncio
import builtins
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field
from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session

from voicecast.contacts.importer import CANONICAL_FIELDS, ImportFormatError, parse_contacts_file
from voicecast.contacts.service import ImportSummary, import_contacts
from voicecast.errors import NotFoundError
from voicecast.storage.models import Campaign, Contact, ContactList
from voicecast.web.api_common import NamePath, Region, answer_page, save_upload, temp_folder
from voicecast.web.openapi import (
    Call,
    Page,
    PageQuery,
    RequestModel,
    ResponseModel,
    RouteGroup,
    Upload,
)
from voicecast.web.server import HTTPProblem, db_call, store_key

routes = RouteGroup("lists", "Contact lists and the contacts import.")

MAX_REJECTS_SHOWN = 50
"""Rejected rows listed (line and reason) in an import answer; ``rejected`` counts them all."""

CONTACT_FILE = Upload(
    media_types=(
        "text/csv",
        "text/plain",
        "application/octet-stream",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    description="The CSV (UTF-8, Windows-1252 or UTF-16; `,` `;` or tab separated) or .xlsx "
    "file, as the raw body or as the multipart form field `file`. A raw body may name its "
    'file in `Content-Disposition: attachment; filename="clients.csv"`.',
)
_SUFFIX_BY_TYPE = {
    "text/csv": ".csv",
    "text/plain": ".csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
}


class ListItem(ResponseModel):
    """A contact list and its size."""

    name: str
    contacts: int = Field(ge=0, description="Contacts in the list.")
    created_at: datetime


class ListPage(Page[ListItem]):
    """A page of contact lists, by name."""


class ListDetail(ListItem):
    """A contact list, its size and the campaigns that call it."""

    campaigns: list[str] = Field(description="Names of the campaigns using this list.")


class ContactItem(ResponseModel):
    """One contact: its E.164 number and the mapped fields kept (data minimisation)."""

    id: int
    number: str = Field(description="E.164, e.g. +33199000010.")
    fields: dict[str, Any] = Field(
        description=f"Mapped fields kept: any of {', '.join(CANONICAL_FIELDS)}."
    )
    line: int | None = Field(description="Line (CSV) or row (xlsx) of the file it came from.")
    created_at: datetime
    updated_at: datetime


class ContactPage(Page[ContactItem]):
    """A page of a list's contacts, in file order."""


class ImportQuery(RequestModel):
    """How to read the uploaded contact file (as ``voicecast contacts import``)."""

    default_region: Region = "FR"
    phone_column: str | None = Field(
        None, max_length=200, description="Header of the phone column (default: recognised)."
    )
    first_name_column: str | None = Field(None, max_length=200, description="Header of first_name.")
    last_name_column: str | None = Field(None, max_length=200, description="Header of last_name.")
    company_column: str | None = Field(None, max_length=200, description="Header of company.")
    region_column: str | None = Field(None, max_length=200, description="Header of region.")
    postal_code_column: str | None = Field(
        None, max_length=200, description="Header of postal_code."
    )
    professional_column: str | None = Field(
        None, max_length=200, description="Header of professional (B2B contact)."
    )

    def field_map(self) -> dict[str, str]:
        """Canonical field -> header, for the fields given (an empty header disables one)."""
        found: dict[str, str] = {}
        for name in CANONICAL_FIELDS:
            header = getattr(self, f"{name}_column")
            if header is not None:
                found[name] = header.strip()
        return found


class ImportReject(ResponseModel):
    """A row not imported: its line and why."""

    line: int
    reason: str


class ImportResult(ResponseModel):
    """What an import did (one transaction: all of it or nothing)."""

    list: str
    rows_read: int = Field(description="Data rows in the file (header and blank rows excluded).")
    imported: int = Field(description="New contacts added to the list.")
    updated: int = Field(description="Contacts already in the list whose fields changed.")
    duplicates: int = Field(description="Rows whose number was already seen (file or list).")
    rejected: int = Field(description="Rows not imported.")
    erased: int = Field(
        0,
        description="Contacts not imported: their number was erased at the person's request "
        "(GDPR art. 17).",
    )
    phone_column: str
    field_columns: dict[str, str] = Field(description="Field -> header it was read from.")
    ignored_columns: builtins.list[str] = Field(description="Headers whose data was dropped.")
    encoding: str
    delimiter: str | None
    rejects: builtins.list[ImportReject] = Field(
        description=f"The first {MAX_REJECTS_SHOWN} rejected rows (line and reason)."
    )


def _contact_list(session: Session, name: str) -> ContactList:
    found = session.scalar(select(ContactList).where(ContactList.name == name))
    if found is None:
        raise NotFoundError(f"no contact list named {name!r}")
    return found


def _size(session: Session, list_id: int) -> int:
    return session.scalar(select(func.count()).where(Contact.list_id == list_id)) or 0


@routes.get(
    "/api/v1/lists",
    "List the contact lists",
    role="viewer",
    query_model=PageQuery,
    response=ListPage,
)
async def list_lists(call: Call) -> ListPage:
    """The contact lists with their number of contacts, by name."""
    stmt = (
        select(ContactList, func.count(Contact.id))
        .outerjoin(Contact, Contact.list_id == ContactList.id)
        .group_by(ContactList.id)
        .order_by(ContactList.name)
    )

    def item(_s: Session, row: Row[*tuple[Any, ...]]) -> ListItem:
        clist, contacts = row
        return ListItem(name=clist.name, contacts=contacts, created_at=clist.created_at)

    return await answer_page(call, ListPage, stmt, item)


@routes.get(
    "/api/v1/lists/{name}",
    "Show a contact list",
    role="viewer",
    path_model=NamePath,
    response=ListDetail,
)
async def get_list(call: Call) -> ListDetail:
    """A contact list: size, creation time, and the campaigns calling it."""
    name = call.path_as(NamePath).name

    def work(s: Session) -> ListDetail:
        clist = _contact_list(s, name)
        campaigns = s.scalars(
            select(Campaign.name).where(Campaign.list_id == clist.id).order_by(Campaign.name)
        ).all()
        return ListDetail(
            name=clist.name,
            contacts=_size(s, clist.id),
            created_at=clist.created_at,
            campaigns=list(campaigns),
        )

    return await db_call(call.request, work)


@routes.get(
    "/api/v1/lists/{name}/contacts",
    "List a list's contacts",
    role="viewer",
    path_model=NamePath,
    query_model=PageQuery,
    response=ContactPage,
)
async def list_contacts(call: Call) -> ContactPage:
    """The contacts of a list in file order: E.164 number and the fields kept."""
    name = call.path_as(NamePath).name

    def contacts(s: Session) -> Select[*tuple[Any, ...]]:
        clist = _contact_list(s, name)  # 404 for an unknown list
        return (
            select(Contact)
            .where(Contact.list_id == clist.id)
            .order_by(Contact.source_line, Contact.id)
        )

    def item(_s: Session, row: Row[*tuple[Any, ...]]) -> ContactItem:
        c: Contact = row[0]
        return ContactItem(
            id=c.id,
            number=c.phone_e164,
            fields=dict(c.fields or {}),
            line=c.source_line,
            created_at=c.created_at,
            updated_at=c.updated_at,
        )

    return await answer_page(call, ContactPage, contacts, item)


@routes.post(
    "/api/v1/lists/{name}/contacts",
    "Import contacts into a list",
    role="supervisor",
    path_model=NamePath,
    query_model=ImportQuery,
    upload=CONTACT_FILE,
    response=ImportResult,
)
async def import_list_contacts(call: Call) -> ImportResult:
    """Import a CSV or .xlsx file into the list (created if missing), as `voicecast
    contacts import` does: numbers normalised to E.164, duplicates merged, invalid rows
    rejected with their line and reason, only the phone and the mapped fields kept.

    All or nothing: a file that cannot be read (no phone column, not a table...) answers
    400 and changes nothing; otherwise the valid rows are stored in one transaction."""
    name = call.path_as(NamePath).name
    query = call.query_as(ImportQuery)
    with temp_folder() as folder:
        uploaded = await save_upload(call.request, CONTACT_FILE, Path(folder), _SUFFIX_BY_TYPE)
        phone_column = (query.phone_column or "").strip() or None
        field_map = query.field_map()
        try:
            result = await asyncio.to_thread(
                parse_contacts_file,
                uploaded.path,
                default_region=query.default_region,
                phone_column=phone_column,
                field_map=field_map or None,
            )
        except ImportFormatError as exc:  # name the upload, not the temporary file
            shown = uploaded.filename or "the uploaded file"
            raise HTTPProblem(
                400, "invalid", "file: " + str(exc).replace(str(uploaded.path), shown)
            ) from None
    counts = await db_call(
        call.request, lambda s: import_contacts(s, name, result, key=store_key(call.request, s))
    )
    summary = ImportSummary.build(name, uploaded.filename or "upload", result, counts)
    return ImportResult(
        list=summary.list_name,
        rows_read=summary.rows_read,
        imported=summary.imported,
        updated=summary.updated,
        duplicates=summary.duplicates,
        rejected=summary.rejected,
        erased=summary.erased,
        phone_column=summary.phone_column,
        field_columns=summary.field_columns,
        ignored_columns=summary.ignored_columns,
        encoding=summary.encoding,
        delimiter=summary.delimiter,
        rejects=[
            ImportReject(line=r.line, reason=r.reason) for r in result.rejects[:MAX_REJECTS_SHOWN]
        ],
    )
