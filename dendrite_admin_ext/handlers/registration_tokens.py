"""Registration tokens: Synapse's ``/_synapse/admin/v1/registration_tokens`` and
Dendrite's ``/_dendrite/admin/registrationTokens`` (one store, Synapse's rules: SPEC 12),
and the spec's unauthenticated validity check."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import messages
from ..audit import AUDIT_TARGET_KEY
from ..context import get_context
from ..errors import MissingParam
from ..responses import json_response
from ..services import registration_tokens as tokens

__all__ = ["LIST_QUERY", "VALIDITY_QUERY", "create", "delete", "get", "list_all",
           "update", "validity"]

LIST_QUERY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("valid", {"type": "string", "enum": ["true", "false"],
               "description": "true: only tokens that can still be used; false: only "
                              "used-up or expired ones; absent: all"}),
)
VALIDITY_QUERY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("token", {"type": "string", "description": "The registration token to check "
                                                "(required)"}),
)


async def list_all(request: web.Request) -> web.Response:
    ctx = get_context(request)
    valid = tokens.parse_valid_filter(request.query.get("valid"))
    found = await tokens.list_tokens(ctx, valid)
    return json_response({"registration_tokens": [tokens.token_to_json(t) for t in found]})


async def get(request: web.Request) -> web.Response:
    ctx = get_context(request)
    found = await tokens.get_token(ctx, request.match_info["token"])
    return json_response(tokens.token_to_json(found))


async def create(request: web.Request) -> web.Response:
    ctx = get_context(request)
    body = await ctx.read_body(request)
    created = await tokens.create_token(ctx, body)
    request[AUDIT_TARGET_KEY] = created.token  # also when generated
    return json_response(tokens.token_to_json(created))


async def update(request: web.Request) -> web.Response:
    ctx = get_context(request)
    body = await ctx.read_body(request)
    updated = await tokens.update_token(ctx, request.match_info["token"], body)
    return json_response(tokens.token_to_json(updated))


async def delete(request: web.Request) -> web.Response:
    ctx = get_context(request)
    await tokens.delete_token(ctx, request.match_info["token"])
    return json_response({})


async def validity(request: web.Request) -> web.Response:
    """``GET /_matrix/client/v1/register/m.login.registration_token/validity?token=``
    (Matrix spec since v1.2): no auth, rate limited, ``{"valid": bool}`` (false for an
    unknown token)."""
    ctx = get_context(request)
    token = request.query.get("token")
    if token is None:
        raise MissingParam(messages.missing_query_param("token"))
    return json_response({"valid": await tokens.registration_token_is_valid(ctx, token)})
