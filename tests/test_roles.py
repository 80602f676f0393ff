"""`--role admin` + `--role ingest` (real processes) behave like one `--role all` process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gateway.broker import EmbeddedBroker, free_port
from tests.conftest import ADMIN_TOKEN, NATIVE_SOURCES, basic_auth, consume_all, wait_ready

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RULES = {
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {"amount": {"type": "number"}},
            "required": ["amount"],
        }
    },
}
EVENTS: list[dict[str, Any]] = [
    {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"amount": 1}},
    {"type": "track", "userId": "u2", "event": "Order Completed", "properties": {"amount": "1"}},
    {"type": "track", "userId": "u3", "event": "Order Refunded"},
    {"type": "identify", "userId": "u4", "traits": {"name": "Ada"}},
]


def write_config(path: Path, broker: EmbeddedBroker, topic: str, **sections: str) -> Path:
    text = (
        f'[kafka]\nbootstrap_servers = "{broker.bootstrap_servers}"\nidempotence = false\n'
        f'events_topic = "{topic}"\nquarantine_topic = "{topic}.q"\ntopic_partitions = 1\n'
    )
    for name, body in sections.items():
        text += f"[{name}]\n{body}\n"
    path.write_text(text)
    return path


@contextmanager
def serving(config: Path, role: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--role", role],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def scenario(http: aiohttp.ClientSession, admin: str, ingest: str) -> None:
    """Build a plan through the admin API, then send events to the ingest API."""

    async def call(method: str, path: str, body: Any = None) -> Any:
        async with http.request(method, admin + path, json=body, headers=BEARER) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    plan = await call("POST", "/catalog/tracking-plans", {"name": "Orders Plan"})
    await call(
        "PATCH",
        f"/catalog/tracking-plans/{plan['id']}/events",
        {"name": "Order Completed", "rules": RULES},
    )
    # Created disabled and enabled once connected, so no event slips through unvalidated
    # between the two changes.
    created = await call("PUT", NATIVE_SOURCES, {"name": "Shop", "enabled": False})
    source = created["data"]["sources"][0]
    await call(
        "POST",
        f"/catalog/tracking-plans/{plan['id']}/sources/{source['id']}",
        {"config": {"track": {"allowUnplannedEvents": "false", "anyOtherViolation": "drop"}}},
    )
    await call("POST", f"{NATIVE_SOURCES}/{source['id']}", {"enabled": True})
    key = source["writeKeys"][0]
    # The ingest side sees the catalog within its refresh interval.
    async with asyncio.timeout(20):
        while True:
            async with http.post(
                ingest + "/v1/batch", json={"batch": EVENTS}, headers=basic_auth(key)
            ) as resp:
                if resp.status == 200:
                    return
                # Not in the snapshot yet (401), or not enabled there yet (404).
                assert resp.status in (401, 404), await resp.text()
            await asyncio.sleep(0.2)


async def outcomes(broker: EmbeddedBroker, topic: str) -> dict[str, tuple[str, Any]]:
    found: dict[str, tuple[str, Any]] = {}
    for record in await consume_all(broker.bootstrap_servers, topic):
        value = orjson.loads(record.value)
        found[value["userId"]] = ("forwarded", value["context"].get("violationErrors"))
    for record in await consume_all(broker.bootstrap_servers, topic + ".q"):
        value = orjson.loads(record.value)
        found[value["event"]["userId"]] = (value["reason"], value["violations"])
    return found


async def test_split_roles_behave_like_all(broker: EmbeddedBroker, tmp_path: Path) -> None:
    # One process, role all.
    all_topic, split_topic = (f"roles-{uuid.uuid4().hex[:8]}" for _ in range(2))
    all_ingest, all_admin = free_port(), free_port()
    all_config = write_config(
        tmp_path / "all.toml",
        broker,
        all_topic,
        ingest=f'host = "127.0.0.1"\nport = {all_ingest}',
        admin=f'host = "127.0.0.1"\nport = {all_admin}\ntokens = ["{ADMIN_TOKEN}"]',
        plans='refresh_interval_s = 0.3\ncache_dir = "all-cache"',
        catalog='database_url = "sqlite:///all.db"',
    )
    # Two processes: the admin role, and an ingest replica reading its snapshot over HTTP.
    admin_port, ingest_port = free_port(), free_port()
    admin_config = write_config(
        tmp_path / "admin.toml",
        broker,
        split_topic,
        admin=f'host = "127.0.0.1"\nport = {admin_port}\ntokens = ["{ADMIN_TOKEN}"]',
        catalog='database_url = "sqlite:///split.db"',
    )
    ingest_config = write_config(
        tmp_path / "ingest.toml",
        broker,
        split_topic,
        ingest=f'host = "127.0.0.1"\nport = {ingest_port}',
        plans=(
            f'source = "http://127.0.0.1:{admin_port}"\ntoken = "{ADMIN_TOKEN}"\n'
            'refresh_interval_s = 0.3\ncache_dir = "ingest-cache"'
        ),
    )
    with (
        serving(all_config, "all", tmp_path / "all.log") as one,
        serving(admin_config, "admin", tmp_path / "admin.log") as admin_proc,
        serving(ingest_config, "ingest", tmp_path / "ingest.log") as ingest_proc,
    ):
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, f"http://127.0.0.1:{all_ingest}/health/ready")
            await wait_ready(http, f"http://127.0.0.1:{admin_port}/health/ready")
            # The replica has no snapshot until the admin answers: ready only then.
            await wait_ready(http, f"http://127.0.0.1:{ingest_port}/health/ready")
            await scenario(http, f"http://127.0.0.1:{all_admin}", f"http://127.0.0.1:{all_ingest}")
            await scenario(
                http, f"http://127.0.0.1:{admin_port}", f"http://127.0.0.1:{ingest_port}"
            )
            # The admin serves no ingest API, and the ingest replica no admin API.
            async with http.post(f"http://127.0.0.1:{admin_port}/v1/track", headers=BEARER) as resp:
                assert resp.status == 404
            async with http.get(
                f"http://127.0.0.1:{ingest_port}{NATIVE_SOURCES}", headers=BEARER
            ) as resp:
                assert resp.status == 404
        for proc in (one, admin_proc, ingest_proc):
            assert proc.poll() is None, "a gateway process died"

    together = await outcomes(broker, all_topic)
    split = await outcomes(broker, split_topic)
    assert together == split
    assert {user: outcome for user, (outcome, _) in together.items()} == {
        "u1": "forwarded",
        "u2": "violation",
        "u3": "unplanned-event",
        "u4": "forwarded",
    }
