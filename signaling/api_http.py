"""The REST API's plumbing: errors, the route record, authentication, decoding, the wrapper
that turns a ``Route`` into an aiohttp handler. The routes themselves are in ``signaling.api``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from aiohttp import web

from signaling.api_audit import audit_call
from signaling.api_models import ErrorOut
from signaling.auth import JoinRefused, hash_secret_token
from signaling.control import CONTROL, ControlPlane
from signaling.store import Account, Conflict, NotFound

Access = Literal["public", "any", "host", "operator", "support"]


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, node_address: str | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.field = status, error, message, field
        self.headers = headers
        self.node_address = node_address


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


@dataclass
class Call:
    """One API request, authenticated and decoded."""

    request: web.Request
    control: ControlPlane
    account: Account | None
    body: Any

    @property
    def me(self) -> Account:
        assert self.account is not None
        return self.account

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    def int_param(self, name: str) -> int:
        try:
            return int(self.param(name))
        except ValueError:
            raise ApiError(404, "not-found", f"no {name} {self.param(name)!r}") from None


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access = "host"
    body: type | None = None
    answer: Any = None
    status: int = 200


EXTRA_ROUTES: web.AppKey[tuple[Route, ...]] = web.AppKey("extra_api_routes")
"""Routes other modules add (signaling/support.py); the OpenAPI document lists them too."""


def reply(value: object, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status,
                        content_type="application/json")


def no_content() -> web.Response:
    return web.Response(status=204)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def _authenticate(request: web.Request, control: ControlPlane) -> Account:
    token = bearer(request)
    account = None if token is None else await control.store.api_session_account(
        hash_secret_token(token), control.clock())
    if account is None:
        raise ApiError(401, "unauthorized", "log in first (POST /api/login) and send "
                                            "'Authorization: Bearer TOKEN'",
                       headers={"WWW-Authenticate": "Bearer"})
    return account


def _decode(kind: type, raw: bytes) -> object:
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise ApiError(400, "bad-request", text, _field(text)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad-request", f"the body is not valid JSON: {exc}", "body") from None


def _field(text: str) -> str:
    """The field a msgspec message names: ``... - at `$.capacity``` or ``missing required
    field `name```."""
    at = re.search(r"- at `\$\.?(.*)`$", text)
    path = at.group(1) if at else ""
    for pattern in (r"missing required field `([^`]+)`", r"unknown field `([^`]+)`"):
        if missing := re.search(pattern, text):
            path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    return path or "body"


def _error(exc: ApiError) -> web.Response:
    response = reply(ErrorOut(error=exc.error, message=exc.message, field=exc.field,
                              node_address=exc.node_address), exc.status)
    response.headers.update(exc.headers or {})
    return response


def make_handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        control = request.app[CONTROL]
        account: Account | None = None
        body: Any = None
        status = 500
        try:
            try:
                if route.access != "public":
                    account = await _authenticate(request, control)
                    if route.access == "operator" and account.role != "operator":
                        raise forbidden("operators only")
                    if route.access == "host" and account.role not in ("operator", "host"):
                        raise forbidden("hosts and operators only")
                    if route.access == "support" and account.role not in ("operator", "support"):
                        raise forbidden("support staff and operators only")
                body = None if route.body is None else _decode(route.body,
                                                               await request.read())
                response = await route.handler(Call(request, control, account, body))
            except ApiError as exc:
                response = _error(exc)
            except NotFound as exc:
                response = _error(ApiError(404, "not-found", str(exc)))
            except Conflict as exc:
                response = _error(ApiError(409, "conflict", str(exc)))
            except JoinRefused as exc:  # admitting a guest from the lobby into a full room
                response = _error(ApiError(409, exc.code, exc.message))
            status = response.status
            return response
        finally:  # the audit trail (issue 13): who did what, from where, how it ended
            audit_call(control, route.method, route.handler.__name__, request, account, body,
                       status)
    return handle
