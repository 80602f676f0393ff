"""What the catalog stores as rules must be servable: bounded in depth, serialisable, compiled.

Every rule a plan event holds travels in the plan snapshot to every ingest replica. A rule
that cannot be written into that document breaks the snapshot for the whole catalog — ingest
then keeps its old one, so a write key deleted afterwards keeps working — so it is refused with
400 when it is written, on every path that stores or feeds rules: plan events (``PATCH``,
``POST``, ``PUT …/events``), catalog properties (``propConfig``) and custom types. The check
runs before the write transaction opens (see :func:`recheck`), never while it holds the lock.

- **Depth.** A rule nests at most :data:`MAX_RULE_DEPTH` JSON objects/arrays. orjson writes
  documents up to 254 levels; the snapshot carries each rule 5 levels down and the plan's
  version history 3 levels down, so this leaves ample room, and real plans stay far below it
  (a property 30 levels down in an event needs about 60).
- **Compilation.** A rule the validation engine cannot compile (an invalid schema, a remote
  ``$ref``) is refused too, with the engine's error: it could never validate anything. A rule
  that reaches the data plane by another way (a snapshot file, an older catalog, a new engine
  version) still fails only its own event at run time: a rule that does not compile is reported as
  ``Unknown-Violation`` with the compile error for that event, never for the rest of the plan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.enforce.compile import CompiledRule
from gateway.errors import BadRequest

MAX_RULE_DEPTH = 64


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` objects/arrays (without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def check_depth(value: Any, what: str) -> None:
    if depth_exceeds(value, MAX_RULE_DEPTH):
        raise BadRequest(
            f"{what}: nests deeper than {MAX_RULE_DEPTH} levels of objects and arrays; "
            "a deeper rule could not be served to ingest"
        )


async def check_rule(rules: Mapping[str, Any], what: str = "rules") -> None:
    """Refuse (400) a JSON schema that could not be served in the plan snapshot."""
    check_depth(rules, what)
    # Compiling takes milliseconds, longer for large rules: off the event loop, which the
    # admin port may share with ingest.
    error = await asyncio.to_thread(_servable_error, rules)
    if error is not None:
        raise BadRequest(f"{what}: {error}")


async def recheck(
    rules: Mapping[str, Any], checked: Mapping[str, Any], what: str = "rules"
) -> None:
    """Inside a write transaction: ``rules``, built again from the catalog, are the ``checked``
    ones built before it opened — compiling takes long, and the transaction holds SQLite's
    write lock. Only if the catalog changed in between are they checked (compiled) here."""
    if rules != checked:
        await check_rule(rules, what)


def _servable_error(rules: Mapping[str, Any]) -> str | None:
    try:
        orjson.dumps(rules)
    except orjson.JSONEncodeError as exc:
        return f"cannot be stored: {exc}"
    return CompiledRule(rules).error
