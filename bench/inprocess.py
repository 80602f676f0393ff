"""Scenarios without HTTP or Kafka, in this process: the CPU's bound for the per-event work.

- ``ceiling``: parse the request body (orjson) + normalize + validate (one compiled
  jsonschema-rs validator per rule: verdict, and violations for the invalid ones) + serialize
  each record — the gateway's own pipeline.
- ``naive``: the same loop as a careful straightforward implementation writes it: Python's
  reference ``jsonschema``, a ``Draft7Validator`` with format checking cached per rule, and
  ``iter_errors`` per event for every violation.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jsonschema
import orjson

from bench.corpus import Corpus
from bench.measure import CpuWindow, result, rss_mb
from gateway.cli import tune_gc
from gateway.config import IngestSettings, KafkaSettings
from gateway.enforce.enforcer import Enforcer
from gateway.ingest.normalize import normalize, request_info
from gateway.pipeline import Pipeline
from gateway.plans.snapshot import parse_snapshot

BATCH = 100
VIOLATING = 0.05


def _bodies(corpus: Corpus, batches: int) -> list[bytes]:
    events = corpus.make_events(batches * BATCH, VIOLATING)
    return [
        orjson.dumps({"batch": events[i : i + BATCH], "sentAt": "2026-11-01T10:00:01.000Z"})
        for i in range(0, len(events), BATCH)
    ]


def _run(duration_s: float, bodies: list[bytes], handle: Any) -> dict[str, Any]:
    tune_gc()  # as `gateway serve` runs
    handle(bodies[0])  # warm up: compile rules, fill caches
    latencies: list[float] = []
    events = requests = 0
    deadline = time.perf_counter() + duration_s
    with CpuWindow([os.getpid()]) as cpu:
        while time.perf_counter() < deadline:
            for body in bodies:
                started = time.perf_counter()
                events += handle(body)
                latencies.append((time.perf_counter() - started) * 1000)
                requests += 1
                if time.perf_counter() >= deadline:
                    break
    return result(
        events=events,
        requests=requests,
        seconds=cpu.elapsed,
        latencies_ms=latencies,
        cpu_percent=cpu.percent,
        rss=rss_mb(os.getpid()),
    )


def ceiling(duration_s: float) -> dict[str, Any]:
    corpus = Corpus()
    snapshot = parse_snapshot(corpus.snapshot())
    source = snapshot.sources[0]
    pipeline = Pipeline(IngestSettings(), KafkaSettings(), Enforcer())

    def handle(body: bytes) -> int:
        doc = orjson.loads(body)
        info = request_info(request_ip="127.0.0.1", envelope=doc)
        records, _ = pipeline.process(doc["batch"], source, snapshot, info)
        return len(records)

    return _run(duration_s, _bodies(corpus, 20), handle)


def naive(duration_s: float) -> dict[str, Any]:
    corpus = Corpus()
    plan = corpus.tracking_plan()
    checker = jsonschema.FormatChecker()
    validators = {
        (e["eventType"], e["name"]): jsonschema.Draft7Validator(e["rules"], format_checker=checker)
        for e in plan["events"]
    }

    def handle(body: bytes) -> int:
        doc = orjson.loads(body)
        info = request_info(request_ip="127.0.0.1", envelope=doc)
        for event in doc["batch"]:
            normalize(event, info)
            name = event.get("event", "") if event["type"] == "track" else ""
            validator = validators.get((event["type"], name))
            errors = []
            if validator is not None:
                errors = [error.message for error in validator.iter_errors(event)]
            event.setdefault("context", {})["violationErrors"] = errors
            orjson.dumps(event)
        return len(doc["batch"])

    return _run(duration_s, _bodies(corpus, 20), handle)
