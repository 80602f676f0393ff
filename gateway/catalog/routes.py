"""Every declared route of the RudderStack-compatible catalog, in one table: the admin app
registers it and ``/openapi.json`` is generated from it."""

from gateway.catalog.connections import ROUTES as CONNECTIONS
from gateway.catalog.custom_types import ROUTES as CUSTOM_TYPES
from gateway.catalog.entities import ROUTES as ENTITIES
from gateway.catalog.plans import ROUTES as PLANS

CATALOG_ROUTES = [*PLANS, *ENTITIES, *CUSTOM_TYPES, *CONNECTIONS]
