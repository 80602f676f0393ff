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
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from bench import abuse, engines, inprocess, live, producers

RESULTS = Path(__file__).parent / "results"
Scenario = tuple[Callable[[float], dict[str, Any]], float, float]


def scenarios(session: live.Session) -> dict[str, Scenario]:
    """name → (run(duration_s), full duration, quick duration), in the order they run."""
    return {
        "ceiling": (inprocess.ceiling, 10.0, 2.0),
        "naive": (inprocess.naive, 10.0, 2.0),
        "engines": (engines.engines, 10.0, 2.0),
        "producers": (producers.producers, 10.0, 2.0),
        "batch": (session.batch_scenario, 20.0, 4.0),
        "violations": (session.violations, 20.0, 4.0),
        "single": (session.single, 20.0, 4.0),
        "latency": (session.latency, 20.0, 4.0),
        "plan-scale": (live.plan_scale, 15.0, 4.0),
        "abuse": (partial(abuse.abuse, session), 20.0, 4.0),
    }


SCENARIOS = list(scenarios(live.Session()))
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
        if name in ("engines", "producers"):
            continue  # per-engine / per-client figures: see engines_table(), producers_table()
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


ENGINE_COLUMNS = ("verdict_us", "violations_us", "compile_ms", "disagreements")


PRODUCER_COLUMNS = ("loop_us_per_record", "process_us_per_record", "records_per_s")


def producers_table(figures: dict[str, Any]) -> str:
    """Per-record cost of each Kafka client (the ``producers`` scenario)."""
    lines = ["client".ljust(12) + "".join(c.rjust(23) for c in PRODUCER_COLUMNS)]
    for name, row in figures.items():
        if isinstance(row, dict):
            cells = [f"{row[c]:,}" for c in PRODUCER_COLUMNS]
            lines.append(name.ljust(12) + "".join(v.rjust(23) for v in cells))
    lines.append(f"(requests of {figures['records_per_request']} records, 8 at a time)")
    return "\n".join(lines)


def engines_table(figures: dict[str, Any]) -> str:
    """Per-event cost of each validation engine on the corpus (the ``engines`` scenario)."""
    lines = ["engine".ljust(16) + "".join(c.rjust(15) for c in ENGINE_COLUMNS)]
    for name, row in figures.items():
        if isinstance(row, dict):
            cells = ["-" if row.get(c) is None else f"{row[c]:,}" for c in ENGINE_COLUMNS]
            lines.append(name.ljust(16) + "".join(v.rjust(15) for v in cells))
    lines.append(
        f"({figures['events']:,} events; disagreements are with jsonschema's verdicts, "
        f"{figures['disagreements_without_formats']} once formats are left out)"
    )
    return "\n".join(lines)


# Throughput targets (issue "One validation engine"), as ratios within one run.
TARGET_CEILING_PER_NAIVE = 8.0
TARGET_BATCH_OF_CEILING = 0.5
TARGET_VIOLATIONS_OF_BATCH = 0.85


def throughput_verdict(results: dict[str, dict[str, Any]]) -> list[str]:
    """The throughput targets the run measured, each met or not, judged on the interleaved
    measurements (see inprocess.naive, live.Session.batch_scenario and .violations); the ratio
    of the separately run scenarios is shown beside each."""
    lines = []
    ceiling_rate = results["ceiling"]["events_per_s"]
    naive, batch, violations = (results.get(n) for n in ("naive", "batch", "violations"))
    if naive is not None:
        ratio = naive["ceiling_per_naive_interleaved"]
        lines.append(
            abuse.line(
                ratio >= TARGET_CEILING_PER_NAIVE,
                f"ceiling {ratio:.2f} x naive (interleaved; "
                f"{ceiling_rate / naive['events_per_s']:.2f} x as separate runs) "
                f">= {TARGET_CEILING_PER_NAIVE:g} x",
            )
        )
    if batch is not None:
        ratio = batch["ceiling_ratio_interleaved"]
        lines.append(
            abuse.line(
                ratio >= TARGET_BATCH_OF_CEILING,
                f"batch {ratio:.3f} of ceiling (interleaved; "
                f"{batch['events_per_s'] / ceiling_rate:.3f} as separate runs) "
                f">= {TARGET_BATCH_OF_CEILING:g}",
            )
        )
    if violations is not None:
        ratio = violations["batch_ratio_interleaved"]
        separate = (
            f"; {violations['events_per_s'] / batch['events_per_s']:.3f} as separate runs"
            if batch is not None
            else ""
        )
        lines.append(
            abuse.line(
                ratio >= TARGET_VIOLATIONS_OF_BATCH,
                f"violations {ratio:.3f} of batch (interleaved{separate}) "
                f">= {TARGET_VIOLATIONS_OF_BATCH:g}",
            )
        )
    return lines


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
    wanted = {"ceiling", *(args.scenarios or SCENARIOS)}
    results: dict[str, dict[str, Any]] = {}
    session = live.Session()
    try:
        for name, (run, full_s, quick_s) in scenarios(session).items():
            if name in wanted:
                print(f"running {name} ...", file=sys.stderr, flush=True)
                results[name] = run(quick_s if args.quick else full_s)
    finally:
        session.close()
    ceiling_rate = results["ceiling"]["events_per_s"]
    for figures in results.values():
        rate = figures.get("events_per_s")
        if rate is not None and ceiling_rate:
            figures["ratio_to_ceiling"] = round(rate / ceiling_rate, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    meta = {
        **machine(),
        "quick": args.quick,
        "loadgen": live.loadgen_name(),
        "scenarios": list(results),
    }
    args.out.with_suffix(".meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    print(table(results))
    if "engines" in results:
        print("\n" + engines_table(results["engines"]))
    if "producers" in results:
        print("\n" + producers_table(results["producers"]))
    throughput = throughput_verdict(results)
    if throughput:
        print("\nthroughput targets:\n" + "\n".join(throughput))
    if "abuse" in results:
        print("\nabuse targets:\n" + "\n".join(abuse.verdict(results["abuse"])))
    print(f"\n{meta['cores']} cores, {meta['cpu']}; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
