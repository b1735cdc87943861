"""The SQL of durable jobs (SPEC 11) and of the broadcast's recipient list.

A claim locks the candidate row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: two workers
claiming at once take different jobs, never one job twice; SQLite's ``BEGIN IMMEDIATE``
serialises claims) and every later write of a worker is conditional on it still
holding the job, so a worker that lost its lease changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...identifiers import UserID
from ..types import AccountType, Job, JobStep
from .base import SqlBase
from .ops import Op, Stmt, dumps, insert_rows, one, select

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

    async def create_job(self, job: Job) -> None:
        await self._run(insert_rows(
            "INSERT INTO dendrite_admin_jobs (job_id, kind, target, params, status,"
            " created_ts, total, done, failed, cursor, result)", 11,
            [(job.job_id, job.kind, job.target, dumps(dict(job.params)), "scheduled",
              job.created_ts, job.total, 0, 0, job.cursor, dumps(dict(job.result)))]),
            write=True)

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
        yield Stmt("UPDATE dendrite_admin_jobs SET status = %s, error = %s,"
                   " finished_ts = %s, result = %s, lease_expires_ts = NULL"
                   " WHERE job_id = %s", (status, error, now, dumps(merged), job_id))
        return True

    async def cancel_job(self, job_id: str, now: int) -> Job | None:
        return await self._run(self._cancel(job_id, now), write=True)

    @staticmethod
    def _cancel(job_id: str, now: int) -> Op[Job | None]:
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
