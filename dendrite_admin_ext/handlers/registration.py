"""Shared-secret registration endpoints (no access token; MAC-authenticated)."""

from __future__ import annotations

from aiohttp import web

from ..context import get_context
from ..responses import json_response
from ..services.registration import issue_nonce, register_user

__all__ = ["get_nonce", "post_register"]


async def get_nonce(request: web.Request) -> web.Response:
    return json_response({"nonce": await issue_nonce(get_context(request))})


async def post_register(request: web.Request) -> web.Response:
    ctx = get_context(request)
    body = await ctx.read_body(request)
    result = await register_user(ctx, body, client_ip=request.remote,
                                 user_agent=request.headers.get("User-Agent"))
    return json_response(result.to_json())
