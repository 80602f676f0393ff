"""The plan snapshot: the whole contract between the catalog and the data plane.

One JSON (or YAML) document lists the sources with their write keys and connected plan, and the
tracking plans with their event rules. :func:`parse_snapshot` checks its shape and builds an
immutable :class:`Snapshot` with an O(1) write-key index; the cache swaps whole snapshots.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.enforce.policy import Policy, policies_for
from gateway.outcomes import EVENT_TYPES

IDENTITY_SECTIONS = ("properties", "traits", "context.traits")


class SnapshotError(ValueError):
    """The snapshot document is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class PlanEvent:
    name: str
    event_type: str
    identity_section: str
    rules: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TrackingPlan:
    id: str
    name: str
    version: int
    events: tuple[PlanEvent, ...]
    # Digest of the plan's whole content: compiled rules are reused across refreshes while it
    # is unchanged, even when a hand-edited file changes rules without bumping the version.
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class PlanConnection:
    plan_id: str
    version: int
    config: Mapping[str, Any]
    # The effective policy per event type, derived from ``config`` at parse time.
    policies: Mapping[str, Policy]


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    name: str
    enabled: bool
    write_keys: tuple[str, ...]
    tracking_plan: PlanConnection | None


@dataclass(frozen=True)
class Snapshot:
    revision: str
    sources: tuple[Source, ...]
    tracking_plans: Mapping[str, TrackingPlan]
    _by_key_digest: Mapping[bytes, Source] = field(repr=False, default_factory=dict)

    def source_for_key(self, write_key: str) -> Source | None:
        """Find the source owning ``write_key``.

        The index is keyed by a SHA-256 digest of the key, so the lookup compares digests, never
        the secret itself; the final compare_digest confirms the match in constant time.
        """
        digest = _key_digest(write_key)
        source = self._by_key_digest.get(digest)
        if source is None:
            return None
        for key in source.write_keys:
            if hmac.compare_digest(_key_digest(key), digest):
                return source
        return None  # pragma: no cover - unreachable unless digests collide

    def plan_for(self, source: Source) -> TrackingPlan | None:
        if source.tracking_plan is None:
            return None
        return self.tracking_plans.get(source.tracking_plan.plan_id)


def _key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def parse_snapshot(doc: Any) -> Snapshot:
    if not isinstance(doc, dict):
        raise SnapshotError("snapshot: must be an object")
    revision = doc.get("revision", "")
    if not isinstance(revision, str | int) or isinstance(revision, bool):
        raise SnapshotError("snapshot.revision: must be a string")
    plans: dict[str, TrackingPlan] = {}
    for i, raw_plan in enumerate(_list(doc, "trackingPlans", "snapshot")):
        plan = _parse_plan(raw_plan, f"trackingPlans[{i}]")
        if plan.id in plans:
            raise SnapshotError(f"trackingPlans[{i}].id: duplicate plan id {plan.id!r}")
        plans[plan.id] = plan
    sources: list[Source] = []
    by_digest: dict[bytes, Source] = {}
    seen_ids: set[str] = set()
    for i, raw_source in enumerate(_list(doc, "sources", "snapshot")):
        where = f"sources[{i}]"
        source = _parse_source(raw_source, where)
        if source.id in seen_ids:
            raise SnapshotError(f"{where}.id: duplicate source id {source.id!r}")
        seen_ids.add(source.id)
        if source.tracking_plan and source.tracking_plan.plan_id not in plans:
            raise SnapshotError(
                f"{where}.trackingPlan.id: plan {source.tracking_plan.plan_id!r} is not in "
                "trackingPlans"
            )
        for key in source.write_keys:
            digest = _key_digest(key)
            if digest in by_digest:
                raise SnapshotError(f"{where}.writeKeys: key is already used by another source")
            by_digest[digest] = source
        sources.append(source)
    return Snapshot(str(revision), tuple(sources), plans, by_digest)


def snapshot_revision_of(content: bytes) -> str:
    """A revision for documents that carry none (e.g. a hand-written plans file)."""
    return "sha256:" + hashlib.sha256(content).hexdigest()[:16]


def _parse_plan(raw: Any, where: str) -> TrackingPlan:
    obj = _obj(raw, where)
    events: list[PlanEvent] = []
    for j, raw_event in enumerate(_list(obj, "events", where)):
        ev_where = f"{where}.events[{j}]"
        ev = _obj(raw_event, ev_where)
        event_type = _str(ev, "eventType", ev_where)
        if event_type not in EVENT_TYPES or event_type == "alias":
            raise SnapshotError(f"{ev_where}.eventType: {event_type!r} is not a plannable type")
        name = ev.get("name", "")
        if not isinstance(name, str):
            raise SnapshotError(f"{ev_where}.name: must be a string")
        if event_type == "track" and not name:
            raise SnapshotError(f"{ev_where}.name: a track event needs a name")
        identity = ev.get("identitySection", "properties" if event_type != "identify" else "traits")
        if identity not in IDENTITY_SECTIONS:
            raise SnapshotError(
                f"{ev_where}.identitySection: must be one of {', '.join(IDENTITY_SECTIONS)}"
            )
        rules = ev.get("rules", {})
        if not isinstance(rules, dict) and rules is not True:
            raise SnapshotError(f"{ev_where}.rules: must be a JSON schema object")
        events.append(
            PlanEvent(name, event_type, identity, rules if isinstance(rules, dict) else {})
        )
    return TrackingPlan(
        id=_str(obj, "id", where),
        name=str(obj.get("name", "")),
        version=_int(obj, "version", where, default=1),
        events=tuple(events),
        fingerprint=hashlib.sha256(
            orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        ).hexdigest(),
    )


def _parse_source(raw: Any, where: str) -> Source:
    obj = _obj(raw, where)
    keys = obj.get("writeKeys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise SnapshotError(f"{where}.writeKeys: must be a list of non-empty strings")
    enabled = obj.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SnapshotError(f"{where}.enabled: must be true or false")
    connection: PlanConnection | None = None
    raw_tp = obj.get("trackingPlan")
    if raw_tp is not None:
        tp_where = f"{where}.trackingPlan"
        tp = _obj(raw_tp, tp_where)
        config = tp.get("config", {})
        if not isinstance(config, dict):
            raise SnapshotError(f"{tp_where}.config: must be an object")
        connection = PlanConnection(
            plan_id=_str(tp, "id", tp_where),
            version=_int(tp, "version", tp_where, default=0),
            config=config,
            policies=policies_for(config),
        )
    return Source(
        id=_str(obj, "id", where),
        name=str(obj.get("name", "")),
        enabled=enabled,
        write_keys=tuple(keys),
        tracking_plan=connection,
    )


def _obj(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SnapshotError(f"{where}: must be an object")
    return raw


def _list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise SnapshotError(f"{where}.{key}: must be a list")
    return value


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise SnapshotError(f"{where}.{key}: must be a non-empty string")
    return value


def _int(obj: dict[str, Any], key: str, where: str, *, default: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SnapshotError(f"{where}.{key}: must be an integer")
    return value
