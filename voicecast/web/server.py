"""The aiohttp application: routes of every console area, and the middlewares that guard them.

Request pipeline (outermost first):

1. :func:`security_headers_middleware`: CSP (no inline script), frame denial, nosniff,
   ``Referrer-Policy``, ``Permissions-Policy``, cross-origin isolation, HSTS over HTTPS,
   ``Cache-Control: no-store`` on every dynamic response, redirects and errors included.
2. :func:`error_middleware`: :class:`HTTPProblem` and :class:`~voicecast.errors.VoicecastError`
   become JSON ``{"error": {"code", "message"}}`` under ``/api/`` and an HTML error page
   elsewhere; an unexpected exception is logged and answered 500 without its text. A NUL
   character in the address, or a value the database refuses (PostgreSQL: NUL in text,
   too long for its column, out of range; :func:`refused_value`), is a 400.
3. :func:`auth_middleware`: ``request[PRINCIPAL]`` from an ``Authorization: Bearer``
   API token or the console session cookie (full logins only); ``request[WEB_SESSION]``
   the session row for a cookie, whatever its stage.
4. :func:`csrf_middleware`: every POST/PUT/PATCH/DELETE not authenticated by a bearer
   token must carry the CSRF token (form field ``_csrf`` or header ``X-CSRF-Token``) equal
   to the ``voicecast_csrf`` cookie (double-submit, OWASP CSRF Prevention Cheat Sheet), and
   a cross-origin ``Origin`` header is refused.
5. :func:`journal_middleware`: a logged-in user's request runs as
   ``acting_as("user:NAME")`` (the journal entries its handler writes name the user), and
   a data-changing request that succeeded or was refused on a rule is journaled
   (``web.action``).

Database work runs in a thread (:func:`db_call`) so that SQLite never blocks the event
loop the dialer shares.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from voicecast.clock import Clock
from voicecast.config import check_private_file, exposure_warnings
from voicecast.errors import NotFoundError, VoicecastError
from voicecast.journal import kinds
from voicecast.journal.store import acting_as, append
from voicecast.storage.models import WebSession
from voicecast.web import accounts
from voicecast.web.accounts import Principal
from voicecast.web.i18n import negotiate, translator

if TYPE_CHECKING:
    from voicecast.app import Runtime
    from voicecast.campaigns.compliance import GateEnv
    from voicecast.dialer.controller import Dialer

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSRF_COOKIE = "voicecast_csrf"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'"
)
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), display-capture=(), "
    "fullscreen=(self)"
)
"""Browser features the console never uses are disabled for it and anything it embeds."""
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Headers every response carries (:func:`add_security_headers`)."""


@dataclass
class WebContext:
    """What every handler needs: the runtime (settings, database), the clock, the dialer.

    ``dialer`` is the dialer running in this process (``voicecast serve``), None when the
    web application runs alone (tests, or a console beside a dialer in another process).
    """

    runtime: Runtime
    clock: Clock
    dialer: Dialer | None = None
    started_at: datetime | None = None
    templates: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            autoescape=jinja2.select_autoescape(default=True),
            undefined=jinja2.StrictUndefined,
        )


CTX: web.AppKey[WebContext] = web.AppKey("voicecast", WebContext)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
WEB_SESSION: web.RequestKey[WebSession] = web.RequestKey("web_session", WebSession)
CSRF_TOKEN: web.RequestKey[str] = web.RequestKey("csrf_token", str)
API_TOKEN: web.RequestKey[dict[str, object]] = web.RequestKey("api_token", dict)


class HTTPProblem(Exception):
    """An error answer: HTTP ``status``, a stable machine ``code`` and a human ``message``.

    Codes in use: ``bad_request``, ``invalid`` (a field's value), ``unauthenticated``,
    ``forbidden``, ``csrf_failed``, ``not_found``, ``conflict``, ``too_many_requests``,
    ``locked``, ``payload_too_large``, ``unsupported_media_type``, ``internal``.
    """

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def context(request: web.Request) -> WebContext:
    """The :class:`WebContext` of the application serving ``request``."""
    return request.app[CTX]


def principal(request: web.Request) -> Principal | None:
    """The authenticated user of the request, or None."""
    return request.get(PRINCIPAL)


def require(request: web.Request, role: str = "viewer") -> Principal:
    """The authenticated user when they have at least ``role``.

    Raises:
        HTTPProblem: 401 ``unauthenticated`` (API) or a redirect to ``/login`` (console)
            when nobody is logged in; 403 ``forbidden`` when the role is too low.
    """
    who = principal(request)
    if who is None:
        if is_api(request):
            raise HTTPProblem(401, "unauthenticated", "log in or send an API token")
        target = quote(request.path_qs, safe="/?=&")
        raise web.HTTPSeeOther(f"/login?next={target}")
    if not who.can(role):
        raise HTTPProblem(403, "forbidden", f"this needs the {role} role (you are {who.role})")
    return who


def is_api(request: web.Request) -> bool:
    """True for ``/api/...`` requests (JSON errors instead of HTML pages)."""
    return request.path.startswith("/api/")


async def db_call(request: web.Request | web.Application, fn: Callable[[Session], T]) -> T:
    """Run ``fn(session)`` in a worker thread inside one transaction; return its result.

    The transaction commits when ``fn`` returns and rolls back when it raises. ``fn`` runs
    in a copy of the caller's :mod:`contextvars` context (:func:`asyncio.to_thread`), so
    the journal entries it writes name the request's user (:func:`journal_middleware`).
    """
    app = request.app if isinstance(request, web.Request) else request
    sessions = app[CTX].runtime.sessions

    def work() -> T:
        with sessions() as s, s.begin():
            return fn(s)

    return await asyncio.to_thread(work)


async def gate_env(request: web.Request) -> GateEnv:
    """The compliance gate's key, packs and settings (:func:`voicecast.app.gate_env`, the
    key created on first use), loaded in a worker thread.

    Raises:
        ConfigError: an invalid ``[compliance]`` setting.
        HashKeyError: the key file is unusable, or missing while hashed lists exist.
    """
    from voicecast.app import gate_env as build

    return await asyncio.to_thread(build, context(request).runtime)


def store_key(request: web.Request, session: Session) -> bytes:
    """The opt-out keyed-hash key (created on first use), for use inside :func:`db_call`.

    Raises:
        HashKeyError: see :meth:`voicecast.app.Runtime.store_key`.
    """
    key, _ = context(request).runtime.store_key(session)
    return key


def csrf_token(request: web.Request) -> str:
    """The CSRF token to put in this request's forms (field ``_csrf``)."""
    token = request.get(CSRF_TOKEN)
    if token is None:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        request[CSRF_TOKEN] = token
    return token


def language(request: web.Request) -> str:
    """The interface language for this request (``en`` | ``fr``), from ``Accept-Language``."""
    return negotiate(request.headers.get("Accept-Language"))


def gettext(request: web.Request) -> Callable[..., str]:
    """The ``_(text, **values)`` translator of this request's language."""
    return translator(language(request))


def render(
    request: web.Request, template: str, *, status: int = 200, **values: Any
) -> web.Response:
    """Render a console page (Jinja2, autoescaped) with the common values.

    Every template gets ``_`` (translator), ``lang``, ``csrf_token``, ``user``
    (:class:`Principal` or None), ``path`` and ``is_role(role)``.
    """
    who = principal(request)
    env = context(request).templates
    html = env.get_template(template).render(
        _=gettext(request),
        lang=language(request),
        csrf_token=csrf_token(request),
        user=who,
        path=request.path,
        is_role=lambda role: who is not None and who.can(role),
        **values,
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def problem_response(request: web.Request, problem: HTTPProblem) -> web.StreamResponse:
    """The answer for a :class:`HTTPProblem`: JSON under ``/api/``, else an HTML page."""
    if is_api(request) or request.headers.get("Accept", "").startswith("application/json"):
        return web.json_response(
            {"error": {"code": problem.code, "message": problem.message}},
            status=problem.status,
            headers=problem.headers,
        )
    response = render(
        request, "error.html", status=problem.status, code=problem.code, message=problem.message
    )
    response.headers.update(problem.headers)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn errors into :class:`HTTPProblem` answers (see the module docstring)."""
    try:
        if "\x00" in request.path or "\x00" in request.query_string:
            # PostgreSQL refuses NUL in text: a lookup by such a name would be a 500 there
            raise HTTPProblem(400, "invalid", "NUL characters are not allowed in the address")
        return await handler(request)
    except HTTPProblem as problem:
        return problem_response(request, problem)
    except DataError as exc:
        if not refused_value(exc):
            return internal_error(request)
        log.warning("database refused a value on %s %s: %s", request.method, request.path, exc.orig)
        message = "a value was refused by the database (NUL character, too long or out of range)"
        return problem_response(request, HTTPProblem(400, "invalid", message))
    except NotFoundError as exc:
        return problem_response(request, HTTPProblem(404, "not_found", str(exc)))
    except VoicecastError as exc:
        return problem_response(request, HTTPProblem(400, "invalid", str(exc)))
    except web.HTTPException as exc:
        if exc.status >= 400 and (is_api(request) or exc.status != 404):
            code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
                exc.status, "bad_request"
            )
            message = exc.reason
            if exc.status == 413:  # client_max_size: say the limit and the setting
                limit = context(request).runtime.settings.web.max_upload_mb
                message = f"the upload is too large: the limit is {limit} MB ([web] max_upload_mb)"
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return problem_response(
                request, HTTPProblem(exc.status, code, message, headers=allow)
            )  # a 405 keeps its Allow header (RFC 9110 §15.5.6)
        if exc.status >= 400:
            return problem_response(request, HTTPProblem(404, "not_found", "no such page"))
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        return internal_error(request)


def internal_error(request: web.Request) -> web.StreamResponse:
    """Log the exception being handled and answer 500 without its details."""
    log.exception("unexpected error on %s %s", request.method, request.path)
    return problem_response(
        request, HTTPProblem(500, "internal", "internal error (see the server log)")
    )


# PostgreSQL SQLSTATEs of a value the request brought (documentation, appendix A): too long
# for its column, number or date out of range, bytes invalid in the encoding
_REFUSED_VALUE_STATES = frozenset({"22001", "22003", "22008", "22021", "22P05"})


def refused_value(exc: DataError) -> bool:
    """True when the database refused one of the request's values (PostgreSQL's SQLSTATEs
    above, or psycopg's own refusal of a NUL character in text, which SQLite stores): a
    400 for the client, not a server bug."""
    state = getattr(exc.orig, "sqlstate", None)
    if state is None:
        return "NUL" in str(exc.orig)
    return state in _REFUSED_VALUE_STATES


def came_over_https(request: web.Request) -> bool:
    """True when the browser reached us over HTTPS: directly (``[web] tls_cert``), or says
    a trusted proxy's ``X-Forwarded-Proto: https`` (:func:`from_trusted_proxy`)."""
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return from_trusted_proxy(request) and forwarded.lower() == "https"


def add_security_headers(request: web.Request, headers: MutableMapping[str, str]) -> None:
    """Set the headers of :data:`SECURITY_HEADERS` (a handler's own value wins), plus:

    - ``Cache-Control: no-store`` on everything but ``/static/`` files: pages, API answers
      and errors carry personal data (numbers, names, reports) that must not stay in a
      browser's or a proxy's cache;
    - ``Strict-Transport-Security`` (one year) when the request came over HTTPS
      (:func:`came_over_https`; browsers ignore it over plain HTTP, RFC 6797 §7.2).
    """
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        headers.setdefault("Cache-Control", "no-store")
    if came_over_https(request):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Add the security headers (:func:`add_security_headers`; OWASP Secure Headers
    Project) to every response: pages, API answers, static files, error pages and the
    redirects a handler raises (a 303 after a form, the 302 to ``/login``)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a raised redirect (errors are answers by now)
        add_security_headers(request, exc.headers)
        raise
    add_security_headers(request, response.headers)
    return response


def _bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Identify the caller: bearer API token first, else the session cookie. Static files
    are public: their requests skip the lookup (a database round trip each)."""
    if request.path.startswith("/static/"):
        return await handler(request)
    ctx = context(request)
    now = ctx.clock.now()
    bearer = _bearer(request)
    if bearer is not None:

        def caller(s: Session) -> tuple[Principal, dict[str, object]] | None:
            found = accounts.api_token_caller(s, bearer, now)
            if found is None:
                return None
            user, token = found
            return Principal(user.id, user.name, user.role, "token"), accounts.token_label(token)

        identified = await db_call(request, caller)
        if identified is None:
            raise HTTPProblem(
                401,
                "unauthenticated",
                "unknown or revoked API token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        request[PRINCIPAL], request[API_TOKEN] = identified
        return await handler(request)
    cookie = request.cookies.get(accounts.SESSION_COOKIE)
    if cookie:
        idle = timedelta(minutes=ctx.runtime.settings.web.idle_minutes)
        found = await db_call(request, lambda s: accounts.session_for(s, cookie, now, idle=idle))
        if found is not None:
            row, user = found
            request[WEB_SESSION] = row
            if row.stage == "full":
                request[PRINCIPAL] = Principal(user.id, user.name, user.role, "session")
    return await handler(request)


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc == request.host


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """``request.post()`` (cached by aiohttp: later calls return the same form), with a
    malformed form body answered 400 rather than 500: a hostile client may send a multipart
    part whose headers hold control characters or lack a name.

    Raises:
        HTTPProblem: 400 for a malformed body (413 for a too large one stays aiohttp's).
    """
    try:
        return await request.post()
    except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
        raise HTTPProblem(400, "invalid", f"body: malformed form ({exc})") from None


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse unsafe requests without the double-submit CSRF token (bearer tokens exempt).

    An API request with neither a token nor a full login is let through: there is no
    credential to forge, and every non-public API route answers it 401 ``unauthenticated``.
    """
    who = principal(request)
    exempt = who.via == "token" if who is not None else is_api(request)
    if request.method in UNSAFE_METHODS and not exempt:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            form = await read_form(request)
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else ""
        if (
            not cookie
            or not sent
            or not hmac.compare_digest(cookie, sent)
            or not _same_origin(request)
        ):
            raise HTTPProblem(403, "csrf_failed", "missing or wrong CSRF token: reload the page")
    response = await handler(request)
    token = request.get(CSRF_TOKEN)
    if token is not None and request.cookies.get(CSRF_COOKIE) != token:
        set_cookie(request, response, CSRF_COOKIE, token)
    return response


JOURNAL_EXEMPT_ROUTES = frozenset(
    {
        "/login",  # the login steps and the logout: web.login entries (accounts)
        "/login/totp",
        "/login/enrol",
        "/logout",
        "/audio/tts-preview",  # answers a WAV, stores nothing
        "/lists/upload/{upload_id}/preview",  # shows the mapping again, stores nothing
    }
)
"""Route templates whose unsafe requests change no data (or are journaled otherwise)."""

REFUSED_CODES = {403: "forbidden", 409: "conflict"}
"""Refusals on a rule that are journaled (``outcome`` ``refused``): the role is too low
(403), or the state of the data forbids the change (409: a campaign that cannot start, the
last admin, a taken name). Malformed input (400, 413, 415), unknown objects (404) and
server errors are not: nothing was attempted on the data. A CSRF failure never reaches
:func:`journal_middleware` (it may be forged by another site: not the user's act)."""

_NUMBER_PARAMS = frozenset({"number", "phone", "e164", "msisdn", "tel"})
# a value of 6+ digits with only separators around them (no letter): it could be a phone
# number; "spring-2026-04-12" or "demo-20261129-211234" (names with dates) are not
_PHONE_LIKE = re.compile(r"\+?[\s.()/-]*\d(?:[\s.()/-]*\d){5,}[\s.()/-]*")
_ROW_ID = re.compile(r"[1-9]\d{0,7}")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def user_actor(name: str) -> str:
    """The journal actor of a console/API user: ``user:NAME`` (control characters replaced,
    at most 100 characters, as :func:`~voicecast.journal.store.acting_as` requires)."""
    return "user:" + (_CONTROL.sub("?", name)[:100] or "?")


def action_target(params: Mapping[str, str]) -> tuple[dict[str, object], list[str]]:
    """The route parameters a ``web.action`` entry may keep, and the names of those left out.

    Kept: row ids (``id``, ``*_id``: 1 to 8 digits, as int; a 32-hex upload id), names
    (campaigns, lists, users, audio; at most 100 characters). Left out: a parameter named
    like a phone number (``number``...) and any value made of 6 or more digits and nothing
    else but ``+``, spaces, dots, dashes, slashes and brackets: it could be a phone number,
    which the journal never holds (GDPR art. 5(1)(c), minimisation; people are journaled
    by keyed hash only).
    """
    target: dict[str, object] = {}
    dropped: list[str] = []
    for name, value in sorted(params.items()):
        if name in _NUMBER_PARAMS:
            dropped.append(name)
        elif name == "id" or name.endswith("_id"):
            if _ROW_ID.fullmatch(value):
                target[name] = int(value)
            elif _UPLOAD_ID.fullmatch(value):
                target[name] = value
            else:
                dropped.append(name)
        elif _PHONE_LIKE.fullmatch(value) or _CONTROL.search(value):
            dropped.append(name)
        else:
            target[name] = value[:100]
    return target, dropped


async def _journal_action(
    request: web.Request, who: Principal, status: int, code: str | None
) -> None:
    """Append the ``web.action`` entry of ``request`` when it is one (see
    :func:`journal_middleware`); a failure is logged, never raised."""
    if request.method not in UNSAFE_METHODS:
        return
    if status >= 400 and status not in REFUSED_CODES:
        return
    resource = request.match_info.route.resource
    if resource is None or resource.canonical in JOURNAL_EXEMPT_ROUTES:
        return
    target, dropped = action_target(request.match_info)
    data: dict[str, object] = {
        "method": request.method,
        "route": resource.canonical,
        "target": target,
        "status": status,
        "outcome": "done" if status < 400 else "refused",
        "channel": "api" if is_api(request) else "console",
        "via": who.via,
    }
    if dropped:
        data["dropped"] = dropped
    if status >= 400:
        data["code"] = code or REFUSED_CODES[status]
    token = request.get(API_TOKEN)
    if who.via == "token" and token is not None:
        data["token"] = token
    actor = user_actor(who.name)
    try:
        await db_call(request, lambda s: append(s, kinds.WEB_ACTION, data, actor=actor))
    except Exception:  # the change is committed: its answer must not become a 500
        log.error(
            "could not journal %s %s (status %s) by %s",
            request.method,
            resource.canonical,
            status,
            actor,
            exc_info=True,
        )


@web.middleware
async def journal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attribute a logged-in user's request to them, and journal its data changes.

    The handler runs inside ``acting_as("user:NAME")``: every journal entry it writes (a
    ``campaign.changed``, an ``optout.recorded``, a ``user.changed``...) names the user,
    including those written in :func:`db_call` threads (:func:`asyncio.to_thread` runs the
    function in a copy of the caller's :mod:`contextvars` context).

    Then a POST, PUT, PATCH or DELETE that succeeded (2xx, 3xx) or was refused on a rule
    (:data:`REFUSED_CODES`) gets one ``web.action`` entry (:mod:`voicecast.journal.kinds`):
    method, route template, route parameters (:func:`action_target`: never a phone
    number; the subject endpoints carry the number in the body, which is never journaled),
    status, outcome, channel and, for an API token, its id, name and prefix. GETs, the
    login steps and :data:`JOURNAL_EXEMPT_ROUTES` get none (logins: ``web.login``).

    Why a transaction of its own, right after the handler's: the status is only known when
    the handler has returned, a handler may commit several transactions (an import, then
    its summary), and a refusal commits none. What the request changed is proved by the
    domain entries its handler wrote in the same transaction as each change (attributed
    to the user by the context variable); ``web.action`` is the request-level record (who
    asked what, what was answered). If the process dies between the two, the change and
    its domain entries stay consistent; only the request record is missing. A failure to
    write it is logged as an error: the committed change keeps its answer (no 500).
    """
    who = principal(request)
    if who is None:
        return await handler(request)
    with acting_as(user_actor(who.name)):
        try:
            response = await handler(request)
        except HTTPProblem as problem:
            await _journal_action(request, who, problem.status, problem.code)
            raise
        except web.HTTPException as exc:  # a raised redirect after a change (303)
            await _journal_action(request, who, exc.status, None)
            raise
        await _journal_action(request, who, response.status, None)
        return response


def from_trusted_proxy(request: web.Request) -> bool:
    """True when the request's peer is one of ``[web] trusted_proxies``: only then are its
    ``X-Forwarded-For`` / ``X-Forwarded-Proto`` headers believed (anyone else can write them)."""
    return (request.remote or "") in context(request).runtime.settings.web.trusted_proxies


def cookie_secure(request: web.Request) -> bool:
    """Whether cookies get the ``Secure`` flag (``[web] secure_cookies``; ``auto``: the
    request came over HTTPS, directly or says a trusted proxy's ``X-Forwarded-Proto``)."""
    mode = context(request).runtime.settings.web.secure_cookies
    if mode == "always":
        return True
    if mode == "never":
        return False
    return came_over_https(request)


def set_cookie(
    request: web.Request,
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
) -> None:
    """Set a cookie with ``HttpOnly``, ``SameSite=Strict``, ``Path=/`` and, per
    :func:`cookie_secure`, ``Secure``."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=cookie_secure(request),
    )


def make_app(ctx: WebContext) -> web.Application:
    """The whole web application (console, API, health) over ``ctx``."""
    from voicecast.web import api, auth_views, console, health, live, webhook_views

    max_bytes = ctx.runtime.settings.web.max_upload_mb * 1024 * 1024
    app = web.Application(
        client_max_size=max_bytes,
        middlewares=[
            security_headers_middleware,
            error_middleware,
            auth_middleware,
            csrf_middleware,
            journal_middleware,
        ],
    )
    app[CTX] = ctx
    app.router.add_static("/static/", STATIC_DIR, name="static")
    auth_views.setup(app)
    console.setup(app)
    api.setup(app)
    live.setup(app)
    health.setup(app)
    webhook_views.setup(app)
    return app


def ssl_context(ctx: WebContext) -> ssl.SSLContext | None:
    """The TLS context of ``[web] tls_cert`` / ``tls_key``, or None (plain HTTP).

    Raises:
        VoicecastError: only one of the two is set, or the files cannot be loaded.
        ConfigError: the key file can be read or changed by other users
            (:func:`voicecast.config.check_private_file`).
    """
    web_settings = ctx.runtime.settings.web
    if not web_settings.tls_cert and not web_settings.tls_key:
        return None
    if not (web_settings.tls_cert and web_settings.tls_key):
        raise VoicecastError("[web] tls_cert and tls_key must be set together")
    key_file = ctx.runtime.settings.path(web_settings.tls_key)
    check_private_file(key_file, "[web] tls_key")
    context_ = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context_.load_cert_chain(ctx.runtime.settings.path(web_settings.tls_cert), key_file)
    except (OSError, ssl.SSLError) as exc:
        raise VoicecastError(f"[web] cannot load the TLS certificate: {exc}") from exc
    return context_


async def start_web(ctx: WebContext) -> web.AppRunner:
    """Start serving on ``[web] host``:``port``; the caller awaits ``runner.cleanup()``.

    Logs a warning when bound to an address other than loopback without TLS
    (:func:`voicecast.config.exposure_warnings`).

    Raises:
        VoicecastError: the address cannot be listened on (port taken, unknown host), or
            the TLS files cannot be loaded.
    """
    settings = ctx.runtime.settings.web
    ctx.started_at = ctx.clock.now()
    tls = ssl_context(ctx)
    runner = web.AppRunner(make_app(ctx), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise VoicecastError(
            f"[web] cannot listen on {settings.host}:{settings.port}: "
            f"{exc.strerror or exc} (another server there? change [web] port)"
        ) from exc
    for line in exposure_warnings(ctx.runtime.settings, ("web",)):
        log.warning("%s", line)
    log.info(
        "console and API on %s://%s:%s/", "https" if tls else "http", settings.host, settings.port
    )
    return runner
