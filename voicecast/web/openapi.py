"""A small typed route registry for the REST API, and the OpenAPI 3.1 document it describes.

Each API operation is declared once (:class:`RouteGroup` decorators): method, path,
summary, tag, minimum role, path / query / body models (pydantic v2), the response model
and status, the error statuses it may answer. :class:`ApiRegistry` registers the aiohttp
handlers and builds the document served at ``GET /api/v1/openapi.json``
(OpenAPI Specification 3.1.0, https://spec.openapis.org/oas/v3.1.0; its schemas are JSON
Schema 2020-12 as pydantic writes them).

Every request goes through the same steps before the handler runs:

1. the role check (401 ``unauthenticated`` without a login or token, 403 ``forbidden``
   below the route's role);
2. the path parameters, the query parameters and the JSON body are validated by their
   models; any problem answers 400 ``invalid`` with ``"<field>: <reason>"``. Bodies refuse
   unknown fields, ``NaN``/``Infinity``, nesting deeper than :data:`MAX_JSON_DEPTH`, NUL
   characters and lone UTF-16 surrogates (which no database stores); query and path values
   refuse the last two as well; a query parameter given twice, or one the operation does not
   declare, is refused too. A JSON body needs ``Content-Type: application/json`` (else 415
   ``unsupported_media_type``); bodies larger than ``[web] max_upload_mb`` answer 413
   ``payload_too_large`` (aiohttp's ``client_max_size``).

Errors are ``{"error": {"code": <stable code>, "message": <text>}}`` (see
:class:`~voicecast.web.server.HTTPProblem`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from sqlalchemy.exc import IntegrityError

from voicecast import __version__
from voicecast.compliance.keys import HashKeyError
from voicecast.errors import ConfigError
from voicecast.nesting import nesting_depth
from voicecast.web.accounts import Principal
from voicecast.web.server import HTTPProblem, require

API_PREFIX = "/api/v1"
OPENAPI_PATH = f"{API_PREFIX}/openapi.json"
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_OFFSET = 1_000_000_000
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a JSON body."""
MAX_ID = 2**63 - 1
"""Largest id accepted in a path (a signed 64-bit integer, what SQLite and PostgreSQL store)."""

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]

ERROR_TEXT: dict[int, str] = {
    400: "Invalid input: `invalid` (a field, parameter or the body; the message names it).",
    401: "`unauthenticated`: no valid API token (Authorization: Bearer) or console login.",
    403: "`forbidden`: the user's role is too low; `csrf_failed`: a console-session request "
    "without the X-CSRF-Token header.",
    404: "`not_found`: no such object.",
    409: "`conflict`: the name is taken, or the object's state forbids the operation.",
    413: "`payload_too_large`: the body is larger than [web] max_upload_mb.",
    415: "`unsupported_media_type`: the body's Content-Type is not one of those accepted.",
    503: "`unavailable`: the server cannot do it now (e.g. the compliance hash key is "
    "missing or wrong; see the message).",
}


# --------------------------------------------------------------------------- base models


class RequestModel(BaseModel):
    """Base of request bodies and parameters: unknown fields and non-finite floats refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=False)


class ResponseModel(BaseModel):
    """Base of responses: every field is listed as required in the schema (it is always
    present in the JSON, possibly ``null``)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class ErrorDetail(ResponseModel):
    """The error itself."""

    code: str = Field(
        description="Stable machine code: invalid, unauthenticated, forbidden, csrf_failed, "
        "not_found, conflict, payload_too_large, unsupported_media_type, unavailable..."
    )
    message: str = Field(description="Human explanation (English); names the field at fault.")


class ErrorResponse(ResponseModel):
    """Every error answer."""

    error: ErrorDetail


class PageQuery(RequestModel):
    """Pagination parameters of list endpoints."""

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page.")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Items to skip.")


class Page(ResponseModel, Generic[T]):
    """One page of a list: ``items``, the ``total`` count, the page's ``limit`` and
    ``offset``, and ``next``, the URL (path and query) of the next page or null."""

    items: list[T]
    total: int = Field(ge=0)
    limit: int = Field(ge=1, le=MAX_LIMIT)
    offset: int = Field(ge=0)
    next: str | None = Field(description="Path and query of the next page; null on the last.")


P = TypeVar("P", bound="Page[Any]")


def page_answer(
    model: type[P], request: web.Request, query: PageQuery, total: int, items: list[Any]
) -> P:
    """A page ``model`` of ``items`` (this page's rows of ``total``), with its ``next`` link."""
    return model(
        items=items,
        total=total,
        limit=query.limit,
        offset=query.offset,
        next=page_links(request, query, total),
    )


def page_links(request: web.Request, query: PageQuery, total: int) -> str | None:
    """The ``next`` link of a page: this request's path and query with ``offset`` moved on
    by ``limit``; None when this page reaches ``total``."""
    after = query.offset + query.limit
    if after >= total:
        return None
    return str(request.rel_url.update_query(limit=query.limit, offset=after))


# --------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Upload:
    """A route whose body is a file (not JSON): the accepted media types.

    ``multipart/form-data`` is accepted too when ``multipart_field`` is set (the file is
    that form field).
    """

    media_types: tuple[str, ...]
    description: str
    multipart_field: str | None = "file"


@dataclass
class Call:
    """One validated API request, given to a handler.

    ``who`` is the caller (None only on public routes); ``path``, ``query`` and ``body``
    the validated models of the route (None when it declares none). ``request`` is the
    aiohttp request (for uploads, the raw body).
    """

    request: web.Request
    who: Principal | None
    path: BaseModel | None
    query: BaseModel | None
    body: BaseModel | None

    @property
    def user(self) -> Principal:
        """The caller of an authenticated route."""
        assert self.who is not None, "public route"
        return self.who

    def path_as(self, model: type[M]) -> M:
        """The path parameters as ``model``."""
        assert isinstance(self.path, model)
        return self.path

    def query_as(self, model: type[M]) -> M:
        """The query parameters as ``model``."""
        assert isinstance(self.query, model)
        return self.query

    def body_as(self, model: type[M]) -> M:
        """The JSON body as ``model``."""
        assert isinstance(self.body, model)
        return self.body


HandlerResult = BaseModel | web.StreamResponse | None
ApiHandler = Callable[[Call], Awaitable[HandlerResult]]


@dataclass(frozen=True)
class Route:
    """One API operation.

    Attributes:
        method, path: HTTP method and aiohttp path (``/api/v1/lists/{name}``; the same
            template is the OpenAPI path).
        summary, tag: OpenAPI summary and tag; ``description`` defaults to the handler's
            docstring.
        role: minimum role (``viewer`` | ``supervisor`` | ``admin``), None for a public
            route.
        path_model, query_model, body: pydantic models of the path parameters, query
            parameters and JSON body (None: none).
        upload: instead of ``body``, a file body.
        response: the model of a success answer (None: ``204 No Content`` or a raw answer).
        status: the success status (200, 201, 204).
        errors: error statuses beyond those implied (400 with inputs, 401/403 with a role,
            404 with path parameters, 413/415 with a body).
        handler: ``async (Call) -> response model | web.StreamResponse | None``.
    """

    method: Method
    path: str
    summary: str
    tag: str
    role: str | None
    handler: ApiHandler
    path_model: type[RequestModel] | None = None
    query_model: type[RequestModel] | None = None
    body: type[RequestModel] | None = None
    upload: Upload | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    description: str | None = None

    @property
    def operation_id(self) -> str:
        """The OpenAPI ``operationId``: the handler's name in camelCase."""
        head, *rest = self.handler.__name__.strip("_").split("_")
        return head + "".join(word.capitalize() for word in rest)

    def error_statuses(self) -> list[int]:
        """Every error status this route may answer, sorted."""
        found = set(self.errors)
        if self.role is not None:
            found |= {401, 403}
        if self.path_model or self.query_model or self.body or self.upload:
            found.add(400)
        if self.path_model is not None:
            found.add(404)
        if self.body is not None or self.upload is not None:
            found |= {413, 415}
        return sorted(found)


class RouteGroup:
    """Routes of one API module, declared with decorators::

    routes = RouteGroup("lists")

    @routes.get("/api/v1/lists", "List the contact lists", role="viewer", ...)
    async def list_lists(call: Call) -> ListPage: ...
    """

    def __init__(self, tag: str, description: str = "") -> None:
        self.tag = tag
        self.description = description
        self.routes: list[Route] = []

    def route(
        self, method: Method, path: str, summary: str, *, role: str | None, **options: Any
    ) -> Callable[[Callable[[Call], Awaitable[Any]]], Callable[[Call], Awaitable[Any]]]:
        """Declare the decorated handler as ``method path`` (options: see :class:`Route`)."""

        def register(fn: Callable[[Call], Awaitable[Any]]) -> Callable[[Call], Awaitable[Any]]:
            self.routes.append(
                Route(
                    method=method,
                    path=path,
                    summary=summary,
                    tag=self.tag,
                    role=role,
                    handler=fn,
                    **options,
                )
            )
            return fn

        return register

    def get(
        self, path: str, summary: str, *, role: str | None, **options: Any
    ) -> Callable[[Callable[[Call], Awaitable[Any]]], Callable[[Call], Awaitable[Any]]]:
        """Declare a GET route."""
        return self.route("GET", path, summary, role=role, **options)

    def post(
        self, path: str, summary: str, *, role: str | None, **options: Any
    ) -> Callable[[Callable[[Call], Awaitable[Any]]], Callable[[Call], Awaitable[Any]]]:
        """Declare a POST route."""
        return self.route("POST", path, summary, role=role, **options)

    def delete(
        self, path: str, summary: str, *, role: str | None, **options: Any
    ) -> Callable[[Callable[[Call], Awaitable[Any]]], Callable[[Call], Awaitable[Any]]]:
        """Declare a DELETE route."""
        return self.route("DELETE", path, summary, role=role, **options)


# --------------------------------------------------------------------------- validation


def describe_errors(exc: ValidationError, where: str) -> str:
    """``"<field>: <reason>"`` for each pydantic error (``where`` names a whole-input error:
    ``body``, ``query``, ``path``), joined with ``"; "``."""
    parts: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or where
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts) or f"{where}: invalid"


def _bad_strings(value: Any, loc: tuple[str, ...] = ()) -> tuple[tuple[str, ...], str] | None:
    """The location and problem of the first string inside ``value`` (decoded JSON, query or
    path values) that no database can store: a NUL character, or a lone surrogate (not
    UTF-8 encodable)."""
    if isinstance(value, str):
        if "\x00" in value:
            return loc, "NUL characters are not allowed"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return loc, "not valid Unicode text (lone surrogate)"
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _bad_strings(key, (*loc, str(key))) or _bad_strings(item, (*loc, str(key)))
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _bad_strings(item, (*loc, str(i)))
            if found:
                return found
    return None


def _invalid(message: str) -> HTTPProblem:
    return HTTPProblem(400, "invalid", message)


def _validate(model: type[M], data: Any, where: str) -> M:
    """``data`` validated by ``model``.

    Raises:
        HTTPProblem: 400 ``invalid``, ``"<field>: <reason>"`` (``where`` for the whole).
    """
    problem = _bad_strings(data)
    if problem is not None:
        loc, reason = problem
        raise _invalid(f"{'.'.join(loc) or where}: {reason}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(describe_errors(exc, where)) from None


def _query_dict(request: web.Request) -> dict[str, str]:
    data: dict[str, str] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) > 1:
            raise _invalid(f"{key}: given {len(values)} times; give it once")
        data[key] = values[0]
    return data


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: web.Request) -> Any:
    """The request's JSON body (RFC 8259: no ``NaN``/``Infinity``).

    Raises:
        HTTPProblem: 415 when the Content-Type is not ``application/json``; 400 for an
            empty, non-UTF-8 or malformed body, or one nested deeper than
            :data:`MAX_JSON_DEPTH`; 413 (from aiohttp) when too large.
    """
    if request.content_type != "application/json":
        raise HTTPProblem(
            415,
            "unsupported_media_type",
            f"send the body as application/json (not {request.content_type or 'nothing'})",
        )
    raw = await request.read()
    if not raw.strip():
        raise _invalid("body: a JSON object is required")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise _invalid("body: not UTF-8 text") from None
    except RecursionError:
        raise _invalid(f"body: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise _invalid(f"body: invalid JSON ({exc})") from None
    if nesting_depth(data) > MAX_JSON_DEPTH:
        raise _invalid(f"body: nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def _json_response(model: BaseModel, status: int) -> web.Response:
    return web.Response(
        body=model.model_dump_json().encode("utf-8"),
        status=status,
        content_type="application/json",
    )


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        who = require(request, route.role) if route.role is not None else None
        path = (
            _validate(route.path_model, dict(request.match_info), "path")
            if route.path_model
            else None
        )
        query = (
            _validate(route.query_model, _query_dict(request), "query")
            if route.query_model
            else None
        )
        if route.query_model is None and request.query:
            raise _invalid(f"{next(iter(request.query))}: this operation takes no parameters")
        body = _validate(route.body, await read_json(request), "body") if route.body else None
        try:
            result = await route.handler(Call(request, who, path, query, body))
        except IntegrityError as exc:  # a concurrent request took the name first
            raise HTTPProblem(
                409, "conflict", f"conflicts with a stored object ({exc.orig})"
            ) from None
        except (HashKeyError, ConfigError) as exc:
            raise HTTPProblem(503, "unavailable", str(exc)) from None
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        if route.response is None or not isinstance(result, route.response):
            raise TypeError(f"{route.method} {route.path} answered {type(result).__name__}")
        return _json_response(result, route.status)

    handle.__name__ = route.handler.__name__
    handle.__doc__ = route.handler.__doc__
    return handle


# --------------------------------------------------------------------------- the document


def _parameters(model: type[BaseModel], where: Literal["path", "query"]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    params: list[dict[str, Any]] = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        any_of = prop.get("anyOf")
        if isinstance(any_of, list):  # Optional[X]: a query parameter is absent, never null
            kept = [s for s in any_of if s != {"type": "null"}]
            prop.pop("anyOf")
            if prop.get("default", 0) is None:
                prop.pop("default")
            prop = {**kept[0], **prop} if len(kept) == 1 else {"anyOf": kept, **prop}
        param: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


@dataclass
class ApiRegistry:
    """Every API route, their aiohttp registration and the OpenAPI document."""

    title: str
    description: str
    groups: list[RouteGroup] = field(default_factory=list)

    @property
    def routes(self) -> list[Route]:
        """Every declared route, in declaration order."""
        return [route for group in self.groups for route in group.routes]

    def setup(self, app: web.Application) -> None:
        """Register every route on ``app`` (no automatic HEAD routes).

        Raises:
            ValueError: the same method and path declared twice.
        """
        seen: set[tuple[str, str]] = set()
        for route in self.routes:
            key = (route.method, route.path)
            if key in seen:
                raise ValueError(f"API route declared twice: {route.method} {route.path}")
            seen.add(key)
            app.router.add_route(route.method, route.path, _wrap(route))

    def document(self) -> dict[str, Any]:
        """The OpenAPI 3.1.0 document of every route (JSON-ready).

        Schemas come from pydantic (``models_json_schema``: request models in validation
        mode, responses in serialization mode; a model used both ways with different
        schemas gets ``-Input`` / ``-Output`` names); ``$defs`` become
        ``components/schemas``.
        """
        wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
        for route in self.routes:
            if route.body is not None:
                wanted.append((route.body, "validation"))
            if route.response is not None:
                wanted.append((route.response, "serialization"))
        refs, defs = models_json_schema(
            list(dict.fromkeys(wanted)), ref_template="#/components/schemas/{model}"
        )
        paths: dict[str, dict[str, Any]] = {}
        for route in self.routes:
            paths.setdefault(route.path, {})[route.method.lower()] = self._operation(route, refs)
        error_ref = refs[(ErrorResponse, "serialization")]
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": __version__, "description": self.description},
            "tags": [
                {"name": g.tag, "description": g.description} for g in self.groups if g.routes
            ],
            "security": [{"bearerAuth": []}],
            "paths": paths,
            "components": {
                "schemas": defs.get("$defs", {}),
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "A per-user API token (vc_...), created in the console "
                        "or with POST /api/v1/tokens; it carries its user's role.",
                    }
                },
                "responses": {
                    str(status): {
                        "description": text,
                        "content": {"application/json": {"schema": error_ref}},
                    }
                    for status, text in ERROR_TEXT.items()
                },
            },
        }

    def _operation(
        self, route: Route, refs: Mapping[tuple[Any, JsonSchemaMode], Any]
    ) -> dict[str, Any]:
        doc = route.description or _docstring(route.handler)
        if route.role is not None:
            doc = f"{doc}\n\nRequires the `{route.role}` role (or higher).".strip()
        op: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "description": doc,
            "tags": [route.tag],
        }
        if route.role is None:
            op["security"] = []
        else:
            op["x-required-role"] = route.role
        params: list[dict[str, Any]] = []
        if route.path_model is not None:
            params += _parameters(route.path_model, "path")
        if route.query_model is not None:
            params += _parameters(route.query_model, "query")
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
            }
        elif route.upload is not None:
            content: dict[str, Any] = {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in route.upload.media_types
            }
            if route.upload.multipart_field:
                content["multipart/form-data"] = {
                    "schema": {
                        "type": "object",
                        "properties": {
                            route.upload.multipart_field: {"type": "string", "format": "binary"}
                        },
                        "required": [route.upload.multipart_field],
                    }
                }
            op["requestBody"] = {
                "required": True,
                "description": route.upload.description,
                "content": content,
            }
        responses: dict[str, Any] = {}
        if route.response is not None:
            responses[str(route.status)] = {
                "description": route.summary,
                "content": {
                    "application/json": {"schema": refs[(route.response, "serialization")]}
                },
            }
        else:
            responses[str(route.status)] = {"description": route.summary}
        for status in route.error_statuses():
            responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
        op["responses"] = responses
        return op


def _docstring(fn: Callable[..., Any]) -> str:
    text = (fn.__doc__ or "").strip()
    lines = text.splitlines()
    return "\n".join(line.strip() for line in lines)


def openapi_route(registry: ApiRegistry) -> RouteGroup:
    """The public ``GET /api/v1/openapi.json`` route of ``registry`` (its document is built
    once, at the first request)."""
    group = RouteGroup("meta", "This document.")
    cached: list[bytes] = []

    @group.get(OPENAPI_PATH, "The OpenAPI 3.1 document of this API", role=None)
    async def get_openapi(call: Call) -> web.Response:
        """The OpenAPI 3.1.0 document of every operation (public: no token needed)."""
        if not cached:
            cached.append(json.dumps(registry.document(), ensure_ascii=False).encode("utf-8"))
        return web.Response(body=cached[0], content_type="application/json")

    return group
