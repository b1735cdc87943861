"""The OpenAPI 3.1 document, built at start-up from the route table and the request
body JSON Schema files themselves (embedded under ``components.schemas``, not copied
by hand), so it cannot drift from what is mounted and validated.

Only the routes enabled by the configuration appear.  Served to admins at
``GET /_dendrite/admin/openapi.json``; ``dendrite-admin-ext openapi`` prints it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .auth import Access

if TYPE_CHECKING:
    from .config import Config
    from .routes import RouteSpec
    from .validation import Schemas

__all__ = ["OPENAPI_KEY", "build_openapi", "openapi_path"]

OPENAPI_KEY = web.AppKey("dendrite_admin_ext.openapi", dict[str, Any])

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^{}]*(?:\{[^{}]*\}[^{}]*)*)?\}")

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["errcode", "error"],
    "properties": {
        "errcode": {"type": "string", "pattern": "^M_[A-Z_]+$"},
        "error": {"type": "string"},
        "retry_after_ms": {"type": "integer"},
        "soft_logout": {"type": "boolean"},
    },
}

_ERRORS = {
    "400": "Malformed request: M_NOT_JSON, M_BAD_JSON, M_MISSING_PARAM, M_INVALID_PARAM …",
    "401": ("Missing (M_MISSING_TOKEN) or unknown (M_UNKNOWN_TOKEN) access token, or a "
            "locked account (M_USER_LOCKED, soft_logout: true)"),
    "403": "Not allowed: M_FORBIDDEN, M_GUEST_ACCESS_FORBIDDEN",
    "404": "M_NOT_FOUND, or M_UNRECOGNIZED for a disabled feature",
    "413": "Request body over http.max_body_size: M_TOO_LARGE",
    "429": "Rate limited: M_LIMIT_EXCEEDED with Retry-After and retry_after_ms",
    "503": "Storage unavailable: M_UNKNOWN with Retry-After",
    "504": "Over http.request_timeout: M_UNKNOWN (the work may still complete)",
}


def openapi_path(aiohttp_path: str) -> tuple[str, list[str]]:
    """``/whois/{user_id:.+}`` → (``/whois/{user_id}``, ``["user_id"]``)."""
    names: list[str] = []

    def plain(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return "{" + match.group(1) + "}"

    return _PARAM.sub(plain, aiohttp_path), names


def _operation_id(spec: RouteSpec) -> str:
    path, _ = openapi_path(spec.full_path)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return f"{spec.method.lower()}_{slug}"


def _error(code: str) -> dict[str, Any]:
    return {"description": _ERRORS[code], "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/MatrixError"}}}}


def _operation(spec: RouteSpec, query_token: bool) -> dict[str, Any]:
    _, names = openapi_path(spec.full_path)
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"},
         "description": "Percent-encode reserved characters (@ : / !)."}
        for n in names
    ]
    params += [{"name": name, "in": "query", "required": False, "schema": dict(schema)}
               for name, schema in spec.query]
    op: dict[str, Any] = {
        "operationId": _operation_id(spec),
        "summary": spec.summary,
        "tags": [spec.feature],
        "x-access": spec.access.value,
        "responses": {
            "200": {"description": "Success", "content": {"application/json": {
                "schema": {"type": "object"}}}},
            "400": _error("400"),
            "503": _error("503"),
            "504": _error("504"),
        },
    }
    if params:
        op["parameters"] = params
    if spec.access is Access.PUBLIC:
        op["security"] = []
    else:
        op["security"] = [{"accessToken": []}] + ([{"accessTokenQuery": []}]
                                                  if query_token else [])
        op["responses"]["401"] = _error("401")
        op["responses"]["403"] = _error("403")
    if names or spec.access is not Access.PUBLIC:
        op["responses"]["404"] = _error("404")
    if spec.body_schema is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{spec.body_schema}"}}}}
        op["responses"]["413"] = _error("413")
    if spec.rate_limited:
        op["responses"]["429"] = _error("429")
    if spec.audit is not None:
        op["x-audit-action"] = spec.audit.action
        if spec.audit.when_false is not None:
            # e.g. {"locked": false} is recorded as "unlock".
            op["x-audit-action-when-false"] = dict([spec.audit.when_false])
    return op


def build_openapi(config: Config, routes: Iterable[RouteSpec], schemas: Schemas
                  ) -> dict[str, Any]:
    """The document of the API ``config`` serves (``routes``: its enabled routes)."""
    from . import __version__  # here: the package __init__ imports this module

    query_token = config.http.access_token_query_param
    paths: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for spec in routes:
        path, _ = openapi_path(spec.full_path)
        item = paths.setdefault(path, {})
        method = spec.method.lower()
        if method in item:
            raise RuntimeError(f"two routes for {spec.method} {path}")
        item[method] = _operation(spec, query_token)
        if spec.body_schema is not None:
            used.add(spec.body_schema)
    components: dict[str, Any] = {"MatrixError": _ERROR_SCHEMA}
    documents: Mapping[str, Mapping[str, Any]] = schemas.documents
    for name in sorted(used):
        # The schema file itself (with its $id, so $refs between files still resolve).
        components[name] = copy.deepcopy(dict(documents[name]))
    security: dict[str, Any] = {"accessToken": {"type": "http", "scheme": "bearer"}}
    if query_token:
        security["accessTokenQuery"] = {"type": "apiKey", "in": "query",
                                        "name": "access_token"}
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "dendrite_admin_ext: Dendrite's admin API",
            "version": __version__,
            "description": "Every error body is {\"errcode\": \"M_…\", \"error\": \"…\"}. "
                           "x-access says who may call an operation; x-audit-action "
                           "names its entry in the audit log.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": components, "securitySchemes": security},
    }
