"""An app's end-to-end test, as its CI would run it under ``gateway dev --check -- …``: it sends
events with Segment's Python SDK to the gateway named by ``GATEWAY_URL`` /
``GATEWAY_WRITE_KEY`` and asks the Micro-compatible routes what arrived, one test id per test.

``python app_suite.py good`` sends only valid events; ``mixed`` adds broken ones
(a missing required property, an unplanned event). Exit code 0 when every check holds.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import requests
import segment.analytics.client as segment_client

URL = os.environ["GATEWAY_URL"]
client = segment_client.Client(os.environ["GATEWAY_WRITE_KEY"], host=URL, sync_mode=True)


def micro(path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
    if body is None:
        resp = requests.get(URL + path, params=params, timeout=10)
    else:
        resp = requests.post(URL + path, json=body, timeout=10)
    assert resp.status_code == 200, (path, resp.status_code, resp.text)
    return resp.json()


def viewed(test_id: str, **properties: Any) -> None:
    client.track("user-1", "Product Viewed", properties, context={"testId": test_id})


def main(mode: str) -> None:
    assert micro("/micro/reset") == {"total": 0, "good": 0, "bad": 0}
    viewed("t-good", product_id="sku-1", price=9.5, currency="EUR")
    [good] = micro("/micro/good", {"test_id": "t-good"})
    assert (good["eventType"], good["eventName"], good["outcome"]) == (
        "track",
        "Product Viewed",
        "forwarded",
    )
    assert good["event"]["properties"]["product_id"] == "sku-1"
    assert micro("/micro/bad", {"test_id": "t-good"}) == []
    if mode == "mixed":
        viewed("t-bad", product_id="sku-2")  # no price: required
        client.track("user-1", "Cart Emptied", {}, context={"testId": "t-unplanned"})
        [bad] = micro("/micro/bad", body={"test_id": "t-bad"})
        assert bad["errors"] == ["must have required property 'price'"], bad
        assert bad["violations"][0]["type"] == "Required-Missing"
        [unplanned] = micro("/micro/bad", {"event_name": "Cart Emptied"})
        assert unplanned["violations"][0]["type"] == "Unplanned-Event"
        assert micro("/micro/all") == {"total": 3, "good": 1, "bad": 2}
        assert micro("/micro/all", {"event_type": "track", "test_id": "t-bad"}) == {
            "total": 1,
            "good": 0,
            "bad": 1,
        }
        assert len(micro("/micro/bad", {"limit": "1"})) == 1
        refused = requests.get(URL + "/micro/good", params={"colour": "red"}, timeout=10)
        assert refused.status_code == 400
        assert micro("/micro/reset") == {"total": 0, "good": 0, "bad": 0}
        assert micro("/micro/bad") == []
    else:
        assert micro("/micro/all") == {"total": 1, "good": 1, "bad": 0}


if __name__ == "__main__":
    main(sys.argv[1])
