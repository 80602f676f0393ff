"""``gateway dev``: the whole product on one machine, in one command.

Starts the embedded broker on a free loopback port, runs the gateway (role ``all``, catalog in
SQLite in the dev directory), creates a demo source and tracking plan through the management
API (once; later runs reuse them), and prints a ready-to-paste ``curl`` and the ``gateway tail``
command to watch events. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gateway.broker import EmbeddedBroker
from gateway.config import Role, load_settings
from gateway.enforce.compile import DRAFT_07
from gateway.micro import MicroStore
from gateway.server import Gateway
from gateway.tail import printable

DEMO_SOURCE = "Demo app"
NATIVE_SOURCES = "/api/latest/sources"
DEMO_PLAN = "Demo Plan"
DEMO_CONFIG = {"global": {"propagateValidationErrors": "true"}}
DEMO_EVENT = {
    "userId": "user-1",
    "event": "Product Viewed",
    "properties": {"product_id": "sku-42", "price": 9.99, "currency": "EUR"},
}
DEMO_EVENTS: list[dict[str, Any]] = [
    {
        "name": "Product Viewed",
        "eventType": "track",
        "description": "A user looked at a product page.",
        "rules": {
            "$schema": DRAFT_07,
            "type": "object",
            "properties": {
                "properties": {
                    "type": "object",
                    "properties": {
                        "product_id": {"type": "string"},
                        "price": {"type": "number", "minimum": 0},
                        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    },
                    "required": ["product_id", "price"],
                }
            },
        },
    },
    {
        "name": "",
        "eventType": "identify",
        "rules": {
            "$schema": DRAFT_07,
            "type": "object",
            "properties": {
                "traits": {
                    "type": "object",
                    "properties": {"email": {"type": "string", "format": "email"}},
                }
            },
        },
    },
]


PRIVATE_MODE = 0o600


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: it holds the admin token.

    Created with that mode rather than changed after writing, so it is never readable by others
    even for a moment; an existing file (rewritten every run) gets the mode too.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), PRIVATE_MODE)
        fh.write(text)


def write_dev_config(dev_dir: Path, bootstrap_servers: str, port: int) -> tuple[Path, str]:
    """A config for this run (the broker port changes every run) and the admin token."""
    token_file = dev_dir / "admin-token"
    if token_file.exists():
        token = token_file.read_text().strip()
    else:
        token = "dev_" + secrets.token_urlsafe(18)
        write_private(token_file, token + "\n")
    config = dev_dir / "gateway.toml"
    write_private(
        config,
        "# Written by `gateway dev` for this run; the broker port changes every run.\n"
        f'[ingest]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'[admin]\nhost = "127.0.0.1"\nport = 0\ntokens = ["{token}"]\n\n'
        f'[kafka]\nbootstrap_servers = "{bootstrap_servers}"\n'
        "# The embedded broker does not support the idempotent producer.\n"
        "idempotence = false\n\n"
        '[plans]\nsource = "local"\nrefresh_interval_s = 2\ncache_dir = "plans-cache"\n\n'
        '[catalog]\ndatabase_url = "sqlite:///catalog.db"\n',
    )
    token_file.chmod(PRIVATE_MODE)  # one written by an earlier version may be world-readable
    return config, token


async def ensure_demo(admin_url: str, token: str) -> tuple[str, str, str]:
    """Create the demo source, plan and connection through the management API (once).

    Returns (write key, source id, plan id); a second run finds and reuses them.
    """
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url=admin_url, headers=headers) as http:

        async def call(method: str, path: str, body: Any = None) -> Any:
            async with http.request(method, path, json=body) as resp:
                document = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"{method} {path}: {resp.status} {document}")
                return document

        sources = (await call("GET", NATIVE_SOURCES))["data"]["sources"]
        source = next((s for s in sources if s["name"] == DEMO_SOURCE), None)
        if source is None:
            created = await call("PUT", NATIVE_SOURCES, {"name": DEMO_SOURCE})
            source = created["data"]["sources"][0]
        plans = (await call("GET", "/catalog/tracking-plans"))["trackingPlans"]
        plan = next((p for p in plans if p["name"] == DEMO_PLAN), None)
        if plan is None:
            plan = await call(
                "POST",
                "/catalog/tracking-plans",
                {"name": DEMO_PLAN, "description": "Created by gateway dev"},
            )
            for event in DEMO_EVENTS:
                await call("PATCH", f"/catalog/tracking-plans/{plan['id']}/events", event)
        connected = await call("GET", f"/catalog/tracking-plans/{plan['id']}/sources")
        if not any(c["sourceId"] == source["id"] for c in connected["connections"]):
            await call(
                "POST",
                f"/catalog/tracking-plans/{plan['id']}/sources/{source['id']}",
                {"config": DEMO_CONFIG},
            )
    return source["writeKeys"][0], source["id"], plan["id"]


def banner(
    config: Path, write_key: str, token: str, port: int, admin_port: int, ids: tuple[str, str]
) -> str:
    payload = orjson.dumps(DEMO_EVENT).decode()
    curl = (
        f"curl -sS http://127.0.0.1:{port}/v1/track -u {shlex.quote(write_key + ':')} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(payload)}"
    )
    source_id, plan_id = ids
    js_key, js_url = (orjson.dumps(v).decode() for v in (write_key, f"http://127.0.0.1:{port}"))
    cfg = shlex.quote(str(config))
    admin = f"http://127.0.0.1:{admin_port}"
    auth = shlex.quote(f"Authorization: Bearer {token}")
    return "\n".join(
        [
            "",
            "Gateway is running (dev mode).",
            f"  ingest API:   http://127.0.0.1:{port}",
            f"  write key:    {write_key}",
            f"  source:       {source_id} ({DEMO_SOURCE})",
            f"  plan:         {plan_id} ({DEMO_PLAN})",
            f"  admin API:    {admin}  (token: {token})",
            "",
            "Send an event:",
            f"  {curl}",
            "",
            "Or from a web page (npm packages, nothing loaded from a vendor CDN):",
            f"  AnalyticsBrowser.load({{ writeKey: {js_key}, cdnURL: {js_url} }})"
            "  // @segment/analytics-next",
            f"  new RudderAnalytics().load({js_key}, {js_url}, {{ configUrl: {js_url} }})"
            "  // @rudderstack/analytics-js",
            "",
            "Watch events arrive (in another terminal):",
            f"  gateway tail --config {cfg}",
            f"  gateway tail --config {cfg} --quarantine",
            "",
            "Look at the tracking plan:",
            f"  curl -sS {admin}/catalog/tracking-plans/{plan_id} -H {auth}",
            "",
            "What arrived, good and bad (Snowplow Micro's routes, for your app's tests):",
            f"  curl -sS http://127.0.0.1:{port}/micro/all",
            f"  curl -sS 'http://127.0.0.1:{port}/micro/bad?event_name=Product%20Viewed'",
            "",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


def prepare_dev_dir(path: str) -> Path:
    dev_dir = Path(path).absolute()
    dev_dir.mkdir(parents=True, exist_ok=True)
    return dev_dir


async def run_dev(
    dev_dir: Path, port: int, *, check: bool = False, command: Sequence[str] = ()
) -> int:
    """Run until SIGINT/SIGTERM, or until ``command`` ends; the exit code: the command's if it
    failed, else with ``check`` 1 when a bad event arrived. ``dev_dir`` comes from
    :func:`prepare_dev_dir`."""
    broker = EmbeddedBroker(log_path=dev_dir / "broker.log")
    broker.start()
    try:
        config, token = write_dev_config(dev_dir, broker.bootstrap_servers, port)
        settings = load_settings(config, environ={})
        micro = MicroStore(settings.kafka.events_topic)
        gateway = Gateway(
            settings, Role.ALL, observer=micro.observe, ingest_routes=micro.add_routes
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await gateway.start()
        try:
            assert gateway.ingest_port is not None
            assert gateway.admin_port is not None
            admin_url = f"http://127.0.0.1:{gateway.admin_port}"
            write_key, source_id, plan_id = await ensure_demo(admin_url, token)
            # Load the demo into the data plane now rather than at the next refresh.
            await gateway.cache.refresh_once()
            await gateway.publisher.wait_connected(15)
            print(
                banner(
                    config,
                    write_key,
                    token,
                    gateway.ingest_port,
                    gateway.admin_port,
                    (source_id, plan_id),
                ),
                flush=True,
            )
            code = 0
            if command:
                env = {
                    **os.environ,
                    "GATEWAY_URL": f"http://127.0.0.1:{gateway.ingest_port}",
                    "GATEWAY_WRITE_KEY": write_key,
                    "GATEWAY_ADMIN_URL": admin_url,
                    "GATEWAY_ADMIN_TOKEN": token,
                }
                code = await _run_command(command, env, stop)
            else:
                await stop.wait()
            if check:
                print(check_report(micro), file=sys.stderr, flush=True)
                if code == 0 and micro.run_bad_count:
                    code = 1
            return code
        finally:
            await gateway.stop()
    finally:
        with contextlib.suppress(Exception):
            broker.stop()


async def _run_command(command: Sequence[str], env: dict[str, str], stop: asyncio.Event) -> int:
    """Run the app's test command against the gateway; Ctrl-C stops it too."""
    try:
        proc = await asyncio.create_subprocess_exec(*command, env=env)
    except OSError as exc:
        print(f"gateway dev: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return 127
    waiting = asyncio.create_task(proc.wait())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not waiting.done():
        proc.terminate()
    return await waiting


def check_report(micro: MicroStore) -> str:
    """What `gateway dev --check` prints: how many bad events the run had, and the last ones
    with their errors."""
    if not micro.run_bad_count:
        return "gateway dev --check: no bad events"
    lines = [f"gateway dev --check: {micro.run_bad_count} bad events; the last ones:"]
    for item in micro.run_bad:
        what = " ".join(str(p) for p in (item["eventType"], item["eventName"]) if p)
        test = f" [test {item['testId']}]" if item["testId"] is not None else ""
        outcome = item["reason"] or "forwarded with violations"
        lines.append(printable(f"  {what}{test}: {outcome}"))
        lines.extend(printable(f"    - {error}") for error in item["errors"][:5])
    return "\n".join(lines)
