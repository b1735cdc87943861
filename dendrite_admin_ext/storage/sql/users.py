"""The SQL of user administration (SPEC 9): Synapse's user list as keyset pages.

A list ordered by ``order_by`` is ordered by one key expression (:data:`SORT_KEYS`, the
SQL twin of :func:`~..types.user_sort_key`) then the localpart, compared byte-wise.  A
page after a cursor is two index range scans (the rest of the cursor's key group, then
the groups after it) wherever an index of schema v4 matches the key: for ``name``,
``creation_ts``, ``admin``, ``is_guest``, ``deactivated`` (accounts) and
``displayname``, ``avatar_url`` (profiles: every account has a profile row) a deep page
costs what the first costs.  ``user_type``, ``locked`` (the package's sparse tables) and
``last_seen_ts`` (computed from the devices) are a row-value comparison and sort the
matches on every page.  A page sorts localparts only, then reads the records of those
(see the README, "User administration").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...identifiers import UserID
from ..types import AccountType, UserCursor, UserQuery, UserRecord
from .base import SqlBase
from .ops import Op, Stmt, exec_, one, with_keys

__all__ = ["SORT_KEYS", "SqlUsers"]

_LAST_SEEN = ("(SELECT MAX(d.last_seen_ts) FROM userapi_devices d"
              " WHERE d.localpart = a.localpart AND d.server_name = a.server_name"
              # A device we created and nobody has used yet has no sighting (its
              # NOT NULL last_seen_ts holds its creation time until then).
              " AND d.ip IS NOT NULL)")

# order_by -> the SQL of its key (None: the localpart alone).  The CASE expressions and
# a.created_ts are indexed by migration v4 exactly as written here (minus "a.").
SORT_KEYS: dict[str, str | None] = {
    "name": None,
    "shadow_banned": None,
    "displayname": "(COALESCE(p.display_name, '') {binary})",
    "avatar_url": "(COALESCE(p.avatar_url, '') {binary})",
    "user_type": "COALESCE(t.user_type, '') {binary}",
    "is_guest": "(CASE WHEN a.account_type = 2 THEN 1 ELSE 0 END)",
    "admin": "(CASE WHEN a.account_type = 3 THEN 1 ELSE 0 END)",
    "deactivated": "(CASE WHEN a.is_deactivated THEN 1 ELSE 0 END)",
    "locked": "(CASE WHEN s.locked THEN 1 ELSE 0 END)",
    "creation_ts": "a.created_ts",
    "last_seen_ts": "COALESCE(ls.ts, 0)",
}
# The join each key needs ("pi": profiles as an inner join, so that the profiles'
# index can drive the page: every account has a profile row, see migration v4).
_KEY_JOIN = {"displayname": "pi", "avatar_url": "pi", "user_type": "t", "locked": "s",
             "last_seen_ts": "ls"}

# The orders whose key is indexed by migration v4 (besides name, the localpart itself).
INDEXED_KEYS = frozenset({"creation_ts", "admin", "is_guest", "deactivated",
                          "displayname", "avatar_url"})
# Orders served by an index on userapi_profiles: the tie-break is the profile's localpart.
_PROFILE_ORDERS = frozenset({"displayname", "avatar_url"})

_COLUMNS = ("SELECT a.localpart, a.server_name, a.account_type, a.is_deactivated,"
            " a.created_ts, t.user_type, a.appservice_id, p.display_name, p.avatar_url,"
            f" s.erased, s.locked, s.suspended, {_LAST_SEEN}")

_JOINS = {
    "p": " LEFT JOIN userapi_profiles p"
         " ON p.localpart = a.localpart AND p.server_name = a.server_name",
    "t": " LEFT JOIN dendrite_admin_user_types t"
         " ON t.localpart = a.localpart AND t.server_name = a.server_name",
    "s": " LEFT JOIN dendrite_admin_account_state s"
         " ON s.localpart = a.localpart AND s.server_name = a.server_name",
    "pi": " JOIN userapi_profiles p"
          " ON p.localpart = a.localpart AND p.server_name = a.server_name",
    # Ordering by last sighting: one grouped pass over the devices, hash-joined (a
    # subquery per account cost a probe for each of them).
    "ls": " LEFT JOIN (SELECT localpart, server_name, MAX(last_seen_ts) AS ts"
          " FROM userapi_devices WHERE ip IS NOT NULL GROUP BY localpart, server_name) ls"
          " ON ls.localpart = a.localpart AND ls.server_name = a.server_name",
}
_RECORD_JOINS = "".join(_JOINS[j] for j in ("p", "t", "s"))


def like_pattern(text: str) -> str:
    """``%text%`` for ``LIKE … ESCAPE '\\'``, ASCII letters lowered, wildcards escaped."""
    lowered = text.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                                           "abcdefghijklmnopqrstuvwxyz"))
    escaped = lowered.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filters(query: UserQuery) -> tuple[list[str], list[Any], set[str]]:
    """The WHERE conditions (after the server name), their parameters and the joins
    they need."""
    where: list[str] = []
    params: list[Any] = []
    joins: set[str] = set()
    if query.name is not None:
        where.append("(lower(a.localpart) LIKE %s ESCAPE '\\'"
                     " OR lower(COALESCE(p.display_name, '') {binary}) LIKE %s ESCAPE '\\')")
        params += [like_pattern(query.name)] * 2
        joins.add("p")
    elif query.user_id is not None:
        where.append("lower('@' || a.localpart || ':' || a.server_name) LIKE %s ESCAPE '\\'")
        params.append(like_pattern(query.user_id))
    if not query.guests:
        where.append("a.account_type <> 2")
    if query.deactivated is True:
        where.append("COALESCE(a.is_deactivated, FALSE)")
    elif query.deactivated is False:
        where.append("NOT COALESCE(a.is_deactivated, FALSE)")
    if query.admins is True:
        where.append("a.account_type = 3")
    elif query.admins is False:
        where.append("a.account_type <> 3")
    if not query.locked:
        where.append("NOT COALESCE(s.locked, FALSE)")
        joins.add("s")
    if query.not_user_types:
        where.append(with_keys("COALESCE(t.user_type, '') NOT IN ({keys})",
                               len(query.not_user_types)))
        params += list(query.not_user_types)
        joins.add("t")
    return where, params, joins


def _record(row: Sequence[Any]) -> UserRecord:
    return UserRecord(
        UserID(row[0], row[1]), AccountType(row[2]), bool(row[3]), int(row[4]), row[5],
        # '' is how Dendrite stores "no display name / avatar" (see core._put_profile).
        row[6], row[7] or None, row[8] or None, bool(row[9]), bool(row[10]), bool(row[11]),
        None if row[12] is None else int(row[12]))


class SqlUsers(SqlBase):
    async def list_users(self, server_name: str, query: UserQuery, *,
                         after: UserCursor | None, offset: int,
                         limit: int) -> list[UserRecord]:
        rows = await self._run(self._list_users(server_name, query, after, max(0, offset),
                                                max(0, limit)), write=False)
        return [_record(r) for r in rows]

    @classmethod
    def _list_users(cls, server_name: str, query: UserQuery, after: UserCursor | None,
                    offset: int, limit: int) -> Op[list[tuple[Any, ...]]]:
        """The page's localparts in order (a narrow sort: the key and the localpart),
        then their records."""
        localparts = yield from cls._page_localparts(server_name, query, after, offset,
                                                     limit)
        if not localparts:
            return []
        res = yield Stmt(with_keys(
            _COLUMNS + " FROM userapi_accounts a" + _RECORD_JOINS
            + " WHERE a.server_name = %s AND a.localpart IN ({keys})", len(localparts)),
            (server_name, *localparts), reuse=False)
        by_localpart = {row[0]: row for row in res.rows}
        return [by_localpart[lp] for lp in localparts if lp in by_localpart]

    @staticmethod
    def _page_localparts(server_name: str, query: UserQuery, after: UserCursor | None,
                         offset: int, limit: int) -> Op[list[str]]:
        where, params, joins = _filters(query)
        if query.order_by in _KEY_JOIN:
            joins.add(_KEY_JOIN[query.order_by])
        if "pi" in joins:
            joins.discard("p")
        from_joins = "".join(_JOINS[j] for j in sorted(joins))
        key = SORT_KEYS[query.order_by]
        back = query.direction == "b"
        direction, cmp = ("DESC", "<") if back else ("ASC", ">")
        # The localpart and server name of the table whose index serves the order.
        table = "p" if query.order_by in _PROFILE_ORDERS else "a"
        lp = f"{table}.localpart {{binary}}"
        server = [f"{table}.server_name = %s"]
        where = [*where, "a.server_name = %s"] if table != "a" else where
        params = [*params, server_name] if table != "a" else params

        def page(extra: list[str], extra_params: list[Any], order: str,
                 count: int, skip: int = offset) -> Stmt:
            # Fixed fragments only: every value travels as a parameter.
            sql = (f"SELECT {table}.localpart FROM userapi_accounts a"  # noqa: S608
                   + from_joins + " WHERE " + " AND ".join([*server, *where, *extra])
                   + f" ORDER BY {order} LIMIT %s OFFSET %s")
            return Stmt(sql, (server_name, *params, *extra_params, count, skip))

        if key is None:
            cursor = [] if after is None else [f"{lp} {cmp} %s"]
            res = yield page(cursor, [] if after is None else [after.localpart],
                             f"{lp} {direction}", limit)
            return [r[0] for r in res.rows]
        order = f"{key} {direction}, {lp} {direction}"
        if after is None:
            res = yield page([], [], order, limit)
            return [r[0] for r in res.rows]
        if query.order_by not in INDEXED_KEYS:
            res = yield page([f"({key}, {lp}) {cmp} (%s, %s)"], [after.key, after.localpart],
                             order, limit)
            return [r[0] for r in res.rows]
        # Two index ranges instead of one row-value comparison, which SQLite cannot
        # match to an index on an expression: the rest of the cursor's key group, then
        # the groups after it.  An offset (callers pass 0 with a cursor) is applied to
        # the two together.
        want = offset + limit
        res = yield page([f"{key} = %s", f"{lp} {cmp} %s"], [after.key, after.localpart],
                         f"{lp} {direction}", want, 0)
        rows = res.rows
        if len(rows) < want:
            rest = yield page([f"{key} {cmp} %s"], [after.key], order, want - len(rows), 0)
            rows = rows + rest.rows
        return [r[0] for r in rows[offset:]]

    async def count_users(self, server_name: str, query: UserQuery) -> int:
        where, params, joins = _filters(query)
        # Fixed fragments only: every value travels as a parameter.
        sql = ("SELECT COUNT(*) FROM userapi_accounts a"  # noqa: S608
               + "".join(_JOINS[j] for j in sorted(joins))
               + " WHERE " + " AND ".join(["a.server_name = %s", *where]))
        row = await self._run(one(sql, (server_name, *params)), write=False)
        return 0 if row is None else int(row[0])

    async def get_user(self, user: UserID) -> UserRecord | None:
        row = await self._run(one(
            _COLUMNS + " FROM userapi_accounts a" + _RECORD_JOINS
            + " WHERE a.localpart = %s AND a.server_name = %s",
            (user.localpart, user.server_name)), write=False)
        return None if row is None else _record(row)

    async def set_admin(self, user: UserID, admin: bool) -> None:
        who = (user.localpart, user.server_name)
        if admin:
            await self._run(exec_("UPDATE userapi_accounts SET account_type = 3"
                                  " WHERE localpart = %s AND server_name = %s", who),
                            write=True)
        else:
            await self._run(exec_("UPDATE userapi_accounts SET account_type = 1"
                                  " WHERE localpart = %s AND server_name = %s"
                                  " AND account_type = 3", who), write=True)

    async def set_deactivated(self, user: UserID, deactivated: bool) -> None:
        await self._run(self._set_deactivated(user, deactivated), write=True)

    @staticmethod
    def _set_deactivated(user: UserID, deactivated: bool) -> Op[None]:
        who = (user.localpart, user.server_name)
        yield Stmt("UPDATE userapi_accounts SET is_deactivated = %s"
                   " WHERE localpart = %s AND server_name = %s", (deactivated, *who))
        if not deactivated:
            yield Stmt("UPDATE dendrite_admin_account_state SET erased = FALSE"
                       " WHERE localpart = %s AND server_name = %s", who)

    async def revoke_credentials(self, user: UserID) -> None:
        await self._run(self._revoke_credentials(user), write=True)

    @staticmethod
    def _revoke_credentials(user: UserID) -> Op[None]:
        who = (user.localpart, user.server_name)
        # Our sightings go with the devices: beside Dendrite no foreign key cascades.
        yield Stmt("DELETE FROM dendrite_admin_device_connections"
                   " WHERE localpart = %s AND server_name = %s", who)
        yield Stmt("DELETE FROM userapi_devices WHERE localpart = %s AND server_name = %s",
                   who)
        # '' rather than NULL: Dendrite scans the hash into a plain string, and '' is
        # how it stores "no password" itself (research/dendrite-database.md item 7).
        yield Stmt("UPDATE userapi_accounts SET password_hash = ''"
                   " WHERE localpart = %s AND server_name = %s", who)

    async def delete_devices(self, user: UserID, device_ids: Sequence[str]) -> None:
        if not device_ids:
            return
        ids = list(dict.fromkeys(device_ids))
        await self._run(self._delete_devices(user, ids), write=True)

    @staticmethod
    def _delete_devices(user: UserID, ids: Sequence[str]) -> Op[None]:
        # Our sightings go with the devices: beside Dendrite no foreign key cascades.
        for table in ("dendrite_admin_device_connections", "userapi_devices"):
            yield Stmt(with_keys(
                f"DELETE FROM {table} WHERE localpart = %s AND server_name = %s"  # noqa: S608
                " AND device_id IN ({keys})", len(ids)),
                (user.localpart, user.server_name, *ids), reuse=False)

    async def update_account_state(self, user: UserID, *, erased: bool | None = None,
                                   locked: bool | None = None) -> None:
        if erased is None and locked is None:
            return
        await self._run(exec_(
            "INSERT INTO dendrite_admin_account_state (localpart, server_name, erased,"
            " locked) VALUES (%s, %s, COALESCE(%s, FALSE), COALESCE(%s, FALSE))"
            " ON CONFLICT (localpart, server_name) DO UPDATE SET"
            " erased = COALESCE(%s, dendrite_admin_account_state.erased),"
            " locked = COALESCE(%s, dendrite_admin_account_state.locked)",
            (user.localpart, user.server_name, erased, locked, erased, locked)),
            write=True)

    async def set_user_type(self, user: UserID, user_type: str | None) -> None:
        await self._run(self._set_user_type(user, user_type), write=True)

    @staticmethod
    def _set_user_type(user: UserID, user_type: str | None) -> Op[None]:
        who = (user.localpart, user.server_name)
        if user_type is None:
            yield Stmt("DELETE FROM dendrite_admin_user_types"
                       " WHERE localpart = %s AND server_name = %s", who)
        else:
            yield Stmt("INSERT INTO dendrite_admin_user_types (localpart, server_name,"
                       " user_type) VALUES (%s, %s, %s) ON CONFLICT (localpart, server_name)"
                       " DO UPDATE SET user_type = excluded.user_type", (*who, user_type))
