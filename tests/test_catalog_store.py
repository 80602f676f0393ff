"""The store package on its own: the functions the catalog's services call, against a real SQLite
file and a real PostgreSQL database, without HTTP in between."""

from __future__ import annotations

import pytest

from gateway.catalog.store import Store, new_id, page_of_table
from gateway.catalog.store import connections as connections_store
from gateway.catalog.store import events as events_store
from gateway.catalog.store import plans as plans_store
from gateway.catalog.store import properties as properties_store
from gateway.catalog.store import sources as sources_store
from gateway.errors import NotFound


async def _event(store: Store, name: str) -> str:
    async with store.write(snapshot=False) as conn:
        return await events_store.insert_event(
            conn, name=name, event_type="track", description=None, category_id=None
        )


async def test_plan_events_versions_and_deletion(store: Store) -> None:
    plan_id = new_id("tp")
    # Added in name order too: times of the same millisecond fall back to names.
    first, second = await _event(store, "Cart Viewed"), await _event(store, "Order Completed")
    async with store.write() as conn:
        await plans_store.insert_plan(
            conn, plan_id, name="Checkout", description=None, creation_type="BackendAPI"
        )
        for event_id in (first, second):
            await plans_store.put_event(
                conn,
                plan_id,
                event_id,
                section="properties",
                additional_properties=True,
                rules={"type": "object"},
            )
        # A second put replaces the event's rules instead of adding the event again.
        await plans_store.put_event(
            conn,
            plan_id,
            first,
            section="traits",
            additional_properties=False,
            rules={"required": ["properties"]},
        )
        await plans_store.next_version(conn, plan_id, name="Checkout v2")
        await plans_store.insert_version(conn, plan_id, 2, {"version": 2, "events": []})
        source_id = await sources_store.insert_source(conn, "Web", True)
        await connections_store.insert_connection(conn, source_id, plan_id, {"track": {}})

    async with store.read() as conn:
        plan = await plans_store.get(conn, plan_id)
        assert (plan.name, plan.version) == ("Checkout v2", 2)
        rows = await plans_store.events(conn, plan_id)
        assert [(r.id, r.identity_section, r.rules) for r in rows] == [
            (first, "traits", {"required": ["properties"]}),
            (second, "properties", {"type": "object"}),
        ]
        total, page = await plans_store.events_page(conn, plan_id, 2, 1)
        assert (total, [r.id for r in page]) == (2, [second])
        assert await plans_store.using_event(conn, second) == [plan_id]
        assert await plans_store.version_document(conn, plan_id, 2) == {"version": 2, "events": []}
        assert await plans_store.version_document(conn, plan_id, 3) is None
        with pytest.raises(NotFound, match="tracking plan tp_nope not found"):
            await plans_store.event(conn, "tp_nope", first)
        with pytest.raises(NotFound, match=f"event ev_nope is not in tracking plan {plan_id}"):
            await plans_store.event(conn, plan_id, "ev_nope")

    async with store.write() as conn:
        await plans_store.remove_event(conn, plan_id, second)
        assert await plans_store.using_event(conn, second) == []
        await plans_store.delete_plan(conn, plan_id)
    async with store.read() as conn:
        with pytest.raises(NotFound, match=f"tracking plan {plan_id} not found"):
            await plans_store.get(conn, plan_id)
        assert await plans_store.version_document(conn, plan_id, 2) is None
        assert await plans_store.using_event(conn, first) == []
        # Its connection went with it; the source stays.
        assert await connections_store.of_source(conn, source_id) is None
        assert await sources_store.get(conn, source_id) is not None


async def test_property_types_compare_as_json(store: Store) -> None:
    async with store.write(snapshot=False) as conn:
        nullable = await properties_store.insert_property(
            conn, name="amount", kind=["number", "null"], config={}, description=None
        )
        plain = await properties_store.insert_property(
            conn, name="amount", kind="number", config={"minimum": 0}, description=None
        )
    async with store.read() as conn:
        found = await properties_store.named(conn, "amount", ["number", "null"])
        assert found is not None
        assert found.id == nullable
        assert (await properties_store.named(conn, "amount", "number")).prop_config == {
            "minimum": 0
        }
        assert await properties_store.named(conn, "amount", ["null", "number"]) is None
        assert await properties_store.id_of(conn, "amount", ["string", "number"]) == plain
        assert await properties_store.id_of(conn, "other", ["number"]) is None


async def test_pages_of_a_table_in_any_order(store: Store) -> None:
    names = ["Beta Event", "Alpha Event", "Gamma Event"]
    ids = [await _event(store, name) for name in names]
    async with store.read() as conn:
        total, rows = await page_of_table(conn, events_store.TABLE, "name", True, 1, 2)
        assert (total, [r.name for r in rows]) == (3, ["Gamma Event", "Beta Event"])
        total, rows = await page_of_table(conn, events_store.TABLE, "name", False, 2, 2)
        assert (total, [r.id for r in rows]) == (3, [ids[2]])
        total, rows = await page_of_table(conn, events_store.TABLE, "name", False, 3, 2)
        assert (total, rows) == (3, [])


async def test_replay_claims_are_never_taken_twice(store: Store) -> None:
    """A replayed event is claimed once, whatever job claims it again, in one call or two."""
    from gateway.catalog.store import replays

    now = "2026-12-03T00:00:00.000Z"
    async with store.engine.begin() as conn:
        first = await replays.claim(
            conn, "rpl_a", now, [("src", "m1", "q/0/1"), ("src", "m2", "q/0/2")]
        )
        again = await replays.claim(conn, "rpl_a", now, [("src", "m1", "q/0/1")])
        other = await replays.claim(
            conn, "rpl_b", now, [("src", "m2", "q/0/2"), ("src", "m3", "q/0/3")]
        )
        await replays.mark_done(conn, "rpl_a")
        done = await replays.claim(conn, "rpl_a", now, [("src", "m1", "q/0/1")])
        pending = await replays.pending(conn, "rpl_b")
    assert first == {("src", "m1"), ("src", "m2")}
    assert again == {("src", "m1")}  # still its own, not yet done: a resumed step
    assert other == {("src", "m3")}  # m2 is rpl_a's
    assert done == set()  # replayed: never again
    assert pending == [("src", "m3")]
