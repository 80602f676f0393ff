"""Shared fixtures: one real broker per session, a gateway per test on its own topics.

The broker (Tansu, Kafka protocol) starts once per session; every test gets fresh topic names,
so tests never see each other's records. Gateways run in-process on free loopback ports.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import settings
from prometheus_client.parser import text_string_to_metric_families

from gateway.broker import EmbeddedBroker
from gateway.catalog.store import Store
from gateway.config import Role, Settings, load_settings
from gateway.server import Gateway

# CI runs the property-based tests on a fixed set of examples, so a run's outcome never depends
# on a random seed; locally each run explores new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

WRITE_KEY = "wk_test_source"
DISABLED_KEY = "wk_disabled_source"
SOURCE_ID = "src_test"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_path=log_path) as b:
        yield b


def snapshot_doc(
    *, revision: str = "r1", sources: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A small snapshot: one enabled source (WRITE_KEY), one disabled (DISABLED_KEY)."""
    return {
        "revision": revision,
        "sources": sources
        if sources is not None
        else [
            {"id": SOURCE_ID, "name": "Test", "enabled": True, "writeKeys": [WRITE_KEY]},
            {"id": "src_off", "name": "Off", "enabled": False, "writeKeys": [DISABLED_KEY]},
        ],
        "trackingPlans": [],
    }


def write_snapshot(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(doc))
    tmp.replace(path)


def basic_auth(key: str = WRITE_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def gateway_settings(
    broker: EmbeddedBroker, tmp_path: Path, **overrides: dict[str, Any]
) -> Settings:
    """Settings for a test gateway: loopback, free ports, unique topics, no idempotence."""
    suffix = uuid.uuid4().hex[:8]
    snapshot_file = tmp_path / "snapshot.json"
    if not snapshot_file.exists():
        write_snapshot(snapshot_file, snapshot_doc())
    settings = load_settings(None, environ={})
    sections: dict[str, Any] = {
        "ingest": {"host": "127.0.0.1", "port": 0, "ack_timeout_s": 5.0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "kafka": {
            "bootstrap_servers": broker.bootstrap_servers,
            "events_topic": f"events-{suffix}",
            "quarantine_topic": f"quarantine-{suffix}",
            "idempotence": False,
            "topic_partitions": 1,
            "request_timeout_ms": 5000,
        },
        "plans": {
            "source": f"file:{snapshot_file}",
            "cache_dir": str(tmp_path / "plans-cache"),
            "refresh_interval_s": 0.2,
        },
        "catalog": {"database_url": f"sqlite:///{tmp_path / 'catalog.db'}"},
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    for section, values in sections.items():
        settings = dataclasses.replace(
            settings, **{section: dataclasses.replace(getattr(settings, section), **values)}
        )
    settings.validate()
    return settings


PG_ADMIN_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty catalog database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    import asyncpg

    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """An open catalog store on a fresh database (SQLite and PostgreSQL)."""
    opened = Store(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Start in-process gateways; ``await make_gateway(kafka={...})`` overrides settings."""
    started: list[Gateway] = []

    async def factory(role: Role = Role.ALL, **overrides: dict[str, Any]) -> Gateway:
        gw = Gateway(gateway_settings(broker, tmp_path, **overrides), role)
        await gw.start()
        started.append(gw)
        if gw.serves_ingest:
            assert await gw.publisher.wait_connected(15), "gateway did not connect to Kafka"
        return gw

    yield factory
    for gw in reversed(started):
        await gw.stop()


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway()


@pytest.fixture
async def planned(make_gateway: GatewayFactory, tmp_path: Path) -> Gateway:
    """A gateway whose test source is connected to a plan with an ``Order Completed`` rule
    (tests.browser_support.ORDER_RULES): the SDK tests' events are stamped with it."""
    from tests.browser_support import ORDER_RULES
    from tests.records_support import gateway_with_plan, plan_snapshot

    snapshot = plan_snapshot(ORDER_RULES, {}, event="Order Completed")
    return await gateway_with_plan(make_gateway, tmp_path, snapshot)


T = TypeVar("T")


class GatewayThread:
    """A gateway serving from an event loop of its own thread, for synchronous test bodies.

    Hypothesis runs a ``@given`` body as plain calls, and schemathesis sends its requests with a
    blocking client: neither can run while the test's own loop would have to serve. Here the
    gateway keeps serving meanwhile, and ``run(coro)`` executes a coroutine on its loop (an
    aiohttp client, a Kafka consumer) and returns the result.
    """

    def __init__(self, settings: Settings, role: Role = Role.ALL) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway-loop")
        self._thread.start()
        self.gateway = Gateway(settings, role)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def start(self) -> Gateway:
        self.run(self.gateway.start())
        if self.gateway.serves_ingest:
            connected = self.run(self.gateway.publisher.wait_connected(15))
            assert connected, "gateway did not connect to Kafka"
        return self.gateway

    def close(self) -> None:
        try:
            self.run(self.gateway.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()


def ingest_url(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.ingest_port}{path}"


async def _reader(bootstrap_servers: str, topic: str) -> AIOKafkaConsumer:
    """A started consumer reading ``topic`` from its first record, outside any group."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    return consumer


async def consume(
    bootstrap_servers: str, topic: str, count: int, timeout_s: float = 15.0
) -> list[Any]:
    """Read ``count`` records from the start of ``topic`` (fails if fewer arrive in time)."""
    consumer = await _reader(bootstrap_servers, topic)
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    assert len(records) >= count, f"expected {count} records on {topic}, got {len(records)}"
    return records


async def consume_all(bootstrap_servers: str, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """Everything on ``topic`` now: read up to the end offsets, however slow the consumer.

    A 200 means the request's records are acknowledged, so they are below the end offsets.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        assert topic in await consumer.topics(), f"no topic {topic}"
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        async with asyncio.timeout(timeout_s):
            while any([await consumer.position(p) < ends[p] for p in partitions]):
                for part in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(part)
        return records
    finally:
        await consumer.stop()


# Every Kafka record carries exactly these headers (README: Kafka output).
HEADER_NAMES = {
    "source-id",
    "event-type",
    "event-name",
    "message-id",
    "tracking-plan-id",
    "tracking-plan-version",
    "violations",
}

MetricSamples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metric_samples(text: str) -> MetricSamples:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    samples: MetricSamples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels`` (0 if none)."""
    wanted = set(labels.items())
    return sum(
        value
        for (sample_name, sample_labels), value in metric_samples(text).items()
        if sample_name == name and wanted <= sample_labels
    )


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


ADMIN_BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Admin:
    """A client of one gateway's admin API: ``await api(method, path, body)``."""

    def __init__(self, gw: Gateway, http: aiohttp.ClientSession) -> None:
        self.gw = gw
        self.http = http

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.gw.admin_port}{path}"
        data = None if body is None else orjson.dumps(body)
        async with self.http.request(method, url, data=data, headers=ADMIN_BEARER) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw else None

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, document = await self(method, path, body)
        assert status in (200, 204), (method, path, status, document)
        return document

    async def source(self, name: str, *, enabled: bool = True) -> dict[str, Any]:
        """A new source, made through the native API."""
        return await create_source(self, name, enabled=enabled)


NATIVE_SOURCES = "/api/latest/sources"


async def create_source(
    api: Callable[[str, str, Any], Awaitable[tuple[int, Any]]], name: str, *, enabled: bool = True
) -> dict[str, Any]:
    """A new source through the native API (``PUT /api/latest/sources``): its document."""
    status, envelope = await api("PUT", NATIVE_SOURCES, {"name": name, "enabled": enabled})
    assert (status, envelope["result"]) == (200, "success"), envelope
    source: dict[str, Any] = envelope["data"]["sources"][0]
    return source


@pytest.fixture
async def api(database_url: str, make_gateway: GatewayFactory) -> AsyncIterator[Admin]:
    """A role-all gateway on a fresh catalog (SQLite and PostgreSQL), with its admin client."""
    # database_url first: it is torn down last, after the gateway using it has stopped.
    gw = await make_gateway(
        admin={"tokens": (ADMIN_TOKEN,)},
        catalog={"database_url": database_url},
        plans={"source": "local", "refresh_interval_s": 0.2},
    )
    async with aiohttp.ClientSession() as http:
        yield Admin(gw, http)


async def wait_ready(
    http: aiohttp.ClientSession, url: str, proc: Any = None, timeout_s: float = 30
) -> None:
    """Poll a /health/ready URL until it answers 200 (fails if ``proc`` exits meanwhile)."""
    async with asyncio.timeout(timeout_s):
        while True:
            assert proc is None or proc.poll() is None, "gateway exited during startup"
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


def violation(
    vtype: str, message: str, prop: str, instance_path: str, schema_path: str
) -> dict[str, Any]:
    """One expected violation, in the shape the README documents."""
    return {
        "type": vtype,
        "message": message,
        "property": prop,
        "meta": {"instancePath": instance_path, "schemaPath": schema_path},
    }


def canonical(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order-independent comparison: every violation must be there, no more, no fewer."""
    return sorted(violations, key=lambda v: orjson.dumps(v, option=orjson.OPT_SORT_KEYS))


# --- raw HTTP clients (slow, stalling, half-sent requests) ----------------------------------


@dataclasses.dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def request_head(
    method: str, path: str, headers: dict[str, str] | None = None, *, content_length: int | None
) -> bytes:
    """The request line and headers of a request, as bytes on the wire."""
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway.test"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_reply(reader: asyncio.StreamReader) -> RawReply:
    """One HTTP/1.x response (with Content-Length) from a raw connection."""
    status_line = await reader.readline()
    assert status_line.startswith(b"HTTP/1."), status_line
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawReply(int(status_line.split()[1]), headers, body)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closed the connection (EOF or reset) with nothing more to read."""
    try:
        return await reader.read(1) == b""
    except ConnectionResetError:
        return True


def settings_toml(settings: Settings) -> str:
    """A config file holding ``settings`` (for ``gateway serve --config`` in a subprocess)."""
    lines: list[str] = []
    for section in dataclasses.fields(settings):
        lines.append(f"[{section.name}]")
        for name, value in dataclasses.asdict(getattr(settings, section.name)).items():
            lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return orjson.dumps(str(value)).decode()  # a JSON string is a TOML basic string


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def amount_rule(kind: str | list[str]) -> dict[str, Any]:
    """An ``Order Completed`` rule: ``properties.amount`` required, of JSON type(s) ``kind``."""
    return {
        "type": "object",
        "properties": {
            "properties": {
                "type": "object",
                "properties": {"amount": {"type": kind}},
                "required": ["amount"],
            }
        },
    }


async def until_enforced(
    api: Admin, key: str, event: dict[str, Any], *, violated: bool, outcome: str | None = None
) -> None:
    """Wait for the data plane to see a catalog change: a dry run of ``event`` (sent with
    ``key``) has violations, or has none; and with ``outcome``, gets that outcome (a
    connection's settings may reach the data plane a refresh after the connection itself)."""
    url = ingest_url(api.gw, "/v1/validate")
    async with asyncio.timeout(15):
        while True:
            async with api.http.post(url, json={"batch": [event]}, headers=basic_auth(key)) as resp:
                if resp.status == 200:
                    [result] = (await resp.json())["results"]
                    if bool(result["violations"]) == violated and outcome in (
                        None,
                        result["outcome"],
                    ):
                        return
            await asyncio.sleep(0.1)
