"""The supervisor web console, the REST API (``/api/v1``), ``/healthz`` and ``/metrics``.

Served by aiohttp inside ``voicecast serve`` (:func:`voicecast.web.server.run_web`).
Layout: :mod:`.server` (application, middlewares: authentication, CSRF, security headers,
errors), :mod:`.accounts` (users, argon2 passwords, TOTP, sessions, API tokens: no HTTP),
:mod:`.auth_views` (login, two-factor, users), :mod:`.console` (HTML pages), :mod:`.api`
(JSON API and its OpenAPI document), :mod:`.live` (dashboard figures and WebSocket),
:mod:`.health` (health and Prometheus metrics), :mod:`.i18n` (French / English).
"""
