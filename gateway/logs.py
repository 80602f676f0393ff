"""Logging setup: human-readable text or one JSON object per line."""

from __future__ import annotations

import logging
import sys

import orjson

from gateway.config import LogSettings
from gateway.publish.producer import LIBRDKAFKA_LOGGER


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def setup_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(process)d %(levelname)-7s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    # aiokafka and librdkafka log every reconnect attempt at ERROR; our own messages say it
    # once, clearly. At debug level their messages are kept.
    if root.level > logging.DEBUG:
        for name in ("aiokafka", LIBRDKAFKA_LOGGER):
            logging.getLogger(name).setLevel(logging.CRITICAL)
