"""Smoke test: the ``engines`` scenario compares the three engines on the corpus.

Speed is not judged here (that is the bench's report); correctness is: every engine judged
every event, and with formats left out (each implementation checks them its own way) the
gateway's engine and the reference agree on every verdict.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.test_bench import run_quick

ENGINES = ("jsonschema-rs", "fastjsonschema", "jsonschema")


def test_engines_quick_reports_each_engine(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    done = run_quick("engines", out, timeout_s=300)
    figures = orjson.loads(out.read_bytes())["engines"]
    assert figures["events"] >= 1000
    for engine in ENGINES:
        row = figures[engine]
        assert set(row) == {"verdict_us", "violations_us", "compile_ms", "disagreements"}
        assert row["verdict_us"] > 0
        assert row["violations_us"] > 0
    assert figures["disagreements_without_formats"] == 0
    assert "jsonschema-rs" in done.stdout
