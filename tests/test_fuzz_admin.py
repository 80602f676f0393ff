"""Fuzz of the admin API from its own ``/openapi.json`` (schemathesis).

A real admin-role gateway on a SQLite catalog, and one on PostgreSQL, serves its document;
schemathesis generates requests for every admin operation from it — valid ones (which create,
change and delete real catalog entities) and invalid ones — and sends them with a full admin
token. Operations on one entity run twice: with generated ids (mostly unknown: the 404 paths)
and with the ids of entities created beforehand (a plan with events, a connected source, a
custom type, a category, an event, a property), so the handlers behind the 404 are fuzzed
too; deletions run last. Every response must be no 5xx, carry a status code the document
lists for the operation, the content type it declares, and a body and headers that match its
schemas.

``FUZZ_SCALE=10 .venv/bin/pytest tests/test_fuzz_admin.py`` runs ten times the examples.
"""

from __future__ import annotations

import asyncio
import os
import re
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.broker import EmbeddedBroker
from gateway.config import Role
from gateway.ingest.document import INGEST
from gateway.operations_document import OPENAPI_PATH
from tests.conftest import (
    ADMIN_BEARER,
    ADMIN_TOKEN,
    PG_ADMIN_URL,
    GatewayThread,
    gateway_settings,
)

SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
# Examples per operation, mode and kind of ids: ~40 operations, a few ms a request.
EXAMPLES = {GenerationMode.POSITIVE: 6 * SCALE, GenerationMode.NEGATIVE: 3 * SCALE}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
PLANS = "/catalog/tracking-plans"
ORDER_RULES = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {"amount": {"type": "number"}, "sku": {"type": "string"}},
            "required": ["amount"],
        }
    },
}


class Api:
    """Blocking calls to the admin API, for setting up the catalog before the fuzz."""

    def __init__(self, base_url: str, session: requests.Session) -> None:
        self.base_url = base_url
        self.session = session

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        response = self.session.request(
            method, self.base_url + path, json=body, headers=ADMIN_BEARER, timeout=30
        )
        assert response.status_code == 200, (method, path, response.status_code, response.text)
        return response.json()


def seed(api: Api) -> dict[str, dict[str, str]]:
    """Entities of every kind; the ids they give each path parameter, by path prefix."""
    source = api("PUT", "/api/latest/sources", {"name": "Fuzz Source"})["data"]["sources"][0]
    plan = api("POST", PLANS, {"name": "Fuzz Plan"})
    api("PATCH", f"{PLANS}/{plan['id']}/events", {"name": "Order Completed", "rules": ORDER_RULES})
    [plan_event] = api("GET", f"{PLANS}/{plan['id']}/events")["data"]
    api(
        "POST",
        f"{PLANS}/{plan['id']}/sources/{source['id']}",
        {"config": {"global": {"unplannedProperties": "omit"}}},
    )
    custom_type = api(
        "POST", "/catalog/custom-types", {"name": "FuzzType", "type": "string", "config": {}}
    )
    category = api("POST", "/catalog/categories", {"name": "Fuzz Category"})
    event = api("POST", "/catalog/events", {"name": "Fuzz Event", "categoryId": category["id"]})
    prop = api("POST", "/catalog/properties", {"name": "fuzz_prop", "type": "string"})
    segment = api("POST", "/tracking-plans", {"name": "Fuzz Segment Plan", "type": "LIVE"})
    segment_id = segment["data"]["trackingPlan"]["id"]
    rules = [
        {"key": "Order Completed", "type": "TRACK", "version": 1, "jsonSchema": ORDER_RULES},
        {"key": "Order Completed", "type": "TRACK", "version": 2, "jsonSchema": {}},
        {"key": "", "type": "COMMON", "version": 1, "jsonSchema": {"type": "object"}},
    ]
    api("PATCH", f"/tracking-plans/{segment_id}/rules", {"rules": rules})
    replay = api("PUT", "/api/latest/replays", {"dryRun": True})
    return {
        "/tracking-plans": {"trackingPlanId": segment_id},
        "/api": {
            "version": "latest",
            "source_id": source["id"],
            "key": source["writeKeys"][0],
            "replay_id": replay["id"],
        },
        PLANS: {"plan_id": plan["id"], "event_id": plan_event["id"], "source_id": source["id"]},
        "/catalog/custom-types": {"id": custom_type["id"]},
        "/catalog/categories": {"id": category["id"]},
        "/catalog/events": {"id": event["id"]},
        "/catalog/properties": {"id": prop["id"]},
    }


def pinned(path: str, ids: dict[str, dict[str, str]]) -> dict[str, str] | None:
    """The seeded ids for ``path``'s parameters, or None when it has none."""
    names = re.findall(r"{(\w+)}", path)
    if not names:
        return None
    prefix = max((p for p in ids if path.startswith(p)), key=len)
    return {name: ids[prefix][name] for name in names}


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty catalog database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    name = f"gw_fuzz_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg(statement: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def admin_url(broker: EmbeddedBroker, catalog_url: str, tmp_path: Path) -> Iterator[str]:
    settings = gateway_settings(
        broker,
        tmp_path,
        admin={"tokens": (ADMIN_TOKEN,)},
        plans={"source": "local"},
        catalog={"database_url": catalog_url},
    )
    thread = GatewayThread(settings, Role.ADMIN)
    try:
        gateway = thread.start()
        yield f"http://127.0.0.1:{gateway.admin_port}"
    finally:
        thread.close()


def test_fuzz_every_admin_operation(admin_url: str) -> None:
    # /v2/catalog/… runs the same handlers as /catalog/… (test_openapi checks both are served).
    schema = (
        schemathesis.openapi.from_url(admin_url + OPENAPI_PATH)
        .exclude(tag=INGEST)
        .exclude(path_regex=r"^/v2/")
    )
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results  # the document is valid
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) > 30, "the document lists fewer admin operations than expected"
    # Deletions last, so the seeded entities are there for every other operation.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    failures: list[str] = []
    with requests.Session() as session:
        ids = seed(Api(admin_url, session))
        for operation in operations:
            for path_parameters in (None, pinned(operation.path, ids)):
                for mode, examples in EXAMPLES.items():
                    if mode is GenerationMode.NEGATIVE and not _can_be_invalid(operation):
                        continue
                    try:
                        _fuzz(operation, mode, examples, path_parameters, admin_url, session)
                    # Every operation is fuzzed and all failures reported (schemathesis raises
                    # its findings as a BaseExceptionGroup).
                    except (Exception, BaseExceptionGroup) as exc:
                        failures.append(
                            f"{operation.label} ({mode.value}, ids {path_parameters}):\n"
                            + "".join(traceback.format_exception_only(exc))
                        )
                if path_parameters is None and "{" not in operation.path:
                    break  # no ids to pin: one round is the whole operation
    assert not failures, "\n".join(failures)


def _can_be_invalid(operation: Any) -> bool:
    """Whether a request can break the document: a body or query parameters to get wrong.

    Paths take any string (an unknown id is a 404, not an invalid request) and the token is
    fixed, so without either there is no invalid request to generate.
    """
    return bool(operation.body) or bool(list(operation.query))


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    path_parameters: dict[str, str] | None,
    base_url: str,
    session: requests.Session,
) -> None:
    strategy = operation.as_strategy(
        generation_mode=mode, headers=dict(ADMIN_BEARER), path_parameters=path_parameters
    )

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=strategy)
    def one(case: Any) -> None:
        case.call_and_validate(base_url=base_url, session=session, checks=CHECKS)

    one()
