"""Audio library pages: the messages with a player, upload, and text-to-speech.

Routes:

* ``GET /audio``: name, duration, source, created, and an ``<audio controls>`` player;
  the upload form and the text-to-speech form for supervisors.
* ``GET /audio/{name}.wav``: the stored WAV (``audio/wav``, range requests served). Only
  a name found in the database is served, from the row's checked file name in the audio
  store: nothing of the URL becomes a path.
* ``POST /audio``: upload (multipart ``name``, ``file``, ``replace``) converted and added
  exactly as ``voicecast audio add`` (:func:`~voicecast.audio.library.add_audio` with the
  ``[audio]`` settings).
* ``POST /audio/tts-preview``: ``text``, ``voice``, ``speed`` spoken by the local TTS
  (:func:`~voicecast.audio.tts.synthesize`, cached) and returned as ``audio/wav``; merge
  fields are read as their names. ``static/console.js`` posts it and plays the answer.
* ``POST /audio/tts``: the same text added to the library as ``voicecast audio say``
  (:func:`~voicecast.audio.library.add_speech`).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from voicecast.audio.library import NAME_RE, add_audio, add_speech, get_audio
from voicecast.audio.tts import (
    MAX_SPEED,
    MIN_SPEED,
    TtsError,
    available_voices,
    render_text,
    synthesize,
    template_fields,
)
from voicecast.errors import NotFoundError, VoicecastError
from voicecast.storage.models import AudioMessage
from voicecast.web.console_common import field, report_zone, time_formatter
from voicecast.web.console_lists import upload_root
from voicecast.web.server import HTTPProblem, context, db_call, principal, render, require

WAV_TYPE = "audio/wav"
"""The media type of the WAV files served (RFC 2361 registers ``audio/wav``)."""

_FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.wav")
_SUFFIX_RE = re.compile(r"\.[A-Za-z0-9]{1,8}")
_AUDIO_FIELDS = ("name", "replace")
_TTS_FIELDS = ("tts_name", "text", "voice", "speed", "tts_replace")


def setup(app: web.Application) -> None:
    """Register the audio library routes."""
    app.router.add_get("/audio", audio_page)
    app.router.add_post("/audio", upload_audio_action)
    app.router.add_post("/audio/tts-preview", tts_preview)
    app.router.add_post("/audio/tts", tts_save_action)
    app.router.add_get("/audio/{name}.wav", audio_file)


@cache
def _voices() -> tuple[str, ...]:
    """espeak-ng's voices (empty when it is not installed); listed once per process."""
    try:
        return tuple(available_voices("espeak-ng"))
    except TtsError:
        return ()


async def _page(
    request: web.Request,
    *,
    status: int = 200,
    upload_error: str | None = None,
    tts_error: str | None = None,
    values: dict[str, str] | None = None,
    added: str | None = None,
) -> web.Response:
    def load(s: Session) -> list[AudioMessage]:
        return list(s.scalars(select(AudioMessage).order_by(AudioMessage.name)))

    messages = await db_call(request, load)
    audio = context(request).runtime.settings.audio
    shown = dict.fromkeys((*_AUDIO_FIELDS, *_TTS_FIELDS), "")
    shown.update(voice=audio.tts_voice, speed=str(audio.tts_speed))
    shown.update(values or {})
    voices = await asyncio.to_thread(_voices) if _may_change(request) else ()
    return render(
        request,
        "audio.html",
        status=status,
        messages=messages,
        upload_error=upload_error,
        tts_error=tts_error,
        values=shown,
        voices=voices,
        added=added,
        min_speed=MIN_SPEED,
        max_speed=MAX_SPEED,
        when=time_formatter(report_zone(request)),
    )


def _may_change(request: web.Request) -> bool:
    who = principal(request)
    return who is not None and who.can("supervisor")


async def audio_page(request: web.Request) -> web.Response:
    """``GET /audio[?added=NAME]``: the library with players; forms for supervisors."""
    require(request, "viewer")
    added = request.query.get("added")
    return await _page(request, added=added if added and NAME_RE.fullmatch(added) else None)


async def audio_file(request: web.Request) -> web.StreamResponse:
    """``GET /audio/{name}.wav``: the stored message, ``audio/wav``.

    Raises:
        HTTPProblem: 404 when the name is not a library name, or its file is missing.
    """
    require(request, "viewer")
    name = request.match_info["name"]
    if not NAME_RE.fullmatch(name):
        raise HTTPProblem(404, "not_found", "no such audio message")
    try:
        file_name = await db_call(request, lambda s: get_audio(s, name).file_name)
    except NotFoundError:
        raise HTTPProblem(404, "not_found", f"no audio message named {name!r}") from None
    if not _FILE_NAME_RE.fullmatch(file_name):
        raise HTTPProblem(404, "not_found", "no such audio file")
    path = context(request).runtime.audio_store / file_name
    if not path.is_file():
        raise HTTPProblem(404, "not_found", f"the file of audio message {name!r} is missing")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": WAV_TYPE,
            "Content-Disposition": f'inline; filename="{file_name}"',
        },
    )


def _audio_kwargs(request: web.Request) -> dict[str, Any]:
    """The ``[audio]`` settings ``audio add`` / ``audio say`` pass to the library."""
    a = context(request).runtime.settings.audio
    return {
        "max_duration": a.max_duration,
        "silence_threshold_dbfs": a.silence_threshold_dbfs,
        "loudness": a.loudness_target(),
    }


async def upload_audio_action(request: web.Request) -> web.Response:
    """``POST /audio`` (multipart ``name``, ``file``, ``replace``): convert and add the
    file as ``voicecast audio add`` does; an error re-shows the page with it (400)."""
    require(request, "supervisor")
    form = await request.post()
    values = {key: field(form, key) for key in _AUDIO_FIELDS}
    upload = form.get("file")
    name = values["name"]
    if not isinstance(upload, web.FileField) or not upload.filename:
        return await _page(
            request, status=400, upload_error="file: choose an audio file", values=values
        )
    client_name = re.split(r"[\\/]", upload.filename)[-1][:200] or "upload"
    suffix = Path(client_name).suffix
    folder = upload_root(request) / f"audio-{secrets.token_hex(16)}"
    src = folder / ("source" + (suffix.lower() if _SUFFIX_RE.fullmatch(suffix) else ""))
    store = context(request).runtime.audio_store
    kwargs = _audio_kwargs(request)
    replace = values["replace"] in ("on", "yes", "1", "true")

    def save() -> None:
        folder.mkdir(parents=True, mode=0o700)
        upload.file.seek(0)
        with src.open("wb") as out:
            shutil.copyfileobj(upload.file, out)

    try:
        await asyncio.to_thread(save)
        await db_call(
            request,
            lambda s: add_audio(
                s, store, src, name, replace=replace, source_name=client_name, **kwargs
            ),
        )
    except VoicecastError as exc:
        message = str(exc).replace(str(src), client_name)
        return await _page(request, status=400, upload_error=message, values=values)
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)
    raise web.HTTPSeeOther(f"/audio?added={name}")


def _tts_values(form: Any) -> dict[str, str]:
    values = {key: field(form, key) for key in _TTS_FIELDS}
    text = form.get("text")
    values["text"] = text.strip() if isinstance(text, str) else ""
    return values


def _voice(request: web.Request, values: dict[str, str]) -> Any:
    """The :class:`~voicecast.audio.tts.Voice` of the form (``[audio]`` defaults for blank
    fields), as ``audio say`` chooses it.

    Raises:
        TtsError: unknown voice, or a speed that is not a number in range.
    """
    raw = values["speed"]
    if raw and not raw.isdigit():
        raise TtsError(f"speed: {raw!r} is not a whole number of words per minute")
    speed = int(raw) if raw else None
    return context(request).runtime.settings.audio.tts_voice_for(values["voice"] or None, speed)


async def tts_preview(request: web.Request) -> web.Response:
    """``POST /audio/tts-preview`` (``text``, ``voice``, ``speed``): the spoken text as an
    8 kHz mono WAV (``audio/wav``). Merge fields (``{first_name}``) are spoken as their
    names. Errors are JSON when the request accepts JSON (the page's script asks so).

    Raises:
        HTTPProblem: 400 ``invalid``: empty or refused text, unknown voice, bad speed.
    """
    require(request, "supervisor")
    form = await request.post()
    values = _tts_values(form)
    settings = context(request).runtime.settings
    a = settings.audio
    try:
        voice = _voice(request, values)
        fields = {f: f.replace("_", " ") for f in template_fields(values["text"])}
        text = render_text(values["text"], fields)
        path = await asyncio.to_thread(
            synthesize,
            text,
            voice,
            settings.path(a.tts_cache_dir),
            max_duration=a.max_duration,
            silence_threshold_dbfs=a.silence_threshold_dbfs,
            loudness=a.loudness_target(),
        )
        data = await asyncio.to_thread(path.read_bytes)
    except VoicecastError as exc:
        raise HTTPProblem(400, "invalid", str(exc)) from exc
    return web.Response(body=data, content_type=WAV_TYPE)


async def tts_save_action(request: web.Request) -> web.Response:
    """``POST /audio/tts`` (``tts_name``, ``text``, ``voice``, ``speed``, ``tts_replace``):
    speak the text and add it to the library as ``voicecast audio say`` does."""
    require(request, "supervisor")
    form = await request.post()
    values = _tts_values(form)
    settings = context(request).runtime.settings
    store = context(request).runtime.audio_store
    cache_dir = settings.path(settings.audio.tts_cache_dir)
    kwargs = _audio_kwargs(request)
    name = values["tts_name"]
    replace = values["tts_replace"] in ("on", "yes", "1", "true")
    try:
        voice = _voice(request, values)
        await db_call(
            request,
            lambda s: add_speech(
                s,
                store,
                values["text"],
                name,
                voice=voice,
                cache_dir=cache_dir,
                replace=replace,
                **kwargs,
            ),
        )
    except VoicecastError as exc:
        return await _page(request, status=400, tts_error=str(exc), values=values)
    raise web.HTTPSeeOther(f"/audio?added={name}")
