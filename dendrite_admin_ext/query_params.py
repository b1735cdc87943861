"""Query-string parameters, read one way on every endpoint.

A malformed value is 400 ``M_INVALID_PARAM`` naming the parameter (texts in
:mod:`.messages`), never a 500: an integer is at most 19 digits before it is converted
(Python refuses to convert very long digit strings at all), a boolean is ``true`` or
``false`` as Synapse reads them.
"""

from __future__ import annotations

from typing import overload

from aiohttp import web

from . import messages
from .errors import InvalidParam

__all__ = ["bool_param", "int_param"]

_MAX_DIGITS = 19  # 2**63 - 1, the largest id a database column holds


@overload
def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int: ...
@overload
def int_param(request: web.Request, name: str, default: None, low: int,
              high: int) -> int | None: ...
def int_param(request: web.Request, name: str, default: int | None, low: int,
              high: int) -> int | None:
    """The decimal integer ``name`` from ``low`` to ``high``; ``default`` when absent."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_DIGITS \
            or not low <= int(raw) <= high:
        raise InvalidParam(messages.integer_out_of_range(name, low, high))
    return int(raw)


@overload
def bool_param(request: web.Request, name: str, default: bool) -> bool: ...
@overload
def bool_param(request: web.Request, name: str, default: None) -> bool | None: ...
def bool_param(request: web.Request, name: str, default: bool | None) -> bool | None:
    """``true`` or ``false``; ``default`` when absent."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise InvalidParam(messages.not_a_boolean_param(name))
    return raw == "true"
