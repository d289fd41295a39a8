"""`voicecast audio preview` and voicecast.campaigns.preview: what a campaign's callee hears.

A real workspace under tmp_path (voicecast.toml with SQLite, no sandbox, the PBX sounds
folder in tmp_path) built through the CLI: an audio from a generated tone, a contact list,
campaigns. espeak-ng speaks the texts for real. Fictional numbers only (+33199000xxx).
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import delete
from tones import tone

from voicecast.app import Runtime, open_runtime
from voicecast.audio import voiced_span
from voicecast.campaigns.preview import (
    GAP_MS,
    PreviewError,
    PreviewResult,
    host_sound_file,
    preview,
)
from voicecast.cli import main
from voicecast.config import load_settings
from voicecast.errors import NotFoundError
from voicecast.storage.models import Contact

CONFIG = """\
[database]
url = "sqlite:///var/test.db"

[audio]
store_dir = "var/audio"
tts_cache_dir = "var/tts"

[pbx]
sounds_dir = "var/sounds"
replies_dir = "var/replies"

[sandbox]
enabled = false

[report]
timezone = "Europe/Paris"

[compliance]
hash_key_file = "var/keys/hash.key"
"""

INFORMATIONAL = [
    "--purpose", "informational", "--audience", "b2c", "--sender", "Société Fictive",
    "--on-behalf-of", "Société Fictive", "--legal-basis", "contract",
]  # fmt: skip
TEXT = "Bonjour {first_name}, votre rendez-vous de demain est confirmé."
FIRST, SECOND = "+33199000201", "+33199000202"

SCENARIO = """\
version: 1
start: intro
on_machine: vm
nodes:
  intro: {type: play, audio: msg, next: menu}
  menu:
    type: menu
    text: "Tapez 1 pour un conseiller."
    keys: {1: agent}
    timeout: 2
    retries: 1
    on_timeout: ask
  ask: {type: record, text: "Laissez votre message.", max_seconds: 10, next: agent}
  agent:
    type: transfer
    text: "Nous vous transférons."
    to: {queue: sales}
    on_failure: bye
  bye: {type: play, text: "Au revoir {first_name}.", next: done}
  done: {type: set_result, result: unreached, next: end}
  end: {type: hangup}
  vm: {type: play, audio: $voicemail_message}
"""

LOOP = """\
version: 1
start: again
nodes:
  again: {type: play, text: "Encore.", next: back}
  back: {type: goto, target: again, max_visits: 2}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace with audio ``msg`` (1 s) and ``vm`` (2 s) and list ``clients``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICECAST_CONFIG", raising=False)
    monkeypatch.delenv("VOICECAST_CLOCK_START", raising=False)
    path = tmp_path / "voicecast.toml"
    path.write_text(CONFIG, encoding="utf-8")
    ok(path, "init")
    ok(path, "audio", "add", str(tone(tmp_path / "msg.wav")), "--name", "msg")
    ok(path, "audio", "add", str(tone(tmp_path / "vm.wav", 2.0, 660.0)), "--name", "vm")
    contacts = tmp_path / "clients.csv"
    contacts.write_text(
        f"Téléphone;Prénom\n{FIRST};Camille\n{SECOND};Dominique\n", encoding="utf-8"
    )
    ok(path, "contacts", "import", str(contacts), "--list", "clients")
    return path


@pytest.fixture
def runtime(config: Path) -> Iterator[Runtime]:
    rt = open_runtime(load_settings(str(config)))
    yield rt
    rt.engine.dispose()


def run(config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], env=env)


def ok(config: Path, *args: str) -> Result:
    result = run(config, *args)
    assert result.exit_code == 0, result.output
    return result


def flat(output: str) -> str:
    return " ".join(output.split())


def create(config: Path, name: str, *options: str) -> None:
    ok(
        config, "campaign", "create", name, "--list", "clients", "--caller-id",
        "01 62 00 00 00", *INFORMATIONAL, *options,
    )  # fmt: skip


def nodes(result: PreviewResult) -> list[str]:
    return [s.node for s in result.steps]


def wav_shape(path: Path) -> tuple[int, int, int, int]:
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


# ------------------------------------------------------------------------------------------
# the person path


def test_text_campaign_with_optout_announcement(
    config: Path, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # the long temporary path on one line
    create(config, "rappel", "--text", TEXT, "--optout-key", "9")
    create(config, "rappel-seul", "--text", TEXT)
    out = config.parent / "out" / "rappel.wav"
    result = ok(config, "audio", "preview", "rappel", "--out", str(out))

    printed = flat(result.output)
    with_key = preview(runtime, "rappel")
    alone = preview(runtime, "rappel-seul")
    assert f"{out}: {with_key.duration_ms / 1000:.1f} s" in printed
    assert f"contact {FIRST}" in printed and "ended by: hangup" in printed
    for step in with_key.steps:
        assert step.node in printed and step.sound in printed
    rate, channels, width, frames = wav_shape(out)
    assert (rate, channels, width) == (8000, 1, 2)
    assert frames * 2 == len(with_key.frames)
    assert frames // 8 == with_key.duration_ms
    assert voiced_span(out) is not None  # speech, not silence
    assert out.read_bytes() == with_key.wav_bytes()

    # the message spoken for the first contact, then the announcement
    assert nodes(with_key) == ["message", "announce"]
    assert nodes(alone) == ["message"]
    assert with_key.contact == FIRST and with_key.ended_by == "hangup"
    assert with_key.steps[0].sound == alone.steps[0].sound
    assert with_key.steps[0].sound.startswith(runtime.sounds_dir_on_pbx + "/tts/")
    assert with_key.steps[0].file.parent == runtime.sounds_dir / "tts"
    message, announce = with_key.steps
    assert message.start_ms == 0 and message.duration_ms > 1000
    assert announce.start_ms == message.duration_ms + GAP_MS
    assert abs(with_key.duration_ms - (alone.duration_ms + GAP_MS + announce.duration_ms)) <= 1
    assert with_key.duration_ms > alone.duration_ms + 1000


def test_contact_option_picks_whose_fields_are_spoken(config: Path, runtime: Runtime) -> None:
    create(config, "rappel", "--text", TEXT, "--optout-key", "9")
    first = preview(runtime, "rappel")
    second = preview(runtime, "rappel", contact="01 99 00 02 02")  # national form
    assert second.contact == SECOND
    assert second.steps[0].sound != first.steps[0].sound  # "Dominique", not "Camille"
    assert second.steps[1].sound == first.steps[1].sound  # the same announcement
    assert preview(runtime, "rappel", contact=FIRST).steps == first.steps
    out = config.parent / "second.wav"
    result = ok(config, "audio", "preview", "rappel", "--contact", "0199000202", "--out", str(out))
    assert f"contact {SECOND}" in flat(result.output)


def test_audio_campaign_plays_the_library_audio(config: Path, runtime: Runtime) -> None:
    create(config, "annonce", "--message", "msg", "--optout-key", "9")
    result = preview(runtime, "annonce")
    message, announce = result.steps
    assert message.sound == f"{runtime.sounds_dir_on_pbx}/msg"
    assert message.file == runtime.sounds_dir / "msg.wav"
    assert message.duration_ms == 1000
    assert announce.node == "announce" and "/tts/" in announce.sound


def test_scenario_path_when_the_callee_presses_nothing(config: Path, runtime: Runtime) -> None:
    doc = config.parent / "flow.yaml"
    doc.write_text(SCENARIO, encoding="utf-8")
    create(config, "parcours", "--message", "msg", "--scenario", str(doc), "--optout-key", "9")
    result = preview(runtime, "parcours")
    # the menu once plus one retry, each followed by its 2 s timeout; the record captures
    # nothing; the transfer is not answered (on_failure); then the goodbye with the name
    assert nodes(result) == ["intro", "menu", "menu", "ask", "agent", "bye"]
    assert result.ended_by == "hangup"
    intro, menu1, menu2, ask, _agent, _bye = result.steps
    assert intro.duration_ms == 1000
    assert menu1.sound == menu2.sound
    assert abs(menu2.start_ms - (menu1.start_ms + menu1.duration_ms + 2000)) <= 1
    assert abs(ask.start_ms - (menu2.start_ms + menu2.duration_ms + 2000)) <= 1
    last = result.steps[-1]
    assert abs(result.duration_ms - (last.start_ms + last.duration_ms)) <= 1


def test_loop_stops_at_max_visits(config: Path, runtime: Runtime) -> None:
    doc = config.parent / "loop.yaml"
    doc.write_text(LOOP, encoding="utf-8")
    create(config, "boucle", "--message", "msg", "--scenario", str(doc))
    result = preview(runtime, "boucle")
    assert nodes(result) == ["again", "again", "again"]
    assert result.ended_by == "max_visits"


def test_preview_is_cut_at_the_longest_call(config: Path) -> None:
    create(config, "rappel", "--text", TEXT, "--optout-key", "9")
    out = config.parent / "cut.wav"
    result = run(
        config, "audio", "preview", "rappel", "--out", str(out),
        env={"VOICECAST_DIALER__MAX_CALL_DURATION": "1.5"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert wav_shape(out)[3] == 12000
    assert "ended by: max_call_duration (cut at [dialer] max_call_duration" in flat(result.output)


LONG_LOOP = """\
version: 1
start: menu
nodes:
  menu: {type: menu, text: "Tapez 1.", keys: {1: end}, timeout: 60, retries: 5, on_timeout: back}
  back: {type: goto, target: menu, max_visits: 100}
  end: {type: hangup}
"""


def test_a_long_loop_stops_where_the_dialer_hangs_up(config: Path, runtime: Runtime) -> None:
    doc = config.parent / "long.yaml"
    doc.write_text(LONG_LOOP, encoding="utf-8")
    create(config, "longue", "--message", "msg", "--scenario", str(doc))
    result = preview(runtime, "longue")
    assert runtime.settings.dialer.max_call_duration == 600
    assert result.duration_ms == 600_000 and result.truncated
    assert result.ended_by == "max_call_duration"
    assert 6 < len(result.steps) <= 10  # six plays a visit, then the line is cut


# ------------------------------------------------------------------------------------------
# the answering-machine path


def test_machine_gets_the_voicemail_message(config: Path, runtime: Runtime) -> None:
    create(config, "rappel", "--text", TEXT, "--optout-key", "9")
    create(config, "annonce", "--message", "msg", "--voicemail-message", "vm", "--optout-key", "9")
    person = preview(runtime, "rappel")
    machine = preview(runtime, "rappel", machine=True)
    assert machine.machine and machine.ended_by == "voicemail"
    assert [(s.node, s.sound) for s in machine.steps] == [("_voicemail", person.steps[0].sound)]

    vm = preview(runtime, "annonce", machine=True)
    assert [(s.node, s.sound) for s in vm.steps] == [
        ("_voicemail", f"{runtime.sounds_dir_on_pbx}/vm")
    ]
    assert vm.duration_ms == 2000

    out = config.parent / "vm.wav"
    printed = flat(ok(config, "audio", "preview", "annonce", "--machine", "--out", str(out)).output)
    assert "answering machine" in printed and "_voicemail" in printed
    assert wav_shape(out)[3] == 16000


def test_machine_follows_on_machine(config: Path, runtime: Runtime) -> None:
    doc = config.parent / "flow.yaml"
    doc.write_text(SCENARIO, encoding="utf-8")
    create(
        config, "parcours", "--message", "msg", "--voicemail-message", "vm",
        "--scenario", str(doc),
    )  # fmt: skip
    result = preview(runtime, "parcours", machine=True)
    assert [(s.node, s.sound) for s in result.steps] == [("vm", f"{runtime.sounds_dir_on_pbx}/vm")]
    assert result.ended_by == "hangup"


def test_nothing_to_preview_on_a_path_the_campaign_does_not_deliver(
    config: Path, runtime: Runtime
) -> None:
    create(config, "boite", "--message", "msg", "--deliver-to", "machines")
    assert nodes(preview(runtime, "boite", machine=True)) == ["_voicemail"]
    with pytest.raises(PreviewError, match=r"nothing to preview: .*delivers to machines only"):
        preview(runtime, "boite")


# ------------------------------------------------------------------------------------------
# errors: a clear message, exit 1, no (partial) output file


def failed(config: Path, out: Path, *args: str) -> str:
    result = run(config, "audio", "preview", *args, "--out", str(out))
    assert result.exit_code == 1, result.output
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))  # no temp file left
    return flat(result.output)


def test_errors_leave_no_output_file(config: Path) -> None:
    create(config, "annonce", "--message", "msg")
    out = config.parent / "x.wav"
    assert "error: no campaign named 'inconnue'" in failed(config, out, "inconnue")
    printed = failed(config, out, "annonce", "--contact", "+33199000299")
    assert "contact +33199000299 is not in list 'clients'" in printed
    assert "--contact 'abc'" in failed(config, out, "annonce", "--contact", "abc")

    # the library's stored file and its published copy are gone: the dialer could not
    # play it either
    (config.parent / "var" / "audio" / "msg.wav").unlink()
    (config.parent / "var" / "sounds" / "msg.wav").unlink(missing_ok=True)
    assert "stored file of audio message 'msg' is missing" in failed(config, out, "annonce")


def test_an_existing_output_is_kept_when_the_preview_fails(config: Path) -> None:
    out = config.parent / "keep.wav"
    out.write_bytes(b"previous")
    result = run(config, "audio", "preview", "inconnue", "--out", str(out))
    assert result.exit_code == 1
    assert out.read_bytes() == b"previous"


def test_missing_published_sound_is_named(
    config: Path, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(config, "annonce", "--message", "msg")
    from voicecast.audio import library

    monkeypatch.setattr(library, "publish", lambda *a, **k: None)  # nothing published
    (runtime.sounds_dir / "msg.wav").unlink(missing_ok=True)
    with pytest.raises(PreviewError, match=r"sound .*/msg is missing: no file .*msg\.wav"):
        preview(runtime, "annonce")


def test_a_list_without_contacts_names_the_missing_field(config: Path, runtime: Runtime) -> None:
    create(config, "rappel", "--text", TEXT, "--optout-key", "9")
    with runtime.sessions() as s, s.begin():
        s.execute(delete(Contact))
    with pytest.raises(PreviewError, match=r"no contacts.*merge field \{first_name\}"):
        preview(runtime, "rappel")
    out = config.parent / "y.wav"
    assert "{first_name}" in failed(config, out, "rappel")
    with pytest.raises(NotFoundError):
        preview(runtime, "inconnue")


def test_host_sound_file() -> None:
    base = Path("/srv/sounds")
    assert host_sound_file("/pbx/s/tts/tts-ab", "/pbx/s", base) == base / "tts" / "tts-ab.wav"
    assert host_sound_file("/pbx/s/msg.v2", "/pbx/s/", base) == base / "msg.v2.wav"
    for sound in ("/other/msg", "/pbx/s", "/pbx/s/../etc/passwd", "/pbx/sx/msg", "/pbx/s//a"):
        with pytest.raises(PreviewError, match="not inside the PBX's sounds folder"):
            host_sound_file(sound, "/pbx/s", base)


def test_a_custom_scenario_gets_the_spoken_opt_out_confirmation(
    config: Path, runtime: Runtime
) -> None:
    from voicecast.app import plan_builder
    from voicecast.campaigns.service import get_campaign
    from voicecast.dialer.prompts import OPTOUT_TEXTS

    doc = config.parent / "flow.yaml"
    doc.write_text(SCENARIO, encoding="utf-8")  # no confirm: prompt of its own
    create(config, "parcours", "--message", "msg", "--scenario", str(doc), "--optout-key", "9")
    with runtime.sessions() as s:
        campaign = get_campaign(s, "parcours")
    plan = plan_builder(runtime)(campaign)
    assert plan.scenario is not None and plan.scenario.confirm is not None
    assert plan.scenario.confirm.text == OPTOUT_TEXTS["fr"]["confirm"]
