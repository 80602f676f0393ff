"""``gateway tail``: watch the events (or quarantine) topic live, pretty-printed.

What a developer instrumenting an app wants: send an event, see it arrive with its key, headers
and final shape — or see why it was quarantined.
"""

from __future__ import annotations

import asyncio
import re
import sys
import unicodedata
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer

from gateway.config import KafkaSettings
from gateway.publish.producer import client_options

BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"

# Record contents come from clients (event names, user ids, any field). Printed raw, a control
# character could drive the terminal (clear it, move the cursor, set the title, hide text), a
# bidirectional mark or override could reorder what is shown and a line or paragraph separator
# could start a fake line: every character of the control (Cc), format (Cf), line separator
# (Zl) and paragraph separator (Zp) categories is printed as an escape instead. The categories
# come from unicodedata, so no hand-kept list can miss one.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# No printable ASCII character is in those categories: only the others are looked up.
_NOT_PRINTABLE_ASCII = re.compile("[^\x20-\x7e]")


def _escaped(char: str, keep_newlines: bool) -> str:
    if (keep_newlines and char == "\n") or unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control or format character written as an escape (``\\x1b``,
    ``\\u202e``); newlines kept as they are with ``keep_newlines``."""
    return _NOT_PRINTABLE_ASCII.sub(lambda m: _escaped(m.group(), keep_newlines), text)


def format_record(record: Any, color: bool, quarantine_topic: str) -> str:
    headers = {k: printable(v.decode("utf-8", "replace")) for k, v in record.headers or ()}
    try:
        value: Any = orjson.loads(record.value)
        body = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        value, body = None, record.value.decode("utf-8", "replace")
    # JSON escapes C0 controls in strings, but not DEL, C1 or format characters.
    body = printable(body, keep_newlines=True)
    if record.topic == quarantine_topic:
        reason = value.get("reason") if isinstance(value, dict) else None
        reason = printable(str(reason))
        status = f"QUARANTINED ({reason})"
        tint = RED
    else:
        status = "forwarded"
        tint = GREEN
    name = headers.get("event-name") or ""
    title = " ".join(
        part
        for part in (
            status,
            headers.get("event-type", ""),
            f'"{name}"' if name else "",
            f"key={printable(record.key.decode('utf-8', 'replace'))}" if record.key else "key=-",
            f"source={headers.get('source-id', '')}",
            f"violations={headers.get('violations', '0')}",
        )
        if part
    )
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    if color:
        return f"{BOLD}{tint}{title}{RESET} {DIM}{where}{RESET}\n{body}\n"
    return f"{title} {where}\n{body}\n"


async def tail(
    settings: KafkaSettings,
    *,
    quarantine: bool = False,
    both: bool = False,
    from_beginning: bool = False,
    max_records: int | None = None,
    out: TextIO = sys.stdout,
) -> int:
    if both:
        topics = [settings.events_topic, settings.quarantine_topic]
    else:
        topics = [settings.quarantine_topic if quarantine else settings.events_topic]
    options = client_options(settings)
    options.pop("client_id", None)
    consumer = AIOKafkaConsumer(
        *topics,
        **options,
        client_id="gateway-tail",
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    color = out.isatty()
    print(
        f"watching {', '.join(topics)} on {settings.bootstrap_servers} (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    seen = 0
    try:
        async for record in consumer:
            out.write(format_record(record, color, settings.quarantine_topic))
            out.flush()
            seen += 1
            if max_records is not None and seen >= max_records:
                break
    except asyncio.CancelledError:
        pass
    finally:
        await consumer.stop()
    return seen
