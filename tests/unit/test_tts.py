"""Local text-to-speech (voicecast.audio.tts), `add_speech` and `voicecast audio say / voices`.

espeak-ng runs for real (French and English voices); Piper is replaced by a small fake
program, since no Piper model may be downloaded. Fictional names only.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from voicecast.audio import (
    AudioError,
    LoudnessTarget,
    TtsError,
    Voice,
    add_speech,
    available_voices,
    get_audio,
    parse_markup,
    render_text,
    synthesize,
    template_fields,
    voiced_span,
    wav_duration_ms,
)
from voicecast.audio import tts as tts_mod
from voicecast.audio.tts import MAX_FIELD_CHARS, Pause, cache_key, to_ssml
from voicecast.cli import main
from voicecast.config import load_settings
from voicecast.errors import ConfigError, VoicecastError
from voicecast.storage.db import make_engine, migrate, session_factory


def assert_asterisk_wav(path: Path) -> None:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getcomptype() == "NONE"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def say(text: str, cache: Path, **voice: Any) -> Path:
    return synthesize(text, Voice(**voice), cache, max_duration=60)


# ------------------------------------------------------------------------------------------
# render_text / template_fields


def test_render_text_merges_fields() -> None:
    text = render_text(
        "Bonjour {first_name}, ici {company}. {first_name} !",
        {"first_name": "Camille", "company": "Société Fictive", "unused": None},
    )
    assert text == "Bonjour Camille, ici Société Fictive. Camille !"
    assert render_text("Pas de champ.", {}) == "Pas de champ."


def test_render_text_escapes_braces() -> None:
    assert render_text("{{first_name}} = {first_name}", {"first_name": "Léa"}) == (
        "{first_name} = Léa"
    )
    assert render_text("a }} b {{", {}) == "a } b {"


@pytest.mark.parametrize(
    ("fields", "pattern"),
    [
        ({"company": "X"}, r"unknown merge field \{first_name\} \(known fields: company\)"),
        ({}, r"unknown merge field \{first_name\} \(known fields: none\)"),
        ({"first_name": None, "company": "X"}, r"\{first_name\} is empty.*company, first_name"),
        ({"first_name": "  \r\n\t "}, r"\{first_name\} is empty"),
        ({"first_name": "\u200b"}, r"\{first_name\} is empty"),
    ],
)
def test_render_text_missing_or_empty_field(fields: dict[str, str | None], pattern: str) -> None:
    with pytest.raises(TtsError, match=pattern) as info:
        render_text("Bonjour {first_name}", fields)
    assert isinstance(info.value, VoicecastError)


def test_render_text_cleans_values() -> None:
    fields = {"first_name": "Camille\r\nDupont\x00\x1b[31m", "company": "Acme [pause 10s] SA"}
    text = render_text("{first_name} / {company}", fields)
    assert text == "Camille Dupont (31m / Acme (pause 10s) SA"
    assert "\r" not in text and "\n" not in text and "\x00" not in text
    assert parse_markup(text) == [text]  # a value cannot add a pause
    long = render_text("{first_name}", {"first_name": "a" * 500})
    assert long == "a" * MAX_FIELD_CHARS


@pytest.mark.parametrize(
    "template",
    ["{first_name.upper}", "{first_name[0]}", "{first_name!r}", "{first_name:>20}", "{}", "{0}",
     "{__class__.__init__}", "{first name}"],
)  # fmt: skip
def test_render_text_refuses_anything_but_plain_names(template: str) -> None:
    with pytest.raises(TtsError, match=r"invalid merge field .*only plain names"):
        render_text(template, {"first_name": "Camille"})
    with pytest.raises(TtsError, match="invalid merge field"):
        template_fields(template)


@pytest.mark.parametrize("template", ["Bonjour {first_name", "Bonjour first_name}", "{ {"])
def test_render_text_refuses_unbalanced_braces(template: str) -> None:
    with pytest.raises(TtsError, match=r"malformed merge field.*literal braces"):
        render_text(template, {"first_name": "Camille"})


def test_template_fields() -> None:
    assert template_fields("Bonjour {first_name} de {company}, {first_name}") == {
        "first_name",
        "company",
    }
    assert template_fields("{{escaped}} [pause 1s] rien") == set()


# ------------------------------------------------------------------------------------------
# pause markup


def test_parse_markup() -> None:
    assert parse_markup("Bonjour [pause 500ms] Camille [PAUSE 1.5s][ pause 2 s ]fin") == [
        "Bonjour ",
        Pause(0.5),
        " Camille ",
        Pause(1.5),
        Pause(2.0),
        "fin",
    ]
    assert parse_markup("line 1\r\nline\x002") == ["line 1  line 2"]
    assert parse_markup("") == []
    assert Pause(0.0125).ms == 12


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("a [pause] b", r"unknown markup \[pause\]"),
        ("a [pause 5 min] b", r"unknown markup \[pause 5 min\]"),
        ("a [note] b", r"unknown markup \[note\]: the only markup is a pause"),
        ("a [pause -1s] b", r"unknown markup \[pause -1s\]"),
        ("a [pause 11s] b", r"\[pause 11s\]: a pause is at most 10 s"),
        ("a [pause 10001ms]", r"at most 10 s"),
        ("a [pause 0ms] b", r"\[pause 0ms\]: a pause must be longer than 0"),
        ("a [pause 1s b", r"unclosed '\[' in the text at character 3"),
        ("a [pause [pause 1s] b", r"unclosed '\['"),
        ("a ] b", r"stray '\]' in the text at character 3"),
    ],
)
def test_malformed_markup_is_named(text: str, pattern: str) -> None:
    with pytest.raises(TtsError, match=pattern):
        parse_markup(text)


def test_ssml_escapes_text() -> None:
    ssml = to_ssml(parse_markup('Tom & Jerry <audio src="x"/> [pause 250ms]fin'))
    assert ssml == (
        '<speak>Tom &amp; Jerry &lt;audio src="x"/&gt; <break time="250ms"/>fin</speak>'
    )


# ------------------------------------------------------------------------------------------
# Voice


def test_voice_defaults_and_parse() -> None:
    assert Voice() == Voice(engine="espeak-ng", name="fr", speed=150, pitch=None)
    assert Voice.parse("en-gb", speed=170) == Voice(name="en-gb", speed=170)
    assert Voice.parse("espeak-ng:fr+f3").name == "fr+f3"
    piper = Voice.parse("piper:/models/fr_FR-siwis-medium.onnx")
    assert (piper.engine, piper.name) == ("piper", "/models/fr_FR-siwis-medium.onnx")
    assert Voice(name="fr", speed=150).label == "tts:fr:150"
    assert Voice(name="en-us", speed=200, pitch=60).label == "tts:en-us:200:p60"
    assert piper.label == "tts:piper:fr_FR-siwis-medium:150"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"speed": 79}, r"speed 79 words per minute is out of range \(80 to 450\)"),
        ({"speed": 451}, r"speed 451 .*out of range"),
        ({"speed": 150.5}, r"whole number of words per minute"),
        ({"speed": True}, r"whole number of words per minute"),
        ({"pitch": 100}, r"pitch 100 is out of range \(0 to 99\)"),
        ({"pitch": -1}, r"pitch -1 is out of range"),
        ({"name": "-v"}, r"invalid espeak-ng voice name '-v'"),
        ({"name": "fr;rm"}, r"invalid espeak-ng voice name"),
        ({"name": ""}, r"invalid espeak-ng voice name"),
        ({"engine": "say"}, r"unknown speech engine 'say'"),
        ({"engine": "piper", "name": "fr"}, r"invalid Piper voice 'fr'.*\.onnx"),
        ({"engine": "piper", "name": "/m.onnx", "pitch": 50}, r"Piper engine has no pitch"),
    ],
)
def test_bad_voice_speed_or_pitch(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(TtsError, match=pattern):
        Voice(**kwargs)


def test_available_voices() -> None:
    voices = available_voices()
    assert {"fr", "fr-fr", "en", "en-gb", "en-us"} <= set(voices)
    assert voices == sorted(voices)
    assert not any(v.startswith("mb-") for v in voices)  # MBROLA only when installed


# ------------------------------------------------------------------------------------------
# synthesize (espeak-ng)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "tts-cache"


@pytest.mark.parametrize(
    ("voice", "text"),
    [
        ("fr", "Bonjour Camille, ceci est un message de la Société Fictive."),
        ("en-gb", "Hello Camille, this is a message from Acme Limited."),
        ("en-us", "Hello Camille, this is a message from Acme Incorporated."),
    ],
)
def test_synthesize_writes_asterisk_wav_with_voice(cache: Path, voice: str, text: str) -> None:
    path = say(text, cache, name=voice)
    assert path.parent == cache
    assert path.name.startswith("tts-") and path.suffix == ".wav"
    assert_asterisk_wav(path)
    seconds = wav_duration_ms(path) / 1000
    assert 1.5 < seconds < 8.0
    span = voiced_span(path)
    assert span is not None
    assert span[1] - span[0] > 0.6 * seconds
    assert os.listdir(cache) == [path.name]  # no temp file left


def test_pause_markup_adds_silence(cache: Path) -> None:
    # (after a full stop, espeak-ng's own sentence pause is part of the break, not added)
    plain = wav_duration_ms(say("Bonjour Camille au revoir", cache)) / 1000
    paused = say("Bonjour Camille [pause 2s] au revoir", cache)
    assert wav_duration_ms(paused) / 1000 == pytest.approx(plain + 2.0, abs=0.2)
    # the silence is in the middle: speech at both ends
    span = voiced_span(paused)
    assert span is not None and span[0] < 0.3
    assert wav_duration_ms(paused) / 1000 - span[1] < 0.4


def test_speed_changes_the_length(cache: Path) -> None:
    text = "Ceci est une phrase assez longue pour mesurer la vitesse de la voix."
    slow = wav_duration_ms(say(text, cache, speed=100))
    fast = wav_duration_ms(say(text, cache, speed=300))
    assert slow > 2 * fast


def test_text_starting_with_a_dash_is_spoken_not_an_option(cache: Path, tmp_path: Path) -> None:
    path = say(f"--help -v xx -w {tmp_path}/owned.wav", cache, name="en-gb")
    assert voiced_span(path) is not None
    assert not (tmp_path / "owned.wav").exists()


def test_cache_hit_does_not_run_espeak(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = say("Bonjour Camille.", cache)
    mtime = first.stat().st_mtime_ns

    def no_run(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("espeak-ng ran on a cache hit")

    monkeypatch.setattr(tts_mod.subprocess, "run", no_run)
    again = say("Bonjour Camille.", cache)
    assert again == first
    assert again.stat().st_mtime_ns == mtime
    # anything that changes the sound is another file (and would run espeak-ng)
    for voice in (Voice(speed=151), Voice(name="en-gb"), Voice(pitch=60)):
        with pytest.raises(AssertionError, match="espeak-ng ran"):
            synthesize("Bonjour Camille.", voice, cache, max_duration=60)
    with pytest.raises(AssertionError, match="espeak-ng ran"):
        synthesize("Bonjour Camille", Voice(), cache, max_duration=60)


def test_the_same_text_asked_at_once_is_spoken_once(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tts_mod._espeak
    runs: list[int] = []

    def slow_espeak(*args: Any) -> None:
        runs.append(1)
        time.sleep(0.3)  # the others arrive while the first is speaking
        real(*args)

    monkeypatch.setattr(tts_mod, "_espeak", slow_espeak)
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: say("Bonjour tout le monde.", cache), range(4)))
    assert len(set(paths)) == 1 and len(runs) == 1
    assert_asterisk_wav(paths[0])


def test_cache_key_covers_what_shapes_the_sound() -> None:
    text = parse_markup("Bonjour [pause 1s] Camille")
    base = cache_key(text, Voice())
    assert base == cache_key(parse_markup("Bonjour [pause 1000ms] Camille"), Voice())
    others = {
        cache_key(parse_markup("Bonjour [pause 2s] Camille"), Voice()),
        cache_key(text, Voice(name="en-gb")),
        cache_key(text, Voice(speed=160)),
        cache_key(text, Voice(pitch=50)),
        cache_key(text, Voice(), LoudnessTarget(-20.0, -2.0)),
        cache_key(text, Voice(), None),
    }
    assert base not in others and len(others) == 6


def test_corrupt_cache_file_is_made_again(cache: Path) -> None:
    path = say("Bonjour Camille.", cache)
    path.write_bytes(b"RIFF")
    assert say("Bonjour Camille.", cache) == path
    assert_asterisk_wav(path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", "the text is empty"),
        ("  [pause 1s] ... ", "the text is empty"),
        ("x" * 5001, r"too long: 5001 characters \(the limit is 5000\)"),
        ("Bonjour [pause 1 s", r"unclosed '\['"),
    ],
)
def test_synthesize_refuses_bad_text(cache: Path, text: str, pattern: str) -> None:
    with pytest.raises(TtsError, match=pattern):
        say(text, cache)
    assert not cache.exists() or os.listdir(cache) == []


def test_unknown_voice(cache: Path) -> None:
    with pytest.raises(TtsError, match=r"unknown espeak-ng voice 'zz'.*voicecast audio voices"):
        say("Bonjour", cache, name="zz")
    assert not cache.exists() or os.listdir(cache) == []


def test_speech_longer_than_the_limit(cache: Path) -> None:
    with pytest.raises(
        TtsError, match=r"speech from tts:fr:150: too long: .* \(the limit is 1\.0 s\)"
    ):
        synthesize("Bonjour, ceci est une phrase trop longue.", Voice(), cache, max_duration=1.0)
    assert not cache.exists() or os.listdir(cache) == []


def test_espeak_missing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts_mod.shutil, "which", lambda _name: None)
    with pytest.raises(TtsError, match=r"espeak-ng is not installed: `apt-get install espeak-ng`"):
        say("Bonjour", cache)
    with pytest.raises(TtsError, match="espeak-ng is not installed"):
        available_voices()


def test_synthesized_speech_is_normalised(cache: Path) -> None:
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(say("Bonjour Camille, à demain.", cache)),
         "-af", "ebur128", "-f", "null", "-"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    summary = proc.stderr.rpartition("Summary:")[2]
    loudness = float(summary.split("I:")[1].split("LUFS")[0])
    assert loudness == pytest.approx(-18.0, abs=1.0)


# ------------------------------------------------------------------------------------------
# Piper (optional engine): error paths, and the flow with a fake program

FAKE_PIPER = """\
import math, struct, sys, wave
args = sys.argv[1:]
out = args[args.index("--output_file") + 1]
scale = float(args[args.index("--length_scale") + 1])
text = sys.stdin.read()
frames = int(len(text) * 0.05 * scale * 22050)
with wave.open(out, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)
    w.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(i / 8))) for i in range(frames)))
"""


def test_piper_not_installed(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts_mod.shutil, "which", lambda _name: None)
    monkeypatch.setattr(tts_mod.importlib.util, "find_spec", lambda _name: None)
    voice = Voice(engine="piper", name=str(cache / "fr.onnx"))
    with pytest.raises(
        TtsError, match=r"Piper .* not installed: .*pip install piper-tts.*never downloads"
    ):
        synthesize("Bonjour", voice, cache, max_duration=60)
    with pytest.raises(TtsError, match="not installed"):
        available_voices("piper")


@pytest.fixture
def fake_piper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in ``piper`` program and a model folder with one model; returns the model."""
    script = tmp_path / "fake_piper.py"
    script.write_text(FAKE_PIPER, encoding="utf-8")
    monkeypatch.setattr(tts_mod, "_piper_command", lambda: [sys.executable, str(script)])
    models = tmp_path / "models"
    models.mkdir()
    model = models / "fr_FR-test-medium.onnx"
    model.write_bytes(b"not really a model")
    return model


def test_piper_model_missing(fake_piper: Path, cache: Path) -> None:
    voice = Voice(engine="piper", name=str(fake_piper.with_name("other.onnx")))
    with pytest.raises(TtsError, match=r"Piper voice model not found: .*other\.onnx"):
        synthesize("Bonjour", voice, cache, max_duration=60)
    voice = Voice(engine="piper", name=str(fake_piper))
    with pytest.raises(TtsError, match=r"has no fr_FR-test-medium\.onnx\.json beside it"):
        synthesize("Bonjour", voice, cache, max_duration=60)


def test_piper_speaks_parts_and_pauses(fake_piper: Path, cache: Path) -> None:
    Path(f"{fake_piper}.json").write_text("{}", encoding="utf-8")
    assert available_voices("piper", model_dir=fake_piper.parent) == [str(fake_piper)]
    assert available_voices("piper") == []
    voice = Voice(engine="piper", name=str(fake_piper), speed=150)
    path = synthesize("x" * 20 + "[pause 1s]" + "y" * 20, voice, cache, max_duration=60)
    assert_asterisk_wav(path)
    # two parts of 20 characters (1 s each in the fake) around a 1 s pause
    assert wav_duration_ms(path) == pytest.approx(3000, abs=30)
    fast = synthesize("x" * 20, Voice(engine="piper", name=str(fake_piper), speed=300), cache,
                      max_duration=60)  # fmt: skip
    assert wav_duration_ms(fast) == pytest.approx(500, abs=30)


# ------------------------------------------------------------------------------------------
# the library: add_speech


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    migrate(engine)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


def test_add_speech_stores_a_library_message(session: Session, tmp_path: Path) -> None:
    store = tmp_path / "store"
    kwargs: dict[str, Any] = {"cache_dir": tmp_path / "cache", "max_duration": 60.0,
                              "silence_threshold_dbfs": -50.0}  # fmt: skip
    audio = add_speech(session, store, "Bonjour {{à tous}}.", "rappel", voice=Voice(), **kwargs)
    session.commit()
    assert (audio.name, audio.file_name, audio.source_name) == (
        "rappel",
        "rappel.wav",
        "tts:fr:150",
    )
    assert_asterisk_wav(store / "rappel.wav")
    assert audio.duration_ms == wav_duration_ms(store / "rappel.wav")
    assert get_audio(session, "rappel") is audio

    with pytest.raises(AudioError, match=r"'rappel' already exists.*--replace"):
        add_speech(session, store, "Autre texte.", "rappel", voice=Voice(), **kwargs)
    again = add_speech(
        session, store, "Hello.", "rappel", voice=Voice(name="en-gb", speed=170), replace=True,
        **kwargs,
    )  # fmt: skip
    assert again.id == audio.id and again.source_name == "tts:en-gb:170"

    with pytest.raises(TtsError, match=r"merge fields \(\{first_name\}\).*per call"):
        add_speech(session, store, "Bonjour {first_name}", "perso", voice=Voice(), **kwargs)
    assert not (store / "perso.wav").exists()


# ------------------------------------------------------------------------------------------
# configuration and CLI


def test_config_tts_settings(tmp_path: Path) -> None:
    settings = load_settings(environ={})
    assert settings.audio.tts_voice_for() == Voice(name="fr", speed=150)
    assert settings.audio.tts_voice_for("en-us", 180, 40) == Voice(
        name="en-us", speed=180, pitch=40
    )
    env = {"VOICECAST_AUDIO__TTS_VOICE": "en-gb", "VOICECAST_AUDIO__TTS_SPEED": "170"}
    assert load_settings(environ=env).audio.tts_voice_for() == Voice(name="en-gb", speed=170)
    with pytest.raises(ConfigError, match=r"audio\.tts_voice: .*invalid espeak-ng voice name"):
        load_settings(environ={"VOICECAST_AUDIO__TTS_VOICE": "--help"})
    with pytest.raises(ConfigError, match=r"audio\.tts_speed"):
        load_settings(environ={"VOICECAST_AUDIO__TTS_SPEED": "1000"})


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICECAST_CONFIG", raising=False)
    path = tmp_path / "voicecast.toml"
    path.write_text(
        '[database]\nurl = "sqlite:///var/test.db"\n[sandbox]\nenabled = false\n'
        '[audio]\nstore_dir = "var/audio"\ntts_cache_dir = "var/tts"\n',
        encoding="utf-8",
    )
    return path


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def test_cli_audio_say(config: Path) -> None:
    result = cli(config, "audio", "say", "rappel", "--text", "Bonjour, [pause 500ms] à demain.")
    assert result.exit_code == 0, result.output
    assert "audio rappel:" in result.output and "-18.0 LUFS" in result.output
    assert_asterisk_wav(config.parent / "var" / "audio" / "rappel.wav")
    assert len(os.listdir(config.parent / "var" / "tts")) == 1

    result = cli(config, "audio", "say", "notice", "--voice", "en-gb", "--speed", "170",
                 "--pitch", "40", "--text", "Hello, this is Acme.")  # fmt: skip
    assert result.exit_code == 0, result.output
    listing = " ".join(cli(config, "audio", "list").output.split())
    assert "tts:fr:150" in listing and "tts:en-gb:170:p40" in listing

    result = cli(config, "audio", "say", "rappel", "--text", "Encore.")
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert cli(config, "audio", "say", "rappel", "--text", "Encore.", "--replace").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed", "500"], "speed 500 words per minute is out of range (80 to 450)"),
        (["--voice", "zz"], "unknown espeak-ng voice 'zz'"),
        (["--voice", "piper:fr"], "invalid Piper voice 'fr'"),
        (["--text", "Bonjour {first_name}"], "merge fields ({first_name})"),
        (["--text", "Bonjour [pause 20s]"], "[pause 20s]: a pause is at most 10 s"),
    ],
)
def test_cli_audio_say_errors_are_one_line(config: Path, args: list[str], message: str) -> None:
    if "--text" not in args:
        args = [*args, "--text", "Bonjour."]
    result = cli(config, "audio", "say", "msg", *args)
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (config.parent / "var" / "audio" / "msg.wav").exists()


def test_cli_audio_voices(config: Path) -> None:
    result = cli(config, "audio", "voices")
    assert result.exit_code == 0, result.output
    words = result.output.split()
    assert {"fr", "en-gb", "en-us"} <= set(words)
    data = json.loads(cli(config, "audio", "voices", "--json").output)
    assert {"fr", "en-gb", "en-us"} <= set(data["espeak-ng"])
