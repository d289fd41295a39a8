"""CLI of the proof journal: ``voicecast journal verify|export|verify-bundle|public-key|show``.

Registered on :data:`voicecast.cli.main` when :mod:`voicecast.cli` is imported.
"""

from __future__ import annotations

from voicecast.cli import main


@main.group()
def journal() -> None:
    """The proof journal: hash-chained record of every decision, call, drop and change."""
