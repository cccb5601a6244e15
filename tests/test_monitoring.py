"""The shipped Grafana dashboard and Prometheus alerts (helm/bridgepool/dashboards,
helm/bridgepool/alerts): they read metrics the components really export, with
labels those metrics have, follow the conventions (STYLE.md, "Dashboards and
alerts"), and the alerts fire when they should and not on a blip. A pool is a
namespace and a name: both keep two pools of one name in two namespaces apart.

PromQL is checked by ``promtool`` (``apt-get install -y prometheus``): the rules
file as it is, the dashboard's queries wrapped in recording rules. Without
promtool on PATH those tests skip, except in CI, where they fail. Whether every
query returns data is left to a real Prometheus (e2e/monitoring.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import bridgepool_operator.metrics as operator_metrics
from bridgepool_router.metrics import RouterMetrics
from bridgepool_worker.metrics import WorkerMetrics
from e2e.monitoring import (
    DASHBOARD,
    RULES,
    dashboard_panels,
    dashboard_queries,
    rule_queries,
)
from tests import test_helm_chart as chart

REPO = Path(__file__).resolve().parents[1]

RULE_TESTS = REPO / "tests" / "monitoring" / "bridgepool.rules.test.yaml"

helm = chart.helm  # the fixture: the helm binary, to render the chart's ServiceMonitors

# Labels a scrape adds to every series (the Prometheus Operator's among them).
# `namespace` is the pod's, unless the series has its own: the router's and the
# operator's pool series export the pool's, which their ServiceMonitors honor.
TARGET_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
)  # fmt: skip
# Worker series get their pool from the pod's bridgepool.io/pool label at scrape
# time, and the pool's namespace from the pod's.
WORKER_SCRAPE_LABELS = frozenset({"namespace", "pool"})


# -- what the components export --------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    family: str  # the name in the code
    labels: frozenset[str]  # the labels the code gives it (scrape labels apart)


def _families(holder: object) -> Iterator[tuple[str, str, frozenset[str]]]:
    """(family name, type, labels) of each metric the holder exports: its metric
    objects, and the families the router keeps as plain per-call counts."""
    for value in vars(holder).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                yield family.name, family.type, frozenset(value._labelnames)
    for family in getattr(holder, "PER_CALL", ()):
        # A counter family is named without _total, as prometheus_client names it.
        yield family.name, family.type, frozenset(family.labelnames)


def _series_names(family: str, kind: str) -> list[str]:
    """The names a metric family's samples have on /metrics."""
    if kind == "counter":
        return [f"{family}_total"]
    if kind == "histogram":
        return [f"{family}_bucket", f"{family}_sum", f"{family}_count"]
    if kind == "summary":
        return [family, f"{family}_sum", f"{family}_count"]
    return [family]


def exported_series() -> dict[str, Exported]:
    """Every series name the router, the operator and the worker export, with the
    labels its family has: read from their metric objects, not from their source."""
    sources: list[tuple[object, frozenset[str]]] = [
        (RouterMetrics(), frozenset()),
        (operator_metrics.METRICS, frozenset()),
        (WorkerMetrics(), WORKER_SCRAPE_LABELS),
    ]
    series: dict[str, Exported] = {}
    for holder, scrape_labels in sources:
        for family, kind, own_labels in _families(holder):
            labels = own_labels | scrape_labels | TARGET_LABELS
            for name in _series_names(family, kind):
                extra = {"le"} if name.endswith("_bucket") else set()
                series[name] = Exported(family, labels | extra)
    return series


EXPORTED = exported_series()


def test_the_three_components_are_read() -> None:
    prefixes = {name.split("_")[1] for name in EXPORTED}
    assert prefixes == {"router", "operator", "worker"}
    assert "bridgepool_router_requests_total" in EXPORTED  # a counter, as scraped
    assert "bridgepool_operator_reconcile_time_seconds_bucket" in EXPORTED


@pytest.mark.parametrize(
    "holder", [RouterMetrics(), operator_metrics.METRICS], ids=["router", "operator"]
)
def test_pool_series_carry_the_pools_namespace(holder: object) -> None:
    """A pool's name alone is not the pool: what a router or the operator
    exports of a pool says its namespace too (workers get both from the scrape)."""
    for family, _, labels in _families(holder):
        if "pool" in labels:
            assert "namespace" in labels, family


# -- reading PromQL ----------------------------------------------------------------------

_METRIC = re.compile(r"\b(bridgepool_[a-zA-Z0-9_:]*)\b(?!\s*\()")
_SELECTOR = re.compile(r"\b(bridgepool_[a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_RANGE_FUNCTION = re.compile(r"\b(rate|irate|increase|delta|idelta|deriv|\w+_over_time)\s*\(")
_RANGE = re.compile(r"\[([^\]]*)\]")


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def label_uses(expr: str) -> Iterator[tuple[str | None, str]]:
    """(metric or None for a grouping clause, label) for each label the query names."""
    for metric, matchers in _SELECTOR.findall(expr):
        for label in _MATCHER.findall(matchers):
            yield metric, label
    for labels in _GROUPING.findall(expr):
        for label in labels.split(","):
            if label.strip():
                yield None, label.strip()


def pool_groupings(expr: str) -> Iterator[set[str]]:
    """The label sets of the query's by/on clauses that name ``pool``."""
    for labels in _GROUPING.findall(expr):
        names = {label.strip() for label in labels.split(",")}
        if "pool" in names:
            yield names


def reads_pools(expr: str) -> bool:
    return any("pool" in EXPORTED[name].labels for name in metric_names(expr) if name in EXPORTED)


def unknown_names(expr: str) -> list[str]:
    """What in the query the components do not export: series names, and labels
    the selected metric (or, in by/on clauses, any metric of the query) lacks."""
    names = metric_names(expr)
    problems = [f"no metric {n}" for n in sorted(names - EXPORTED.keys())]
    known = [EXPORTED[n] for n in names if n in EXPORTED]
    anywhere = frozenset().union(*(e.labels for e in known))
    for metric, label in label_uses(expr):
        labels = EXPORTED[metric].labels if metric in EXPORTED else anywhere
        if metric is not None and metric not in EXPORTED:
            continue  # reported above
        if label not in labels:
            problems.append(f"no label {label!r} on {metric or 'any metric of the query'}")
    return problems


# -- promtool ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    binary = shutil.which("promtool")
    if not binary:
        reason = "no promtool on PATH (apt-get install -y prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False, cwd=REPO
    )


# -- alerts ------------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def duration_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)([smhd])", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


def test_rules_file_is_clean(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alerts_fire_after_for_and_not_on_a_blip(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_expected_alerts_are_there() -> None:
    assert {rule["alert"] for rule in alert_rules()} == {
        "BridgePoolNotReady",
        "BridgePoolWorkerBreakerOpen",
        "BridgePoolQueueSaturated",
        "BridgePoolRetryBudgetExhausted",
        "BridgePoolOperatorReconcileErrors",
    }


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_follows_the_conventions(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"BridgePool(?:[A-Z][a-z0-9]*)+", rule["alert"])
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert set(rule["annotations"]) >= {"summary", "description"}
    assert all(text.strip() for text in rule["annotations"].values())
    assert duration_seconds(rule["for"]) >= 5 * 60, "a `for:` that would page on a blip"


def test_every_alert_is_unit_tested_both_ways() -> None:
    """The unit tests hold, for every alert, a time where it fires and one where
    it does not (while its condition may already hold: pending, or a blip)."""
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test") or []:
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts <= fired, f"never seen firing: {alerts - fired}"
    assert alerts <= quiet, f"never seen quiet: {alerts - quiet}"


@pytest.mark.parametrize(("name", "expr"), rule_queries(), ids=[n for n, _ in rule_queries()])
def test_alert_reads_exported_metrics(name: str, expr: str) -> None:
    assert metric_names(expr), "reads no BridgePool metric"
    assert unknown_names(expr) == []


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_keeps_pools_of_one_name_apart(rule: dict[str, Any]) -> None:
    """Grouped and joined by namespace and pool, and the annotations name both:
    team-a's `example` and team-b's are two alerts, each saying which."""
    expr = rule["expr"]
    if reads_pools(expr):
        groupings = list(pool_groupings(expr))
        assert groupings, f"{rule['alert']} does not group by pool"
        assert all("namespace" in names for names in groupings), expr
    for name, text in rule["annotations"].items():
        assert "exported_namespace" not in text, name
        if "$labels.pool" in text:
            assert "{{ $labels.namespace }}/{{ $labels.pool }}" in text, (name, text)


def test_service_monitors_keep_the_pools_namespace(helm: str) -> None:
    """The router's and the operator's `namespace` is the pool's: the scrape keeps
    it rather than the target's (which would rename it `exported_namespace`)."""
    manifests = chart.render(helm, "--set", "metrics.serviceMonitor.enabled=true")
    monitors = chart.of_kind(manifests, "ServiceMonitor")
    assert monitors
    for monitor in monitors:
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint.get("honorLabels") is True, monitor["metadata"]["name"]


# -- dashboard -----------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_dashboard_variables() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39  # Grafana 11 and newer
    variables = {v["name"]: v for v in board["templating"]["list"]}
    source = variables["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    # Namespace first: the pools offered are those of the namespaces picked.
    names = [v["name"] for v in board["templating"]["list"]]
    assert names.index("namespace") < names.index("pool"), names
    namespace, pool = variables["namespace"], variables["pool"]
    for variable in (namespace, pool):
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == "${datasource}"
        assert variable["multi"] and variable["includeAll"]
    match = re.fullmatch(r"label_values\((\w+), namespace\)", namespace["query"])
    assert match, namespace["query"]
    assert {"namespace", "pool"} <= EXPORTED[match.group(1)].labels  # a pool's namespace
    match = re.fullmatch(r'label_values\((\w+)\{namespace=~"\$namespace"\}, pool\)', pool["query"])
    assert match, pool["query"]
    assert "pool" in EXPORTED[match.group(1)].labels


PANELS = dashboard_panels()


def test_panels_have_one_titled_question_each() -> None:
    titles = [panel["title"] for panel in PANELS]
    assert len(titles) == len(set(titles)), "two panels with one title"
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in PANELS:
        assert panel["title"].strip(), panel
        assert "?" in panel["title"], f"{panel['title']!r} does not say its question"
        assert panel.get("description"), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        targets = panel.get("targets") or []
        assert targets and all(t.get("expr") for t in targets), panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in targets), panel["title"]


@pytest.mark.parametrize("panel", PANELS, ids=[p["title"] for p in PANELS])
def test_panel_queries(panel: dict[str, Any]) -> None:
    for target in panel["targets"]:
        expr = target["expr"]
        assert metric_names(expr), f"reads no BridgePool metric: {expr}"
        assert unknown_names(expr) == [], expr
        # Every range function gets Grafana's interval, which follows the scrape interval.
        assert len(_RANGE_FUNCTION.findall(expr)) == len(_RANGE.findall(expr)), expr
        assert set(_RANGE.findall(expr)) <= {"$__rate_interval"}, expr
        # Every pool-labelled series follows the namespace and pool pickers, and a
        # pool is shown as namespace/pool.
        for name in metric_names(expr):
            if "pool" in EXPORTED[name].labels:
                assert re.search(rf'{name}\{{[^}}]*namespace=~"\$namespace"', expr), (name, expr)
                assert re.search(rf'{name}\{{[^}}]*pool=~"\$pool"', expr), (name, expr)
        assert all("namespace" in names for names in pool_groupings(expr)), expr
        if reads_pools(expr):
            assert "{{namespace}}/{{pool}}" in target["legendFormat"], target["legendFormat"]


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    """promtool has no query checker; as recording rules, the queries go through
    Prometheus' own parser."""
    queries = dashboard_queries()
    assert len(queries) >= len(PANELS)
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = run_promtool(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_fill_in_the_variables() -> None:
    queries = dashboard_queries(rate_interval="2m")
    assert {title for title, _ in queries} == {panel["title"] for panel in PANELS}
    for _, expr in queries:
        assert "$" not in expr, expr
    assert any('pool=~".*"' in expr and "[2m]" in expr for _, expr in queries)
    assert any('namespace=~".*"' in expr for _, expr in queries)


# Two pools named `example`, in team-a and team-b, under the same load: every
# pool-labelled series the dashboard reads, as the scrape gives it (namespace and
# pool added below), with its promtool values over ten minutes.
SAME_NAME_LOAD: dict[str, str] = {
    "bridgepool_operator_pool_desired_workers": "2x10",
    "bridgepool_operator_pool_ready_workers": "2x10",
    "bridgepool_operator_pool_utilization_ratio": "0.7x10",
    'bridgepool_router_requests_total{outcome="success"}': "0+60x10",
    'bridgepool_router_requests_total{outcome="timeout"}': "0+1x10",
    'bridgepool_router_request_duration_seconds_bucket{le="0.1"}': "0+50x10",
    'bridgepool_router_request_duration_seconds_bucket{le="+Inf"}': "0+61x10",
    'bridgepool_router_added_latency_seconds_bucket{le="0.001"}': "0+60x10",
    'bridgepool_router_added_latency_seconds_bucket{le="+Inf"}': "0+61x10",
    "bridgepool_router_queue_depth": "3x10",
    'bridgepool_router_queue_rejected_total{reason="full"}': "0+1x10",
    'bridgepool_router_queue_wait_seconds_bucket{le="0.1"}': "0+5x10",
    'bridgepool_router_queue_wait_seconds_bucket{le="+Inf"}': "0+6x10",
    'bridgepool_router_breaker_state{worker="example-1"}': "2x10",
    'bridgepool_router_breaker_transitions_total{to="open"}': "0+1x10",
    'bridgepool_router_retries_total{reason="connect"}': "0+1x10",
    "bridgepool_router_retry_budget_denied_total": "0+1x10",
    'bridgepool_router_session_lookups_total{result="hit"}': "0+10x10",
    'bridgepool_router_session_lookups_total{result="rebound"}': "0+1x10",
    'bridgepool_worker_errors_total{category="timeout"}': "0+1x10",
    "bridgepool_worker_sessions": "4x10",
}
SAME_NAME_NAMESPACES = ("team-a", "team-b")


def same_name_series(series: str, namespace: str) -> str:
    pool = f'instance="scraped:8080", namespace="{namespace}", pool="example"'
    return series.replace("{", "{" + pool + ", ") if "{" in series else f"{series}{{{pool}}}"


def test_dashboard_shows_pools_of_one_name_apart(promtool: str, tmp_path: Path) -> None:
    """Every pool panel's query, over team-a's `example` and team-b's, gives a
    series of each, labelled with its namespace: two pools, not one summed."""
    queries = [(t, e) for t, e in dashboard_queries(rate_interval="5m") if reads_pools(e)]
    read = set().union(*(metric_names(expr) for _, expr in queries))
    loaded = {re.sub(r"\{.*", "", series) for series in SAME_NAME_LOAD}
    assert read <= loaded, f"no load for {read - loaded}"
    input_series = []
    for namespace in SAME_NAME_NAMESPACES:
        for series, values in SAME_NAME_LOAD.items():
            input_series.append({"series": same_name_series(series, namespace), "values": values})
    for entry in input_series:
        assert unknown_names(entry["series"]) == [], entry["series"]
    pools = [
        {"labels": f'{{namespace="{n}", pool="example"}}', "value": 1} for n in SAME_NAME_NAMESPACES
    ]
    checks = [
        {"expr": f"group by (namespace, pool) ({expr})", "eval_time": "10m", "exp_samples": pools}
        for _, expr in queries
    ]
    tests = {
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input_series, "promql_expr_test": checks}],
    }
    path = tmp_path / "dashboard.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = run_promtool(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
