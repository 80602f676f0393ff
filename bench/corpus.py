"""A realistic tracking plan and event corpus, deterministic for a given seed.

24 track events with 5-15 properties each (enums, patterns, formats, numeric bounds, nested
objects and arrays) plus identify traits; events are valid, or violate the plan at a chosen
rate in a realistic way (a wrong type, a missing required property, a bad enum value, an
unplanned property, a malformed format).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from gateway.enforce.compile import DRAFT_07

SOURCE_ID = "src_bench"
WRITE_KEY = "wk_bench_0123456789"
PLAN_ID = "tp_bench"

NOUNS = ["Product", "Order", "Cart", "Checkout", "Coupon", "Promotion", "Wishlist", "Review"]
VERBS = ["Viewed", "Added", "Removed", "Completed", "Started", "Applied", "Shared", "Clicked"]
CURRENCIES = ["EUR", "USD", "GBP", "JPY", "CHF"]
CATEGORIES = ["apparel", "books", "electronics", "garden", "grocery", "toys"]

# Property templates: name → (schema, valid value generator, violating value)
PROPERTY_KINDS: list[tuple[str, dict[str, Any], Any, Any]] = [
    ("product_id", {"type": "string", "pattern": "^sku-[0-9]{3,6}$"}, "sku-{n}", "SKU?"),
    ("price", {"type": "number", "minimum": 0}, 19.99, "19.99"),
    ("quantity", {"type": "integer", "minimum": 1, "maximum": 100}, 2, 0),
    ("currency", {"type": "string", "enum": CURRENCIES}, "EUR", "euro"),
    ("category", {"type": "string", "enum": CATEGORIES}, "books", "misc"),
    ("coupon", {"type": "string", "maxLength": 16}, "SPRING24", "X" * 40),
    ("url", {"type": "string", "format": "uri"}, "https://shop.example/p/1", "not a url"),
    ("email", {"type": "string", "format": "email"}, "ada@example.com", "ada-at-example"),
    ("sent_at", {"type": "string", "format": "date-time"}, "2026-11-01T10:00:00Z", "yesterday"),
    ("order_id", {"type": "string", "format": "uuid"}, "7d444840-9dc0-11d1-b245-5ffdce74fad2", "7"),
    ("discount", {"type": "number", "minimum": 0, "maximum": 1}, 0.15, 1.5),
    ("in_stock", {"type": "boolean"}, True, "yes"),
    ("position", {"type": "integer", "minimum": 0}, 3, -1),
    (
        "shipping",
        {
            "type": "object",
            "properties": {
                "method": {"type": "string", "enum": ["standard", "express"]},
                "cost": {"type": "number", "minimum": 0},
            },
            "required": ["method"],
        },
        {"method": "express", "cost": 4.9},
        {"cost": 4.9},
    ),
    (
        "items",
        {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "qty": {"type": "integer", "minimum": 1},
                },
                "required": ["sku", "qty"],
            },
        },
        [{"sku": "sku-100", "qty": 1}, {"sku": "sku-101", "qty": 2}],
        [{"sku": "sku-100", "qty": 0}],
    ),
]


def _value(template: Any, rng: random.Random) -> Any:
    if isinstance(template, str) and "{n}" in template:
        return template.replace("{n}", str(rng.randint(100, 999999)))
    return template


def scale_write_key(plan: int) -> str:
    return f"wk_scale_{plan:04d}"


class Corpus:
    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.events: list[tuple[str, list[tuple[str, dict[str, Any], Any, Any]], set[str]]] = []
        names = [f"{noun} {verb}" for noun in NOUNS for verb in VERBS]
        rng.shuffle(names)
        for name in names[:24]:
            props = rng.sample(PROPERTY_KINDS, rng.randint(5, 15))
            required = {p[0] for p in props[: max(2, len(props) // 3)]}
            self.events.append((name, props, required))

    def tracking_plan(self) -> dict[str, Any]:
        events = []
        for name, props, required in self.events:
            section = {
                "type": "object",
                "properties": {p[0]: p[1] for p in props},
                "required": sorted(required),
                "additionalProperties": False,
            }
            events.append(
                {
                    "name": name,
                    "eventType": "track",
                    "identitySection": "properties",
                    "rules": {
                        "$schema": DRAFT_07,
                        "type": "object",
                        "properties": {"properties": section},
                        "required": ["properties"],
                    },
                }
            )
        traits = {
            "type": "object",
            "properties": {
                "email": {"type": "string", "format": "email"},
                "plan": {"type": "string", "enum": ["free", "pro", "enterprise"]},
                "age": {"type": "integer", "minimum": 13},
                "address": {
                    "type": "object",
                    "properties": {"country": {"type": "string", "pattern": "^[A-Z]{2}$"}},
                },
            },
            "required": ["email"],
        }
        events.append(
            {
                "name": "",
                "eventType": "identify",
                "identitySection": "traits",
                "rules": {"$schema": DRAFT_07, "type": "object", "properties": {"traits": traits}},
            }
        )
        return {"id": PLAN_ID, "name": "Bench Plan", "version": 1, "events": events}

    def scaled_snapshot(
        self, plans: int, events_per_plan: int, catalog_size: int, changed_every: int = 0
    ) -> dict[str, Any]:
        """Many sources, each with its own plan of ``events_per_plan`` events.

        As with a data catalog, plans draw their events from a shared catalog of
        ``catalog_size`` event definitions, so most rules recur across plans. With
        ``changed_every`` = N, every Nth plan has a new version in which one event gains a
        plan-specific optional property (a refresh that changes 1/N of the plans).
        """
        rng = random.Random(plans * 31 + events_per_plan)
        catalog = []
        for i in range(catalog_size):
            props = rng.sample(PROPERTY_KINDS, rng.randint(5, 15))
            name = f"{NOUNS[i % len(NOUNS)]} {VERBS[i // len(NOUNS) % len(VERBS)]} {i}"
            catalog.append((name, props, sorted(p[0] for p in props[: max(2, len(props) // 3)])))
        plan_docs, sources = [], []
        for p in range(plans):
            version = 2 if changed_every and p % changed_every == 0 else 1
            events = []
            for j, (name, props, required) in enumerate(rng.sample(catalog, events_per_plan)):
                properties: dict[str, Any] = {prop[0]: prop[1] for prop in props}
                if version == 2 and j == 0:
                    properties[f"note_{p}"] = {"type": "string", "maxLength": 64}
                section = {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": False,
                }
                rules = {"$schema": DRAFT_07, "properties": {"properties": section}}
                events.append({"name": name, "eventType": "track", "rules": rules})
            plan_id = f"tp_scale_{p:04d}"
            plan_docs.append(
                {"id": plan_id, "name": f"Plan {p}", "version": version, "events": events}
            )
            connection = {
                "id": plan_id,
                "version": version,
                "config": {"track": {"anyOtherViolation": "drop"}},
            }
            sources.append(
                {
                    "id": f"src_scale_{p:04d}",
                    "name": f"Source {p}",
                    "writeKeys": [scale_write_key(p)],
                    "trackingPlan": connection,
                }
            )
        return {
            "revision": f"scale-{changed_every}",
            "sources": sources,
            "trackingPlans": plan_docs,
        }

    def scaled_events(self, doc: dict[str, Any], plan: int, count: int) -> list[dict[str, Any]]:
        """``count`` valid track events of one plan of a :meth:`scaled_snapshot` document."""
        rng = random.Random(plan)
        kinds = {k[0]: k for k in PROPERTY_KINDS}
        planned = doc["trackingPlans"][plan]["events"]
        out = []
        for _ in range(count):
            event = planned[rng.randrange(len(planned))]
            names = event["rules"]["properties"]["properties"]["properties"]
            values = {n: _value(kinds[n][2], rng) for n in names if n in kinds}
            out.append(
                {"type": "track", "event": event["name"], "userId": f"user-{rng.randint(1, 50000)}",
                 "properties": values, "timestamp": "2026-11-01T10:00:00.000Z"}
            )  # fmt: skip
        return out

    def snapshot(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "revision": "bench-1",
            "sources": [
                {
                    "id": SOURCE_ID,
                    "name": "Bench",
                    "enabled": True,
                    "writeKeys": [WRITE_KEY],
                    "trackingPlan": {
                        "id": PLAN_ID,
                        "version": 1,
                        "config": config or {"track": {"anyOtherViolation": "drop"}},
                    },
                }
            ],
            "trackingPlans": [self.tracking_plan()],
        }

    def make_events(
        self, count: int, violating_ratio: float, seed: int = 11
    ) -> list[dict[str, Any]]:
        """``count`` events, 90 % track and 10 % identify; ``violating_ratio`` break a rule."""
        rng = random.Random(seed)
        out: list[dict[str, Any]] = []
        for i in range(count):
            violate = rng.random() < violating_ratio
            user = f"user-{rng.randint(1, 50000)}"
            common = {
                "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "anonymousId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "userId": user,
                "context": _context(rng),
                "timestamp": "2026-11-01T10:00:00.000Z",
            }
            if i % 10 == 9:
                traits = {"email": f"{user}@example.com", "plan": "pro", "age": 31}
                if violate:
                    traits["plan"] = "gold"
                out.append({"type": "identify", "traits": traits, **common})
                continue
            name, props, _required = self.events[rng.randrange(len(self.events))]
            values = {p[0]: _value(p[2], rng) for p in props}
            if violate:
                p = props[rng.randrange(len(props))]
                values[p[0]] = p[3]
            out.append({"type": "track", "event": name, "properties": values, **common})
        return out


def _context(rng: random.Random) -> dict[str, Any]:
    """What a browser SDK sends along with every call."""
    path = f"/p/{rng.randint(1, 5000)}"
    return {
        "library": {"name": "analytics.js", "version": "5.2.0"},
        "locale": rng.choice(["en-US", "de-DE", "fr-FR", "ja-JP"]),
        "page": {
            "path": path,
            "url": f"https://shop.example{path}",
            "title": "Shop",
            "referrer": "https://www.example.org/",
        },
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0 Safari/537.36",
        "timezone": "Europe/Berlin",
        "screen": {"width": 1920, "height": 1080},
    }
