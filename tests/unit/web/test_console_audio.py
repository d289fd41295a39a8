"""Console audio library: player URL, upload, text-to-speech preview and save."""

from __future__ import annotations

import io
import shutil
import wave
from pathlib import Path

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from tones import tone

from voicecast.app import Runtime
from voicecast.storage.models import AudioMessage

from .conftest import Account, login_as
from .console_data import seed_audio

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def audio_form(csrf: str, path: Path, name: str, file_name: str | None = None) -> FormData:
    form = FormData()
    form.add_field("_csrf", csrf)
    form.add_field("name", name)
    form.add_field(
        "file", io.BytesIO(path.read_bytes()), filename=file_name or path.name,
        content_type="audio/wav",
    )  # fmt: skip
    return form


def wav_info(data: bytes) -> tuple[int, int, int]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getframerate(), w.getnchannels(), w.getnframes()


async def test_library_page_and_player_for_a_viewer(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    seed_audio(runtime, "welcome")
    await login_as(client, runtime, viewer)
    resp = await client.get("/audio")
    html = await resp.text()
    assert resp.status == 200
    assert '<audio controls preload="none" src="/audio/welcome.wav"' in html
    for form in ("audio-upload-form", "tts-form"):
        assert f'id="{form}"' not in html
    resp = await client.get("/audio/welcome.wav")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "audio/wav"
    rate, channels, frames = wav_info(await resp.read())
    assert (rate, channels) == (8000, 1) and frames > 7000
    resp = await client.get("/audio/welcome.wav", headers={"Range": "bytes=0-43"})
    assert resp.status == 206 and len(await resp.read()) == 44


async def test_audio_url_never_reads_a_path(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    seed_audio(runtime, "welcome")
    secret = runtime.audio_store / "notes.wav"  # a file in the store without a row
    secret.write_bytes((runtime.audio_store / "welcome.wav").read_bytes())
    await login_as(client, runtime, viewer)
    for path in (
        "/audio/notes.wav",
        "/audio/..%2F..%2Fvoicecast.wav",
        "/audio/%2e%2e%2fhash.wav",
        "/audio/..%5Cwelcome.wav",
        "/audio/welcome%00.wav",
        "/audio/nope.wav",
    ):
        resp = await client.get(path)
        # a NUL is refused before routing (400), the rest are simply not found
        assert resp.status == (400 if "%00" in path else 404), path
        assert resp.headers["Content-Type"].startswith("text/html"), path


async def test_supervisor_uploads_an_audio_file(
    client: TestClient, runtime: Runtime, supervisor: Account, tmp_path: Path
) -> None:
    src = tone(tmp_path / "hello.wav", seconds=1.5, rate=16000)
    csrf = await login_as(client, runtime, supervisor)
    html = await (await client.get("/audio")).text()
    assert 'id="audio-upload-form"' in html and 'id="tts-form"' in html
    assert '<script src="/static/console.js"></script>' in html
    resp = await client.post("/audio", data=audio_form(csrf, src, "hello", "../../x/hello.wav"))
    html = await resp.text()
    assert resp.status == 200 and str(resp.url).endswith("/audio?added=hello")
    assert 'id="audio-added"' in html and 'data-audio="hello"' in html
    with runtime.sessions() as s:
        msg = s.scalars(select(AudioMessage).where(AudioMessage.name == "hello")).one()
        assert msg.file_name == "hello.wav" and msg.source_name.endswith("hello.wav")
        assert 1400 <= msg.duration_ms <= 1600
    assert not (tmp_path.parent / "x").exists()  # the client's name is never a path
    rate, channels, _ = wav_info((runtime.audio_store / "hello.wav").read_bytes())
    assert (rate, channels) == (8000, 1)
    # the same name again without replace: the error is shown, the values kept
    resp = await client.post("/audio", data=audio_form(csrf, src, "hello"))
    html = await resp.text()
    assert resp.status == 400
    assert 'id="upload-error"' in html and "already exists" in html
    assert 'id="audio-name" name="name" value="hello"' in html
    # a bad name, and a file that is not audio (the server path is never shown)
    resp = await client.post("/audio", data=audio_form(csrf, src, "../evil"))
    assert resp.status == 400 and "invalid audio message name" in await resp.text()
    junk = tmp_path / "notes.txt"
    junk.write_text("not audio")
    resp = await client.post("/audio", data=audio_form(csrf, junk, "junk"))
    html = await resp.text()
    assert resp.status == 400 and 'id="upload-error"' in html
    assert "uploads" not in html
    assert list((runtime.settings.path("var") / "uploads").iterdir()) == []


async def test_viewer_cannot_change_the_library(
    client: TestClient, runtime: Runtime, viewer: Account, tmp_path: Path
) -> None:
    csrf = await login_as(client, runtime, viewer)
    src = tone(tmp_path / "hello.wav")
    assert (await client.post("/audio", data=audio_form(csrf, src, "hello"))).status == 403
    data = {"_csrf": csrf, "text": "Bonjour", "voice": "fr", "speed": "150", "tts_name": "x"}
    assert (await client.post("/audio/tts-preview", data=data)).status == 403
    assert (await client.post("/audio/tts", data=data)).status == 403
    with runtime.sessions() as s:
        assert s.scalar(select(AudioMessage.id)) is None


@needs_espeak
async def test_tts_preview_returns_a_wav_and_save_adds_it(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    csrf = await login_as(client, runtime, supervisor)
    data = {"text": "Bonjour {first_name}, [pause 300ms] ceci est un rappel.", "voice": "fr"}
    resp = await client.post(
        "/audio/tts-preview",
        data={**data, "speed": "160"},
        headers={"X-CSRF-Token": csrf, "Accept": "application/json, audio/wav"},
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "audio/wav"
    rate, channels, frames = wav_info(await resp.read())
    assert (rate, channels) == (8000, 1) and frames > 8000
    resp = await client.post(
        "/audio/tts-preview",
        data={"text": "Bonjour", "voice": "fr", "speed": "fast"},
        headers={"X-CSRF-Token": csrf, "Accept": "application/json, audio/wav"},
    )
    assert resp.status == 400
    assert "speed" in (await resp.json())["error"]["message"]

    save = {"_csrf": csrf, "text": "Bonjour, ceci est un rappel.", "voice": "fr", "speed": ""}
    resp = await client.post("/audio/tts", data={**save, "tts_name": "rappel"})
    assert resp.status == 200 and str(resp.url).endswith("/audio?added=rappel")
    with runtime.sessions() as s:
        msg = s.scalars(select(AudioMessage).where(AudioMessage.name == "rappel")).one()
        assert msg.source_name.startswith("tts:")
    # a library message holds no merge field, as `audio say` refuses it
    resp = await client.post("/audio/tts", data={**save, **data, "tts_name": "perso"})
    html = await resp.text()
    assert resp.status == 400 and 'id="tts-error"' in html and "merge fields" in html
