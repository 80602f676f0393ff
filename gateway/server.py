"""Assembling and running the gateway: roles, ports, startup order and graceful drain.

Startup: plan cache (snapshot or persisted copy) → Kafka producer (connects in the background,
``/health/ready`` says when) → HTTP listeners. Shutdown (SIGTERM/SIGINT): stop accepting, let
in-flight requests finish (each waits at most ``ingest.ack_timeout_s`` for Kafka), flush the
producer, exit — an event that got a 200 is in Kafka, and none is dropped half-way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from gateway.catalog.auth import TokenAuth
from gateway.catalog.declared import add_routes
from gateway.catalog.http import (
    AUTH_KEY,
    KAFKA_KEY,
    STORE_KEY,
    add_rudderstack_base_aliases,
    record_catalog_changes,
    require_token,
)
from gateway.catalog.native.replays import REPLAYS_KEY, ReplayJobs
from gateway.catalog.native.routes import NATIVE_API
from gateway.catalog.routes import CATALOG_ROUTES
from gateway.catalog.segment import RULES_LIMIT, add_segment_routes
from gateway.catalog.segment.routes import SEGMENT_ROUTES
from gateway.catalog.snapshot_builder import (
    SNAPSHOTS_KEY,
    LocalProvider,
    SnapshotBuilder,
    add_snapshot_route,
)
from gateway.catalog.store import Store
from gateway.config import LOCAL_SOURCE, Role, Settings
from gateway.enforce.enforcer import Enforcer
from gateway.http import Handler, ReadinessCheck, add_common_routes, make_middleware
from gateway.ingest.browser import add_browser_routes
from gateway.ingest.budget import ByteBudget
from gateway.ingest.client_ip import ClientAddress
from gateway.ingest.routes import InflightLimit, IngestContext, add_ingest_routes
from gateway.listener import ListenerLimits, TimedSite
from gateway.metrics import Metrics
from gateway.openapi import add_openapi_route
from gateway.pipeline import Pipeline
from gateway.plans.cache import PlanCache
from gateway.plans.providers import SnapshotProvider, provider_from_source
from gateway.plans.snapshot import Snapshot
from gateway.publish.producer import KafkaPublisher, Record
from gateway.replay.runner import Replays

log = logging.getLogger(__name__)

# Extra time, beyond the Kafka ack timeout, that shutdown grants in-flight requests.
DRAIN_GRACE_S = 5.0
READY_PROBE_TIMEOUT_S = 2.0
# Readiness is probed (database ping, Kafka metadata, on the admin port the snapshot build) at
# most once per this many seconds, however often /health/ready is hit.
READY_CACHE_S = 1.0


class CachedReadiness:
    """A readiness check run at most once per ``ttl_s``; concurrent callers share one run."""

    def __init__(self, check: ReadinessCheck, ttl_s: float) -> None:
        self._check = check
        self._ttl_s = ttl_s
        self._result: dict[str, bool] | None = None
        self._at = 0.0
        self._running: asyncio.Task[dict[str, bool]] | None = None

    async def __call__(self) -> dict[str, bool]:
        loop = asyncio.get_running_loop()
        if self._result is not None and loop.time() - self._at < self._ttl_s:
            return self._result
        if self._running is None:
            self._running = loop.create_task(self._run(), name="readiness")
        # Shielded: a caller that goes away does not cancel the run the others wait for.
        return await asyncio.shield(self._running)

    async def _run(self) -> dict[str, bool]:
        try:
            self._result = await self._check()
            self._at = asyncio.get_running_loop().time()
            return self._result
        finally:
            self._running = None


class Drain:
    """Counts requests in progress so shutdown can wait for them, and closes connections then."""

    def __init__(self) -> None:
        self.active = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.active += 1
        self._idle.clear()
        try:
            response = await handler(request)
            if self.draining:
                response.force_close()  # the client must not reuse a closing server's connection
            return response
        finally:
            self.active -= 1
            if not self.active:
                self._idle.set()

    def start(self) -> None:
        self.draining = True

    async def wait(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("%d requests still running after %.0fs; closing", self.active, timeout_s)


class Gateway:
    def __init__(
        self,
        settings: Settings,
        role: Role = Role.ALL,
        *,
        provider: SnapshotProvider | None = None,
        reuse_port: bool = False,
        observer: Callable[[Sequence[Record]], None] | None = None,
        ingest_routes: Callable[[web.Application], None] | None = None,
    ) -> None:
        """``observer`` is told each request's records once Kafka acknowledged them, and
        ``ingest_routes`` adds routes to the ingest port (both: `gateway dev`'s test API)."""
        # The same check `gateway serve` runs before anything starts, for callers that build a
        # Gateway themselves.
        settings.check_role(role)
        self.settings = settings
        self.role = role
        self.observer = observer
        self.ingest_routes = ingest_routes
        self.reuse_port = reuse_port
        self.metrics = Metrics()
        self.store: Store | None = None
        self.snapshots: SnapshotBuilder | None = None
        self.replay_jobs: ReplayJobs | None = None
        if role in (Role.ALL, Role.ADMIN):
            self.store = Store(settings.catalog.database_url)
            self.snapshots = SnapshotBuilder(
                self.store, self.metrics, settings.catalog.pinned_versions
            )
            self.replay_jobs = ReplayJobs(
                Replays(
                    self.store,
                    settings.kafka,
                    settings.ingest,
                    metrics=self.metrics,
                    pinned_versions=settings.catalog.pinned_versions,
                )
            )
        self.publisher = KafkaPublisher(settings.kafka, self.metrics)
        self.cache = PlanCache(
            provider or self._provider(),
            cache_dir=settings.plans.cache_dir,
            refresh_interval_s=settings.plans.refresh_interval_s,
            metrics=self.metrics,
        )
        self.enforcer = Enforcer()
        self.cache.on_swap.append(self._on_snapshot)
        self._warmup: asyncio.Task[None] | None = None
        self._runners: list[web.AppRunner] = []
        self._drain = Drain()
        self._probed = CachedReadiness(self.probe_services, READY_CACHE_S)
        self._admin_probed = CachedReadiness(self.probe_admin_services, READY_CACHE_S)
        self.ingest_port: int | None = None
        self.admin_port: int | None = None
        self.metrics_port: int | None = None

    def _provider(self) -> SnapshotProvider:
        plans = self.settings.plans
        if plans.source != LOCAL_SOURCE:
            return provider_from_source(plans.source, plans.token)
        assert self.snapshots is not None  # Settings.check_role refuses local plans without it
        return LocalProvider(self.snapshots)

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        """Drop compiled plans that are gone; compile new ones in the background."""
        self.enforcer.retain(snapshot)
        self._warmup = asyncio.get_running_loop().create_task(
            self.cache.in_background(self.enforcer.warm, snapshot), name="compile-plans"
        )

    @property
    def serves_ingest(self) -> bool:
        return self.role in (Role.ALL, Role.INGEST)

    async def probe_services(self) -> dict[str, bool]:
        """The checks that cost a round trip (database ping, Kafka metadata)."""
        checks: dict[str, bool] = {}
        if self.store is not None:
            checks["catalog"] = await self.store.ping()
        if self.serves_ingest:
            checks["kafka"] = await self.publisher.probe(READY_PROBE_TIMEOUT_S)
        return checks

    async def probe_admin_services(self) -> dict[str, bool]:
        """The admin port's checks: also whether the catalog's snapshot builds (a state query,
        and after a catalog write the build itself). Not on the ingest port, which keeps
        serving its last good snapshot meanwhile."""
        checks = dict(await self._probed())
        assert self.snapshots is not None
        checks["snapshotBuild"] = await self.snapshots.servable()
        return checks

    async def readiness(self) -> dict[str, bool]:
        return self._with_snapshot(await self._probed())

    async def admin_readiness(self) -> dict[str, bool]:
        return self._with_snapshot(await self._admin_probed())

    def _with_snapshot(self, probed: dict[str, bool]) -> dict[str, bool]:
        checks = dict(probed)
        if self.serves_ingest:
            checks["snapshot"] = self.cache.current is not None  # free: always current
        return checks

    def serving_facts(self) -> dict[str, Any]:
        if not self.serves_ingest:
            return {}
        snapshot = self.cache.current
        return {"snapshotRevision": snapshot.revision if snapshot is not None else None}

    def build_ingest_app(self) -> web.Application:
        s = self.settings
        app = web.Application(middlewares=[make_middleware(self.metrics, s.ingest.cors_origins)])
        add_ingest_routes(
            app,
            IngestContext(
                settings=s.ingest,
                cache=self.cache,
                publisher=self.publisher,
                pipeline=Pipeline(s.ingest, s.kafka, self.enforcer),
                inflight=InflightLimit(s.ingest.max_inflight_events, self.metrics),
                budget=ByteBudget(s.ingest.max_inflight_bytes, self.metrics),
                client_address=ClientAddress(s.ingest.trusted_proxies),
                metrics=self.metrics,
                observer=self.observer,
            ),
        )
        add_browser_routes(app)
        if self.ingest_routes is not None:
            self.ingest_routes(app)
        internals = s.ingest.serve_metrics_and_openapi
        add_common_routes(
            app, self.metrics, self.readiness, self.serving_facts, serve_metrics=internals
        )
        if internals:
            add_openapi_route(app)
        return app

    def build_metrics_app(self) -> web.Application:
        """Only /metrics and /health/*: for Prometheus, apart from the public port."""
        app = web.Application(middlewares=[make_middleware(self.metrics, ())])
        add_common_routes(app, self.metrics, self.readiness, self.serving_facts)
        return app

    def build_admin_app(self) -> web.Application:
        assert self.store is not None
        app = web.Application(
            middlewares=[make_middleware(self.metrics, ()), require_token, record_catalog_changes]
        )
        app[STORE_KEY] = self.store
        assert self.snapshots is not None
        assert self.replay_jobs is not None
        app[REPLAYS_KEY] = self.replay_jobs
        app[KAFKA_KEY] = self.settings.kafka
        app[SNAPSHOTS_KEY] = self.snapshots
        app[AUTH_KEY] = TokenAuth(self.settings.admin.tokens, self.settings.admin.snapshot_tokens)
        NATIVE_API.add_routes(app)
        add_routes(app, CATALOG_ROUTES)
        admin = self.settings.admin
        add_segment_routes(
            app,
            SEGMENT_ROUTES,
            {
                "default": admin.segment_requests_per_minute,
                RULES_LIMIT: admin.segment_rules_requests_per_minute,
            },
        )
        add_rudderstack_base_aliases(app)
        add_snapshot_route(app)
        add_common_routes(app, self.metrics, self.admin_readiness, self.serving_facts)
        add_openapi_route(app)
        return app

    async def start(self) -> None:
        s = self.settings
        if self.store is not None:
            await self.store.open()
        # The metrics and admin ports use the admin section's time limits.
        admin_limits = ListenerLimits(s.admin.read_timeout_s, s.admin.keepalive_timeout_s)
        if self.serves_ingest:
            await self.cache.start()
            await self.publisher.start()
            self.ingest_port = await self._listen(
                self.build_ingest_app(),
                s.ingest.host,
                s.ingest.port,
                ListenerLimits(s.ingest.read_timeout_s, s.ingest.keepalive_timeout_s),
                reuse_port=self.reuse_port,
            )
            log.info("ingest API listening on http://%s:%d", s.ingest.host, self.ingest_port)
        if self.role in (Role.ALL, Role.ADMIN):
            self.admin_port = await self._listen(
                self.build_admin_app(), s.admin.host, s.admin.port, admin_limits
            )
            log.info("admin API listening on http://%s:%d", s.admin.host, self.admin_port)
        # Where ingest is served: with ingest.workers, every worker opens it (SO_REUSEPORT) and
        # answers for all of them; an admin-only process has /metrics on its admin port.
        if s.metrics.enabled and self.serves_ingest:
            self.metrics_port = await self._listen(
                self.build_metrics_app(),
                s.metrics.host,
                s.metrics.port,
                admin_limits,
                reuse_port=self.reuse_port,
            )
            log.info("metrics listening on http://%s:%d", s.metrics.host, self.metrics_port)

    async def _listen(
        self,
        app: web.Application,
        host: str,
        port: int,
        limits: ListenerLimits,
        *,
        reuse_port: bool = False,
    ) -> int:
        app.middlewares.insert(0, self._drain.middleware)
        runner = web.AppRunner(
            app, shutdown_timeout=self.settings.ingest.ack_timeout_s + DRAIN_GRACE_S
        )
        await runner.setup()
        site = TimedSite(
            runner,
            host,
            port,
            limits,
            handler_args={
                "access_log": None,
                # Bodies are inflated by gateway.body, which enforces the size limit while
                # decompressing; aiohttp's own decompression has no limit (a gzip bomb).
                "auto_decompress": False,
            },
            reuse_port=reuse_port,
        )
        await site.start()
        self._runners.append(runner)
        # Port 0 asks the OS for a free port; report the one actually bound.
        return site.bound_port

    async def stop(self) -> None:
        log.info("shutting down: draining in-flight requests")
        # Stop listening first, but keep open connections working: a request whose body is
        # still arriving must be able to finish. Only then close everything.
        self._drain.start()
        for runner in self._runners:
            for site in list(runner.sites):
                await site.stop()
        await self._drain.wait(self.settings.ingest.ack_timeout_s + DRAIN_GRACE_S)
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await self.publisher.stop()
        self.enforcer.stop_warming()
        await self.cache.stop()
        if self.replay_jobs is not None:
            await self.replay_jobs.close()
        if self.store is not None:
            await self.store.close()
        if self._warmup is not None:
            # Ends after at most one more plan: the warm-up checks stop_warming().
            await asyncio.gather(self._warmup, return_exceptions=True)
        log.info("shutdown complete")


GIL_SWITCH_INTERVAL_S = 0.0001


async def run(settings: Settings, role: Role, *, reuse_port: bool = False) -> None:
    """Run until SIGTERM or SIGINT, then drain and exit."""
    # A busy worker thread (a large request's pipeline, the plan cache's snapshot building and
    # rule compilation) holds the GIL for up to the switch interval whenever the event loop
    # releases it, once per system call; at the default 5 ms that multiplies request latency
    # while it runs. At 0.1 ms, the loop's stalls while a 2,500-event request is processed
    # came to a third of those at 0.5 ms (README, Performance); 30 µs did no better.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gateway = Gateway(settings, role, reuse_port=reuse_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    try:
        await stop.wait()
    finally:
        await gateway.stop()
