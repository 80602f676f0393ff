"""The shipped alerting rules (deploy/prometheus/alerts.yml) and dashboard: the rules pass
``promtool check rules`` and their unit tests (``promtool test rules``), and every metric the
rules and the dashboard name is one the gateway's /metrics really exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GatewayFactory

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gateway.json"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("", "_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is needed (Debian package prometheus; make test-deps installs it)"
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=120, cwd=RULES.parent
    )


def test_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr


async def test_rules_and_dashboard_name_only_exposed_metrics(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway()
    url = f"http://127.0.0.1:{gw.admin_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
    exposed = {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        if family.name.startswith("gateway_")
        for suffix in SUFFIXES[family.type]
    }
    assert "gateway_events_checked_total" in exposed
    for path in (RULES, DASHBOARD):
        named = set(re.findall(r"\bgateway_[a-z_]+", path.read_text()))
        assert named, path
        assert sorted(named - exposed) == [], f"{path.name} names metrics /metrics lacks"
