"""Prometheus metrics (``gateway_…``, listed in the README), one registry per gateway.

Label values are bounded: ``source_id`` comes from the snapshot, ``type`` and ``reason`` from
fixed vocabularies, ``route`` from the router's templates, never from raw client input.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "gateway_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds; the gateway answers in milliseconds normally, Kafka stalls push into seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

LabelledMetric = TypeVar("LabelledMetric", Counter, Gauge, Histogram)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # With several worker processes (gateway.workers) samples go to shared files and
        # every exposition adds up all processes.
        self.multiprocess = MULTIPROC_ENV in os.environ
        # (metric, label values) -> that metric's child; see labelled().
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}
        r = self.registry
        self.events_received = Counter(
            PREFIX + "events_received_total", "Events received", ["source_id", "type"], registry=r
        )
        self.events_forwarded = Counter(
            PREFIX + "events_forwarded_total",
            "Events published to the events topic",
            ["source_id", "type"],
            registry=r,
        )
        self.events_quarantined = Counter(
            PREFIX + "events_quarantined_total",
            "Events published to the quarantine topic",
            ["source_id", "type", "reason"],
            registry=r,
        )
        self.violations = Counter(
            PREFIX + "violations_total",
            "Tracking-plan violations found",
            ["source_id", "tracking_plan_id", "event", "rule_version", "violation_type"],
            registry=r,
        )
        self.events_checked = Counter(
            PREFIX + "events_checked_total",
            "Events checked against a tracking plan; valid is false when it had a violation",
            ["source_id", "tracking_plan_id", "event", "valid"],
            registry=r,
        )
        self.shadow_violations = Counter(
            PREFIX + "shadow_violations_total",
            "Violations of sources' shadow plans (candidates, without effect)",
            ["source_id", "tracking_plan_id", "event", "violation_type"],
            registry=r,
        )
        self.shadow_outcomes = Counter(
            PREFIX + "shadow_outcomes_total",
            "What enforcing the shadow plan would do to events: forward, strip or drop",
            ["source_id", "tracking_plan_id", "event", "would"],
            registry=r,
        )
        self.replay_events = Counter(
            PREFIX + "replay_events_total",
            "Admin: quarantined events replay jobs judged, by result",
            ["result"],  # published, already_replayed, still_failing, would_pass (dry runs)
            registry=r,
        )
        self.request_duration = Histogram(
            PREFIX + "request_duration_seconds",
            "HTTP request duration",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.validation_duration = Histogram(
            PREFIX + "validation_duration_seconds",
            "Time to validate one request's events",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.kafka_produce_duration = Histogram(
            PREFIX + "kafka_produce_duration_seconds",
            "Time from handing a request's events to the producer until Kafka acknowledged all",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.kafka_produce_errors = Counter(
            PREFIX + "kafka_produce_errors_total", "Events Kafka failed to acknowledge", registry=r
        )
        self.plan_snapshot_age = Gauge(
            PREFIX + "plan_snapshot_age_seconds",
            "Seconds since the plan snapshot was last confirmed current by its source",
            registry=r,
            multiprocess_mode="livemax",  # the stalest worker
        )
        self.plan_refresh = Counter(
            PREFIX + "plan_refresh_total",
            "Plan snapshot refreshes by result",
            ["result"],
            registry=r,
        )
        self.inflight_events = Gauge(
            PREFIX + "inflight_events",
            "Events accepted but not yet acknowledged",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.inflight_bytes = Gauge(
            PREFIX + "inflight_bytes",
            "Bytes of request bodies being read or inflated plus events awaiting Kafka",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.snapshot_build_errors = Counter(
            PREFIX + "snapshot_build_errors_total",
            "Admin: plan snapshots of a catalog revision that could not be built",
            registry=r,
        )

    def labelled(self, metric: LabelledMetric, *values: str) -> LabelledMetric:
        """``metric.labels(*values)``, remembered: ``labels()`` checks and locks on every call
        (several microseconds), and one request counts dozens of label sets. Children are never
        removed, and label values are bounded (see above), so neither is this."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def exposition(self) -> bytes:
        if self.multiprocess:
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            return generate_latest(combined)
        return generate_latest(self.registry)
