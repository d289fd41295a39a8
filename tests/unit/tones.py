"""Test audio: a sine tone as 16-bit mono WAV (no external tool needed)."""

from __future__ import annotations

import io
import math
import struct
import wave
from pathlib import Path


def tone_wav(seconds: float = 1.0, hz: float = 440.0, rate: int = 8000) -> bytes:
    """The WAV bytes of a ``hz`` sine of ``seconds`` at ``rate`` samples per second."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / rate)))
                for i in range(int(rate * seconds))
            )
        )
    return buf.getvalue()


def tone(path: Path, seconds: float = 1.0, hz: float = 440.0, rate: int = 8000) -> Path:
    """Write :func:`tone_wav` to ``path``; return ``path``."""
    path.write_bytes(tone_wav(seconds, hz, rate))
    return path
