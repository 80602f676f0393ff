"""``python -m bench [SCENARIO ...] [--quick]``: run benchmark scenarios, write the report.

Results go to ``bench/results/latest.json`` (scenario → figures) with the machine description
in ``bench/results/latest.meta.json``; a table is printed. ``ratio_to_ceiling`` compares each
scenario's events/s with ``ceiling`` measured in the same run (so ``ceiling`` always runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench import inprocess

RESULTS = Path(__file__).parent / "results"
# name → (run(duration_s), full duration, quick duration)
SCENARIOS: dict[str, tuple[Callable[[float], dict[str, Any]], float, float]] = {
    "ceiling": (inprocess.ceiling, 10.0, 2.0),
    "naive": (inprocess.naive, 10.0, 2.0),
}
COLUMNS = (
    "events_per_s",
    "requests_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "cpu_percent",
    "rss_mb",
    "loadgen_cpu_percent",
    "ratio_to_ceiling",
)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if "model name" in line), "")
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    widths = [max(14, len(c)) for c in COLUMNS]
    head = "scenario".ljust(12) + "".join(
        c.rjust(w + 1) for c, w in zip(COLUMNS, widths, strict=True)
    )
    lines = [head]
    for name, figures in results.items():
        cells = [
            "-"
            if figures.get(c) is None
            else f"{figures[c]:,.{3 if c.endswith(('ms', 'ceiling')) else 1}f}"
            for c in COLUMNS
        ]
        lines.append(
            name.ljust(12) + "".join(v.rjust(w + 1) for v, w in zip(cells, widths, strict=True))
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="short runs (whole run <= 60 s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    wanted = ["ceiling", *[s for s in args.scenarios or SCENARIOS if s != "ceiling"]]
    results: dict[str, dict[str, Any]] = {}
    for name in wanted:
        run, full_s, quick_s = SCENARIOS[name]
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = run(quick_s if args.quick else full_s)
    ceiling_rate = results["ceiling"]["events_per_s"]
    for figures in results.values():
        rate = figures.get("events_per_s")
        if rate is not None and ceiling_rate:
            figures["ratio_to_ceiling"] = round(rate / ceiling_rate, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    meta = {**machine(), "quick": args.quick, "scenarios": list(results)}
    args.out.with_suffix(".meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    print(table(results))
    print(f"\n{meta['cores']} cores, {meta['cpu']}; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
