"""Durable jobs (SPEC 11): long work (room deletion, broadcast) recorded in storage
before it is answered for, run by one worker at a time, resumable, cancellable and
observable.

* :func:`submit_job` records the job (``scheduled``) and wakes this worker's runner;
  the caller answers with the job's ID only once it is stored.
* :class:`JobRunner` (one per admin app, started and stopped with it) claims jobs
  through a lease (:meth:`~..storage.protocols.jobs.JobStore.claim_job`), renews it
  while the job runs (heartbeat every third of the lease) and resumes jobs whose
  worker died once their lease has run out — another worker's, or its own from before
  a restart.
* A job's function works in steps and records each one (:meth:`JobRun.step`) with the
  cursor it resumes from: a resumed job starts after its last recorded step.  Each
  step's own effects are idempotent (a re-sent leave finds the member gone; a notice
  is sent with a transaction key), so the work a crash interrupts between the effect
  and its record is not done twice.
* Cancelling (:func:`cancel_job`) marks the job ``cancelled`` in storage; its worker
  sees that at its next step (or heartbeat) and stops.

Models: Synapse's ``TaskScheduler`` (status and result in the database, resumed at
start-up) and procrastinate's queue (``FOR UPDATE SKIP LOCKED`` claims, worker id,
heartbeat, stalled jobs retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, overload

from ..context import AdminContext
from ..errors import StorageUnavailableError
from ..storage.types import Job, JobStep

__all__ = ["JobFunction", "JobLost", "JobRun", "JobRunner", "cancel_job", "job_json",
           "new_job_id", "submit_job"]

log = logging.getLogger(__name__)


class JobLost(Exception):
    """The worker no longer holds the job (cancelled, or its lease was taken over)."""


JobFunction = Callable[["JobRun"], Awaitable[Mapping[str, Any]]]


def new_job_id() -> str:
    """An opaque, unguessable ID (Synapse's ``delete_id`` is 16 URL-safe characters)."""
    return secrets.token_urlsafe(12)


def job_json(job: Job) -> dict[str, Any]:
    """``GET /_dendrite/admin/jobs/{jobId}`` (SPEC 11); keys not yet known are absent.
    Times in ms."""
    out: dict[str, Any] = {"job_id": job.job_id, "kind": job.kind, "status": job.status,
                           "done": job.done, "failed": job.failed,
                           "created_ts": job.created_ts}
    for key, value in (("target", job.target), ("total", job.total),
                       ("started_ts", job.started_ts), ("finished_ts", job.finished_ts),
                       ("error", job.error)):
        if value is not None:
            out[key] = value
    return out


@overload
async def submit_job(ctx: AdminContext, kind: str, target: str | None,
                     params: Mapping[str, Any], *, exclusive: Literal[False] = False) -> Job: ...
@overload
async def submit_job(ctx: AdminContext, kind: str, target: str | None,
                     params: Mapping[str, Any], *, exclusive: bool) -> Job | None: ...
async def submit_job(ctx: AdminContext, kind: str, target: str | None,
                     params: Mapping[str, Any], *, exclusive: bool = False) -> Job | None:
    """Record a job and wake this worker's runner; durable when this returns.  With
    ``exclusive``, None (nothing recorded) while a job of that kind and target is
    scheduled or active."""
    job = Job(job_id=new_job_id(), seq=0, kind=kind, target=target, params=dict(params),
              status="scheduled", created_ts=ctx.clock())
    if not await ctx.storage.create_job(job, exclusive=exclusive):
        return None
    log.info("job %s (%s) scheduled for %s", job.job_id, kind, target or "-")
    if ctx.jobs is not None:
        ctx.jobs.wake()
    return job


async def cancel_job(ctx: AdminContext, job_id: str) -> Job | None:
    job = await ctx.storage.cancel_job(job_id, ctx.clock())
    if job is not None and job.status == "cancelled":
        log.info("job %s (%s) cancelled", job.job_id, job.kind)
    return job


@dataclass
class JobRun:
    """What a job's function works with: the job as claimed, where to resume, and
    :meth:`step` to record progress."""

    ctx: AdminContext
    job: Job
    worker_id: str
    cursor: str | None
    done: int
    failed: int

    async def step(self, step: JobStep) -> None:
        """Record one step atomically; :class:`JobLost` if the worker lost the job."""
        if not await self.ctx.storage.record_job_step(self.job.job_id, self.worker_id, step):
            raise JobLost(self.job.job_id)
        self.cursor = step.cursor
        self.done += step.done
        self.failed += step.failed
        log.info("job %s (%s) progress: %d done, %d failed%s", self.job.job_id,
                 self.job.kind, self.done, self.failed,
                 f" of {step.total}" if step.total is not None else "")


class JobRunner:
    """Claims and runs jobs of the kinds it knows, at most ``concurrency`` at once."""

    def __init__(self, ctx: AdminContext, kinds: Mapping[str, JobFunction], *,
                 lease_ms: int, poll_interval_s: float, concurrency: int = 2,
                 worker_id: str | None = None) -> None:
        self.ctx = ctx
        self.kinds = dict(kinds)
        self.lease_ms = lease_ms
        self.poll_interval_s = poll_interval_s
        self.concurrency = concurrency
        self.worker_id = worker_id or "worker-" + secrets.token_hex(6)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._held: set[str] = set()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        """Stop claiming and stop the jobs running here; their leases run out and
        another worker (or this one after a restart) resumes them."""
        tasks = [t for t in (self._loop_task, *self._running) if t is not None]
        self._loop_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Hand the interrupted jobs over at once rather than when their leases run out:
        # a lease that ends now is free for the next claim.
        for job_id in list(self._held):
            with contextlib.suppress(Exception):
                await self.ctx.storage.renew_lease(job_id, self.worker_id,
                                                   self.ctx.clock() - self.lease_ms - 1,
                                                   self.lease_ms)
        self._held.clear()

    async def run_once(self) -> bool:
        """Claim one job and run it to its end here (for tests and tools); False if
        there was none."""
        job = await self._claim()
        if job is None:
            return False
        await self._run(job)
        return True

    async def _claim(self) -> Job | None:
        return await self.ctx.storage.claim_job(self.worker_id, self.ctx.clock(),
                                                self.lease_ms, tuple(self.kinds))

    async def _loop(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        while True:
            await slots.acquire()
            try:
                job = await self._claim()
            except (StorageUnavailableError, OSError):
                log.warning("cannot claim jobs: storage unavailable; retrying")
                job = None
            except Exception:
                log.exception("claiming a job failed")
                job = None
            if job is None:
                slots.release()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                continue
            task = asyncio.ensure_future(self._run(job))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            task.add_done_callback(lambda _t: slots.release())

    async def _run(self, job: Job) -> None:
        storage, ctx = self.ctx.storage, self.ctx
        fn = self.kinds[job.kind]
        resumed = job.cursor is not None or job.done or job.failed
        log.info("job %s (%s) %s by %s", job.job_id, job.kind,
                 "resumed" if resumed else "started", self.worker_id)
        run = JobRun(ctx, job, self.worker_id, job.cursor, job.done, job.failed)
        self._held.add(job.job_id)
        work = asyncio.ensure_future(fn(run))
        heartbeat = asyncio.ensure_future(self._heartbeat(job.job_id, work))
        try:
            result = await work
        except JobLost:
            self._held.discard(job.job_id)
            log.info("job %s (%s) stopped here: cancelled or taken over", job.job_id,
                     job.kind)
            return
        except asyncio.CancelledError:
            if work.cancelled() and not heartbeat.done():
                raise  # shutting down: stop() hands the job over
            self._held.discard(job.job_id)
            log.info("job %s (%s) stopped here: cancelled or taken over", job.job_id,
                     job.kind)
            return
        except StorageUnavailableError:
            # Not the job's fault: hand it back (its lease ends now) and let the next
            # claim, here or on another worker, resume it from its last step.
            self._held.discard(job.job_id)
            log.warning("job %s (%s) interrupted: storage unavailable; it will resume",
                        job.job_id, job.kind)
            with contextlib.suppress(Exception):
                await storage.renew_lease(job.job_id, self.worker_id,
                                          ctx.clock() - self.lease_ms - 1, self.lease_ms)
            return
        except Exception as exc:
            self._held.discard(job.job_id)
            log.exception("job %s (%s) failed", job.job_id, job.kind)
            error = str(exc) or type(exc).__name__
            await storage.finish_job(job.job_id, self.worker_id, ctx.clock(), "failed",
                                     error[:1000], {})
            return
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        self._held.discard(job.job_id)
        if await storage.finish_job(job.job_id, self.worker_id, ctx.clock(), "complete",
                                    None, dict(result)):
            log.info("job %s (%s) complete: %d done, %d failed", job.job_id, job.kind,
                     run.done, run.failed)

    async def _heartbeat(self, job_id: str, work: asyncio.Future[Any]) -> None:
        """Renew the lease every third of it; stop the work when the job is lost."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                held = await self.ctx.storage.renew_lease(job_id, self.worker_id,
                                                          self.ctx.clock(), self.lease_ms)
            except (StorageUnavailableError, OSError):
                continue  # the lease may still hold; the next beat tries again
            if not held:
                work.cancel()
                return
