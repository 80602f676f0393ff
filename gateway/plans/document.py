"""A fetched snapshot document, decoded and checked: the work of ``gateway.plans.decoder``.

Kept apart from the providers and the cache, which bring the HTTP client and the event loop:
the child process that checks a large document imports only this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from gateway.plans.snapshot import (
    Snapshot,
    SnapshotError,
    compact_snapshot,
    snapshot_from_compact,
    snapshot_revision_of,
)

CHECK_FAILED = 3  # exit code of `python -m gateway.plans.decoder` for a malformed document


@dataclass(frozen=True, slots=True)
class Fetched:
    """A new document; ``etag`` identifies it for the next conditional fetch."""

    content: bytes
    etag: str
    yaml: bool = False


def decode_document(fetched: Fetched) -> Any:
    if fetched.yaml:
        import yaml  # only YAML documents need it

        try:
            return yaml.safe_load(fetched.content)
        except yaml.YAMLError as exc:
            raise SnapshotError(f"snapshot is not valid YAML: {exc}") from None
    try:
        return orjson.loads(fetched.content)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"snapshot is not valid JSON: {exc}") from None


def snapshot_of(fetched: Fetched) -> tuple[Snapshot, bytes]:
    """The snapshot, and the JSON document to persist for it."""
    compact, content = check_document(fetched)
    return snapshot_from_compact(compact), content


def check_document(fetched: Fetched) -> tuple[bytes, bytes]:
    """Decode and check a document: its compact form, and the JSON document to persist.

    A JSON document with a revision is read with its rules left undecoded, each distinct rule
    decoded once (:func:`compact_snapshot_of_json`); any other is decoded whole. The decoded
    document is dropped on return, before the snapshot is built from the compact form (see
    :func:`compact_snapshot`).
    """
    if not fetched.yaml:
        compact = compact_snapshot_of_json(fetched.content)
        if compact is not None:
            return compact, fetched.content
    doc = decode_document(fetched)
    if not isinstance(doc, dict):
        raise SnapshotError("snapshot: must be an object")
    content = fetched.content  # persisted as fetched, unless the cases below apply
    if "revision" not in doc:
        # Persist the derived revision too, so a restart reports the same one.
        doc = {"revision": snapshot_revision_of(fetched.content), **doc}
        content = orjson.dumps(doc)
    elif fetched.yaml:
        content = orjson.dumps(doc)
    return compact_snapshot(doc), content


class _EventDoc(msgspec.Struct):
    """The fields of a plan's event that ``snapshot._event_rows`` reads; rules stay undecoded."""

    name: Any = msgspec.UNSET
    eventType: Any = msgspec.UNSET
    identitySection: Any = msgspec.UNSET
    rules: msgspec.Raw = msgspec.Raw(b"{}")
    ruleVersion: Any = msgspec.UNSET
    otherVersions: dict[str, msgspec.Raw] = {}


class _PastDoc(msgspec.Struct):
    """The fields of a plan's past version that ``snapshot._plan_row`` reads."""

    version: Any = msgspec.UNSET
    events: list[_EventDoc] = []
    commonRule: Any = msgspec.UNSET


class _PlanDoc(_PastDoc):
    """The fields of a plan that ``snapshot._plan_row`` reads."""

    id: Any = msgspec.UNSET
    name: Any = msgspec.UNSET
    pastVersions: list[_PastDoc] = []


class _Doc(msgspec.Struct):
    revision: Any = msgspec.UNSET
    sources: Any = msgspec.UNSET
    trackingPlans: list[_PlanDoc] = []


_DOC_DECODER = msgspec.json.Decoder(_Doc)


def compact_snapshot_of_json(content: bytes) -> bytes | None:
    """:func:`compact_snapshot` of a JSON document with a revision, decoding each distinct rule
    once: rules make up most of a large catalog, and plans repeat them (a 45 MB document
    decodes in a sixth of the time). None when the document is not shaped as expected (not
    JSON, a container of another type than the format's, no revision or not a string, a value
    orjson would not take): then the whole document is decoded as before, and
    :func:`compact_snapshot` says precisely what is wrong."""
    try:
        doc = _DOC_DECODER.decode(content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if not isinstance(doc.revision, str):
        return None
    try:
        return compact_snapshot(_present(doc))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        # What orjson refuses and msgspec takes, such as integers beyond 64 bits.
        return None


def _present(struct: msgspec.Struct) -> dict[str, Any]:
    """The fields the document has, as the dict the checks read (nested structs too)."""
    out: dict[str, Any] = {}
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if value is msgspec.UNSET:
            continue
        if isinstance(value, list) and value and isinstance(value[0], msgspec.Struct):
            value = [_present(item) for item in value]
        out[name] = value
    return out
