"""Console pages for campaigns, contact lists, audio, reports, opt-outs and data subjects
(HTML).

Each area lives in its own module: :mod:`.console_campaigns` (campaigns, the dry run,
reports), :mod:`.console_lists` (contact lists and the two-step upload),
:mod:`.console_audio` (library, player, text-to-speech), :mod:`.console_optouts` (opt-out
list and search), :mod:`.console_subjects` (data-subject requests, admin only);
:mod:`.console_common` holds what they share.

Roles: every page needs ``viewer`` (the data-subject page ``admin``); every change (a
POST) needs ``supervisor``, and the templates leave out the action buttons and forms for
viewers (``is_role('supervisor')``). All database work runs through
:func:`~voicecast.web.server.db_call`; every service call is the one the CLI makes
(``voicecast/cli.py``, ``voicecast/cli_compliance.py``, ``voicecast/cli_subject.py``).
"""

from __future__ import annotations

from aiohttp import web

from voicecast.web import (
    console_audio,
    console_campaigns,
    console_lists,
    console_optouts,
    console_subjects,
)
from voicecast.web.console_common import path_part
from voicecast.web.server import CTX


def setup(app: web.Application) -> None:
    """Register the routes of the campaigns, reports, lists, audio, opt-out and data-subject
    pages, and the templates' ``pathpart`` filter (a name quoted as one URL path segment)."""
    app[CTX].templates.filters["pathpart"] = path_part
    console_campaigns.setup(app)
    console_lists.setup(app)
    console_audio.setup(app)
    console_optouts.setup(app)
    console_subjects.setup(app)
