"""String formats, checked identically by the fast validator and the full error collector.

fastjsonschema and jsonschema each ship their own format checks, and they disagree at the
edges (jsonschema skips formats whose optional dependency is missing; the regexes differ). The
two must always agree on valid vs invalid, so both get exactly these functions, and every format
name either library knows natively is overridden here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import date, time
from functools import cache

from jsonschema import FormatChecker

FormatFn = Callable[[str], bool]

_DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)
_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\Z")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*\Z")
_URI_REFERENCE = re.compile(r"^[^\s]*\Z")
_JSON_POINTER = re.compile(r"^(/([^/~]|~[01])*)*\Z")
_RELATIVE_JSON_POINTER = re.compile(r"^\d+(#|(/([^/~]|~[01])*)*)\Z")
_URI_TEMPLATE = re.compile(r"^([^{}\s]|\{[^{}\s]+\})*\Z")


def _valid_date(y: str, m: str, d: str) -> bool:
    try:
        date(int(y), int(m), int(d))
    except ValueError:
        return False
    return True


def _valid_time(h: str, mi: str, s: str, offset: str) -> bool:
    if offset not in ("Z", "z") and (int(offset[1:3]) > 23 or int(offset[4:6]) > 59):
        return False
    try:
        # A leap second (60) is allowed by RFC 3339.
        time(int(h), int(mi), min(int(s), 59))
    except ValueError:
        return False
    return int(s) <= 60


def is_date_time(value: str) -> bool:
    m = _DATE_TIME.match(value)
    return m is not None and _valid_date(*m.group(1, 2, 3)) and _valid_time(*m.group(4, 5, 6, 8))


def is_date(value: str) -> bool:
    m = _DATE.match(value)
    return m is not None and _valid_date(*m.group(1, 2, 3))


def is_time(value: str) -> bool:
    m = _TIME.match(value)
    return m is not None and _valid_time(*m.group(1, 2, 3, 5))


def is_hostname(value: str) -> bool:
    if not value or len(value) > 253:
        return False
    labels = value[:-1].split(".") if value.endswith(".") else value.split(".")
    return all(_HOSTNAME_LABEL.match(label) for label in labels)


def is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def is_ipv6(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def is_regex(value: str) -> bool:
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError):
        return False
    return True


def _matches(pattern: re.Pattern[str]) -> FormatFn:
    return lambda value: pattern.match(value) is not None


FORMATS: dict[str, FormatFn] = {
    "date-time": is_date_time,
    "date": is_date,
    "time": is_time,
    "email": _matches(_EMAIL),
    "idn-email": _matches(_EMAIL),
    "uuid": _matches(_UUID),
    "hostname": is_hostname,
    "idn-hostname": is_hostname,
    "ipv4": is_ipv4,
    "ipv6": is_ipv6,
    "uri": _matches(_URI),
    "iri": _matches(_URI),
    "uri-reference": _matches(_URI_REFERENCE),
    "iri-reference": _matches(_URI_REFERENCE),
    "uri-template": _matches(_URI_TEMPLATE),
    "json-pointer": _matches(_JSON_POINTER),
    "relative-json-pointer": _matches(_RELATIVE_JSON_POINTER),
    "regex": is_regex,
}


@cache
def format_checker() -> FormatChecker:
    """A jsonschema checker with exactly these formats (formats apply to strings only).

    One instance, shared: it holds nothing but the checks.
    """
    checker = FormatChecker(formats=())
    for name, fn in FORMATS.items():
        checker.checks(name)(_strings_only(fn))
    return checker


def _strings_only(fn: FormatFn) -> Callable[[object], bool]:
    return lambda value: not isinstance(value, str) or fn(value)
