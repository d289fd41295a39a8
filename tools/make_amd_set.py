#!/usr/bin/env python3
"""Regenerate the labelled AMD evaluation set ``sounds/amd-eval/`` (WAVs + ``labels.csv``).

``voicecast amd evaluate`` plays each recording as the callee's side of a sandbox call and
compares Asterisk's ``AMD()`` verdict with the label. Three labels:

- ``human``: short telephone greetings ("Allô ?", "Hello?", "Hi, this is Jordan speaking."),
  French and English, after 0.3 to 2.0 s of leading silence, some over a room-noise bed;
- ``machine``: mailbox greetings of about 3, 6, 10 and 15 s in French and English, followed
  by a 1 kHz beep, some with leading silence or a noise bed;
- ``silence``: 4 s of digital silence or of low line/room noise (white, pink, brown).

Every name is fictional. Speech is espeak-ng (voices ``fr``, ``en-us``, ``en-gb``, speed
160 words per minute), trimmed, band-limited to the telephone band (300-3400 Hz), resampled to
8000 Hz and peak-normalised to -3 dBFS with sox; noise comes from sox ``synth`` in repeatable
mode (``sox -R``: fixed random seed), and sox runs without dither (``-D``), so the same
espeak-ng and sox versions give byte-identical files (made with espeak-ng 1.51, SoX 14.4.2).
Output: 8000 Hz mono 16-bit PCM WAV, as Asterisk plays it.

Usage, from the project root::

    python3 tools/make_amd_set.py            # rewrite sounds/amd-eval/
    python3 tools/make_amd_set.py --check    # regenerate in a temp folder, compare bytes
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "sounds" / "amd-eval"
RATE = 8000
SPEED_WPM = 160
SOX_OUT = ["-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer"]
BEEP_GAP_S = 0.4  # silence between the end of a mailbox greeting and its beep
BEEP_S = 0.5  # 1 kHz beep, -6 dBFS
TAIL_S = 0.2  # silence at the end of every file (the sandbox then sends silence)
SILENCE_S = 4.0  # length of the silence/noise recordings


@dataclass(frozen=True)
class Recording:
    """One recording of the set.

    Attributes:
        name: file stem (``[a-z0-9_]``), also the label file's ``file`` column without .wav.
        label: ``human``, ``machine`` or ``silence``.
        language: ``fr``, ``en`` or ``-`` (silence).
        voice: espeak-ng voice, or ``""`` for silence.
        text: what is said (``""`` for silence).
        lead_s: seconds of silence (or noise) before the speech.
        noise: ``""``, or sox noise type and RMS level, e.g. ``pinknoise:-50``.
        beep: a mailbox beep after the speech.
    """

    name: str
    label: str
    language: str
    voice: str
    text: str
    lead_s: float = 0.0
    noise: str = ""
    beep: bool = False


FR_3 = "Bonjour, vous êtes bien chez Camille. Laissez un message."
FR_6 = (
    "Bonjour, vous êtes bien sur la messagerie de Camille Fictif. "
    "Je ne peux pas vous répondre, laissez un message après le bip."
)
FR_10 = (
    "Bonjour, vous êtes bien sur le répondeur de Camille Fictif. Je suis en déplacement "
    "cette semaine et je ne peux pas vous répondre. Laissez-moi votre nom et votre numéro "
    "après le bip, je vous rappelle rapidement."
)
FR_15 = (
    "Bonjour, vous êtes bien sur la messagerie vocale de Camille Fictif, de la société "
    "Exemple Fictive. Je suis absente du bureau jusqu'à lundi. Pour toute urgence, contactez "
    "l'accueil. Sinon, laissez-moi un message après le bip, je vous rappellerai dès que "
    "possible."
)
EN_3 = "Hi, you've reached Jordan. Leave a message."
EN_6 = "Hi, you've reached the voicemail of Jordan Example. Please leave a message after the tone."
EN_10 = (
    "Hello, you've reached Jordan Example. I'm away from my desk this week and can't take "
    "your call. Please leave your name and number after the tone, and I'll get back to you "
    "soon."
)
EN_15 = (
    "Hello, you have reached the voicemail of Jordan Example at Example Fictive Limited. "
    "I am out of the office until Monday. For anything urgent, please call the front desk. "
    "Otherwise, leave your name, number and a short message after the tone, and I will call "
    "you back."
)

PINK_50 = "pinknoise:-50"  # a quiet room, -50 dBFS RMS

SET: tuple[Recording, ...] = (
    # --- people answering
    Recording("human_fr_allo", "human", "fr", "fr", "Allô ?", 0.4),
    Recording("human_fr_allo_late", "human", "fr", "fr", "Allô ?", 1.5),
    Recording("human_fr_oui_bonjour", "human", "fr", "fr", "Oui, bonjour ?", 0.5),
    Recording("human_fr_allo_camille", "human", "fr", "fr", "Allô, c'est Camille.", 0.3),
    Recording("human_fr_allo_oui_noise", "human", "fr", "fr", "Allô, oui ?", 0.8, PINK_50),
    Recording("human_fr_bonjour_noise", "human", "fr", "fr", "Bonjour !", 1.0, "brownnoise:-48"),
    Recording("human_en_hello", "human", "en", "en-us", "Hello?", 0.4),
    Recording("human_en_hello_late", "human", "en", "en-gb", "Hello?", 2.0),
    Recording("human_en_jordan", "human", "en", "en-us", "Hi, this is Jordan speaking.", 0.3),
    Recording("human_en_yes_hello_noise", "human", "en", "en-us", "Yes, hello?", 0.6, PINK_50),
    Recording("human_en_morgan", "human", "en", "en-gb", "Hello, Morgan here.", 0.5),
    # --- mailboxes: greeting then beep
    Recording("machine_fr_03s", "machine", "fr", "fr", FR_3, 0.3, beep=True),
    Recording("machine_fr_06s", "machine", "fr", "fr", FR_6, 0.5, beep=True),
    Recording("machine_fr_10s", "machine", "fr", "fr", FR_10, 0.3, beep=True),
    Recording("machine_fr_15s", "machine", "fr", "fr", FR_15, 0.3, beep=True),
    Recording("machine_fr_06s_noise", "machine", "fr", "fr", FR_6, 1.0, PINK_50, True),
    Recording("machine_en_03s", "machine", "en", "en-us", EN_3, 0.3, beep=True),
    Recording("machine_en_06s", "machine", "en", "en-us", EN_6, 0.5, beep=True),
    Recording("machine_en_10s", "machine", "en", "en-us", EN_10, 0.3, beep=True),
    Recording("machine_en_15s", "machine", "en", "en-us", EN_15, 0.3, beep=True),
    Recording("machine_en_06s_late", "machine", "en", "en-gb", EN_6, 1.8, beep=True),
    # --- silent answers
    Recording("silence_digital", "silence", "-", "", ""),
    Recording("silence_white_60db", "silence", "-", "", "", noise="whitenoise:-60"),
    Recording("silence_white_50db", "silence", "-", "", "", noise="whitenoise:-50"),
    Recording("silence_pink_50db", "silence", "-", "", "", noise=PINK_50),
    Recording("silence_brown_45db", "silence", "-", "", "", noise="brownnoise:-45"),
)


def _sox(*args: str) -> None:
    subprocess.run(["sox", "-R", "-D", *args], check=True)


def _silence(path: Path, seconds: float) -> None:
    _sox("-n", *SOX_OUT, str(path), "trim", "0", f"{seconds:.3f}")


def _duration(path: Path) -> float:
    out = subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def _rms_db(path: Path) -> float:
    res = subprocess.run(
        ["sox", "-R", str(path), "-n", "stats"], check=True, capture_output=True, text=True
    )
    for line in res.stderr.splitlines():
        if line.startswith("RMS lev dB"):
            return float(line.split()[-1])
    raise RuntimeError(f"sox stats gave no RMS level for {path}")


def _noise(path: Path, tmp: Path, spec: str, seconds: float) -> None:
    """``seconds`` of telephone-band sox noise at the RMS level of ``spec`` (``type:dB``)."""
    kind, level = spec.split(":")
    raw = tmp / f"noise-{kind}.wav"
    _sox("-n", *SOX_OUT, str(raw), "synth", f"{seconds:.3f}", kind, "sinc", "300-3400")
    gain = float(level) - _rms_db(raw)
    _sox(str(raw), *SOX_OUT, str(path), "gain", f"{gain:.2f}")


def _speech(path: Path, tmp: Path, voice: str, text: str) -> None:
    raw = tmp / "espeak.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(SPEED_WPM), "-w", str(raw), text], check=True
    )
    trim = ["silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse"]
    _sox(str(raw), *SOX_OUT, str(path), *trim, "sinc", "300-3400", "rate", str(RATE), "norm", "-3")


def build(rec: Recording, dest: Path, tmp: Path) -> None:
    """Write ``rec`` to ``dest`` (8000 Hz mono 16-bit WAV)."""
    parts: list[Path] = []
    if rec.label == "silence":
        body = tmp / "body.wav"
        _silence(body, SILENCE_S)
    else:
        lead, speech = tmp / "lead.wav", tmp / "speech.wav"
        _silence(lead, rec.lead_s)
        _speech(speech, tmp, rec.voice, rec.text)
        parts = [lead, speech]
        if rec.beep:
            gap, beep = tmp / "gap.wav", tmp / "beep.wav"
            _silence(gap, BEEP_GAP_S)
            _sox("-n", *SOX_OUT, str(beep), "synth", f"{BEEP_S}", "sine", "1000", "gain", "-6")
            parts += [gap, beep]
        tail = tmp / "tail.wav"
        _silence(tail, TAIL_S)
        parts.append(tail)
        body = tmp / "body.wav"
        _sox(*map(str, parts), *SOX_OUT, str(body))
    if rec.noise:
        noise = tmp / "noise.wav"
        _noise(noise, tmp, rec.noise, _duration(body))
        _sox("-m", "-v", "1", str(body), "-v", "1", str(noise), *SOX_OUT, str(dest))
    else:
        _sox(str(body), *SOX_OUT, str(dest))


def make_set(out_dir: Path) -> list[dict[str, str]]:
    """Write every recording and ``labels.csv`` into ``out_dir``; returns the label rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="amd-set-") as t:
        tmp = Path(t)
        for rec in SET:
            dest = out_dir / f"{rec.name}.wav"
            build(rec, dest, tmp)
            rows.append(
                {
                    "file": dest.name,
                    "label": rec.label,
                    "language": rec.language,
                    "duration_s": f"{_duration(dest):.2f}",
                    "lead_s": f"{rec.lead_s:.1f}",
                    "noise": rec.noise,
                    "beep": "yes" if rec.beep else "no",
                    "text": rec.text,
                }
            )
    with open(out_dir / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command line: write the set, or with ``--check`` compare a fresh build with it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    parser.add_argument(
        "--check", action="store_true", help="rebuild in a temp folder and compare with --out"
    )
    args = parser.parse_args(argv)
    if not args.check:
        rows = make_set(args.out)
        total = sum((args.out / r["file"]).stat().st_size for r in rows)
        print(f"wrote {len(rows)} recordings + labels.csv to {args.out} ({total / 1e6:.2f} MB)")
        return 0
    with tempfile.TemporaryDirectory(prefix="amd-set-check-") as t:
        fresh = Path(t)
        rows = make_set(fresh)
        names = [r["file"] for r in rows] + ["labels.csv"]
        _, mismatch, errors = filecmp.cmpfiles(args.out, fresh, names, shallow=False)
    for name in mismatch + errors:
        print(f"differs or missing: {name}", file=sys.stderr)
    if mismatch or errors:
        return 1
    print(f"{len(names)} files identical to a fresh build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
