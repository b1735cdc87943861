"""Request ids, structured logs and the access log.

Every admin request gets an id: the incoming ``X-Request-ID`` when it looks like one
(nginx's ``$request_id``, a UUID, …), else a fresh one.  It is echoed in the response's
``X-Request-ID`` header, recorded in the audit trail, and put on every log line written
while the request runs (a context variable read by :class:`RequestIdFilter`, so lines
from storage, services and tasks started by the request carry it too).

The access log line names the path without its query string: the deprecated
``access_token`` query parameter must never reach a log.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .addresses import client_ip
from .auth import REQUESTER_KEY
from .config import LoggingConfig

__all__ = [
    "ACCESS_LOGGER",
    "AUDIT_LOGGER",
    "REQUEST_ID_KEY",
    "JsonFormatter",
    "RequestIdFilter",
    "configure_logging",
    "warn_if_logs_unseen",
    "current_request_id",
    "get_request_id",
    "bind_request_id",
    "choose_request_id",
    "log_access",
    "unbind_request_id",
]

ACCESS_LOGGER = "dendrite_admin_ext.access"
access_log = logging.getLogger(ACCESS_LOGGER)

REQUEST_ID_KEY = web.RequestKey("dendrite_admin_ext.request_id", str)
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dendrite_admin_ext_request_id", default=None)

# Long enough for a UUID or a trace id, short and plain enough to be harmless in a log.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{8,128}")


def current_request_id() -> str | None:
    return _request_id.get()


def get_request_id(request: web.Request) -> str:
    return request.get(REQUEST_ID_KEY) or ""


# Generated ids need to be unique, not secret: a random per-process prefix and a counter
# cost nothing per request (no system call).
_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)


def choose_request_id(incoming: str | None) -> str:
    """Keep a sane incoming ``X-Request-ID`` (e.g. nginx's ``$request_id``), otherwise
    make one."""
    if incoming is not None and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return f"{_ID_PREFIX}{next(_id_counter):016x}"  # 32 hex digits, like a UUID


def bind_request_id(request: web.Request, request_id: str) -> contextvars.Token[str | None]:
    request[REQUEST_ID_KEY] = request_id
    return _request_id.set(request_id)


def unbind_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def log_access(request: web.Request, level: int, status: int, start: float,
               record_ip: bool) -> None:
    """One access line per admin request (the path, never the query string)."""
    requester = request.get(REQUESTER_KEY)
    fields: dict[str, Any] = {
        "method": request.method,
        "path": request.path,  # never the query string: it may hold a token
        "status": status,
        "duration_ms": round((time.perf_counter() - start) * 1000, 1),
        "requester": requester.user_id if requester is not None else None,
    }
    if record_ip:
        fields["remote"] = client_ip(request)
    access_log.log(level, "%s %s %d %.1fms requester=%s", fields["method"],
                   fields["path"], status, fields["duration_ms"],
                   fields["requester"] or "-", extra={"fields": fields})


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``-`` outside a request).  Attach it to the host's
    handlers to get request ids on their lines too when embedding."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        return True


_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, plus any
    structured ``fields`` the caller passed in ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id.get(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            out.update((k, v) for k, v in fields.items() if k not in out)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


AUDIT_LOGGER = "dendrite_admin_ext.audit"
_log = logging.getLogger(__name__)


def warn_if_logs_unseen() -> bool:
    """At start-up: when no handler would take the access and audit lines (a host that
    configured no logging: Python then shows WARNING and above only), say so once, at
    WARNING, naming the loggers to configure.  Returns True if it warned."""
    unseen = [name for name in (ACCESS_LOGGER, AUDIT_LOGGER)
              if not logging.getLogger(name).hasHandlers()]
    if not unseen:
        return False
    _log.warning("no logging handler takes %s: their INFO lines (one per admin request, "
                 "one per audited action) are discarded; configure logging in the host, "
                 "e.g. logging.basicConfig(level=logging.INFO)", " and ".join(unseen))
    return True


def configure_logging(config: LoggingConfig) -> None:
    """Logging for the standalone server (a host embedding the API keeps its own)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if config.format == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter(_TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level)
