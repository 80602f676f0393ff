"""Every operation of the native API, in one table (served and documented from it)."""

from __future__ import annotations

from gateway.catalog.native import NativeApi
from gateway.catalog.native.changes import OPERATIONS as CHANGE_OPERATIONS
from gateway.catalog.native.replays import OPERATIONS as REPLAY_OPERATIONS
from gateway.catalog.native.shadow import OPERATIONS as SHADOW_OPERATIONS
from gateway.catalog.native.sources import OPERATIONS as SOURCE_OPERATIONS
from gateway.catalog.native.violations import OPERATIONS as VIOLATION_OPERATIONS

NATIVE_API = NativeApi(
    [
        *SOURCE_OPERATIONS,
        *SHADOW_OPERATIONS,
        *CHANGE_OPERATIONS,
        *REPLAY_OPERATIONS,
        *VIOLATION_OPERATIONS,
    ]
)
