"""What a replay is asked to do: one declaration for the CLI, the native API and the stored job."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import jsonpatch
import msgspec
from jsonpointer import JsonPointerException

from gateway.catalog.store.schema import MAX_INTEGER
from gateway.errors import BadRequest
from gateway.outcomes import QuarantineReason
from gateway.replay.judge import Filters

Time = Annotated[datetime, msgspec.Meta(tz=True)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
MAX_FIXES = 100
MAX_OPERATIONS = 100


class ReplaySpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Which quarantine records to replay, against what, with which fixes.

    ``since`` (inclusive) and ``until`` (exclusive) select records by their Kafka timestamp;
    ``partitions``, ``fromOffset`` (inclusive) and ``toOffset`` (exclusive) by position; without
    either, the whole topic as it is when the replay starts. ``sourceId``, ``reason`` and
    ``event`` (a track event's name, or another event's type) filter what was selected.
    ``planVersion``: judge against that version of each source's connected plan instead of the
    current one. ``fixes``: JSON Patch (RFC 6902) operations per event name (or type), applied
    before judging. ``dryRun``: count what would pass and why the rest fail, publish nothing.
    """

    since: Time | None = None
    until: Time | None = None
    partitions: (
        Annotated[
            list[Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]], msgspec.Meta(max_length=10_000)
        ]
        | None
    ) = None
    from_offset: Offset | None = None
    to_offset: Offset | None = None
    source_id: Name | None = None
    reason: QuarantineReason | None = None
    event: Name | None = None
    plan_version: Annotated[int, msgspec.Meta(ge=1, le=MAX_INTEGER)] | None = None
    fixes: (
        Annotated[
            dict[Name, Annotated[list[dict[str, Any]], msgspec.Meta(max_length=MAX_OPERATIONS)]],
            msgspec.Meta(max_length=MAX_FIXES),
        ]
        | None
    ) = None
    dry_run: bool = False

    def check(self) -> None:
        """What the types cannot say; BadRequest names the field."""
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise BadRequest("since must be before until")
        if (
            self.from_offset is not None
            and self.to_offset is not None
            and self.from_offset >= self.to_offset
        ):
            raise BadRequest("fromOffset must be below toOffset")
        compiled_fixes(self)

    def filters(self) -> Filters:
        reason = self.reason.value if self.reason is not None else None
        return Filters(self.source_id, reason, self.event)


def compiled_fixes(spec: ReplaySpec) -> dict[str, jsonpatch.JsonPatch]:
    fixes: dict[str, jsonpatch.JsonPatch] = {}
    for name, operations in (spec.fixes or {}).items():
        try:
            fixes[name] = jsonpatch.JsonPatch(operations)
        except (jsonpatch.InvalidJsonPatch, JsonPointerException, TypeError, KeyError) as exc:
            raise BadRequest(f"fixes[{name!r}]: not a JSON Patch: {exc}") from None
    return fixes
