"""Convert audio files to what Asterisk plays natively, and measure WAV recordings.

Asterisk plays a ``.wav`` file as 8 kHz signed linear: :func:`convert_for_asterisk` decodes
any format ffmpeg reads (through pydub) and writes a RIFF WAV, 8000 Hz, mono, 16-bit PCM.

:func:`wav_duration_ms` and :func:`voiced_span` read PCM WAV files without pydub or ffmpeg
(e.g. recordings written by Asterisk) and tolerate the header of a file still being written
(a ``data`` size of 0 or larger than the file).

Loudness: every converted message is normalised (by default) to the same integrated loudness,
:data:`DEFAULT_LOUDNESS_LUFS` with true peaks at most :data:`DEFAULT_TRUE_PEAK_DBTP`, measured
as ITU-R BS.1770-4 defines it (K-weighted, gated; the meter of EBU R128), with ffmpeg's
``loudnorm`` filter in two passes (measure, then apply; see :func:`normalise_loudness`), so
that a quiet upload and a loud one sound equally loud on the phone.

Units: ``duration_ms`` values are milliseconds; every other duration (arguments and the
numbers in error messages) is in seconds. Loudness is in LUFS (loudness units relative to
full scale), loudness range in LU, true peak in dBTP, sample peak in dBFS.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from operator import mul
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from voicecast.errors import VoicecastError

#: Sample rate of the files Asterisk plays as ``.wav`` (Hz).
ASTERISK_RATE = 8000
#: Bytes per sample of the files written (16-bit signed little-endian).
ASTERISK_SAMPLE_WIDTH = 2
#: Shortest message accepted, in seconds.
MIN_DURATION = 0.5
#: Largest input file accepted, in bytes (checked before decoding).
MAX_INPUT_BYTES = 200 * 1024 * 1024
#: How long the resampling ffmpeg may run, in seconds.
FFMPEG_TIMEOUT = 300.0

SUPPORTED_FORMATS = "WAV, MP3, OGG/Opus, FLAC, M4A/AAC/MP4, AIFF, WebM/MKA, AMR, AU, CAF, WMA"

#: Default integrated loudness of a converted message, in LUFS (ITU-R BS.1770-4). EBU R128
#: asks -23 LUFS of broadcast programmes mixed for quiet living rooms; a phone message is
#: heard alone, through a small earpiece, often in noise, and AES TD1008 (loudness of
#: internet audio, speech as the anchor) recommends -18 LUFS for speech: the level chosen here.
DEFAULT_LOUDNESS_LUFS = -18.0
#: Default ceiling of a converted message's true peak (inter-sample peak), in dBTP. EBU R128
#: allows -1 dBTP; 1 dB more headroom is kept because the PBX encodes the 8 kHz audio with
#: G.711 (A-law / mu-law), whose quantisation and any later gain stage add peaks, and G.711
#: clips hard at full scale.
DEFAULT_TRUE_PEAK_DBTP = -2.0
#: Loudness at and below which nothing is measured: the absolute gate of ITU-R BS.1770-4.
ABSOLUTE_GATE_LUFS = -70.0
#: The loudness range target given to loudnorm, in LU: 20, the largest ffmpeg 5.1 accepts, so
#: that speech is not compressed for its range (only for its true peaks, when needed).
_LOUDNORM_LRA = 20.0
#: loudnorm's dynamic mode works on 3-second windows and normalises a shorter input wrongly
#: (ffmpeg 5.1: a 1 s phrase came out 17 LU too quiet), so shorter audio is padded with
#: silence to this many frames (4 s at 8 kHz) and cut back after. Silence does not change the
#: integrated loudness (it is below the absolute gate).
_LOUDNORM_MIN_FRAMES = 4 * ASTERISK_RATE
#: loudnorm's dynamic mode is asked for a true peak this many dB under the ceiling: its
#: output is at 192 kHz, and the resampling back to 8 kHz adds up to about 0.7 dB.
_TRUE_PEAK_MARGIN_DB = 1.0

_FULL_SCALE_16 = 32768.0


class AudioError(VoicecastError):
    """An audio file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ConvertedAudio:
    """The result of :func:`convert_for_asterisk`.

    Attributes:
        path: the written WAV (8000 Hz, mono, 16-bit PCM).
        duration_ms: its length in milliseconds.
        sha256: hex SHA-256 of the written file's bytes.
        peak_dbfs: its loudest sample in dBFS (0 = full scale), after normalisation.
        loudness_lufs: its integrated loudness in LUFS as loudnorm measured its own output,
            or None when loudness normalisation was off.
        source_loudness_lufs: the integrated loudness of the input (after the mix-down to
            mono and the resampling to 8 kHz) in LUFS, or None when normalisation was off.
    """

    path: Path
    duration_ms: int
    sha256: str
    peak_dbfs: float
    loudness_lufs: float | None = None
    source_loudness_lufs: float | None = None


@dataclass(frozen=True)
class LoudnessTarget:
    """What :func:`convert_for_asterisk` normalises to.

    Attributes:
        integrated_lufs: integrated loudness, in LUFS (ITU-R BS.1770-4), -40 to -10.
        true_peak_dbtp: highest true peak, in dBTP, -9 to 0 (loudnorm's range).

    Raises:
        ValueError: a value is out of range.
    """

    integrated_lufs: float = DEFAULT_LOUDNESS_LUFS
    true_peak_dbtp: float = DEFAULT_TRUE_PEAK_DBTP

    def __post_init__(self) -> None:
        if not -40.0 <= self.integrated_lufs <= -10.0:
            raise ValueError(
                f"loudness target {self.integrated_lufs} LUFS is out of range (-40 to -10)"
            )
        if not -9.0 <= self.true_peak_dbtp <= 0.0:
            raise ValueError(
                f"true peak ceiling {self.true_peak_dbtp} dBTP is out of range (-9 to 0)"
            )


#: The default normalisation: -18 LUFS, true peaks at most -2 dBTP.
DEFAULT_LOUDNESS = LoudnessTarget()


@dataclass(frozen=True)
class LoudnessMeasurement:
    """Loudness of some audio per ITU-R BS.1770-4 / EBU R128 (as ffmpeg's loudnorm reports it).

    Attributes:
        integrated_lufs: integrated (gated) loudness in LUFS; ``-inf`` when no block is
            above the -70 LUFS absolute gate (silence).
        true_peak_dbtp: highest true (inter-sample) peak in dBTP.
        range_lu: loudness range (EBU Tech 3342) in LU.
        threshold_lufs: the relative gate used, in LUFS.
    """

    integrated_lufs: float
    true_peak_dbtp: float
    range_lu: float
    threshold_lufs: float


# --------------------------------------------------------------------------------------------
# conversion


def _looks_like_audio(head: bytes) -> bool:
    """Whether the first bytes of a file are those of a known audio container."""
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return True
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return True
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return True  # MP4 / M4A / 3GP / MOV
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return True  # MPEG audio frame (MP3 without a tag) or ADTS AAC
    return head.startswith(
        (
            b"ID3",  # MP3 with an ID3v2 tag
            b"OggS",  # Ogg Vorbis / Opus / FLAC / Speex
            b"fLaC",
            b"\x1a\x45\xdf\xa3",  # Matroska / WebM
            b".snd",  # Sun AU
            b"#!AMR",
            b"caff",  # Core Audio
            b"riff\x2e\x91\xcf\x11",  # Sony Wave64
            b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF / WMA
        )
    )


_FFMPEG_SKIP = (
    "ffmpeg version",
    "ffprobe version",
    "Input #",
    "Output #",
    "Stream mapping",
    "Press [q]",
    "size=",
)
_FFMPEG_ERROR_WORDS = re.compile(
    r"error|invalid|fail|could not|cannot|can't|not found|no such|unsupported|unknown|"
    r"not supported|no .* found|truncat|corrupt",
    re.IGNORECASE,
)
_FFMPEG_CONTEXT = re.compile(r"^\[([\w:#./-]+) @ 0x[0-9a-fA-F]+\]\s*")


def _ffmpeg_reason(message: str, shown_path: str, name: str) -> str:
    """The most telling line of an ffmpeg error output (banner and stream dumps dropped)."""
    _, found, output = message.partition("Output from ffmpeg/avlib:")
    if not found:
        output = message
    candidates: list[str] = []
    for raw in output.splitlines():
        if not raw.strip() or raw[:1].isspace() or raw.startswith(_FFMPEG_SKIP):
            continue
        if raw.startswith("[cache @"):  # the pipe pydub feeds ffmpeg through, not the file
            continue
        line = _FFMPEG_CONTEXT.sub(r"\1: ", raw.strip()).replace(shown_path, name)
        line = line.replace("cache:pipe:0", name).replace("pipe:0", name)
        candidates.append(line)
    if not candidates:
        code = re.search(r"error code: (-?\d+)", message)
        return f"ffmpeg failed (exit code {code.group(1)})" if code else "ffmpeg failed"
    best = next((c for c in candidates if _FFMPEG_ERROR_WORDS.search(c)), candidates[0])
    return best if len(best) <= 200 else best[:197] + "..."


def _fmt_pair(measured: float, limit: float) -> tuple[str, str]:
    """Format two durations with one decimal, or more when one decimal makes them equal."""
    a = b = ""
    for digits in (1, 2, 3):
        a, b = f"{measured:.{digits}f}", f"{limit:.{digits}f}"
        if a != b:
            break
    return a, b


def _refuse_too_long(
    src: Path, seconds: float, max_duration: float, *, at_least: bool = False
) -> NoReturn:
    """Raise the "too long" AudioError (``at_least``: the length is only known to be more)."""
    got, limit = _fmt_pair(seconds, max_duration)
    more = "more than " if at_least else ""
    raise AudioError(f"{src}: too long: {more}{got} s (the limit is {limit} s)")


def _wav_header_seconds(path: Path) -> float | None:
    """The length a PCM WAV's header announces, in seconds; None if it cannot be parsed."""
    try:
        with path.open("rb") as fh:
            layout = _read_layout(path, fh)
    except (AudioError, OSError):
        return None
    return layout.frames / layout.rate


def _probe_seconds(path: Path) -> float | None:
    """The container's duration according to ffprobe, in seconds, or None if unknown."""
    try:
        from pydub.utils import mediainfo_json

        info: Any = mediainfo_json(str(path))
        return float(info["format"]["duration"])
    except Exception:
        return None


def _has_audio_stream(path: Path) -> bool:
    """False when ffprobe reads the file and finds streams but no audio one.

    (pydub fails on such a file with an IndexError and leaves the file open.) True when
    ffprobe cannot tell: decoding then reports the problem.
    """
    try:
        from pydub.utils import mediainfo_json

        info: Any = mediainfo_json(str(path))
        streams = info["streams"]
    except Exception:
        return True
    return any(s.get("codec_type") == "audio" for s in streams)


def _decode(src: Path, path: Path, cap_seconds: float, *, is_wav: bool) -> Any:
    """Decode ``path`` with pydub, at most ``cap_seconds`` of it; an ``AudioSegment``.

    ``is_wav``: the file starts with a RIFF/WAVE header.

    Raises:
        AudioError: pydub or ffmpeg cannot decode the file, or it has no audio stream.
    """
    try:
        from pydub import AudioSegment
        from pydub.exceptions import CouldntDecodeError
    except ImportError as exc:  # pragma: no cover - pydub is a dependency
        raise AudioError(f"{src}: cannot decode audio, pydub is unusable: {exc}") from exc
    try:
        if is_wav:
            # pydub leaves the file it opened for a WAV unclosed: hand it one we close. The
            # whole file is read anyway (no cap: pydub would cut it to whole milliseconds).
            with path.open("rb") as fh:
                return AudioSegment.from_file(fh, format="wav")
        return AudioSegment.from_file(str(path), duration=cap_seconds)
    except CouldntDecodeError as exc:
        reason = _ffmpeg_reason(str(exc), str(path), src.name)
        raise AudioError(f"{src}: not readable as audio: {reason}") from exc
    except IndexError as exc:  # pydub indexes the (empty) list of audio streams
        raise AudioError(f"{src}: the file contains no audio stream") from exc
    except FileNotFoundError as exc:
        raise AudioError(f"{src}: cannot decode audio: ffmpeg/ffprobe not found ({exc})") from exc
    except Exception as exc:
        raise AudioError(f"{src}: not readable as audio ({type(exc).__name__}: {exc})") from exc


def _resample(src: Path, pcm: bytes, rate: int) -> bytes:
    """Resample mono 16-bit PCM from ``rate`` Hz to 8000 Hz with ffmpeg (anti-aliased).

    Raises:
        AudioError: ffmpeg is missing, fails or times out.
    """
    if rate == ASTERISK_RATE:
        return pcm
    converter = _ffmpeg_converter()
    cmd = [
        converter,
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "s16le",
        "-ar",
        str(rate),
        "-ac",
        "1",
        "-i",
        "pipe:0",
        "-ar",
        str(ASTERISK_RATE),
        "-f",
        "s16le",
        "pipe:1",
    ]
    try:
        proc = subprocess.run(cmd, input=pcm, capture_output=True, timeout=FFMPEG_TIMEOUT)
    except FileNotFoundError as exc:
        raise AudioError(f"{src}: cannot resample: {converter} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise AudioError(f"{src}: resampling took longer than {FFMPEG_TIMEOUT:.0f} s") from exc
    if proc.returncode != 0:
        reason = _ffmpeg_reason(proc.stderr.decode(errors="replace"), "pipe:0", src.name)
        raise AudioError(f"{src}: resampling to {ASTERISK_RATE} Hz failed: {reason}")
    out = proc.stdout
    return out[: len(out) - len(out) % ASTERISK_SAMPLE_WIDTH]


# --------------------------------------------------------------------------------------------
# loudness


_LOUDNORM_REPORT = re.compile(r"\{[^{}]*\"input_i\"[^{}]*\}")


def _ffmpeg_converter() -> str:
    """The ffmpeg executable pydub uses (``ffmpeg`` on the PATH by default)."""
    from pydub import AudioSegment

    return str(AudioSegment.converter)


def _loudnorm_report(src: Path, stderr: str) -> dict[str, str]:
    """The JSON report loudnorm prints at the end (``print_format=json``).

    Raises:
        AudioError: ffmpeg printed no such report.
    """
    found = _LOUDNORM_REPORT.findall(stderr)
    if not found:
        raise AudioError(f"{src}: loudness measurement failed: ffmpeg printed no loudnorm report")
    report: dict[str, str] = json.loads(found[-1])
    return report


def _measurement(report: dict[str, str], prefix: str) -> LoudnessMeasurement:
    """A :class:`LoudnessMeasurement` from loudnorm's ``input_*`` or ``output_*`` values."""
    return LoudnessMeasurement(
        integrated_lufs=float(report[f"{prefix}i"]),  # "-inf" parses
        true_peak_dbtp=float(report[f"{prefix}tp"]),
        range_lu=float(report[f"{prefix}lra"]),
        threshold_lufs=float(report[f"{prefix}thresh"]),
    )


def _run_filter(src: Path, pcm: bytes, afilter: str, *, keep_output: bool) -> tuple[bytes, str]:
    """Run ffmpeg on 8 kHz mono 16-bit ``pcm`` with the audio filter ``afilter``.

    Returns:
        ``(output PCM, 8 kHz mono 16-bit, or b"" when not kept; ffmpeg's stderr)``.

    Raises:
        AudioError: ffmpeg is missing, fails or times out.
    """
    converter = _ffmpeg_converter()
    rate = str(ASTERISK_RATE)
    cmd = [converter, "-hide_banner", "-nostats", "-loglevel", "info"]
    cmd += ["-f", "s16le", "-ar", rate, "-ac", "1", "-i", "pipe:0", "-af", afilter]
    if keep_output:
        cmd += ["-ar", rate, "-ac", "1", "-f", "s16le", "pipe:1"]
    else:
        cmd += ["-f", "null", "-"]
    try:
        proc = subprocess.run(cmd, input=pcm, capture_output=True, timeout=FFMPEG_TIMEOUT)
    except FileNotFoundError as exc:
        raise AudioError(f"{src}: cannot normalise the loudness: {converter} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise AudioError(
            f"{src}: loudness normalisation took longer than {FFMPEG_TIMEOUT:.0f} s"
        ) from exc
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        reason = _ffmpeg_reason(stderr, "pipe:0", src.name)
        raise AudioError(f"{src}: loudness normalisation failed: {reason}")
    out = proc.stdout if keep_output else b""
    return out[: len(out) - len(out) % ASTERISK_SAMPLE_WIDTH], stderr


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _analyse(src: Path, pcm: bytes, base: str, pad: str) -> tuple[LoudnessMeasurement, float]:
    """loudnorm's first pass over ``pcm`` (after the filter ``pad``, if any).

    Returns:
        ``(the measurement, loudnorm's suggested offset in LU for its second pass)``.
    """
    _, stderr = _run_filter(src, pcm, f"{pad}{base}:print_format=json", keep_output=False)
    report = _loudnorm_report(src, stderr)
    return _measurement(report, "input_"), float(report.get("target_offset", 0.0))


def normalise_loudness(
    src: Path, pcm: bytes, target: LoudnessTarget
) -> tuple[bytes, LoudnessMeasurement, float]:
    """Bring 8 kHz mono 16-bit PCM to ``target``'s integrated loudness and true-peak ceiling.

    Measure, then apply (two passes, as the ffmpeg filter documentation of ``loudnorm`` and
    its author describe it: http://k.ylo.ph/2016/04/04/loudnorm.html). The first pass of
    ffmpeg's ``loudnorm`` measures the integrated loudness, true peak, loudness range and
    gate threshold (ITU-R BS.1770-4; EBU R128 and Tech 3342). Then:

    - when one constant gain reaches the target and keeps the true peak under the ceiling,
      that gain is applied (ffmpeg ``volume``): the sound is unchanged but for its level;
    - otherwise (speech from espeak-ng has peaks about 20 dB above its loudness, more than
      the 16 dB between -18 LUFS and -2 dBTP) ``loudnorm``'s second pass is given the
      measurements and runs its dynamic mode: a gain that follows the loudness over 3 s
      windows, with a true-peak limiter; its ceiling is set :data:`_TRUE_PEAK_MARGIN_DB`
      lower, because going back from its 192 kHz output to 8 kHz adds a little overshoot.
      Audio shorter than 4 s is padded with silence for both passes and cut back (see
      :data:`_LOUDNORM_MIN_FRAMES`).

    The result has exactly the input's length and timing (no delay).

    Args:
        src: the file the audio came from (only to name it in errors).
        pcm: the audio, 8000 Hz mono 16-bit little-endian.
        target: loudness and true-peak ceiling to reach.

    Returns:
        ``(normalised PCM of the same length, the input's measurement, the output's
        integrated loudness in LUFS: computed for a constant gain, as loudnorm measured its
        output otherwise)``.

    Raises:
        AudioError: the audio is too quiet to measure (integrated loudness at or below the
            -70 LUFS absolute gate), or ffmpeg is missing, fails or times out.
    """
    base = f"loudnorm=I={target.integrated_lufs:.1f}:TP={target.true_peak_dbtp:.1f}"
    base += f":LRA={_LOUDNORM_LRA:.1f}"
    measured, _ = _analyse(src, pcm, base, "")
    if not measured.integrated_lufs > ABSOLUTE_GATE_LUFS:  # also catches NaN
        raise AudioError(
            f"{src}: too quiet to normalise: its loudness is below the "
            f"{ABSOLUTE_GATE_LUFS:.0f} LUFS gate of ITU-R BS.1770"
        )
    gain = target.integrated_lufs - measured.integrated_lufs
    if measured.true_peak_dbtp + gain <= target.true_peak_dbtp:
        out, _ = _run_filter(src, pcm, f"volume={gain:.3f}dB:precision=double", keep_output=True)
        output_lufs = measured.integrated_lufs + gain
    else:
        ceiling = max(-9.0, target.true_peak_dbtp - _TRUE_PEAK_MARGIN_DB)
        base = f"loudnorm=I={target.integrated_lufs:.1f}:TP={ceiling:.1f}:LRA={_LOUDNORM_LRA:.1f}"
        frames = len(pcm) // ASTERISK_SAMPLE_WIDTH
        pad = f"apad=whole_len={_LOUDNORM_MIN_FRAMES}," if frames < _LOUDNORM_MIN_FRAMES else ""
        padded, offset = _analyse(src, pcm, base, pad)
        # loudnorm refuses measured values outside its option ranges: clamp them there.
        second = (
            f"{pad}{base}"
            f":measured_I={_clamp(padded.integrated_lufs, -99.0, 0.0):.2f}"
            f":measured_TP={_clamp(padded.true_peak_dbtp, -99.0, 99.0):.2f}"
            f":measured_LRA={_clamp(padded.range_lu, 0.0, 99.0):.2f}"
            f":measured_thresh={_clamp(padded.threshold_lufs, -99.0, 0.0):.2f}"
            f":offset={_clamp(offset, -99.0, 99.0):.2f}"
            ":linear=true:print_format=json"
        )
        out, _ = _run_filter(src, pcm, second, keep_output=True)
        out = _same_length(out, pcm)
        # The limiter leaves the result up to 1 LU under the target, and the margin above
        # some headroom: a last constant gain brings it as close as the ceiling allows.
        got, _ = _analyse(src, out, base, "")
        output_lufs = got.integrated_lufs
        trim = min(
            target.integrated_lufs - got.integrated_lufs, target.true_peak_dbtp - got.true_peak_dbtp
        )
        if abs(trim) >= 0.05 and math.isfinite(trim):
            out, _ = _run_filter(
                src, out, f"volume={trim:.3f}dB:precision=double", keep_output=True
            )
            output_lufs += trim
    return _same_length(out, pcm), measured, output_lufs


def _same_length(out: bytes, pcm: bytes) -> bytes:
    """``out`` cut or padded with silence to the length of ``pcm``."""
    if len(out) < len(pcm):
        out += b"\x00" * (len(pcm) - len(out))
    return out[: len(pcm)]


def measure_loudness(path: Path) -> LoudnessMeasurement:
    """The loudness of an audio file (any format ffmpeg reads), per ITU-R BS.1770-4.

    Measured by ffmpeg's ``loudnorm`` filter in its analysis mode (the first of the two
    passes of :func:`normalise_loudness`); all channels count, as BS.1770 sums them.

    Raises:
        AudioError: the file is missing, ffmpeg cannot read it, is missing or times out.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    converter = _ffmpeg_converter()
    cmd = [converter, "-hide_banner", "-nostats", "-loglevel", "info", "-i", str(path)]
    cmd += ["-af", f"loudnorm=LRA={_LOUDNORM_LRA:.1f}:print_format=json", "-f", "null", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT)
    except FileNotFoundError as exc:
        raise AudioError(f"{path}: cannot measure the loudness: {converter} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise AudioError(
            f"{path}: loudness measurement took longer than {FFMPEG_TIMEOUT:.0f} s"
        ) from exc
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        reason = _ffmpeg_reason(stderr, str(path), path.name)
        raise AudioError(f"{path}: cannot measure the loudness: {reason}")
    return _measurement(_loudnorm_report(path, stderr), "input_")


def _samples(raw: bytes, width: int) -> array.array[int]:
    """Little-endian PCM bytes as signed integers (8-bit WAV data is unsigned)."""
    if width == 1:
        return array.array("b", raw.translate(bytes((i + 128) & 0xFF for i in range(256))))
    code = {2: "h", 4: "i" if array.array("i").itemsize == 4 else "l"}[width]
    values = array.array(code)
    values.frombytes(raw[: len(raw) - len(raw) % width])
    if sys.byteorder == "big":
        values.byteswap()
    return values


def _peak_dbfs(pcm16: bytes) -> float:
    """The loudest sample of 16-bit PCM in dBFS; ``-inf`` for digital silence or no data."""
    values = _samples(pcm16, 2)
    if not values:
        return -math.inf
    peak = max(max(values), -min(values))
    return 20.0 * math.log10(peak / _FULL_SCALE_16) if peak else -math.inf


def atomic_write_bytes(dest: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``dest`` atomically: a temp file in the same folder, then os.replace.

    The folder is created if missing. The file gets permissions ``mode`` (default 0644, so
    that an Asterisk running as another user can read it); readers never see a partial file.

    Raises:
        OSError: the folder or the file cannot be written (the temp file is removed).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _wav_bytes(pcm16: bytes) -> bytes:
    """A canonical 44-byte-header RIFF WAV holding 8 kHz mono 16-bit ``pcm16``."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(ASTERISK_SAMPLE_WIDTH)
        out.setframerate(ASTERISK_RATE)
        out.writeframes(pcm16)
    return buf.getvalue()


def convert_for_asterisk(
    src: Path,
    dest: Path,
    *,
    max_duration: float,
    silence_threshold_dbfs: float = -50.0,
    loudness: LoudnessTarget | None = DEFAULT_LOUDNESS,
) -> ConvertedAudio:
    """Convert an audio file to an 8000 Hz mono 16-bit PCM WAV that Asterisk plays as is.

    ``src`` may be any format ffmpeg decodes (WAV, MP3, OGG, FLAC, M4A, ...). ``dest`` is
    written atomically (temp file + os.replace, permissions 0644, folder created); nothing is
    written when the input is refused. Stereo is mixed down; resampling is done by ffmpeg;
    then the loudness is normalised (:func:`normalise_loudness`), unless ``loudness`` is None.

    Args:
        src: the file to convert.
        dest: where to write the WAV (replaced if it exists).
        max_duration: longest accepted length, in seconds.
        silence_threshold_dbfs: a file whose loudest sample (after the resampling, before
            the normalisation) is below this level, in dBFS, is refused as silent.
        loudness: integrated loudness and true-peak ceiling to normalise to (default
            -18 LUFS, -2 dBTP); None keeps the level of ``src``.

    Raises:
        AudioError: ``src`` is missing, larger than :data:`MAX_INPUT_BYTES`, not a recognised
            audio file, undecodable (with ffmpeg's reason), empty, shorter than
            :data:`MIN_DURATION` s, longer than ``max_duration`` s, silent or too quiet to
            measure its loudness; or ``dest`` cannot be written.
    """
    src = Path(src)
    dest = Path(dest)
    try:
        st = src.stat()
    except FileNotFoundError:
        raise AudioError(f"{src}: file not found") from None
    except OSError as exc:
        raise AudioError(f"{src}: cannot read the file: {exc.strerror or exc}") from exc
    if not src.is_file():
        raise AudioError(f"{src}: not a regular file")
    if st.st_size == 0:
        raise AudioError(f"{src}: the file is empty (0 bytes)")
    if st.st_size > MAX_INPUT_BYTES:
        raise AudioError(
            f"{src}: the file is too large ({st.st_size / 2**20:.1f} MiB; "
            f"the limit is {MAX_INPUT_BYTES / 2**20:.0f} MiB)"
        )
    path = src.resolve()
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise AudioError(f"{src}: cannot read the file: {exc.strerror or exc}") from exc
    if not _looks_like_audio(head):
        raise AudioError(f"{src}: not a recognised audio file (supported: {SUPPORTED_FORMATS})")
    is_wav = head[:4] == b"RIFF" and head[8:12] == b"WAVE"

    if is_wav:
        # A PCM WAV says its length in its header: refuse a long one before loading it.
        header_seconds = _wav_header_seconds(path)
        if header_seconds is not None and header_seconds > max_duration:
            _refuse_too_long(src, header_seconds, max_duration)
    elif not _has_audio_stream(path):
        raise AudioError(f"{src}: the file contains no audio stream")
    cap = max_duration + 1.0
    seg = _decode(src, path, cap, is_wav=is_wav)
    rate = int(seg.frame_rate)
    frames = int(seg.frame_count())
    if frames <= 0 or rate <= 0:
        raise AudioError(f"{src}: the file contains no audio (length 0 s)")
    seconds = frames / rate
    if seconds > max_duration:
        if not is_wav and seconds >= cap - 0.01:
            # Decoding stopped at the cap: ask the container for the real length.
            probed = _probe_seconds(path)
            if probed is not None and probed > max_duration:
                _refuse_too_long(src, probed, max_duration)
            _refuse_too_long(src, seconds, max_duration, at_least=True)
        _refuse_too_long(src, seconds, max_duration)
    if seconds < MIN_DURATION:
        got, limit = _fmt_pair(seconds, MIN_DURATION)
        raise AudioError(f"{src}: too short: {got} s (the minimum is {limit} s)")

    mono = seg.set_sample_width(ASTERISK_SAMPLE_WIDTH).set_channels(1)
    pcm = _resample(src, bytes(mono.raw_data), rate)
    if not pcm:
        raise AudioError(f"{src}: the file contains no audio after conversion")
    peak = _peak_dbfs(pcm)
    if peak < silence_threshold_dbfs:
        shown_peak = "-inf" if math.isinf(peak) else f"{peak:.1f}"
        raise AudioError(
            f"{src}: the audio is silent (peak {shown_peak} dBFS, "
            f"below the {silence_threshold_dbfs:.1f} dBFS threshold)"
        )
    loudness_lufs: float | None = None
    source_lufs: float | None = None
    if loudness is not None:
        pcm, measured, loudness_lufs = normalise_loudness(src, pcm, loudness)
        source_lufs = measured.integrated_lufs
        peak = _peak_dbfs(pcm)

    data = _wav_bytes(pcm)
    try:
        atomic_write_bytes(dest, data)
    except OSError as exc:
        raise AudioError(f"{dest}: cannot write the converted audio: {exc}") from exc
    n_frames = len(pcm) // ASTERISK_SAMPLE_WIDTH
    return ConvertedAudio(
        path=dest,
        duration_ms=round(n_frames * 1000 / ASTERISK_RATE),
        sha256=hashlib.sha256(data).hexdigest(),
        peak_dbfs=peak,
        loudness_lufs=loudness_lufs,
        source_loudness_lufs=source_lufs,
    )


# --------------------------------------------------------------------------------------------
# reading PCM WAV files (recordings)


@dataclass(frozen=True)
class _WavLayout:
    rate: int
    channels: int
    width: int
    data_offset: int
    data_len: int  # whole frames only

    @property
    def frames(self) -> int:
        return self.data_len // (self.channels * self.width)


def _read_layout(path: Path, fh: BinaryIO) -> _WavLayout:
    """Parse the RIFF chunks of a PCM WAV up to its ``data`` chunk.

    Raises:
        AudioError: not a RIFF/WAVE file, no ``fmt ``/``data`` chunk, or not integer PCM of
            8, 16 or 32 bits.
    """
    size = os.fstat(fh.fileno()).st_size
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioError(f"{path}: not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    while True:
        chunk = fh.read(8)
        if len(chunk) < 8:
            raise AudioError(f"{path}: no 'data' chunk in the WAV file")
        cid, clen = chunk[:4], int.from_bytes(chunk[4:], "little")
        if cid == b"fmt ":
            body = fh.read(clen)
            if len(body) < 16:
                raise AudioError(f"{path}: truncated 'fmt ' chunk")
            tag = int.from_bytes(body[0:2], "little")
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: subformat GUID
                tag = int.from_bytes(body[24:26], "little")
            channels = int.from_bytes(body[2:4], "little")
            rate = int.from_bytes(body[4:8], "little")
            bits = int.from_bytes(body[14:16], "little")
            fmt = (tag, channels, rate, bits)
            if clen % 2:
                fh.seek(1, os.SEEK_CUR)
        elif cid == b"data":
            if fmt is None:
                raise AudioError(f"{path}: 'data' chunk before the 'fmt ' chunk")
            offset = fh.tell()
            remaining = max(0, size - offset)
            # A recording still being written may say 0 (or a stale size): trust the file.
            if clen == 0 or clen > remaining:
                clen = remaining
            break
        else:
            fh.seek(clen + (clen % 2), os.SEEK_CUR)
    tag, channels, rate, bits = fmt
    if tag != 1 or bits not in (8, 16, 32) or channels < 1 or rate < 1:
        raise AudioError(
            f"{path}: unsupported WAV encoding (format {tag}, {bits} bits, {channels} "
            f"channels, {rate} Hz); expected integer PCM of 8, 16 or 32 bits"
        )
    width = bits // 8
    frame = width * channels
    return _WavLayout(rate, channels, width, offset, clen - clen % frame)


def _open_layout(path: Path) -> tuple[_WavLayout, bytes]:
    """The layout and the sample bytes of a PCM WAV file.

    Raises:
        AudioError: missing, unreadable or unsupported file.
    """
    try:
        with Path(path).open("rb") as fh:
            layout = _read_layout(path, fh)
            fh.seek(layout.data_offset)
            raw = fh.read(layout.data_len)
    except FileNotFoundError:
        raise AudioError(f"{path}: file not found") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    return layout, raw[: len(raw) - len(raw) % (layout.width * layout.channels)]


def wav_duration_ms(path: Path) -> int:
    """The length of a PCM WAV file in milliseconds (rounded).

    Raises:
        AudioError: the file is missing, not a WAV, or not integer PCM.
    """
    try:
        with Path(path).open("rb") as fh:
            layout = _read_layout(path, fh)
    except FileNotFoundError:
        raise AudioError(f"{path}: file not found") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    return round(layout.frames * 1000 / layout.rate)


def voiced_span(
    path: Path, *, threshold_dbfs: float = -40.0, chunk_ms: int = 20
) -> tuple[float, float] | None:
    """When a PCM WAV file is audible: ``(first, last)`` in seconds from its start.

    The file is cut into ``chunk_ms`` millisecond chunks; a chunk is voiced when its RMS
    level (all channels together) is above ``threshold_dbfs`` dBFS. ``first`` is the start
    of the first voiced chunk, ``last`` the end of the last one (at most the file's length).
    Meant for recordings written by Asterisk (8 kHz mono 16-bit); any integer-PCM WAV of 8,
    16 or 32 bits works, including one whose header is not finalised yet.

    Returns:
        ``(first, last)`` seconds, or None when no chunk is voiced (silence, 0 frames).

    Raises:
        AudioError: the file is missing, not a WAV, or not integer PCM.
        ValueError: ``chunk_ms`` is not positive.
    """
    if chunk_ms <= 0:
        raise ValueError("chunk_ms must be positive")
    layout, raw = _open_layout(path)
    frames = layout.frames
    if frames == 0:
        return None
    values = _samples(raw, layout.width)
    full_scale = float(2 ** (8 * layout.width - 1))
    level = full_scale * 10.0 ** (threshold_dbfs / 20.0)
    level_sq = level * level
    chunk_frames = max(1, layout.rate * chunk_ms // 1000)
    step = chunk_frames * layout.channels
    first: int | None = None
    last: int | None = None
    for index, start in enumerate(range(0, len(values), step)):
        chunk = values[start : start + step]
        if sum(map(mul, chunk, chunk)) > level_sq * len(chunk):
            if first is None:
                first = index
            last = index
    if first is None or last is None:
        return None
    end_frame = min(frames, (last + 1) * chunk_frames)
    return first * chunk_frames / layout.rate, end_frame / layout.rate
