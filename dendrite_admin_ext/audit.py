"""The audit trail of state-changing admin actions.

Driven by the route table: a route whose :class:`~.routes.RouteSpec` carries an
:class:`Audited` is recorded by :class:`AuditRecorder` — successes and refusals alike
(401, 403, 4xx, 5xx), with time, requester, action, target, outcome (``ok`` or the
errcode) and request id — to the log (logger ``dendrite_admin_ext.audit``, structured)
and to storage (:meth:`~.storage.base.AdminStorage.add_audit_entry`).  Handlers need no
change.  Only the target is taken from a request: a path parameter or one named key of
the JSON body, so no secret (password, token, MAC, nonce) can reach the trail.

Requests refused by the rate limiter are not recorded (they run outside this
pipeline step), and refusals of anonymous requests (no valid token) are stored at most
``ANONYMOUS_BURST`` at once and ``ANONYMOUS_PER_SECOND`` sustained per client address:
a flood of junk would otherwise turn into a flood of writes.  Past that they are only
logged, at DEBUG.  Every request of a known requester is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .addresses import client_ip
from .auth import REQUESTER_KEY
from .context import AdminContext
from .errors import InternalError, MatrixError, StorageUnavailableError, from_http_exception
from .limits import RateLimiter
from .observability import get_request_id
from .storage.types import AuditEntry
from .validation import JSON_BODY_KEY

__all__ = ["AUDIT_TARGET_KEY", "AuditRecorder", "Audited", "entry_to_json"]

log = logging.getLogger("dendrite_admin_ext.audit")

DAY_MS = 86_400_000
PURGE_EVERY_MS = 3_600_000

_MAX_TARGET = 255
ANONYMOUS_PER_SECOND = 1.0
ANONYMOUS_BURST = 20


# The target a handler names itself, when it is neither a path parameter nor a top-level
# body key (a login's user parsed from the identifier, a token name it generated):
# preferred to the one the route's Audited would take from the request.
AUDIT_TARGET_KEY = web.RequestKey("dendrite_admin_ext.audit_target", str)


@dataclass(frozen=True)
class Audited:
    """How to audit a route: the action's name, and where its target is — a path
    parameter (``path_param``) or a top-level string of the JSON body (``body_key``), unless
    the handler named it under :data:`AUDIT_TARGET_KEY`."""

    action: str
    path_param: str | None = None
    body_key: str | None = None
    # (body key, action): the action recorded instead when that key of the JSON body
    # is false, so one route records both directions ("lock" and "unlock").
    when_false: tuple[str, str] | None = None
    # The route takes ``?dry_run=true`` (SPEC 11: a preview that changes nothing): such
    # a request is recorded as ``<action>DryRun``, never as the action itself.
    dry_run: bool = False

    def is_dry_run(self, request: web.Request) -> bool:
        return self.dry_run and request.query.get("dry_run") == "true"

    def action_for(self, request: web.Request) -> str:
        if self.is_dry_run(request):
            return self.action + "DryRun"
        if self.when_false is not None:
            body = request.get(JSON_BODY_KEY)
            if isinstance(body, Mapping) and body.get(self.when_false[0]) is False:
                return self.when_false[1]
        return self.action

    def target(self, request: web.Request) -> str | None:
        value: object = request.get(AUDIT_TARGET_KEY)
        if value is None and self.path_param is not None:
            value = request.match_info.get(self.path_param)
        elif value is None and self.body_key is not None:
            body = request.get(JSON_BODY_KEY)
            if isinstance(body, Mapping):
                value = body.get(self.body_key)
        if not isinstance(value, str):
            return None
        return value[:_MAX_TARGET]


def _outcome(exc: BaseException) -> tuple[str, int]:
    if isinstance(exc, asyncio.CancelledError):
        return "M_UNKNOWN", 499  # client gone or server stopping; the work may be done
    if isinstance(exc, MatrixError):
        return exc.errcode, exc.http_status
    if isinstance(exc, web.HTTPException):
        err = from_http_exception(exc)
        return err.errcode, err.http_status
    if isinstance(exc, StorageUnavailableError):
        return "M_UNKNOWN", 503
    return InternalError.errcode, InternalError.status


class AuditRecorder:
    """Records audited requests; :meth:`run` wraps the rest of the pipeline."""

    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx
        self.record_ip = ctx.config.http.record_client_ip
        self.anonymous = RateLimiter(ANONYMOUS_PER_SECOND, ANONYMOUS_BURST)
        days = ctx.config.audit.retention_days
        self.retention_ms = int(days * DAY_MS) if days > 0 else None
        self._next_purge = 0  # clock ms: the first stored entry purges, then hourly

    async def run(self, request: web.Request, spec: Audited,
                  call: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            response = await call()
        except BaseException as exc:
            outcome, status = _outcome(exc)
            await self.record(request, spec, outcome, status)
            raise
        await self.record(request, spec, "ok" if response.status < 400 else "M_UNKNOWN",
                          response.status)
        return response

    async def record(self, request: web.Request, spec: Audited, outcome: str,
                     status: int) -> None:
        requester = request.get(REQUESTER_KEY)
        if (requester is None and outcome != "ok"
                and self.anonymous.check(client_ip(request))):
            log.debug("audit %s outcome=%s not stored: too many anonymous refusals",
                      spec.action_for(request), outcome)
            return
        detail: dict[str, Any] = {"method": request.method, "status": status}
        if spec.is_dry_run(request):
            detail["dry_run"] = True
        if self.record_ip and request.remote:
            detail["ip"] = client_ip(request)
        entry = AuditEntry(
            ts=self.ctx.clock(),
            request_id=get_request_id(request),
            requester=requester.user_id if requester is not None else None,
            action=spec.action_for(request),
            target=spec.target(request),
            outcome=outcome,
            detail=detail,
        )
        if log.isEnabledFor(logging.INFO):  # the structured copy is built only if logged
            log.info("audit %s target=%s requester=%s outcome=%s", entry.action,
                     entry.target, entry.requester or "-", entry.outcome,
                     extra={"fields": {"audit": entry_to_json(entry)}})
        try:
            await self.ctx.storage.add_audit_entry(entry)
        except Exception:
            # The action itself is done (or refused); failing the response now would
            # tell the client it did not happen.  The log line above still has it.
            log.exception("could not store the audit entry for request %s",
                          entry.request_id)
            return
        if self.retention_ms is not None and entry.ts >= self._next_purge:
            # Housekeeping: the request that happens to trigger it does not wait for it.
            self._next_purge = entry.ts + PURGE_EVERY_MS
            self.ctx.detach(self.purge(entry.ts))

    async def purge(self, now: int) -> None:
        """Delete the entries past retention.  A worker does so with the first entry it
        stores, then at most once an hour (each run is one indexed delete); a failure
        waits for the next hour too."""
        assert self.retention_ms is not None
        try:
            purged = await self.ctx.storage.purge_audit_entries(now - self.retention_ms)
        except Exception:
            log.warning("could not purge old audit entries", exc_info=True)
            return
        if purged:
            log.info("purged %d audit entries older than %g days", purged,
                     self.ctx.config.audit.retention_days)


def entry_to_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "ts": entry.ts,
        "request_id": entry.request_id,
        "requester": entry.requester,
        "action": entry.action,
        "target": entry.target,
        "outcome": entry.outcome,
        "detail": dict(entry.detail),
    }
