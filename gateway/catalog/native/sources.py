"""Sources and write keys in the native API (version 1).

    GET    /api/{v}/sources                               listSources
    PUT    /api/{v}/sources                 name, enabled createSource
    GET    /api/{v}/sources/{source_id}                   getSource
    POST   /api/{v}/sources/{source_id}     name, enabled updateSource
    DELETE /api/{v}/sources/{source_id}                   deleteSource
    PUT    /api/{v}/sources/{source_id}/write-keys        createWriteKey (rotation)
    DELETE /api/{v}/sources/{source_id}/write-keys/{key}  deleteWriteKey

Every answer's ``data`` is ``{"sources": [...]}``: the sources listed, or the one the call was
about (as it is after the call; as it was, for a deletion).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.catalog import sources as service
from gateway.catalog.native import Answer, Call, Operation, Version
from gateway.catalog.store.sources import Source
from gateway.errors import BadRequest, NotFound

MAX_NAME = 200
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME, pattern=r"\S")]


class SourceCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    enabled: bool = True


class SourceUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """At least one of the two."""

    name: Name | None = None
    enabled: bool | None = None


class Sources(msgspec.Struct):
    sources: list[Source]


def _one(source: Source) -> Answer:
    return Answer(Sources([source]), source.id)


async def list_sources(call: Call) -> Answer:
    return Answer(Sources(await service.list_sources(call.store)))


async def create_source(call: Call) -> Answer:
    params: SourceCreate = call.params
    return _one(await service.create_source(call.store, params.name, params.enabled))


async def get_source(call: Call) -> Answer:
    return _one(await service.get_source(call.store, call.path["source_id"]))


async def update_source(call: Call) -> Answer:
    params: SourceUpdate = call.params
    source_id = call.path["source_id"]
    return _one(await service.update_source(call.store, source_id, params.name, params.enabled))


async def delete_source(call: Call) -> Answer:
    return _one(await service.delete_source(call.store, call.path["source_id"]))


async def create_write_key(call: Call) -> Answer:
    return _one(await service.add_write_key(call.store, call.path["source_id"]))


async def delete_write_key(call: Call) -> Answer:
    source_id, key = call.path["source_id"], call.path["key"]
    return _one(await service.remove_write_key(call.store, source_id, key))


ONE = "/sources/{source_id}"
OPERATIONS = (
    Operation(
        "GET", "/sources", "listSources", "List sources", {1: Version(list_sources, data=Sources)}
    ),
    Operation(
        "PUT",
        "/sources",
        "createSource",
        "Create a source with a new write key",
        {1: Version(create_source, SourceCreate, Sources)},
        errors=(BadRequest,),
    ),
    Operation(
        "GET", ONE, "getSource", "Get a source", {1: Version(get_source, data=Sources)}, (NotFound,)
    ),
    Operation(
        "POST",
        ONE,
        "updateSource",
        "Rename, enable or disable a source",
        {1: Version(update_source, SourceUpdate, Sources)},
        errors=(BadRequest, NotFound),
    ),
    Operation(
        "DELETE",
        ONE,
        "deleteSource",
        "Delete a source, its write keys and its plan connection",
        {1: Version(delete_source, data=Sources)},
        errors=(NotFound,),
    ),
    Operation(
        "PUT",
        ONE + "/write-keys",
        "createWriteKey",
        "Add a write key to a source (rotation); the new key is last",
        {1: Version(create_write_key, data=Sources)},
        errors=(NotFound,),
    ),
    Operation(
        "DELETE",
        ONE + "/write-keys/{key}",
        "deleteWriteKey",
        "Remove a write key from a source",
        {1: Version(delete_write_key, data=Sources)},
        errors=(NotFound,),
    ),
)
