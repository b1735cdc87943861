"""Enforcing account locking and suspension on the host's own client routes (SPEC 10).

The admin API refuses locked accounts on its own routes; the rest of the client API is
the host's.  This module gives the host one piece to enforce both there, as the Matrix
spec lists them:

* **Locked** ("Account locking", v1.12): every client API answers 401
  ``M_USER_LOCKED`` with ``"soft_logout": true`` except ``POST /logout`` and
  ``POST /logout/all`` (and ``GET /versions``).  Tokens are kept, so unlocking lets the
  client back in.  ``/login`` has no token to go by: call :func:`check_login_allowed`
  once the host knows who is logging in.
* **Suspended** ("Account suspension", v1.13, MSC3823): the actions of
  :data:`SUSPENDED_RULES` marked forbidden answer 403 ``M_USER_SUSPENDED``: joining or
  knocking (accepting invites too), inviting, sending messages and state, creating or
  upgrading rooms, kicking and banning, changing the profile.  Everything else is
  allowed: ``/sync``, ``/messages``, leaving and rejecting invites, redactions,
  logout and device deletion, keys and key backup, deactivation.  The spec allows
  redacting one's *own* events only; the path does not tell whose event it is, so a
  host that wants to refuse redacting other users' events checks that itself (see
  :func:`check_redaction_allowed`).

Two ways in:

* :func:`moderation_middleware` (aiohttp): resolves the access token with the host's
  :class:`~.storage.protocols.TokenStore` (``TokenOwner.locked``/``suspended``, one
  read) and refuses what the rules say.  Requests without a token, or with one the
  storage does not know, pass through untouched: the host's own auth answers those.
* :func:`check_moderation` for hosts with their own middleware that already know the
  account's :class:`~.storage.types.AccountState`: it raises :class:`~.errors.UserLocked`
  or :class:`~.errors.UserSuspended` (``.response()`` renders either).

And :func:`account_moderation_capabilities` is the ``m.account_moderation`` capability
object (Matrix v1.18) for the host's ``GET /capabilities``;
:func:`moderation_unstable_features` the flag for its ``GET /versions``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .auth import extract_access_token
from .config import Config
from .errors import MatrixError, UserLocked, UserSuspended
from .features import FEATURES
from .storage.protocols import TokenStore
from .storage.types import AccountState

__all__ = [
    "LOCKED_ALLOWED",
    "SUSPENDED_RULES",
    "Rule",
    "account_moderation_capabilities",
    "check_login_allowed",
    "check_moderation",
    "check_redaction_allowed",
    "moderation_middleware",
    "moderation_unstable_features",
]

# A client API path up to its version: /_matrix/client/v3, /r0, /v1, /unstable, or
# an unstable namespace such as /unstable/org.matrix.msc3575.
CLIENT = r"/_matrix/client/(?:r0|v\d+|unstable(?:/[^/]+\.[^/]+)?)"
# What the rules apply to: the client API and the media API.
_MODERATED = re.compile(r"/_matrix/(?:client|media)/")
# The admin API's own paths: it enforces locking itself (and suspension does not
# restrict an admin's admin API), so the middleware does not read the token twice.
_ADMIN = re.compile(CLIENT + r"/admin/")


@dataclass(frozen=True)
class Rule:
    """One line of a rule table: requests with one of ``methods`` whose whole path
    matches ``pattern`` (``{client}`` stands for :data:`CLIENT`) are ``allowed`` or
    not.  The first matching rule decides."""

    methods: frozenset[str]
    pattern: str
    allowed: bool
    why: str
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern.replace("{client}", CLIENT)))

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and self.regex.fullmatch(path) is not None


def _rule(methods: str, pattern: str, allowed: bool, why: str) -> Rule:
    return Rule(frozenset(methods.split()), pattern, allowed, why)


_R = r"[^/]+"  # one path segment

# Matrix spec "Account locking": everything else is refused.
LOCKED_ALLOWED: tuple[Rule, ...] = (
    _rule("POST", "{client}/logout", True, "log out this session"),
    _rule("POST", "{client}/logout/all", True, "log out every session"),
    _rule("GET", "/_matrix/client/versions", True, "no authentication needed"),
)

# Matrix spec "Account suspension" (MSC3823): the first matching rule decides; a request
# no rule matches is allowed (the spec lists what to forbid, and /sync, /messages, keys,
# key backup, devices, account data … must keep working).
SUSPENDED_RULES: tuple[Rule, ...] = (
    # Allowed explicitly, before the broader refusals below.
    _rule("PUT", rf"{{client}}/rooms/{_R}/send/m\.room\.redaction/{_R}", True,
          "redact own events (the host checks whose event it is)"),
    _rule("PUT POST", rf"{{client}}/rooms/{_R}/redact/{_R}(?:/{_R})?", True,
          "redact own events (the host checks whose event it is)"),
    _rule("POST", rf"{{client}}/rooms/{_R}/leave", True, "leave rooms, reject invites"),
    _rule("POST", rf"{{client}}/rooms/{_R}/forget", True, "forget rooms left"),
    # Forbidden.
    _rule("POST", rf"{{client}}/join/{_R}", False, "join rooms, accept invites"),
    _rule("POST", rf"{{client}}/rooms/{_R}/join", False, "join rooms, accept invites"),
    _rule("POST", rf"{{client}}/knock/{_R}", False, "knock on rooms"),
    _rule("POST", rf"{{client}}/rooms/{_R}/invite", False, "send invites"),
    _rule("PUT", rf"{{client}}/rooms/{_R}/send/{_R}/{_R}", False, "send messages"),
    _rule("PUT", rf"{{client}}/rooms/{_R}/state/{_R}(?:/.*)?", False,
          "send state events"),
    _rule("POST", rf"{{client}}/rooms/{_R}/(?:kick|ban|unban)", False,
          "act on other members"),
    _rule("POST", r"{client}/createRoom", False, "create rooms (a join and messages)"),
    _rule("POST", rf"{{client}}/rooms/{_R}/upgrade", False, "upgrade rooms"),
    _rule("PUT DELETE", rf"{{client}}/profile/{_R}/{_R}", False,
          "change the profile (display name, avatar, other fields)"),
)


def _first(rules: Sequence[Rule], method: str, path: str) -> Rule | None:
    for rule in rules:
        if rule.matches(method, path):
            return rule
    return None


def check_moderation(method: str, path: str, state: AccountState) -> None:
    """Refuse ``method path`` for an account in ``state`` (in aiohttp, pass
    ``request.rel_url.path_safe``: the path the router matches on, percent-decoded except
    for an encoded ``/``; a host with another router passes the path it routes on):
    raise :class:`~.errors.UserLocked` (401, soft logout) or
    :class:`~.errors.UserSuspended` (403) as the Matrix spec lists; return if allowed.
    Paths outside ``/_matrix/client/`` and ``/_matrix/media/`` are never refused."""
    if not (state.locked or state.suspended) or _MODERATED.match(path) is None:
        return
    if state.locked and _first(LOCKED_ALLOWED, method, path) is None:
        raise UserLocked()
    if state.suspended:
        rule = _first(SUSPENDED_RULES, method, path)
        if rule is not None and not rule.allowed:
            raise UserSuspended()


def check_login_allowed(state: AccountState) -> None:
    """For the host's ``POST /login`` once it knows the account: a locked account cannot
    obtain a new token (401 ``M_USER_LOCKED``, soft logout); a suspended one may log in
    (its new session is suspended too)."""
    if state.locked:
        raise UserLocked()


def check_redaction_allowed(state: AccountState, *, own_event: bool) -> None:
    """For the host's redaction handler: a suspended account may redact its own events
    only (MSC3823); 403 ``M_USER_SUSPENDED`` otherwise."""
    if state.suspended and not own_event:
        raise UserSuspended()


def moderation_middleware(storage: TokenStore, *,
                          allow_query_token: bool = True) -> Middleware:
    """An aiohttp middleware enforcing :func:`check_moderation` on the host's client
    and media routes.  ``storage`` resolves access tokens (the same storage handed to
    ``setup_admin``); ``allow_query_token`` as the host's own auth (the deprecated
    ``?access_token=``).  The admin API's paths are left to the admin API.

    Usage::

        app = web.Application(middlewares=[moderation_middleware(storage)])
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # What aiohttp's router matches on (decoded, but an encoded '/' stays "%2F"),
        # so no spelling of a path reaches a handler without meeting its rule.
        path = request.rel_url.path_safe
        if _MODERATED.match(path) is None or _ADMIN.match(path) is not None:
            return await handler(request)
        try:
            token = extract_access_token(request, allow_query_token)
        except MatrixError:
            return await handler(request)  # no usable token: the host's auth answers
        owner = await storage.get_token_owner(token)
        if owner is None or owner.is_deactivated or not (owner.locked or owner.suspended):
            return await handler(request)
        try:
            check_moderation(request.method, path,
                             AccountState(locked=owner.locked, suspended=owner.suspended))
        except MatrixError as refused:
            return refused.response()
        return await handler(request)

    return middleware


def account_moderation_capabilities(config: Config, *, is_admin: bool) -> dict[str, Any]:
    """The capabilities to merge into the host's ``GET /capabilities`` answer:
    ``m.account_moderation`` (Matrix v1.18) and its unstable name
    ``uk.timedout.msc4323``, each ``{"suspend": true, "lock": true}``.  Empty when the
    requester is not a server admin (MSC4323: advertise them only to those who may use
    them) or when the endpoints are not mounted (``endpoints.moderation`` off, or a
    database shared with Dendrite): the spec omits the object when both would be
    false."""
    if not is_admin or not FEATURES["moderation"].enabled(config):
        return {}
    return {"m.account_moderation": {"suspend": True, "lock": True},
            "uk.timedout.msc4323": {"suspend": True, "lock": True}}


def moderation_unstable_features(config: Config) -> dict[str, bool]:
    """What to merge into ``unstable_features`` of the host's ``GET /versions``:
    ``{"uk.timedout.msc4323": true}`` while the endpoints are mounted (MSC4323's
    unstable prefix), for clients that predate Matrix v1.18; else empty."""
    if not FEATURES["moderation"].enabled(config):
        return {}
    return {"uk.timedout.msc4323": True}
