"""The OpenAPI 3.1 document of the REST API, built from the route table and the msgspec types.

Generated rather than hand-written: a route added to ``signaling.api.ROUTES`` is documented by
construction, with the same schemas the server validates against.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

from signaling.api_models import ErrorOut

if TYPE_CHECKING:
    from signaling.api_http import Route

REF = "#/components/schemas/{name}"
ERRORS = {
    "400": "Invalid input; `field` names the offending field",
    "401": "No valid bearer token",
    "403": "Not allowed for this role or organisation",
    "404": "No such object",
    "409": "Conflicts with an existing object (a name taken)",
    "429": "Too many failed attempts; see Retry-After",
    "503": "Moderation is not available",
}
ACCESS_TEXT = {
    "public": "No authentication.",
    "any": "Any logged-in account.",
    "host": "Hosts (for their own organisation) and operators.",
    "operator": "Operators only.",
    "support": "Support staff and operators.",
}


def build_openapi(routes: tuple[Route, ...]) -> dict[str, Any]:
    types: list[Any] = [ErrorOut]
    for route in routes:
        types += [t for t in (route.body, route.answer) if t is not None and t is not dict]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = dict(zip(map(_key, types), schemas, strict=True))
    error = schema_of[_key(ErrorOut)]

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "description": ACCESS_TEXT[route.access],
            "tags": [_tag(route.path)],
            "responses": {str(route.status): _answer(route, schema_of)},
        }
        parameters = [
            {"name": name, "in": "path", "required": True,
             "schema": {"type": "integer"} if name == "id" else {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", route.path)
        ]
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": schema_of[_key(route.body)]}}}
        if route.access != "public":
            operation["security"] = [{"bearer": []}]
        for status, text in ERRORS.items():
            if _applies(status, route):
                operation["responses"][status] = {
                    "description": text, "content": {"application/json": {"schema": error}}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "diemcau control API",
            "version": "1",
            "description": "Accounts, rooms, invitations, schedules, endpoint devices, join "
                           "tokens and moderation. Log in with POST /api/login, then send "
                           "`Authorization: Bearer TOKEN`. Names and passwords are "
                           "case-sensitive.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _key(kind: Any) -> str:
    return repr(kind)


def _tag(path: str) -> str:
    parts = path.split("/")
    if len(parts) > 4 and parts[2] == "rooms":
        return {"participants": "moderation", "lock": "moderation", "lobby": "moderation",
                "end": "moderation", "pin": "moderation"}.get(parts[4], parts[4])
    return parts[2].removesuffix(".json")


def _answer(route: Route, schema_of: dict[str, Any]) -> dict[str, Any]:
    if route.answer is None:
        return {"description": "Done"}
    schema = {"type": "object"} if route.answer is dict else schema_of[_key(route.answer)]
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def _applies(status: str, route: Route) -> bool:
    if status == "400":
        return route.body is not None or "{id}" in route.path
    if status in ("401", "403"):
        return route.access != "public" and (status == "401" or route.access != "any"
                                             or "{" in route.path)
    if status == "404":
        return "{" in route.path
    if status == "409":
        return route.method in ("POST", "PUT", "PATCH")
    if status == "429":
        return route.path == "/api/login"
    if status == "503":
        return _tag(route.path) == "moderation"
    return False
