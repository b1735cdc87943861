"""Durable jobs (SPEC 11): long work recorded before it is answered for, claimed by one
worker at a time through a lease, resumable from a cursor, cancellable.

Lease rules: :meth:`claim_job` takes the oldest ``scheduled`` job, or an ``active`` one
whose lease has expired (its worker died), marks it ``active`` for ``worker_id`` until
``now + lease_ms``, and never hands one job to two workers whose leases overlap (SQL:
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, SQLite's write lock).  Every later write of
the worker (:meth:`renew_lease`, :meth:`record_job_step`, :meth:`finish_job`) applies
only while the job is still ``active`` and held by that worker, and says so: False
means the worker lost it (cancelled, or taken over) and must stop.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..types import Job, JobStep

__all__ = ["JobStore"]


class JobStore(Protocol):
    async def create_job(self, job: Job, *, exclusive: bool = False) -> bool:
        """Record a new job (status ``scheduled``; ``seq`` is assigned by storage and
        the given one ignored); True once durable.  With ``exclusive``: only if no job
        of the same ``kind`` and ``target`` is scheduled or active, decided atomically
        (of two workers asking at once, one records it); False, nothing recorded,
        otherwise (one deletion of a room at a time, SPEC 11)."""

    async def get_job(self, job_id: str) -> Job | None:
        """The job, or None."""

    async def list_jobs(self, *, kind: str | None, status: str | None,
                        target: str | None, before_seq: int | None,
                        limit: int) -> list[Job]:
        """Jobs matching every filter given (None: any), newest first (``seq``
        descending), with ``seq < before_seq`` when given, at most ``limit``."""

    async def claim_job(self, worker_id: str, now: int, lease_ms: int,
                        kinds: tuple[str, ...]) -> Job | None:
        """Claim one job of these kinds as the module docstring says, setting
        ``started_ts`` on the first claim; the claimed job, or None."""

    async def renew_lease(self, job_id: str, worker_id: str, now: int,
                          lease_ms: int) -> bool:
        """Extend the worker's lease to ``now + lease_ms``; False if lost."""

    async def record_job_step(self, job_id: str, worker_id: str, step: JobStep) -> bool:
        """Apply ``step`` (cursor, counters, result keys, items) atomically; False,
        changing nothing, if the worker lost the job."""

    async def finish_job(self, job_id: str, worker_id: str, now: int, status: str,
                         error: str | None, result: dict[str, Any]) -> bool:
        """End the job: ``status`` ``complete`` or ``failed`` (with ``error``),
        ``finished_ts = now``, keys of ``result`` merged; False if lost."""

    async def cancel_job(self, job_id: str, now: int) -> Job | None:
        """Cancel a ``scheduled`` or ``active`` job (status ``cancelled``,
        ``finished_ts = now``); return the job as it is after (unchanged when it had
        already ended), or None if unknown."""

    async def get_job_items(self, job_id: str, *, limit: int) -> list[str]:
        """The first ``limit`` items the job's steps appended, in order."""
