"""Audio: conversion to Asterisk's 8 kHz mono 16-bit WAV, and the library of named messages."""

from voicecast.audio.convert import (
    ASTERISK_RATE,
    MAX_INPUT_BYTES,
    MIN_DURATION,
    AudioError,
    ConvertedAudio,
    atomic_write_bytes,
    convert_for_asterisk,
    voiced_span,
    wav_duration_ms,
)
from voicecast.audio.library import (
    NAME_RE,
    add_audio,
    check_name,
    get_audio,
    pbx_playback_name,
    publish,
)

__all__ = [
    "ASTERISK_RATE",
    "MAX_INPUT_BYTES",
    "MIN_DURATION",
    "NAME_RE",
    "AudioError",
    "ConvertedAudio",
    "add_audio",
    "atomic_write_bytes",
    "check_name",
    "convert_for_asterisk",
    "get_audio",
    "pbx_playback_name",
    "publish",
    "voiced_span",
    "wav_duration_ms",
]
