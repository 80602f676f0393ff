"""The plan cache: serves the current snapshot, refreshes it in the background, survives outages.

- ``current`` is one attribute, replaced whole (an atomic swap): a request sees either the old
  snapshot or the new one, never a mix.
- Refreshes run every ``refresh_interval_s`` ± 10 % jitter, so replicas do not poll in step.
  Decoding and parsing run in a worker thread, off the event loop.
- Every good document is persisted to ``cache_dir``; when the provider is unreachable at start
  the persisted one is served, and when a refresh fails the last good snapshot keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from gateway.metrics import Metrics
from gateway.plans.providers import Fetched, ProviderError, SnapshotProvider, decode_document
from gateway.plans.snapshot import (
    Snapshot,
    SnapshotError,
    compact_snapshot,
    snapshot_from_compact,
    snapshot_revision_of,
)

log = logging.getLogger(__name__)

PERSISTED_NAME = "snapshot.json"
# Documents at least this large are decoded in a child process (see load_snapshot).
CHILD_PARSE_BYTES = 1 << 20
CHECK_FAILED = 3  # exit code of `python -m gateway.plans.check` for a malformed document
JITTER_RATIO = 0.1


class PlanCache:
    def __init__(
        self,
        provider: SnapshotProvider,
        *,
        cache_dir: str | Path,
        refresh_interval_s: float,
        metrics: Metrics,
    ) -> None:
        self.provider = provider
        self.cache_dir = Path(cache_dir)
        self.refresh_interval_s = refresh_interval_s
        self.metrics = metrics
        self.current: Snapshot | None = None
        self._etag: str | None = None
        self._confirmed_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        # Called with each new snapshot right after it is swapped in (on the event loop).
        self.on_swap: list[Callable[[Snapshot], None]] = []
        if not metrics.multiprocess:
            metrics.plan_snapshot_age.set_function(self.age_s)
        # Across processes a gauge cannot be computed at scrape time: refresh it each second.
        self._age_task: asyncio.Task[None] | None = None

    def age_s(self) -> float:
        """Seconds since the provider last confirmed the snapshot (0 before the first load)."""
        return 0.0 if self._confirmed_at is None else time.monotonic() - self._confirmed_at

    async def start(self) -> None:
        result = await self.refresh_once()
        if result == "error":
            await self._load_persisted()
        self._task = asyncio.create_task(self._refresh_loop(), name="plan-cache-refresh")
        if self.metrics.multiprocess:
            self._age_task = asyncio.create_task(self._publish_age(), name="plan-age")

    async def stop(self) -> None:
        for task in (self._task, self._age_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._age_task = None
        await self.provider.close()

    async def refresh_once(self) -> str:
        """Fetch, parse and swap in a changed snapshot. Returns the result label."""
        try:
            fetched = await self.provider.fetch(self._etag if self.current else None)
            if fetched is None:
                result = "not_modified"
            else:
                snapshot, content = await load_snapshot(fetched)
                self._swap(snapshot)
                self._etag = fetched.etag
                await asyncio.to_thread(self._persist, content)
                log.info(
                    "plan snapshot %s loaded from %s: %d sources, %d tracking plans",
                    snapshot.revision,
                    self.provider.description,
                    len(snapshot.sources),
                    len(snapshot.tracking_plans),
                )
                result = "updated"
            self._confirmed_at = time.monotonic()
        except (ProviderError, SnapshotError) as exc:
            # The last good snapshot keeps serving.
            log.warning("plan snapshot refresh from %s failed: %s", self.provider.description, exc)
            result = "error"
        except Exception:
            # Whatever a provider raises, the refresh loop must live on and keep serving.
            log.exception("plan snapshot refresh from %s failed", self.provider.description)
            result = "error"
        self.metrics.plan_refresh.labels(result).inc()
        return result

    async def _publish_age(self) -> None:
        while True:
            self.metrics.plan_snapshot_age.set(self.age_s())
            await asyncio.sleep(1.0)

    def _swap(self, snapshot: Snapshot) -> None:
        self.current = snapshot
        for listener in self.on_swap:
            listener(snapshot)

    async def _refresh_loop(self) -> None:
        while True:
            jitter = 1 + random.uniform(-JITTER_RATIO, JITTER_RATIO)
            await asyncio.sleep(self.refresh_interval_s * jitter)
            await self.refresh_once()

    async def _load_persisted(self) -> None:
        path = self.cache_dir / PERSISTED_NAME
        try:
            content, modified_at = await asyncio.to_thread(_read_with_mtime, path)
            snapshot, _ = await load_snapshot(Fetched(content, ""))
        except FileNotFoundError:
            log.error("no plan snapshot: source unreachable and nothing persisted at %s", path)
            return
        except (OSError, SnapshotError) as exc:
            log.error("persisted plan snapshot %s is unusable: %s", path, exc)
            return
        self._swap(snapshot)
        # The file is rewritten on every good load, so its age is the snapshot's staleness.
        self._confirmed_at = time.monotonic() - max(0.0, time.time() - modified_at)
        log.warning(
            "serving persisted plan snapshot %s from %s until %s is reachable",
            snapshot.revision,
            path,
            self.provider.description,
        )

    def _persist(self, content: bytes) -> None:
        """Write the last good document atomically (temp file + rename)."""
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".snapshot-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            os.replace(tmp, self.cache_dir / PERSISTED_NAME)
        except OSError as exc:
            log.warning("cannot persist plan snapshot to %s: %s", self.cache_dir, exc)


def _read_with_mtime(path: Path) -> tuple[bytes, float]:
    with path.open("rb") as fh:
        return fh.read(), os.fstat(fh.fileno()).st_mtime


async def load_snapshot(fetched: Fetched) -> tuple[Snapshot, bytes]:
    """The snapshot to serve, and the document to persist, built off the event loop.

    The document is checked in a thread, or for documents of ``CHILD_PARSE_BYTES`` and more
    in a child process: decoding holds the GIL throughout, for seconds on a large catalog,
    which would stall ingestion. The snapshot is then built in a thread (see
    :func:`_build_for_serving`).
    """
    if len(fetched.content) < CHILD_PARSE_BYTES:
        compact, content = await asyncio.to_thread(check_document, fetched)
    else:
        compact, content = await _check_in_child(fetched)
    return await asyncio.to_thread(_build_for_serving, compact), content


async def _check_in_child(fetched: Fetched) -> tuple[bytes, bytes]:
    """:func:`check_document` in ``python -m gateway.plans.check``.

    The document goes to its stdin and the compact form comes back on its stdout, both through
    the event loop in small writes and reads: nothing large is copied or pickled while holding
    the GIL.
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.plans.check",
        "yaml" if fetched.yaml else "json",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await child.communicate(fetched.content)
    except BaseException:  # cancelled (shutdown): do not leave the child behind
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        raise
    if child.returncode == CHECK_FAILED:
        raise SnapshotError(err.decode(errors="replace").strip())
    if child.returncode != 0:
        raise SnapshotError(f"snapshot check exited with {child.returncode}: {err[-500:]!r}")
    compact_len, _, rest = out.partition(b"\n")
    compact, derived = rest[: int(compact_len)], rest[int(compact_len) :]
    return compact, derived or fetched.content


def _build_for_serving(compact: bytes) -> Snapshot:
    """Build a snapshot whose objects the cyclic garbage collector then leaves alone.

    A large snapshot is a million objects. Without this, every full collection (which building
    one triggers, repeatedly) walks them all while holding the GIL, stalling requests for
    hundreds of milliseconds. Snapshot objects form no cycles: reference counting frees them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        snapshot = snapshot_from_compact(compact)
    finally:
        if enabled:
            gc.enable()
    gc.freeze()
    return snapshot


def build_snapshot(fetched: Fetched) -> tuple[Snapshot, bytes]:
    """The snapshot, and the JSON document to persist for it."""
    compact, content = check_document(fetched)
    return snapshot_from_compact(compact), content


def check_document(fetched: Fetched) -> tuple[bytes, bytes]:
    """Decode and check a document: its compact form, and the JSON document to persist.

    The decoded document is dropped on return, before the snapshot is built from the compact
    form (see :func:`compact_snapshot`).
    """
    doc = decode_document(fetched)
    if not isinstance(doc, dict):
        raise SnapshotError("snapshot: must be an object")
    content = fetched.content  # persisted as fetched, unless the cases below apply
    if "revision" not in doc:
        # Persist the derived revision too, so a restart reports the same one.
        doc = {"revision": snapshot_revision_of(fetched.content), **doc}
        content = orjson.dumps(doc)
    elif fetched.yaml:
        content = orjson.dumps(doc)
    return compact_snapshot(doc), content
