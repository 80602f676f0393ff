"""``gateway replay``: replay quarantined events from the command line.

It runs the job in this process, with its state in the catalog (``catalog.database_url``) like
the native API's jobs, so an interrupted replay is resumed with ``--resume JOB_ID`` from
either. A progress bar is shown on a terminal; the summary (or, with ``--json``, the job) is
printed at the end. Exit codes: 0 done, 1 failed or interrupted, 2 a bad request.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import orjson
from tqdm import tqdm

from gateway.catalog.store import Store
from gateway.config import Settings
from gateway.errors import ApiError
from gateway.replay.runner import ReplayJob, Replays, Status
from gateway.replay.spec import ReplaySpec
from gateway.tail import printable

_RELATIVE = re.compile(r"([0-9]{1,9})([smhd])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_FIXES_FILE_BYTES = 4 * 1024 * 1024


class CommandError(Exception):
    pass


def spec_of(args: argparse.Namespace, now: datetime) -> ReplaySpec:
    """The replay the arguments ask for (CommandError names what is wrong)."""
    fields: dict[str, Any] = {
        "since": _time(args.since, now, "--since"),
        "until": _time(args.until, now, "--until"),
        "partitions": args.partition,
        "fromOffset": args.from_offset,
        "toOffset": args.to_offset,
        "sourceId": args.source,
        "reason": args.reason,
        "event": args.event,
        "planVersion": args.plan_version,
        "fixes": _fixes(args.fix),
        "dryRun": args.dry_run,
    }
    try:
        spec = msgspec.convert({k: v for k, v in fields.items() if v is not None}, ReplaySpec)
        spec.check()
    except msgspec.ValidationError as exc:
        raise CommandError(str(exc)) from None
    except ApiError as exc:
        raise CommandError(exc.message) from None
    return spec


def _time(text: str | None, now: datetime, option: str) -> str | None:
    if text is None:
        return None
    relative = _RELATIVE.match(text)
    if relative:
        delta = timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
        return (now - delta).isoformat()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option}: {text!r} is neither RFC 3339 nor like 30m, 2h, 7d") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


def _fixes(path: str | None) -> Any:
    if path is None:
        return None
    try:
        content = Path(path).read_bytes()[: MAX_FIXES_FILE_BYTES + 1]
    except OSError as exc:
        raise CommandError(f"--fix: {exc}") from None
    if len(content) > MAX_FIXES_FILE_BYTES:
        raise CommandError(f"--fix: {path} is over {MAX_FIXES_FILE_BYTES} bytes")
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"--fix: {path} is not JSON: {exc}") from None


MAX_CHUNK_RECORDS = 10_000


async def replay(settings: Settings, args: argparse.Namespace) -> int:
    if not 1 <= args.chunk_records <= MAX_CHUNK_RECORDS:
        raise CommandError(f"--chunk-records: from 1 to {MAX_CHUNK_RECORDS}")
    store = Store(settings.catalog.database_url)
    await store.open()
    replays = Replays(
        store,
        settings.kafka,
        settings.ingest,
        args.chunk_records,
        pinned_versions=settings.catalog.pinned_versions,
    )
    try:
        if args.resume:
            job = await replays.get(args.resume)
            if job.status == Status.DONE:
                raise CommandError(f"replay {job.id} is done already")
        else:
            job = await replays.create(spec_of(args, datetime.now(UTC)))
            print(f"replay {job.id}: {job.progress.total} records in range", file=sys.stderr)
        job = await _run_with_progress(replays, job)
    except ApiError as exc:
        raise CommandError(exc.message) from None
    finally:
        await store.close()
    if args.json:
        print(msgspec.json.encode(job).decode())
    else:
        print(summary(job))
    return 0 if job.status == Status.DONE else 1


async def _run_with_progress(replays: Replays, job: ReplayJob) -> ReplayJob:
    done_before = job.progress.read
    bar = tqdm(
        total=job.progress.total,
        initial=done_before,
        unit="rec",
        desc="dry run" if job.spec.dry_run else "replay",
        disable=not sys.stderr.isatty(),
        file=sys.stderr,
    )

    def shown(current: ReplayJob) -> None:
        bar.update(current.progress.read - bar.n)
        bar.set_postfix(passed=current.progress.passed, failing=current.progress.still_failing)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # stop after the chunk in hand: resumable
    try:
        return await replays.run(job.id, shown, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        bar.close()


def summary(job: ReplayJob) -> str:
    p = job.progress
    dry = job.spec.dry_run
    lines = [
        f"replay {job.id}: {job.status}" + (" (dry run)" if dry else ""),
        f"  records read      {p.read} of {p.total}",
        f"  selected          {p.selected}",
        f"  {'would pass' if dry else 'pass now':<17} {p.passed}",
    ]
    if not dry:
        lines.append(f"  published         {p.published}")
        lines.append(f"  replayed before   {p.already_replayed}")
    lines.append(f"  still failing     {p.still_failing}")
    for why, count in sorted(p.failures.items(), key=lambda kv: -kv[1])[:20]:
        lines.append(f"    {count:>8}  {printable(why)}")  # client text: no terminal escapes
    if job.error:
        lines.append(f"  error: {job.error}")
    if job.status in (Status.CANCELLED, Status.INTERRUPTED, Status.FAILED):
        lines.append(f"  resume with: gateway replay --resume {job.id}")
    return "\n".join(lines)
