"""voicecast.audio: conversion for Asterisk, WAV measurements and the audio library.

Input files are generated at test time with sox, ffmpeg and espeak-ng.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voicecast.audio import (
    MAX_INPUT_BYTES,
    NAME_RE,
    AudioError,
    add_audio,
    convert_for_asterisk,
    get_audio,
    pbx_playback_name,
    publish,
    voiced_span,
    wav_duration_ms,
)
from voicecast.audio import convert as convert_mod
from voicecast.errors import NotFoundError, UnsafeValueError, VoicecastError
from voicecast.storage.db import make_engine, migrate, session_factory
from voicecast.storage.models import AudioMessage


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def tone(path: Path, seconds: float = 2.0, *extra: str) -> Path:
    run(
        "sox",
        "-n",
        "-r",
        "44100",
        "-c",
        "2",
        str(path),
        "synth",
        str(seconds),
        "sine",
        "440",
        *extra,
    )
    return path


def ffmpeg(src: Path, dest: Path, *opts: str) -> Path:
    run("ffmpeg", "-loglevel", "error", "-y", "-i", str(src), *opts, str(dest))
    return dest


def write_wav(
    path: Path, frames: bytes, *, rate: int = 8000, channels: int = 1, width: int = 2
) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def assert_asterisk_wav(path: Path) -> wave._wave_params:
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
    assert (params.framerate, params.nchannels, params.sampwidth) == (8000, 1, 2)
    assert params.comptype == "NONE"
    assert path.read_bytes()[:4] == b"RIFF"
    return params


def convert(src: Path, dest: Path, max_duration: float = 60.0) -> convert_mod.ConvertedAudio:
    return convert_for_asterisk(src, dest, max_duration=max_duration)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Input files shared by the tests (generated once per module)."""
    d = tmp_path_factory.mktemp("media")
    wav = tone(d / "tone.wav")
    files = {
        "wav": wav,
        "mp3": ffmpeg(wav, d / "tone.mp3"),
        "ogg": ffmpeg(wav, d / "tone.ogg"),
        "flac": ffmpeg(wav, d / "tone.flac"),
        "m4a": ffmpeg(wav, d / "tone.m4a"),
        "silent": tone(d / "silent.wav", 2.0, "vol", "0"),
        "long": tone(d / "long.wav", 3.0),
        "short": tone(d / "short.wav", 0.2),
    }
    run("espeak-ng", "-v", "fr", "-w", str(d / "speech.wav"), "bonjour, ceci est un essai")
    files["speech"] = d / "speech.wav"
    text = d / "notes.wav"
    text.write_text("this is not audio\n", encoding="utf-8")
    files["text"] = text
    return files


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    migrate(engine)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


# ------------------------------------------------------------------------------------------
# convert_for_asterisk


@pytest.mark.parametrize("kind", ["wav", "mp3", "ogg", "flac", "m4a"])
def test_converts_common_formats(media: dict[str, Path], tmp_path: Path, kind: str) -> None:
    dest = tmp_path / "out" / "msg.wav"
    result = convert(media[kind], dest)
    assert result.path == dest
    params = assert_asterisk_wav(dest)
    assert abs(params.nframes / 8 - 2000) < 60  # ms; AAC adds a little priming
    assert abs(result.duration_ms - 2000) < 60
    assert result.duration_ms == wav_duration_ms(dest)
    assert result.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
    # a full-scale sine (about -6.7 LUFS once mixed to mono) is brought down to -18 LUFS:
    # a sine's peak is 3 dB above its loudness, so about -15 dBFS
    assert result.loudness_lufs == pytest.approx(-18.0, abs=0.5)
    assert result.source_loudness_lufs is not None and result.source_loudness_lufs > -8.0
    assert -16.0 < result.peak_dbfs < -13.0
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert os.listdir(dest.parent) == ["msg.wav"]  # no temp file left behind


def test_converts_speech_and_keeps_its_length(media: dict[str, Path], tmp_path: Path) -> None:
    src = media["speech"]
    with wave.open(str(src), "rb") as w:
        src_ms = w.getnframes() * 1000 / w.getframerate()
    result = convert(src, tmp_path / "speech.wav")
    assert_asterisk_wav(result.path)
    assert abs(result.duration_ms - src_ms) < 30
    assert voiced_span(result.path) is not None


def test_replaces_existing_destination_atomically(media: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "msg.wav"
    dest.write_bytes(b"old")
    convert(media["wav"], dest)
    assert_asterisk_wav(dest)
    assert os.listdir(tmp_path) == ["msg.wav"]


def test_resampling_filters_what_a_phone_cannot_carry(tmp_path: Path) -> None:
    # A 6 kHz tone is above the 4 kHz Nyquist limit of 8 kHz audio: it must be filtered out,
    # not folded back into the band (aliasing) - so the result is refused as silent.
    src = tmp_path / "high.wav"
    run(
        "sox",
        "-n",
        "-r",
        "44100",
        "-c",
        "1",
        str(src),
        "synth",
        "2",
        "sine",
        "6000",
        "fade",
        "0.2",
        "2",
        "0.2",
    )
    with pytest.raises(AudioError, match="silent"):
        convert(src, tmp_path / "out.wav")


@pytest.mark.parametrize(
    ("kind", "max_duration", "pattern"),
    [
        ("silent", 60.0, r"silent.*-inf dBFS.*-50\.0 dBFS"),
        ("long", 2.0, r"too long: 3\.0 s \(the limit is 2\.0 s\)"),
        ("short", 60.0, r"too short: 0\.2 s \(the minimum is 0\.5 s\)"),
        ("text", 60.0, r"not a recognised audio file"),
    ],
)
def test_rejects_with_a_message_naming_file_and_problem(
    media: dict[str, Path], tmp_path: Path, kind: str, max_duration: float, pattern: str
) -> None:
    dest = tmp_path / "out.wav"
    with pytest.raises(AudioError, match=pattern) as info:
        convert(media[kind], dest, max_duration=max_duration)
    assert str(media[kind]) in str(info.value)
    assert isinstance(info.value, VoicecastError)
    assert not tmp_path.joinpath("out.wav").exists()
    assert list(tmp_path.iterdir()) == []


def test_too_long_reports_the_full_length_not_the_decoded_part(tmp_path: Path) -> None:
    src = ffmpeg(tone(tmp_path / "ten.wav", 10.0), tmp_path / "ten.mp3")
    with pytest.raises(AudioError, match=r"too long: 10\.0 s \(the limit is 2\.0 s\)"):
        convert(src, tmp_path / "out.wav", max_duration=2.0)


def test_long_mp3_without_known_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = ffmpeg(tone(tmp_path / "ten.wav", 10.0), tmp_path / "ten.mp3")
    monkeypatch.setattr(convert_mod, "_probe_seconds", lambda _path: None)
    with pytest.raises(AudioError, match=r"too long: more than 3\.0 s \(the limit is 2\.0 s\)"):
        convert(src, tmp_path / "out.wav", max_duration=2.0)


def test_long_wav_refused_from_its_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_wav(tmp_path / "long.wav", b"\x00\x40" * 80000)  # 10 s

    def no_decode(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("decoded a WAV whose header says it is too long")

    monkeypatch.setattr(convert_mod, "_decode", no_decode)
    with pytest.raises(AudioError, match=r"too long: 10\.0 s \(the limit is 2\.0 s\)"):
        convert(src, tmp_path / "out.wav", max_duration=2.0)


def test_limit_and_length_stay_distinguishable(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "a.wav", b"\x00\x40" * 16024)  # 2.003 s
    with pytest.raises(AudioError, match=r"too long: 2\.003 s \(the limit is 2\.000 s\)"):
        convert(src, tmp_path / "out.wav", max_duration=2.0)


def test_rejects_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"nope\.wav: file not found"):
        convert(tmp_path / "nope.wav", tmp_path / "out.wav")


def test_rejects_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not a regular file"):
        convert(tmp_path, tmp_path / "out.wav")


def test_rejects_zero_byte_file(tmp_path: Path) -> None:
    src = tmp_path / "empty.mp3"
    src.touch()
    with pytest.raises(AudioError, match=r"empty \(0 bytes\)"):
        convert(src, tmp_path / "out.wav")


def test_rejects_wav_without_frames(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "zero.wav", b"")
    with pytest.raises(AudioError, match="contains no audio"):
        convert(src, tmp_path / "out.wav")


def test_rejects_huge_file_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "huge.wav"
    with src.open("wb") as fh:
        fh.write(b"RIFF\x00\x00\x00\x00WAVE")
        fh.truncate(MAX_INPUT_BYTES + 2**20)  # sparse: costs no disk space

    def no_decode(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("decoded a file that is too large")

    monkeypatch.setattr(convert_mod, "_decode", no_decode)
    with pytest.raises(AudioError, match=r"too large \(201\.0 MiB; the limit is 200 MiB\)"):
        convert(src, tmp_path / "out.wav")


def test_undecodable_file_reports_ffmpeg_reason_without_noise(tmp_path: Path) -> None:
    src = tmp_path / "broken.wav"
    src.write_bytes(b"RIFF" + struct.pack("<I", 4000) + b"WAVE" + b"garbage!" * 500)
    with pytest.raises(AudioError) as info:
        convert(src, tmp_path / "out.wav")
    message = str(info.value)
    assert message.startswith(f"{src}: not readable as audio: ")
    assert "\n" not in message
    for noise in ("ffmpeg version", "configuration:", "Traceback", "0x", "cache"):
        assert noise not in message
    assert len(message) > len(f"{src}: not readable as audio: ") + 10
    assert not (tmp_path / "out.wav").exists()


def test_ffmpeg_reason_picks_the_telling_line() -> None:
    stderr = (
        "Decoding failed. ffmpeg returned error code: 1\n\nOutput from ffmpeg/avlib:\n\n"
        "ffmpeg version 5.1.9 Copyright (c) 2000-2026 the FFmpeg developers\n"
        "  built with gcc 12\n  configuration: --prefix=/usr\n"
        "  libavutil      57. 28.100 / 57. 28.100\n"
        "[mp3 @ 0x55d0c0] Estimating duration from bitrate, this may be inaccurate\n"
        "[mp3 @ 0x55d0c0] Failed to read frame size: Could not seek to 1026.\n"
        "/abs/in.mp3: Invalid argument\n"
    )
    reason = convert_mod._ffmpeg_reason(stderr, "/abs/in.mp3", "in.mp3")
    assert reason == "mp3: Failed to read frame size: Could not seek to 1026."
    assert convert_mod._ffmpeg_reason("nothing useful\n", "/x", "x") == "nothing useful"
    assert (
        convert_mod._ffmpeg_reason(
            "Decoding failed. ffmpeg returned error code: 8\n\nOutput from ffmpeg/avlib:\n\n",
            "/x",
            "x",
        )
        == "ffmpeg failed (exit code 8)"
    )


def test_file_without_audio_stream(tmp_path: Path) -> None:
    src = tmp_path / "video.mkv"
    run(
        "ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=black:s=16x16:d=1",
        "-c:v", "ffv1", str(src),
    )  # fmt: skip
    with pytest.raises(AudioError, match="no audio stream"):
        convert(src, tmp_path / "out.wav")


def test_silence_threshold_is_configurable(tmp_path: Path) -> None:
    src = tone(tmp_path / "quiet.wav", 1.0, "vol", "0.01")  # peak about -40 dBFS
    result = convert_for_asterisk(src, tmp_path / "a.wav", max_duration=5, loudness=None)
    assert -43 < result.peak_dbfs < -37
    assert result.loudness_lufs is None
    # the threshold applies to the file as given, before the normalisation lifts it
    normalised = convert_for_asterisk(src, tmp_path / "n.wav", max_duration=5)
    assert -16 < normalised.peak_dbfs < -13
    with pytest.raises(AudioError, match="silent"):
        convert_for_asterisk(src, tmp_path / "b.wav", max_duration=5, silence_threshold_dbfs=-30)


# ------------------------------------------------------------------------------------------
# voiced_span / wav_duration_ms


def test_voiced_span_finds_tone_after_silence(tmp_path: Path) -> None:
    src = tmp_path / "a.wav"
    run(
        "sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(src),
        "synth", "1", "sine", "440", "vol", "0", ":", "synth", "2", "sine", "440",
    )  # fmt: skip
    span = voiced_span(src)
    assert span is not None
    first, last = span
    assert first == pytest.approx(1.0, abs=0.03)
    assert last == pytest.approx(3.0, abs=0.03)
    assert wav_duration_ms(src) == 3000


def test_voiced_span_of_converted_mp3_with_silence_around(tmp_path: Path) -> None:
    src = tmp_path / "padded.wav"
    run(
        "sox",
        "-n",
        "-r",
        "44100",
        "-c",
        "2",
        str(src),
        "synth",
        "1.5",
        "sine",
        "300",
        "pad",
        "0.5",
        "1",
    )
    mp3 = ffmpeg(src, tmp_path / "padded.mp3")
    out = convert(mp3, tmp_path / "out.wav").path
    span = voiced_span(out)
    assert span is not None
    assert span[0] == pytest.approx(0.5, abs=0.05)
    assert span[1] == pytest.approx(2.0, abs=0.05)


def test_voiced_span_none_for_silence_and_empty(tmp_path: Path) -> None:
    assert voiced_span(write_wav(tmp_path / "zero.wav", b"")) is None
    assert voiced_span(write_wav(tmp_path / "silent.wav", b"\x00\x00" * 8000)) is None
    quiet = struct.pack("<h", 100) * 8000  # about -50 dBFS: below the -40 dBFS default
    assert voiced_span(write_wav(tmp_path / "quiet.wav", quiet)) is None
    assert voiced_span(tmp_path / "quiet.wav", threshold_dbfs=-60) == (0.0, 1.0)
    assert wav_duration_ms(tmp_path / "zero.wav") == 0


def test_voiced_span_ignores_a_single_click(tmp_path: Path) -> None:
    samples = [0] * 16000
    samples[4000] = 2000  # one sample at -24 dBFS: RMS of its 20 ms chunk is about -46 dBFS
    samples[12000:12160] = [20000, -20000] * 80  # 20 ms of loud signal
    src = write_wav(tmp_path / "click.wav", struct.pack("<16000h", *samples))
    assert voiced_span(src) == (1.5, 1.52)


def test_voiced_span_reads_unfinished_asterisk_header(tmp_path: Path) -> None:
    # Asterisk writes the sizes in the header when it closes the file: while it records,
    # they may still be 0. The samples that are there count.
    pcm = b"\x00\x00" * 4000 + struct.pack("<h", 12000) * 4000 + b"\x00\x00" * 4000
    src = write_wav(tmp_path / "rec.wav", pcm)
    raw = bytearray(src.read_bytes())
    raw[4:8] = struct.pack("<I", 0)
    raw[40:44] = struct.pack("<I", 0)
    src.write_bytes(bytes(raw) + b"\x01")  # and a half-written sample at the end
    assert voiced_span(src) == (0.5, 1.0)
    assert wav_duration_ms(src) == 1500


def test_voiced_span_other_layouts(tmp_path: Path) -> None:
    stereo = write_wav(
        tmp_path / "st.wav",
        b"\x00\x00\x00\x00" * 8000 + struct.pack("<hh", 0, 15000) * 8000,
        channels=2,
    )
    assert voiced_span(stereo) == (1.0, 2.0)
    u8 = write_wav(tmp_path / "u8.wav", b"\x80" * 8000 + b"\xf0" * 8000, width=1)
    assert voiced_span(u8) == (1.0, 2.0)
    wide = write_wav(
        tmp_path / "16k.wav", b"\x00\x00" * 16000 + struct.pack("<h", 9000) * 8000, rate=16000
    )
    assert voiced_span(wide) == (1.0, 1.5)
    assert voiced_span(wide, chunk_ms=100) == (1.0, 1.5)


def test_voiced_span_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="file not found"):
        voiced_span(tmp_path / "missing.wav")
    text = tmp_path / "t.wav"
    text.write_text("hello", encoding="utf-8")
    with pytest.raises(AudioError, match="not a RIFF/WAVE file"):
        voiced_span(text)
    with pytest.raises(AudioError, match="not a RIFF/WAVE file"):
        wav_duration_ms(text)
    with pytest.raises(ValueError, match="chunk_ms"):
        voiced_span(write_wav(tmp_path / "ok.wav", b"\x00\x00"), chunk_ms=0)
    fl = ffmpeg(tone(tmp_path / "src.wav", 0.5), tmp_path / "float.wav", "-c:a", "pcm_f32le")
    with pytest.raises(AudioError, match="unsupported WAV encoding"):
        voiced_span(fl)


# ------------------------------------------------------------------------------------------
# library


def count_rows(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AudioMessage)) or 0


def add(
    session: Session, store: Path, src: Path, name: str, *, replace: bool = False
) -> AudioMessage:
    return add_audio(
        session, store, src, name, max_duration=60.0, silence_threshold_dbfs=-50.0, replace=replace
    )


def test_add_audio_converts_and_records(
    session: Session, media: dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store" / "audio"
    audio = add(session, store, media["mp3"], "welcome")
    assert audio.id is not None
    assert (audio.name, audio.file_name, audio.source_name) == (
        "welcome",
        "welcome.wav",
        "tone.mp3",
    )
    path = store / "welcome.wav"
    assert_asterisk_wav(path)
    assert audio.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert abs(audio.duration_ms - 2000) < 60
    session.commit()
    assert get_audio(session, "welcome") is audio


def test_add_audio_does_not_commit(
    session: Session, media: dict[str, Path], tmp_path: Path
) -> None:
    add(session, tmp_path, media["wav"], "welcome")
    session.rollback()
    assert count_rows(session) == 0


def test_add_audio_twice_needs_replace(
    session: Session, media: dict[str, Path], tmp_path: Path
) -> None:
    first = add(session, tmp_path, media["wav"], "welcome")
    session.commit()
    old_sha, old_id = first.sha256, first.id
    with pytest.raises(AudioError, match=r"'welcome' already exists.*--replace"):
        add(session, tmp_path, media["speech"], "welcome")
    assert hashlib.sha256((tmp_path / "welcome.wav").read_bytes()).hexdigest() == old_sha

    second = add(session, tmp_path, media["speech"], "welcome", replace=True)
    session.commit()
    assert second.id == old_id
    assert second.sha256 != old_sha
    assert second.source_name == "speech.wav"
    assert second.sha256 == hashlib.sha256((tmp_path / "welcome.wav").read_bytes()).hexdigest()
    assert count_rows(session) == 1


def test_failed_add_writes_nothing(
    session: Session, media: dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    with pytest.raises(AudioError, match="silent"):
        add(session, store, media["silent"], "quiet")
    assert count_rows(session) == 0
    assert not store.exists() or list(store.iterdir()) == []
    with pytest.raises(AudioError, match="file not found"):
        add(session, store, tmp_path / "missing.mp3", "quiet")
    assert count_rows(session) == 0


def test_failed_replace_keeps_previous(
    session: Session, media: dict[str, Path], tmp_path: Path
) -> None:
    audio = add(session, tmp_path, media["wav"], "welcome")
    session.commit()
    before = (audio.sha256, audio.duration_ms, audio.source_name)
    data = (tmp_path / "welcome.wav").read_bytes()
    with pytest.raises(AudioError, match="not a recognised audio file"):
        add(session, tmp_path, media["text"], "welcome", replace=True)
    assert (audio.sha256, audio.duration_ms, audio.source_name) == before
    assert (tmp_path / "welcome.wav").read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["t.db", "t.db-shm", "t.db-wal", "welcome.wav"]


@pytest.mark.parametrize(
    "name", ["", "-x", "_x", "a b", "../x", "x/y", "x.wav", "a" * 65, "é", "x\n"]
)
def test_invalid_names(session: Session, media: dict[str, Path], tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeValueError, match="letters A-Z a-z, digits 0-9, '_' and '-'"):
        add(session, tmp_path / "store", media["wav"], name)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("name", ["a", "Welcome_2-b", "9", "a" * 64])
def test_valid_names(name: str) -> None:
    assert NAME_RE.match(name)


def test_get_audio_missing(session: Session, media: dict[str, Path], tmp_path: Path) -> None:
    add(session, tmp_path, media["wav"], "other")
    with pytest.raises(NotFoundError) as info:
        get_audio(session, "welcome")
    message = str(info.value)
    assert "'welcome'" in message
    assert "voicecast audio add" in message
    assert "other" not in message


def test_publish_copies_once(session: Session, media: dict[str, Path], tmp_path: Path) -> None:
    store, sounds = tmp_path / "store", tmp_path / "pbx" / "sounds"
    audio = add(session, store, media["wav"], "welcome")
    dest = publish(audio, store, sounds)
    assert dest == sounds / "welcome.wav"
    assert dest.read_bytes() == (store / "welcome.wav").read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    inode = dest.stat().st_ino
    assert publish(audio, store, sounds) == dest
    assert dest.stat().st_ino == inode  # same sha256: not copied again
    assert os.listdir(sounds) == ["welcome.wav"]


def test_publish_replaces_a_different_copy(
    session: Session, media: dict[str, Path], tmp_path: Path
) -> None:
    store, sounds = tmp_path / "store", tmp_path / "sounds"
    audio = add(session, store, media["wav"], "welcome")
    sounds.mkdir()
    (sounds / "welcome.wav").write_bytes(b"stale")
    dest = publish(audio, store, sounds)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == audio.sha256


def test_publish_refuses_missing_or_changed_store_file(
    session: Session, media: dict[str, Path], tmp_path: Path
) -> None:
    store, sounds = tmp_path / "store", tmp_path / "sounds"
    audio = add(session, store, media["wav"], "welcome")
    (store / "welcome.wav").write_bytes(b"tampered")
    with pytest.raises(AudioError, match="changed since it was added"):
        publish(audio, store, sounds)
    (store / "welcome.wav").unlink()
    with pytest.raises(AudioError, match="is missing"):
        publish(audio, store, sounds)
    assert not (sounds / "welcome.wav").exists()


def test_pbx_playback_name() -> None:
    audio = AudioMessage(name="welcome", file_name="welcome.wav", sha256="0" * 64)
    expected = "/var/lib/asterisk/sounds/voicecast/welcome"
    assert pbx_playback_name(audio, "/var/lib/asterisk/sounds/voicecast") == expected
    assert pbx_playback_name(audio, "/var/lib/asterisk/sounds/voicecast/") == expected
    assert pbx_playback_name(audio, "voicecast") == "voicecast/welcome"


@pytest.mark.parametrize("folder", ["/var/lib/my sounds", "/x;y", "/x\ny", "/x,y", "/x|y", '/x"y'])
def test_pbx_playback_name_refuses_unsafe_folder(folder: str) -> None:
    audio = AudioMessage(name="welcome", file_name="welcome.wav", sha256="0" * 64)
    with pytest.raises(UnsafeValueError, match="unsafe audio playback path"):
        pbx_playback_name(audio, folder)


@pytest.mark.parametrize("file_name", ["../etc/passwd.wav", "a b.wav", "welcome", "x.wav;y"])
def test_unsafe_file_name_from_database(tmp_path: Path, file_name: str) -> None:
    audio = AudioMessage(name="welcome", file_name=file_name, sha256="0" * 64)
    with pytest.raises(UnsafeValueError):
        pbx_playback_name(audio, "/sounds")
    with pytest.raises(UnsafeValueError):
        publish(audio, tmp_path, tmp_path / "sounds")


# ------------------------------------------------------------------------------------------
# the shipped example message


def test_shipped_example_message() -> None:
    path = Path(__file__).resolve().parents[2] / "sounds" / "example-message.wav"
    assert_asterisk_wav(path)
    assert path.stat().st_size < 200_000
    duration = wav_duration_ms(path) / 1000
    assert 8.0 <= duration <= 10.0
    span = voiced_span(path)
    assert span is not None
    assert span[0] < 0.3
    assert duration - span[1] < 0.3
