"""REST API: users (admin), the caller's own API tokens, and CRM webhooks (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from voicecast.storage.models import ROLES, ApiToken, User, Webhook, WebhookDelivery
from voicecast.web import accounts
from voicecast.web.api_common import IdPath, OneOf, answer_page, now
from voicecast.web.openapi import (
    Call,
    Page,
    PageQuery,
    RequestModel,
    ResponseModel,
    RouteGroup,
)
from voicecast.web.server import HTTPProblem, db_call
from voicecast.webhooks import EVENT_TYPES, create_webhook, delete_webhook, get_webhook

user_routes = RouteGroup("users", "Console and API accounts (admin).")
token_routes = RouteGroup("tokens", "The caller's own API tokens.")
webhook_routes = RouteGroup("webhooks", "CRM webhooks and their deliveries (admin).")


# --------------------------------------------------------------------------- users


class UserItem(ResponseModel):
    """An account (never its password or second-factor secrets)."""

    id: int
    name: str
    role: str = Field(description="viewer, supervisor or admin.")
    disabled: bool
    two_factor_enrolled: bool = Field(description="False until the first login enrols TOTP.")
    locked_until: datetime | None = Field(description="Locked out after failed logins until.")
    created_at: datetime
    last_login_at: datetime | None


class UserPage(Page[UserItem]):
    """A page of accounts, by name."""


class UserCreate(RequestModel):
    """A new account; it enrols its TOTP second factor at its first console login."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "nora", "role": "viewer", "password": "a long passphrase"}]
        }
    )

    name: str = Field(
        min_length=1, max_length=64, description="Letters, digits and . _ @ - (1 to 64)."
    )
    role: Annotated[str, OneOf(ROLES)]
    password: str = Field(
        min_length=1,
        max_length=1024,
        description="At least 12 characters, not containing the name.",
    )


def _user(u: User) -> UserItem:
    return UserItem(
        id=u.id,
        name=u.name,
        role=u.role,
        disabled=bool(u.disabled),
        two_factor_enrolled=u.totp_enrolled_at is not None,
        locked_until=u.locked_until,
        created_at=u.created_at,
        last_login_at=u.last_login_at,
    )


@user_routes.get(
    "/api/v1/users", "List the accounts", role="admin", query_model=PageQuery, response=UserPage
)
async def list_users(call: Call) -> UserPage:
    """Every account, by name: role, two-factor enrolment, lockout, last login."""
    return await answer_page(
        call, UserPage, select(User).order_by(User.name), lambda _s, row: _user(row[0])
    )


@user_routes.post(
    "/api/v1/users",
    "Create an account",
    role="admin",
    body=UserCreate,
    response=UserItem,
    status=201,
    errors=(409,),
)
async def create_user(call: Call) -> UserItem:
    """Create an account (argon2id password hash); it must enrol TOTP at its first login.
    400 for a weak password or a bad name; 409 when the name is taken."""
    body = call.body_as(UserCreate)

    def work(s: Session) -> UserItem:
        if s.scalar(select(User.id).where(User.name == body.name)) is not None:
            raise HTTPProblem(409, "conflict", f"name: user {body.name!r} already exists")
        return _user(accounts.create_user(s, body.name, body.role, body.password))

    return await db_call(call.request, work)


# --------------------------------------------------------------------------- tokens


class TokenItem(ResponseModel):
    """An API token (never the token itself: only its hash is stored)."""

    id: int
    name: str
    prefix: str = Field(description="The token's first characters, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenPage(Page[TokenItem]):
    """A page of the caller's tokens, newest first."""


class TokenCreate(RequestModel):
    """A new token of the caller."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "crm sync"}]})

    name: str = Field(min_length=1, max_length=100, description="What it is for.")


class TokenCreated(TokenItem):
    """The new token, shown this once."""

    token: str = Field(description="Send it as `Authorization: Bearer <token>`; shown once.")


def _token(t: ApiToken) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "prefix": t.prefix,
        "created_at": t.created_at,
        "last_used_at": t.last_used_at,
        "revoked_at": t.revoked_at,
    }


@token_routes.get(
    "/api/v1/tokens",
    "List your API tokens",
    role="viewer",
    query_model=PageQuery,
    response=TokenPage,
)
async def list_tokens(call: Call) -> TokenPage:
    """The caller's own API tokens, newest first (revoked ones included)."""
    stmt = (
        select(ApiToken)
        .where(ApiToken.user_id == call.user.user_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    )
    return await answer_page(call, TokenPage, stmt, lambda _s, row: TokenItem(**_token(row[0])))


@token_routes.post(
    "/api/v1/tokens",
    "Create an API token",
    role="viewer",
    body=TokenCreate,
    response=TokenCreated,
    status=201,
)
async def create_token(call: Call) -> TokenCreated:
    """Create an API token for the caller; it carries the caller's role. The token is in
    this answer only (the server keeps its SHA-256)."""
    name = call.body_as(TokenCreate).name
    user_id = call.user.user_id
    at = now(call.request)

    def work(s: Session) -> TokenCreated:
        token = accounts.create_api_token(s, user_id, name, at)
        row = s.scalars(select(ApiToken).where(ApiToken.token_hash == accounts.digest(token))).one()
        return TokenCreated(**_token(row), token=token)

    return await db_call(call.request, work)


@token_routes.delete(
    "/api/v1/tokens/{id}",
    "Revoke an API token",
    role="viewer",
    path_model=IdPath,
    response=TokenItem,
)
async def revoke_token(call: Call) -> TokenItem:
    """Revoke one of your tokens (an admin may revoke anyone's); revoking a revoked token
    changes nothing. 404 for an unknown token or another user's (for non-admins)."""
    token_id = call.path_as(IdPath).id
    who = call.user
    at = now(call.request)
    return await db_call(
        call.request, lambda s: TokenItem(**_token(accounts.revoke_api_token(s, token_id, who, at)))
    )


# --------------------------------------------------------------------------- webhooks


class WebhookItem(ResponseModel):
    """A receiver of events (never its secret after creation)."""

    id: int
    url: str
    events: list[str]
    enabled: bool
    description: str | None
    created_at: datetime


class WebhookPage(Page[WebhookItem]):
    """A page of webhooks, oldest first."""


class WebhookCreate(RequestModel):
    """A new receiver."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"url": "https://crm.example.test/voicecast", "events": ["optout.created"]}
            ]
        }
    )

    url: str = Field(min_length=1, max_length=2000, description="http:// or https:// URL.")
    events: list[Annotated[str, OneOf(EVENT_TYPES)]] = Field(
        min_length=1, max_length=len(EVENT_TYPES), description="Event types to send."
    )
    description: str | None = Field(None, max_length=200)
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=200,
        description="Signing secret (HMAC-SHA256); default: 256 random bits.",
    )


class WebhookCreated(WebhookItem):
    """The new receiver and its signing secret, shown this once."""

    secret: str = Field(description="Verify X-Voicecast-Signature with it; shown once.")


class DeliveryItem(ResponseModel):
    """One event's delivery to one receiver."""

    id: int
    event_id: str
    event_type: str
    status: str = Field(description="pending, delivered or failed.")
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None = Field(description="HTTP status of the last try.")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


class DeliveryPage(Page[DeliveryItem]):
    """A page of deliveries, newest first."""


def _webhook(h: Webhook) -> dict[str, Any]:
    return {
        "id": h.id,
        "url": h.url,
        "events": list(h.events or []),
        "enabled": bool(h.enabled),
        "description": h.description,
        "created_at": h.created_at,
    }


@webhook_routes.get(
    "/api/v1/webhooks",
    "List the webhooks",
    role="admin",
    query_model=PageQuery,
    response=WebhookPage,
)
async def list_webhooks(call: Call) -> WebhookPage:
    """The receivers, oldest first (without their secrets)."""
    return await answer_page(
        call,
        WebhookPage,
        select(Webhook).order_by(Webhook.id),
        lambda _s, row: WebhookItem(**_webhook(row[0])),
    )


@webhook_routes.post(
    "/api/v1/webhooks",
    "Add a webhook",
    role="admin",
    body=WebhookCreate,
    response=WebhookCreated,
    status=201,
)
async def create_webhook_(call: Call) -> WebhookCreated:
    """Add a receiver of `attempt.completed`, `optout.created` and/or `campaign.alert`
    events. The signing secret is in this answer only."""
    body = call.body_as(WebhookCreate)

    def work(s: Session) -> WebhookCreated:
        hook = create_webhook(
            s, body.url, list(body.events), description=body.description, secret=body.secret
        )
        return WebhookCreated(**_webhook(hook), secret=hook.secret)

    return await db_call(call.request, work)


@webhook_routes.delete(
    "/api/v1/webhooks/{id}",
    "Delete a webhook",
    role="admin",
    path_model=IdPath,
    status=204,
)
async def delete_webhook_(call: Call) -> None:
    """Remove a receiver and its deliveries."""
    hook_id = call.path_as(IdPath).id
    await db_call(call.request, lambda s: delete_webhook(s, hook_id))


def _delivery(d: WebhookDelivery) -> DeliveryItem:
    return DeliveryItem(
        id=d.id,
        event_id=d.event_id,
        event_type=d.event_type,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_attempt_at=d.last_attempt_at,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        payload=dict(d.payload or {}),
    )


@webhook_routes.get(
    "/api/v1/webhooks/{id}/deliveries",
    "List a webhook's deliveries",
    role="admin",
    path_model=IdPath,
    query_model=PageQuery,
    response=DeliveryPage,
)
async def list_deliveries(call: Call) -> DeliveryPage:
    """The deliveries to one receiver, newest first: status, tries, last HTTP status or
    error, the payload."""
    hook_id = call.path_as(IdPath).id

    def deliveries(s: Session) -> Select[*tuple[Any, ...]]:
        get_webhook(s, hook_id)  # 404 for an unknown webhook
        return (
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == hook_id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        )

    return await answer_page(call, DeliveryPage, deliveries, lambda _s, row: _delivery(row[0]))
