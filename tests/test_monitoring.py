"""The shipped monitoring: Prometheus rules and configuration pass promtool, the alerts fire when they
should (promtool's rule unit tests), and the dashboard and rules name only metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from django_prometheus.middleware import Metrics
from prometheus_client import REGISTRY

import realtime.metrics  # noqa: F401 - registers the rpgrealtime_ws_* metrics on import
from tests.support.cluster import ROOT

PROMETHEUS = ROOT / "deploy/prometheus"
DASHBOARDS = ROOT / "deploy/grafana/dashboards"

# Metrics referenced before the code that exports them lands; remove each name once it exists.
#   rpgrealtime_build_info: a gauge with labels version and protocol, set once at start.
PENDING_METRICS: set[str] = set()
# Series Prometheus makes itself for every scrape target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Sample names Prometheus exposes for each family type (prometheus_client's exposition).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package (apt-get install -y --no-install-recommends "
            "prometheus; scripts/test does this when run as root).",
            pytrace=False,
        )
    return found


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_accepts_the_rules(promtool):
    result = run(promtool, "check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_configuration(promtool):
    result = run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_fire_when_they_should_and_not_before(promtool):
    result = run(promtool, "test", "rules", "rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_the_issue_asks_for_exists_with_a_severity_and_a_summary():
    rules = [
        rule for group in yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"] for rule in group["rules"]
    ]
    names = {rule["alert"] for rule in rules}
    assert {
        "RpgrealtimeInstanceDown",
        "RpgrealtimeRedisOutage",
        "RpgrealtimeBroadcastLatencyHigh",
        "RpgrealtimeServerErrors",
        "RpgrealtimeRateLimitedHigh",
        "RpgrealtimeAuthFailuresHigh",
        "RpgrealtimeConnectionChurn",
        "RpgrealtimeSlowConsumerCloses",
    } <= names
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def exported_metric_names() -> set[str]:
    """Every sample name this project exports on /metrics: its own and django-prometheus's."""
    Metrics.get_instance()  # what PrometheusBeforeMiddleware does on the first request
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (a small tokenizer, enough for our files)."""
    text = re.sub(r"label_values\(([^,]*),[^)]*\)", r"\1", expression)  # Grafana: its label argument is no metric
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, Grafana's $__rate_interval included
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue  # a function, an operator word or a duration
        names.add(word)
    return names


def test_the_tokenizer_finds_metric_names_only():
    expression = (
        'histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{job="x", code=~"4.."}[5m]))) > 1 '
        "and sum without (type) (b_total offset 5m) * 60 > c"
    )
    assert metric_names(expression) == {"a_bucket", "b_total", "c"}
    assert metric_names('label_values(up{job="rpgrealtime"}, instance)') == {"up"}


def rule_expressions() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    expressions = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition", "query") and isinstance(value, str):
                    expressions.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted(DASHBOARDS.glob("*.json")):
        walk(json.loads(path.read_text()))
    return expressions


def test_dashboard_and_rules_reference_only_metrics_that_exist():
    exported = exported_metric_names()
    assert "rpgrealtime_ws_connections" in exported and "django_http_responses_total_by_status_total" in exported
    known = exported | PENDING_METRICS | SCRAPE_SERIES
    expressions = rule_expressions() + dashboard_expressions()
    assert len(expressions) > 30
    unknown = {name: expr for expr in expressions for name in metric_names(expr) - known}
    assert not unknown, f"no such metric: {sorted(unknown)} (in {list(unknown.values())[:3]})"


def test_pending_metrics_are_still_pending():
    # Once the code exports one, drop it from PENDING_METRICS so the check above covers it.
    assert not PENDING_METRICS & exported_metric_names()


def test_the_dashboard_uses_the_provisioned_datasource():
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads((DASHBOARDS / "rpgrealtime.json").read_text())
    used = {panel["datasource"]["uid"] for panel in dashboard["panels"] if panel.get("type") != "row"} | {
        target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    }
    assert used == {uid}
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/rpgrealtime.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "rpgrealtime"


def test_prometheus_scrapes_every_instance_of_the_compose_file():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = (job for job in config["scrape_configs"] if job["job_name"] == "rpgrealtime")
    targets = {target for group in job["static_configs"] for target in group["targets"]}
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    instances = {f"{name}:8000" for name in services if re.fullmatch(r"app\d+", name)}
    assert targets == instances
