"""The plan cache: serves the current snapshot, refreshes it in the background, survives outages.

- ``current`` is one attribute, replaced whole (an atomic swap): a request sees either the old
  snapshot or the new one, never a mix.
- Refreshes run every ``refresh_interval_s`` ± 10 % jitter, so replicas do not poll in step.
  All blocking work runs in one background thread, off the event loop (see
  :meth:`PlanCache.in_background`); a replaced snapshot is freed there too, piece by piece.
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.metrics import Metrics
from gateway.plans.document import CHECK_FAILED, Fetched, check_document
from gateway.plans.providers import ProviderError, SnapshotProvider
from gateway.plans.snapshot import Snapshot, SnapshotError, snapshot_from_compact

log = logging.getLogger(__name__)
T = TypeVar("T")

PERSISTED_NAME = "snapshot.json"
# Documents at least this large are decoded in a child process (see PlanCache._load).
CHILD_PARSE_BYTES = 1 << 20
JITTER_RATIO = 0.1
# A replaced snapshot is released once no request holds it, waiting at most this long.
RELEASE_POLL_S = 0.05
RELEASE_POLLS = 600  # 30 s


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
        self._releasing: set[asyncio.Task[None]] = set()
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plans")

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
        for task in (self._task, self._age_task, *self._releasing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._age_task = None
        self._background.shutdown(wait=False, cancel_futures=True)
        await self.provider.close()

    async def in_background(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work of the plan cache (or of a swap listener) in its one thread.

        One thread does all of it: checking, building, persisting and releasing snapshots,
        and compiling their rules. The event loop then competes for the GIL with
        one thread at most, and waits for it one switch interval at most; several busy
        threads hand the GIL among themselves and stall the loop for tens of milliseconds.
        """
        return await asyncio.get_running_loop().run_in_executor(self._background, fn, *args)

    async def refresh_once(self) -> str:
        """Fetch, parse and swap in a changed snapshot. Returns the result label."""
        try:
            fetched = await self.provider.fetch(self._etag if self.current else None)
            if fetched is None:
                result = "not_modified"
            else:
                snapshot, content = await self._load(fetched)
                # Before the swap: a swap queues the rules' compilation in the same thread.
                await self.in_background(self._persist, content)
                self._swap(snapshot)
                self._etag = fetched.etag
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
        retired = [self.current] if self.current is not None else None
        self.current = snapshot
        for listener in self.on_swap:
            listener(snapshot)
        if retired is not None:
            task = asyncio.create_task(self._release(retired), name="plan-snapshot-release")
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _refresh_loop(self) -> None:
        while True:
            jitter = 1 + random.uniform(-JITTER_RATIO, JITTER_RATIO)
            await asyncio.sleep(self.refresh_interval_s * jitter)
            await self.refresh_once()

    async def _load_persisted(self) -> None:
        path = self.cache_dir / PERSISTED_NAME
        try:
            content, modified_at = await self.in_background(_read_with_mtime, path)
            snapshot, _ = await self._load(Fetched(content, ""))
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

    async def _load(self, fetched: Fetched) -> tuple[Snapshot, bytes]:
        """The snapshot to serve, and the document to persist, built off the event loop.

        The document is checked in the background thread, or for documents of
        ``CHILD_PARSE_BYTES`` and more in a child process: decoding holds the GIL throughout,
        for seconds on a large catalog, which would stall ingestion. The snapshot is then built
        in the background thread (see :func:`_build_for_serving`).
        """
        if len(fetched.content) < CHILD_PARSE_BYTES:
            compact, content = await self.in_background(check_document, fetched)
        else:
            compact, content = await self._check_in_child(fetched)
        return await self.in_background(_build_for_serving, compact), content

    async def _check_in_child(self, fetched: Fetched) -> tuple[bytes, bytes]:
        """:func:`check_document` in ``python -m gateway.plans.decoder``.

        The child is started and fed from the background thread: ``subprocess`` uses vfork,
        which takes microseconds whatever the gateway's size (a fork copies the page tables of
        hundreds of megabytes, stalling the event loop), and the pipes are written and read with
        the GIL released. A cancelled refresh (shutdown) kills the child.
        """
        child = await self.in_background(_start_check, fetched.yaml)
        try:
            return await self.in_background(_child_result, child, fetched.content)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            raise

    async def _release(self, retired: list[Snapshot]) -> None:
        """Free a replaced snapshot a piece at a time, in the background thread.

        Freeing a large snapshot at once is one C call chain of tens of milliseconds, holding
        the GIL wherever the last reference drops (on the event loop, usually). Once requests
        that took the old snapshot have finished with it, it is dismantled entry by entry, and
        the event loop gets the GIL in between. If a reference lingers past the wait, the
        snapshot is left to reference counting.
        """
        for _ in range(RELEASE_POLLS):
            if _references(retired) == _UNSHARED:
                break
            await asyncio.sleep(RELEASE_POLL_S)
        await self.in_background(_dismantle, retired)

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


def _references(retired: list[Any]) -> int:
    return sys.getrefcount(retired[0])


# What _references counts for an object held by its list alone (measured, not assumed: the
# interpreter's own references during the call differ between Python versions).
_UNSHARED = _references([object()])


def _dismantle(retired: list[Snapshot]) -> None:
    # Nothing can take a new reference meanwhile: the snapshot is no longer served.
    unshared = _references(retired) == _UNSHARED
    snapshot = retired.pop()
    if unshared:
        snapshot.dismantle()


def _read_with_mtime(path: Path) -> tuple[bytes, float]:
    with path.open("rb") as fh:
        return fh.read(), os.fstat(fh.fileno()).st_mtime


def _start_check(yaml: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.plans.decoder", "yaml" if yaml else "json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _child_result(child: subprocess.Popen[bytes], content: bytes) -> tuple[bytes, bytes]:
    out, err = child.communicate(content)
    if child.returncode == CHECK_FAILED:
        raise SnapshotError(err.decode(errors="replace").strip())
    if child.returncode != 0:
        raise SnapshotError(f"snapshot check exited with {child.returncode}: {err[-500:]!r}")
    compact_len, _, rest = out.partition(b"\n")
    compact, derived = rest[: int(compact_len)], rest[int(compact_len) :]
    return compact, derived or content


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
        # Before the collector is enabled again: otherwise the next allocation in any thread
        # collects the young generation, now holding every object just built, and survivors
        # move on to be collected again with the older generations (three stalls of ~10 ms).
        gc.freeze()
    finally:
        if enabled:
            gc.enable()
    return snapshot
