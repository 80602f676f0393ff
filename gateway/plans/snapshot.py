"""The plan snapshot: the whole contract between the catalog and the data plane.

One JSON (or YAML) document lists the sources with their write keys and connected plan, and the
tracking plans with their event rules. :func:`parse_snapshot` checks its shape and builds an
immutable :class:`Snapshot` with an O(1) write-key index; the cache swaps whole snapshots
(and empties a replaced one, entry by entry, once nothing uses it).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import orjson

from gateway.enforce.policy import Policy, policies_for
from gateway.outcomes import EVENT_TYPES

IDENTITY_SECTIONS = ("properties", "traits", "context.traits")
COMMON = "common"  # the event type of a plan's common rule


class SnapshotError(ValueError):
    """The snapshot document is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class PlanEvent:
    """One rule of a plan: an event's (at one of its versions), or the plan's common rule."""

    name: str
    event_type: str
    identity_section: str
    rules: Mapping[str, Any]
    # Digest of ``rules``: equal rules share one parsed object and one compiled validator,
    # across plans and across refreshes.
    fingerprint: str
    version: int = 1
    # Every version of the event's rule by number, this one included; empty when the event
    # has only this one. ``latest`` is the highest (this one when there is no other).
    versions: Mapping[int, PlanEvent] = field(default_factory=dict)
    latest: PlanEvent | None = None

    def at_version(self, version: int) -> PlanEvent | None:
        if not self.versions:
            return self if version == self.version else None
        return self.versions.get(version)

    def all_versions(self) -> tuple[PlanEvent, ...]:
        return tuple(self.versions.values()) if self.versions else (self,)


@dataclass(frozen=True, slots=True)
class TrackingPlan:
    id: str
    name: str
    version: int
    events: tuple[PlanEvent, ...]
    # (event type, name) → event; "" is the name of non-track events.
    by_key: Mapping[tuple[str, str], PlanEvent]
    # The rule every event of the plan must satisfy as well as its own, if any.
    common: PlanEvent | None = None
    # Versions before this one, by number, that events may be pinned to (RudderTyper).
    past: Mapping[int, TrackingPlan] = field(default_factory=dict)

    def event(self, event_type: str, name: str) -> PlanEvent | None:
        return self.by_key.get((event_type, name))


@dataclass(frozen=True, slots=True)
class PlanConnection:
    plan_id: str
    version: int
    config: Mapping[str, Any]
    # The effective policy per event type, derived from ``config`` at parse time.
    policies: Mapping[str, Policy]
    # A candidate plan and version every event is also checked against, without effect.
    shadow: tuple[str, int] | None = None


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
    # Every distinct rule of the plans, by digest (PlanEvent.fingerprint).
    rules: Mapping[str, Any]
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

    def dismantle(self) -> None:
        """Empty the tables one entry at a time, so freeing them never holds the GIL for long.

        Only for a snapshot nothing else refers to any more (see the plan cache).
        """
        for table in (self.tracking_plans, self.rules, self._by_key_digest):
            entries = cast(dict[Any, Any], table)
            while entries:
                entries.popitem()

    def plan_for(self, source: Source) -> TrackingPlan | None:
        if source.tracking_plan is None:
            return None
        return self.tracking_plans.get(source.tracking_plan.plan_id)

    def shadow_for(self, source: Source) -> TrackingPlan | None:
        """The source's shadow plan, at its version, if it has one."""
        if source.tracking_plan is None or source.tracking_plan.shadow is None:
            return None
        plan_id, version = source.tracking_plan.shadow
        plan = self.tracking_plans.get(plan_id)
        if plan is None or plan.version == version:
            return plan
        return plan.past.get(version)


def _key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def parse_snapshot(doc: Any) -> Snapshot:
    """Check a snapshot document and build the :class:`Snapshot`; SnapshotError says where."""
    return snapshot_from_compact(compact_snapshot(doc))


def compact_snapshot(doc: Any) -> bytes:
    """Check a document and return its compact form (JSON lines), to build the snapshot from.

    Each distinct rule appears once, by digest: large catalogs repeat rules across plans. A
    caller holding a large document drops it before :func:`snapshot_from_compact`, so the
    snapshot is allocated afresh rather than scattered among the document's freed objects
    (which would keep most of the document's memory resident).
    """
    if not isinstance(doc, dict):
        raise SnapshotError("snapshot: must be an object")
    revision = doc.get("revision", "")
    if not isinstance(revision, str | int) or isinstance(revision, bool):
        raise SnapshotError("snapshot.revision: must be a string")
    rules = _Rules()
    plans: list[list[Any]] = []
    plan_ids: set[str] = set()
    plan_versions: dict[str, set[int]] = {}  # the versions each plan has in the document
    for i, raw_plan in enumerate(_list(doc, "trackingPlans", "snapshot")):
        plan = _plan_row(raw_plan, f"trackingPlans[{i}]", rules)
        plan_id = plan[0]
        if plan_id in plan_ids:
            raise SnapshotError(f"trackingPlans[{i}].id: duplicate plan id {plan_id!r}")
        plan_ids.add(plan_id)
        plans.append(plan)
        plan_versions[plan_id] = {plan[2], *(past[0] for past in plan[5])}
    sources: list[list[Any]] = []
    source_ids: set[str] = set()
    write_keys: set[str] = set()
    for i, raw_source in enumerate(_list(doc, "sources", "snapshot")):
        where = f"sources[{i}]"
        source = _source_row(raw_source, where)
        source_id, _, _, keys, connection = source
        if source_id in source_ids:
            raise SnapshotError(f"{where}.id: duplicate source id {source_id!r}")
        source_ids.add(source_id)
        if connection is not None and connection[0] not in plan_ids:
            raise SnapshotError(
                f"{where}.trackingPlan.id: plan {connection[0]!r} is not in trackingPlans"
            )
        if connection is not None and connection[3] is not None:
            shadow_id, shadow_version = connection[3]
            if shadow_version not in plan_versions.get(shadow_id, ()):
                raise SnapshotError(
                    f"{where}.trackingPlan.shadow: plan {shadow_id!r} at version "
                    f"{shadow_version} is not in trackingPlans (nor its pastVersions)"
                )
        if not write_keys.isdisjoint(keys) or len(set(keys)) < len(keys):
            raise SnapshotError(f"{where}.writeKeys: key is already used by another source")
        write_keys.update(keys)
        sources.append(source)
    # One JSON line per item, so building never decodes much at once (each decode holds the GIL).
    lines = [orjson.dumps(["revision", str(revision)])]
    lines += (
        orjson.dumps(["rule", fp, s], option=orjson.OPT_NON_STR_KEYS) for fp, s in rules.items()
    )
    lines += (orjson.dumps(["plan", *plan]) for plan in plans)
    lines += (
        orjson.dumps(["source", *source], option=orjson.OPT_NON_STR_KEYS) for source in sources
    )
    return b"\n".join(lines)


def snapshot_from_compact(compact: bytes) -> Snapshot:
    revision = ""
    rules: dict[str, Any] = {}
    plans: dict[str, TrackingPlan] = {}
    sources: list[Source] = []
    by_digest: dict[bytes, Source] = {}
    for line in compact.split(b"\n"):
        kind, *row = orjson.loads(line)
        if kind == "rule":
            rules[row[0]] = row[1]
        elif kind == "plan":
            plan_id, name, version, event_rows, common_row, past_rows = row
            past = {
                number: _plan(plan_id, name, number, past_events, past_common, rules, {})
                for number, past_events, past_common in past_rows
            }
            plans[plan_id] = _plan(plan_id, name, version, event_rows, common_row, rules, past)
        elif kind == "source":
            source_id, name, enabled, keys, connection = row
            tracking_plan = None
            if connection is not None:
                plan_id, version, config, shadow = connection
                tracking_plan = PlanConnection(
                    plan_id,
                    version,
                    config,
                    policies_for(config),
                    (shadow[0], shadow[1]) if shadow is not None else None,
                )
            source = Source(source_id, name, enabled, tuple(keys), tracking_plan)
            for key in keys:
                by_digest[_key_digest(key)] = source
            sources.append(source)
        else:
            revision = row[0]
    return Snapshot(revision, tuple(sources), plans, rules, by_digest)


def _plan(
    plan_id: str,
    name: str,
    version: int,
    event_rows: list[list[Any]],
    common_row: list[Any] | None,
    rules: dict[str, Any],
    past: dict[int, TrackingPlan],
) -> TrackingPlan:
    events = tuple(_plan_event(event_row, rules) for event_row in event_rows)
    by_key = {(e.event_type, e.name): e for e in events}
    common = None
    if common_row is not None:
        common_version, fp = common_row
        common = PlanEvent("", COMMON, "properties", rules[fp], fp, common_version)
    return TrackingPlan(plan_id, name, version, events, by_key, common, past)


def _plan_event(row: list[Any], rules: dict[str, Any]) -> PlanEvent:
    name, event_type, identity, fp, version, others = row
    oldest = PlanEvent(name, event_type, identity, rules[fp], fp, version)
    if not others:
        return oldest
    versions = {version: oldest}
    for number, other_fp in others:
        versions[number] = PlanEvent(name, event_type, identity, rules[other_fp], other_fp, number)
    latest = versions[max(versions)]
    return PlanEvent(name, event_type, identity, oldest.rules, fp, version, versions, latest)


def snapshot_revision_of(content: bytes) -> str:
    """A revision for documents that carry none (e.g. a hand-written plans file)."""
    return "sha256:" + hashlib.sha256(content).hexdigest()[:16]


def _plan_row(raw: Any, where: str, rules: _Rules) -> list[Any]:
    """``[id, name, version, events, common, [[past version, events, common], ...]]`` where
    events are ``[[name, eventType, identitySection, rules digest, rule version, [[other
    version, its rules digest], ...]], ...]`` and common ``[common version, digest] | None``."""
    obj = _obj(raw, where)
    version = _int(obj, "version", where, default=1)
    past: list[list[Any]] = []
    for k, raw_past in enumerate(
        _list(obj, "pastVersions", where) if "pastVersions" in obj else ()
    ):
        past_where = f"{where}.pastVersions[{k}]"
        past_obj = _obj(raw_past, past_where)
        number = _int(past_obj, "version", past_where, default=0)
        if not 1 <= number < version or (past and number <= past[-1][0]):
            raise SnapshotError(
                f"{past_where}.version: must be below {version} and above the one before it"
            )
        past.append(
            [
                number,
                _event_rows(past_obj, past_where, rules),
                _common_row(past_obj, past_where, rules),
            ]
        )
    return [
        _str(obj, "id", where),
        str(obj.get("name", "")),
        version,
        _event_rows(obj, where, rules),
        _common_row(obj, where, rules),
        past,
    ]


def _event_rows(obj: dict[str, Any], where: str, rules: _Rules) -> list[list[Any]]:
    events: list[list[Any]] = []
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
        fingerprint = _rule(ev.get("rules", {}), f"{ev_where}.rules", rules)
        version = _int(ev, "ruleVersion", ev_where, default=1)
        others: list[list[Any]] = []
        raw_others = ev.get("otherVersions", {})
        if not isinstance(raw_others, dict):
            raise SnapshotError(f"{ev_where}.otherVersions: must be an object")
        for number, other in raw_others.items():
            if not number.isdigit() or int(number) <= version:
                raise SnapshotError(
                    f"{ev_where}.otherVersions: {number!r} is not a version above {version}"
                )
            other_where = f"{ev_where}.otherVersions.{number}"
            others.append([int(number), _rule(other, other_where, rules)])
        events.append([name, event_type, identity, fingerprint, version, sorted(others)])
    return events


def _common_row(obj: dict[str, Any], where: str, rules: _Rules) -> list[Any] | None:
    raw_common = obj.get("commonRule")
    if raw_common is None:
        return None
    common_where = f"{where}.commonRule"
    common_obj = _obj(raw_common, common_where)
    return [
        _int(common_obj, "version", common_where, default=1),
        _rule(common_obj.get("rules", {}), f"{common_where}.rules", rules),
    ]


class _Rules(dict[str, Any]):
    """The distinct rules of a document by digest; ``by_text`` remembers the digest of each
    rule text met undecoded (see ``gateway.plans.document.compact_snapshot_of_json``)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_text: dict[bytes, str] = {}


def _rule(schema: Any, where: str, rules: _Rules) -> str:
    """The digest of a rule (kept once in ``rules``); ``schema`` may be its undecoded text."""
    if isinstance(schema, msgspec.Raw):
        text = bytes(schema)
        known = rules.by_text.get(text)
        if known is None:
            known = rules.by_text[text] = _rule(orjson.loads(text), where, rules)
        return known
    if schema is True:
        schema = {}
    if not isinstance(schema, dict):
        raise SnapshotError(f"{where}: must be a JSON schema object")
    canonical = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    fingerprint = hashlib.blake2b(canonical, digest_size=16).hexdigest()
    rules.setdefault(fingerprint, schema)
    return fingerprint


def _source_row(raw: Any, where: str) -> list[Any]:
    """``[id, name, enabled, writeKeys, [plan id, version, config] | None]``"""
    obj = _obj(raw, where)
    keys = obj.get("writeKeys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise SnapshotError(f"{where}.writeKeys: must be a list of non-empty strings")
    enabled = obj.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SnapshotError(f"{where}.enabled: must be true or false")
    connection: list[Any] | None = None
    raw_tp = obj.get("trackingPlan")
    if raw_tp is not None:
        tp_where = f"{where}.trackingPlan"
        tp = _obj(raw_tp, tp_where)
        config = tp.get("config", {})
        if not isinstance(config, dict):
            raise SnapshotError(f"{tp_where}.config: must be an object")
        shadow = None
        raw_shadow = tp.get("shadow")
        if raw_shadow is not None:
            shadow_where = f"{tp_where}.shadow"
            shadow_obj = _obj(raw_shadow, shadow_where)
            shadow = [
                _str(shadow_obj, "id", shadow_where),
                _int(shadow_obj, "version", shadow_where, default=0),
            ]
        connection = [
            _str(tp, "id", tp_where),
            _int(tp, "version", tp_where, default=0),
            config,
            shadow,
        ]
    return [_str(obj, "id", where), str(obj.get("name", "")), enabled, keys, connection]


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
