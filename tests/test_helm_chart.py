"""The Helm chart (helm/bridgepool): it lints clean, and what it renders is hardened,
least-privileged and wired to the real components (their flags, variables, labels).

Rendering needs helm: ``BRIDGEPOOL_HELM`` or ``helm`` on PATH
(``e2e/cluster/build-tools helm`` builds the pinned one). Without it these tests
skip, except in CI, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridgepool.labels import GROUP, LABEL_POOL, PLURAL
from bridgepool_operator.config import load_config as operator_config
from bridgepool_router.cli import load_options as router_options

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "bridgepool"
RELEASE = "bp"
RELEASE_NAMESPACE = "bridgepool-system"

Manifest = dict[str, Any]

# The value sets every rendering test runs on.
VALUE_SETS: dict[str, tuple[str, ...]] = {
    "cluster-wide": (),
    "namespaced": ("--set", "watchNamespaces={team-a,team-b}"),
    "everything": (
        "--set",
        "networkPolicy.enabled=true,networkPolicy.namespaces={team-a},"
        "metrics.serviceMonitor.enabled=true,metrics.dashboard.enabled=true,"
        "metrics.prometheusRule.enabled=true",
    ),
}


# -- helm ------------------------------------------------------------------------------


def test_chart_crd_is_the_repository_crd() -> None:
    chart_crd = CHART / "crds" / "bridgepool.io_bridgepools.yaml"
    repo_crd = REPO / "crds" / "bridgepool.io_bridgepools.yaml"
    assert chart_crd.read_bytes() == repo_crd.read_bytes(), (
        f"{chart_crd.relative_to(REPO)} is stale: cp {repo_crd.relative_to(REPO)} "
        f"{chart_crd.relative_to(REPO)}"
    )


@pytest.fixture(scope="module")
def helm() -> str:
    binary = os.environ.get("BRIDGEPOOL_HELM") or shutil.which("helm")
    reason = ""
    if not binary:
        reason = "no helm: set BRIDGEPOOL_HELM or put helm on PATH (e2e/cluster/build-tools helm)"
    elif not os.access(binary, os.X_OK):
        reason = f"helm {binary!r} (BRIDGEPOOL_HELM) is not an executable file"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert binary
    return binary


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, *args], capture_output=True, text=True, timeout=120, check=False, cwd=REPO
    )


def render(helm: str, *args: str) -> list[Manifest]:
    result = run_helm(
        helm, "template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, *args
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=list(VALUE_SETS), ids=list(VALUE_SETS))
def manifests(request: pytest.FixtureRequest, helm: str) -> list[Manifest]:
    return render(helm, *VALUE_SETS[request.param])


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def component(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    """The one object of a kind whose app.kubernetes.io/component is ``name``."""
    found = [
        m
        for m in of_kind(manifests, kind)
        if m["metadata"]["labels"].get("app.kubernetes.io/component") == name
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects of component {name}"
    return found[0]


def containers(pod_spec: Manifest) -> Iterator[Manifest]:
    yield from pod_spec.get("initContainers") or []
    yield from pod_spec["containers"]


# -- lint ------------------------------------------------------------------------------


@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_lint_strict_is_clean(helm: str, values: tuple[str, ...]) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


# -- pods ------------------------------------------------------------------------------


def test_every_container_is_hardened(manifests: list[Manifest]) -> None:
    deployments = of_kind(manifests, "Deployment")
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == {
        "operator",
        "router",
    }
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is True  # both use the API
        # Service links would put BRIDGEPOOL_OPERATOR_METRICS_PORT=tcp://... (from
        # the operator's own metrics Service) into the operator's settings.
        assert pod["enableServiceLinks"] is False
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for c in containers(pod):
            where = f"{deployment['metadata']['name']}/{c['name']}"
            # Container settings win over the pod's; either may carry these two.
            effective = {**pod.get("securityContext", {}), **c["securityContext"]}
            assert effective["runAsNonRoot"] is True, where
            assert effective["runAsUser"] == 10001, where
            assert effective["seccompProfile"] == {"type": "RuntimeDefault"}, where
            ctx = c["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"] == {"drop": ["ALL"]}, where
            assert c["resources"]["requests"] and c["resources"]["limits"], where
            assert c["livenessProbe"]["httpGet"] and c["readinessProbe"]["httpGet"], where
            # A read-only root still needs somewhere to write temporary files.
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, where


def test_operator_runs_alone(manifests: list[Manifest]) -> None:
    spec = component(manifests, "Deployment", "operator")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(
    ("values", "namespaces", "all_namespaces"),
    [
        ((), [], True),
        (("--set", "watchNamespaces={team-a,team-b}"), ["team-a", "team-b"], False),
    ],
    ids=["cluster-wide", "namespaced"],
)
def test_components_serve_the_watched_namespaces(
    helm: str, values: tuple[str, ...], namespaces: list[str], all_namespaces: bool
) -> None:
    """The real command lines accept the rendered arguments and read them as meant."""
    manifests = render(helm, *values)
    operator = component(manifests, "Deployment", "operator")["spec"]["template"]["spec"]
    operator_args = operator_config(operator["containers"][0]["args"], {})
    assert (list(operator_args.namespace), operator_args.all_namespaces) == (
        namespaces,
        all_namespaces,
    )
    router = component(manifests, "Deployment", "router")["spec"]["template"]["spec"]
    router_args = router_options(router["containers"][0]["args"], {})
    assert router_args.kubernetes
    assert list(router_args.namespace) == namespaces


def test_operator_settings_reach_the_operator(helm: str) -> None:
    # --set reads 0.5 as a string; a values file or --set-json gives a number.
    manifests = render(
        helm, "--set-json", 'operator={"intervalSeconds": 7, "statsTimeoutSeconds": 0.5}'
    )
    container = component(manifests, "Deployment", "operator")["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    config = operator_config(container["args"], env)
    assert (config.interval_seconds, config.stats_timeout_seconds) == (7.0, 0.5)


def test_router_stops_after_the_service_forgets_it(helm: str) -> None:
    manifests = render(
        helm, "--set", "router.preStopSleepSeconds=8,router.shutdownTimeoutSeconds=20"
    )
    pod = component(manifests, "Deployment", "router")["spec"]["template"]["spec"]
    router = pod["containers"][0]
    assert router["lifecycle"]["preStop"] == {"sleep": {"seconds": 8}}
    assert router_options(router["args"], {}).shutdown_timeout == 20
    assert pod["terminationGracePeriodSeconds"] > 8 + 20
    assert router["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert router["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_router_replicas_spread_softly(manifests: list[Manifest]) -> None:
    deployment = component(manifests, "Deployment", "router")
    assert deployment["spec"]["replicas"] == 2
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti  # one node still works
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_router_service_and_pdb(manifests: list[Manifest]) -> None:
    router = component(manifests, "Deployment", "router")
    selector = router["spec"]["selector"]["matchLabels"]
    service = component(manifests, "Service", "router")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    pdb = component(manifests, "PodDisruptionBudget", "router")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}


def test_router_pdb_can_be_turned_off(helm: str) -> None:
    manifests = render(helm, "--set", "router.podDisruptionBudget.enabled=false")
    assert of_kind(manifests, "PodDisruptionBudget") == []


# -- RBAC ------------------------------------------------------------------------------


def rules_of(manifests: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    for m in manifests:
        if m["kind"] in ("Role", "ClusterRole"):
            for rule in m["rules"]:
                yield m, rule


def test_no_rbac_wildcards(manifests: list[Manifest]) -> None:
    for role, rule in rules_of(manifests):
        for field in ("apiGroups", "resources", "verbs"):
            assert not any("*" in item for item in rule[field]), (role["metadata"], rule)


def grants(role: Manifest) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# What the router's auth asks the API server (cluster-scoped APIs), and no more.
AUTH_REVIEWS = {
    ("authentication.k8s.io", "tokenreviews", "create"),
    ("authorization.k8s.io", "subjectaccessreviews", "create"),
}


def test_cluster_wide_rbac(helm: str) -> None:
    manifests = render(helm)
    assert of_kind(manifests, "Role") == []
    operator = grants(component(manifests, "ClusterRole", "operator"))
    assert ("", "pods", "create") in operator
    assert ("policy", "poddisruptionbudgets", "patch") in operator
    assert ("", "namespaces", "list") not in operator  # kopf ignores namespaces cluster-wide
    router = grants(component(manifests, "ClusterRole", "router"))
    assert router == AUTH_REVIEWS | {
        (group, resource, verb)
        for group, resource in (("", "pods"), ("bridgepool.io", "bridgepools"))
        for verb in ("list", "watch")
    }
    for binding in of_kind(manifests, "ClusterRoleBinding"):
        assert binding["metadata"]["name"].startswith(f"{RELEASE}-")  # no clash between releases
        (subject,) = binding["subjects"]
        assert subject["namespace"] == RELEASE_NAMESPACE


def test_namespaced_rbac(helm: str) -> None:
    cluster_wide = render(helm)
    manifests = render(helm, "--set", "watchNamespaces={team-a,team-b}")
    roles = of_kind(manifests, "Role")
    assert sorted((r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles) == [
        (ns, f"{RELEASE}-bridgepool-{c}")
        for ns in ("team-a", "team-b")
        for c in ("operator", "router")
    ]
    bindings = of_kind(manifests, "RoleBinding")
    assert sorted((b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings) == sorted(
        (r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles
    )
    # Cluster-wide, only what kopf needs to see (CRDs and namespaces) and what
    # the router's auth asks the API server.
    cluster_scoped = {
        c: grants(component(manifests, "ClusterRole", c)) for c in ("operator", "router")
    }
    assert cluster_scoped == {
        "operator": {
            ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
            ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
            ("", "namespaces", "list"),
            ("", "namespaces", "watch"),
        },
        "router": AUTH_REVIEWS,
    }
    # In each namespace, the rest of what the cluster-wide mode grants everywhere.
    for c in ("operator", "router"):
        everywhere = grants(component(cluster_wide, "ClusterRole", c))
        for role in roles:
            if role["metadata"]["labels"]["app.kubernetes.io/component"] == c:
                assert grants(role) == everywhere - cluster_scoped[c]


def test_rbac_create_false_renders_no_rbac(helm: str) -> None:
    manifests = render(helm, "--set", "rbac.create=false")
    kinds = {m["kind"] for m in manifests}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    assert len(of_kind(manifests, "ServiceAccount")) == 2


# -- auth ------------------------------------------------------------------------------


def router_args(manifests: list[Manifest]) -> list[str]:
    pod = component(manifests, "Deployment", "router")["spec"]["template"]["spec"]
    args: list[str] = pod["containers"][0]["args"]
    return args


def auth_args(args: list[str]) -> list[str]:
    """The router's --auth* and --authz* flags, in order."""
    return [a for a in args if a.startswith("--auth")]


def test_router_checks_callers_by_default(manifests: list[Manifest]) -> None:
    assert auth_args(router_args(manifests)) == [
        "--auth=kubernetes",
        "--auth-token-cache-seconds=120",
        "--authz-allow-cache-seconds=300",
        "--authz-deny-cache-seconds=30",
    ]


def test_auth_settings_reach_the_router(helm: str) -> None:
    manifests = render(
        helm,
        "--set-json",
        'auth={"audiences": ["https://kubernetes.default.svc", "bridgepool"],'
        ' "tokenCacheSeconds": 60, "allowCacheSeconds": 0, "denyCacheSeconds": 5}',
    )
    args = router_args(manifests)
    assert auth_args(args) == [
        "--auth=kubernetes",
        "--auth-audience=https://kubernetes.default.svc",
        "--auth-audience=bridgepool",
        "--auth-token-cache-seconds=60",
        "--authz-allow-cache-seconds=0",
        "--authz-deny-cache-seconds=5",
    ]
    options = router_options(args, {})
    assert (
        options.auth,
        tuple(options.auth_audience),
        options.auth_token_cache_seconds,
        options.authz_allow_cache_seconds,
        options.authz_deny_cache_seconds,
    ) == ("kubernetes", ("https://kubernetes.default.svc", "bridgepool"), 60, 0, 5)


def test_router_may_review_callers(manifests: list[Manifest]) -> None:
    """Token and access reviews are cluster-scoped APIs: a ClusterRole, bound to the
    router, in either RBAC mode; create on exactly those two."""
    role = component(manifests, "ClusterRole", "router")
    review_groups = {"authentication.k8s.io", "authorization.k8s.io"}
    assert {g for g in grants(role) if g[0] in review_groups} == AUTH_REVIEWS
    binding = component(manifests, "ClusterRoleBinding", "router")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    pod = component(manifests, "Deployment", "router")["spec"]["template"]["spec"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": pod["serviceAccountName"],
            "namespace": RELEASE_NAMESPACE,
        }
    ]


@pytest.mark.parametrize(
    "values",
    [(), ("--set", "watchNamespaces={team-a,team-b}")],
    ids=["cluster-wide", "namespaced"],
)
def test_auth_none_reviews_nothing(helm: str, values: tuple[str, ...]) -> None:
    manifests = render(helm, "--set", "auth.mode=none", *values)
    args = router_args(manifests)
    assert auth_args(args) == ["--auth=none"]
    assert router_options(args, {}).auth == "none"
    reviews = {resource for _, rule in rules_of(manifests) for resource in rule["resources"]}
    assert not reviews & {"tokenreviews", "subjectaccessreviews"}
    if values:  # namespaced: the router has nothing left to do cluster-wide
        cluster_scoped = of_kind(manifests, "ClusterRole") + of_kind(
            manifests, "ClusterRoleBinding"
        )
        components = {
            m["metadata"]["labels"]["app.kubernetes.io/component"] for m in cluster_scoped
        }
        assert "router" not in components


AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"


def aggregated_to(role: Manifest) -> set[str]:
    """The built-in roles (view, edit, admin) a ClusterRole's rules join."""
    return {
        label.removeprefix(AGGREGATE_TO)
        for label, value in role["metadata"]["labels"].items()
        if label.startswith(AGGREGATE_TO) and value == "true"
    }


def test_roles_for_people_calling_and_viewing_pools(manifests: list[Manifest]) -> None:
    caller = component(manifests, "ClusterRole", "caller")
    viewer = component(manifests, "ClusterRole", "viewer")
    assert caller["metadata"]["name"] == f"{RELEASE}-bridgepool-caller"
    assert viewer["metadata"]["name"] == f"{RELEASE}-bridgepool-viewer"
    see = {(GROUP, PLURAL, "get"), (GROUP, PLURAL, "list")}
    # What the router's SubjectAccessReviews ask: execute (anonymous or in a
    # session), end a session, a pool's detail, the list. Nothing that changes a pool.
    assert grants(caller) == see | {
        (GROUP, f"{PLURAL}/execute", "create"),
        (GROUP, f"{PLURAL}/sessions", "delete"),
    }
    assert grants(viewer) == see
    assert aggregated_to(caller) == {"edit", "admin"}
    assert aggregated_to(viewer) == {"view"}


# -- optional parts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "namespaces"),
    [
        ((), []),
        (("--set", "networkPolicy.enabled=true,networkPolicy.namespaces={team-a}"), ["team-a"]),
        (
            ("--set", "networkPolicy.enabled=true,watchNamespaces={team-a,team-b}"),
            ["team-a", "team-b"],
        ),
    ],
    ids=["off", "listed", "watched"],
)
def test_network_policy_per_namespace(
    helm: str, values: tuple[str, ...], namespaces: list[str]
) -> None:
    manifests = render(helm, *values)
    policies = of_kind(manifests, "NetworkPolicy")
    assert sorted(p["metadata"]["namespace"] for p in policies) == namespaces
    pod_labels = {
        c: component(manifests, "Deployment", c)["spec"]["template"]["metadata"]["labels"]
        for c in ("operator", "router")
    }
    for policy in policies:
        spec = policy["spec"]
        assert spec["podSelector"] == {
            "matchExpressions": [{"key": LABEL_POOL, "operator": "Exists"}]
        }
        assert spec["policyTypes"] == ["Ingress"]
        (rule,) = spec["ingress"]
        assert "ports" not in rule  # every port of the worker, from these peers only
        *components, workers = rule["from"]
        allowed = set()
        for peer in components:
            assert peer["namespaceSelector"] == {
                "matchLabels": {"kubernetes.io/metadata.name": RELEASE_NAMESPACE}
            }
            for c, labels in pod_labels.items():
                if peer["podSelector"]["matchLabels"].items() <= labels.items():
                    allowed.add(c)
        assert allowed == {"operator", "router"}
        assert len(components) == 2
        # Workers of the same namespace: a moved session's old holder activates the new one.
        assert workers == {
            "podSelector": {"matchExpressions": [{"key": LABEL_POOL, "operator": "Exists"}]}
        }


def test_service_monitors_only_when_enabled(helm: str) -> None:
    assert of_kind(render(helm), "ServiceMonitor") == []
    manifests = render(
        helm, "--set", "metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.interval=15s"
    )
    monitors = of_kind(manifests, "ServiceMonitor")
    assert len(monitors) == 2
    services = of_kind(manifests, "Service")
    for monitor in monitors:
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_dashboard_and_alerts_only_when_enabled(helm: str) -> None:
    manifests = render(helm)
    assert of_kind(manifests, "PrometheusRule") == []
    assert of_kind(manifests, "ConfigMap") == []


def test_dashboard_configmap_for_the_grafana_sidecar(helm: str) -> None:
    manifests = render(
        helm,
        "--set",
        "metrics.dashboard.enabled=true,metrics.dashboard.namespace=monitoring",
        "--set-string",
        "metrics.dashboard.labels.team=pools,metrics.dashboard.annotations.grafana_folder=BridgePool",
    )
    configmap = component(manifests, "ConfigMap", "dashboard")
    meta = configmap["metadata"]
    assert meta["namespace"] == "monitoring"  # where the sidecar looks
    assert meta["labels"]["grafana_dashboard"] == "1"  # the default stays with extra labels
    assert meta["labels"]["team"] == "pools"
    assert meta["annotations"] == {"grafana_folder": "BridgePool"}
    (name,) = configmap["data"]
    assert name.endswith(".json")  # the sidecar writes the key as the file name
    dashboard = CHART / "dashboards" / "bridgepool.json"
    assert configmap["data"][name] == dashboard.read_text().rstrip("\n")


def test_prometheus_rule_carries_the_rules_file(helm: str) -> None:
    manifests = render(
        helm,
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set-string",
        "metrics.prometheusRule.labels.release=kube-prometheus-stack",
    )
    rule = component(manifests, "PrometheusRule", "alerts")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # The groups promtool checks, unchanged (alert templates included: Helm must
    # not render their {{ $labels }}).
    rules_file = yaml.safe_load((CHART / "alerts" / "bridgepool.rules.yaml").read_text())
    assert rule["spec"] == rules_file
    assert "{{ $labels.pool }}" in str(rule["spec"])


# -- bad values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("--set", "router.replicas=-1"), r"router[./]replicas"),
        (("--set-string", "router.replicas=two"), r"router[./]replicas"),
        (("--set", "watchNamespaces=team-a"), r"watchNamespaces"),
        (("--set", "router.replica=3"), r"replica"),
        (("--set", "operator.image.pullPolicy=Sometimes"), r"operator[./]image[./]pullPolicy"),
        (("--set", "networkPolicy.enabled=true"), r"networkPolicy\.namespaces"),
        (("--set", "metrics.prometheusRule.enable=true"), r"enable"),
        (("--set", "metrics.dashboard.labels.grafana_dashboard=1"), r"grafana_dashboard"),
        (("--set", "auth.mode=basic"), r"auth[./]mode"),
        (("--set", "auth.denyCacheSeconds=-1"), r"auth[./]denyCacheSeconds"),
        (("--set-string", "auth.tokenCacheSeconds=2m"), r"auth[./]tokenCacheSeconds"),
        (("--set-json", 'auth.audiences=[""]'), r"auth[./]audiences"),
    ],
    ids=[
        "replicas-negative",
        "replicas-string",
        "namespaces-string",
        "typo",
        "enum",
        "netpol",
        "rule-typo",
        "label-number",
        "auth-mode",
        "auth-cache-negative",
        "auth-cache-string",
        "auth-audience-empty",
    ],
)
def test_bad_values_fail_naming_the_value(helm: str, values: tuple[str, ...], message: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), *values)
    assert result.returncode != 0, f"{values} rendered"
    assert re.search(message, result.stderr), result.stderr
