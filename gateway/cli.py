"""Command line: ``gateway serve | dev | tail | validate | replay`` and ``gateway --version``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import orjson

from gateway import __version__
from gateway.broker import BrokerError
from gateway.config import ConfigError, LogSettings, Role, load_settings
from gateway.logs import setup_logging

log = logging.getLogger("gateway")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Tracking-plan validation gateway: SDK ingest, enforcement, Kafka output.",
    )
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config",
        default=os.environ.get("GATEWAY_CONFIG"),
        help="TOML config file (default: $GATEWAY_CONFIG; without one, defaults + environment)",
    )
    # Internal: a worker process started by a supervising `gateway serve` (ingest.workers > 1).
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--role",
        choices=[r.value for r in Role],
        default=Role.ALL.value,
        help="all (default): ingest and admin; ingest: data plane only; admin: management only",
    )

    dev = sub.add_parser(
        "dev", help="run an embedded broker, the gateway and a demo source/plan on this machine"
    )
    dev.add_argument("--dir", default=".gateway-dev", help="dev state directory")
    dev.add_argument("--port", type=int, default=8080, help="ingest port (0 = any free port)")
    dev.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if any bad event arrived (after COMMAND, or on Ctrl-C)",
    )
    dev.add_argument(
        "app_command",
        nargs="*",
        metavar="-- COMMAND",
        help="run this (an app's tests) against the gateway, then stop; its environment has "
        "GATEWAY_URL, GATEWAY_WRITE_KEY, GATEWAY_ADMIN_URL and GATEWAY_ADMIN_TOKEN",
    )

    tail = sub.add_parser("tail", help="pretty-print records from the events topic as they arrive")
    tail.add_argument("--config", default=os.environ.get("GATEWAY_CONFIG"), help="TOML config")
    tail.add_argument("--bootstrap-servers", help="override kafka.bootstrap_servers")
    group = tail.add_mutually_exclusive_group()
    group.add_argument("--quarantine", action="store_true", help="watch the quarantine topic")
    group.add_argument("--all", action="store_true", help="watch both topics")
    tail.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest record, not new ones"
    )
    tail.add_argument("--max-records", type=int, help="exit after this many records")

    check = sub.add_parser(
        "validate",
        help="dry-run events (JSON Lines) against a plan snapshot; exit 1 if any is quarantined",
    )
    check.add_argument("--snapshot", required=True, help="plan snapshot file (JSON or YAML)")
    check.add_argument("events", help="events file: one JSON event per line")
    who = check.add_mutually_exclusive_group()
    who.add_argument("--source", help="source id (default: the snapshot's only source)")
    who.add_argument("--write-key", help="pick the source by write key")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    replay = sub.add_parser(
        "replay",
        help="re-judge quarantined events; publish those that pass now to the events topic once",
    )
    replay.add_argument("--config", help="TOML config (the catalog and Kafka settings)")
    replay.add_argument("--since", help="records from this time: RFC 3339, or 30m, 2h, 7d ago")
    replay.add_argument("--until", help="records before this time (same forms)")
    replay.add_argument(
        "--partition", type=int, action="append", help="only this partition (repeatable)"
    )
    replay.add_argument("--from-offset", type=int, help="first offset, in every partition")
    replay.add_argument("--to-offset", type=int, help="offset to stop before, in every partition")
    replay.add_argument("--source", help="only events of this source id")
    replay.add_argument(
        "--reason",
        help="only events quarantined for this reason (unplanned-event, unplanned-properties, "
        "violation, invalid-event)",
    )
    replay.add_argument("--event", help="only this track event (or event type)")
    replay.add_argument("--plan-version", type=int, help="judge against this version of the plans")
    replay.add_argument(
        "--fix", help='JSON file of JSON Patch operations per event: {"Order Completed": [...]}'
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="count what would pass and why the rest fail"
    )
    replay.add_argument("--resume", metavar="JOB_ID", help="resume this replay job")
    replay.add_argument(
        "--chunk-records",
        type=int,
        default=500,
        help="records judged and published per step; progress is saved after each (500)",
    )
    replay.add_argument("--json", action="store_true", help="print the job as JSON at the end")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            settings = load_settings(args.config)
            setup_logging(settings.log)
            role = Role(args.role)
            settings.check_role(role)
            if args.worker:
                log.info("ingest worker %d starting", os.getpid())
                _run(_server().run(settings, role, reuse_port=True))
                return 0
            log.info("gateway %s starting (role %s)", __version__, role)
            if settings.ingest.workers > 1 and role is not Role.ADMIN:
                from gateway.workers import serve_with_workers

                return serve_with_workers(settings, role, args.config)
            _run(_server().run(settings, role))
        elif args.command == "dev":
            from gateway.dev import prepare_dev_dir, run_dev

            setup_logging(LogSettings())
            return _run(
                run_dev(
                    prepare_dev_dir(args.dir), args.port, check=args.check, command=args.app_command
                )
            )
        elif args.command == "tail":
            from gateway.tail import tail

            settings = load_settings(args.config)
            setup_logging(LogSettings(level="warning"))
            kafka = settings.kafka
            if args.bootstrap_servers:
                kafka = dataclasses.replace(kafka, bootstrap_servers=args.bootstrap_servers)
            with contextlib.suppress(KeyboardInterrupt):
                _run(
                    tail(
                        kafka,
                        quarantine=args.quarantine,
                        both=args.all,
                        from_beginning=args.from_beginning,
                        max_records=args.max_records,
                    )
                )
        elif args.command == "validate":
            return _validate(args)
        elif args.command == "replay":
            return _replay(args)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokerError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    return 0


def _validate(args: argparse.Namespace) -> int:
    from gateway.dry_run import (
        ValidateError,
        choose_source,
        format_report,
        load_snapshot,
        read_events,
        report_document,
        validate_offline,
    )

    try:
        snapshot = load_snapshot(Path(args.snapshot))
        source = choose_source(snapshot, args.write_key, args.source)
        events, labels = read_events(Path(args.events))
    except ValidateError as exc:
        print(f"gateway validate: {exc}", file=sys.stderr)
        return 2
    results = validate_offline(snapshot, source, events)
    if args.json:
        print(orjson.dumps(report_document(results), option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_report(results, labels))
    return 1 if any(r.reason is not None for r in results) else 0


def _replay(args: argparse.Namespace) -> int:
    from gateway.replay.command import CommandError, replay

    settings = load_settings(args.config or os.environ.get("GATEWAY_CONFIG"))
    setup_logging(LogSettings(level="warning"))
    try:
        return asyncio.run(replay(settings, args))
    except CommandError as exc:
        print(f"gateway replay: {exc}", file=sys.stderr)
        return 2


def _server() -> Any:
    # Imported late: with workers, the metrics directory must be set before
    # prometheus-client (imported by the server modules) loads.
    import gateway.server

    return gateway.server


# Young objects the cyclic garbage collector lets accumulate before a collection (700 by
# default). A batch request allocates tens of thousands of short-lived objects, freed by
# reference counting, not by the collector; collecting every 700 of them cost ~9 % of
# throughput under batch load (bench). Cycles still are collected, only less often.
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """The collector's settings of a serving process (the bench's in-process scenarios too)."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _run(coro: Coroutine[Any, Any, Any]) -> int:
    import uvloop

    tune_gc()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(coro)
    return result if isinstance(result, int) else 0
