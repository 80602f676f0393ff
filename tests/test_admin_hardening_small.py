"""Small control-plane hardening: admin query numbers, `gateway tail` output, dev file modes."""

from __future__ import annotations

import io
import os
import stat
import sys
import unicodedata
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway.dev import write_dev_config
from gateway.server import Gateway
from gateway.tail import printable, tail
from tests.conftest import Admin, basic_auth, ingest_url

PLANS = "/catalog/tracking-plans"
# Everything a terminal could act on, from the Unicode database rather than from the code under
# test: controls (C0, DEL, C1), format characters (bidi marks, embeddings, overrides and
# isolates, the Arabic letter mark, zero-width characters, tags) and line/paragraph separators.
TERMINAL_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")
TERMINAL_CHARACTERS = "".join(
    char
    for char in map(chr, range(sys.maxunicode + 1))
    if unicodedata.category(char) in TERMINAL_CATEGORIES
)


def terminal_characters_in(printed: str) -> list[str]:
    """What would reach the terminal unescaped (newlines are kept on purpose)."""
    return [c for c in printed if c != "\n" and unicodedata.category(c) in TERMINAL_CATEGORIES]


@pytest.mark.parametrize(
    "page",
    [
        "²",  # str.isdigit() is true, int() refuses it
        "\u0661",  # an Arabic-Indic one
        "9" * 5000,  # beyond int()'s digit limit
        "99999999999999999999",
        "-1",
        "+1",
        " 1",
        "1.0",
        "",
    ],
)
async def test_a_page_that_is_not_a_small_ascii_number_is_a_400(api: Admin, page: str) -> None:
    plan = await api.ok("POST", PLANS, {"name": "Paged Plan"})
    paths = [
        f"/catalog/events?page={page}",
        f"/catalog/properties?page={page}",
        f"/catalog/custom-types?page={page}",
        f"{PLANS}/{plan['id']}/events?page={page}",
        f"{PLANS}/{plan['id']}?version={page}",
    ]
    for path in paths:
        status, document = await api("GET", path)
        assert status == 400, (path, status, document)
        assert document["code"] == "bad_request"


async def test_tail_prints_client_text_with_control_characters_escaped(gateway: Gateway) -> None:
    name = "Clear\x1b[2J\x1b]0;owned\x07 Me"
    user = "u\x9b31m\u202eevil"
    event = {"userId": user, "event": name, "properties": {"note": "\x7f\x85\u2066x"}}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            ingest_url(gateway, "/v1/track"), data=orjson.dumps(event), headers=basic_auth()
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()

    out = io.StringIO()
    seen = await tail(gateway.settings.kafka, from_beginning=True, max_records=1, out=out)
    printed = out.getvalue()

    assert seen == 1
    assert not terminal_characters_in(printed), printed
    assert '"Clear\\x1b[2J\\x1b]0;owned\\x07 Me"' in printed
    assert "key=u\\x9b31m\\u202eevil" in printed
    assert "\\x7f\\x85\\u2066x" in printed


async def test_tail_escapes_every_control_format_and_separator_character(
    gateway: Gateway,
) -> None:
    marks = "\u200e\u200f\u061c\u2028\u2029\u200b\ufeff\U000e0041"
    event = {
        "userId": f"u{marks}",
        "event": f"Named{marks}",
        "properties": {"every": TERMINAL_CHARACTERS.replace("\x00", "")},
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            ingest_url(gateway, "/v1/track"), data=orjson.dumps(event), headers=basic_auth()
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()

    out = io.StringIO()
    assert await tail(gateway.settings.kafka, from_beginning=True, max_records=1, out=out) == 1
    printed = out.getvalue()

    assert not terminal_characters_in(printed)
    assert '"Named\\u200e\\u200f\\u061c\\u2028\\u2029\\u200b\\ufeff\\U000e0041"' in printed
    assert "key=u\\u200e" in printed
    # Without keep_newlines (headers, the title line), a newline is escaped too.
    assert not terminal_characters_in(printable(TERMINAL_CHARACTERS))
    assert "\n" not in printable(TERMINAL_CHARACTERS)


def test_dev_files_holding_the_admin_token_are_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        config, token = write_dev_config(tmp_path, "127.0.0.1:9092", 8080)
        token_file = tmp_path / "admin-token"
        for path in (config, token_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert token in config.read_text()

        # Files left world-readable by an earlier run are made private on the next one.
        config.chmod(0o644)
        token_file.chmod(0o644)
        again, same_token = write_dev_config(tmp_path, "127.0.0.1:9093", 8080)
        assert same_token == token
        for path in (again, token_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        os.umask(old_umask)


async def test_nul_characters_are_a_400_on_both_databases(api: Admin) -> None:
    # PostgreSQL can neither store U+0000 in text nor compare with it (that was a 500).
    for method, path, body in (
        ("POST", "/catalog/categories", {"name": "Abc", "description": "a\u0000b"}),
        ("POST", PLANS, {"name": "Abc", "description": "a\u0000b"}),
        ("PUT", "/api/latest/sources", {"name": "a\u0000b"}),
        ("GET", "/catalog/events/ev_%00", None),
        ("GET", "/api/latest/changes?target=%00", None),
    ):
        status, document = await api(method, path, body)
        assert status == 400, (path, status, document)
        assert "NUL" in str(document), document
    assert (await api.ok("GET", "/catalog/categories"))["total"] == 0
