"""The queries of the shipped dashboard and alerts, ready to send to a Prometheus.

``dashboard_queries()`` reads the Grafana dashboard (the chart's
``dashboards/bridgepool.json``) and returns each panel's queries with the
Grafana variables filled in: ``$namespace`` and ``$pool`` become ``.*`` (every
namespace and pool, as the dashboard's "All" does) and ``$__rate_interval`` a
fixed range (``1m`` unless told; Grafana uses four scrape intervals at least,
so pass more if your Prometheus scrapes less often than every 15 s).
``rule_queries()`` does the same for the alerting rules
(``alerts/bridgepool.rules.yaml``), which need no substitution.

An e2e test sends each query to the Prometheus that scraped a run and expects
data back::

    for title, expr in dashboard_queries():
        assert prometheus_query(expr), f"panel {title!r}: no data for {expr}"

What the queries assume of the scrape: the router's and the operator's series
carry the labels those processes export (``namespace`` and ``pool`` among them,
``namespace`` the pool's: the scrape honors it over the target's). The worker
series (``bridgepool_worker_*``, used by the session-count and error-category
panels) have no ``namespace`` or ``pool`` label of their own: the scrape must
add the pod's namespace as ``namespace`` and its ``bridgepool.io/pool`` label as
``pool`` (with Kubernetes service discovery: relabel
``__meta_kubernetes_pod_label_bridgepool_io_pool`` to ``pool``).

Standalone: the standard library and PyYAML only, so it imports from the e2e
suite, a benchmark or the unit tests alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "helm" / "bridgepool"
DASHBOARD = CHART / "dashboards" / "bridgepool.json"
RULES = CHART / "alerts" / "bridgepool.rules.yaml"

_PICKERS = re.compile(r"\$(?:\{(?:namespace|pool)\}|(?:namespace|pool)\b)")


def dashboard_panels(path: Path | str = DASHBOARD) -> list[dict[str, Any]]:
    """Every panel of the dashboard that shows data, rows left out (those of a
    collapsed row included)."""
    found: list[dict[str, Any]] = []
    for panel in json.loads(Path(path).read_text())["panels"]:
        if panel.get("type") == "row":
            found.extend(panel.get("panels") or [])
        else:
            found.append(panel)
    return found


def dashboard_queries(
    path: Path | str = DASHBOARD, rate_interval: str = "1m"
) -> list[tuple[str, str]]:
    """(panel title, PromQL) for each query of each panel, in the dashboard's
    order, with ``$namespace`` and ``$pool`` as ``.*`` and ``$__rate_interval`` as
    ``rate_interval``."""
    return [
        (
            panel["title"],
            _PICKERS.sub(".*", target["expr"].replace("$__rate_interval", rate_interval)),
        )
        for panel in dashboard_panels(path)
        for target in panel.get("targets") or []
        if target.get("expr")
    ]


def rule_queries(path: Path | str = RULES) -> list[tuple[str, str]]:
    """(alert or recording rule name, PromQL) for each rule of the rules file."""
    groups = yaml.safe_load(Path(path).read_text())["groups"]
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in groups
        for rule in group["rules"]
    ]
