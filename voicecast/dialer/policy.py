"""The campaign's call-handling choices, stated once (CLI options, validation, the flow).

A light module on purpose: the CLI imports it at start-up for its option choices.
"""

from __future__ import annotations

AMD_CHOICES_SILENCE = ("machine", "no_answer")
"""What a silent answer (AMD ``MACHINE`` / ``INITIALSILENCE``) counts as."""
AMD_CHOICES_NOTSURE = ("human", "machine", "hangup")
"""What AMD's ``NOTSURE`` counts as (``hangup``: hang up, outcome ``no_answer``)."""
DELIVER_CHOICES = ("both", "humans", "machines")
"""Who gets the message: ``machines`` is a voicemail drop only, ``humans`` leaves none."""
