"""Accounts without HTTP: users, sessions and API tokens (the console's domain rules).

Secrets are never stored: a session cookie and an API token are random strings
(:func:`secrets.token_urlsafe`, 256 bits) of which only the SHA-256 is kept; passwords are
argon2id hashes (argon2-cffi, RFC 9106 parameters).

Journal: every change of an account or token appends a ``user.changed`` entry (actor: whoever
:func:`~voicecast.journal.store.acting_as` names, the admin in the console, ``cli:...`` on
the command line) and the login steps append ``web.login`` entries (a completed login, a
lockout), in the same transaction as the change (:mod:`voicecast.journal.kinds`). Names of
console users are staff data, not callees': they may be journaled; passwords, codes and
secrets never are.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from voicecast.errors import NotFoundError, VoicecastError
from voicecast.journal import kinds
from voicecast.journal.store import SYSTEM, append
from voicecast.storage.models import ROLES, ApiToken, User, WebSession

API_TOKEN_PREFIX = "vc_"  # noqa: S105 - a public prefix, not a secret
SESSION_COOKIE = "voicecast_session"


@dataclass(frozen=True)
class Principal:
    """Who makes a request: the user, their role, and how they proved it.

    ``via``: ``session`` (console cookie, full login) | ``token`` (API bearer token).
    """

    user_id: int
    name: str
    role: str
    via: str

    def can(self, role: str) -> bool:
        """True when this principal has at least ``role`` (viewer < supervisor < admin).

        Raises:
            ValueError: unknown role name.
        """
        return ROLES.index(self.role) >= ROLES.index(role)


def digest(secret: str) -> str:
    """SHA-256 hex of a session or API token (what the database stores)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A fresh random token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def session_for(
    db: Session, token: str, now: datetime, *, idle: timedelta
) -> tuple[WebSession, User] | None:
    """The live session of a cookie token and its user, touching ``last_seen_at``.

    A session is dead when past ``expires_at``, idle longer than ``idle``, or its user is
    disabled; a dead session is deleted. ``now`` is aware (UTC).
    """
    row = db.get(WebSession, digest(token))
    if row is None:
        return None
    user = db.get(User, row.user_id)
    if user is None or user.disabled or now >= row.expires_at or now - row.last_seen_at > idle:
        db.delete(row)
        return None
    row.last_seen_at = now
    return row, user


def api_token_caller(db: Session, token: str, now: datetime) -> tuple[User, ApiToken] | None:
    """The enabled user of a live (not revoked) API token, and the token's row; records
    ``last_used_at`` (``now``, UTC)."""
    if not token.startswith(API_TOKEN_PREFIX):
        return None
    row = db.scalars(select(ApiToken).where(ApiToken.token_hash == digest(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    user = db.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    row.last_used_at = now
    return user, row


def user_for_api_token(db: Session, token: str, now: datetime) -> User | None:
    """The enabled user of a live (not revoked) API token; records ``last_used_at``."""
    found = api_token_caller(db, token, now)
    return None if found is None else found[0]


def token_label(token: ApiToken) -> dict[str, object]:
    """What the journal says of an API token: ``{"id", "name", "prefix"}`` (never the token;
    the prefix is its public first 10 characters, as the tokens page shows)."""
    return {"id": token.id, "name": token.name, "prefix": token.prefix}


def journal_user_change(db: Session, user: str, action: str, **details: object) -> None:
    """Append a ``user.changed`` entry (``user``, ``action``, ``details``) in ``db``'s
    transaction, attributed to the current actor (:func:`~voicecast.journal.store.acting_as`).

    Raises:
        JournalError: ``details`` are not JSON-able.
        LookupError: the journal is not migrated.
    """
    append(db, kinds.USER_CHANGED, {"user": user, "action": action, **details})


def _journal_login(db: Session, user: User, outcome: str, **details: object) -> None:
    """Append a ``web.login`` entry of ``user``: ``success`` and ``logout`` are the user's
    own acts (actor ``user:NAME``); ``locked`` is the server's (actor ``system``: whoever
    typed the wrong passwords is unknown)."""
    actor = SYSTEM if outcome == "locked" else f"user:{user.name}"
    append(db, kinds.WEB_LOGIN, {"user": user.name, "outcome": outcome, **details}, actor=actor)


class AccountError(VoicecastError):
    """A refused account operation (bad name, role or password); the message says which."""


USER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 12
_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (argon2-cffi defaults)


def hash_password(password: str) -> str:
    """The argon2id PHC string of ``password``."""
    return _hasher.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    """True when ``password`` matches the argon2 ``password_hash`` (constant time)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_password_strength(password: str, name: str) -> None:
    """Refuse weak passwords: at least 12 characters, not containing the user name.

    Sources: NIST SP 800-63B §5.1.1.2 (length rather than composition rules); CNIL
    délibération 2022-100 on passwords (the mandatory TOTP second factor and the lockout
    are the additional measures it asks of shorter passwords).

    Raises:
        AccountError: the reason.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if name.lower() in password.lower():
        raise AccountError("password: must not contain the user name")


def create_user(db: Session, name: str, role: str, password: str) -> User:
    """Create an account; it must enrol TOTP at its first login.

    Raises:
        AccountError: invalid name (letters, digits, ``._@-``, 1-64), unknown role, weak
            password, or the name is taken.
    """
    if not USER_NAME_RE.match(name):
        raise AccountError(
            f"user name {name!r}: 1-64 letters, digits or . _ @ - (starting with a letter or digit)"
        )
    if role not in ROLES:
        raise AccountError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    check_password_strength(password, name)
    if db.scalars(select(User).where(User.name == name)).first() is not None:
        raise AccountError(f"user {name!r} already exists")
    user = User(
        name=name,
        role=role,
        password_hash=hash_password(password),
        recovery_codes=[],
        failed_logins=0,
        disabled=False,
    )
    db.add(user)
    db.flush()
    journal_user_change(db, name, "created", role=role)
    return user


def create_session(
    db: Session,
    user_id: int,
    stage: str,
    now: datetime,
    *,
    lifetime: timedelta,
    remote: str | None = None,
    user_agent: str | None = None,
) -> str:
    """Open a console session and return its cookie token (only its SHA-256 is stored).

    ``stage``: ``mfa`` | ``enrol`` | ``full`` (see :class:`WebSession`); it expires at
    ``now + lifetime``.

    Raises:
        ValueError: unknown stage.
    """
    if stage not in ("mfa", "enrol", "full"):
        raise ValueError(f"unknown session stage {stage!r}")
    token = new_secret()
    db.add(
        WebSession(
            id=digest(token),
            user_id=user_id,
            stage=stage,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
            remote=(remote or "")[:64] or None,
            user_agent=(user_agent or "")[:200] or None,
        )
    )
    db.flush()
    return token


def create_api_token(db: Session, user_id: int, name: str, now: datetime) -> str:
    """Create an API token for ``user_id``; return it (shown once: only its hash is kept).

    Raises:
        AccountError: empty name, longer than 100 characters, or holding control
            characters (PostgreSQL refuses NUL in text).
    """
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise AccountError("token name: 1 to 100 printable characters")
    token = API_TOKEN_PREFIX + new_secret()
    row = ApiToken(
        user_id=user_id,
        name=name,
        token_hash=digest(token),
        prefix=token[:10],
        created_at=now,
    )
    db.add(row)
    db.flush()
    owner = db.get(User, user_id)
    journal_user_change(
        db, owner.name if owner else f"#{user_id}", "token_created", token=token_label(row)
    )
    return token


# --- login: password, lockout, second factor --------------------------------------------------

ISSUER = "voicecast"
"""The issuer shown by authenticator apps (``otpauth://`` URI, Key Uri Format)."""
RECOVERY_CODE_COUNT = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper
RECOVERY_CODE_LENGTH = 10  # ~49 bits each; shown as two groups of five
TOTP_WINDOW = 1  # steps of 30 s accepted either side of now (clock drift, RFC 6238 §5.2)


@dataclass(frozen=True)
class LoginPolicy:
    """The lockout rule: ``max_failed`` consecutive failures (password or second factor)
    lock the account for ``lockout`` (``[web] max_failed_logins``, ``lockout_minutes``)."""

    max_failed: int
    lockout: timedelta


@dataclass(frozen=True)
class LoginStep:
    """The outcome of one login step.

    ``status``: ``ok`` | ``invalid`` (unknown user, wrong password or code, disabled
    account: one message for all) | ``replayed`` (a TOTP code already used) | ``locked``
    (``locked_until``, UTC, says until when). ``user_id`` is set for ``ok``; ``stage`` is the
    session stage the login moves to (``enrol`` | ``mfa`` | ``full``).
    ``recovery_left``: unused recovery codes after a recovery-code login, else None.
    """

    status: str
    user_id: int | None = None
    stage: str | None = None
    locked_until: datetime | None = None
    recovery_left: int | None = None

    @property
    def ok(self) -> bool:
        """True when the step succeeded."""
        return self.status == "ok"


@cache
def _dummy_hash() -> str:
    """An argon2 hash of a random password: verified for unknown users so that they take
    as long as known ones (no user enumeration by timing)."""
    return hash_password(new_secret())


def find_user(db: Session, name: str) -> User | None:
    """The user called ``name`` (exact match), or None."""
    return db.scalars(select(User).where(User.name == name)).first()


def get_user(db: Session, name: str) -> User:
    """The user called ``name``.

    Raises:
        NotFoundError: no such user.
    """
    user = find_user(db, name)
    if user is None:
        raise NotFoundError(f"no user {name!r}")
    return user


def is_locked(user: User, now: datetime) -> bool:
    """True while ``user`` is locked out (``locked_until`` later than ``now``, UTC)."""
    return user.locked_until is not None and now < user.locked_until


def _fail(db: Session, user: User, now: datetime, policy: LoginPolicy) -> LoginStep:
    """Count a failure; lock the account at ``policy.max_failed`` consecutive ones (the
    count then starts again, so after the lockout the user has ``max_failed`` new tries)."""
    user.failed_logins = (user.failed_logins or 0) + 1
    if user.failed_logins >= policy.max_failed:
        user.failed_logins = 0
        user.locked_until = now + policy.lockout
        _journal_login(db, user, "locked", until=user.locked_until)
        return LoginStep("locked", locked_until=user.locked_until)
    return LoginStep("invalid")


def _succeed(db: Session, user: User, now: datetime, method: str, **details: object) -> None:
    """A complete login (second factor included): reset the counters, journal it."""
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    _journal_login(db, user, "success", method=method, **details)


def check_password_login(
    db: Session, name: str, password: str, now: datetime, policy: LoginPolicy
) -> LoginStep:
    """First login step: the password of ``name``.

    A locked account is refused without looking at the password. An unknown name is checked
    against a dummy hash (same time as a wrong password). A disabled account answers
    ``invalid`` like a wrong password and counts nothing. A wrong password counts toward
    the lockout. On success the argon2 hash is upgraded when its parameters are outdated
    (``check_needs_rehash``), and ``stage`` is ``enrol`` (no TOTP enrolled yet) or ``mfa``.
    The failure counter is only reset by a complete login (second factor included).
    """
    user = find_user(db, name)
    if user is None:
        password_matches(_dummy_hash(), password)
        return LoginStep("invalid")
    if is_locked(user, now):
        return LoginStep("locked", locked_until=user.locked_until)
    if not password_matches(user.password_hash, password) or user.disabled:
        return LoginStep("invalid") if user.disabled else _fail(db, user, now, policy)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    stage = "mfa" if user.totp_enrolled_at is not None and user.totp_secret else "enrol"
    return LoginStep("ok", user_id=user.id, stage=stage)


def _totp_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The 30-second step (RFC 6238) whose code is ``code``, within :data:`TOTP_WINDOW` of
    ``now``, or None. A step at or before ``last_step`` is never matched (RFC 6238 §5.2: a
    verifier must not accept the second attempt of an OTP after a successful one); -1
    when the code matched only such a used step (a replay)."""
    totp = pyotp.TOTP(secret)
    replay = False
    for offset in range(-TOTP_WINDOW, TOTP_WINDOW + 1):
        at = now + timedelta(seconds=totp.interval * offset)
        if totp.verify(code, for_time=at):
            step = totp.timecode(at)
            if last_step is not None and step <= last_step:
                replay = True
                continue
            return step
    return -1 if replay else None


def normalise_code(code: str) -> str:
    """A typed code without spaces and dashes, lower case (``"ABCDE-fghjk"`` -> ``abcdefghjk``)."""
    return "".join(ch for ch in code.lower() if ch not in " -\t")


def check_second_factor(
    db: Session, user_id: int, code: str, now: datetime, policy: LoginPolicy
) -> LoginStep:
    """Second login step: a 6-digit TOTP code (RFC 6238, one step of drift either side) or
    one of the user's recovery codes (removed once used).

    Refused: a locked account (``locked``), a wrong code (``invalid``, counts toward the
    lockout), a TOTP step already used (``replayed``, counts too). On success the failure
    counter and lock are reset and ``last_login_at`` set; ``stage`` is ``full``.

    Raises:
        NotFoundError: the user no longer exists.
    """
    user = db.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user #{user_id}")
    if is_locked(user, now):
        return LoginStep("locked", locked_until=user.locked_until)
    if user.disabled or not user.totp_secret or user.totp_enrolled_at is None:
        return LoginStep("invalid")
    typed = normalise_code(code)
    if len(typed) == 6 and typed.isdigit():
        step = _totp_step(user.totp_secret, typed, now, user.totp_last_step)
        if step is None or step < 0:
            failed = _fail(db, user, now, policy)
            return failed if failed.status == "locked" or step is None else LoginStep("replayed")
        user.totp_last_step = step
        _succeed(db, user, now, "totp")
        return LoginStep("ok", user_id=user.id, stage="full")
    remaining = list(user.recovery_codes or [])
    for stored in remaining if len(typed) == RECOVERY_CODE_LENGTH else []:
        if password_matches(stored, typed):
            remaining.remove(stored)
            user.recovery_codes = remaining  # a new list: the JSON column sees the change
            _succeed(db, user, now, "recovery", recovery_left=len(remaining))
            return LoginStep("ok", user_id=user.id, stage="full", recovery_left=len(remaining))
    return _fail(db, user, now, policy)


def begin_enrolment(db: Session, user_id: int) -> tuple[str, str]:
    """Start (or show again) TOTP enrolment: ``(secret, otpauth URI)``.

    A new base32 secret (160 bits, pyotp) is stored in ``User.totp_secret`` unless one is
    already waiting for its first code. The URI follows the Key Uri Format of Google
    Authenticator (issuer :data:`ISSUER`, SHA-1, 6 digits, 30 s).

    Raises:
        NotFoundError: the user no longer exists.
        AccountError: the user has already enrolled.
    """
    user = db.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user #{user_id}")
    if user.totp_enrolled_at is not None:
        raise AccountError(f"user {user.name!r} has already enrolled two-factor authentication")
    if not user.totp_secret:
        user.totp_secret = pyotp.random_base32()
        user.totp_last_step = None
    uri = pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.name, issuer_name=ISSUER)
    return user.totp_secret, uri


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``count`` fresh one-time recovery codes, as shown to the user (``abcde-fghjk``)."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def finish_enrolment(
    db: Session, user_id: int, code: str, now: datetime, policy: LoginPolicy
) -> tuple[LoginStep, list[str]]:
    """Complete TOTP enrolment with the first code from the user's app.

    On success: ``totp_enrolled_at`` is set, :data:`RECOVERY_CODE_COUNT` recovery codes
    replace any old ones (stored as argon2 hashes) and are returned in clear, to be shown
    once; the login is complete (``stage`` ``full``). A wrong code counts toward the
    lockout, like any second-factor failure.

    Raises:
        NotFoundError: the user no longer exists.
        AccountError: enrolment was not started (:func:`begin_enrolment`) or is done.
    """
    user = db.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user #{user_id}")
    if user.totp_enrolled_at is not None or not user.totp_secret:
        raise AccountError("two-factor enrolment is not in progress: log in again")
    if is_locked(user, now):
        return LoginStep("locked", locked_until=user.locked_until), []
    if user.disabled:
        return LoginStep("invalid"), []
    typed = normalise_code(code)
    step = _totp_step(user.totp_secret, typed, now, user.totp_last_step) if typed else None
    if step is None or step < 0:
        return _fail(db, user, now, policy), []
    codes = new_recovery_codes()
    user.totp_last_step = step
    user.totp_enrolled_at = now
    user.recovery_codes = [hash_password(normalise_code(c)) for c in codes]
    append(
        db,
        kinds.USER_CHANGED,
        {"user": user.name, "action": "two_factor_enrolled"},
        actor=f"user:{user.name}",
    )
    _succeed(db, user, now, "enrolment")
    return LoginStep("ok", user_id=user.id, stage="full", recovery_left=len(codes)), codes


def rotate_session(
    db: Session,
    old_token: str | None,
    user_id: int,
    stage: str,
    now: datetime,
    *,
    lifetime: timedelta,
    remote: str | None = None,
    user_agent: str | None = None,
) -> str:
    """Replace the session of ``old_token`` (if any) by a new one at ``stage``; return the
    new cookie token. Called at every stage change so that a token seen before a login
    step is worthless after it (session fixation, OWASP Session Management Cheat Sheet).

    Raises:
        ValueError: unknown stage.
    """
    if old_token:
        end_session(db, old_token)
    return create_session(
        db, user_id, stage, now, lifetime=lifetime, remote=remote, user_agent=user_agent
    )


def end_session(db: Session, token: str) -> None:
    """Delete the session of a cookie token; nothing when there is none."""
    row = db.get(WebSession, digest(token))
    if row is not None:
        db.delete(row)
        db.flush()


def logout(db: Session, token: str) -> None:
    """End the session of a cookie token (``POST /logout``) and, when it was a full login,
    journal a ``web.login`` ``logout`` entry of its user; nothing when there is none."""
    row = db.get(WebSession, digest(token))
    if row is None:
        return
    user = db.get(User, row.user_id) if row.stage == "full" else None
    end_session(db, token)
    if user is not None:
        _journal_login(db, user, "logout")


def end_user_sessions(db: Session, user_id: int) -> int:
    """Delete every console session of ``user_id``; return how many there were."""
    rows = list(db.scalars(select(WebSession).where(WebSession.user_id == user_id)))
    for row in rows:
        db.delete(row)
    db.flush()
    return len(rows)


# --- user administration ------------------------------------------------------------------


def list_users(db: Session) -> list[User]:
    """Every account, by name."""
    return list(db.scalars(select(User).order_by(User.name)))


def _keep_an_admin(db: Session, user: User) -> None:
    """Refuse to demote or disable the last enabled admin (nobody could manage users)."""
    if user.role != "admin" or user.disabled:
        return
    others = db.scalars(
        select(User).where(User.role == "admin", User.disabled.is_(False), User.id != user.id)
    ).first()
    if others is None:
        raise AccountError(f"user {user.name!r} is the last enabled admin: keep at least one")


def set_role(db: Session, name: str, role: str) -> User:
    """Give ``name`` the ``role`` (effective at their next request).

    Raises:
        NotFoundError: no such user.
        AccountError: unknown role, or it would demote the last enabled admin.
    """
    if role not in ROLES:
        raise AccountError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    user = get_user(db, name)
    if role != "admin":
        _keep_an_admin(db, user)
    previous = user.role
    user.role = role
    if role != previous:
        journal_user_change(db, name, "role_changed", role=role, previous_role=previous)
    return user


def set_disabled(db: Session, name: str, disabled: bool) -> User:
    """Disable (no login, sessions ended, API tokens refused) or enable ``name``.

    Raises:
        NotFoundError: no such user.
        AccountError: it would disable the last enabled admin.
    """
    user = get_user(db, name)
    ended = 0
    if disabled:
        _keep_an_admin(db, user)
        ended = end_user_sessions(db, user.id)
    changed = bool(user.disabled) != disabled
    user.disabled = disabled
    if disabled and (changed or ended):
        journal_user_change(db, name, "disabled", sessions_ended=ended)
    elif changed:
        journal_user_change(db, name, "enabled")
    return user


def unlock_user(db: Session, name: str) -> User:
    """Lift the lockout of ``name`` and reset its failure count.

    Raises:
        NotFoundError: no such user.
    """
    user = get_user(db, name)
    user.locked_until = None
    user.failed_logins = 0
    journal_user_change(db, name, "unlocked")
    return user


def reset_two_factor(db: Session, name: str) -> User:
    """Forget the TOTP secret and recovery codes of ``name`` and end their sessions: they
    enrol again at their next login (lost phone).

    Raises:
        NotFoundError: no such user.
    """
    user = get_user(db, name)
    user.totp_secret = None
    user.totp_enrolled_at = None
    user.totp_last_step = None
    user.recovery_codes = []
    ended = end_user_sessions(db, user.id)
    journal_user_change(db, name, "two_factor_reset", sessions_ended=ended)
    return user


# --- API tokens ---------------------------------------------------------------------------


def list_api_tokens(db: Session, user_id: int | None = None) -> list[tuple[ApiToken, str]]:
    """``(token, owner name)`` pairs, newest first: of ``user_id``, or everyone's (None)."""
    query = (
        select(ApiToken, User.name)
        .join(User, User.id == ApiToken.user_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    )
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return [(token, owner) for token, owner in db.execute(query)]


def revoke_api_token(db: Session, token_id: int, by: Principal, now: datetime) -> ApiToken:
    """Revoke token ``token_id`` (at ``now``, UTC): the owner may, and any admin.

    Revoking a revoked token changes nothing.

    Raises:
        NotFoundError: no such token, or not ``by``'s and ``by`` is not an admin (the same
            answer, so that other users' token ids are not revealed).
    """
    token = db.get(ApiToken, token_id)
    if token is None or (token.user_id != by.user_id and not by.can("admin")):
        raise NotFoundError(f"no API token #{token_id}")
    if token.revoked_at is None:
        token.revoked_at = now
        owner = db.get(User, token.user_id)
        journal_user_change(
            db,
            owner.name if owner else f"#{token.user_id}",
            "token_revoked",
            token=token_label(token),
        )
    return token
