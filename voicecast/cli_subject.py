"""CLI of data-subject rights and proof: ``voicecast subject proof|export|erase|rectify``.

Registered on :data:`voicecast.cli.main` when :mod:`voicecast.cli` is imported.
"""

from __future__ import annotations

from voicecast.cli import main


@main.group()
def subject() -> None:
    """One person's data, by phone number: proof of lawful calls, access, erasure,
    rectification (GDPR art. 15-17)."""


# --- proof ---------------------------------------------------------------------------------


# --- export / erase / rectify ----------------------------------------------------------------
