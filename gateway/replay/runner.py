"""Running a replay job: read its range of the quarantine topic, judge, publish, remember.

A job reads the quarantine topic from its start positions up to the end offsets fixed when it
was created, a chunk at a time. For each chunk, in this order:

1. every record is judged (gateway.replay.judge), off the event loop;
2. the passing events are *claimed* in the catalog (source, messageId), and the events topic's
   end offsets are noted beside the job, in one transaction;
3. the claimed records are published and acknowledged by Kafka;
4. the claims are marked done and the job's positions move past the chunk, in one transaction.

A run cut short between 2 and 4 (killed, Kafka down) leaves claims pending. The next run of the
job first reads the events topic from the noted offsets: the claims whose records are there are
done, the others are released and published again. So a job, resumed any number of times,
publishes each event once; and since claims are per event, not per job, a second job over
the same range publishes nothing already replayed. A dry run claims nothing and publishes
nothing: it counts what would pass and why the rest fail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.catalog import changelog
from gateway.catalog.store import Store, new_id, now_text
from gateway.catalog.store import replays as stored
from gateway.catalog.store.snapshot import plan_at_version, read_snapshot_document
from gateway.config import IngestSettings, KafkaSettings
from gateway.errors import BadRequest, NotFound, Unavailable
from gateway.metrics import Metrics
from gateway.plans.snapshot import Snapshot, SnapshotError, parse_snapshot
from gateway.publish.consume import (
    CONNECT_S,
    STALL_FETCHES,
    ends_of,
    partitions_of,
    read_all,
    read_range,
    started_consumer,
    time_offsets,
)
from gateway.publish.producer import KafkaPublisher, KafkaUnavailable
from gateway.replay.judge import REPLAYED_HEADER, Judge, Verdict
from gateway.replay.spec import ReplaySpec, compiled_fixes

log = logging.getLogger("gateway.replay")

CHUNK_RECORDS = 500
MAX_FAILURE_KINDS = 50  # distinct reasons kept in a job's progress; the rest are counted together
OTHER_FAILURES = "(other reasons)"


class Status:
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # its process ended while it ran


RESUMABLE = (Status.FAILED, Status.CANCELLED, Status.INTERRUPTED)


class Progress(msgspec.Struct, rename="camel", kw_only=True):
    """What a job did so far. ``passed``: events that pass now (in a dry run: would pass);
    ``published``: of those, put in the events topic by this job; ``alreadyReplayed``: passed,
    but replayed before (by any job); ``failures``: why the others still fail, with counts."""

    total: int = 0  # records to read: those in the range of offsets the times (roughly) select
    read: int = 0
    selected: int = 0  # quarantine records the filters let through
    passed: int = 0
    published: int = 0
    already_replayed: int = 0
    still_failing: int = 0
    failures: dict[str, int] = msgspec.field(default_factory=dict)

    def count_failure(self, why: str) -> None:
        self.still_failing += 1
        if why not in self.failures and len(self.failures) >= MAX_FAILURE_KINDS:
            why = OTHER_FAILURES
        self.failures[why] = self.failures.get(why, 0) + 1


class ReplayJob(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    status: str
    spec: ReplaySpec
    progress: Progress
    # Next offset to read and offset to stop at, per partition of the quarantine topic.
    positions: dict[str, int]
    ends: dict[str, int]
    error: str | None
    created_at: str
    updated_at: str


def job_of(row: Any) -> ReplayJob:
    return ReplayJob(
        id=row.id,
        status=row.status,
        spec=msgspec.convert(row.spec, ReplaySpec),
        progress=msgspec.convert(row.progress, Progress),
        positions=row.positions,
        ends=row.ends,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class Replays:
    """Creates and runs replay jobs, whose state is kept in the catalog."""

    def __init__(
        self,
        store: Store,
        kafka: KafkaSettings,
        ingest: IngestSettings,
        chunk_records: int = CHUNK_RECORDS,
        metrics: Metrics | None = None,
        pinned_versions: int = 0,
    ) -> None:
        """``pinned_versions``: catalog.pinned_versions, so that an event pinned to a past plan
        version (RudderTyper) is judged again as the gateway judges it."""
        self.chunk_records = chunk_records
        self.pinned_versions = pinned_versions
        self.metrics = metrics or Metrics()
        self.store = store
        self.kafka = kafka
        self.ingest = ingest

    async def create(self, spec: ReplaySpec) -> ReplayJob:
        """A new job: its range fixed now (BadRequest when the spec cannot be run)."""
        spec.check()
        await self.snapshot(spec)  # a plan version that does not exist fails here, not later
        try:
            consumer = await self._consumer()
        except KafkaUnavailable as exc:
            raise Unavailable(str(exc)) from None
        try:
            positions, ends = await _range(consumer, self.kafka.quarantine_topic, spec)
        finally:
            await consumer.stop()
        job_id = new_id("rpl")
        progress = Progress(total=sum(ends[p] - positions[p] for p in ends))
        changelog.minted(job_id)
        # Through the store's write: started through the native API, it is in the change log.
        async with self.store.write(snapshot=False) as conn:
            await stored.insert_job(
                conn,
                job_id,
                now_text(),
                spec=msgspec.to_builtins(spec),
                status=Status.RUNNING,
                progress=msgspec.to_builtins(progress),
                positions=positions,
                ends=ends,
                pending_since=None,
                error=None,
            )
        return await self.get(job_id)

    async def get(self, job_id: str) -> ReplayJob:
        async with self.store.read() as conn:
            row = await stored.get_job(conn, job_id)
        if row is None:
            raise NotFound(f"replay {job_id} not found")
        return job_of(row)

    async def set_status(self, job_id: str, status: str, error: str | None = None) -> None:
        async with self.store.engine.begin() as conn:
            await stored.update_job(conn, job_id, now_text(), status=status, error=error)

    async def snapshot(self, spec: ReplaySpec) -> Snapshot:
        """The current plans, or with ``planVersion`` each connected plan at that version."""
        async with self.store.read() as conn:
            document = await read_snapshot_document(self.store, self.pinned_versions)
            if spec.plan_version is not None:
                await _plans_at_version(conn, document, spec)
        try:
            return await asyncio.to_thread(parse_snapshot, document)
        except SnapshotError as exc:
            raise BadRequest(f"the plans cannot be used: {exc}") from None

    async def run(
        self,
        job_id: str,
        on_progress: Callable[[ReplayJob], None] | None = None,
        stop: asyncio.Event | None = None,
    ) -> ReplayJob:
        """Run (or resume) the job to its end; its state is saved after every chunk."""
        job = await self.get(job_id)
        if job.status == Status.DONE:
            return job
        await self.set_status(job_id, Status.RUNNING)
        try:
            job = await self._run(job, on_progress, stop or asyncio.Event())
        except asyncio.CancelledError:
            await asyncio.shield(self.set_status(job_id, Status.INTERRUPTED))
            raise
        except (KafkaUnavailable, BadRequest, OSError) as exc:
            log.warning("replay %s failed: %s", job_id, exc)
            await self.set_status(job_id, Status.FAILED, str(exc))
        except Exception as exc:
            log.exception("replay %s failed", job_id)
            await self.set_status(job_id, Status.FAILED, f"internal error: {exc}")
        return await self.get(job_id)

    async def _run(
        self, job: ReplayJob, on_progress: Callable[[ReplayJob], None] | None, stop: asyncio.Event
    ) -> ReplayJob:
        spec = job.spec
        judge = Judge(
            await self.snapshot(spec),
            spec.filters(),
            compiled_fixes(spec),
            self.ingest,
            self.kafka.events_topic,
        )
        publisher = None
        if not spec.dry_run and any(job.positions[p] < end for p, end in job.ends.items()):
            publisher = KafkaPublisher(self.kafka, Metrics())
            await publisher.start()
            if not await publisher.wait_connected(CONNECT_S):
                await publisher.stop()
                raise KafkaUnavailable(f"Kafka at {self.kafka.bootstrap_servers} not reachable")
        # One consumer per topic: a consumer's partition metadata follows what it reads.
        consumer = await self._consumer()
        watcher = await self._consumer() if publisher is not None else None
        try:
            if publisher is not None and watcher is not None:
                await self._settle_pending(watcher, job.id)
            topic = self.kafka.quarantine_topic
            async for chunk in _chunks(consumer, topic, job, self.chunk_records):
                if stop.is_set():
                    await self.set_status(job.id, Status.CANCELLED)
                    return await self.get(job.id)
                verdicts = await asyncio.to_thread(judge.judge_all, _in_time(chunk, spec))
                job.progress.read += len(chunk)
                before = msgspec.structs.replace(job.progress)
                passing = _tally(job.progress, verdicts)
                if publisher is not None and watcher is not None:
                    await self._publish(publisher, watcher, job, passing)
                else:
                    job.progress.passed += len(passing)
                self._count(before, job.progress, spec.dry_run)
                await self._save(job)
                if on_progress is not None:
                    on_progress(job)
        finally:
            await consumer.stop()
            if watcher is not None:
                await watcher.stop()
            if publisher is not None:
                await publisher.stop()
        async with self.store.engine.begin() as conn:
            await stored.update_job(conn, job.id, now_text(), status=Status.DONE)
        return await self.get(job.id)

    def _count(self, before: Progress, after: Progress, dry_run: bool) -> None:
        counted = self.metrics.replay_events
        if dry_run:
            counted.labels("would_pass").inc(after.passed - before.passed)
        else:
            counted.labels("published").inc(after.published - before.published)
            counted.labels("already_replayed").inc(after.already_replayed - before.already_replayed)
        counted.labels("still_failing").inc(after.still_failing - before.still_failing)

    async def _publish(
        self,
        publisher: KafkaPublisher,
        watcher: AIOKafkaConsumer,
        job: ReplayJob,
        passing: list[Verdict],
    ) -> None:
        """``watcher``: a consumer of the events topic."""
        wanted: dict[tuple[str, str], Verdict] = {}
        for v in passing:
            wanted.setdefault((v.source_id, stored.message_key(v.message_id)), v)
        since = await _end_offsets(watcher, self.kafka.events_topic)
        async with self.store.engine.begin() as conn:
            claimed = await stored.claim(
                conn,
                job.id,
                now_text(),
                [(s, k, v.origin) for (s, k), v in wanted.items()],
            )
            await stored.update_job(conn, job.id, now_text(), pending_since=since)
        records = [v.record for key, v in wanted.items() if key in claimed and v.record]
        await publisher.publish(records, self.ingest.ack_timeout_s)
        job.progress.passed += len(passing)
        job.progress.published += len(records)
        job.progress.already_replayed += len(passing) - len(records)
        async with self.store.engine.begin() as conn:
            await stored.mark_done(conn, job.id)
            await stored.update_job(conn, job.id, now_text(), pending_since=None)

    async def _save(self, job: ReplayJob) -> None:
        async with self.store.engine.begin() as conn:
            await stored.update_job(
                conn,
                job.id,
                now_text(),
                progress=msgspec.to_builtins(job.progress),
                positions=job.positions,
            )

    async def _settle_pending(self, consumer: AIOKafkaConsumer, job_id: str) -> None:
        """After a run cut short: which of its claimed events reached the events topic."""
        async with self.store.read() as conn:
            row = await stored.get_job(conn, job_id)
            pending = set(await stored.pending(conn, job_id))
        if row.pending_since is None and not pending:
            return
        found: set[tuple[str, str]] = set()
        if pending and row.pending_since is not None:
            found = await _replayed_since(
                consumer, self.kafka.events_topic, row.pending_since, pending
            )
        log.info(
            "replay %s: %d of %d events claimed by a run cut short had reached Kafka",
            job_id,
            len(found),
            len(pending),
        )
        async with self.store.engine.begin() as conn:
            await stored.mark_done(conn, job_id, found)
            await stored.release(conn, job_id)
            await stored.update_job(conn, job_id, now_text(), pending_since=None)

    async def _consumer(self) -> AIOKafkaConsumer:
        return await started_consumer(self.kafka, "gateway-replay")


def _tally(progress: Progress, verdicts: list[Verdict]) -> list[Verdict]:
    passing = []
    for v in verdicts:
        if not v.selected:
            continue
        progress.selected += 1
        if v.record is not None:
            passing.append(v)
        else:
            progress.count_failure(v.why)
    return passing


async def _plans_at_version(conn: Any, document: dict[str, Any], spec: ReplaySpec) -> None:
    version = spec.plan_version
    assert version is not None
    plans = {p["id"]: p for p in document["trackingPlans"]}
    for source in document["sources"]:
        connection = source["trackingPlan"]
        if connection is None or (spec.source_id is not None and source["id"] != spec.source_id):
            continue
        plan_id = connection["id"]
        if plans[plan_id]["version"] != version:
            at = await plan_at_version(conn, plan_id, version)
            if at is None:
                raise BadRequest(f"tracking plan {plan_id} has no version {version}")
            plans[plan_id] = at
        connection["version"] = version
    document["trackingPlans"] = list(plans.values())


async def _end_offsets(consumer: AIOKafkaConsumer, topic: str) -> dict[str, int]:
    partitions = await partitions_of(consumer, topic)
    ends = await ends_of(consumer, partitions) if partitions else {}
    return {str(tp.partition): offset for tp, offset in ends.items()}


async def _range(
    consumer: AIOKafkaConsumer, topic: str, spec: ReplaySpec
) -> tuple[dict[str, int], dict[str, int]]:
    """Start positions and end offsets per partition (keys: partition numbers as text)."""
    partitions = await partitions_of(consumer, topic)
    if spec.partitions is not None:
        unknown = sorted(set(spec.partitions) - {tp.partition for tp in partitions})
        if unknown:
            raise BadRequest(f"{topic} has no partition {', '.join(map(str, unknown))}")
        partitions = [tp for tp in partitions if tp.partition in spec.partitions]
    if not partitions:
        return {}, {}
    first = await consumer.beginning_offsets(partitions)
    last = await ends_of(consumer, partitions)
    starts, ends = dict(first), dict(last)
    # Where the times fall, as a first bound; records are checked one by one too (_in_time).
    if spec.since is not None:
        starts = await time_offsets(consumer, partitions, _ms(spec.since), last, first)
    if spec.until is not None:
        ends = await time_offsets(consumer, partitions, _ms(spec.until), last, last)
    if spec.from_offset is not None:
        starts = {tp: max(starts[tp], spec.from_offset) for tp in partitions}
    if spec.to_offset is not None:
        ends = {tp: min(ends[tp], spec.to_offset) for tp in partitions}
    return (
        {str(tp.partition): min(starts[tp], ends[tp]) for tp in partitions},
        {str(tp.partition): ends[tp] for tp in partitions},
    )


def _ms(time: datetime) -> int:
    return int(time.timestamp() * 1000)


def _in_time(records: list[Any], spec: ReplaySpec) -> list[Any]:
    since = _ms(spec.since) if spec.since is not None else None
    until = _ms(spec.until) if spec.until is not None else None
    if since is None and until is None:
        return records
    return [
        r
        for r in records
        if (since is None or r.timestamp >= since) and (until is None or r.timestamp < until)
    ]


async def _chunks(
    consumer: AIOKafkaConsumer, topic: str, job: ReplayJob, chunk_records: int
) -> AsyncIterator[list[Any]]:
    """The job's remaining records, a chunk at a time; ``job.positions`` follows each chunk."""
    ranges = {TopicPartition(topic, int(p)): (job.positions[p], end) for p, end in job.ends.items()}
    positions: dict[TopicPartition, int] = {}

    def follow() -> None:
        job.positions.update({str(tp.partition): at for tp, at in positions.items()})

    async for chunk in read_range(consumer, ranges, positions, chunk_records):
        follow()
        yield chunk
    follow()
    if not read_all(ranges, positions):
        short = ", ".join(f"{p}@{job.positions[p]}" for p in job.ends)
        raise OSError(f"{topic} gave no records for {STALL_FETCHES} s at {short}")


async def _replayed_since(
    consumer: AIOKafkaConsumer,
    topic: str,
    since: dict[str, int],
    pending: set[tuple[str, str]],
) -> set[tuple[str, str]]:
    """Which of ``pending`` the events topic holds as replayed records after ``since``."""
    ranges = {
        TopicPartition(topic, int(p)): (since.get(p, 0), end)
        for p, end in (await _end_offsets(consumer, topic)).items()
    }
    positions: dict[TopicPartition, int] = {}
    found: set[tuple[str, str]] = set()
    async for batch in read_range(consumer, ranges, positions):
        for r in batch:
            if REPLAYED_HEADER not in (r.headers or ()):
                continue
            source_id = dict(r.headers).get("source-id", b"").decode()
            try:
                message_id = orjson.loads(r.value).get("messageId")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if isinstance(message_id, str):
                key = (source_id, stored.message_key(message_id))
                if key in pending:
                    found.add(key)
        if found == pending:
            return found
    if not read_all(ranges, positions):
        raise OSError(f"{topic} gave no records for {STALL_FETCHES} s while checking a replay")
    return found
