"""CLI of retention and the record of processing: ``voicecast retention run``,
``voicecast register``.

Registered on :data:`voicecast.cli.main` when :mod:`voicecast.cli` is imported.
"""

from __future__ import annotations

from voicecast.cli import main


@main.group()
def retention() -> None:
    """Storage limitation (GDPR art. 5(1)(e)): purge what outlived its retention period."""
