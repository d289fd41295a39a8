"""REST API: the audio library (list, upload)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from voicecast.audio.convert import AudioError
from voicecast.audio.library import NAME_RE, NAME_RULE, add_audio
from voicecast.storage.models import AudioMessage
from voicecast.web.api_common import answer_page, save_upload, temp_folder
from voicecast.web.openapi import (
    Call,
    Page,
    PageQuery,
    RequestModel,
    ResponseModel,
    RouteGroup,
    Upload,
)
from voicecast.web.server import HTTPProblem, context, db_call

routes = RouteGroup("audio", "The audio library (8 kHz mono 16-bit WAV for Asterisk).")

AUDIO_FILE = Upload(
    media_types=(
        "application/octet-stream",
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/mpeg",
        "audio/ogg",
        "audio/flac",
        "audio/mp4",
        "audio/webm",
    ),
    description="The audio file (WAV, MP3, OGG, FLAC, M4A...: anything ffmpeg decodes), as "
    "the raw body or as the multipart form field `file`. A raw body may name its file in "
    '`Content-Disposition: attachment; filename="welcome.mp3"`.',
)
_SUFFIX_BY_TYPE = {
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "audio/mp4": ".m4a",
    "audio/webm": ".webm",
}


class AudioItem(ResponseModel):
    """One message of the library."""

    name: str
    duration_ms: int = Field(description="Length in milliseconds.")
    source_name: str = Field(description="The uploaded file's name, or tts:<voice>:<speed>.")
    sha256: str = Field(description="SHA-256 of the stored WAV.")
    created_at: datetime


class AudioPage(Page[AudioItem]):
    """A page of the audio library, by name."""


class AudioUploadQuery(RequestModel):
    """The name to give the uploaded audio."""

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=NAME_RE.pattern.rstrip("\\Z") + "$",
        description=f"The message's name: {NAME_RULE}.",
        examples=["welcome"],
    )
    replace: bool = Field(False, description="Replace an existing message of that name.")


def _item(msg: AudioMessage) -> AudioItem:
    return AudioItem(
        name=msg.name,
        duration_ms=msg.duration_ms,
        source_name=msg.source_name,
        sha256=msg.sha256,
        created_at=msg.created_at,
    )


@routes.get(
    "/api/v1/audio",
    "List the audio library",
    role="viewer",
    query_model=PageQuery,
    response=AudioPage,
)
async def list_audio(call: Call) -> AudioPage:
    """The audio messages, by name: length, source, checksum."""
    return await answer_page(
        call,
        AudioPage,
        select(AudioMessage).order_by(AudioMessage.name),
        lambda _s, row: _item(row[0]),
    )


@routes.post(
    "/api/v1/audio",
    "Upload an audio message",
    role="supervisor",
    query_model=AudioUploadQuery,
    upload=AUDIO_FILE,
    response=AudioItem,
    status=201,
    errors=(409,),
)
async def upload_audio(call: Call) -> AudioItem:
    """Convert the file to 8 kHz mono 16-bit WAV, normalise its loudness to [audio]
    loudness_lufs, and add it to the library, as `voicecast audio add` does. 409 when the
    name exists and `replace` is false; 400 when the file is refused (not audio, too long,
    silent...)."""
    query = call.query_as(AudioUploadQuery)
    runtime = context(call.request).runtime
    a = runtime.settings.audio
    with temp_folder() as folder:
        uploaded = await save_upload(call.request, AUDIO_FILE, Path(folder), _SUFFIX_BY_TYPE)
        shown = uploaded.filename or "the uploaded file"

        def work(s: Session) -> AudioItem:
            exists = s.scalar(select(AudioMessage.id).where(AudioMessage.name == query.name))
            if exists is not None and not query.replace:
                raise HTTPProblem(
                    409, "conflict", f"name: audio {query.name!r} exists (replace=true replaces it)"
                )
            try:
                msg = add_audio(
                    s,
                    runtime.audio_store,
                    uploaded.path,
                    query.name,
                    max_duration=a.max_duration,
                    silence_threshold_dbfs=a.silence_threshold_dbfs,
                    loudness=a.loudness_target(),
                    replace=query.replace,
                    source_name=(uploaded.filename or "upload")[:500],
                )
            except AudioError as exc:  # name the upload, not the temporary file
                raise HTTPProblem(
                    400, "invalid", "file: " + str(exc).replace(str(uploaded.path), shown)
                ) from None
            return _item(msg)

        return await db_call(call.request, work)
