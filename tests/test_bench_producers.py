"""Smoke test: the ``producers`` scenario publishes through both Kafka clients.

Speed is not judged here (that is the bench's report); that each client published records and
each figure was measured is.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.test_bench import run_quick


def test_producers_quick_reports_each_client(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    done = run_quick("producers", out, timeout_s=300)
    figures = orjson.loads(out.read_bytes())["producers"]
    assert figures["records_per_request"] == 100
    for client in ("aiokafka", "librdkafka"):
        row = figures[client]
        assert set(row) == {"loop_us_per_record", "process_us_per_record", "records_per_s"}
        assert row["records_per_s"] > 0
        assert row["loop_us_per_record"] > 0
    assert "librdkafka" in done.stdout
