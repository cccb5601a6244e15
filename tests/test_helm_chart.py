"""The Helm chart (helm/bridgepool): it lints clean, and what it renders is hardened,
least-privileged and wired to the real components (their flags, variables, labels).

Rendering needs helm: ``BRIDGEPOOL_HELM`` or ``helm`` on PATH
(``e2e/cluster/build-tools helm`` builds the pinned one). Without it these tests
skip, except in CI, where they fail.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridgepool import labels
from bridgepool.credentials import KEY_FILE, PREVIOUS_FILE, SCRAPE_FILE
from bridgepool.labels import GROUP, PLURAL
from bridgepool.protocol import WORKER_PORT_NAME
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
        "metrics.serviceMonitor.enabled=true,metrics.dashboard.enabled=true,"
        "metrics.prometheusRule.enabled=true",
        "--set-json",
        'networkPolicy.scrapeFrom=[{"namespaceSelector": {"matchLabels": '
        '{"kubernetes.io/metadata.name": "monitoring"}}}]',
    ),
}
# Where the operator and the router read the release key directory.
RELEASE_KEYS = "/var/run/bridgepool/release-keys"


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


def pod_of(manifests: list[Manifest], name: str) -> Manifest:
    """The pod spec of a component's Deployment."""
    pod: Manifest = component(manifests, "Deployment", name)["spec"]["template"]["spec"]
    return pod


def env_of(container: Manifest) -> dict[str, str]:
    """A container's environment as the process sees it (the downward API's
    namespace is the release's)."""
    env = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}, var
            env[var["name"]] = RELEASE_NAMESPACE
    return env


def the_operator(manifests: list[Manifest]) -> Any:
    """The operator's settings, read from its rendered container as it reads them."""
    container = pod_of(manifests, "operator")["containers"][0]
    return operator_config(container["args"], env_of(container))


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
    operator_args = the_operator(manifests)
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
    config = the_operator(manifests)
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
    # Each pool's keys' Secret and NetworkPolicy: written, read back, replaced;
    # the policy also deleted when a pool turns it off. The Secret goes with its
    # pool (owner reference), and no Secret is ever listed or watched.
    assert {g for g in operator if g[1] in ("secrets", "networkpolicies")} == {
        ("", "secrets", "get"),
        ("", "secrets", "create"),
        ("", "secrets", "update"),
        ("networking.k8s.io", "networkpolicies", "get"),
        ("networking.k8s.io", "networkpolicies", "create"),
        ("networking.k8s.io", "networkpolicies", "update"),
        ("networking.k8s.io", "networkpolicies", "delete"),
    }
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


def test_the_chart_renders_no_network_policy_of_its_own(manifests: list[Manifest]) -> None:
    # The operator keeps one beside each pool, in the pool's namespace.
    assert of_kind(manifests, "NetworkPolicy") == []


def test_the_operator_keeps_network_policies_that_let_in_this_release(helm: str) -> None:
    """The operator's settings name the release's own router and operator pods
    (their pod labels, in the release's namespace) and the scrape source."""
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    manifests = render(helm, "--set-json", f"networkPolicy.scrapeFrom={json.dumps([monitoring])}")
    config = the_operator(manifests)
    assert config.network_policy is True  # on by default
    assert config.release_namespace == RELEASE_NAMESPACE
    for name, selector in (
        ("router", config.router_selector),
        ("operator", config.operator_selector),
    ):
        deployment = component(manifests, "Deployment", name)
        assert selector == deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert config.network_policy_scrape_from == (monitoring,)


def test_network_policies_can_be_turned_off(helm: str) -> None:
    assert (
        the_operator(render(helm, "--set", "networkPolicy.enabled=false")).network_policy is False
    )


# -- worker keys -----------------------------------------------------------------------


def secret_data(secret: Manifest) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_the_release_key_and_the_scrape_token_are_made_apart(
    manifests: list[Manifest],
) -> None:
    keys = component(manifests, "Secret", "worker-keys")
    token = component(manifests, "Secret", "scrape-token")
    assert keys["metadata"]["name"] == f"{RELEASE}-bridgepool-worker-keys"
    assert token["metadata"]["name"] == f"{RELEASE}-bridgepool-scrape-token"
    for secret in (keys, token):
        assert secret["metadata"]["namespace"] == RELEASE_NAMESPACE
        assert secret["type"] == "Opaque"
    (key,) = secret_data(keys).values()
    assert set(secret_data(keys)) == {KEY_FILE}
    assert set(secret_data(token)) == {"token"}
    for value in (key, secret_data(token)["token"]):
        assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert key != secret_data(token)["token"]


def key_sources(pod: Manifest) -> list[Manifest]:
    (volume,) = [v for v in pod["volumes"] if v["name"] == "release-keys"]
    sources: list[Manifest] = volume["projected"]["sources"]
    return sources


@pytest.mark.parametrize("name", ["operator", "router"])
def test_the_operator_and_the_router_read_the_release_keys(
    manifests: list[Manifest], name: str
) -> None:
    """Both mount the release key and the scrape token as one key directory,
    read-only, and are told where it is."""
    pod = pod_of(manifests, name)
    (container,) = pod["containers"]
    assert {"name": "release-keys", "mountPath": RELEASE_KEYS, "readOnly": True} in container[
        "volumeMounts"
    ]
    files = {
        (s["secret"]["name"], item["key"], item["path"], s["secret"].get("optional", False))
        for s in key_sources(pod)
        for item in s["secret"]["items"]
    }
    keys, token = f"{RELEASE}-bridgepool-worker-keys", f"{RELEASE}-bridgepool-scrape-token"
    # The key before a rotation is there only during one: its source is
    # optional, so the volume mounts without it (a missing item of a source
    # that is not optional would keep the pod from starting).
    assert files == {
        (keys, "key", KEY_FILE, False),
        (keys, "previous", PREVIOUS_FILE, True),
        (token, "token", SCRAPE_FILE, False),
    }
    rendered = {s["metadata"]["name"] for s in of_kind(manifests, "Secret")}
    assert {keys, token} <= rendered
    env = env_of(container)
    if name == "operator":
        assert the_operator(manifests).worker_keys_dir == Path(RELEASE_KEYS)
    else:
        assert router_options(container["args"], env).worker_keys_dir == Path(RELEASE_KEYS)


def test_a_release_key_of_ones_own(helm: str) -> None:
    manifests = render(helm, "--set", "workerKeys.existingSecret=our-keys")
    assert {
        s["metadata"]["labels"]["app.kubernetes.io/component"] for s in of_kind(manifests, "Secret")
    } == {"scrape-token"}
    for name in ("operator", "router"):
        sources = key_sources(pod_of(manifests, name))
        assert [s["secret"]["name"] for s in sources] == [
            "our-keys",
            "our-keys",
            f"{RELEASE}-bridgepool-scrape-token",
        ]


def test_service_monitors_only_when_enabled(helm: str) -> None:
    assert of_kind(render(helm), "ServiceMonitor") == []
    assert of_kind(render(helm), "PodMonitor") == []
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


@pytest.mark.parametrize(
    ("values", "namespaces"),
    [((), {"any": True}), (("--set", "watchNamespaces={team-a}"), {"matchNames": ["team-a"]})],
    ids=["cluster-wide", "namespaced"],
)
def test_the_workers_are_scraped_with_the_scrape_token(
    helm: str, values: tuple[str, ...], namespaces: Manifest
) -> None:
    """A PodMonitor for the worker pods of every pool served, sending the scrape
    token (never the release key); the pod's namespace and pool label become
    the series' namespace and pool, as the dashboard reads worker series."""
    manifests = render(helm, "--set", "metrics.serviceMonitor.enabled=true", *values)
    monitor = component(manifests, "PodMonitor", "workers")
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == namespaces
    assert spec["selector"] == {
        "matchLabels": {
            labels.LABEL_COMPONENT: labels.COMPONENT_WORKER,
            labels.LABEL_MANAGED_BY: labels.MANAGED_BY,
        }
    }
    (endpoint,) = spec["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == (WORKER_PORT_NAME, "/metrics")
    token = component(manifests, "Secret", "scrape-token")
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": token["metadata"]["name"], "key": "token"},
    }
    pool_label = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", labels.LABEL_POOL)
    assert endpoint["relabelings"] == [
        {"sourceLabels": [pool_label], "targetLabel": "pool"},
        {"sourceLabels": ["__meta_kubernetes_namespace"], "targetLabel": "namespace"},
    ]


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
        (("--set", "networkPolicy.namespaces={team-a}"), r"namespaces"),
        (("--set-json", 'networkPolicy.scrapeFrom=[{"ports": []}]'), r"scrapeFrom"),
        (("--set-json", "networkPolicy.scrapeFrom=[{}]"), r"scrapeFrom"),
        (
            (
                "--set-json",
                'networkPolicy.scrapeFrom=[{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]',
            ),
            r"scrapeFrom",
        ),
        (("--set", "workerKeys.existingSecret=Our_Keys"), r"workerKeys[./]existingSecret"),
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
        "netpol-namespaces-gone",
        "scrape-from-not-a-peer",
        "scrape-from-empty-peer",
        "scrape-from-ipblock-and-selector",
        "existing-secret-name",
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
