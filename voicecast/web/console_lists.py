"""Contact list pages: the lists, one list's contacts, and the two-step CSV/xlsx upload.

Routes:

* ``GET /lists``: every list (name, contacts, created); ``GET /lists/{name}``: its contacts,
  paginated.
* ``GET /lists/upload``: the upload form (supervisor); ``POST /lists/upload`` stores the
  file under ``<var>/uploads/<random id>/`` (never under the client's file name) and shows
  the column-mapping preview: the detected phone column and fields as selects of the
  file's headers, the first :data:`PREVIEW_ROWS` contacts as parsed, the rejected rows with
  their reasons.
* ``POST /lists/upload/{id}/preview``: the preview again with the mapping chosen.
* ``POST /lists/upload/{id}/import``: imports with the chosen mapping in one transaction
  (:func:`~voicecast.contacts.service.import_contacts`, as ``voicecast contacts import``),
  deletes the uploaded file and shows the summary with the rejects report;
  ``GET /lists/upload/{id}/rejects.csv`` downloads that report
  (:func:`~voicecast.contacts.importer.write_rejects_csv`).

An upload belongs to the user who sent it; its folder is removed :data:`UPLOAD_TTL` after
the upload (checked on every upload request), its data file as soon as it is imported.
The body size is bounded by the application's ``client_max_size`` (``[web] max_upload_mb``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voicecast.contacts.importer import (
    CANONICAL_FIELDS,
    ImportFormatError,
    ParseResult,
    parse_contacts_file,
    read_headers,
    write_rejects_csv,
)
from voicecast.contacts.service import MAX_LIST_NAME, ImportSummary, import_contacts
from voicecast.errors import NotFoundError, VoicecastError
from voicecast.storage.models import Contact, ContactList
from voicecast.web.accounts import Principal
from voicecast.web.console_common import (
    FIELD_LABELS,
    field,
    pager,
    path_part,
    report_zone,
    time_formatter,
)
from voicecast.web.server import HTTPProblem, context, db_call, render, require, store_key

UPLOAD_TTL = 3600.0
"""Seconds an upload (and its rejects report) is kept."""

PREVIEW_ROWS = 10
"""Contacts shown in the mapping preview."""

REJECTS_SHOWN = 20
"""Rejected rows listed (with line and reason) in the preview and the summary."""

DATA_FILE = "data"
META_FILE = "meta.json"
REJECTS_FILE = "rejects.csv"
SUMMARY_FILE = "summary.json"
UPLOAD_ID = "{upload_id:[0-9a-f]{32}}"

_ID_RE = re.compile(r"[0-9a-f]{32}")
_FOLDER_RE = re.compile(r"(?:audio-)?[0-9a-f]{32}")  # contact uploads, audio uploads
REGIONS: tuple[str, ...] = tuple(sorted(phonenumbers.SUPPORTED_REGIONS))


def setup(app: web.Application) -> None:
    """Register the contact list and upload routes."""
    app.router.add_get("/lists", lists_page)
    app.router.add_get("/lists/upload", upload_page)
    app.router.add_post("/lists/upload", upload_action)
    app.router.add_post(f"/lists/upload/{UPLOAD_ID}/preview", preview_action)
    app.router.add_post(f"/lists/upload/{UPLOAD_ID}/import", import_action)
    app.router.add_get(f"/lists/upload/{UPLOAD_ID}/rejects.csv", rejects_csv)
    app.router.add_get("/lists/{name}", list_page)


# --------------------------------------------------------------------------- pages


async def lists_page(request: web.Request) -> web.Response:
    """``GET /lists``: name, contact count, created."""
    require(request, "viewer")

    def load(s: Session) -> list[dict[str, Any]]:
        return [
            {"name": clist.name, "url": f"/lists/{path_part(clist.name)}", "count": n,
             "created_at": clist.created_at}
            for clist, n in s.execute(
                select(ContactList, func.count(Contact.id))
                .outerjoin(Contact, Contact.list_id == ContactList.id)
                .group_by(ContactList.id)
                .order_by(ContactList.name)
            )
        ]  # fmt: skip

    rows = await db_call(request, load)
    return render(request, "lists.html", lists=rows, when=time_formatter(report_zone(request)))


async def list_page(request: web.Request) -> web.Response:
    """``GET /lists/{name}[?page=N]``: the list's contacts (number, fields, source line).

    Raises:
        NotFoundError: no such list (404).
    """
    require(request, "viewer")
    name = request.match_info["name"]

    def load(s: Session) -> tuple[ContactList, int]:
        clist = s.scalar(select(ContactList).where(ContactList.name == name))
        if clist is None:
            raise NotFoundError(f"no contact list named {name!r}")
        total = s.scalar(select(func.count()).where(Contact.list_id == clist.id)) or 0
        return clist, total

    clist, total = await db_call(request, load)
    page = pager(request, total)

    def rows(s: Session) -> list[Contact]:
        return list(
            s.scalars(
                select(Contact)
                .where(Contact.list_id == clist.id)
                .order_by(Contact.source_line, Contact.id)
                .offset(page.offset)
                .limit(page.size)
            )
        )

    contacts = await db_call(request, rows)
    return render(
        request,
        "list.html",
        name=name,
        url=f"/lists/{path_part(name)}",
        created_at=clist.created_at,
        contacts=contacts,
        fields=CANONICAL_FIELDS,
        labels=FIELD_LABELS,
        page=page,
        when=time_formatter(report_zone(request)),
    )


# --------------------------------------------------------------------------- uploads


@dataclass
class Upload:
    """One uploaded contact file waiting for its mapping (``<root>/<id>/``).

    Attributes:
        id: 32 hex digits (random); the folder's name.
        folder: ``<var>/uploads/<id>``.
        list_name: the list to import into. region: ISO 3166 code of national numbers.
        file_name: the client's file name, for display only (never a path).
        user_id: who uploaded it (only they may map, import and download its rejects).
        created: when it was uploaded (seconds since the epoch, the web clock's).
    """

    id: str
    folder: Path
    list_name: str
    region: str
    file_name: str
    user_id: int
    created: float

    @property
    def data(self) -> Path:
        """The uploaded file."""
        return self.folder / DATA_FILE

    def save_meta(self) -> None:
        """Write ``meta.json`` (mode 0600)."""
        meta = {
            "list_name": self.list_name,
            "region": self.region,
            "file_name": self.file_name,
            "user_id": self.user_id,
            "created": self.created,
        }
        _write_private(self.folder / META_FILE, json.dumps(meta).encode("utf-8"))

    def shown(self, message: str) -> str:
        """``message`` with the server path of the file replaced by the client's name."""
        return message.replace(str(self.data), self.file_name)


def upload_root(request: web.Request) -> Path:
    """Where uploads wait: ``[web] uploads_dir`` (default ``<config dir>/var/uploads``)."""
    settings = context(request).runtime.settings
    return settings.path(settings.web.uploads_dir)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _now(request: web.Request) -> float:
    return context(request).clock.now().timestamp()


def sweep_uploads(root: Path, now: float, ttl: float = UPLOAD_TTL) -> int:
    """Remove upload folders older than ``ttl`` seconds at ``now`` (epoch seconds): by
    their ``meta.json``'s time, else (an audio upload left by a crash) their mtime; return
    how many were removed."""
    removed = 0
    if not root.is_dir():
        return 0
    for folder in root.iterdir():
        if not folder.is_dir() or not _FOLDER_RE.fullmatch(folder.name):
            continue
        try:
            created = float(json.loads((folder / META_FILE).read_text("utf-8"))["created"])
        except (OSError, ValueError, KeyError, TypeError):
            try:  # a folder being written: give it the time to get its meta.json
                created = folder.stat().st_mtime
            except OSError:
                continue
        if now - created > ttl:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _load_upload(request: web.Request, who: Principal) -> Upload:
    """The upload named in the URL, if it is ``who``'s and not expired.

    Raises:
        HTTPProblem: 404 ``not_found`` otherwise (no hint whether it existed).
    """
    upload_id = request.match_info["upload_id"]
    if not _ID_RE.fullmatch(upload_id):
        raise HTTPProblem(404, "not_found", "no such upload")
    folder = upload_root(request) / upload_id
    try:
        meta = json.loads((folder / META_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        meta = None
    gone = HTTPProblem(
        404, "not_found", "this upload has expired or does not exist: upload the file again"
    )
    if not isinstance(meta, dict) or meta.get("user_id") != who.user_id:
        raise gone
    if _now(request) - float(meta["created"]) > UPLOAD_TTL:
        shutil.rmtree(folder, ignore_errors=True)
        raise gone
    return Upload(
        id=upload_id,
        folder=folder,
        list_name=str(meta["list_name"]),
        region=str(meta["region"]),
        file_name=str(meta["file_name"]),
        user_id=who.user_id,
        created=float(meta["created"]),
    )


def _client_name(raw: str | None) -> str:
    """The last part of a client's file name, for display (no folders, at most 200 chars)."""
    name = re.split(r"[\\/]", raw or "")[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:200] or "upload"


def _check_region(raw: str) -> str:
    region = (raw or "FR").upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise VoicecastError(f"default region: {raw!r} is not a region code such as FR, US, GB")
    return region


def _check_list_name(raw: str) -> str:
    name = raw.strip()
    if not name or len(name) > MAX_LIST_NAME:
        raise VoicecastError(f"list name: 1 to {MAX_LIST_NAME} characters")
    return name


async def upload_page(request: web.Request) -> web.Response:
    """``GET /lists/upload``: the upload form (supervisor)."""
    require(request, "supervisor")
    values = {"list": request.query.get("list", ""), "default_region": "FR"}
    return render(request, "list_upload.html", values=values, regions=REGIONS, error=None)


async def upload_action(request: web.Request) -> web.Response:
    """``POST /lists/upload`` (multipart: ``list``, ``default_region``, ``file``): keep the
    file and show the mapping preview; a missing file or bad field re-shows the form."""
    who = require(request, "supervisor")
    form = await request.post()
    values = {
        "list": field(form, "list"),
        "default_region": field(form, "default_region") or "FR",
    }
    upload_file = form.get("file")
    try:
        list_name = _check_list_name(values["list"])
        region = _check_region(values["default_region"])
        if not isinstance(upload_file, web.FileField) or not upload_file.filename:
            raise VoicecastError("file: choose a CSV or .xlsx file")
    except VoicecastError as exc:
        return render(
            request, "list_upload.html", status=400, values=values, regions=REGIONS,
            error=str(exc),
        )  # fmt: skip
    root = upload_root(request)
    now = _now(request)
    upload = Upload(
        id=secrets.token_hex(16),
        folder=root / "pending",
        list_name=list_name,
        region=region,
        file_name=_client_name(upload_file.filename),
        user_id=who.user_id,
        created=now,
    )
    upload.folder = root / upload.id

    def store() -> None:
        sweep_uploads(root, now)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        upload.folder.mkdir(mode=0o700)
        upload.save_meta()
        upload_file.file.seek(0)
        fd = os.open(upload.data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(upload_file.file, out)

    await asyncio.to_thread(store)
    return await _preview(request, upload, phone_column=None, field_map=None)


def _mapping(form: Any) -> tuple[str | None, dict[str, str]]:
    """The chosen phone column and field -> header map (``""``: field not imported)."""
    phone = field(form, "phone_column") or None
    return phone, {f: field(form, f"map_{f}") for f in CANONICAL_FIELDS}


async def _parse(
    upload: Upload, phone_column: str | None, field_map: dict[str, str] | None
) -> ParseResult:
    """Parse the upload with the mapping (detection when None), as ``contacts import``.

    Raises:
        VoicecastError: the file cannot be read, or a column is missing (message with the
            client's file name, not the server path).
    """
    try:
        return await asyncio.to_thread(
            parse_contacts_file,
            upload.data,
            default_region=upload.region,
            phone_column=phone_column,
            field_map=field_map,
        )
    except ImportFormatError as exc:
        raise VoicecastError(upload.shown(str(exc))) from None


async def _preview(
    request: web.Request,
    upload: Upload,
    phone_column: str | None,
    field_map: dict[str, str] | None,
    *,
    list_name: str | None = None,
) -> web.Response:
    """The mapping form over ``upload``, parsed with the given (or detected) mapping.

    When the file cannot be parsed with it (e.g. no phone column recognised), the form is
    shown with the error and the file's headers so that the user can pick the columns.
    """
    result: ParseResult | None = None
    error: str | None = None
    try:
        result = await _parse(upload, phone_column, field_map)
        headers = result.headers
        chosen_phone = result.phone_column
        chosen = {f: result.field_columns.get(f, "") for f in CANONICAL_FIELDS}
    except VoicecastError as exc:
        error = str(exc)
        try:
            headers = await asyncio.to_thread(read_headers, upload.data)
        except ImportFormatError as exc2:  # not a table at all: back to the upload form
            shutil.rmtree(upload.folder, ignore_errors=True)
            values = {"list": upload.list_name, "default_region": upload.region}
            return render(
                request, "list_upload.html", status=400, values=values, regions=REGIONS,
                error=upload.shown(str(exc2)),
            )  # fmt: skip
        chosen_phone = phone_column or ""
        chosen = {f: (field_map or {}).get(f, "") for f in CANONICAL_FIELDS}
    reasons = Counter(r.reason.split(" (")[0] for r in result.rejects) if result else Counter()
    return render(
        request,
        "list_mapping.html",
        status=400 if error else 200,
        upload=upload,
        list_name=list_name or upload.list_name,
        base=f"/lists/upload/{upload.id}",
        headers=headers,
        phone_column=chosen_phone,
        chosen=chosen,
        fields=CANONICAL_FIELDS,
        labels=FIELD_LABELS,
        result=result,
        rows=result.contacts[:PREVIEW_ROWS] if result else [],
        rejects=result.rejects[:REJECTS_SHOWN] if result else [],
        reasons=reasons.most_common(),
        error=error,
    )


async def preview_action(request: web.Request) -> web.Response:
    """``POST /lists/upload/{id}/preview``: the preview again, with the mapping chosen."""
    who = require(request, "supervisor")
    upload = _load_upload(request, who)
    form = await request.post()
    if not upload.data.exists():
        raise HTTPProblem(409, "conflict", "this upload was already imported")
    phone, field_map = _mapping(form)
    return await _preview(request, upload, phone, field_map, list_name=field(form, "list"))


async def import_action(request: web.Request) -> web.Response:
    """``POST /lists/upload/{id}/import``: import with the chosen mapping (one transaction)
    and show the summary (imported / updated / duplicates / rejected) with the rejects
    report's link; a refused mapping re-shows the preview with the error."""
    who = require(request, "supervisor")
    upload = _load_upload(request, who)
    form = await request.post()
    if not upload.data.exists():
        raise HTTPProblem(409, "conflict", "this upload was already imported")
    phone, field_map = _mapping(form)
    raw_name = field(form, "list") or upload.list_name
    try:
        list_name = _check_list_name(raw_name)
        result = await _parse(upload, phone, field_map)
    except VoicecastError:
        return await _preview(request, upload, phone, field_map, list_name=raw_name)
    counts = await db_call(
        request, lambda s: import_contacts(s, list_name, result, key=store_key(request, s))
    )

    def finish() -> ImportSummary:
        rejects = upload.folder / REJECTS_FILE if result.rejects else None
        if rejects is not None:
            write_rejects_csv(result, rejects)
        summary = ImportSummary.build(list_name, upload.file_name, result, counts, None)
        _write_private(upload.folder / SUMMARY_FILE, json.dumps(summary.to_dict()).encode("utf-8"))
        with contextlib.suppress(OSError):
            upload.data.unlink()
        return summary

    summary = await asyncio.to_thread(finish)
    return render(
        request,
        "list_import.html",
        summary=summary,
        list_url=f"/lists/{path_part(list_name)}",
        rejects_url=f"/lists/upload/{upload.id}/rejects.csv" if result.rejects else None,
        rejects=result.rejects[:REJECTS_SHOWN],
        expires=time_formatter(report_zone(request))(
            datetime.fromtimestamp(upload.created + UPLOAD_TTL, UTC)
        ),
    )


async def rejects_csv(request: web.Request) -> web.StreamResponse:
    """``GET /lists/upload/{id}/rejects.csv``: the rejected rows (``line``, ``reason``, the
    original columns), as :func:`write_rejects_csv` wrote them (UTF-8 with BOM)."""
    who = require(request, "supervisor")
    upload = _load_upload(request, who)
    path = upload.folder / REJECTS_FILE
    if not path.is_file():
        raise HTTPProblem(404, "not_found", "no rejected rows for this upload")
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(upload.file_name).stem)[:80] or "upload"
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{stem}-rejects.csv"',
        },
    )
