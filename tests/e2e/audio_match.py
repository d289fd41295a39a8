"""Where a known message lies inside a recording, by cross-correlating energy envelopes.

Used to prove that a mailbox recorded the message from its first word: the message's
envelope (RMS per 20 ms frame) is slid over the recording's; at the best lag, the envelope
of the message's first second must match the recording's (Pearson correlation), which a
message cut at its start, or started during the greeting, does not.
"""

from __future__ import annotations

import array
import math
import wave
from dataclasses import dataclass
from pathlib import Path

FRAME_MS = 20


def envelope(path: Path) -> list[float]:
    """RMS of each 20 ms frame of an 8 kHz (or any rate) mono 16-bit WAV."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, path
        rate = w.getframerate()
        samples = array.array("h", w.readframes(w.getnframes()))
    size = rate * FRAME_MS // 1000
    return [
        math.sqrt(sum(v * v for v in samples[i : i + size]) / size)
        for i in range(0, len(samples) - size + 1, size)
    ]


def _pearson(a: list[float], b: list[float]) -> float:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else 0.0


@dataclass(frozen=True)
class Match:
    """Best alignment of a message in a recording: ``start`` seconds into the recording,
    ``whole`` the correlation over the message, ``first_second`` over its first second."""

    start: float
    whole: float
    first_second: float


def locate(message: Path, recording: Path) -> Match:
    """Find ``message`` inside ``recording`` (both mono 16-bit WAV)."""
    src, rec = envelope(message), envelope(recording)
    assert len(rec) >= len(src), f"{recording.name} is shorter than the message"
    best_lag, best = 0, -2.0
    for lag in range(len(rec) - len(src) + 1):
        score = _pearson(src, rec[lag : lag + len(src)])
        if score > best:
            best_lag, best = lag, score
    head = 1000 // FRAME_MS
    first = _pearson(src[:head], rec[best_lag : best_lag + head])
    return Match(best_lag * FRAME_MS / 1000, best, first)
