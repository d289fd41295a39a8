"""Pieces shared by the REST API modules: parameter types, pagination, uploads, the gate."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath
from typing import Annotated, Any, TypeVar

import phonenumbers
from aiohttp import web
from aiohttp.multipart import content_disposition_filename, parse_content_disposition
from aiohttp.web_request import FileField
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema
from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session

from voicecast.web.openapi import (
    MAX_ID,
    Call,
    P,
    PageQuery,
    RequestModel,
    Upload,
    page_answer,
)
from voicecast.web.server import HTTPProblem, context, db_call, read_form

T = TypeVar("T")


@dataclass(frozen=True)
class OneOf:
    """Annotation: a string that must be one of ``values`` (an ``enum`` in the schema).

    ``hint`` replaces the list of values in the error message (for long lists).
    """

    values: tuple[str, ...]
    hint: str | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        allowed = frozenset(self.values)
        hint = self.hint or f"expected one of {', '.join(self.values)}"

        def check(value: str) -> str:
            if value not in allowed:
                # pydantic fills a template's {name} placeholders with str(value) only (no
                # !r conversion), one after the other: the message is composed here and
                # passed as the single placeholder, so braces in the value stay as typed
                raise PydanticCustomError(
                    "one_of", "{detail}", {"detail": f"{value[:40]!r}: {hint}"}
                )
            return value

        return core_schema.no_info_after_validator_function(check, core_schema.str_schema())

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "enum": list(self.values)}


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


REGIONS: tuple[str, ...] = tuple(sorted(phonenumbers.SUPPORTED_REGIONS))

Region = Annotated[
    str,
    OneOf(REGIONS, "not a region code (ISO 3166-1 alpha-2, e.g. FR, US, GB)"),
    BeforeValidator(_upper),
    Field(description="Country (ISO 3166-1 alpha-2) of numbers written without +country code."),
]


def _plausible(value: datetime) -> datetime:
    if not 2000 <= value.year <= 2100:
        raise ValueError("expected an instant between the years 2000 and 2100")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_plausible)]
"""An ISO 8601 instant with its UTC offset, between the years 2000 and 2100."""


class NamePath(RequestModel):
    """A named object in the path (list, campaign)."""

    name: str = Field(
        min_length=1, max_length=200, description="The object's name.", examples=["spring"]
    )


class IdPath(RequestModel):
    """A numbered object in the path (token, webhook)."""

    id: int = Field(ge=1, le=MAX_ID, description="The object's id.", examples=[1])


def paginate(
    session: Session, stmt: Select[*tuple[Any, ...]], page: PageQuery
) -> tuple[int, Sequence[Any]]:
    """``(total, rows of this page)`` of a SELECT (which must be ordered): the count of the
    whole query, and its rows from ``page.offset``, at most ``page.limit``."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.execute(stmt.offset(page.offset).limit(page.limit)).all()
    return total, rows


async def answer_page(
    call: Call,
    model: type[P],
    query: Select[*tuple[Any, ...]] | Callable[[Session], Select[*tuple[Any, ...]]],
    item: Callable[[Session, Row[*tuple[Any, ...]]], Any],
) -> P:
    """The answer of a list endpoint: the page the call's :class:`PageQuery` asks for.

    Args:
        model: the page model (``items``, ``total``, ``limit``, ``offset``, ``next``).
        query: the ordered SELECT, or a function building it in the session (it may look
            objects up first and raise, e.g. ``NotFoundError`` for a 404).
        item: the page item of one result row (``row[0]`` for a one-entity SELECT), given
            the session too.
    """
    page = call.query_as(PageQuery)

    def work(s: Session) -> tuple[int, list[Any]]:
        stmt = query(s) if callable(query) else query
        total, rows = paginate(s, stmt, page)
        return total, [item(s, row) for row in rows]

    total, items = await db_call(call.request, work)
    return page_answer(model, call.request, page, total, items)


def now(request: web.Request) -> datetime:
    """The controller clock's current time (aware, UTC)."""
    return context(request).clock.now()


_SAFE_SUFFIX = frozenset(
    {
        ".csv",
        ".txt",
        ".tsv",
        ".xlsx",
        ".xlsm",
        ".wav",
        ".mp3",
        ".ogg",
        ".oga",
        ".opus",
        ".flac",
        ".m4a",
        ".aac",
        ".webm",
        ".gsm",
        ".aiff",
    }
)


def _suffix(filename: str | None, content_type: str, by_type: dict[str, str]) -> str:
    if filename:
        suffix = PurePath(filename.replace("\\", "/")).suffix.lower()
        if suffix in _SAFE_SUFFIX:
            return suffix
    return by_type.get(content_type, ".bin")


@dataclass(frozen=True)
class Uploaded:
    """A file body saved to a temporary folder: its ``path`` and the client's file name."""

    path: Path
    filename: str | None


async def save_upload(
    request: web.Request, upload: Upload, folder: Path, by_type: dict[str, str]
) -> Uploaded:
    """Save the request's file body into ``folder`` (a temporary directory the caller
    removes): the raw body for the ``upload``'s media types, or the multipart field.

    The file's suffix comes from the client's file name when it is a known one, else from
    the media type (``by_type``), so converters recognise it.

    Raises:
        HTTPProblem: 415 for another Content-Type; 400 when the multipart form lacks the
            file field or the body is empty; 413 (aiohttp) when too large.
    """
    ctype = request.content_type
    filename: str | None = None
    if ctype == "multipart/form-data" and upload.multipart_field:
        form = await read_form(request)  # also serves a form the CSRF check has already read
        field = form.get(upload.multipart_field)
        if not isinstance(field, FileField):
            raise HTTPProblem(
                400, "invalid", f"{upload.multipart_field}: the form has no file in this field"
            )
        filename = field.filename
        ctype = field.content_type
        data = await asyncio.to_thread(field.file.read)
    elif ctype in upload.media_types:
        data = await request.read()
        disposition = request.headers.get("Content-Disposition")
        if disposition:  # optional: attachment; filename="clients.csv" (RFC 6266 syntax)
            _, params = parse_content_disposition(disposition)
            filename = content_disposition_filename(params, "filename")
    else:
        accepted = ", ".join([*upload.media_types, "multipart/form-data"])
        raise HTTPProblem(
            415, "unsupported_media_type", f"send the file as one of {accepted} (not {ctype})"
        )
    if not data:
        raise HTTPProblem(400, "invalid", "body: the file is empty")
    path = folder / f"upload{_suffix(filename, ctype.split(';')[0].strip(), by_type)}"
    await asyncio.to_thread(path.write_bytes, data)
    return Uploaded(path, filename)


def temp_folder() -> tempfile.TemporaryDirectory[str]:
    """A private temporary folder for an upload (mode 0700), removed by its context."""
    return tempfile.TemporaryDirectory(prefix="voicecast-upload-")


def blank_to_none(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with empty strings replaced by None (report rows use "" for "none")."""
    return {k: (None if v == "" else v) for k, v in row.items()}
