"""Placeholder: routes of this console area are registered by :func:`setup`."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register this area's routes on ``app``."""
