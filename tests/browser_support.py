"""Running the real JavaScript SDKs against a test gateway: npm packages, a page origin, Chromium.

The SDKs are the npm packages pinned in ``tests/js/package.json``, installed by ``npm ci``
(``make test`` runs it; :func:`node_modules` does too when they are missing). Browser SDKs are
served unmodified from a second local origin (another port), so every call to the gateway is
cross-origin, with CORS preflights as on a real site; Debian's Chromium runs them headless
through its chromedriver (selenium), nothing downloaded at run time.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

JS_DIR = Path(__file__).parent / "js"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The browser bundle of each SDK, as its package ships it.
BUNDLES = {
    "analytics-next": "@segment/analytics-next/dist/umd/index.js",
    "rudderstack-v3": "@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js",
    "rudder-sdk-js": "rudder-sdk-js/dist/npm/index.js",
}


def node_modules() -> Path:
    """The installed packages; installs them (``npm ci``) when they are missing."""
    modules = JS_DIR / "node_modules"
    if not (modules / ".package-lock.json").exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed for the JavaScript SDK tests (see README: Development)"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=JS_DIR,
            check=True,
            capture_output=True,
        )
    return modules


def page_app() -> web.Application:
    """The site the SDKs run on: the test pages and the SDK bundles."""
    modules = node_modules()

    async def bundle(request: web.Request) -> web.FileResponse:
        path = BUNDLES.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(modules / path)

    app = web.Application()
    app.router.add_get("/sdk/{name}.js", bundle)
    app.router.add_static("/pages/", JS_DIR, show_index=False)
    return app


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium driven through chromedriver (both from Debian's packages)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# The plan the SDK tests' source is connected to: their events are stamped with it.
ORDER_RULES = {
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {"orderId": {"type": "string"}, "total": {"type": "number"}},
            "required": ["orderId", "total"],
        }
    },
}
