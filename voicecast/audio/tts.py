"""Local text-to-speech: merge fields, pause markup, espeak-ng (or Piper), cached by content.

Nothing leaves the machine and nothing is downloaded at run time: espeak-ng is a Debian
package (``apt-get install espeak-ng``; French and English voices included), and the optional
Piper engine needs its program and a voice model file that you installed yourself.

The text of a message goes through three steps:

1. :func:`render_text` merges a contact's fields into a template (``"Bonjour {first_name},"``).
   Only plain names are allowed between braces (no attribute or index access, no format
   spec); ``{{`` and ``}}`` stand for literal braces. Values lose their control characters
   (CR, LF, NUL...) and square brackets, and are cut to :data:`MAX_FIELD_CHARS` characters.
2. :func:`parse_markup` reads pauses written in the text: ``[pause 500ms]`` or
   ``[pause 1.5s]`` (at most :data:`MAX_PAUSE_SECONDS` each). Any other ``[...]`` is refused.
   (espeak-ng makes a pause right after a full stop replace the sentence's own pause; between
   words it is added.)
3. :func:`synthesize` speaks it: for espeak-ng the pauses become SSML ``<break time="500ms"/>``
   and the rest is XML-escaped (espeak-ng ``-m``; its SSML support is documented in
   espeak-ng's ``docs/markup.md``, https://github.com/espeak-ng/espeak-ng/blob/master/docs/markup.md,
   and its options in ``espeak-ng(1)``). The result goes through
   :func:`voicecast.audio.convert.convert_for_asterisk` (8 kHz mono 16-bit WAV, the same
   length, silence and loudness checks as uploaded audio) and is cached as
   ``<cache_dir>/tts-<sha256>.wav``, the hash covering everything that shapes the sound.

Units: speed in words per minute, pauses and durations in seconds (``ms`` only inside the
markup and SSML), loudness in LUFS.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import re
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import unicodedata
import wave
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from xml.sax.saxutils import escape as xml_escape

from voicecast.audio.convert import (
    DEFAULT_LOUDNESS,
    AudioError,
    LoudnessTarget,
    convert_for_asterisk,
)

Engine = Literal["espeak-ng", "piper"]
ENGINES: tuple[Engine, ...] = get_args(Engine)

#: Voice used when none is named (an espeak-ng language).
DEFAULT_VOICE = "fr"
#: Speaking rate used when none is given, in words per minute (espeak-ng's own default).
DEFAULT_SPEED = 150
#: Speaking rates espeak-ng accepts (``-s``), in words per minute.
MIN_SPEED, MAX_SPEED = 80, 450
#: Pitches espeak-ng accepts (``-p``; 50 is its default).
MIN_PITCH, MAX_PITCH = 0, 99
#: Longest pause one ``[pause ...]`` may ask for, in seconds.
MAX_PAUSE_SECONDS = 10.0
#: Longest merged field value, in characters (longer values are cut).
MAX_FIELD_CHARS = 100
#: Longest text :func:`synthesize` accepts, in characters.
MAX_TEXT_CHARS = 5000
#: How long one espeak-ng or Piper run may take, in seconds.
SYNTH_TIMEOUT = 120.0
#: Part of every cache key: bump it when the way audio is produced changes.
CACHE_FORMAT_VERSION = 1

_ESPEAK = "espeak-ng"
_ESPEAK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}(\+[A-Za-z0-9_-]{1,32})?\Z")
_FIELD_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_PAUSE_RE = re.compile(r"^\s*pause\s+(\d{1,6}(?:\.\d{1,3})?)\s*(ms|s)\s*\Z", re.IGNORECASE)
_PIPER_INSTALL = (
    "install Piper yourself (`pip install piper-tts` in voicecast's virtualenv, or the piper "
    "program on the PATH) and put a voice model (.onnx with its .onnx.json) on this machine; "
    "voicecast never downloads models"
)


class TtsError(AudioError):
    """Text cannot be turned into speech; the message names the field, markup or voice."""


# --------------------------------------------------------------------------------------------
# voices


@dataclass(frozen=True, kw_only=True)
class Voice:
    """Who speaks, and how fast.

    Attributes:
        engine: ``"espeak-ng"`` (default) or ``"piper"``.
        name: for espeak-ng a voice or language (``"fr"``, ``"en-gb"``, ``"en-us"``, with an
            optional variant: ``"fr+f3"``); for Piper the path of a local ``.onnx`` model
            (its ``.onnx.json`` beside it).
        speed: words per minute, :data:`MIN_SPEED` to :data:`MAX_SPEED` (espeak-ng ``-s``;
            for Piper, ``length_scale = 150 / speed``).
        pitch: espeak-ng pitch 0 to 99 (``-p``; 50 is its default), or None for the default.
            Piper has none: it must be None.

    Raises:
        TtsError: unknown engine, malformed voice name, speed or pitch out of range.
    """

    engine: Engine = "espeak-ng"
    name: str = DEFAULT_VOICE
    speed: int = DEFAULT_SPEED
    pitch: int | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise TtsError(
                f"unknown speech engine {self.engine!r}: use one of {', '.join(ENGINES)}"
            )
        if self.engine == "espeak-ng":
            if not _ESPEAK_NAME_RE.fullmatch(self.name):
                raise TtsError(
                    f"invalid espeak-ng voice name {self.name!r}: a language such as fr, "
                    f"en-gb or en-us, optionally with a variant (fr+f3); `voicecast audio "
                    f"voices` lists them"
                )
        elif not self.name.endswith(".onnx") or self.name.startswith("-"):
            raise TtsError(
                f"invalid Piper voice {self.name!r}: give the path of a local .onnx model"
            )
        if isinstance(self.speed, bool) or not isinstance(self.speed, int):
            raise TtsError(
                f"speech speed must be a whole number of words per minute: {self.speed!r}"
            )
        if not MIN_SPEED <= self.speed <= MAX_SPEED:
            raise TtsError(
                f"speech speed {self.speed} words per minute is out of range "
                f"({MIN_SPEED} to {MAX_SPEED})"
            )
        if self.pitch is not None:
            if self.engine == "piper":
                raise TtsError("the Piper engine has no pitch setting: leave pitch unset")
            if isinstance(self.pitch, bool) or not isinstance(self.pitch, int):
                raise TtsError(f"speech pitch must be a whole number: {self.pitch!r}")
            if not MIN_PITCH <= self.pitch <= MAX_PITCH:
                raise TtsError(
                    f"speech pitch {self.pitch} is out of range ({MIN_PITCH} to {MAX_PITCH})"
                )

    @classmethod
    def parse(cls, spec: str, *, speed: int = DEFAULT_SPEED, pitch: int | None = None) -> Voice:
        """A voice from ``"fr"``, ``"espeak-ng:en-gb"`` or ``"piper:/models/fr.onnx"``.

        Raises:
            TtsError: as :class:`Voice` does.
        """
        spec = spec.strip()
        engine, sep, rest = spec.partition(":")
        if sep and engine in ENGINES:
            return cls(engine=engine, name=rest.strip(), speed=speed, pitch=pitch)
        return cls(engine="espeak-ng", name=spec, speed=speed, pitch=pitch)

    @property
    def label(self) -> str:
        """The audio's source name: ``tts:fr:150``, ``tts:fr:150:p60`` or ``tts:piper:NAME:150``."""
        if self.engine == "piper":
            return f"tts:piper:{Path(self.name).stem}:{self.speed}"
        pitch = "" if self.pitch is None else f":p{self.pitch}"
        return f"tts:{self.name}:{self.speed}{pitch}"


def _espeak_path() -> str:
    found = shutil.which(_ESPEAK)
    if found is None:
        raise TtsError(
            "espeak-ng is not installed: `apt-get install espeak-ng` (`./run setup` does it)"
        )
    return found


def _piper_command() -> list[str]:
    """How to run Piper: the ``piper`` program, else ``python -m piper`` (piper-tts).

    Raises:
        TtsError: neither is installed (the message says how to install it).
    """
    found = shutil.which("piper")
    if found is not None:
        return [found]
    try:
        has_module = importlib.util.find_spec("piper.voice") is not None
    except (ImportError, ValueError):  # another package named "piper", or a broken one
        has_module = False
    if has_module:
        return [sys.executable, "-m", "piper"]
    raise TtsError(f"the Piper speech engine is not installed: {_PIPER_INSTALL}")


_VOICE_LANGS_RE = re.compile(r"\(([A-Za-z0-9_-]+) \d+\)")


def available_voices(engine: Engine = "espeak-ng", *, model_dir: Path | None = None) -> list[str]:
    """Names usable as :attr:`Voice.name`, sorted.

    For espeak-ng: the languages ``espeak-ng --voices`` lists (``fr``, ``fr-fr``, ``en-gb``,
    ``en-us``...), MBROLA voices only when the ``mbrola`` program is installed. For Piper:
    the ``.onnx`` models in ``model_dir`` that have their ``.onnx.json`` (none without a
    folder).

    Raises:
        TtsError: the engine is unknown or not installed, or espeak-ng fails.
    """
    if engine == "piper":
        _piper_command()
        if model_dir is None or not Path(model_dir).is_dir():
            return []
        return sorted(
            str(p) for p in Path(model_dir).glob("*.onnx") if p.with_suffix(".onnx.json").is_file()
        )
    if engine != "espeak-ng":
        raise TtsError(f"unknown speech engine {engine!r}: use one of {', '.join(ENGINES)}")
    try:
        proc = subprocess.run(
            [_espeak_path(), "--voices"], capture_output=True, timeout=SYNTH_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TtsError(f"cannot list the espeak-ng voices: {exc}") from exc
    if proc.returncode != 0:
        raise TtsError(
            f"cannot list the espeak-ng voices: {proc.stderr.decode(errors='replace').strip()}"
        )
    mbrola = shutil.which("mbrola") is not None
    names: set[str] = set()
    for line in proc.stdout.decode(errors="replace").splitlines()[1:]:
        cols = line.split(None, 5)
        if len(cols) < 5:
            continue
        if cols[4].startswith("mb/") and not mbrola:
            continue
        names.add(cols[1].lower())
        if len(cols) > 5:
            names.update(m.lower() for m in _VOICE_LANGS_RE.findall(cols[5]))
    return sorted(names)


# --------------------------------------------------------------------------------------------
# merge fields


def _template_parts(template: str) -> list[tuple[str, str | None]]:
    """``(literal text, field name or None)`` pairs of a template, checked.

    Raises:
        TtsError: unbalanced braces, or a field that is not a plain name.
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TtsError(
            f"malformed merge field in the text: {exc} (write {{first_name}}; "
            f"{{{{ and }}}} for literal braces)"
        ) from None
    out: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parts:
        if name is None:
            out.append((literal, None))
            continue
        shown = (
            "{"
            + name
            + (f"!{conversion}" if conversion else "")
            + (f":{spec}" if spec else "")
            + "}"
        )
        if not _FIELD_NAME_RE.fullmatch(name) or spec or conversion:
            raise TtsError(
                f"invalid merge field {shown}: only plain names such as {{first_name}} or "
                f"{{company}} are allowed"
            )
        out.append((literal, name))
    return out


def template_fields(template: str) -> set[str]:
    """The merge fields a template uses: ``"Bonjour {first_name}"`` -> ``{"first_name"}``.

    Meant to check a campaign's text against its list's columns before it starts.

    Raises:
        TtsError: the template is malformed (see :func:`render_text`).
    """
    return {name for _, name in _template_parts(template) if name is not None}


def _clean_value(value: str) -> str:
    """A field value made safe to speak: no control characters, no markup, not too long."""
    chars = []
    for ch in value:
        category = unicodedata.category(ch)
        if category == "Cf":  # zero-width and direction marks, soft hyphen
            continue
        chars.append(" " if category in ("Cc", "Zl", "Zp") else ch)
    text = " ".join("".join(chars).split())
    text = text.replace("[", "(").replace("]", ")")  # a value never adds a [pause]
    if len(text) > MAX_FIELD_CHARS:
        text = text[:MAX_FIELD_CHARS].rstrip()
    return text


def render_text(template: str, fields: Mapping[str, str | None]) -> str:
    """Merge ``fields`` into ``template``: ``"Bonjour {first_name}"`` -> ``"Bonjour Camille"``.

    A safe subset of :meth:`str.format`: only ``{name}`` with a plain name, ``{{`` and ``}}``
    for literal braces. Each value is cleaned: control characters (CR, LF, NUL, tab...)
    become spaces, invisible format characters are removed, runs of spaces collapse,
    square brackets become parentheses (so that a value cannot add ``[pause]`` markup), and
    it is cut to :data:`MAX_FIELD_CHARS` characters.

    Args:
        template: the message text, possibly with ``[pause ...]`` markup (kept as is).
        fields: the contact's values by field name; None means no value.

    Returns:
        The text to give :func:`synthesize`.

    Raises:
        TtsError: malformed template; a field the mapping lacks, or whose value is None or
            empty after cleaning (the message names the field and lists the known ones).
    """
    out: list[str] = []
    for literal, name in _template_parts(template):
        out.append(literal)
        if name is None:
            continue
        known = ", ".join(sorted(fields)) or "none"
        if name not in fields:
            raise TtsError(f"unknown merge field {{{name}}} (known fields: {known})")
        raw = fields[name]
        value = _clean_value(raw) if raw is not None else ""
        if not value:
            raise TtsError(f"merge field {{{name}}} is empty (known fields: {known})")
        out.append(value)
    return "".join(out)


# --------------------------------------------------------------------------------------------
# pause markup


@dataclass(frozen=True)
class Pause:
    """A silence asked for in the text with ``[pause 500ms]``; ``seconds`` > 0."""

    seconds: float

    @property
    def ms(self) -> int:
        """The pause in whole milliseconds."""
        return round(self.seconds * 1000)


Segment = str | Pause


def parse_markup(text: str) -> list[Segment]:
    """Split text into spoken parts and :class:`Pause` es: ``[pause 500ms]``, ``[pause 1.5s]``.

    Markup is case-insensitive, allows spaces (``[ pause 2 s ]``) and up to three decimals.
    Control characters in the text become spaces. Square brackets are reserved for markup.

    Raises:
        TtsError: an unclosed ``[`` or stray ``]``, unknown markup (``[note]``), a pause of
            0 or longer than :data:`MAX_PAUSE_SECONDS` s; the message quotes the markup.
    """
    text = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    segments: list[Segment] = []
    pos = 0
    while pos < len(text):
        open_at = text.find("[", pos)
        close_at = text.find("]", pos)
        if close_at != -1 and (open_at == -1 or close_at < open_at):
            raise TtsError(
                f"stray ']' in the text at character {close_at + 1}: square brackets are "
                f"only for markup such as [pause 500ms]"
            )
        if open_at == -1:
            segments.append(text[pos:])
            break
        if open_at > pos:
            segments.append(text[pos:open_at])
        end = text.find("]", open_at)
        nested = text.find("[", open_at + 1)
        if end == -1 or (nested != -1 and nested < end):
            snippet = text[open_at : open_at + 20]
            raise TtsError(
                f"unclosed '[' in the text at character {open_at + 1} ({snippet!r}): markup "
                f"is [pause 500ms] or [pause 1.5s]"
            )
        markup = text[open_at : end + 1]
        match = _PAUSE_RE.fullmatch(markup[1:-1])
        if match is None:
            raise TtsError(
                f"unknown markup {markup}: the only markup is a pause, [pause 500ms] or "
                f"[pause 1.5s]"
            )
        seconds = float(match.group(1)) / (1000.0 if match.group(2).lower() == "ms" else 1.0)
        if seconds <= 0:
            raise TtsError(f"{markup}: a pause must be longer than 0")
        if seconds > MAX_PAUSE_SECONDS:
            raise TtsError(f"{markup}: a pause is at most {MAX_PAUSE_SECONDS:g} s")
        segments.append(Pause(seconds))
        pos = end + 1
    return segments


def _has_words(segments: Sequence[Segment]) -> bool:
    return any(isinstance(s, str) and any(ch.isalnum() for ch in s) for s in segments)


def to_ssml(segments: Sequence[Segment]) -> str:
    """The SSML espeak-ng reads (``-m``): escaped text and ``<break time="NNNms"/>``.

    espeak-ng's SSML support (``<speak>``, ``<break time>``...) is described in its
    ``docs/markup.md``. Text is XML-escaped, so a ``<`` or ``&`` in it is spoken or skipped,
    never read as a tag.
    """
    body = "".join(
        f'<break time="{s.ms}ms"/>' if isinstance(s, Pause) else xml_escape(s) for s in segments
    )
    return f"<speak>{body}</speak>"


# --------------------------------------------------------------------------------------------
# synthesis


def cache_key(
    segments: Sequence[Segment], voice: Voice, loudness: LoudnessTarget | None = DEFAULT_LOUDNESS
) -> str:
    """Hex SHA-256 naming the cached audio of ``segments`` spoken by ``voice``.

    Covers :data:`CACHE_FORMAT_VERSION`, the engine, voice, speed, pitch, the text and its
    pauses, the loudness target, and for Piper the model file's size and modification time.
    """
    model: list[int] | None = None
    if voice.engine == "piper":
        try:
            st = Path(voice.name).stat()
            model = [st.st_size, st.st_mtime_ns]
        except OSError:
            model = None
    payload = {
        "format": CACHE_FORMAT_VERSION,
        "engine": voice.engine,
        "voice": voice.name,
        "speed": voice.speed,
        "pitch": voice.pitch,
        "model": model,
        "text": [{"pause_ms": s.ms} if isinstance(s, Pause) else s for s in segments],
        "loudness": None
        if loudness is None
        else [loudness.integrated_lufs, loudness.true_peak_dbtp],
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _is_cached(path: Path) -> bool:
    """A usable cached file: a RIFF/WAVE file with more than a header."""
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE" and path.stat().st_size > 44
    except OSError:
        return False


def _run(cmd: list[str], stdin: bytes, what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            cmd, input=stdin, capture_output=True, timeout=SYNTH_TIMEOUT, check=False
        )
    except FileNotFoundError as exc:
        raise TtsError(f"{what}: {cmd[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise TtsError(f"{what} took longer than {SYNTH_TIMEOUT:.0f} s") from exc


def _espeak(segments: Sequence[Segment], voice: Voice, out: Path) -> None:
    """Speak ``segments`` with espeak-ng into the WAV ``out`` (22050 Hz mono 16-bit).

    The SSML goes on standard input (``--stdin``), never on the command line, so text
    starting with ``-`` cannot become an option. ``-b 1``: the input is UTF-8.

    Raises:
        TtsError: espeak-ng is missing, the voice unknown, or espeak-ng fails.
    """
    cmd = [_espeak_path(), "-m", "-b", "1", "-v", voice.name, "-s", str(voice.speed)]
    if voice.pitch is not None:
        cmd += ["-p", str(voice.pitch)]
    cmd += ["-w", str(out), "--stdin"]
    proc = _run(cmd, to_ssml(segments).encode("utf-8"), "espeak-ng")
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0 or not out.is_file():
        if "voice does not exist" in err or "Failed to read voice" in err:
            raise TtsError(
                f"unknown espeak-ng voice {voice.name!r} (`voicecast audio voices` lists them)"
            )
        reason = err.splitlines()[-1] if err else f"exit code {proc.returncode}"
        raise TtsError(f"espeak-ng failed with voice {voice.name!r}: {reason}")


def _piper(segments: Sequence[Segment], voice: Voice, out: Path, work: Path) -> None:
    """Speak ``segments`` with Piper into ``out``; pauses are silence added between parts.

    Piper reads plain text (no SSML): each spoken part is synthesised on its own
    (``--model``, ``--output_file``, ``--length_scale``; one line of text on standard
    input: the options both the ``piper`` program of rhasspy/piper and ``python -m piper``
    of piper-tts, OHF-Voice/piper1-gpl ``docs/CLI.md``, accept) and the parts are joined
    with the pauses' silence.

    Raises:
        TtsError: Piper or the model is missing, or Piper fails.
    """
    command = _piper_command()
    model = Path(voice.name)
    if not model.is_file():
        raise TtsError(f"Piper voice model not found: {model} ({_PIPER_INSTALL})")
    if not Path(f"{model}.json").is_file():
        raise TtsError(f"Piper voice model {model} has no {model.name}.json beside it")
    params: wave._wave_params | None = None
    frames: list[bytes] = []
    pending_pause = 0.0
    for index, segment in enumerate(segments):
        if isinstance(segment, Pause):
            pending_pause += segment.seconds
            continue
        if not segment.strip():
            continue
        part = work / f"part-{index}.wav"
        cmd = [*command, "--model", str(model), "--output_file", str(part)]
        cmd += ["--length_scale", f"{DEFAULT_SPEED / voice.speed:.3f}"]
        proc = _run(cmd, segment.strip().encode("utf-8"), "Piper")
        if proc.returncode != 0 or not part.is_file():
            err = proc.stderr.decode(errors="replace").strip()
            reason = err.splitlines()[-1] if err else f"exit code {proc.returncode}"
            raise TtsError(f"Piper failed with model {model}: {reason}")
        with wave.open(str(part), "rb") as w:
            params = w.getparams()
            data = w.readframes(w.getnframes())
        if pending_pause and frames:
            frames.append(b"\x00" * (round(pending_pause * params.framerate) * params.sampwidth))
        pending_pause = 0.0
        frames.append(data)
    if params is None:
        raise TtsError("the text is empty: nothing to say")
    with wave.open(str(out), "wb") as w:
        w.setparams(params)
        w.writeframes(b"".join(frames))


def synthesize(
    text: str,
    voice: Voice,
    cache_dir: Path,
    *,
    max_duration: float,
    silence_threshold_dbfs: float = -50.0,
    loudness: LoudnessTarget | None = DEFAULT_LOUDNESS,
) -> Path:
    """Speak ``text`` (with ``[pause ...]`` markup) into an 8 kHz mono 16-bit WAV; cached.

    The file is ``<cache_dir>/tts-<sha256>.wav`` (:func:`cache_key`); when it exists no
    engine runs. Otherwise the engine writes a temporary WAV, which
    :func:`~voicecast.audio.convert.convert_for_asterisk` resamples, checks and normalises
    (``loudness``) into the cache atomically (folder created, permissions 0644).

    Args:
        text: the text to say, already merged (:func:`render_text`); at most
            :data:`MAX_TEXT_CHARS` characters.
        voice: engine, voice, speed and pitch.
        cache_dir: folder of the cached files.
        max_duration: longest accepted speech, in seconds.
        silence_threshold_dbfs: as for uploaded audio.
        loudness: loudness target, None to keep the engine's level.

    Returns:
        The path of the cached WAV.

    Raises:
        TtsError: empty or too long text, bad markup, engine missing or failing, unknown
            voice, or speech refused by the conversion (e.g. longer than ``max_duration``).
    """
    if len(text) > MAX_TEXT_CHARS:
        raise TtsError(
            f"the text is too long: {len(text)} characters (the limit is {MAX_TEXT_CHARS})"
        )
    segments = parse_markup(text)
    if not _has_words(segments):
        raise TtsError("the text is empty: nothing to say")
    cache_dir = Path(cache_dir)
    dest = cache_dir / f"tts-{cache_key(segments, voice, loudness)}.wav"
    if _is_cached(dest):
        return dest
    with _rendering(dest):  # the same text asked by several calls at once is spoken once
        if _is_cached(dest):
            return dest
        _render(segments, voice, dest, max_duration, silence_threshold_dbfs, loudness)
    return dest


_RENDERING: dict[Path, threading.Lock] = {}
_RENDERING_GUARD = threading.Lock()


@contextlib.contextmanager
def _rendering(dest: Path) -> Iterator[None]:
    """Hold the lock of one cache file while it is being made (threads of this process)."""
    with _RENDERING_GUARD:
        lock = _RENDERING.setdefault(dest, threading.Lock())
    with lock:
        try:
            yield
        finally:
            with _RENDERING_GUARD:
                if _RENDERING.get(dest) is lock:
                    del _RENDERING[dest]


def _render(
    segments: Sequence[Segment],
    voice: Voice,
    dest: Path,
    max_duration: float,
    silence_threshold_dbfs: float,
    loudness: LoudnessTarget | None,
) -> None:
    """Run the engine into a temporary WAV and convert it into ``dest`` (atomically)."""
    with tempfile.TemporaryDirectory(prefix="voicecast-tts-") as tmp:
        work = Path(tmp)
        raw = work / "speech.wav"
        if voice.engine == "piper":
            _piper(segments, voice, raw, work)
        else:
            _espeak(segments, voice, raw)
        try:
            convert_for_asterisk(
                raw,
                dest,
                max_duration=max_duration,
                silence_threshold_dbfs=silence_threshold_dbfs,
                loudness=loudness,
            )
        except TtsError:
            raise
        except AudioError as exc:
            reason = str(exc).removeprefix(f"{raw}: ")
            raise TtsError(f"speech from {voice.label}: {reason}") from exc
