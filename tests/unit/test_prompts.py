"""Prompt sounds of a campaign: library audio and texts spoken per contact."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicecast.audio.tts import TtsError, Voice
from voicecast.dialer.prompts import PromptSet, Speaker
from voicecast.scenarios.model import MESSAGE_AUDIO, Prompt, default_scenario


def _prompts(tmp_path: Path, text: str | None, audio: dict[str, str]) -> PromptSet:
    return PromptSet(Speaker(tmp_path, "/pbx/tts"), Voice(), audio, text, "9")


def test_a_contact_without_the_merge_field_is_told_empty_not_unknown(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path, "Bonjour {first_name}", {})
    with pytest.raises(TtsError, match=r"merge field \{first_name\} is empty"):
        prompts.sound_for(Prompt(audio=MESSAGE_AUDIO), {"company": "Société Fictive"})


def test_texts_are_spoken_per_contact_and_audio_is_mapped(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path, "Bonjour {first_name}", {"msg": "/pbx/msg"})
    camille = prompts.sound_for(Prompt(audio=MESSAGE_AUDIO), {"first_name": "Camille"})
    hugo = prompts.sound_for(Prompt(audio=MESSAGE_AUDIO), {"first_name": "Hugo"})
    assert camille != hugo and camille.startswith("/pbx/tts/tts-")
    assert (tmp_path / f"{Path(camille).name}.wav").is_file()
    assert prompts.sound_for(Prompt(audio="msg"), {}) == "/pbx/msg"
    # {optout_key} is the campaign's key
    key_text = prompts.sound_for(Prompt(text="Tapez {optout_key}."), {})
    assert key_text == prompts.sound_for(Prompt(text="Tapez 9."), {})


def test_a_scenario_is_personal_only_when_a_text_has_a_contact_merge_field(
    tmp_path: Path,
) -> None:
    """The dialer speaks a scenario's texts once per campaign unless they are personal."""
    plain = default_scenario("9", announce_text="Tapez {optout_key}.", confirm_text="Merci.")
    named = default_scenario("9", announce_text="Bonjour {first_name}.", confirm_text="Merci.")
    assert not _prompts(tmp_path, None, {MESSAGE_AUDIO: "/pbx/msg"}).personal(plain)
    assert _prompts(tmp_path, None, {MESSAGE_AUDIO: "/pbx/msg"}).personal(named)
    # the voicemail drop speaks the campaign's text message
    assert _prompts(tmp_path, "Bonjour {first_name}", {}).personal(plain)
    assert not _prompts(tmp_path, "Bonjour", {}).personal(plain)
