"""``gateway dev``: the whole product on one machine, in one command.

Starts the embedded broker on a free loopback port, writes a demo source and tracking plan and a
config into the dev directory, runs the gateway (role ``all``) and prints a ready-to-paste
``curl`` and the ``gateway tail`` command to watch events. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shlex
import signal
from pathlib import Path

import orjson
import yaml

from gateway.broker import EmbeddedBroker
from gateway.config import Role, load_settings
from gateway.server import Gateway

DEMO_SOURCE_ID = "src_demo"
DEMO_PLAN_ID = "tp_demo"
DEMO_EVENT = {
    "userId": "user-1",
    "event": "Product Viewed",
    "properties": {"product_id": "sku-42", "price": 9.99, "currency": "EUR"},
}


def demo_plan_document(write_key: str) -> dict[str, object]:
    product_viewed = {
        "$schema": "http://json-schema.org/draft-07/schema#",
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
    }
    identify = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "traits": {
                "type": "object",
                "properties": {"email": {"type": "string", "format": "email"}},
            }
        },
    }
    return {
        "sources": [
            {
                "id": DEMO_SOURCE_ID,
                "name": "Demo app",
                "enabled": True,
                "writeKeys": [write_key],
                "trackingPlan": {"id": DEMO_PLAN_ID, "version": 1, "config": {}},
            }
        ],
        "trackingPlans": [
            {
                "id": DEMO_PLAN_ID,
                "name": "Demo Plan",
                "version": 1,
                "events": [
                    {
                        "name": "Product Viewed",
                        "eventType": "track",
                        "identitySection": "properties",
                        "rules": product_viewed,
                    },
                    {
                        "name": "",
                        "eventType": "identify",
                        "identitySection": "traits",
                        "rules": identify,
                    },
                ],
            }
        ],
    }


def write_dev_files(dev_dir: Path, bootstrap_servers: str, port: int) -> tuple[Path, str]:
    """Write (or reuse) the demo write key and plans, and a config for this run."""
    dev_dir.mkdir(parents=True, exist_ok=True)
    key_file = dev_dir / "write-key"
    if key_file.exists():
        write_key = key_file.read_text().strip()
    else:
        write_key = "dev_" + secrets.token_urlsafe(18)
        key_file.write_text(write_key + "\n")
    plans = dev_dir / "plans.yaml"
    if not plans.exists():
        plans.write_text(yaml.safe_dump(demo_plan_document(write_key), sort_keys=False))
    config = dev_dir / "gateway.toml"
    config.write_text(
        "# Written by `gateway dev` for this run; the broker port changes every run.\n"
        f'[ingest]\nhost = "127.0.0.1"\nport = {port}\n\n'
        '[admin]\nhost = "127.0.0.1"\nport = 0\n\n'
        f'[kafka]\nbootstrap_servers = "{bootstrap_servers}"\n'
        "# The embedded broker does not support the idempotent producer.\n"
        "idempotence = false\n\n"
        '[plans]\nsource = "file:plans.yaml"\nrefresh_interval_s = 2\ncache_dir = "plans-cache"\n'
    )
    return config, write_key


def banner(config: Path, write_key: str, port: int) -> str:
    payload = orjson.dumps(DEMO_EVENT).decode()
    curl = (
        f"curl -sS http://127.0.0.1:{port}/v1/track -u {shlex.quote(write_key + ':')} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(payload)}"
    )
    cfg = shlex.quote(str(config))
    return "\n".join(
        [
            "",
            "Gateway is running (dev mode).",
            f"  ingest API:   http://127.0.0.1:{port}",
            f"  write key:    {write_key}",
            f"  source:       {DEMO_SOURCE_ID} (Demo app)",
            f"  plan:         {DEMO_PLAN_ID} (Demo Plan)",
            f"  plans file:   {config.parent / 'plans.yaml'} (edit it; changes load within 2 s)",
            "",
            "Send an event:",
            f"  {curl}",
            "",
            "Watch events arrive (in another terminal):",
            f"  gateway tail --config {cfg}",
            f"  gateway tail --config {cfg} --quarantine",
            "",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


def prepare_dev_dir(path: str) -> Path:
    dev_dir = Path(path).absolute()
    dev_dir.mkdir(parents=True, exist_ok=True)
    return dev_dir


async def run_dev(dev_dir: Path, port: int) -> None:
    """Run until SIGINT/SIGTERM; ``dev_dir`` comes from :func:`prepare_dev_dir`."""
    broker = EmbeddedBroker(log_path=dev_dir / "broker.log")
    broker.start()
    try:
        config, write_key = write_dev_files(dev_dir, broker.bootstrap_servers, port)
        gateway = Gateway(load_settings(config, environ={}), Role.ALL)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await gateway.start()
        try:
            await gateway.publisher.wait_connected(15)
            assert gateway.ingest_port is not None
            print(banner(config, write_key, gateway.ingest_port), flush=True)
            await stop.wait()
        finally:
            await gateway.stop()
    finally:
        with contextlib.suppress(Exception):
            broker.stop()
