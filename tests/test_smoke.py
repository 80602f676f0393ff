from __future__ import annotations

import aiohttp

from gateway.server import Gateway
from tests.conftest import basic_auth, consume, headers_of, ingest_url


async def test_track_reaches_events_topic(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            ingest_url(gateway, "/v1/track"),
            json={"userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}},
            headers=basic_auth(),
        )
        assert resp.status == 200
        assert await resp.text() == "OK"
    s = gateway.settings.kafka
    [record] = await consume(s.bootstrap_servers, s.events_topic, 1)
    assert record.key == b"u1"
    assert headers_of(record)["event-name"] == "Signed Up"
