"""Replaying quarantined events end to end (SQLite and PostgreSQL catalogs, the real broker):
events quarantined under plan v1, the plan fixed in v2, ``gateway replay`` (dry run, then
real) puts exactly the now-valid ones in the events topic, once; a second run adds nothing; a
JSON Patch fix recovers what v2 alone does not; a run cut short — killed, or failing between
publishing and recording — and resumed publishes nothing twice; the native API's jobs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.catalog.store import replays as stored_replays
from gateway.replay.runner import Replays
from gateway.replay.spec import ReplaySpec
from tests.conftest import (
    Admin,
    amount_rule,
    basic_auth,
    consume_all,
    headers_of,
    ingest_url,
    metric_value,
    settings_toml,
    until_enforced,
)

SEGMENT = "/tracking-plans"
GATEWAY = [sys.executable, "-m", "gateway"]
DROP = {"track": {"anyOtherViolation": "drop", "allowUnplannedEvents": "false"}}


def order(message_id: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{message_id}",
        "messageId": message_id,
        "properties": properties,
    }


class Shop:
    """A plan made through the Segment API, connected to a source that drops violations."""

    def __init__(self, api: Admin, plan_id: str, source: dict[str, Any]) -> None:
        self.api = api
        self.plan_id = plan_id
        self.source_id: str = source["id"]
        self.key: str = source["writeKeys"][0]

    @classmethod
    async def create(cls, api: Admin) -> Shop:
        created = await api.ok("POST", SEGMENT, {"name": "Shop", "type": "LIVE"})
        plan_id = created["data"]["trackingPlan"]["id"]
        source = await api.source("Web")
        shop = cls(api, plan_id, source)
        await shop.amount_may_be(["number"])
        await api.ok("POST", f"{SEGMENT}/{plan_id}/sources", {"sourceId": shop.source_id})
        await api.ok(
            "PUT",
            f"/catalog/tracking-plans/{plan_id}/sources/{shop.source_id}",
            {"config": DROP},
        )
        # Dropped: the connection's settings, not only the plan, reached the data plane.
        await until_enforced(
            api, shop.key, order("probe", amount="5"), violated=True, outcome="quarantined"
        )
        return shop

    async def amount_may_be(self, kinds: list[str]) -> None:
        await self.rule(amount_rule(kinds))

    async def rule(self, schema: dict[str, Any]) -> None:
        """``Order Completed``'s rule from now on (a new plan version)."""
        rule = {"key": "Order Completed", "type": "TRACK", "version": 1, "jsonSchema": schema}
        await self.api.ok("PUT", f"{SEGMENT}/{self.plan_id}/rules", {"rules": [rule]})

    async def version(self) -> int:
        plan = await self.api.ok("GET", f"/catalog/tracking-plans/{self.plan_id}")
        return int(plan["version"])

    async def until_enforced(self, event: dict[str, Any], *, violated: bool) -> None:
        await until_enforced(self.api, self.key, event, violated=violated)

    async def send(self, events: list[dict[str, Any]]) -> None:
        async with self.api.http.post(
            ingest_url(self.api.gw, "/v1/batch"),
            json={"batch": events},
            headers=basic_auth(self.key),
        ) as resp:
            assert resp.status == 200, await resp.text()


async def records(api: Admin, topic: str) -> list[Any]:
    kafka = api.gw.settings.kafka
    return await consume_all(kafka.bootstrap_servers, getattr(kafka, topic))


def replayed_ids(found: list[Any]) -> list[str]:
    return sorted(
        orjson.loads(r.value)["messageId"] for r in found if headers_of(r).get("replayed") == "true"
    )


def config_file(api: Admin, tmp_path: Path) -> Path:
    path = tmp_path / "replay.toml"
    path.write_text(settings_toml(api.gw.settings))
    return path


def replay_cli(config: Path, *args: str) -> tuple[int, Any, str]:
    """``gateway replay --json …``: exit code, the job printed, stderr."""
    done = subprocess.run(
        [*GATEWAY, "replay", "--config", str(config), "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GATEWAY_CONFIG": ""},
    )
    job = orjson.loads(done.stdout) if done.returncode in (0, 1) and done.stdout else None
    return done.returncode, job, done.stderr


QUARANTINED = [
    order("a1", amount="5"),  # a string: v1 wants a number, v2 allows it
    order("a2", amount="7"),
    order("a3", amount="9"),
    order("b1", total=5),  # no amount at all: v2 alone does not help, the fix does
    {
        "type": "track",
        "event": "Cart Viewed",  # not in the plan
        "userId": "user-c1",
        "messageId": "c1",
        "properties": {},
    },
]
VALID = order("ok1", amount=3)
FIXES = {
    "Order Completed": [{"op": "move", "from": "/properties/total", "path": "/properties/amount"}]
}


async def test_replay_after_the_plan_is_fixed(api: Admin, tmp_path: Path) -> None:
    shop = await Shop.create(api)
    await shop.send([*QUARANTINED, VALID])
    quarantined = await records(api, "quarantine_topic")
    assert sorted(orjson.loads(r.value)["event"]["messageId"] for r in quarantined) == [
        "a1",
        "a2",
        "a3",
        "b1",
        "c1",
    ]
    assert [orjson.loads(r.value)["messageId"] for r in await records(api, "events_topic")] == [
        "ok1"
    ]

    await shop.amount_may_be(["number", "string"])  # plan v2
    config = config_file(api, tmp_path)

    # Dry run: how many would pass, and why the rest still fail; nothing is published.
    code, job, err = replay_cli(config, "--dry-run")
    assert code == 0, err
    progress = job["progress"]
    assert (job["status"], progress["total"], progress["read"]) == ("done", 5, 5)
    assert (progress["selected"], progress["passed"], progress["stillFailing"]) == (5, 3, 2)
    assert progress["published"] == 0
    failures = progress["failures"]
    assert sorted(failures.values()) == [1, 1]
    assert any(w.startswith("violation: Required-Missing") for w in failures), failures
    assert any(w.startswith("unplanned-event: Unplanned-Event") for w in failures), failures
    assert replayed_ids(await records(api, "events_topic")) == []

    # The real thing: exactly the now-valid ones, with where they came from.
    code, job, err = replay_cli(config)
    assert code == 0, err
    assert (job["progress"]["passed"], job["progress"]["published"]) == (3, 3)
    events = await records(api, "events_topic")
    assert replayed_ids(events) == ["a1", "a2", "a3"]
    origin = {(r.topic, r.partition, r.offset) for r in quarantined}
    for record in events:
        value = orjson.loads(record.value)
        if value["messageId"] == "ok1":
            continue
        headers = headers_of(record)
        assert headers["source-id"] == shop.source_id
        assert headers["tracking-plan-id"] == shop.plan_id
        assert headers["tracking-plan-version"] == str(value["context"]["trackingPlanVersion"])
        assert headers["message-id"] == value["messageId"]
        assert record.key == f"user-{value['messageId']}".encode()
        came_from = value["context"]["replayedFrom"]
        assert (came_from["topic"], came_from["partition"], came_from["offset"]) in origin
        assert value["context"]["trackingPlanId"] == shop.plan_id
        assert value["properties"]["amount"] in ("5", "7", "9")

    # Again: nothing twice.
    code, job, err = replay_cli(config)
    assert code == 0, err
    assert (job["progress"]["published"], job["progress"]["alreadyReplayed"]) == (0, 3)
    assert replayed_ids(await records(api, "events_topic")) == ["a1", "a2", "a3"]

    # A fix recovers b1 (total renamed to amount); it does not apply to the others, which are
    # judged as they are (and were replayed already).
    fixes = tmp_path / "fixes.json"
    fixes.write_bytes(orjson.dumps(FIXES))
    code, job, err = replay_cli(config, "--fix", str(fixes), "--event", "Order Completed")
    assert code == 0, err
    progress = job["progress"]
    assert (progress["selected"], progress["published"], progress["alreadyReplayed"]) == (4, 1, 3)
    events = await records(api, "events_topic")
    assert replayed_ids(events) == ["a1", "a2", "a3", "b1"]
    [b1] = [orjson.loads(r.value) for r in events if orjson.loads(r.value)["messageId"] == "b1"]
    assert b1["properties"] == {"amount": 5}

    # Every replay is a job, listed by the native API.
    listed = await api.ok("GET", "/api/latest/replays")
    assert len(listed["data"]["replays"]) == 4


async def test_replay_against_a_plan_version_and_filters(api: Admin, tmp_path: Path) -> None:
    shop = await Shop.create(api)
    await shop.send(QUARANTINED)
    await shop.amount_may_be(["number", "string"])
    lenient = await shop.version()
    await shop.amount_may_be(["number"])  # as strict as at first again
    config = config_file(api, tmp_path)

    code, job, err = replay_cli(config, "--dry-run")
    assert code == 0, err
    assert job["progress"]["passed"] == 0  # the current plan

    code, job, err = replay_cli(config, "--dry-run", "--plan-version", str(lenient))
    assert code == 0, err
    assert job["progress"]["passed"] == 3

    code, job, err = replay_cli(config, "--dry-run", "--reason", "unplanned-event")
    assert code == 0, err
    assert (job["progress"]["selected"], job["progress"]["passed"]) == (1, 0)

    code, job, err = replay_cli(config, "--dry-run", "--source", "src_other")
    assert code == 0, err
    assert job["progress"]["selected"] == 0

    code, job, err = replay_cli(config, "--plan-version", "9")
    assert code == 2
    assert f"tracking plan {shop.plan_id} has no version 9" in err

    code, _, err = replay_cli(config, "--since", "yesterday")
    assert code == 2
    assert "--since" in err
    fixes = tmp_path / "bad-fixes.json"
    fixes.write_bytes(orjson.dumps({"Order Completed": [{"op": "rename", "path": "/x"}]}))
    code, _, err = replay_cli(config, "--fix", str(fixes))
    assert code == 2
    assert "not a JSON Patch" in err

    # A time range after every record selects nothing.
    code, job, err = replay_cli(config, "--dry-run", "--since", "2999-01-01T00:00:00Z")
    assert code == 0, err
    assert (job["progress"]["selected"], job["progress"]["passed"]) == (0, 0)
    code, job, err = replay_cli(config, "--dry-run", "--until", "2000-01-01T00:00:00Z")
    assert code == 0, err
    assert job["progress"]["selected"] == 0
    code, job, err = replay_cli(
        config, "--dry-run", "--since", "1h", "--plan-version", str(lenient)
    )
    assert code == 0, err
    assert (job["progress"]["selected"], job["progress"]["passed"]) == (5, 3)
    # Offsets: the first two records only.
    code, job, err = replay_cli(config, "--dry-run", "--to-offset", "2", "--partition", "0")
    assert code == 0, err
    assert (job["progress"]["total"], job["progress"]["selected"]) == (2, 2)
    code, _, err = replay_cli(config, "--dry-run", "--partition", "7")
    assert code == 2
    assert "has no partition 7" in err


async def test_killed_replay_resumes_without_duplicates(api: Admin, tmp_path: Path) -> None:
    shop = await Shop.create(api)
    count = 2000
    await shop.send([order(f"k{i}", amount=str(i)) for i in range(count)])
    await shop.amount_may_be(["number", "string"])
    config = config_file(api, tmp_path)

    # Small chunks, so that it is surely killed half way.
    with subprocess.Popen(
        [*GATEWAY, "replay", "--config", str(config), "--chunk-records", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        first = await asyncio.to_thread(proc.stderr.readline)
        assert first.startswith("replay rpl_"), first
        job_id = first.split()[1].rstrip(":")
        # Killed (no chance to record anything) once it has made some progress.
        async with asyncio.timeout(60):
            while True:
                job = (await api.ok("GET", f"/api/latest/replays/{job_id}"))["data"]["replays"][0]
                if job["progress"]["read"] > 0 or proc.poll() is not None:
                    break
                await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    killed = (await api.ok("GET", f"/api/latest/replays/{job_id}"))["data"]["replays"][0]
    assert killed["status"] == "running"  # it could not record that it stopped
    assert 0 < killed["progress"]["read"] < count

    code, job, err = replay_cli(config, "--resume", job_id)
    assert code == 0, err
    assert job["status"] == "done"
    assert job["progress"]["read"] == count
    ids = replayed_ids(await records(api, "events_topic"))
    assert len(ids) == count
    assert Counter(ids).most_common(1)[0][1] == 1


@pytest.mark.parametrize("fails", ["after publishing", "before publishing"])
async def test_run_cut_short_between_claim_and_record(
    api: Admin, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    """The narrowest window: claims written, records produced (or not), the claims not yet
    marked done. The resumed job looks in the events topic and publishes only what is not
    there."""
    shop = await Shop.create(api)
    await shop.send([order(f"w{i}", amount=str(i)) for i in range(30)])
    await shop.amount_may_be(["number", "string"])
    gw = api.gw
    assert gw.store is not None
    replays = Replays(gw.store, gw.settings.kafka, gw.settings.ingest)
    job = await replays.create(ReplaySpec())

    class Crash(RuntimeError):
        pass

    target: Any
    if fails == "after publishing":
        target, name = stored_replays, "mark_done"
    else:
        from gateway.publish.producer import KafkaPublisher

        target, name = KafkaPublisher, "publish"
    original = getattr(target, name)

    async def crash(*args: Any, **kwargs: Any) -> None:
        if fails == "after publishing":
            await original(*args, **kwargs)  # ... whose effect the crash then loses
            # (the transaction it ran in rolls back with the exception)
        raise Crash("the process died here")

    monkeypatch.setattr(target, name, crash)
    cut = await replays.run(job.id)
    assert cut.status == "failed"
    monkeypatch.setattr(target, name, original)
    async with gw.store.read() as conn:
        assert len(await stored_replays.pending(conn, job.id)) == 30

    done = await replays.run(job.id)
    assert done.status == "done"
    assert done.progress.read == 30
    ids = replayed_ids(await records(api, "events_topic"))
    assert sorted(ids) == sorted(f"w{i}" for i in range(30))
    async with gw.store.read() as conn:
        assert await stored_replays.pending(conn, job.id) == []


async def test_replay_jobs_through_the_native_api(api: Admin) -> None:
    shop = await Shop.create(api)
    await shop.send(QUARANTINED)
    await shop.amount_may_be(["number", "string"])

    async def finished(job_id: str) -> dict[str, Any]:
        async with asyncio.timeout(60):
            while True:
                got = await api.ok("GET", f"/api/latest/replays/{job_id}")
                job: dict[str, Any] = got["data"]["replays"][0]
                if job["status"] != "running":
                    return job
                await asyncio.sleep(0.1)

    created = await api.ok("PUT", "/api/latest/replays", {"dryRun": True})
    assert created["action"] == "createReplay"
    dry = await finished(created["id"])
    assert dry["status"] == "done"
    assert (dry["progress"]["passed"], dry["progress"]["stillFailing"]) == (3, 2)
    assert replayed_ids(await records(api, "events_topic")) == []

    created = await api.ok(
        "PUT", "/api/latest/replays", {"event": "Order Completed", "fixes": FIXES}
    )
    job = await finished(created["id"])
    assert (job["status"], job["progress"]["published"]) == ("done", 4)
    assert replayed_ids(await records(api, "events_topic")) == ["a1", "a2", "a3", "b1"]
    assert job["spec"]["fixes"] == FIXES
    # What the admin process's jobs did, for the dashboard.
    async with api.http.get(f"http://127.0.0.1:{api.gw.admin_port}/metrics") as resp:
        text = await resp.text()
    assert metric_value(text, "gateway_replay_events_total", result="would_pass") == 3
    assert metric_value(text, "gateway_replay_events_total", result="published") == 4
    # The dry run's two; the second job selected only what it recovers.
    assert metric_value(text, "gateway_replay_events_total", result="still_failing") == 2

    # Done: nothing to resume or cancel; bad specs and unknown jobs are refused.
    status, answer = await api("POST", f"/api/latest/replays/{job['id']}/resume")
    assert (status, answer["result"]) == (409, "error")
    status, answer = await api("POST", f"/api/latest/replays/{job['id']}/cancel")
    assert status == 409
    status, answer = await api("GET", "/api/latest/replays/rpl_nope")
    assert status == 404
    status, answer = await api("PUT", "/api/latest/replays", {"fixes": {"X": [{"op": "no"}]}})
    assert status == 400
    assert "not a JSON Patch" in answer["errorDetails"]
    status, answer = await api("PUT", "/api/latest/replays", {"reason": "bored"})
    assert status == 400
    # Beyond the catalog's integers (PostgreSQL's int4): refused, not a database error.
    status, answer = await api("PUT", "/api/latest/replays", {"planVersion": 2**40})
    assert status == 400
    status, answer = await api(
        "PUT",
        "/api/latest/replays",
        {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    )
    assert (status, answer["errorDetails"]) == (400, "since must be before until")

    # The change log records who started which replay.
    changes = await api.ok("GET", "/api/latest/changes?target=" + job["id"])
    assert [c["action"] for c in changes["data"]["changes"]] == ["createReplay"]


async def test_replay_collects_no_more_violations_than_a_request_may(api: Admin) -> None:
    """The worst quarantine for a replay: events with a thousand violations each. A replay
    step collects at most as many violations as a request may (ingest.max_request_violations);
    the events past them still fail, and say why."""
    shop = await Shop.create(api)
    tagged = amount_rule(["number"])
    tagged["properties"]["properties"]["properties"]["tags"] = {
        "type": "array",
        "items": {"type": "string"},
    }
    await shop.rule(tagged)
    await shop.until_enforced(order("probe", amount=1, tags=[1]), violated=True)
    budget = api.gw.settings.ingest.max_request_violations
    count = 2 * budget // 1000
    for i in range(count):  # one per request: each is quarantined with its violations listed
        await shop.send([order(f"t{i}", amount=1, tags=list(range(1000)))])
    gw = api.gw
    assert gw.store is not None
    replays = Replays(gw.store, gw.settings.kafka, gw.settings.ingest)
    job = await replays.run((await replays.create(ReplaySpec(dry_run=True))).id)
    assert (job.status, job.progress.still_failing) == ("done", count)
    failures = job.progress.failures
    listed = [n for why, n in failures.items() if why.startswith("violation: Datatype-Mismatch")]
    unlisted = [n for why, n in failures.items() if "this replay step's events already had" in why]
    assert (sum(listed), sum(unlisted)) == (count // 2, count // 2)


async def test_many_replays_at_once_leave_none_behind(api: Admin) -> None:
    """Twelve replays asked for at once: some are refused (429) before anything is created,
    and every one created is started — none is left 'running' with nothing running it."""
    await Shop.create(api)

    async def create() -> int:
        status, _ = await api("PUT", "/api/latest/replays", {"dryRun": True})
        return status

    statuses = await asyncio.gather(*(create() for _ in range(12)))
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) >= 1
    async with asyncio.timeout(30):
        while True:
            listed = (await api.ok("GET", "/api/latest/replays?limit=100"))["data"]["replays"]
            if all(job["status"] == "done" for job in listed):
                break
            await asyncio.sleep(0.1)
    assert len(listed) == statuses.count(200)
