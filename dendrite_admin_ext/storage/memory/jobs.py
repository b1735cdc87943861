"""In-memory durable jobs and broadcast recipients (SPEC 11): the reference for the
lease rules of :mod:`..protocols.jobs` (no method awaits, so each is atomic)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...identifiers import UserID
from ..types import AccountType, Job, JobStep
from .base import MemoryBase

__all__ = ["MemoryJobs"]


class MemoryJobs(MemoryBase):
    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, Job] = {}
        self.job_items: dict[str, list[str]] = {}
        self._job_seq = 0

    def _held(self, job_id: str, worker_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None or job.status != "active" or job.worker_id != worker_id:
            return None
        return job

    async def create_job(self, job: Job, *, exclusive: bool = False) -> bool:
        if exclusive and any(j.kind == job.kind and j.target == job.target
                             and j.status in ("scheduled", "active")
                             for j in self.jobs.values()):
            return False
        self._job_seq += 1
        self.jobs[job.job_id] = replace(job, seq=self._job_seq, status="scheduled",
                                        params=dict(job.params), result=dict(job.result))
        return True

    async def get_job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    async def list_jobs(self, *, kind: str | None, status: str | None,
                        target: str | None, before_seq: int | None,
                        limit: int) -> list[Job]:
        out = [j for j in sorted(self.jobs.values(), key=lambda j: -j.seq)
               if (kind is None or j.kind == kind) and (status is None or j.status == status)
               and (target is None or j.target == target)
               and (before_seq is None or j.seq < before_seq)]
        return out[:max(0, limit)]

    async def claim_job(self, worker_id: str, now: int, lease_ms: int,
                        kinds: tuple[str, ...]) -> Job | None:
        for job in sorted(self.jobs.values(), key=lambda j: j.seq):
            if job.kind not in kinds:
                continue
            if job.status == "scheduled" or (
                    job.status == "active" and (job.lease_expires_ts or 0) < now):
                claimed = replace(job, status="active", worker_id=worker_id,
                                  lease_expires_ts=now + lease_ms,
                                  started_ts=job.started_ts if job.started_ts is not None
                                  else now)
                self.jobs[job.job_id] = claimed
                return claimed
        return None

    async def renew_lease(self, job_id: str, worker_id: str, now: int,
                          lease_ms: int) -> bool:
        job = self._held(job_id, worker_id)
        if job is None:
            return False
        self.jobs[job_id] = replace(job, lease_expires_ts=now + lease_ms)
        return True

    async def record_job_step(self, job_id: str, worker_id: str, step: JobStep) -> bool:
        job = self._held(job_id, worker_id)
        if job is None:
            return False
        self.jobs[job_id] = replace(
            job, cursor=step.cursor, done=job.done + step.done,
            failed=job.failed + step.failed,
            total=step.total if step.total is not None else job.total,
            result={**job.result, **step.result})
        if step.items:
            self.job_items.setdefault(job_id, []).extend(step.items)
        return True

    async def finish_job(self, job_id: str, worker_id: str, now: int, status: str,
                         error: str | None, result: dict[str, Any]) -> bool:
        job = self._held(job_id, worker_id)
        if job is None:
            return False
        self.jobs[job_id] = replace(job, status=status, error=error, finished_ts=now,
                                    lease_expires_ts=None,
                                    result={**job.result, **result})
        return True

    async def cancel_job(self, job_id: str, now: int) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        if job.status in ("scheduled", "active"):
            job = replace(job, status="cancelled", finished_ts=now, lease_expires_ts=None)
            self.jobs[job_id] = job
        return job

    async def get_job_items(self, job_id: str, *, limit: int) -> list[str]:
        return self.job_items.get(job_id, [])[:max(0, limit)]

    async def get_notice_recipients(
        self, server_name: str, *, after: UserID | None, limit: int,
        user_id_prefix: str | None, admins: bool | None,
        not_user_types: tuple[str, ...],
    ) -> list[UserID]:
        out: list[UserID] = []
        for user in sorted((u for u in self.accounts if u.server_name == server_name),
                           key=lambda u: u.localpart):
            if after is not None and user.localpart <= after.localpart:
                continue
            acc = self.accounts[user].account
            if acc.is_deactivated:
                continue
            if admins is not None and (acc.account_type == AccountType.ADMIN) != admins:
                continue
            if (acc.user_type or "") in not_user_types:
                continue
            if user_id_prefix is not None and not str(user).startswith(user_id_prefix):
                continue
            out.append(user)
            if len(out) >= limit:
                break
        return out
