"""Dry runs for instrumentation tests: what would happen to these events, without publishing.

Both ``POST /v1/validate`` and ``gateway validate --snapshot FILE EVENTS.jsonl`` run the real
pipeline (normalize → check → enforce) and report each event's outcome — the same code path as
ingestion, so an app's CI can assert its events conform before release.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from gateway.config import IngestSettings, KafkaSettings
from gateway.enforce.enforcer import Enforcer
from gateway.ingest.normalize import request_info
from gateway.outcomes import Outcome
from gateway.pipeline import EventResult, Pipeline
from gateway.plans.document import Fetched, snapshot_of
from gateway.plans.snapshot import Snapshot, SnapshotError, Source


class ValidateError(Exception):
    """Bad input to ``gateway validate`` (unreadable files, no matching source)."""


def report_document(results: Sequence[EventResult]) -> dict[str, Any]:
    outcomes = Counter(r.outcome.value for r in results)
    return {
        "events": len(results),
        "forwarded": outcomes[Outcome.FORWARDED.value],
        "quarantined": outcomes[Outcome.QUARANTINED.value],
        "results": [
            {
                "index": i,
                "messageId": _as_sent(r.message_id),
                "type": _as_sent(r.event_type),
                "event": _as_sent(r.event_name),
                "outcome": r.outcome.value,
                "reason": r.reason.value if r.reason else None,
                "violations": r.violations,
            }
            for i, r in enumerate(results)
        ],
    }


def _as_sent(value: Any) -> str | None:
    """A field echoed back to the client: a string as it was sent, anything else null — it
    could be any JSON, even nested deeper than a response can be written."""
    return value if isinstance(value, str) else None


def format_report(results: Sequence[EventResult], labels: Sequence[str]) -> str:
    """A readable report; ``labels`` names each event (e.g. "line 3")."""
    lines: list[str] = []
    reasons: Counter[str] = Counter()
    with_violations = 0
    for label, r in zip(labels, results, strict=True):
        what = " ".join(
            part
            for part in (str(r.event_type or "?"), f'"{r.event_name}"' if r.event_name else "")
            if part
        )
        if r.outcome is Outcome.QUARANTINED:
            assert r.reason is not None
            reasons[r.reason.value] += 1
            lines.append(f"FAIL  {label}: {what} -> quarantined ({r.reason.value})")
        else:
            with_violations += bool(r.violations)
            lines.append(f"ok    {label}: {what} -> forwarded")
        for v in r.violations:
            where = v.get("meta", {}).get("instancePath") or ""
            lines.append(
                f"        {v['type']}: {v['message']}" + (f" (at {where})" if where else "")
            )
    quarantined = sum(reasons.values())
    summary = (
        f"{len(results)} events: {len(results) - quarantined} forwarded"
        f" ({with_violations} with violations), {quarantined} quarantined"
    )
    if reasons:
        summary += " (" + ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())) + ")"
    return "\n".join([*lines, "", summary])


def load_snapshot(path: Path) -> Snapshot:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ValidateError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None
    try:
        snapshot, _ = snapshot_of(
            Fetched(content, "", yaml=path.suffix.lower() in (".yaml", ".yml"))
        )
    except SnapshotError as exc:
        raise ValidateError(f"snapshot {path}: {exc}") from None
    return snapshot


def choose_source(snapshot: Snapshot, write_key: str | None, source_id: str | None) -> Source:
    if write_key:
        found = snapshot.source_for_key(write_key)
        if found is None:
            raise ValidateError("no source in the snapshot has that write key")
        return found
    if source_id:
        for source in snapshot.sources:
            if source.id == source_id:
                return source
        raise ValidateError(f"no source {source_id!r} in the snapshot")
    if len(snapshot.sources) == 1:
        return snapshot.sources[0]
    ids = ", ".join(s.id for s in snapshot.sources) or "none"
    raise ValidateError(f"the snapshot has several sources ({ids}); choose one with --source")


def read_events(path: Path) -> tuple[list[Any], list[str]]:
    """Events of a JSON Lines file (one event per line), with a label per event."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ValidateError(f"cannot read events {path}: {exc.strerror or exc}") from None
    events: list[Any] = []
    labels: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise ValidateError(f"{path}:{number}: not valid JSON: {exc}") from None
        labels.append(f"line {number}")
    if not events:
        raise ValidateError(f"{path}: no events")
    return events, labels


def validate_offline(snapshot: Snapshot, source: Source, events: list[Any]) -> list[EventResult]:
    pipeline = Pipeline(IngestSettings(), KafkaSettings(), Enforcer())
    info = request_info(request_ip="")
    results: list[EventResult] = []
    pipeline.process(events, source, snapshot, info, results=results)
    return results
