"""Spoken prompts: texts turned into sounds the PBX can play, with local text-to-speech.

The call flows say things no audio file was uploaded for: the opt-out announcement and its
confirmation, the call-back line's identification, a campaign's text message with merge
fields. :class:`Speaker` renders each text once (:func:`voicecast.audio.tts.synthesize`
caches by content hash) into the folder Asterisk reads, and returns the sound path as the
PBX sees it. Synthesis runs in a worker thread: the event loop keeps serving calls.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from voicecast.audio.tts import TtsError, Voice, render_text, synthesize, template_fields
from voicecast.scenarios.model import SPECIAL_AUDIO, VOICEMAIL_AUDIO, Prompt, Scenario


def scenario_prompts(scenario: Scenario) -> Iterator[tuple[str, Prompt]]:
    """Every prompt of ``scenario`` as (node id, prompt), the confirmation included."""
    if scenario.confirm is not None:
        yield "_confirm", scenario.confirm
    for node_id, node in scenario.nodes.items():
        prompt = getattr(node, "prompt", None)
        if isinstance(prompt, Prompt):
            yield node_id, prompt


# espeak-ng voice per prompt language (voices shipped with espeak-ng-data).
VOICE_FOR_LANGUAGE = {"fr": "fr", "en": "en-gb"}

# The default scenario's texts, by language: the opt-out announcement said after the
# message, and the confirmation after the key (CPCE L34-5: the opt-out means is given in
# each message; 47 CFR 64.1200(b)(3): the key-press opt-out is announced and confirmed).
OPTOUT_TEXTS: dict[str, dict[str, str]] = {
    "fr": {
        "announce": "Pour ne plus recevoir nos appels, tapez {optout_key}.",
        "confirm": (
            "Votre demande est enregistrée. Votre numéro ne sera plus appelé par nos "
            "campagnes. Au revoir."
        ),
    },
    "en": {
        "announce": "To stop receiving our calls, press {optout_key}.",
        "confirm": (
            "Your request is recorded. Your number will not be called by our campaigns "
            "again. Goodbye."
        ),
    },
}


@dataclass(frozen=True)
class Speaker:
    """Turns texts into PBX sound paths.

    Attributes:
        cache_dir: host folder inside the PBX's sounds folder where rendered files go.
        cache_dir_on_pbx: the same folder as Asterisk sees it.
        speed: words per minute.
        max_duration: longest accepted rendering, in seconds.
        voices: espeak-ng voice per language (``fr``, ``en``).
    """

    cache_dir: Path
    cache_dir_on_pbx: str
    speed: int = 150
    max_duration: float = 120.0
    voices: tuple[tuple[str, str], ...] = tuple(VOICE_FOR_LANGUAGE.items())

    def voice(self, language: str, name: str | None = None, speed: int | None = None) -> Voice:
        """The :class:`Voice` for ``language`` (or the voice ``name``)."""
        voices = dict(self.voices)
        return Voice(name=name or voices.get(language, voices["en"]), speed=speed or self.speed)

    def render(self, text: str, voice: Voice) -> str:
        """Render ``text`` now (blocking) and return its PBX sound path (no extension).

        Raises:
            voicecast.audio.tts.TtsError: the text cannot be spoken.
        """
        path = synthesize(text, voice, self.cache_dir, max_duration=self.max_duration)
        return posixpath.join(self.cache_dir_on_pbx, path.stem)

    async def speak(self, text: str, language: str) -> str:
        """:meth:`render` in a worker thread, with the voice of ``language``."""
        return await asyncio.to_thread(self.render, text, self.voice(language))


@dataclass(frozen=True)
class PromptSet:
    """The sounds of one campaign's scenario: library audio and texts spoken per contact.

    Attributes:
        speaker: renders texts.
        voice: the campaign's voice for texts without their own ``voice``.
        audio: PBX sound path per audio name the scenario uses, including
            :data:`~voicecast.scenarios.model.MESSAGE_AUDIO` and
            :data:`~voicecast.scenarios.model.VOICEMAIL_AUDIO` for an audio campaign.
        message_text: the campaign's text message (the "SMS vocal"), spoken for
            ``$message`` / ``$voicemail_message`` when the campaign has no audio.
        optout_key: the campaign's opt-out key (merge field ``{optout_key}``).
    """

    speaker: Speaker
    voice: Voice
    audio: Mapping[str, str]
    message_text: str | None = None
    optout_key: str | None = None

    def _text_of(self, prompt: Prompt) -> tuple[str, Voice] | None:
        if prompt.text is not None:
            voice = self.voice if prompt.voice is None else self.speaker.voice("", prompt.voice)
            return prompt.text, voice
        if prompt.audio in SPECIAL_AUDIO and prompt.audio not in self.audio:
            if self.message_text is None:
                raise TtsError(f"the campaign has no message for {prompt.audio}")
            return self.message_text, self.voice
        return None

    def sound_for(self, prompt: Prompt, fields: Mapping[str, str | None]) -> str:
        """The PBX sound path of ``prompt`` for a contact with merge ``fields``.

        Texts are rendered with the fields (and ``{optout_key}``) and spoken (cached: a
        text already rendered by :meth:`prepare` costs a hash and a file check).

        Raises:
            voicecast.audio.tts.TtsError: a merge field is missing, or speech failed.
        """
        spoken = self._text_of(prompt)
        if spoken is None:
            return self.audio[prompt.audio or ""]
        template, voice = spoken
        # a list column this contact left empty is not kept by the import: name it as empty
        merged: dict[str, str | None] = {name: None for name in template_fields(template)}
        if self.optout_key:
            merged["optout_key"] = self.optout_key
        merged |= fields
        return self.speaker.render(render_text(template, merged), voice)

    def personal(self, scenario: Scenario) -> bool:
        """Whether a text ``scenario`` speaks (or the voicemail drop's text) has a merge
        field other than ``{optout_key}``, so that it sounds different per contact."""
        texts = [self._text_of(prompt) for _node, prompt in scenario_prompts(scenario)]
        if self.message_text is not None:
            texts.append(self._text_of(Prompt(audio=VOICEMAIL_AUDIO)))
        return any(set(template_fields(spoken[0])) - {"optout_key"} for spoken in texts if spoken)

    def prepare(self, scenario: Scenario, fields: Mapping[str, str | None]) -> None:
        """Render every text of ``scenario`` for one contact (blocking; call it in a thread
        before dialling, so the call never waits for speech)."""
        for _node, prompt in scenario_prompts(scenario):
            self.sound_for(prompt, fields)
        if self.message_text is not None:  # the voicemail drop speaks it too
            self.sound_for(Prompt(audio=VOICEMAIL_AUDIO), fields)
