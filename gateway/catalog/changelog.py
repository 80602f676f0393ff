"""The change log: every write through a management surface, recorded with the write.

A request that may change the catalog runs inside :func:`recording`, which names who (the
token's identity, never the token), through which surface, what (the operation) and why (the
native API's ``reason``). While it runs, what the catalog code does is noted here: the ids it
mints (:func:`minted`) and the plan versions it moves (:func:`plan_moved`). Each write
transaction (``Store.write``) then inserts its change row in the same transaction, so a write
and its record commit, or fail, together; a request that writes nothing records nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class Change:
    token: str
    surface: str
    action: str
    reason: str | None
    targets: list[str]
    plans: list[dict[str, object]] = field(default_factory=list)

    def note_target(self, target: str) -> None:
        if target not in self.targets:
            self.targets.append(target)


_current: ContextVar[Change | None] = ContextVar("catalog_change", default=None)


@contextlib.contextmanager
def recording(change: Change) -> Iterator[Change]:
    reset = _current.set(change)
    try:
        yield change
    finally:
        _current.reset(reset)


def current() -> Change | None:
    return _current.get()


def minted(new_id: str) -> None:
    """An id created by the change in progress is one of its targets."""
    change = _current.get()
    if change is not None:
        change.note_target(new_id)


def plan_moved(plan_id: str, before: int | None, after: int | None) -> None:
    """A plan's version changed (``before`` None: created; ``after`` None: deleted)."""
    change = _current.get()
    if change is not None:
        change.note_target(plan_id)
        change.plans.append({"planId": plan_id, "before": before, "after": after})
