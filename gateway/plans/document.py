"""A fetched snapshot document, decoded and checked: the work of ``gateway.plans.decoder``.

Kept apart from the providers and the cache, which bring the HTTP client and the event loop:
the child process that checks a large document imports only this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.plans.snapshot import (
    Snapshot,
    SnapshotError,
    compact_snapshot,
    compact_snapshot_of_json,
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
