"""The REST API under ``/api/v1`` (JSON): every route module's routes, and the OpenAPI
document at ``GET /api/v1/openapi.json``.

Authentication: a per-user API token (``Authorization: Bearer vc_...``, see
``POST /api/v1/tokens``) carrying its user's role, or the console session cookie (then
unsafe methods need the ``X-CSRF-Token`` header). Roles: ``viewer`` reads, ``supervisor``
changes campaigns, lists, audio, opt-outs and consents, ``admin`` manages users and
webhooks and answers data-subject requests (``/api/v1/subjects/...``). Lists are
paginated (``?limit=1..500&offset=``). Errors are ``{"error": {"code", "message"}}`` (see
:mod:`voicecast.web.openapi`).
"""

from __future__ import annotations

from aiohttp import web

from voicecast.web import (
    api_admin,
    api_audio,
    api_campaigns,
    api_compliance,
    api_lists,
    api_subjects,
)
from voicecast.web.openapi import ApiRegistry, openapi_route

REGISTRY = ApiRegistry(
    title="voicecast REST API",
    description=(
        "The operations of the voicecast console as JSON: contact lists and imports, "
        "campaigns (create, start, pause, resume, stop, status, per-contact results, "
        "compliance dry run), audio, opt-outs, consent records, data-subject rights "
        "(access, erasure, rectification, proof), users, API tokens and webhooks."
        "\n\nAuthenticate with a per-user API token: `Authorization: Bearer vc_...` "
        "(it carries its user's role: viewer < supervisor < admin). Lists take "
        "`?limit=` (1-500, default 50) and `?offset=` and answer `{items, total, limit, "
        'offset, next}`. Errors answer `{"error": {"code": ..., "message": ...}}` with a '
        "stable code."
    ),
    groups=[
        api_lists.routes,
        api_campaigns.routes,
        api_audio.routes,
        api_compliance.optout_routes,
        api_compliance.consent_routes,
        api_admin.user_routes,
        api_admin.token_routes,
        api_admin.webhook_routes,
        api_subjects.routes,
    ],
)
REGISTRY.groups.append(openapi_route(REGISTRY))


def setup(app: web.Application) -> None:
    """Register every API route on ``app``."""
    REGISTRY.setup(app)
