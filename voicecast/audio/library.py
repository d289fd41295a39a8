"""The audio library: named messages converted for Asterisk, kept in the audio store.

A message ``welcome`` is stored as ``<store_dir>/welcome.wav`` (8 kHz mono 16-bit) with an
:class:`~voicecast.storage.models.AudioMessage` row. Before a campaign plays it, the file is
published (copied) into the folder Asterisk reads, and played as ``<sounds_dir_on_pbx>/welcome``
(Asterisk adds the extension itself).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from voicecast.audio.convert import (
    DEFAULT_LOUDNESS,
    AudioError,
    LoudnessTarget,
    atomic_write_bytes,
    convert_for_asterisk,
)
from voicecast.audio.tts import TtsError, Voice, render_text, synthesize, template_fields
from voicecast.digests import file_sha256
from voicecast.errors import NotFoundError, UnsafeValueError
from voicecast.storage.models import AudioMessage

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
NAME_RULE = (
    "1 to 64 characters: letters A-Z a-z, digits 0-9, '_' and '-', starting with a letter "
    "or a digit"
)
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.wav\Z")
_AGI_SAFE_RE = re.compile(r"^[A-Za-z0-9/_.-]+\Z")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid audio message name (:data:`NAME_RE`).

    Raises:
        UnsafeValueError: the name has other characters or is too long; the message says
            which characters are allowed.
    """
    if not NAME_RE.fullmatch(name):
        raise UnsafeValueError(f"invalid audio message name {name!r}: use {NAME_RULE}")
    return name


def _find(session: Session, name: str) -> AudioMessage | None:
    return session.scalars(select(AudioMessage).where(AudioMessage.name == name)).first()


def add_audio(
    session: Session,
    store_dir: Path,
    src: Path,
    name: str,
    *,
    max_duration: float,
    silence_threshold_dbfs: float,
    loudness: LoudnessTarget | None = DEFAULT_LOUDNESS,
    replace: bool = False,
    source_name: str | None = None,
) -> AudioMessage:
    """Convert ``src`` into the store as ``<store_dir>/<name>.wav`` and record it.

    Creates the :class:`AudioMessage` row, or updates it when ``replace`` is true (same id,
    so campaigns using it play the new audio). The row is added to ``session`` and flushed,
    never committed: the caller commits. ``store_dir`` is created if missing.

    Args:
        max_duration: longest accepted length, in seconds.
        silence_threshold_dbfs: peak level in dBFS below which a file is refused as silent.
        loudness: loudness to normalise to (default -18 LUFS, -2 dBTP); None keeps the
            file's level.
        replace: overwrite an existing message of that name.
        source_name: what the row records as the source (default ``src``'s file name).

    Raises:
        UnsafeValueError: ``name`` does not match :data:`NAME_RE`.
        AudioError: the name exists and ``replace`` is false, or the file is refused (see
            :func:`~voicecast.audio.convert.convert_for_asterisk`); then neither a row nor a
            file is written, and a replaced message keeps its previous file.
    """
    check_name(name)
    src = Path(src)
    existing = _find(session, name)
    if existing is not None and not replace:
        raise AudioError(f"audio message {name!r} already exists (replace it with --replace)")
    file_name = f"{name}.wav"
    dest = Path(store_dir) / file_name
    had_file = dest.exists()
    converted = convert_for_asterisk(
        src,
        dest,
        max_duration=max_duration,
        silence_threshold_dbfs=silence_threshold_dbfs,
        loudness=loudness,
    )
    source = source_name if source_name is not None else src.name
    try:
        if existing is None:
            audio = AudioMessage(
                name=name,
                file_name=file_name,
                sha256=converted.sha256,
                duration_ms=converted.duration_ms,
                source_name=source,
            )
            session.add(audio)
        else:
            audio = existing
            audio.file_name = file_name
            audio.sha256 = converted.sha256
            audio.duration_ms = converted.duration_ms
            audio.source_name = source
        session.flush()
    except BaseException:
        if not had_file:
            dest.unlink(missing_ok=True)
        raise
    return audio


def add_speech(
    session: Session,
    store_dir: Path,
    text: str,
    name: str,
    *,
    voice: Voice,
    cache_dir: Path,
    max_duration: float,
    silence_threshold_dbfs: float,
    loudness: LoudnessTarget | None = DEFAULT_LOUDNESS,
    replace: bool = False,
) -> AudioMessage:
    """Speak ``text`` with ``voice`` and add it to the library as ``name`` (like add_audio).

    The speech is made by :func:`~voicecast.audio.tts.synthesize` (cached in ``cache_dir``,
    normalised to ``loudness``) and stored as :func:`add_audio` stores a file, with the
    source ``tts:<voice>:<speed>`` (:attr:`Voice.label`). The text may hold ``[pause 500ms]``
    markup and ``{{`` / ``}}`` for braces, but no merge field: a library message is the
    same for everyone (a campaign whose message is a text renders its fields per call).

    Raises:
        UnsafeValueError: ``name`` does not match :data:`NAME_RE`.
        TtsError: the text holds merge fields or is refused by the speech synthesis.
        AudioError: the name exists and ``replace`` is false; nothing is written then.
    """
    check_name(name)
    if _find(session, name) is not None and not replace:
        raise AudioError(f"audio message {name!r} already exists (replace it with --replace)")
    fields = template_fields(text)
    if fields:
        shown = ", ".join(f"{{{f}}}" for f in sorted(fields))
        raise TtsError(
            f"the text holds merge fields ({shown}): a library message is the same for "
            f"everyone; merge fields are filled in per call by a campaign whose message is "
            f"a text (write {{{{ and }}}} for literal braces)"
        )
    spoken = synthesize(
        render_text(text, {}),
        voice,
        cache_dir,
        max_duration=max_duration,
        silence_threshold_dbfs=silence_threshold_dbfs,
        loudness=loudness,
    )
    # Already converted and normalised: stored as it is (a second normalisation would only
    # cost time), through add_audio for the same row handling.
    return add_audio(
        session,
        store_dir,
        spoken,
        name,
        max_duration=max_duration,
        silence_threshold_dbfs=silence_threshold_dbfs,
        loudness=None,
        replace=replace,
        source_name=voice.label,
    )


def get_audio(session: Session, name: str) -> AudioMessage:
    """The audio message called ``name``.

    Raises:
        NotFoundError: there is none (the message names only the missing name).
    """
    audio = _find(session, name)
    if audio is None:
        raise NotFoundError(f"no audio message named {name!r} (add it with `voicecast audio add`)")
    return audio


def _checked_file_name(audio: AudioMessage) -> str:
    if not _FILE_NAME_RE.fullmatch(audio.file_name):
        raise UnsafeValueError(f"unsafe audio file name in the database: {audio.file_name!r}")
    return audio.file_name


def publish(audio: AudioMessage, store_dir: Path, sounds_dir: Path) -> Path:
    """Copy a stored message into the folder Asterisk plays from; return the copy's path.

    The copy (``<sounds_dir>/<file_name>``, permissions 0644, folder created) is skipped when
    the destination already has the message's SHA-256, and is atomic otherwise (temp file +
    os.replace), so a call in progress never plays a half-written file.

    Raises:
        UnsafeValueError: the row's ``file_name`` is not ``<name>.wav``.
        AudioError: the stored file is missing or no longer matches the row's SHA-256, or
            ``sounds_dir`` cannot be written.
    """
    file_name = _checked_file_name(audio)
    src = Path(store_dir) / file_name
    dest = Path(sounds_dir) / file_name
    if dest.is_file() and file_sha256(dest) == audio.sha256:
        return dest
    try:
        data = src.read_bytes()
    except FileNotFoundError:
        raise AudioError(
            f"{src}: stored file of audio message {audio.name!r} is missing "
            f"(add it again with `voicecast audio add --replace`)"
        ) from None
    except OSError as exc:
        raise AudioError(f"{src}: cannot read the stored audio: {exc}") from exc
    if hashlib.sha256(data).hexdigest() != audio.sha256:
        raise AudioError(
            f"{src}: stored file of audio message {audio.name!r} changed since it was added "
            f"(add it again with `voicecast audio add --replace`)"
        )
    try:
        atomic_write_bytes(dest, data)
    except OSError as exc:
        raise AudioError(f"{dest}: cannot publish audio message {audio.name!r}: {exc}") from exc
    return dest


def pbx_playback_name(audio: AudioMessage, sounds_dir_on_pbx: str) -> str:
    """What Asterisk plays: ``<sounds_dir_on_pbx>/<name>``, a POSIX path without extension.

    E.g. ``/var/lib/asterisk/sounds/voicecast/welcome``.

    Raises:
        UnsafeValueError: the result would hold a character outside ``A-Za-z0-9/_.-`` (unsafe
            in an AGI command argument), or the row's ``file_name`` is not ``<name>.wav``.
    """
    stem = _checked_file_name(audio).removesuffix(".wav")
    result = posixpath.join(sounds_dir_on_pbx, stem)
    if not _AGI_SAFE_RE.fullmatch(result):
        raise UnsafeValueError(
            f"unsafe audio playback path {result!r}: only letters, digits and / _ . - are "
            f"allowed (check [pbx] sounds_dir_on_pbx)"
        )
    return result
