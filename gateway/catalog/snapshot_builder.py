"""The plan snapshot built from the catalog, and ``GET /internal/v1/snapshot``.

The snapshot is the whole contract between catalog and data plane: one JSON document
``{"revision", "sources": [{"id", "name", "enabled", "writeKeys", "trackingPlan"?: {"id",
"version", "config"}}], "trackingPlans": [{"id", "name", "version", "events": [{"name",
"eventType", "identitySection", "rules"}]}]}``, where ``revision`` changes whenever anything
else in it does.

The document is read in one transaction, so it is consistent; its ``revision`` is the catalog
revision, which every relevant write bumps, and the endpoint's ETag is that revision:
an unchanged catalog answers ``If-None-Match`` with 304 after a single-row read.

:class:`SnapshotBuilder` builds and serialises it once per revision, for every replica and the
local data plane alike. Admin writes refuse what could not be served (gateway.catalog.rules),
so a build should never fail; if one does anyway (a row written behind the API's back, a
corrupt database), that is counted in ``gateway_snapshot_build_errors_total``, logged once per
revision, answered 503 to replicas — which keep serving their last good snapshot — and
reported as ``snapshotBuild: false`` by the admin port's ``/health/ready``.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from gateway.catalog.store import Store
from gateway.catalog.store.snapshot import read_snapshot_document
from gateway.errors import ApiError
from gateway.metrics import Metrics
from gateway.plans.document import Fetched
from gateway.plans.providers import SNAPSHOT_PATH, ProviderError

log = logging.getLogger(__name__)


class SnapshotUnavailable(ApiError):
    """The plan snapshot cannot be built now (admin port); a replica keeps its last good one
    and retries."""

    status = 503
    code = "snapshot_unavailable"
    retry_after_s = 10


def etag_of(revision: int | str) -> str:
    return f'"{revision}"'


class SnapshotBuilder:
    """The serialised snapshot of the catalog's current revision, built once per revision."""

    def __init__(self, store: Store, metrics: Metrics, pinned_versions: int = 0) -> None:
        self.store = store
        self.pinned_versions = pinned_versions
        self.metrics = metrics
        self._built: tuple[str, bytes] | None = None  # (revision, document)
        # The revision whose build failed, and why: not retried until the catalog changes
        # (the failure is in the data), so neither the log nor the metric repeats per poll.
        self._failed: tuple[str, str] | None = None
        self._lock = asyncio.Lock()  # replicas polling together share one build

    async def revision(self) -> int:
        try:
            _, revision = await self.store.state()
        except SQLAlchemyError as exc:
            raise SnapshotUnavailable(f"catalog store: {type(exc).__name__}") from None
        return revision

    async def content(self, revision: int) -> tuple[str, bytes]:
        """(revision, JSON document) of the snapshot at ``revision`` or later."""
        async with self._lock:
            if self._built is not None and self._built[0] == str(revision):
                return self._built
            if self._failed is not None and self._failed[0] == str(revision):
                raise SnapshotUnavailable(self._failed[1])
            try:
                document = await read_snapshot_document(self.store, self.pinned_versions)
                content = await asyncio.to_thread(orjson.dumps, document)
            except SQLAlchemyError as exc:
                # The database, not its content: the catalog readiness check reports it.
                raise SnapshotUnavailable(f"catalog store: {type(exc).__name__}") from None
            except Exception as exc:
                message = f"the plan snapshot of catalog revision {revision} cannot be built: {exc}"
                self.metrics.snapshot_build_errors.inc()
                log.error("%s; ingest keeps serving its last good snapshot", message)
                self._failed = (str(revision), message)
                raise SnapshotUnavailable(message) from None
            self._built = (str(document["revision"]), content)
            self._failed = None
            return self._built

    async def servable(self) -> bool:
        """Whether the catalog's current snapshot builds (for the admin port's readiness)."""
        try:
            await self.content(await self.revision())
        except SnapshotUnavailable:
            return False
        return True


SNAPSHOTS_KEY = web.AppKey("snapshots", SnapshotBuilder)


async def snapshot_endpoint(request: web.Request) -> web.Response:
    builder = request.app[SNAPSHOTS_KEY]
    revision = await builder.revision()
    if request.headers.get("If-None-Match") == etag_of(revision):
        return web.Response(status=304, headers={"ETag": etag_of(revision)})
    built_revision, content = await builder.content(revision)
    return web.Response(
        body=content, content_type="application/json", headers={"ETag": etag_of(built_revision)}
    )


class LocalProvider:
    """The snapshot straight from the catalog store, for role ``all`` (no HTTP hop)."""

    description = "local catalog"

    def __init__(self, builder: SnapshotBuilder) -> None:
        self.builder = builder

    async def fetch(self, etag: str | None) -> Fetched | None:
        try:
            revision = await self.builder.revision()
            if etag == str(revision):
                return None
            built_revision, content = await self.builder.content(revision)
        except SnapshotUnavailable as exc:
            raise ProviderError(exc.message) from None
        return Fetched(content, built_revision)

    async def close(self) -> None:
        return None


def add_snapshot_route(app: web.Application) -> None:
    app.router.add_get(SNAPSHOT_PATH, snapshot_endpoint)
