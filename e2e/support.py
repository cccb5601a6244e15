"""Helpers for the e2e suite: finding a cluster, loading images into it, waiting
for pods, calling HTTP endpoints inside it, and describing a namespace when a
test fails.

The suite runs against one of three clusters (see e2e/README.md):

- an existing cluster named by ``BRIDGEPOOL_E2E_KUBECONFIG``;
- a kind cluster, when a Docker engine answers;
- the local cluster of ``e2e/cluster/local-up`` on a machine that can run it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config

from bridgepool import labels
from bridgepool.credentials import bearer

# Re-exported: the e2e modules wait on pods with it.
from bridgepool.workers import pod_ready as pod_ready

REPO_ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SCRIPTS = REPO_ROOT / "e2e" / "cluster"
# Exit code of the cluster scripts meaning "this machine cannot run the local cluster".
EXIT_CANNOT_RUN = 3
LOCAL_STATE_DIR = Path(os.environ.get("BRIDGEPOOL_CLUSTER_DIR", "/var/lib/bridgepool-cluster"))
LOCAL_KUBECONFIG = LOCAL_STATE_DIR / "kubeconfig"
# local-up links the kubectl it built with the cluster (same version) here.
LOCAL_KUBECTL = LOCAL_STATE_DIR / "bin" / "kubectl"


def _read_images() -> dict[str, Path]:
    """The images the suite uses and their Dockerfiles, from e2e/images.txt
    (which e2e/run-local reads too). The build context is the repository root."""
    images: dict[str, Path] = {}
    for line in (REPO_ROOT / "e2e" / "images.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            image, dockerfile = line.split()
            images[image] = REPO_ROOT / dockerfile
    return images


IMAGES = _read_images()
WORKER_IMAGE = "localhost/bridgepool-worker:dev"


class ClusterUnavailable(Exception):
    """No cluster can be had on this machine; the message says why."""


@dataclass
class Cluster:
    """A cluster the suite runs against.

    ``flavour`` is "kubeconfig", "kind" or "local". ``direct_http`` says whether
    this machine reaches pod and Service addresses itself (true for the local
    cluster); otherwise HTTP calls are made from a client pod inside the cluster.
    """

    flavour: str
    kubeconfig: Path
    direct_http: bool
    load_image: Callable[[str, Path], None]
    stop: Callable[[], None] = field(default=lambda: None)
    # BRIDGEPOOL_E2E_KUBECTL, else the local cluster's own, else the one on PATH.
    kubectl_path: str = field(default_factory=lambda: _kubectl_path())

    def api_client(self) -> client.ApiClient:
        return _api_client(self.kubeconfig)

    def kubectl(self, *args: str, timeout: float = 60) -> str:
        return run_tool(
            self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args, timeout=timeout
        )

    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header of the kubeconfig's own user, for the
        suite's calls to the router from this machine. The router checks it
        with a TokenReview and RBAC like any caller's; the local cluster's user
        is a static token in ``system:masters``, which RBAC allows everything.
        This is the one place the suite's calls get their identity."""
        with self.api_client() as api:
            header = api.configuration.api_key.get("BearerToken")
        if not header:
            raise ClusterUnavailable(
                f"the user of {self.kubeconfig} has no bearer token (client certificates?);"
                " the router's authentication needs one"
            )
        return {"Authorization": str(header)}

    def username(self) -> str:
        """Who the API server says the kubeconfig's user is (``kubectl auth
        whoami``): the owner the router keys the suite's sessions by."""
        return self.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")

    def token(self, namespace: str, service_account: str) -> str:
        """A new token of a ServiceAccount (``kubectl create token``), as a
        pod of that ServiceAccount gets one."""
        return self.kubectl("-n", namespace, "create", "token", service_account).strip()

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One value of a Secret, decoded."""
        with self.api_client() as api:
            secret: Any = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
        return base64.b64decode(secret.data[key]).decode().strip()

    def worker_key(self, namespace: str, pool: str) -> str:
        """The key a pool's workers ask of every caller past their probes, read
        from the Secret the operator writes beside the pool (``<pool>-bridgepool-keys``,
        which the workers mount): what the router and the operator send."""
        return self.secret_value(namespace, labels.keys_secret_name(pool), "key")

    def worker_headers(self, namespace: str, pool: str) -> dict[str, str]:
        """The ``Authorization`` header of a call to a worker of ``pool``: the
        suite calls workers directly (sessions they hold, faults) as their
        router would, with the pool's key."""
        return {"Authorization": bearer(self.worker_key(namespace, pool))}

    def worker_auth(self, pod: Any) -> dict[str, str]:
        """:meth:`worker_headers` of the pool a worker pod belongs to (its
        ``bridgepool.io/pool`` label)."""
        return self.worker_headers(pod.metadata.namespace, pod.metadata.labels[labels.LABEL_POOL])

    def policy_enforced_on(self, pod: Any) -> bool:
        """Whether the local cluster's kube-router has put ``pod`` behind the
        NetworkPolicies that select it (its firewall chain, which rejects what
        no policy admits, is in the node's iptables); a pod is created a moment
        before kube-router sees it. Elsewhere there is no telling: True."""
        iptables_save = shutil.which("iptables-save")
        if self.flavour != "local" or iptables_save is None:
            return True
        rules = run_tool(iptables_save, timeout=30)
        name, namespace = pod.metadata.name, pod.metadata.namespace
        return f"REJECT traffic destined for POD name:{name} namespace: {namespace}" in rules

    def check_kubectl_skew(self) -> None:
        """Fail clearly when kubectl is more than one minor version away from
        the API server (kubectl's supported skew)."""
        versions = json.loads(self.kubectl("version", "-o", "json"))
        client_minor = int(versions["clientVersion"]["minor"].rstrip("+"))
        server_minor = int(versions["serverVersion"]["minor"].rstrip("+"))
        if abs(client_minor - server_minor) > 1:
            raise ClusterUnavailable(
                f"{self.kubectl_path} is 1.{client_minor} but the cluster is 1.{server_minor};"
                " kubectl supports one minor version of skew (set BRIDGEPOOL_E2E_KUBECTL)"
            )


def run_tool(binary: str, *args: str, timeout: float) -> str:
    """Run a command-line tool (kubectl, helm): its output, or a RuntimeError
    that carries the command and its error output."""
    done = subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        command = " ".join([Path(binary).name, *args])
        raise RuntimeError(f"{command} failed: {done.stderr.strip()}")
    return done.stdout


# --------------------------------------------------------------------------
# Picking a cluster
# --------------------------------------------------------------------------


def _kubectl_path() -> str:
    wanted = os.environ.get("BRIDGEPOOL_E2E_KUBECTL")
    if wanted:
        return wanted
    if LOCAL_KUBECTL.exists():
        return str(LOCAL_KUBECTL)
    found = shutil.which("kubectl")
    if found is None:
        raise ClusterUnavailable("kubectl is not on PATH (or set BRIDGEPOOL_E2E_KUBECTL)")
    return found


def _api_client(kubeconfig: Path) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    return api


def _direct_http(*, default: bool) -> bool:
    """BRIDGEPOOL_E2E_DIRECT_HTTP=1/0 says whether this machine reaches pod and
    Service addresses itself; the default depends on the kind of cluster."""
    wanted = os.environ.get("BRIDGEPOOL_E2E_DIRECT_HTTP")
    return default if wanted is None else wanted == "1"


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return (
            subprocess.run(
                [docker, "info"], capture_output=True, timeout=20, check=False
            ).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


def _api_answers(kubeconfig: Path) -> bool:
    try:
        with _api_client(kubeconfig) as api:
            client.VersionApi(api).get_code(_request_timeout=5)
        return True
    except Exception:
        return False


def _existing_cluster(kubeconfig: Path) -> Cluster:
    if not kubeconfig.is_file():
        raise ClusterUnavailable(f"BRIDGEPOOL_E2E_KUBECONFIG={kubeconfig} is not a file")
    local = kubeconfig.resolve() == LOCAL_KUBECONFIG.resolve()

    def images_must_exist(image: str, dockerfile: Path) -> None:
        # An existing cluster gets its images from its own registry or loader.
        del image, dockerfile

    return Cluster(
        flavour="local" if local else "kubeconfig",
        kubeconfig=kubeconfig,
        direct_http=_direct_http(default=local),
        load_image=build_local_image if local else images_must_exist,
    )


def _kind_cluster() -> Cluster:
    try:
        from pytest_kind import KindCluster  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ClusterUnavailable(
            "Docker answers but pytest-kind-ng is not installed (pip install pytest-kind-ng)"
        ) from exc
    kind = KindCluster(os.environ.get("BRIDGEPOOL_E2E_KIND_CLUSTER", "bridgepool-e2e"))
    kind.create()

    def load(image: str, dockerfile: Path) -> None:
        subprocess.run(
            ["docker", "build", "-f", str(dockerfile), "-t", image, str(REPO_ROOT)],
            check=True,
        )
        kind.load_docker_image(image)

    keep = os.environ.get("BRIDGEPOOL_E2E_KEEP_CLUSTER") == "1"
    return Cluster(
        flavour="kind",
        kubeconfig=Path(kind.kubeconfig_path),
        direct_http=_direct_http(default=False),
        load_image=load,
        stop=(lambda: None) if keep else kind.delete,
    )


def _run_cluster_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER_SCRIPTS / name), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )


def _local_cluster() -> Cluster:
    started_here = False
    if not _api_answers(LOCAL_KUBECONFIG):
        done = _run_cluster_script("local-up")
        if done.returncode == EXIT_CANNOT_RUN:
            # local-up's last line says why: "[time] cannot run the local cluster here: why".
            raise ClusterUnavailable(done.stderr.strip().splitlines()[-1].split("] ", 1)[-1])
        if done.returncode != 0:
            raise RuntimeError(f"local-up failed:\n{done.stdout}\n{done.stderr}")
        started_here = True

    def stop() -> None:
        if started_here and os.environ.get("BRIDGEPOOL_E2E_KEEP_CLUSTER") != "1":
            _run_cluster_script("local-down")

    return Cluster(
        flavour="local",
        kubeconfig=LOCAL_KUBECONFIG,
        direct_http=_direct_http(default=True),
        load_image=build_local_image,
        stop=stop,
    )


def pick_cluster() -> Cluster:
    """The cluster to test against; raises ClusterUnavailable with the reason."""
    wanted = os.environ.get("BRIDGEPOOL_E2E_CLUSTER", "auto")
    kubeconfig = os.environ.get("BRIDGEPOOL_E2E_KUBECONFIG")
    if kubeconfig and wanted in ("auto", "kubeconfig"):
        return _existing_cluster(Path(kubeconfig))
    if wanted == "kind" or (wanted == "auto" and _docker_answers()):
        return _kind_cluster()
    if wanted in ("auto", "local"):
        return _local_cluster()
    raise ClusterUnavailable(f"BRIDGEPOOL_E2E_CLUSTER={wanted!r}: no such cluster choice")


def build_local_image(image: str, dockerfile: Path) -> None:
    """Build with buildah and import into the local cluster's containerd."""
    if os.environ.get("BRIDGEPOOL_E2E_IMAGES_BUILT") == "1":
        return  # e2e/run-local built and imported them already
    done = _run_cluster_script("build-image", str(dockerfile), image)
    if done.returncode != 0:
        raise RuntimeError(f"build-image {image} failed:\n{done.stderr}")


# --------------------------------------------------------------------------
# Waiting
# --------------------------------------------------------------------------

# Container states that will not get better by waiting.
_HOPELESS_REASONS = {
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


def wait_for_pod(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    *,
    timeout: float = 120,
    until: Callable[[Any], bool] = pod_ready,
) -> Any:
    """Poll a pod until ``until(pod)`` holds; fail early on a hopeless container state."""
    deadline = time.monotonic() + timeout
    pod: Any = None
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        if until(pod):
            return pod
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting
            if waiting is not None and waiting.reason in _HOPELESS_REASONS:
                raise AssertionError(
                    f"pod {name}: container {status.name} is {waiting.reason}: {waiting.message}"
                )
        time.sleep(0.5)
    phase = pod.status.phase if pod is not None else "unknown"
    raise AssertionError(f"pod {name} not there after {timeout}s (phase {phase})")


def wait_for_pod_gone(
    core: client.CoreV1Api, namespace: str, name: str, *, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_pod(name, namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.5)
    raise AssertionError(f"pod {name} still there after {timeout}s")


class PodLog:
    """Follows a container's log from a thread and keeps every line, so a test
    can read what the process said after its pod is gone."""

    def __init__(self, core: client.CoreV1Api, namespace: str, pod: str) -> None:
        self.lines: list[str] = []
        self._stream: Any = core.read_namespaced_pod_log(
            pod, namespace, follow=True, _preload_content=False
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        pending = b""
        try:
            for chunk in self._stream.stream(decode_content=True):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                self.lines.extend(line.decode(errors="replace") for line in complete)
        except Exception:  # the connection ends when the container goes
            pass
        if pending:
            self.lines.append(pending.decode(errors="replace"))

    def wait_closed(self, timeout: float) -> bool:
        """True once the log stream has ended (the container exited)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def records(self) -> list[dict[str, Any]]:
        """The lines that are JSON objects (the components' structured logs)."""
        found = []
        for line in self.lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
        return found


def wait_for(what: str, check: Callable[[], bool], *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


# --------------------------------------------------------------------------
# HTTP inside the cluster
# --------------------------------------------------------------------------


class Unreachable(Exception):
    """An HTTP call got no answer: nothing listened, the network refused or
    dropped it (a NetworkPolicy), or the connection broke. ``reason`` says
    which as a word: ``refused`` (connection refused or reset), ``timeout``
    (no answer within the call's timeout), else the error's own name."""

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class HttpRequest:
    """One call for :meth:`HttpClient.request_all`: ``body`` goes as JSON
    (none: no body); ``pod_token``: the client pod's own ServiceAccount token
    as ``Authorization: Bearer``, read from the pod's token file at the call."""

    method: str
    url: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    pod_token: bool = False


# Where a pod's ServiceAccount token is mounted (and kept fresh by the kubelet).
POD_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"

# Runs in a client pod: the calls of a JSON list (argv[1]), all at once, each
# with a timeout (argv[2]); prints a JSON list of answers: status, headers and
# body, or why there was none.
_IN_POD_CALLS = """
import concurrent.futures, json, socket, sys, urllib.error, urllib.request
calls, timeout = json.loads(sys.argv[1]), float(sys.argv[2])

def reason(err):
    cause = getattr(err, "reason", err)
    if isinstance(cause, (ConnectionRefusedError, ConnectionResetError)):
        return "refused"
    if isinstance(cause, (socket.timeout, TimeoutError)) or "timed out" in str(cause):
        return "timeout"
    return type(cause).__name__

def call(spec):
    headers = dict(spec["headers"])
    data = None
    if spec["body"] is not None:
        data = json.dumps(spec["body"]).encode()
        headers.setdefault("Content-Type", "application/json")
    if spec["pod_token"]:
        with open(spec["token_file"]) as token:
            headers["Authorization"] = "Bearer " + token.read().strip()
    req = urllib.request.Request(spec["url"], data=data, headers=headers, method=spec["method"])
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        resp = err
    except OSError as err:
        return {"unreachable": repr(err), "reason": reason(err)}
    raw = resp.read().decode()
    return {"status": resp.status, "headers": dict(resp.headers), "body": raw}

with concurrent.futures.ThreadPoolExecutor(max(1, len(calls))) as pool:
    print(json.dumps(list(pool.map(call, calls))))
"""


def start_client_pod(
    core: client.CoreV1Api,
    namespace: str,
    image: str,
    name: str,
    pod_labels: dict[str, str] | None = None,
    service_account: str | None = None,
) -> None:
    """A pod that idles, for HttpClient to call from; ``image`` must have
    python3 (the worker image has). It runs as ``service_account`` (default:
    the namespace's ``default``), whose token the kubelet mounts at
    :data:`POD_TOKEN_FILE`. Returns once it runs."""
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=pod_labels),
        spec=client.V1PodSpec(
            service_account_name=service_account,
            containers=[
                client.V1Container(
                    name="client",
                    image=image,
                    image_pull_policy="Never",
                    command=["python3", "-c", "import time; time.sleep(86400)"],
                )
            ],
            termination_grace_period_seconds=0,
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    wait_for_pod(core, namespace, name, until=lambda p: p.status.phase == "Running")


def _httpx_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    text = str(exc).lower()
    if "refused" in text or "reset" in text:
        return "refused"
    return type(exc).__name__


class HttpClient:
    """Calls addresses inside the cluster: straight from this machine where
    it reaches them, else from a client pod via ``kubectl exec``."""

    def __init__(self, cluster: Cluster, namespace: str, client_pod: str | None) -> None:
        self._cluster = cluster
        self._namespace = namespace
        self._client_pod = client_pod

    def post_json(
        self,
        url: str,
        body: dict[str, Any],
        *,
        timeout: float = 30,
        pod_token: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> HttpAnswer:
        """POST ``body``; raise Unreachable when no HTTP answer comes back.
        ``pod_token``: send the client pod's own ServiceAccount token as
        ``Authorization: Bearer``, read from the pod's token file at the call,
        as an application in the pod would (the router authenticates it)."""
        return self.request(
            "POST", url, body=body, timeout=timeout, pod_token=pod_token, headers=headers
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        timeout: float = 30,
        pod_token: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> HttpAnswer:
        """One call (:class:`HttpRequest`); raise Unreachable when no HTTP answer comes back."""
        call = HttpRequest(method, url, body, dict(headers or {}), pod_token)
        (answer,) = self.request_all([call], timeout=timeout)
        if isinstance(answer, Unreachable):
            raise answer
        return answer

    def request_all(
        self, calls: Sequence[HttpRequest], *, timeout: float = 30
    ) -> list[HttpAnswer | Unreachable]:
        """The calls, made at once (from a client pod, in one ``kubectl
        exec``): for each, its answer, or :class:`Unreachable` when none came
        within ``timeout`` seconds."""
        if any(c.pod_token for c in calls) and self._client_pod is None:
            raise ValueError("pod_token needs a client pod: only a pod has a pod's token")
        if not calls:
            return []
        if self._client_pod is None:
            with ThreadPoolExecutor(len(calls)) as pool:
                return list(pool.map(lambda c: _direct_call(c, timeout), calls))
        specs = [
            {
                "method": c.method,
                "url": c.url,
                "body": c.body,
                "headers": dict(c.headers),
                "pod_token": c.pod_token,
                "token_file": POD_TOKEN_FILE,
            }
            for c in calls
        ]
        out = self._cluster.kubectl(
            "-n", self._namespace, "exec", self._client_pod, "--",
            "python3", "-c", _IN_POD_CALLS, json.dumps(specs), str(timeout),
            timeout=timeout + 30,
        )  # fmt: skip
        answers: list[HttpAnswer | Unreachable] = []
        for call, answer in zip(calls, json.loads(out), strict=True):
            if "unreachable" in answer:
                answers.append(
                    Unreachable(f"{call.url}: {answer['unreachable']}", answer["reason"])
                )
                continue
            headers = {k.lower(): v for k, v in answer["headers"].items()}
            answers.append(HttpAnswer(answer["status"], headers, _json_or_text(answer["body"])))
        return answers


def _direct_call(call: HttpRequest, timeout: float) -> HttpAnswer | Unreachable:
    # trust_env=False: never send cluster traffic through a proxy.
    try:
        with httpx.Client(trust_env=False, timeout=timeout) as http:
            resp = http.request(
                call.method,
                call.url,
                json=call.body,
                headers=dict(call.headers),
            )
    except httpx.TransportError as exc:
        return Unreachable(f"{call.url}: {exc!r}", _httpx_reason(exc))
    return HttpAnswer(resp.status_code, dict(resp.headers), _json_or_text(resp.text))


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# --------------------------------------------------------------------------
# Namespaces and diagnostics
# --------------------------------------------------------------------------


@contextmanager
def fresh_namespace(core: client.CoreV1Api, name: str) -> Iterator[str]:
    """Create a namespace, wait until pods can be created in it, and delete the
    namespace afterwards.

    Pods need the namespace's default ServiceAccount, and before Kubernetes 1.24
    also its token Secret, which controllers add a moment after the namespace.
    """
    version: Any = client.VersionApi(core.api_client).get_code()
    needs_token_secret = (int(version.major), int(version.minor.rstrip("+"))) < (1, 24)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:

        def has_default_sa() -> bool:
            accounts: list[Any] = core.list_namespaced_service_account(name).items
            return any(
                sa.metadata.name == "default" and (sa.secrets or not needs_token_secret)
                for sa in accounts
            )

        wait_for(f"the default ServiceAccount in {name}", has_default_sa, timeout=30)
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def describe_namespace(core: client.CoreV1Api, namespace: str) -> str:
    """Pods, events and container logs of a namespace, as text for a test report."""
    lines: list[str] = [f"== namespace {namespace}", "-- pods"]
    pods: list[Any] = core.list_namespaced_pod(namespace).items
    for pod in pods:
        statuses = ", ".join(
            f"{s.name}: ready={s.ready} restarts={s.restart_count} state={_state(s.state)}"
            for s in pod.status.container_statuses or []
        )
        lines.append(
            f"{pod.metadata.name} phase={pod.status.phase} ip={pod.status.pod_ip} "
            f"node={pod.spec.node_name} [{statuses}]"
        )
    lines.append("-- events")
    all_events: list[Any] = core.list_namespaced_event(namespace).items
    events = sorted(
        all_events,
        key=lambda e: str(e.last_timestamp or e.event_time or ""),
    )
    for ev in events:
        lines.append(
            f"{ev.last_timestamp or ev.event_time} {ev.type} {ev.involved_object.kind}/"
            f"{ev.involved_object.name} {ev.reason}: {ev.message}"
        )
    for pod in pods:
        for container in pod.spec.containers:
            lines.append(f"-- logs {pod.metadata.name}/{container.name}")
            try:
                lines.append(
                    core.read_namespaced_pod_log(
                        pod.metadata.name, namespace, container=container.name, tail_lines=200
                    )
                )
            except client.ApiException as exc:
                lines.append(f"(no logs: {exc.reason})")
    return "\n".join(lines)


def _state(state: Any) -> str:
    if state is None:
        return "unknown"
    if state.running is not None:
        return "running"
    if state.waiting is not None:
        return f"waiting({state.waiting.reason})"
    if state.terminated is not None:
        return f"terminated({state.terminated.reason}, exit {state.terminated.exit_code})"
    return "unknown"
