"""A stand-in for Dendrite's admin API, as research/admin-apis.md §A documents it
(Dendrite 0.15), quirks included, for the tests of room changes beside Dendrite:

* ``MakeAdminAPI``: no or unknown token 401 ``M_UNKNOWN_TOKEN``; a non-admin's 403
  ``M_FORBIDDEN`` "This API can only be used by admin users.";
* evacuateRoom / evacuateUser are POST only (since 0.13); an empty result is Go's nil
  slice, ``{"affected": null}``; an unknown room is 404 ``M_NOT_FOUND``; a failure is
  ``util.ErrorResponse``: 500 ``{"message"}`` without errcode; a remote user is 400
  ``{"message": "can only evacuate local users using this endpoint"}``
  (``util.MessageResponse``, no errcode);
* purgeRoom answers 500 ``{"message": "room … does not exist"}`` for an unknown room and
  500 ``{"message"}`` for a malformed ID, ``{}`` when done;
* send_server_notice POST, and PUT with a txnId remembered per access token (in
  memory, as Dendrite's transactions cache: :meth:`DendriteStandIn.restart` forgets
  them).

``hold_after`` holds notices beyond that many until ``release`` is set, to kill a
worker in the middle of a page; held notices then fail (``fail_held``) as if Dendrite
had died with them.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["ADMIN_TOKEN", "USER_TOKEN", "DendriteStandIn"]

ADMIN_TOKEN = "syt_standin_admin"
USER_TOKEN = "syt_standin_user"


def _message(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _matrix(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


@dataclass
class DendriteStandIn:
    server_name: str
    # room ID -> local joined members
    rooms: dict[str, list[str]] = field(default_factory=dict)
    # user ID -> rooms joined or invited
    user_rooms: dict[str, list[str]] = field(default_factory=dict)
    notices: list[dict[str, Any]] = field(default_factory=list)
    txns: dict[tuple[str, str], str] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    # Rooms whose evacuation fails inside Dendrite (500 {"message"}).
    broken: set[str] = field(default_factory=set)
    delay_s: float = 0.0
    hold_after: int | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0
    fail_held: bool = False

    def restart(self) -> None:
        """Dendrite restarted: its transactions cache is empty."""
        self.txns.clear()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/_dendrite/admin/evacuateRoom/{room_id}", self.evacuate_room)
        app.router.add_post("/_dendrite/admin/evacuateUser/{user_id}", self.evacuate_user)
        app.router.add_post("/_dendrite/admin/purgeRoom/{room_id}", self.purge_room)
        app.router.add_post("/_synapse/admin/v1/send_server_notice", self.notice)
        app.router.add_put("/_synapse/admin/v1/send_server_notice/{txn_id}", self.notice)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        auth = request.headers.get("Authorization", "")
        if auth == f"Bearer {USER_TOKEN}":
            return _matrix(403, "M_FORBIDDEN", "This API can only be used by admin users.")
        if auth != f"Bearer {ADMIN_TOKEN}":
            return _matrix(401, "M_UNKNOWN_TOKEN", "Unknown token")
        response: web.StreamResponse = await handler(request)
        return response

    async def evacuate_room(self, request: web.Request) -> web.Response:
        room_id = request.match_info["room_id"]
        if room_id in self.broken:
            return _message(500, "failed to evacuate room: database is locked")
        if room_id not in self.rooms:
            return _matrix(404, "M_NOT_FOUND", "room not found")
        affected = self.rooms[room_id]
        self.rooms[room_id] = []
        return web.json_response({"affected": affected or None})

    async def evacuate_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        if not user_id.endswith(":" + self.server_name):
            return _message(400, "can only evacuate local users using this endpoint")
        affected = self.user_rooms.pop(user_id, [])
        return web.json_response({"affected": affected or None})

    async def purge_room(self, request: web.Request) -> web.Response:
        room_id = request.match_info["room_id"]
        if not room_id.startswith("!") or ":" not in room_id:
            return _message(500, f"invalid room ID {room_id!r}")
        if room_id in self.broken:
            return _message(500, "failed to purge room: database is locked")
        if room_id not in self.rooms:
            return _message(500, f"room {room_id} does not exist")
        del self.rooms[room_id]
        return web.json_response({})

    async def notice(self, request: web.Request) -> web.Response:
        body = await request.json()
        txn_id = request.match_info.get("txn_id")
        token = request.headers["Authorization"]
        if txn_id is not None and (token, txn_id) in self.txns:
            return web.json_response({"event_id": self.txns[(token, txn_id)]})
        if self.hold_after is not None and len(self.notices) >= self.hold_after:
            self.held += 1
            await self.release.wait()
            if self.fail_held:
                return _message(500, "failed to send server notice: context canceled")
        event_id = "$" + secrets.token_urlsafe(16)
        self.notices.append(body)
        if txn_id is not None:
            self.txns[(token, txn_id)] = event_id
        return web.json_response({"event_id": event_id})
