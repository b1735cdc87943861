"""Dendrite's own admin API over HTTP: how room changes are made beside Dendrite.

Beside Dendrite (``database.shared_with: dendrite``) rooms live in Dendrite's
roomserver, which only Dendrite can change (signed events, federation, sync), so
evacuations and server notices are Dendrite's own endpoints called with an admin
access token of Dendrite's (``homeserver.url``, ``homeserver.access_token_path``;
SPEC 8).  One client, typed methods per endpoint, and every timeout and error mapping
in one place (:meth:`DendriteClient._call`), so that callers see this API's Matrix
errors whatever Dendrite answered:

* unreachable, timed out, or a 5xx: 503 ``M_UNKNOWN`` with ``Retry-After`` (the
  operation may be retried; Dendrite's evacuations and notices are safe to repeat) —
  except purgeRoom's 500 ``{"message": "room … does not exist"}``, which is 404
  ``M_NOT_FOUND``;
* 401/403 (the configured token is not an admin's): 500 ``M_UNKNOWN`` — a
  misconfiguration, logged once per call with what to fix, never the token;
* other 4xx: the same status, with Dendrite's ``errcode`` when it sent one, otherwise
  (``util.MessageResponse`` answers ``{"message"}`` only) ``M_NOT_FOUND`` for 404 and
  ``M_INVALID_PARAM`` for the rest, with Dendrite's message.

Facts on Dendrite's endpoints and their quirks: research/admin-apis.md §A.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from . import messages
from .errors import InternalError, InvalidParam, MatrixError, NotFound, ServiceUnavailable
from .identifiers import UserID

__all__ = ["DendriteClient", "RemoteMatrixError", "notice_txn_id", "remote_error"]

log = logging.getLogger(__name__)

_ERRCODE = re.compile(r"M_[A-Z_]{1,60}")
# Seconds a client is told to wait before retrying when Dendrite is unavailable.
RETRY_AFTER_S = 5


class RemoteMatrixError(MatrixError):
    """A Matrix error Dendrite answered with, passed on with its status and errcode
    (one subclass per errcode, so that the audit trail and logs see the errcode as for
    any other error: :func:`remote_error`)."""


@functools.lru_cache(maxsize=64)
def _remote_class(errcode: str) -> type[MatrixError]:
    return type("RemoteMatrixError", (RemoteMatrixError,), {"errcode": errcode})


def remote_error(status: int, errcode: str, message: str) -> MatrixError:
    """Dendrite's error as this API's: its errcode when it is a well-formed one."""
    if not _ERRCODE.fullmatch(errcode):
        errcode = "M_UNKNOWN"
    return _remote_class(errcode)(message, status=status)


class DendriteClient:
    """Dendrite's admin endpoints.  :meth:`start` and :meth:`close` bracket its use
    (the admin app's lifecycle does both); calls in between share one connection pool.

    ``base_url`` is Dendrite's client-server API as this host reaches it (e.g.
    ``http://127.0.0.1:8008``); ``timeout`` bounds each call in seconds."""

    def __init__(self, base_url: str, access_token: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = access_token
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the token
        return f"DendriteClient({self.base_url!r})"

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Authorization": f"Bearer {self._token}"})

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- Dendrite's endpoints ------------------------------------------------------------
    async def evacuate_room(self, room_id: str) -> list[str]:
        """``POST /_dendrite/admin/evacuateRoom/{roomID}``: part every local joined
        member; their user IDs.  Unknown room: 404 ``M_NOT_FOUND``."""
        body = await self._call("POST", f"/_dendrite/admin/evacuateRoom/{_seg(room_id)}")
        return _id_list(body)

    async def evacuate_user(self, user: UserID) -> list[str]:
        """``POST /_dendrite/admin/evacuateUser/{userID}``: part a local user from every
        room and reject their invites; the room IDs."""
        body = await self._call("POST", f"/_dendrite/admin/evacuateUser/{_seg(str(user))}")
        return _id_list(body)

    async def purge_room(self, room_id: str) -> None:
        """``POST /_dendrite/admin/purgeRoom/{roomID}``: delete a room from Dendrite's
        database (it does not evacuate first).  Unknown room: 404 ``M_NOT_FOUND``
        (Dendrite answers 500 ``{"message": "room … does not exist"}``)."""
        await self._call("POST", f"/_dendrite/admin/purgeRoom/{_seg(room_id)}",
                         not_found_500=True)

    async def send_server_notice(self, body: Mapping[str, Any], *,
                                 txn_id: str | None = None) -> str:
        """``POST /_synapse/admin/v1/send_server_notice`` (or ``PUT …/{txnId}``, which
        Dendrite makes idempotent per access token and transaction ID); the event ID."""
        if txn_id is None:
            out = await self._call("POST", "/_synapse/admin/v1/send_server_notice", body)
        else:
            out = await self._call("PUT", "/_synapse/admin/v1/send_server_notice/"
                                   + _seg(txn_id), body)
        event_id = out.get("event_id")
        if not isinstance(event_id, str):
            raise _unexpected("send_server_notice", "no event_id")
        return event_id

    # -- one place for HTTP, timeouts and errors -----------------------------------------
    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                    *, not_found_500: bool = False) -> dict[str, Any]:
        if self._session is None:
            await self.start()
        assert self._session is not None
        what = path.split("/")[3] if path.count("/") >= 3 else path
        try:
            async with self._session.request(
                    method, self.base_url + path,
                    json=dict(body) if body is not None else {}) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("homeserver call %s failed: %s", what, type(exc).__name__)
            raise ServiceUnavailable(messages.HOMESERVER_UNREACHABLE, RETRY_AFTER_S) from None
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = None
        data: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        if 200 <= status < 300:
            if parsed is None or not isinstance(parsed, dict):
                raise _unexpected(what, f"a {status} answer that is not a JSON object")
            return data
        raise _map_error(what, status, data, not_found_500)


def _seg(value: str) -> str:
    """One path segment, percent-encoded (room IDs carry '!' and ':', user IDs '@')."""
    return quote(value, safe="")


def _id_list(body: Mapping[str, Any]) -> list[str]:
    affected = body.get("affected")
    if affected is None:
        return []  # Go marshals an empty slice that was never made as null
    if not isinstance(affected, list) or not all(isinstance(a, str) for a in affected):
        raise _unexpected("evacuate", "'affected' is not a list of IDs")
    return list(affected)


def _unexpected(what: str, detail: str) -> ServiceUnavailable:
    log.error("homeserver call %s: unexpected answer (%s)", what, detail)
    return ServiceUnavailable(messages.HOMESERVER_UNEXPECTED, RETRY_AFTER_S)


def _map_error(what: str, status: int, data: Mapping[str, Any],
               not_found_500: bool) -> MatrixError:
    errcode = data.get("errcode")
    message = data.get("error") or data.get("message")
    text = message if isinstance(message, str) and message else f"HTTP {status}"
    if status in (401, 403):
        log.error("the homeserver refused this API's admin token on %s (%d %s): check "
                  "homeserver.access_token_path names a current access token of an admin "
                  "account", what, status, errcode or "")
        return InternalError()
    if status >= 500:
        if not_found_500 and "does not exist" in text:
            return NotFound(text)
        log.warning("homeserver call %s answered %d: %s", what, status, text)
        return ServiceUnavailable(messages.HOMESERVER_FAILED, RETRY_AFTER_S)
    if isinstance(errcode, str):
        return remote_error(status, errcode, text)
    if status == 404:
        return NotFound(text)
    return InvalidParam(text, status=status)


def notice_txn_id(user: UserID, device_id: str, txn_id: str) -> str:
    """The transaction ID under which a requester's PUT is passed on.  Dendrite keys
    transactions by access token, and every request reaches it with this API's one
    token: the requester and device go into the ID so two admins' txnIds never
    collide."""
    digest = hashlib.sha256(f"{user}\x00{device_id}\x00{txn_id}".encode()).hexdigest()
    return "dendrite_admin_ext." + digest[:40]
