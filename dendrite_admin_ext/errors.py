"""The Matrix error model: one exception per errcode, rendered by one middleware.

Every failure that leaves the admin API is ``{"errcode": "M_…", "error": "…"}``.
Handlers and services raise these; :func:`error_response` turns them (and aiohttp's
own 404/405/413 exceptions, storage outages and unexpected bugs) into JSON responses
for the admin pipeline (:mod:`.pipeline`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web

from . import messages
from .responses import json_response

__all__ = [
    "BadJson",
    "Forbidden",
    "GuestAccessForbidden",
    "InternalError",
    "InvalidParam",
    "InvalidUsername",
    "LimitExceeded",
    "MatrixError",
    "MissingParam",
    "MissingToken",
    "NotFound",
    "NotJson",
    "ServiceUnavailable",
    "StorageUnavailableError",
    "TooLarge",
    "Unrecognized",
    "UnknownToken",
    "Unauthorized",
    "UserInUse",
    "UserInUseError",
    "UserDeactivated",
    "UserLocked",
    "UserSuspended",
    "WeakPassword",
    "error_response",
    "from_http_exception",
    "json_error",
]

log = logging.getLogger(__name__)


class MatrixError(Exception):
    """Base of every error the API returns; carries the HTTP status and errcode."""

    status: ClassVar[int] = 400
    errcode: ClassVar[str] = "M_UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = status if status is not None else type(self).status
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.message, **self.extra}

    def response(self) -> web.Response:
        return json_error(self.http_status, self.body(), self.headers)


class Unrecognized(MatrixError):
    status = 404
    errcode = "M_UNRECOGNIZED"


class NotFound(MatrixError):
    status = 404
    errcode = "M_NOT_FOUND"


class Forbidden(MatrixError):
    status = 403
    errcode = "M_FORBIDDEN"


class GuestAccessForbidden(MatrixError):
    status = 403
    errcode = "M_GUEST_ACCESS_FORBIDDEN"


class MissingToken(MatrixError):
    status = 401
    errcode = "M_MISSING_TOKEN"


class UnknownToken(MatrixError):
    status = 401
    errcode = "M_UNKNOWN_TOKEN"

    def __init__(self, message: str = messages.UNKNOWN_TOKEN) -> None:
        super().__init__(message, extra={"soft_logout": False})


class NotJson(MatrixError):
    errcode = "M_NOT_JSON"


class BadJson(MatrixError):
    errcode = "M_BAD_JSON"


class MissingParam(MatrixError):
    errcode = "M_MISSING_PARAM"


class InvalidParam(MatrixError):
    errcode = "M_INVALID_PARAM"


class Unauthorized(MatrixError):
    """401 without an access-token problem: a failed UIA stage (an invalid
    registration token, as Synapse answers it)."""

    status = 401
    errcode = "M_UNAUTHORIZED"


class InvalidUsername(MatrixError):
    errcode = "M_INVALID_USERNAME"


class UserInUse(MatrixError):
    errcode = "M_USER_IN_USE"


class WeakPassword(MatrixError):
    errcode = "M_WEAK_PASSWORD"


class TooLarge(MatrixError):
    status = 413
    errcode = "M_TOO_LARGE"


class LimitExceeded(MatrixError):
    status = 429
    errcode = "M_LIMIT_EXCEEDED"

    def __init__(self, retry_after_s: float) -> None:
        retry_ms = max(1, int(retry_after_s * 1000))
        super().__init__(
            "Too many requests",
            headers={"Retry-After": str(max(1, round(retry_after_s + 0.5)))},
            extra={"retry_after_ms": retry_ms},
        )


class ServiceUnavailable(MatrixError):
    status = 503
    errcode = "M_UNKNOWN"

    def __init__(self, message: str = messages.STORAGE_UNAVAILABLE,
                 retry_after_s: int = 5, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)}, extra=extra)


class InternalError(MatrixError):
    status = 500
    errcode = "M_UNKNOWN"

    def __init__(self) -> None:
        super().__init__(messages.INTERNAL_ERROR)


class UserLocked(MatrixError):
    """The account is locked (Matrix spec "Account locking"): 401 with
    ``"soft_logout": true`` on every client API but logout, so the client keeps its
    token and is let back in once an admin unlocks the account."""

    status = 401
    errcode = "M_USER_LOCKED"

    def __init__(self, message: str = messages.USER_LOCKED) -> None:
        super().__init__(message, extra={"soft_logout": True})


class UserSuspended(MatrixError):
    """The account is suspended and the action is one a suspended account may not take
    (Matrix spec "Account suspension", MSC3823): 403."""

    status = 403
    errcode = "M_USER_SUSPENDED"

    def __init__(self, message: str = messages.USER_SUSPENDED) -> None:
        super().__init__(message)


class UserDeactivated(MatrixError):
    """A login to a deactivated account with its correct password (Matrix spec, ``POST
    /login`` 403)."""

    status = 403
    errcode = "M_USER_DEACTIVATED"


class StorageUnavailableError(Exception):
    """Raised by storage backends when the database cannot be reached (→ 503)."""


class UserInUseError(Exception):
    """Raised by storage when an account with that localpart already exists."""


class StartupRefusedError(Exception):
    """The package must not start as configured (e.g. beside Dendrite, on a database
    Dendrite has not created yet).  The message is one line for the operator."""


def json_error(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response(dict(body), status=status, headers=headers)


def from_http_exception(exc: web.HTTPException) -> MatrixError:
    """The Matrix error for one of aiohttp's own HTTP errors (404, 405, 413, …)."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return Unrecognized(
            messages.method_not_allowed(exc.method),
            status=405,
            headers={"Allow": ", ".join(sorted(exc.allowed_methods))},
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return TooLarge(messages.body_too_large(None))
    if exc.status == 404:
        return Unrecognized(messages.UNRECOGNIZED)
    if exc.status == 503:
        return ServiceUnavailable()
    err = MatrixError(exc.reason or "Error", status=exc.status)
    return err


def error_response(request: web.Request, exc: Exception) -> web.Response:
    """The Matrix JSON response for a failure (anything but cancellation)."""
    if isinstance(exc, MatrixError):
        return exc.response()
    if isinstance(exc, web.HTTPException):
        return from_http_exception(exc).response()
    if isinstance(exc, StorageUnavailableError):
        log.warning("storage unavailable during %s %s: %s",
                    request.method, request.rel_url.path, type(exc).__name__)
        return ServiceUnavailable().response()
    log.error("unhandled error during %s %s", request.method, request.rel_url.path,
              exc_info=exc)
    return InternalError().response()
