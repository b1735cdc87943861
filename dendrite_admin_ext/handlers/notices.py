"""send_server_notice: POST, and PUT with a transaction id (idempotent)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import messages
from ..auth import get_requester
from ..context import get_context
from ..errors import InvalidParam
from ..responses import json_response
from ..services import homeserver
from ..services.notices import Notice, parse_notice, send_server_notice, send_server_notice_once
from ..storage.types import NoticeTxnKey

__all__ = ["send_notice", "send_notice_txn"]

MAX_TXN_ID_LENGTH = 255


async def _read_notice(request: web.Request) -> tuple[Notice, dict[str, Any]]:
    ctx = get_context(request)
    body = await ctx.read_body(request)
    return parse_notice(body, ctx.config.server_name), body


async def send_notice(request: web.Request) -> web.Response:
    ctx = get_context(request)
    notice, body = await _read_notice(request)
    if ctx.homeserver is not None:  # beside Dendrite: Dendrite's rooms (SPEC 8)
        event_id = await homeserver.send_server_notice(ctx, notice, body)
    else:
        event_id = await send_server_notice(ctx, notice)
    return json_response({"event_id": event_id})


async def send_notice_txn(request: web.Request) -> web.Response:
    requester = get_requester(request)
    txn_id = request.match_info["txn_id"]
    if len(txn_id) > MAX_TXN_ID_LENGTH:
        raise InvalidParam(messages.txn_id_too_long(MAX_TXN_ID_LENGTH))
    ctx = get_context(request)
    notice, body = await _read_notice(request)
    key = NoticeTxnKey(requester.user, requester.device_id, txn_id)
    if ctx.homeserver is not None:
        event_id = await homeserver.send_server_notice(ctx, notice, body, key)
    else:
        event_id = await send_server_notice_once(ctx, notice, key)
    return json_response({"event_id": event_id})
