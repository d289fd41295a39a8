"""Loudness normalisation of converted audio (voicecast.audio.convert, `audio add`).

Every result is measured with ffmpeg's ``ebur128`` filter (ITU-R BS.1770-4 integrated
loudness and true peak), a different implementation from the ``loudnorm`` filter that does
the normalisation. Inputs are made at test time with espeak-ng and sox.
"""

from __future__ import annotations

import re
import struct
import subprocess
import wave
from pathlib import Path

import pytest
from click.testing import CliRunner

from voicecast.audio import (
    AudioError,
    LoudnessTarget,
    convert_for_asterisk,
    measure_loudness,
    voiced_span,
    wav_duration_ms,
)
from voicecast.cli import main
from voicecast.config import load_settings

TARGET = -18.0
CEILING = -2.0


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def ebur128(path: Path) -> tuple[float, float]:
    """(integrated loudness in LUFS, true peak in dBTP) of a file, by ffmpeg's ebur128."""
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
         "-f", "null", "-"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    summary = proc.stderr.rpartition("Summary:")[2]
    loudness = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    assert loudness and peak, summary
    return float(loudness.group(1)), float(peak.group(1))


def write_wav(path: Path, samples: list[int], rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Speech and tones, quiet and loud (generated once for the module)."""
    d = tmp_path_factory.mktemp("loudness")
    speech = d / "speech.wav"  # 22050 Hz, about -20 LUFS, peaks near 0 dBFS
    run("espeak-ng", "-v", "en-gb", "-w", str(speech),
        "Hello, this is a reminder about your appointment tomorrow at ten.")  # fmt: skip
    files = {"speech": speech}
    files["quiet_speech"] = d / "quiet_speech.wav"  # about -54 LUFS
    run("sox", str(speech), str(files["quiet_speech"]), "vol", "0.02")
    files["loud_speech"] = d / "loud_speech.mp3"  # about -12 LUFS, limited, as an MP3
    run("sox", str(speech), str(d / "loud.wav"), "gain", "-l", "14")
    run("ffmpeg", "-loglevel", "error", "-i", str(d / "loud.wav"), str(files["loud_speech"]))
    files["loud_tone"] = d / "loud_tone.wav"  # stereo 44.1 kHz full-scale sine, -6.7 LUFS
    run("sox", "-n", "-r", "44100", "-c", "2", str(files["loud_tone"]), "synth", "3", "sine", "440")
    files["quiet_tone"] = d / "quiet_tone.wav"  # about -52 LUFS
    run("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(files["quiet_tone"]),
        "synth", "3", "sine", "440", "vol", "0.004")  # fmt: skip
    files["short_speech"] = d / "short.wav"  # about 1 s: shorter than loudnorm's 3 s window
    run("espeak-ng", "-v", "fr", "-w", str(files["short_speech"]), "Bonjour Camille")
    return files


@pytest.mark.parametrize(
    "kind", ["quiet_speech", "loud_speech", "speech", "short_speech", "quiet_tone", "loud_tone"]
)
def test_quiet_and_loud_files_come_out_at_the_target(
    media: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    src = media[kind]
    source_lufs, _ = ebur128(src)
    result = convert_for_asterisk(src, tmp_path / "out.wav", max_duration=60)
    loudness, peak = ebur128(result.path)
    assert loudness == pytest.approx(TARGET, abs=1.0), (kind, source_lufs)
    assert peak <= CEILING + 0.3
    assert result.loudness_lufs == pytest.approx(TARGET, abs=0.5)
    # measured after the mix-down to mono: BS.1770 sums the channels, so a stereo file with
    # the same signal in both reads 3 LU more than its mono mix
    mono_lufs = source_lufs - (3.0 if kind == "loud_tone" else 0.0)
    assert result.source_loudness_lufs == pytest.approx(mono_lufs, abs=1.5)
    assert result.peak_dbfs <= CEILING + 0.3


def test_quiet_and_loud_versions_end_equally_loud(media: dict[str, Path], tmp_path: Path) -> None:
    quiet_src, _ = ebur128(media["quiet_speech"])
    loud_src, _ = ebur128(media["loud_speech"])
    assert loud_src - quiet_src > 30  # the inputs differ a lot
    quiet = convert_for_asterisk(media["quiet_speech"], tmp_path / "q.wav", max_duration=60)
    loud = convert_for_asterisk(media["loud_speech"], tmp_path / "l.wav", max_duration=60)
    assert abs(ebur128(quiet.path)[0] - ebur128(loud.path)[0]) < 1.0


def test_normalisation_keeps_length_and_timing(tmp_path: Path) -> None:
    # 1 s of silence, speech, 0.5 s of silence: nothing moves, nothing is added
    speech = tmp_path / "speech.wav"
    run("espeak-ng", "-v", "fr", "-w", str(speech), "Bonjour, ceci est un rappel.")
    padded = tmp_path / "padded.wav"
    run("sox", str(speech), "-r", "8000", str(padded), "pad", "1", "0.5")
    plain = convert_for_asterisk(padded, tmp_path / "plain.wav", max_duration=60, loudness=None)
    normal = convert_for_asterisk(padded, tmp_path / "normal.wav", max_duration=60)
    assert normal.duration_ms == plain.duration_ms == wav_duration_ms(padded)
    before, after = voiced_span(plain.path), voiced_span(normal.path)
    assert before is not None and after is not None
    assert after[0] == pytest.approx(before[0], abs=0.04)
    assert after[0] == pytest.approx(1.0, abs=0.05)
    assert after[1] == pytest.approx(before[1], abs=0.06)


def test_target_is_configurable_and_can_be_off(media: dict[str, Path], tmp_path: Path) -> None:
    src = media["speech"]
    result = convert_for_asterisk(
        src, tmp_path / "a.wav", max_duration=60, loudness=LoudnessTarget(-23.0, -1.0)
    )
    loudness, peak = ebur128(result.path)
    assert loudness == pytest.approx(-23.0, abs=1.0)
    assert peak <= -1.0 + 0.3

    kept = convert_for_asterisk(src, tmp_path / "b.wav", max_duration=60, loudness=None)
    assert kept.loudness_lufs is None and kept.source_loudness_lufs is None
    assert ebur128(kept.path)[0] == pytest.approx(ebur128(src)[0], abs=0.7)


@pytest.mark.parametrize(("lufs", "tp"), [(-41.0, -2.0), (-9.0, -2.0), (-18.0, 0.5), (-18, -10)])
def test_target_out_of_range(lufs: float, tp: float) -> None:
    with pytest.raises(ValueError, match="out of range"):
        LoudnessTarget(lufs, tp)


def test_too_quiet_to_measure_is_refused(tmp_path: Path) -> None:
    # one sample at -44 dBFS in 1 s of digital silence: loud enough for the silence check
    # (-50 dBFS peak), but no 400 ms block reaches BS.1770's -70 LUFS absolute gate
    samples = [0] * 8000
    samples[4000] = 200
    src = write_wav(tmp_path / "blip.wav", samples)
    dest = tmp_path / "out.wav"
    with pytest.raises(AudioError, match=r"blip\.wav: too quiet to normalise.*-70 LUFS"):
        convert_for_asterisk(src, dest, max_duration=60)
    assert not dest.exists()
    kept = convert_for_asterisk(src, dest, max_duration=60, loudness=None)
    assert kept.peak_dbfs == pytest.approx(-44.3, abs=0.1)


def test_existing_rejections_still_come_first(tmp_path: Path) -> None:
    silent = write_wav(tmp_path / "silent.wav", [0] * 8000)
    with pytest.raises(AudioError, match="silent"):
        convert_for_asterisk(silent, tmp_path / "out.wav", max_duration=60)
    short = write_wav(tmp_path / "short.wav", [3000, -3000] * 800)
    with pytest.raises(AudioError, match="too short"):
        convert_for_asterisk(short, tmp_path / "out.wav", max_duration=60)
    assert not (tmp_path / "out.wav").exists()


def test_measure_loudness_agrees_with_ebur128(media: dict[str, Path]) -> None:
    for kind in ("speech", "loud_tone"):
        measured = measure_loudness(media[kind])
        loudness, peak = ebur128(media[kind])
        assert measured.integrated_lufs == pytest.approx(loudness, abs=0.5)
        assert measured.true_peak_dbtp == pytest.approx(peak, abs=0.5)
    with pytest.raises(AudioError, match="file not found"):
        measure_loudness(Path("/nonexistent/x.wav"))


def test_config_loudness_settings(tmp_path: Path) -> None:
    settings = load_settings(environ={})
    target = settings.audio.loudness_target()
    assert target == LoudnessTarget(-18.0, -2.0)
    off = load_settings(environ={"VOICECAST_AUDIO__NORMALISE_LOUDNESS": "false"})
    assert off.audio.loudness_target() is None
    custom = load_settings(
        environ={"VOICECAST_AUDIO__LOUDNESS_LUFS": "-20", "VOICECAST_AUDIO__TRUE_PEAK_DBTP": "-3"}
    )
    assert custom.audio.loudness_target() == LoudnessTarget(-20.0, -3.0)


def test_cli_audio_add_normalises_per_config(
    media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICECAST_CONFIG", raising=False)
    config = tmp_path / "voicecast.toml"
    config.write_text(
        '[database]\nurl = "sqlite:///var/test.db"\n[sandbox]\nenabled = false\n'
        '[audio]\nstore_dir = "var/audio"\nloudness_lufs = -20.0\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    args = ["--config", str(config), "audio", "add", str(media["quiet_speech"])]
    result = runner.invoke(main, [*args, "--name", "quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "-20.0 LUFS" in result.output
    assert ebur128(tmp_path / "var" / "audio" / "quiet.wav")[0] == pytest.approx(-20.0, abs=1.0)

    config.write_text(
        config.read_text(encoding="utf-8") + "normalise_loudness = false\n", encoding="utf-8"
    )
    result = runner.invoke(main, [*args, "--name", "kept"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "LUFS" not in result.output
    kept, _ = ebur128(tmp_path / "var" / "audio" / "kept.wav")
    assert kept == pytest.approx(ebur128(media["quiet_speech"])[0], abs=1.0)
