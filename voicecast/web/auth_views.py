"""Console accounts: login (password, then TOTP or a recovery code), TOTP enrolment,
logout, the users admin page and the API tokens page.

Routes:

- ``GET /``: to ``/campaigns`` when logged in, else ``/login``.
- ``GET/POST /login``: name + password (argon2); then ``/login/totp`` or, for an account
  without TOTP yet, ``/login/enrol``. ``next`` (a local path) is carried through the steps.
- ``GET/POST /login/totp``: a 6-digit code (RFC 6238) or a one-time recovery code.
- ``GET/POST /login/enrol``: QR code of the ``otpauth://`` URI, then the first code; shows
  the recovery codes once.
- ``POST /logout``.
- ``GET/POST /users``, ``POST /users/{name}`` (admin): list, create, change role,
  disable / enable, unlock, reset two-factor.
- ``GET/POST /tokens``, ``POST /tokens/{id}/revoke``: one's own API tokens (admins: all).

Login protection: ``[web] max_failed_logins`` consecutive failures (password or second
factor) lock the account for ``[web] lockout_minutes``; each address may try
``[web] login_rate_per_ip`` times per ``[web] login_window`` seconds (answered 429 with
``Retry-After``, RFC 6585 §4); the session token is replaced at every step (session
fixation, OWASP Session Management Cheat Sheet).

Journal (security record, :mod:`voicecast.journal.kinds`): a completed login, a logout and
a lockout are ``web.login`` entries with the account's name (never a typed unknown name, a
password or a code); failed attempts that do not lock are not journaled. The login routes
get no ``web.action`` entry. Account and token changes are ``user.changed`` entries
(:mod:`voicecast.web.accounts`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import segno
from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy.orm import Session

from voicecast.storage.models import ROLES, User, WebSession
from voicecast.web import accounts
from voicecast.web.accounts import AccountError, LoginPolicy, LoginStep, Principal
from voicecast.web.console_common import time_formatter
from voicecast.web.server import (
    PRINCIPAL,
    WEB_SESSION,
    HTTPProblem,
    WebContext,
    context,
    db_call,
    from_trusted_proxy,
    gettext,
    principal,
    render,
    require,
    set_cookie,
)

MAX_TRACKED_ADDRESSES = 10_000


class SlidingWindowLimiter:
    """Attempts per key (a client address) in a sliding window (in memory, per process).

    Only allowed attempts are recorded, so a client hammering while refused does not push
    its own release further away. Memory: at most ``limit`` instants per key; keys whose
    instants all left the window are dropped when more than
    :data:`MAX_TRACKED_ADDRESSES` keys are held.
    """

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str, now: float, *, limit: int, window: float) -> float | None:
        """Record an attempt by ``key`` at ``now`` (seconds, any epoch).

        Returns None when allowed, else the seconds until the next attempt will be
        (``limit`` attempts already in the last ``window`` seconds).
        """
        recent = self._hits.setdefault(key, deque())
        while recent and recent[0] <= now - window:
            recent.popleft()
        if len(recent) >= limit:
            return max(recent[0] + window - now, 0.0)
        recent.append(now)
        if len(self._hits) > MAX_TRACKED_ADDRESSES:
            self._sweep(now, window)
        return None

    def _sweep(self, now: float, window: float) -> None:
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - window]:
            del self._hits[key]


LOGIN_LIMITER: web.AppKey[SlidingWindowLimiter] = web.AppKey("login_limiter", SlidingWindowLimiter)
ACTIONS = ("role", "disable", "enable", "unlock", "reset-2fa")
DONE_MESSAGES = {  # English text of the notice after each users-page change (translated)
    "created": "User {name} created: they enrol two-factor authentication at first login.",
    "role": "Role of {name} changed.",
    "disable": "{name} disabled: their sessions ended.",
    "enable": "{name} enabled.",
    "unlock": "{name} unlocked.",
    "reset-2fa": "Two-factor authentication of {name} reset: they enrol again at next login.",
}


# --- helpers ------------------------------------------------------------------------------


def safe_next(value: str | None) -> str | None:
    """``value`` when it is a local path to go to after login, else None.

    Accepted: a path starting with one ``/`` (not ``//`` nor ``/\\``: browsers read those
    as another host), without scheme, host, control characters or backslashes, and not a
    login page. This refuses open redirects (OWASP Unvalidated Redirects Cheat Sheet).
    """
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    if parts.path in ("/login", "/logout") or parts.path.startswith("/login/"):
        return None
    return value


def client_address(request: web.Request) -> str:
    """The client's address for rate limiting: the peer, or the last ``X-Forwarded-For``
    entry (the address the proxy saw) when the peer is one of ``[web] trusted_proxies``.
    From anyone else the header is ignored: it is the client's own claim."""
    peer = request.remote or "unknown"
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded.strip() and from_trusted_proxy(request):
        return forwarded.split(",")[-1].strip() or peer
    return peer


def redirect(location: str) -> web.Response:
    """A ``303 See Other`` to ``location`` (returned, so middlewares add their headers)."""
    return web.Response(status=303, headers={"Location": location})


def _with_next(path: str, nxt: str | None) -> str:
    return f"{path}?{urlencode({'next': nxt})}" if nxt else path


def _field(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _policy(ctx: WebContext) -> LoginPolicy:
    settings = ctx.runtime.settings.web
    return LoginPolicy(settings.max_failed_logins, timedelta(minutes=settings.lockout_minutes))


def _lifetime(ctx: WebContext) -> timedelta:
    return timedelta(hours=ctx.runtime.settings.web.session_hours)


def _when(ctx: WebContext) -> Callable[[datetime | None], str]:
    """The console's formatter of instants (:class:`~voicecast.web.console_common.TimeFormatter`,
    ``[report] timezone``), to the minute: ``2026-03-01 14:05 +01:00``."""
    fmt = time_formatter(ctx.runtime.report_zone())
    return lambda value: fmt(value, seconds=False)


def _rate_limit(request: web.Request) -> None:
    """Count a login attempt of the client's address.

    Raises:
        HTTPProblem: 429 ``too_many_requests`` with ``Retry-After`` (whole seconds).
    """
    ctx = context(request)
    settings = ctx.runtime.settings.web
    wait = request.app[LOGIN_LIMITER].hit(
        client_address(request),
        ctx.clock.now().timestamp(),
        limit=settings.login_rate_per_ip,
        window=settings.login_window,
    )
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        _ = gettext(request)
        raise HTTPProblem(
            429,
            "too_many_requests",
            _("Too many login attempts from your address: try again in {seconds} s.").format(
                seconds=seconds
            ),
            headers={"Retry-After": str(seconds)},
        )


def _set_session(request: web.Request, response: web.StreamResponse, token: str) -> None:
    max_age = int(context(request).runtime.settings.web.session_hours * 3600)
    set_cookie(request, response, accounts.SESSION_COOKIE, token, max_age=max_age)


def _clear_session(request: web.Request, response: web.StreamResponse) -> None:
    set_cookie(request, response, accounts.SESSION_COOKIE, "", max_age=0)


def _login_page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    name: str = "",
    nxt: str | None = None,
) -> web.Response:
    return render(request, "login.html", status=status, error=error, name=name, next=nxt or "")


def _refused(request: web.Request, step: LoginStep, *, name: str, nxt: str | None) -> web.Response:
    """The login page again after a refused password: ONE message and status for an unknown
    name, a wrong password and a locked account, so the page does not tell which accounts
    exist (OWASP Authentication Cheat Sheet, "Authentication and Error Messages")."""
    _ = gettext(request)
    policy = _policy(context(request))
    message = _(
        "Wrong user name or password. After {n} failed attempts an account is locked for "
        "{minutes} minutes."
    ).format(n=policy.max_failed, minutes=round(policy.lockout.total_seconds() / 60))
    return _login_page(request, status=401, error=message, name=name, nxt=nxt)


def _locked_page(request: web.Request, step: LoginStep) -> web.Response:
    """The login page saying until when the account is locked: only after a second-factor
    step, once the visitor proved the password (the account's owner)."""
    _ = gettext(request)
    until = _when(context(request))(step.locked_until)
    message = _("This account is locked after too many failed attempts, until {until}.").format(
        until=until
    )
    return _login_page(request, status=423, error=message)


def _pending(request: web.Request, stage: str) -> WebSession | web.Response:
    """The session row when it is at ``stage``, else where the visitor should go."""
    row: WebSession | None = request.get(WEB_SESSION)
    nxt = safe_next(request.query.get("next"))
    if row is None:
        return redirect(_with_next("/login", nxt))
    if row.stage == stage:
        return row
    target = {"mfa": "/login/totp", "enrol": "/login/enrol"}.get(row.stage)
    return redirect(_with_next(target, nxt) if target else nxt or "/")


async def _promote(
    request: web.Request, step: LoginStep, old_token: str | None
) -> tuple[str, Principal]:
    """Replace the pending session by a session at ``step.stage``; the new cookie token and
    the principal it stands for."""
    ctx = context(request)
    now = ctx.clock.now()
    user_id = step.user_id
    stage = step.stage
    assert user_id is not None and stage is not None

    def work(s: Session) -> tuple[str, Principal]:
        user = s.get(User, user_id)
        assert user is not None
        token = accounts.rotate_session(
            s,
            old_token,
            user_id,
            stage,
            now,
            lifetime=_lifetime(ctx),
            remote=request.remote,
            user_agent=request.headers.get("User-Agent"),
        )
        return token, Principal(user.id, user.name, user.role, "session")

    return await db_call(request, work)


async def _locked_out(request: web.Request, step: LoginStep) -> web.Response:
    """A second-factor step locked the account: end the pending login, say until when."""
    token = request.cookies.get(accounts.SESSION_COOKIE)
    if token:
        await db_call(request, lambda s: accounts.end_session(s, token))
    response = _locked_page(request, step)
    _clear_session(request, response)
    return response


# --- login ----------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    """``GET /``: the campaigns when logged in, else the login page."""
    return redirect("/campaigns" if principal(request) is not None else "/login")


async def login_form(request: web.Request) -> web.Response:
    """``GET /login``: the name + password form (``next``: where to go afterwards)."""
    nxt = safe_next(request.query.get("next"))
    if principal(request) is not None:
        return redirect(nxt or "/")
    return _login_page(request, nxt=nxt)


async def login_submit(request: web.Request) -> web.Response:
    """``POST /login`` (``name``, ``password``, ``next``): check the password, open a
    pending session, go to the second factor (or its enrolment)."""
    _rate_limit(request)
    ctx = context(request)
    form = await request.post()
    name = _field(form, "name").strip()
    password = _field(form, "password")
    nxt = safe_next(_field(form, "next"))
    now = ctx.clock.now()
    policy = _policy(ctx)
    old_token = request.cookies.get(accounts.SESSION_COOKIE)

    def work(s: Session) -> tuple[LoginStep, str | None]:
        step = accounts.check_password_login(s, name, password, now, policy)
        if not step.ok or step.user_id is None or step.stage is None:
            return step, None
        token = accounts.rotate_session(
            s,
            old_token,
            step.user_id,
            step.stage,
            now,
            lifetime=_lifetime(ctx),
            remote=request.remote,
            user_agent=request.headers.get("User-Agent"),
        )
        return step, token

    step, token = await db_call(request, work)
    if token is None:
        return _refused(request, step, name=name, nxt=nxt)
    target = "/login/enrol" if step.stage == "enrol" else "/login/totp"
    response = redirect(_with_next(target, nxt))
    _set_session(request, response, token)
    return response


async def totp_form(request: web.Request) -> web.Response:
    """``GET /login/totp``: the second-factor form (after the password)."""
    row = _pending(request, "mfa")
    if isinstance(row, web.Response):
        return row
    return render(
        request, "login_totp.html", error=None, next=safe_next(request.query.get("next")) or ""
    )


async def totp_submit(request: web.Request) -> web.Response:
    """``POST /login/totp`` (``code``, ``next``): a TOTP code or a recovery code completes
    the login; failures count toward the lockout."""
    row = _pending(request, "mfa")
    if isinstance(row, web.Response):
        return row
    _rate_limit(request)
    ctx = context(request)
    form = await request.post()
    code = _field(form, "code")
    nxt = safe_next(_field(form, "next"))
    now = ctx.clock.now()
    policy = _policy(ctx)
    user_id = row.user_id
    step = await db_call(
        request, lambda s: accounts.check_second_factor(s, user_id, code, now, policy)
    )
    _ = gettext(request)
    if step.status == "locked":
        return await _locked_out(request, step)
    if not step.ok:
        message = (
            _("This code was already used: wait for the next one.")
            if step.status == "replayed"
            else _("Wrong code.")
        )
        return render(request, "login_totp.html", status=401, error=message, next=nxt or "")
    token, who = await _promote(request, step, request.cookies.get(accounts.SESSION_COOKIE))
    if step.recovery_left is not None:
        request[PRINCIPAL] = who
        response: web.Response = render(
            request, "login_recovery.html", left=step.recovery_left, next=nxt or "/"
        )
    else:
        response = redirect(nxt or "/")
    _set_session(request, response, token)
    return response


def _qr_data_uri(uri: str) -> str:
    """The QR code of ``uri`` as an SVG ``data:`` URI (segno, error correction M)."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=5, border=2))


async def _enrol_page(
    request: web.Request,
    user_id: int,
    nxt: str | None,
    *,
    status: int = 200,
    error: str | None = None,
) -> web.Response:
    secret, uri = await db_call(request, lambda s: accounts.begin_enrolment(s, user_id))
    return render(
        request,
        "enrol.html",
        status=status,
        error=error,
        secret=secret,
        qr=_qr_data_uri(uri),
        uri=uri,
        next=nxt or "",
    )


async def enrol_form(request: web.Request) -> web.Response:
    """``GET /login/enrol``: the QR code and secret to add to an authenticator app."""
    row = _pending(request, "enrol")
    if isinstance(row, web.Response):
        return row
    return await _enrol_page(request, row.user_id, safe_next(request.query.get("next")))


async def enrol_submit(request: web.Request) -> web.Response:
    """``POST /login/enrol`` (``code``, ``next``): the first code proves the app has the
    secret; the login completes and the recovery codes are shown, once."""
    row = _pending(request, "enrol")
    if isinstance(row, web.Response):
        return row
    _rate_limit(request)
    ctx = context(request)
    form = await request.post()
    code = _field(form, "code")
    nxt = safe_next(_field(form, "next"))
    now = ctx.clock.now()
    policy = _policy(ctx)
    user_id = row.user_id
    try:
        step, codes = await db_call(
            request, lambda s: accounts.finish_enrolment(s, user_id, code, now, policy)
        )
    except AccountError:
        return redirect("/login")
    if step.status == "locked":
        return await _locked_out(request, step)
    if not step.ok:
        _ = gettext(request)
        return await _enrol_page(request, user_id, nxt, status=401, error=_("Wrong code."))
    token, who = await _promote(request, step, request.cookies.get(accounts.SESSION_COOKIE))
    request[PRINCIPAL] = who
    response = render(request, "enrol_done.html", codes=codes, next=nxt or "/")
    _set_session(request, response, token)
    return response


async def logout(request: web.Request) -> web.Response:
    """``POST /logout``: end the session (journaled: ``web.login`` ``logout``), clear its
    cookie, back to the login page."""
    token = request.cookies.get(accounts.SESSION_COOKIE)
    if token:
        await db_call(request, lambda s: accounts.logout(s, token))
    response = redirect("/login")
    _clear_session(request, response)
    return response


# --- users admin ----------------------------------------------------------------------------


def _console_user(request: web.Request, role: str) -> Principal:
    """:func:`require`, and for changes a console login (an API token cannot use these
    forms: a leaked token must not mint new tokens or accounts)."""
    who = require(request, role)
    if request.method != "GET" and who.via != "session":
        _ = gettext(request)
        raise HTTPProblem(403, "forbidden", _("Log in to the console to do this."))
    return who


def _done_message(request: web.Request, done: str | None, name: str | None) -> str | None:
    if not done or not name or not accounts.USER_NAME_RE.match(name):
        return None
    text = DONE_MESSAGES.get(done)
    return gettext(request)(text, name=name) if text else None


async def _users_page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    form: dict[str, str] | None = None,
) -> web.Response:
    ctx = context(request)
    now = ctx.clock.now()

    def rows(s: Session) -> list[dict[str, Any]]:
        return [
            {
                "name": u.name,
                "role": u.role,
                "enrolled": u.totp_enrolled_at is not None,
                "locked_until": u.locked_until if accounts.is_locked(u, now) else None,
                "disabled": u.disabled,
                "last_login": u.last_login_at,
            }
            for u in accounts.list_users(s)
        ]

    users = await db_call(request, rows)
    return render(
        request,
        "users.html",
        status=status,
        users=users,
        roles=ROLES,
        error=error,
        notice=notice,
        form=form or {"name": "", "role": "viewer"},
        when=_when(ctx),
    )


async def users_list(request: web.Request) -> web.Response:
    """``GET /users`` (admin): the accounts and the new-user form."""
    _console_user(request, "admin")
    notice = _done_message(request, request.query.get("done"), request.query.get("name"))
    return await _users_page(request, notice=notice)


async def users_create(request: web.Request) -> web.Response:
    """``POST /users`` (admin; ``name``, ``role``, ``password``): create an account."""
    _console_user(request, "admin")
    form = await request.post()
    name = _field(form, "name").strip()
    role = _field(form, "role")
    password = _field(form, "password")
    try:
        await db_call(request, lambda s: accounts.create_user(s, name, role, password))
    except AccountError as exc:
        return await _users_page(
            request, status=400, error=str(exc), form={"name": name, "role": role}
        )
    return redirect("/users?" + urlencode({"done": "created", "name": name}))


async def users_action(request: web.Request) -> web.Response:
    """``POST /users/{name}`` (admin; ``action``: ``role`` with ``role``, ``disable``,
    ``enable``, ``unlock``, ``reset-2fa``)."""
    _console_user(request, "admin")
    name = request.match_info["name"]
    form = await request.post()
    action = _field(form, "action")
    role = _field(form, "role")
    operations: dict[str, Callable[[Session], object]] = {
        "role": lambda s: accounts.set_role(s, name, role),
        "disable": lambda s: accounts.set_disabled(s, name, True),
        "enable": lambda s: accounts.set_disabled(s, name, False),
        "unlock": lambda s: accounts.unlock_user(s, name),
        "reset-2fa": lambda s: accounts.reset_two_factor(s, name),
    }
    operation = operations.get(action)
    if operation is None:
        raise HTTPProblem(400, "invalid", f"action: expected one of {', '.join(ACTIONS)}")
    try:
        await db_call(request, operation)
    except AccountError as exc:
        return await _users_page(request, status=409, error=str(exc))
    return redirect("/users?" + urlencode({"done": action, "name": name}))


# --- API tokens -----------------------------------------------------------------------------


async def _tokens_page(
    request: web.Request,
    who: Principal,
    *,
    status: int = 200,
    error: str | None = None,
    new_token: str | None = None,
    new_name: str = "",
) -> web.Response:
    ctx = context(request)
    everyone = who.can("admin")

    def rows(s: Session) -> list[dict[str, Any]]:
        return [
            {
                "id": t.id,
                "name": t.name,
                "owner": owner,
                "prefix": t.prefix,
                "created": t.created_at,
                "last_used": t.last_used_at,
                "revoked": t.revoked_at,
            }
            for t, owner in accounts.list_api_tokens(s, None if everyone else who.user_id)
        ]

    tokens = await db_call(request, rows)
    return render(
        request,
        "tokens.html",
        status=status,
        tokens=tokens,
        everyone=everyone,
        error=error,
        new_token=new_token,
        new_name=new_name,
        when=_when(ctx),
    )


async def tokens_list(request: web.Request) -> web.Response:
    """``GET /tokens``: one's API tokens (an admin sees everyone's)."""
    who = _console_user(request, "viewer")
    return await _tokens_page(request, who)


async def tokens_create(request: web.Request) -> web.Response:
    """``POST /tokens`` (``name``): a new token of one's own, shown once on the page."""
    who = _console_user(request, "viewer")
    form = await request.post()
    name = _field(form, "name")
    now = context(request).clock.now()
    try:
        token = await db_call(
            request, lambda s: accounts.create_api_token(s, who.user_id, name, now)
        )
    except AccountError as exc:
        return await _tokens_page(request, who, status=400, error=str(exc), new_name=name)
    return await _tokens_page(request, who, new_token=token, new_name=name.strip())


async def tokens_revoke(request: web.Request) -> web.Response:
    """``POST /tokens/{id}/revoke``: revoke one's token (an admin: anyone's)."""
    who = _console_user(request, "viewer")
    try:
        token_id = int(request.match_info["id"])
    except ValueError:
        raise HTTPProblem(404, "not_found", "no such API token") from None
    now = context(request).clock.now()
    await db_call(request, lambda s: accounts.revoke_api_token(s, token_id, who, now))
    return redirect("/tokens")


def setup(app: web.Application) -> None:
    """Register the accounts routes on ``app`` and its login rate limiter."""
    app[LOGIN_LIMITER] = SlidingWindowLimiter()
    app.router.add_get("/", index)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/login/totp", totp_form)
    app.router.add_post("/login/totp", totp_submit)
    app.router.add_get("/login/enrol", enrol_form)
    app.router.add_post("/login/enrol", enrol_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/users", users_list)
    app.router.add_post("/users", users_create)
    app.router.add_post("/users/{name}", users_action)
    app.router.add_get("/tokens", tokens_list)
    app.router.add_post("/tokens", tokens_create)
    app.router.add_post(r"/tokens/{id:\d+}/revoke", tokens_revoke)
