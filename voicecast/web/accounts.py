"""Accounts without HTTP: users, sessions and API tokens (the console's domain rules).

Secrets are never stored: a session cookie and an API token are random strings
(:func:`secrets.token_urlsafe`, 256 bits) of which only the SHA-256 is kept; passwords are
argon2id hashes (argon2-cffi, RFC 9106 parameters).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from voicecast.errors import VoicecastError
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


def user_for_api_token(db: Session, token: str, now: datetime) -> User | None:
    """The enabled user of a live (not revoked) API token; records ``last_used_at``."""
    if not token.startswith(API_TOKEN_PREFIX):
        return None
    row = db.scalars(select(ApiToken).where(ApiToken.token_hash == digest(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    user = db.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    row.last_used_at = now
    return user


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
        AccountError: empty name or longer than 100 characters.
    """
    name = name.strip()
    if not name or len(name) > 100:
        raise AccountError("token name: 1 to 100 characters")
    token = API_TOKEN_PREFIX + new_secret()
    db.add(
        ApiToken(
            user_id=user_id,
            name=name,
            token_hash=digest(token),
            prefix=token[:10],
            created_at=now,
        )
    )
    db.flush()
    return token
