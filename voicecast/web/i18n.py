"""French / English interface text, chosen from the browser's ``Accept-Language``.

Catalogs are TOML files in ``voicecast/web/translations/`` (one per console area), each
with a ``[fr]`` table mapping the English text to its French translation. English is the
source language; a text missing from the catalog is shown in English.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path

LANGUAGES: tuple[str, ...] = ("en", "fr")
DEFAULT_LANGUAGE = "en"
TRANSLATIONS_DIR = Path(__file__).parent / "translations"


@cache
def catalog(language: str) -> dict[str, str]:
    """English text -> translation for ``language``, merged from every catalog file.

    Raises:
        ValueError: two catalog files translate the same text differently.
    """
    merged: dict[str, str] = {}
    if language == DEFAULT_LANGUAGE:
        return merged
    for path in sorted(TRANSLATIONS_DIR.glob("*.toml")):
        table = tomllib.loads(path.read_text(encoding="utf-8")).get(language, {})
        for source, text in table.items():
            if merged.get(source, text) != text:
                raise ValueError(f"{path.name}: {source!r} is translated differently elsewhere")
            merged[source] = text
    return merged


def negotiate(accept_language: str | None) -> str:
    """The best supported language for an ``Accept-Language`` header (RFC 9110 §12.5.4).

    Ranges are weighed by their ``q`` value (default 1, ``q=0`` excludes); ``fr-CA``
    matches ``fr``; ``*`` matches the default. Returns :data:`DEFAULT_LANGUAGE` when nothing
    matches or the header is absent or malformed.
    """
    if not accept_language:
        return DEFAULT_LANGUAGE
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(accept_language.split(",")):
        parts = [p.strip() for p in item.split(";")]
        tag = parts[0].lower()
        quality = 1.0
        for param in parts[1:]:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if quality <= 0 or not tag:
            continue
        primary = DEFAULT_LANGUAGE if tag == "*" else tag.split("-")[0]
        if primary not in LANGUAGES:
            continue
        candidate = (quality, -position, primary)
        if best is None or candidate > best:
            best = candidate
    return best[2] if best else DEFAULT_LANGUAGE


def translator(language: str) -> Callable[..., str]:
    """A ``_(text, **values)`` function: the translation, then ``str.format(**values)``."""
    table = catalog(language)

    def translate(text: str, **values: object) -> str:
        out = table.get(text, text)
        return out.format(**values) if values else out

    return translate
