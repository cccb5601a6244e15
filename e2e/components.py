"""BridgePool's own components on a real cluster, for the e2e suite and the
operator benchmark: the CRD; the operator and the router installed by the
Helm chart (:class:`HelmRelease`) or run out of cluster as real processes
against the cluster's API server; BridgePool objects; callers that load
the router.

Out of cluster, the operator reads the workers' ``/v1/stats`` and the router
calls workers at their pod addresses, so both need a machine that reaches pod
addresses (the local cluster; ``Cluster.direct_http``). Workers answer only
callers that send their pool's key, which an out-of-cluster operator or
router derives from a release key directory of this machine
(:func:`write_release_keys`), as the chart's derive it from the release's
Secret.
"""

from __future__ import annotations

import atexit
import copy
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client, watch

from bridgepool import labels
from bridgepool.protocol import HEADER_SESSION_REBOUND, HEADER_WORKER
from e2e.support import REPO_ROOT, Cluster, run_tool, wait_for

CRD_FILE = REPO_ROOT / "crds" / "bridgepool.io_bridgepools.yaml"
CRD_NAME = f"{labels.PLURAL}.{labels.GROUP}"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install_crd(cluster: Cluster) -> None:
    """Apply the committed CRD and wait until the API serves BridgePools."""
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    with cluster.api_client() as api:
        ext = client.ApiextensionsV1Api(api)

        def established() -> bool:
            crd: Any = ext.read_custom_resource_definition(CRD_NAME)
            return any(
                c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
            )

        wait_for(f"CRD {CRD_NAME} established", established, timeout=30)


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


@dataclass
class Process:
    """A component started as a real process; its output goes to ``log``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready_url: str
    popen: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env,
            )  # fmt: skip

        def answers() -> bool:
            if self.popen is not None and self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}"
                )
            try:
                return httpx.get(self.ready_url, timeout=2, trust_env=False).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(f"{self.name} to answer {self.ready_url}", answers, timeout=timeout)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 30) -> int | None:
        """Send ``sig`` and wait for the exit; SIGKILL after ``timeout``. The exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def write_release_keys(directory: Path) -> Path:
    """A release key directory (a key and a scrape token), made as a user makes
    one off a cluster: ``bridgepool-keys new DIR --scrape-token``."""
    run_tool(str(BIN / "bridgepool-keys"), "new", str(directory), "--scrape-token", timeout=30)
    return directory


@functools.cache
def default_release_keys() -> Path:
    """This process's release key directory, made at the first call: the one
    an out-of-cluster operator gets when its caller names none."""
    directory = Path(tempfile.mkdtemp(prefix="bridgepool-release-keys-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return write_release_keys(directory)


def _env(cluster: Cluster, extra: Mapping[str, str]) -> dict[str, str]:
    # No proxy for cluster traffic; the kubeconfig names the cluster.
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return {**env, "KUBECONFIG": str(cluster.kubeconfig), **extra}


def operator_process(
    cluster: Cluster,
    namespaces: list[str],
    log: Path,
    *,
    interval_seconds: float = 2.0,
    env: Mapping[str, str] | None = None,
    kubeconfig: Path | None = None,
    keys_dir: Path | None = None,
) -> Process:
    """``bridgepool-operator`` serving ``namespaces``; ready when kopf's liveness answers.
    It uses the cluster's admin credentials unless ``kubeconfig`` names others.

    Its pools' keys come from the release key directory ``keys_dir`` (or
    ``env``'s BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR; default:
    :func:`default_release_keys`); it writes each pool's Secret of keys as in
    cluster. Unless ``env`` configures one, it keeps no NetworkPolicy: the
    policy admits the release's operator by its pod's labels, and a process on
    this machine has no pod. (Nor does it need one: traffic from the node to
    its pods passes the policies the local cluster enforces, as the kubelet's
    probes do; test_worker_access.py shows it.)"""
    liveness, metrics = free_port(), free_port()
    argv = [str(BIN / "bridgepool-operator"), "--bind", "127.0.0.1"]
    argv += ["--liveness-port", str(liveness), "--metrics-port", str(metrics)]
    for ns in namespaces:
        argv += ["--namespace", ns]
    given = dict(env or {})
    extra = {"BRIDGEPOOL_OPERATOR_INTERVAL_SECONDS": str(interval_seconds)}
    if "BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR" not in given:
        extra["BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR"] = str(keys_dir or default_release_keys())
    policy = ("BRIDGEPOOL_OPERATOR_NETWORK_POLICY", "BRIDGEPOOL_OPERATOR_RELEASE_NAMESPACE")
    if not any(name in given for name in policy):
        extra["BRIDGEPOOL_OPERATOR_NETWORK_POLICY"] = "false"
    extra.update(given)
    if kubeconfig is not None:
        extra["KUBECONFIG"] = str(kubeconfig)
    return Process(
        name="operator",
        argv=argv,
        env=_env(cluster, extra),
        log=log,
        ready_url=f"http://127.0.0.1:{liveness}/healthz",
    )


def operator_metrics_url(proc: Process) -> str:
    port = proc.argv[proc.argv.index("--metrics-port") + 1]
    return f"http://127.0.0.1:{port}/metrics"


# --------------------------------------------------------------------------
# Callers
# --------------------------------------------------------------------------


@dataclass
class CallLog:
    """Calls made through the router by a background caller."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    workers: set[str] = field(default_factory=set)
    slowest: float = 0.0  # seconds, the longest call answered
    # What each call answered, in order: (its ``result``, the worker that answered).
    results: list[tuple[Any, str]] = field(default_factory=list)


@contextmanager
def calling(
    url: str, body: dict[str, Any], period: float, headers: Mapping[str, str] | None = None
) -> Iterator[CallLog]:
    """POST ``body`` to ``url`` every ``period`` seconds until the block ends,
    each call with ``headers`` (the caller's ``Authorization``)."""
    log = CallLog()
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(trust_env=False, timeout=15, headers=dict(headers or {})) as http:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    sent = time.monotonic()
                    resp = http.post(url, json={**body, "id": str(n)})
                    log.slowest = max(log.slowest, time.monotonic() - sent)
                    if HEADER_SESSION_REBOUND in resp.headers:
                        log.failures.append(f"session moved, state lost: {resp.headers}")
                    elif resp.status_code == 200 and resp.json()["success"]:
                        log.ok += 1
                        log.workers.add(resp.headers[HEADER_WORKER])
                        log.results.append((resp.json()["result"], resp.headers[HEADER_WORKER]))
                    else:
                        log.failures.append(f"{resp.status_code} {resp.text[:300]}")
                except httpx.HTTPError as exc:
                    log.failures.append(repr(exc))
                stop.wait(period)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield log
    finally:
        stop.set()
        thread.join(30)


class Recorder:
    """What a test saw, case by case, for the e2e summary (under ``section:
    title``) and the test's output; the same case seen again in a row counts
    once, with a multiplier."""

    def __init__(self, section: str, title: str, timings: dict[str, str]) -> None:
        self.key = f"{section}: {title}"
        self.title = title
        self.timings = timings
        self.cases: list[list[Any]] = []  # [what, times in a row]

    def record(self, case: str, status: object, detail: object = "") -> None:
        print(f"{self.title}: {case} -> {status} {str(detail)[:200]}")
        what = f"{case} {status}"
        if self.cases and self.cases[-1][0] == what:
            self.cases[-1][1] += 1
        else:
            self.cases.append([what, 1])
        self.timings[self.key] = ", ".join(
            what if n == 1 else f"{what} (x{n})" for what, n in self.cases
        )


# --------------------------------------------------------------------------
# The example handlers (``incr``: a session's counter) in a pool's workers
# --------------------------------------------------------------------------

EXAMPLE_HANDLERS = REPO_ROOT / "examples" / "worker_handlers.py"
HANDLERS_CONFIGMAP = "handlers"
HANDLERS_DIR = "/handlers"


def create_handlers_configmap(cluster: Cluster, namespace: str) -> None:
    """The ConfigMap ``handlers`` of ``examples/worker_handlers.py``, which
    :func:`with_handlers` mounts into a pool's workers."""
    cluster.kubectl(
        "-n", namespace, "create", "configmap", HANDLERS_CONFIGMAP,
        f"--from-file={EXAMPLE_HANDLERS}",
    )  # fmt: skip


def with_handlers(pool: dict[str, Any]) -> dict[str, Any]:
    """``pool`` (a BridgePool manifest of one container) with the example
    handlers mounted from the ConfigMap ``handlers`` and loaded by the worker
    (BRIDGEPOOL_WORKER_HANDLERS)."""
    pool = copy.deepcopy(pool)
    pod = pool["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    handlers = f"{HANDLERS_DIR}/{EXAMPLE_HANDLERS.name}"
    worker["env"] = [
        e for e in worker.get("env", []) if e["name"] != "BRIDGEPOOL_WORKER_HANDLERS"
    ] + [{"name": "BRIDGEPOOL_WORKER_HANDLERS", "value": handlers}]
    worker["volumeMounts"] = [
        *worker.get("volumeMounts", []),
        {"name": "handlers", "mountPath": HANDLERS_DIR, "readOnly": True},
    ]
    pod["volumes"] = [
        *pod.get("volumes", []),
        {"name": "handlers", "configMap": {"name": HANDLERS_CONFIGMAP}},
    ]
    return pool


# --------------------------------------------------------------------------
# The Helm chart
# --------------------------------------------------------------------------

CHART_DIR = REPO_ROOT / "helm" / "bridgepool"


def helm_binary() -> str | None:
    """``BRIDGEPOOL_HELM`` (e2e/run-local sets it to the cached build), else
    the ``helm`` on PATH."""
    return os.environ.get("BRIDGEPOOL_HELM") or shutil.which("helm")


@dataclass
class HelmRelease:
    """One release of the chart, driven with the real ``helm`` binary."""

    cluster: Cluster
    helm: str
    name: str
    namespace: str

    def run(self, *args: str, timeout: float = 300) -> str:
        return run_tool(
            self.helm, "--kubeconfig", str(self.cluster.kubeconfig), *args, timeout=timeout
        )

    def _apply(self, verb: str, values: Mapping[str, Any], values_file: Path) -> float:
        """``helm install|upgrade --wait``; the seconds until every Deployment is ready."""
        values_file.write_text(yaml.safe_dump(dict(values)))
        started = time.monotonic()
        self.run(
            verb, self.name, str(CHART_DIR), "--namespace", self.namespace,
            "--create-namespace", "--values", str(values_file), "--wait", "--timeout", "240s",
        )  # fmt: skip
        return time.monotonic() - started

    def install(self, values: Mapping[str, Any], values_file: Path) -> float:
        return self._apply("install", values, values_file)

    def upgrade(self, values: Mapping[str, Any], values_file: Path) -> float:
        return self._apply("upgrade", values, values_file)

    def uninstall(self) -> None:
        self.run("uninstall", self.name, "--namespace", self.namespace, "--wait")

    @property
    def fullname(self) -> str:
        """The chart's object name prefix (``bridgepool.fullname``)."""
        return self.name if "bridgepool" in self.name else f"{self.name}-bridgepool"

    def release_key(self) -> str:
        """The release key the chart made (``<fullname>-worker-keys``), which
        every pool's key comes from."""
        return self.cluster.secret_value(self.namespace, f"{self.fullname}-worker-keys", "key")

    def scrape_token(self) -> str:
        """The token that opens the workers' ``GET /metrics`` (``<fullname>-scrape-token``)."""
        return self.cluster.secret_value(self.namespace, f"{self.fullname}-scrape-token", "token")

    @property
    def instance_selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name}"

    def component_selector(self, component: str) -> str:
        return f"{self.instance_selector},app.kubernetes.io/component={component}"

    def router_url(self) -> str:
        """The router Service's ClusterIP address."""
        with self.cluster.api_client() as api:
            service: Any = client.CoreV1Api(api).read_namespaced_service(
                f"{self.fullname}-router", self.namespace
            )
        port = service.spec.ports[0].port
        return f"http://{service.spec.cluster_ip}:{port}"

    def pods(self, component: str) -> list[Any]:
        """The component's pods that are not being deleted."""
        with self.cluster.api_client() as api:
            found: list[Any] = (
                client.CoreV1Api(api)
                .list_namespaced_pod(
                    self.namespace, label_selector=self.component_selector(component)
                )
                .items
            )
        return [p for p in found if p.metadata.deletion_timestamp is None]

    def logs(self, component: str) -> str:
        return self.cluster.kubectl(
            "-n", self.namespace, "logs", "-l", self.component_selector(component),
            "--tail", "-1", "--all-containers", "--prefix",
        )  # fmt: skip


def pool_api(router_url: str, namespace: str, pool: str) -> str:
    """A pool's address at the router: its namespaced route, under which are
    ``/execute``, ``/sessions/{id}/execute``, ``/sessions/{id}`` (DELETE) and,
    at the address itself, the pool's detail (GET)."""
    return f"{router_url.rstrip('/')}/v1/namespaces/{namespace}/pools/{pool}"


# The namespace of the suite's release of the chart (the ``installed`` fixture).
RELEASE_NAMESPACE = "bridgepool-system"


def chart_values(watch: list[str], **extra: Any) -> dict[str, Any]:
    """Values for the images this suite built (never pulled), over ``extra``."""
    images = {"tag": "dev", "pullPolicy": "Never"}
    base: dict[str, Any] = {
        "watchNamespaces": watch,
        "operator": {"image": images},
        "router": {"image": images},
    }
    return merge(base, extra)


# --------------------------------------------------------------------------
# BridgePool objects
# --------------------------------------------------------------------------

# Short intervals so a test sees the pool react in seconds; the defaults are
# the seed's (30 s health interval, 300 s drain timeout).
FAST_SPEC: dict[str, Any] = {
    "health": {"intervalSeconds": 5, "readinessIntervalSeconds": 1, "maxRestarts": 3},
    "rollout": {
        "maxSurge": 1,
        "maxUnavailable": 0,
        "drainTimeoutSeconds": 120,
        "terminationGracePeriodSeconds": 10,
    },
    "routing": {
        "health": {"intervalSeconds": 0.5, "timeoutSeconds": 0.5, "fall": 2, "rise": 1},
        "retries": {"baseBackoffSeconds": 0.01, "maxBackoffSeconds": 0.1},
        "callTimeoutSeconds": 10,
    },
}


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of two JSON-like dicts; ``extra`` wins."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def pool_manifest(
    name: str,
    image: str,
    *,
    spec: Mapping[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A BridgePool of ``image`` with :data:`FAST_SPEC`, ``spec`` merged over it."""
    container: dict[str, Any] = {"name": "worker", "image": image, "imagePullPolicy": "Never"}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    body = merge(FAST_SPEC, {"template": {"spec": {"containers": [container]}}})
    return {
        "apiVersion": labels.API_VERSION,
        "kind": labels.KIND,
        "metadata": {"name": name},
        "spec": merge(body, spec or {}),
    }


@dataclass
class Pools:
    """BridgePool objects of one namespace, through the API server."""

    api: client.ApiClient
    namespace: str
    # The generated clients' annotations are loose (models vs dicts); keep them dynamic.
    custom: Any = field(init=False)
    core: Any = field(init=False)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def resource_args(self) -> tuple[str, str, str, str]:
        return labels.GROUP, labels.VERSION, self.namespace, labels.PLURAL

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        made: dict[str, Any] = self.custom.create_namespaced_custom_object(
            *self.resource_args(), dict(manifest)
        )
        return made

    def get(self, name: str) -> dict[str, Any]:
        pool: dict[str, Any] = self.custom.get_namespaced_custom_object(*self.resource_args(), name)
        return pool

    def patch_spec(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            *self.resource_args(), name, {"spec": dict(spec)}
        )
        return patched

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(*self.resource_args(), name)

    def delete_all(self, *, timeout: float = 60) -> None:
        """Delete every pool and wait until they are gone (an operator must run
        to lift kopf's finalizer)."""
        for name in self.names():
            self.delete(name)
        wait_for(f"pools of {self.namespace} deleted", lambda: not self.names(), timeout=timeout)

    def release(self) -> None:
        """Lift kopf's finalizer from the pools still here: with no operator to
        lift it, they would keep their namespace from being deleted."""
        for name in self.names():
            try:
                self.custom.patch_namespaced_custom_object(
                    *self.resource_args(), name, {"metadata": {"finalizers": None}}
                )
            except client.ApiException as exc:
                if exc.status != 404:
                    raise

    def names(self) -> list[str]:
        found: dict[str, Any] = self.custom.list_namespaced_custom_object(*self.resource_args())
        return [p["metadata"]["name"] for p in found["items"]]

    def pods(self, pool: str) -> list[Any]:
        """The pool's worker pods, not being deleted, oldest first."""
        found: list[Any] = self.core.list_namespaced_pod(
            self.namespace, label_selector=labels.pool_selector(pool)
        ).items
        live = [p for p in found if p.metadata.deletion_timestamp is None]
        return sorted(live, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))

    def wait(
        self, name: str, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        """Poll the pool until ``check(pool)`` holds; the pool as it was then."""
        seen: dict[str, Any] = {}

        def holds() -> bool:
            nonlocal seen
            seen = self.get(name)
            return check(seen)

        try:
            wait_for(f"pool {name}: {what}", holds, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast status: {seen.get('status')}") from None
        return seen


def condition(pool: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (pool.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def has_condition(
    pool: Mapping[str, Any], type_: str, status: str, reason: str | None = None
) -> bool:
    cond = condition(pool, type_)
    return (
        cond is not None
        and cond["status"] == status
        and (reason is None or cond["reason"] == reason)
    )


def settled(pool: Mapping[str, Any], replicas: int, revision: str | None = None) -> bool:
    """Observed the latest spec, ``replicas`` workers all ready, nothing rolling."""
    status = pool.get("status") or {}
    return (
        status.get("observedGeneration") == pool["metadata"]["generation"]
        and status.get("replicas") == replicas
        and status.get("readyReplicas") == replicas
        and status.get("updatedReplicas") == replicas
        and (revision is None or status.get("updateRevision") == revision)
        and has_condition(pool, "Ready", "True")
        and has_condition(pool, "Progressing", "False", "Complete")
    )


# --------------------------------------------------------------------------
# Watching pods: every pod a namespace ever had, for "no extra pods" checks
# --------------------------------------------------------------------------


class Watcher:
    """Streams a list call's watch events, as plain dicts stamped with
    ``time.monotonic()`` on arrival, to ``on_event`` from a daemon thread.

    It resumes from the last resource version when the server ends the watch,
    and lists afresh after an error (e.g. 410, version too old); ``relists``
    counts those, since events in such a gap are stamped late.
    """

    def __init__(
        self, call: Callable[..., Any], on_event: Callable[[float, str, dict[str, Any]], None]
    ) -> None:
        self._call = call
        self._on_event = on_event
        self._stopped = threading.Event()
        self._watch: watch.Watch | None = None
        self.relists = 0

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]

    def _run(self) -> None:
        version: str | None = None
        while not self._stopped.is_set():
            self._watch = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    self._call, resource_version=version, timeout_seconds=30, deserialize=False
                ):
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    self._on_event(time.monotonic(), event["type"], obj)
            except Exception:  # the watch broke or expired: list afresh
                if self._stopped.is_set():
                    return
                version = None
                self.relists += 1
                time.sleep(0.5)


class PodLedger:
    """Every pod seen in a namespace while the ledger runs: name -> labels,
    and the drain reason of each pod the operator drained."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._created: dict[str, dict[str, str]] = {}
        self._drained: dict[str, str] = {}
        self._lock = threading.Lock()
        core = client.CoreV1Api(api)
        self.watcher = Watcher(
            functools.partial(core.list_namespaced_pod, namespace), self._on_event
        )

    def _on_event(self, now: float, kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        reason = (meta.get("annotations") or {}).get(labels.ANNOTATION_DRAIN_REASON)
        with self._lock:
            self._created.setdefault(meta["name"], dict(meta.get("labels") or {}))
            if reason is not None:
                self._drained.setdefault(meta["name"], reason)

    @property
    def drained(self) -> dict[str, str]:
        """Pod name -> why the operator drained it."""
        with self._lock:
            return dict(self._drained)

    @property
    def created(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return dict(self._created)

    def names_with(self, **want: str) -> set[str]:
        return {n for n, lb in self.created.items() if all(lb.get(k) == v for k, v in want.items())}


class PoolHistory:
    """Every status one pool had while the history runs, in order: what a
    user watching ``kubectl get bp -w`` would have seen."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self._statuses: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        custom = client.CustomObjectsApi(api)
        list_pool = functools.partial(
            custom.list_namespaced_custom_object,
            labels.GROUP,
            labels.VERSION,
            namespace,
            labels.PLURAL,
            field_selector=f"metadata.name={name}",
        )
        self.watcher = Watcher(list_pool, self._on_event)

    def _on_event(self, now: float, kind: str, pool: dict[str, Any]) -> None:
        with self._lock:
            self._statuses.append((now, dict(pool.get("status") or {})))

    @property
    def statuses(self) -> list[dict[str, Any]]:
        with self._lock:
            return [status for _, status in self._statuses]

    @property
    def timed(self) -> list[tuple[float, dict[str, Any]]]:
        """The statuses with when each arrived (``time.monotonic()``)."""
        with self._lock:
            return list(self._statuses)

    def conditions(self, type_: str) -> list[tuple[str, str]]:
        """The (status, reason) pairs the condition ``type_`` went through."""
        seen: list[tuple[str, str]] = []
        for status in self.statuses:
            for cond in status.get("conditions") or []:
                pair = (cond["status"], cond["reason"])
                if cond["type"] == type_ and (not seen or seen[-1] != pair):
                    seen.append(pair)
        return seen


# --------------------------------------------------------------------------
# The suite's release of the chart
# --------------------------------------------------------------------------


@dataclass
class Installed:
    """The suite's release of the chart (the ``installed`` fixture) and the
    namespaces whose pools it serves: the chart tests' own (``pools``), two
    teams' (``tenants``, for test_tenancy.py), and one for test_worker_access.py
    (``access``)."""

    release: HelmRelease
    pools: Pools
    install_seconds: float
    tenants: tuple[str, str]
    access: str = ""

    @property
    def namespace(self) -> str:
        return self.pools.namespace

    @property
    def cluster(self) -> Cluster:
        return self.release.cluster

    def api(self, pool: str, namespace: str | None = None) -> str:
        """The router's address of a pool (its namespaced route), by default
        of a pool in the chart tests' own namespace."""
        return pool_api(self.release.router_url(), namespace or self.namespace, pool)

    def http(self, timeout: float = 15) -> httpx.Client:
        """An HTTP client for the router that calls as the suite's own user
        (:meth:`Cluster.auth_headers`); never through a proxy."""
        return httpx.Client(trust_env=False, timeout=timeout, headers=self.cluster.auth_headers())

    def router_sees(self, api: str, workers: set[str]) -> bool:
        """The router reports exactly ``workers`` of the pool at ``api`` as ready."""
        try:
            with self.http(timeout=5) as http:
                resp = http.get(api)
        except httpx.TransportError:
            return False
        seen = resp.json()["workers"] if resp.status_code == 200 else []
        return {w["worker"] for w in seen if w["ready"]} == workers
