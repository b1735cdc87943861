"""The SQL of durable jobs (SPEC 11) and of the broadcast's recipient list.

A claim locks the candidate row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: two workers
claiming at once take different jobs, never one job twice; SQLite's ``BEGIN IMMEDIATE``
serialises claims) and every later write of a worker is conditional on it still
holding the job, so a worker that lost its lease changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ...events import ROOM_VERSION, build_event, member_profile, new_room_id
from ...identifiers import UserID
from ..types import AccountType, Job, JobStep, NewRoom
from .base import SqlBase
from .ops import CHUNK_ROWS, Op, Stmt, dumps, insert_rows, one, select, with_keys
from .rooms_admin import summary_fields

__all__ = ["SqlJobs"]

_JOB_COLUMNS = ("job_id, seq, kind, target, params, status, created_ts, total, done,"
                " failed, cursor, result, error, started_ts, finished_ts, worker_id,"
                " lease_expires_ts")


def _job(row: Sequence[Any]) -> Job:
    return Job(job_id=row[0], seq=int(row[1]), kind=row[2], target=row[3],
               params=json.loads(row[4]), status=row[5], created_ts=int(row[6]),
               total=None if row[7] is None else int(row[7]), done=int(row[8]),
               failed=int(row[9]), cursor=row[10], result=json.loads(row[11]),
               error=row[12], started_ts=None if row[13] is None else int(row[13]),
               finished_ts=None if row[14] is None else int(row[14]), worker_id=row[15],
               lease_expires_ts=None if row[16] is None else int(row[16]))


_HELD = " WHERE job_id = %s AND worker_id = %s AND status = 'active'"


class SqlJobs(SqlBase):
    """:class:`~..protocols.jobs.JobStore` and
    :class:`~..protocols.broadcast.BroadcastStore`."""

    async def create_job(self, job: Job, *, exclusive: bool = False) -> bool:
        return await self._run(self._create_job(job, exclusive), write=True)

    @staticmethod
    def _create_job(job: Job, exclusive: bool) -> Op[bool]:
        if exclusive:
            # The lock row's primary key, not a read before the insert, decides between
            # two requests at once (schema v6); it goes when the job ends.
            res = yield Stmt("INSERT INTO dendrite_admin_job_locks (lock_key, job_id)"
                             " VALUES (%s, %s) ON CONFLICT DO NOTHING",
                             (f"{job.kind}\n{job.target or ''}", job.job_id))
            if res.rowcount != 1:
                return False
        yield from insert_rows(
            "INSERT INTO dendrite_admin_jobs (job_id, kind, target, params, status,"
            " created_ts, total, done, failed, cursor, result)", 11,
            [(job.job_id, job.kind, job.target, dumps(dict(job.params)), "scheduled",
              job.created_ts, job.total, 0, 0, job.cursor, dumps(dict(job.result)))])
        return True

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._run(one(f"SELECT {_JOB_COLUMNS} FROM dendrite_admin_jobs"  # noqa: S608
                                  " WHERE job_id = %s", (job_id,)), write=False)
        return None if row is None else _job(row)

    async def list_jobs(self, *, kind: str | None, status: str | None,
                        target: str | None, before_seq: int | None,
                        limit: int) -> list[Job]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("kind", kind), ("status", status), ("target", target)):
            if value is not None:
                where.append(f"{column} = %s")  # fixed column names
                params.append(value)
        if before_seq is not None:
            where.append("seq < %s")
            params.append(before_seq)
        sql = f"SELECT {_JOB_COLUMNS} FROM dendrite_admin_jobs"  # noqa: S608
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._run(select(sql + " ORDER BY seq DESC LIMIT %s",
                                      (*params, max(0, limit))), write=False)
        return [_job(r) for r in rows]

    async def claim_job(self, worker_id: str, now: int, lease_ms: int,
                        kinds: tuple[str, ...]) -> Job | None:
        if not kinds:
            return None
        return await self._run(self._claim(worker_id, now, lease_ms, kinds), write=True)

    @staticmethod
    def _claim(worker_id: str, now: int, lease_ms: int,
               kinds: tuple[str, ...]) -> Op[Job | None]:
        keys = ", ".join(["%s"] * len(kinds))
        res = yield Stmt(
            "SELECT job_id FROM dendrite_admin_jobs WHERE (status = 'scheduled'"  # noqa: S608
            " OR (status = 'active' AND lease_expires_ts < %s))"
            f" AND kind IN ({keys}) ORDER BY seq LIMIT 1 {{skip_locked}}",
            (now, *kinds), reuse=False)
        if not res.rows:
            return None
        job_id = res.rows[0][0]
        yield Stmt("UPDATE dendrite_admin_jobs SET status = 'active', worker_id = %s,"
                   " lease_expires_ts = %s, started_ts = COALESCE(started_ts, %s)"
                   " WHERE job_id = %s", (worker_id, now + lease_ms, now, job_id))
        res = yield Stmt(f"SELECT {_JOB_COLUMNS} FROM dendrite_admin_jobs"  # noqa: S608
                         " WHERE job_id = %s", (job_id,))
        return _job(res.rows[0])

    async def renew_lease(self, job_id: str, worker_id: str, now: int,
                          lease_ms: int) -> bool:
        res = await self._run(one(
            "UPDATE dendrite_admin_jobs SET lease_expires_ts = %s" + _HELD  # noqa: S608
            + " RETURNING job_id", (now + lease_ms, job_id, worker_id)), write=True)
        return res is not None

    async def record_job_step(self, job_id: str, worker_id: str, step: JobStep) -> bool:
        return await self._run(self._step(job_id, worker_id, step), write=True)

    @staticmethod
    def _step(job_id: str, worker_id: str, step: JobStep) -> Op[bool]:
        res = yield Stmt("SELECT result, total FROM dendrite_admin_jobs" + _HELD  # noqa: S608
                         + " {for_update}", (job_id, worker_id))
        if not res.rows:
            return False
        result = {**json.loads(res.rows[0][0]), **step.result}
        total = step.total if step.total is not None else res.rows[0][1]
        yield Stmt("UPDATE dendrite_admin_jobs SET cursor = %s, done = done + %s,"
                   " failed = failed + %s, total = %s, result = %s WHERE job_id = %s",
                   (step.cursor, step.done, step.failed, total, dumps(result), job_id))
        if step.items:
            res = yield Stmt("SELECT COALESCE(MAX(n), 0) FROM dendrite_admin_job_items"
                             " WHERE job_id = %s", (job_id,))
            first = int(res.rows[0][0]) + 1
            yield from insert_rows(
                "INSERT INTO dendrite_admin_job_items (job_id, n, item)", 3,
                [(job_id, first + i, item) for i, item in enumerate(step.items)])
        return True

    async def finish_job(self, job_id: str, worker_id: str, now: int, status: str,
                         error: str | None, result: dict[str, Any]) -> bool:
        return await self._run(self._finish(job_id, worker_id, now, status, error, result),
                               write=True)

    @staticmethod
    def _finish(job_id: str, worker_id: str, now: int, status: str, error: str | None,
                result: dict[str, Any]) -> Op[bool]:
        res = yield Stmt("SELECT result FROM dendrite_admin_jobs" + _HELD + " {for_update}",  # noqa: S608
                         (job_id, worker_id))
        if not res.rows:
            return False
        merged = {**json.loads(res.rows[0][0]), **result}
        yield Stmt("DELETE FROM dendrite_admin_job_locks WHERE job_id = %s", (job_id,))
        yield Stmt("UPDATE dendrite_admin_jobs SET status = %s, error = %s,"
                   " finished_ts = %s, result = %s, lease_expires_ts = NULL"
                   " WHERE job_id = %s", (status, error, now, dumps(merged), job_id))
        return True

    async def cancel_job(self, job_id: str, now: int) -> Job | None:
        return await self._run(self._cancel(job_id, now), write=True)

    @staticmethod
    def _cancel(job_id: str, now: int) -> Op[Job | None]:
        yield Stmt("DELETE FROM dendrite_admin_job_locks WHERE job_id = %s AND job_id IN"
                   " (SELECT job_id FROM dendrite_admin_jobs"
                   " WHERE status IN ('scheduled', 'active'))", (job_id,))
        yield Stmt("UPDATE dendrite_admin_jobs SET status = 'cancelled', finished_ts = %s,"
                   " lease_expires_ts = NULL"
                   " WHERE job_id = %s AND status IN ('scheduled', 'active')", (now, job_id))
        res = yield Stmt(f"SELECT {_JOB_COLUMNS} FROM dendrite_admin_jobs"  # noqa: S608
                         " WHERE job_id = %s", (job_id,))
        return _job(res.rows[0]) if res.rows else None

    async def get_job_items(self, job_id: str, *, limit: int) -> list[str]:
        rows = await self._run(select(
            "SELECT item FROM dendrite_admin_job_items WHERE job_id = %s ORDER BY n"
            " LIMIT %s", (job_id, max(0, limit))), write=False)
        return [r[0] for r in rows]

    # -- broadcast recipients ------------------------------------------------------------
    async def get_notice_recipients(
        self, server_name: str, *, after: UserID | None, limit: int,
        user_id_prefix: str | None, admins: bool | None,
        not_user_types: tuple[str, ...],
    ) -> list[UserID]:
        where = ["a.server_name = %s", "a.is_deactivated = %s",
                 "a.localpart {binary} > %s"]
        params: list[Any] = [server_name, False, "" if after is None else after.localpart]
        if admins is not None:
            where.append("a.account_type = %s" if admins else "a.account_type <> %s")
            params.append(int(AccountType.ADMIN))
        if not_user_types:
            typed = [t for t in not_user_types if t]
            if typed:
                where.append("(t.user_type IS NULL OR t.user_type NOT IN ("
                             + ", ".join(["%s"] * len(typed)) + "))")
                params += typed
            if "" in not_user_types:
                where.append("t.user_type IS NOT NULL")
        if user_id_prefix is not None:
            where.append("substr('@' || a.localpart || ':' || a.server_name, 1, %s) = %s")
            params += [len(user_id_prefix), user_id_prefix]
        rows = await self._run(select(
            "SELECT a.localpart FROM userapi_accounts a LEFT JOIN dendrite_admin_user_types t"  # noqa: S608
            " ON t.localpart = a.localpart AND t.server_name = a.server_name"
            " WHERE " + " AND ".join(where) + " ORDER BY a.localpart {binary} LIMIT %s",
            (*params, max(0, limit))), write=False)
        return [UserID(r[0], server_name) for r in rows]

    # -- broadcast: first notices in bulk (optional accelerator) ---------------------
    async def send_first_notices(
        self, users: Sequence[UserID], room: NewRoom, *, tag: str, auto_join: bool,
        event_type: str, content: Mapping[str, Any], txn_device: str, txn_ts: int,
    ) -> dict[UserID, str]:
        """For each user with no notices room recorded yet, in one transaction: create
        ``room`` with the user's invite (carrying its profile) appended to its initial
        state (and, with ``auto_join``, the user's join), tag it, record it as the
        user's notices room, and send the notice from ``room.creator`` recording the
        transaction key (``room.creator``, ``txn_device``, user ID) with it — as
        ``create_server_notice_room`` then ``send_event(txn=…)`` would, in a handful of
        multi-row statements for the whole page.  Users that have a room recorded are
        left out (the caller sends theirs the usual way).  Returns {user: event ID}."""
        if not users:
            return {}
        return await self._run(self._first_notices(
            users, room, tag, auto_join, event_type, content, txn_device, txn_ts),
            write=True)

    @staticmethod
    def _first_notices(users: Sequence[UserID], room: NewRoom, tag: str, auto_join: bool,
                       event_type: str, content: Mapping[str, Any], txn_device: str,
                       ts: int) -> Op[dict[UserID, str]]:
        sender = str(room.creator)
        server = room.creator.server_name
        planned = {str(u): new_room_id(server) for u in users}
        claimed: list[str] = []
        pairs = list(planned.items())
        for start in range(0, len(pairs), CHUNK_ROWS):
            chunk = pairs[start:start + CHUNK_ROWS]
            res = yield Stmt(  # placeholders only, values as parameters
                "INSERT INTO dendrite_admin_server_notice_rooms (user_id, room_id) VALUES "  # noqa: S608
                + ", ".join(["(%s, %s)"] * len(chunk))
                + " ON CONFLICT DO NOTHING RETURNING user_id",
                [v for pair in chunk for v in pair], reuse=False)
            claimed += [r[0] for r in res.rows]
        if not claimed:
            return {}
        profiles: dict[str, tuple[str | None, str | None]] = {}
        by_id = {str(u): u for u in users}
        for start in range(0, len(claimed), CHUNK_ROWS):
            some = [by_id[c] for c in claimed[start:start + CHUNK_ROWS]]
            res = yield Stmt(with_keys(
                # '' is how Dendrite stores "none" (see core._put_profile).
                "SELECT localpart, server_name, NULLIF(display_name, ''),"
                " NULLIF(avatar_url, '')"
                " FROM userapi_profiles WHERE server_name = %s AND localpart IN ({keys})",
                len(some)), [server, *(u.localpart for u in some)], reuse=False)
            for r in res.rows:
                profiles[str(UserID(r[0], r[1]))] = (r[2], r[3])
        version = room.room_version or ROOM_VERSION
        rooms, events, state_rows, members, summaries, tags, txns = ([] for _ in range(7))
        counts: dict[tuple[str, str], int] = {}
        out: dict[UserID, str] = {}
        for user_id in claimed:
            room_id = planned[user_id]
            name, avatar = profiles.get(user_id, (None, None))
            profile = {k: v for k, v in (("displayname", name), ("avatar_url", avatar))
                       if v is not None}
            items: list[tuple[str, str, str | None, Mapping[str, Any]]] = [
                (sender, "m.room.create", "", {**room.create_content,
                                               "room_version": version}),
                *((sender, t, sk, c) for t, sk, c in room.initial_state),
                (sender, "m.room.member", user_id, {"membership": "invite", **profile})]
            if auto_join:
                items.append((user_id, "m.room.member", user_id,
                              {"membership": "join", **profile}))
            items.append((sender, event_type, None, content))
            latest: str | None = None
            state: dict[tuple[str, str], tuple[str, Mapping[str, Any]]] = {}
            for depth, (who, etype, state_key, body) in enumerate(items, start=1):
                event = build_event(room_id=room_id, sender=who, event_type=etype,
                                    content=body, origin_server_ts=ts, depth=depth,
                                    prev_events=[latest] if latest else [],
                                    state_key=state_key)
                latest = event["event_id"]
                events.append((latest, room_id, who, etype, state_key,
                               _text(event["content"]), ts, depth, _text(event)))
                if state_key is not None:
                    state[(etype, state_key)] = (latest, body)
            assert latest is not None
            out[by_id[user_id]] = latest
            rooms.append((room_id, version, sender, len(items), latest, ts))
            fields: dict[str, Any] = {}
            joined = 0
            for (etype, state_key), (event_id, body) in state.items():
                state_rows.append((room_id, etype, state_key, event_id))
                if etype == "m.room.member":
                    membership = str(body.get("membership"))
                    member_server = UserID.from_stored(state_key).server_name
                    members.append((room_id, state_key, member_server, membership,
                                    *member_profile(body), event_id))
                    if membership == "join":
                        joined += 1
                        key = (room_id, member_server)
                        counts[key] = counts.get(key, 0) + 1
                elif state_key == "":
                    fields.update(summary_fields(etype, body))
            summaries.append((room_id, *(fields.get(c) for c in _SUMMARY_TEXT),
                              fields.get("federatable", True), joined, len(state)))
            tags.append((user_id, room_id, "m.tag", dumps({"tags": {tag: {}}})))
            txns.append((sender, txn_device, user_id, latest, ts))
        yield from insert_rows(
            "INSERT INTO dendrite_admin_rooms (room_id, room_version, creator, depth,"
            " latest_event_id, created_ts)", 6, rooms)
        yield from insert_rows(
            "INSERT INTO dendrite_admin_events (event_id, room_id, sender, type, state_key,"
            " content, origin_server_ts, depth, event_json)", 9, events)
        yield from insert_rows(
            "INSERT INTO dendrite_admin_current_state (room_id, type, state_key, event_id)",
            4, state_rows)
        yield from insert_rows(
            "INSERT INTO dendrite_admin_memberships (room_id, user_id, server_name,"
            " membership, display_name, avatar_url, event_id)", 7, members)
        yield from insert_rows(
            "INSERT INTO dendrite_admin_room_summary (room_id, "
            + ", ".join(_SUMMARY_TEXT) + ", federatable, joined_members, state_events)",
            len(_SUMMARY_TEXT) + 4, summaries)
        yield from insert_rows(
            "INSERT INTO dendrite_admin_room_server_members (room_id, server_name, joined)",
            3, [(r, s, n) for (r, s), n in counts.items()])
        yield from insert_rows(
            "INSERT INTO dendrite_admin_account_data (user_id, room_id, type, content)",
            4, tags, "ON CONFLICT (user_id, room_id, type) DO UPDATE"
            " SET content = excluded.content")
        yield from insert_rows(
            "INSERT INTO dendrite_admin_notice_txns (user_id, device_id, txn_id, event_id,"
            " ts)", 5, txns)
        return out


def _text(value: Any) -> str:
    """JSON text for storage (not for hashing: event IDs come from canonical JSON);
    orjson writes the same compact UTF-8 JSON as :func:`.ops.dumps`, faster — the bulk
    notices serialise thousands of events per page."""
    return orjson.dumps(value).decode()


# The summary's text columns, in the order the bulk insert above writes them.
_SUMMARY_TEXT = ("name", "canonical_alias", "topic", "avatar", "join_rules", "guest_access",
                 "history_visibility", "encryption", "room_type", "replacement_room")
