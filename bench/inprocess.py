"""Scenarios without HTTP or Kafka, in this process: the CPU's bound for the per-event work.

- ``ceiling``: parse the request body (orjson) + normalize + validate (one compiled
  jsonschema-rs validator per rule: verdict, and violations for the invalid ones) + serialize
  each record — the gateway's own pipeline.
- ``naive``: the same loop as a careful straightforward implementation writes it: Python's
  reference ``jsonschema``, a ``Draft7Validator`` with format checking cached per rule, and
  ``iter_errors`` per event for every violation. It also measures ``ceiling`` again, in
  alternating one-second slices with itself: the ratio of the two rates in those slices
  (``ceiling_per_naive_interleaved``) is what the target is judged on, as both then see the
  same machine (a shared one drifts in speed over minutes).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import orjson

from bench.corpus import Corpus
from bench.measure import CpuWindow, SliceRun, alternate, result, rss_mb
from gateway.cli import tune_gc
from gateway.config import IngestSettings, KafkaSettings
from gateway.enforce.enforcer import Enforcer
from gateway.ingest.normalize import normalize, request_info
from gateway.pipeline import Pipeline
from gateway.plans.snapshot import parse_snapshot

BATCH = 100
VIOLATING = 0.05
SLICE_S = 1.0  # naive: each slice of the interleaved comparison
Handle = Callable[[bytes], int]


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


def run_slice(handle: Handle, bodies: list[bytes], duration_s: float) -> tuple[int, float]:
    """``bodies`` through ``handle`` round-robin for ``duration_s``: (events, seconds)."""
    # Each slice starts with no garbage of what ran before: one side's collections (the
    # reference implementation makes plenty) are not timed on the other side.
    gc.collect()
    events = 0
    started = time.perf_counter()
    deadline = started + duration_s
    while time.perf_counter() < deadline:
        for body in bodies:
            events += handle(body)
            if time.perf_counter() >= deadline:
                break
    return events, time.perf_counter() - started


def _ceiling_handle(corpus: Corpus) -> Handle:
    snapshot = parse_snapshot(corpus.snapshot())
    source = snapshot.sources[0]
    pipeline = Pipeline(IngestSettings(), KafkaSettings(), Enforcer())

    def handle(body: bytes) -> int:
        doc = orjson.loads(body)
        info = request_info(request_ip="127.0.0.1", envelope=doc)
        records, _ = pipeline.process(doc["batch"], source, snapshot, info)
        return len(records)

    return handle


def _naive_handle(corpus: Corpus) -> Handle:
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

    return handle


def ceiling(duration_s: float) -> dict[str, Any]:
    corpus = Corpus()
    return _run(duration_s, _bodies(corpus, 20), _ceiling_handle(corpus))


def ceiling_slices(corpus: Corpus) -> SliceRun:
    """One slice of ``ceiling``'s loop at a time (for a comparison interleaved with it):
    ``slice(seconds)`` → (events, seconds)."""
    bodies, handle = _bodies(corpus, 20), _ceiling_handle(corpus)
    tune_gc()  # as `gateway serve` runs
    handle(bodies[0])  # warm up: compile rules, fill caches
    return lambda duration_s: run_slice(handle, bodies, duration_s)


def naive(duration_s: float) -> dict[str, Any]:
    corpus = Corpus()
    bodies = _bodies(corpus, 20)
    handle = _naive_handle(corpus)
    figures = _run(duration_s, bodies, handle)
    ceiling_ = _ceiling_handle(corpus)
    # Half the scenario's duration for each side: 10 s in all.
    ratio = alternate(
        duration_s / 2,
        SLICE_S,
        lambda seconds: run_slice(ceiling_, bodies, seconds),
        lambda seconds: run_slice(handle, bodies, seconds),
    )
    return figures | {"ceiling_per_naive_interleaved": round(ratio, 2)}
