"""Replay jobs in the native API (version 1); see gateway.replay.

    PUT  /api/{v}/replays                      createReplay: create a job and start it
    GET  /api/{v}/replays                      listReplays, newest first
    GET  /api/{v}/replays/{replay_id}          getReplay: its spec, status and progress
    POST /api/{v}/replays/{replay_id}/cancel   cancelReplay: stop after the chunk in hand
    POST /api/{v}/replays/{replay_id}/resume   resumeReplay: go on where it stopped

A job runs in the admin process that started it; if that process ends, the job is
``interrupted`` and can be resumed (here or with ``gateway replay --resume``) without
publishing anything twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Annotated

import msgspec
from aiohttp import web

from gateway.catalog.native import Answer, Call, Operation, Version
from gateway.catalog.store import replays as stored
from gateway.errors import ApiError, BadRequest, Conflict, NotFound, Unavailable
from gateway.replay.runner import RESUMABLE, ReplayJob, Replays, Status, job_of
from gateway.replay.spec import ReplaySpec

log = logging.getLogger("gateway.replay")
MAX_LIMIT = 100
# Each running job holds a Kafka consumer and producer and a share of the admin process's CPU.
MAX_RUNNING = 4


class TooManyReplays(ApiError):
    """As many replays as one admin process runs at once (4) are running: retry when one has
    finished."""

    status = 429
    code = "too_many_replays"
    retry_after_s = 10


class ReplayJobs:
    """The jobs this process runs, as tasks (one per job)."""

    def __init__(self, replays: Replays) -> None:
        self.replays = replays
        self._running: dict[str, tuple[asyncio.Task[ReplayJob], asyncio.Event]] = {}
        self._creating = 0  # jobs being created, each to be started: their places are taken

    def check_room(self) -> None:
        if len(self._running) + self._creating >= MAX_RUNNING:
            raise TooManyReplays(f"{MAX_RUNNING} replays are running; retry when one is done")

    async def create(self, spec: ReplaySpec) -> ReplayJob:
        """Create a job and start it, or refuse (429) before creating anything."""
        self.check_room()
        self._creating += 1
        try:
            job = await self.replays.create(spec)
        finally:
            self._creating -= 1
        self.start(job.id)  # no await since the check: its place is still free
        return job

    def start(self, job_id: str) -> None:
        self.check_room()
        stop = asyncio.Event()
        # A fresh context: the job's writes are not part of the request that started it
        # (whose change is being recorded).
        task = asyncio.create_task(
            self.replays.run(job_id, None, stop),
            name=f"replay-{job_id}",
            context=contextvars.Context(),
        )
        self._running[job_id] = (task, stop)
        task.add_done_callback(lambda _: self._running.pop(job_id, None))

    def running(self, job_id: str) -> bool:
        return job_id in self._running

    def cancel(self, job_id: str) -> None:
        self._running[job_id][1].set()

    async def close(self) -> None:
        """Interrupt the running jobs (each records ``interrupted``: resumable)."""
        tasks = [task for task, _ in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


REPLAYS_KEY = web.AppKey("replays", ReplayJobs)


class ReplayList(msgspec.Struct):
    replays: list[ReplayJob]


class ListQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = 20


async def create_replay(call: Call) -> Answer:
    job = await call.app[REPLAYS_KEY].create(call.params)
    return Answer(ReplayList([job]), job.id)


async def list_replays(call: Call) -> Answer:
    async with call.store.read() as conn:
        rows = await stored.list_jobs(conn, call.params.limit)
    return Answer(ReplayList([job_of(row) for row in rows]))


async def get_replay(call: Call) -> Answer:
    job = await call.app[REPLAYS_KEY].replays.get(call.path["replay_id"])
    return Answer(ReplayList([job]), job.id)


async def cancel_replay(call: Call) -> Answer:
    jobs = call.app[REPLAYS_KEY]
    job = await jobs.replays.get(call.path["replay_id"])
    if not jobs.running(job.id):
        raise Conflict(f"replay {job.id} is not running here (it is {job.status})")
    jobs.cancel(job.id)
    return Answer(ReplayList([job]), job.id)


async def resume_replay(call: Call) -> Answer:
    jobs = call.app[REPLAYS_KEY]
    job = await jobs.replays.get(call.path["replay_id"])
    if jobs.running(job.id):
        raise Conflict(f"replay {job.id} is running already")
    if job.status not in (*RESUMABLE, Status.RUNNING):
        raise Conflict(f"replay {job.id} is {job.status}; only a stopped replay can be resumed")
    jobs.start(job.id)
    return Answer(ReplayList([job]), job.id)


ONE = "/replays/{replay_id}"
OPERATIONS = (
    Operation(
        "PUT",
        "/replays",
        "createReplay",
        "Replay quarantined events: judge them again, publish those that pass now, once",
        {1: Version(create_replay, ReplaySpec, ReplayList)},
        errors=(BadRequest, TooManyReplays, Unavailable),
    ),
    Operation(
        "GET",
        "/replays",
        "listReplays",
        "Replay jobs, newest first",
        {1: Version(list_replays, ListQuery, ReplayList)},
        errors=(BadRequest,),
    ),
    Operation(
        "GET",
        ONE,
        "getReplay",
        "A replay job and its progress",
        {1: Version(get_replay, data=ReplayList)},
        errors=(NotFound,),
    ),
    Operation(
        "POST",
        ONE + "/cancel",
        "cancelReplay",
        "Stop a running replay after the chunk in hand (it can be resumed)",
        {1: Version(cancel_replay, data=ReplayList)},
        errors=(NotFound, Conflict),
    ),
    Operation(
        "POST",
        ONE + "/resume",
        "resumeReplay",
        "Resume a stopped replay where it stopped",
        {1: Version(resume_replay, data=ReplayList)},
        errors=(NotFound, Conflict, TooManyReplays),
    ),
)
