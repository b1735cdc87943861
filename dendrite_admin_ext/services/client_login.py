"""Client login on the standalone server (SPEC 13): password login for the admin web UIs.

synapse-admin and Ketesa log in through the client API (``POST /login``) before their
first admin call (``research/admin-apis.md`` §C).  The rules, from the Matrix spec's
``POST /_matrix/client/v3/login`` and Synapse's and Dendrite's behaviour:

* ``m.login.password`` only, the user given as an ``m.id.user`` identifier or the legacy
  top-level ``user``: a localpart or a full user ID of this server.  The localpart is
  looked up as given, then lowercased (accounts made here are lowercase; historical
  ones may not be).
* A wrong password, an unknown, remote or malformed user, or an account without a
  password: 403 ``M_FORBIDDEN``, one message for all.  An unknown user costs one bcrypt
  check against a dummy hash, as a known one does, so timing does not tell them apart.
* Only after the right password: a deactivated account is 403 ``M_USER_DEACTIVATED`` (the
  spec's code, as Synapse; the spec lets a server that cannot authenticate the user use
  ``M_FORBIDDEN`` instead, which is what happens once deactivation cleared the hash), and
  a locked one 401 ``M_USER_LOCKED`` with ``soft_logout: true`` (spec "Account locking":
  no new token until unlocked; Synapse checks it after the password too).  Checking them
  after the password keeps an account's state from strangers.
* Failed attempts are limited per client address and per account
  (``client_login.failed_per_address`` / ``failed_per_account``), each checked before
  any bcrypt work: over either, 429 ``M_LIMIT_EXCEEDED`` with ``Retry-After`` and
  ``retry_after_ms``.  An attempt takes a token from both buckets up front (so a burst
  of concurrent guesses cannot overshoot) and gives them back unless it was a wrong
  password.
* ``device_id`` is kept when given: a device of that ID is replaced with its token, as
  Dendrite does; otherwise one is generated.  ``initial_device_display_name`` names it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import messages
from ..config import ClientLoginConfig
from ..errors import (
    Forbidden,
    InvalidParam,
    LimitExceeded,
    MatrixError,
    MissingParam,
    UserDeactivated,
    UserLocked,
)
from ..identifiers import MAX_ID_BYTES, UserID, parse_user_id
from ..limits import RateLimiter
from ..storage.types import AccountType, LoginAccount, NewDevice
from .registration import generate_access_token, generate_device_id

if TYPE_CHECKING:
    from ..context import AdminContext
    from ..passwords import PasswordHasher

__all__ = [
    "LOGIN_FLOWS",
    "SPEC_VERSIONS",
    "LoginAttempt",
    "LoginGuard",
    "LoginResult",
    "parse_login",
    "password_login",
]

PASSWORD_LOGIN = "m.login.password"  # noqa: S105  (a login type, not a secret)
LOGIN_FLOWS: dict[str, Any] = {"flows": [{"type": PASSWORD_LOGIN}]}

# GET /_matrix/client/versions: the spec versions whose login, logout, whoami and
# profile this server speaks (unchanged in shape since r0.0.1; v1.18 is the current one).
SPEC_VERSIONS: tuple[str, ...] = (
    "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
    *(f"v1.{minor}" for minor in range(1, 19)),
)



@dataclass
class LoginGuard:
    """Per-process login state: the failed-attempt buckets and the dummy hash checked
    for users that do not exist.  Created with the context's first login."""

    config: ClientLoginConfig
    per_address: RateLimiter = field(init=False)
    per_account: RateLimiter = field(init=False)
    _dummy_hash: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        a, b = self.config.failed_per_address, self.config.failed_per_account
        self.per_address = RateLimiter(a.per_second, a.burst)
        self.per_account = RateLimiter(b.per_second, b.burst)

    async def dummy_hash(self, hasher: PasswordHasher) -> str:
        """A hash of a random password at the configured cost, made once (off the
        loop): checking against it costs what checking a real account does."""
        if self._dummy_hash is None:
            self._dummy_hash = await hasher.hash(secrets.token_urlsafe(24))
        return self._dummy_hash


def login_guard(ctx: AdminContext) -> LoginGuard:
    if ctx.login_guard is None:
        ctx.login_guard = LoginGuard(ctx.config.client_login)
    guard: LoginGuard = ctx.login_guard
    return guard


@dataclass(frozen=True)
class LoginAttempt:
    """A parsed ``POST /login`` body.  ``target`` is who the attempt is for, as the audit
    trail names it (the full user ID when it parsed, else what was sent, cut to 255
    characters); ``user`` is None when it cannot be a local account."""

    target: str
    user: UserID | None
    password: str = field(repr=False)
    device_id: str | None
    device_display_name: str | None


@dataclass(frozen=True)
class LoginResult:
    user: UserID
    access_token: str = field(repr=False)
    device_id: str
    account_type: AccountType = AccountType.USER

    def to_json(self) -> dict[str, Any]:
        # home_server: deprecated in the spec, but Awesome-Technologies synapse-admin
        # builds its user URLs from it.
        return {"user_id": str(self.user), "access_token": self.access_token,
                "device_id": self.device_id, "home_server": self.user.server_name}


def _login_user(raw: str, server_name: str) -> UserID | None:
    """The local user ``raw`` (a localpart or a full user ID) names, or None.  A
    localpart the grammar refuses as given is tried lowercased (clients send what the
    user typed; :func:`_find_account` does the same fold for stored IDs)."""
    localpart = raw
    if raw.startswith("@"):
        localpart, sep, server = raw[1:].partition(":")
        if not sep or server != server_name:
            return None
    for candidate in dict.fromkeys((localpart, localpart.lower())):
        try:
            return parse_user_id(f"@{candidate}:{server_name}")
        except MatrixError:
            continue
    return None


def parse_login(body: dict[str, Any], server_name: str) -> LoginAttempt:
    """Check a login body (already valid against ``login.schema.json``).  400
    ``M_UNKNOWN`` for another login or identifier type, 400 ``M_MISSING_PARAM`` for a
    missing user or password, 400 ``M_INVALID_PARAM`` for control characters in the device
    ID or name."""
    if body["type"] != PASSWORD_LOGIN:
        raise MatrixError(messages.UNKNOWN_LOGIN_TYPE)
    identifier = body.get("identifier")
    if identifier is not None:
        if identifier.get("type") != "m.id.user":
            raise MatrixError(messages.UNKNOWN_LOGIN_IDENTIFIER)
        raw = identifier.get("user")
        where = "identifier.user"
    else:
        raw = body.get("user")
        where = "identifier"
    if not raw:
        raise MissingParam(messages.missing_param(where))
    password = body.get("password")
    if password is None:
        raise MissingParam(messages.missing_param("password"))
    device_id = body.get("device_id") or None
    display_name = body.get("initial_device_display_name")
    # Both are stored as text: control characters (NUL above all, which PostgreSQL
    # refuses) have no place in them.  Lengths are bounded by the schema.
    if device_id is not None and not device_id.isprintable():
        raise InvalidParam(messages.not_printable("device_id"))
    if display_name is not None and not display_name.isprintable():
        raise InvalidParam(messages.not_printable("initial_device_display_name"))
    user = _login_user(raw, server_name)
    target = (str(user) if user is not None
              else "".join(ch for ch in raw[:MAX_ID_BYTES] if ch.isprintable()))
    return LoginAttempt(target, user, password, device_id, display_name)


async def _find_account(ctx: AdminContext, user: UserID | None) -> LoginAccount | None:
    if user is None:
        return None
    account = await ctx.storage.get_login_account(user)
    folded = user.localpart.lower()
    if account is None and folded != user.localpart:
        account = await ctx.storage.get_login_account(UserID(folded, user.server_name))
    return account


async def password_login(ctx: AdminContext, attempt: LoginAttempt,
                         client_address: str) -> LoginResult:
    """Log in (rules in the module docstring); the new device's access token on success.
    Raises the Matrix errors listed there; 503 when the bcrypt queue is full."""
    guard = login_guard(ctx)
    account_key = attempt.target.lower()
    wait = guard.per_address.check(client_address)
    if wait > 0:
        raise LimitExceeded(wait)
    wait = guard.per_account.check(account_key)
    if wait > 0:
        guard.per_address.refund(client_address)
        raise LimitExceeded(wait)
    wrong_password = False
    try:
        account = await _find_account(ctx, attempt.user)
        known = account is not None and account.password_hash is not None
        hashed = (account.password_hash if account is not None and known
                  else await guard.dummy_hash(ctx.hasher))
        assert hashed is not None
        # A password longer than any the policy allows was never set: it fails, after
        # the same bcrypt work (bcrypt alone would compare only its first 72 bytes).
        fits = len(attempt.password) <= ctx.config.passwords.max_length
        matches = await ctx.hasher.verify(attempt.password, hashed)
        if account is None or not known or not fits or not matches:
            wrong_password = True
            raise Forbidden(messages.WRONG_CREDENTIALS)
        if account.is_deactivated:
            raise UserDeactivated(messages.USER_DEACTIVATED)
        if account.locked:
            raise UserLocked()
        device = NewDevice(attempt.device_id or generate_device_id(),
                           generate_access_token(),
                           attempt.device_display_name)
        if not await ctx.storage.create_login_device(account.user, device, ctx.clock()):
            # Deleted or deactivated between the check and now.
            raise Forbidden(messages.WRONG_CREDENTIALS)
        return LoginResult(account.user, device.access_token, device.device_id,
                           account.account_type)
    finally:
        if not wrong_password:
            guard.per_address.refund(client_address)
            guard.per_account.refund(account_key)
