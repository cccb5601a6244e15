"""Two teams, one pool name, one router: a pool is a namespace and a name, a
caller is a Kubernetes identity that the router authenticates (TokenReview)
and authorizes on the pool (SubjectAccessReview), and a session belongs to the
identity that made it.

The suite's release of the chart (conftest.py's ``installed``: NetworkPolicy
on and enforced by kube-router, the router's authentication at the chart's
default) serves two team namespaces. Each team applies the example pool
(``examples/pool.yaml``, cut to one worker, with the example handlers of
``examples/worker_handlers.py`` mounted from a ConfigMap for the ``incr``
counter), so both pools are named ``example``. A third namespace has nothing
to do with either. Callers are ServiceAccounts with tokens from ``kubectl
create token``, bound (or not) to the chart's caller and viewer ClusterRoles
with RoleBindings, and one is a pod calling with its own mounted token.

Each case is shown both ways (allowed and refused), and the statuses seen go
into the e2e summary.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from bridgepool.names import owned_session_key
from bridgepool.protocol import HEADER_WORKER
from bridgepool.workers import worker_url
from e2e import support
from e2e.components import (
    Installed,
    Pools,
    Recorder,
    create_handlers_configmap,
    pool_api,
    with_handlers,
)
from e2e.support import Cluster

pytestmark = pytest.mark.e2e

POOL = "example"  # the example pool's name, in both teams' namespaces
EXAMPLE_POOL = support.REPO_ROOT / "examples" / "pool.yaml"
INCR = {"command": "incr", "args": {}}
PING = {"command": "ping", "args": {}}
# A ServiceAccount's name as the API server reports it.
SERVICEACCOUNT_USER = "system:serviceaccount:{namespace}:{name}"


def example_pool() -> dict[str, Any]:
    """examples/pool.yaml as a team applies it, cut to one worker (to fit the
    suite's time), with the example handlers mounted from the ConfigMap
    ``handlers`` and loaded by the worker (BRIDGEPOOL_WORKER_HANDLERS)."""
    pool: dict[str, Any] = yaml.safe_load(EXAMPLE_POOL.read_text())
    spec = pool["spec"]
    spec["minReplicas"] = spec["maxReplicas"] = 1
    return with_handlers(pool)


@dataclass
class Team:
    """A namespace: its pool's addresses at the router, its workers, and a
    token of each of its ServiceAccounts."""

    namespace: str
    router_url: str
    workers: set[str] = field(default_factory=set)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        """The pool's address: its namespaced route, and its detail (GET)."""
        return pool_api(self.router_url, self.namespace, POOL)

    @property
    def execute(self) -> str:
        return f"{self.api}/execute"

    def session(self, session_id: str) -> str:
        """A session's address: DELETE ends it, ``/execute`` calls in it."""
        return f"{self.api}/sessions/{session_id}"

    @property
    def listing(self) -> str:
        """The list of the namespace's pools."""
        return f"{self.router_url}/v1/namespaces/{self.namespace}/pools"

    @property
    def short(self) -> str:
        """The short form of the pool's address: the caller's own namespace."""
        return f"{self.router_url}/v1/pools/{POOL}"

    def user(self, service_account: str) -> str:
        return SERVICEACCOUNT_USER.format(namespace=self.namespace, name=service_account)

    @property
    def label(self) -> str:
        """The namespace without its unique suffix: ``team-a``."""
        return self.namespace.rsplit("-", 1)[0]


@dataclass
class Teams:
    installed: Installed
    a: Team
    b: Team
    elsewhere: Team  # an unrelated namespace, without a pool

    @property
    def cluster(self) -> Cluster:
        return self.installed.cluster


# Per namespace: ServiceAccount -> the chart's ClusterRole bound to it there (None: no binding).
TEAM_A_ACCOUNTS = {"app": "caller", "other": "caller", "viewer": "viewer", "nobody": None}
TEAM_B_ACCOUNTS = {"app": "caller"}
ELSEWHERE_ACCOUNTS = {"app": "caller"}


def can_i(cluster: Cluster, user: str, access: str, namespace: str) -> bool:
    """``kubectl auth can-i VERB bridgepools [--subresource=SUB] -n NAMESPACE
    --as USER`` for ``access`` ("create execute", "get"): what RBAC tells an
    admin the router will decide, since the router asks the same question.
    (``bridgepools/execute`` would ask about a pool named "execute".)"""
    verb, _, subresource = access.partition(" ")
    done = subprocess.run(
        [
            cluster.kubectl_path, "--kubeconfig", str(cluster.kubeconfig), "auth", "can-i",
            verb, "bridgepools.bridgepool.io", "-n", namespace, "--as", user,
            *([f"--subresource={subresource}"] if subresource else []),
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    answer = done.stdout.strip()
    if answer not in ("yes", "no"):
        raise RuntimeError(f"kubectl auth can-i: {done.stdout} {done.stderr}")
    return answer == "yes"


def set_up_accounts(installed: Installed, team: Team, accounts: Mapping[str, str | None]) -> None:
    """ServiceAccounts, each bound to its ClusterRole of the chart (if any) by
    a RoleBinding in the team's namespace, and a token of each; returns once
    RBAC answers as the bindings say."""
    cluster, fullname, namespace = installed.cluster, installed.release.fullname, team.namespace
    for account, role in accounts.items():
        cluster.kubectl("-n", namespace, "create", "serviceaccount", account)
        if role is not None:
            cluster.kubectl(
                "-n", namespace, "create", "rolebinding", f"{account}-{role}",
                f"--clusterrole={fullname}-{role}", f"--serviceaccount={namespace}:{account}",
            )  # fmt: skip
        team.tokens[account] = cluster.token(namespace, account)
    for account, role in accounts.items():
        allowed = functools.partial(can_i, cluster, team.user(account), "create execute", namespace)
        if role == "caller":
            support.wait_for(f"RBAC to let {account} of {namespace} call", allowed, timeout=30)
        else:
            assert not allowed(), f"{account} of {namespace} may call without a binding"


@pytest.fixture(scope="module")
def teams(
    installed: Installed,
    core: client.CoreV1Api,
    tmp_path_factory: pytest.TempPathFactory,
    e2e_timings: dict[str, str],
) -> Iterator[Teams]:
    """Both teams' example pools Ready and seen by the router, their
    ServiceAccounts bound, and the unrelated namespace with a bound caller."""
    cluster = installed.cluster
    started = time.monotonic()
    manifest = tmp_path_factory.mktemp("tenancy") / "pool.yaml"
    manifest.write_text(yaml.safe_dump(example_pool()))
    router_url = installed.release.router_url()
    a, b = (Team(namespace, router_url) for namespace in installed.tenants)
    elsewhere = Team(f"elsewhere-{uuid.uuid4().hex[:8]}", router_url)
    with contextlib.ExitStack() as stack:
        stack.enter_context(support.fresh_namespace(core, elsewhere.namespace))
        api = stack.enter_context(cluster.api_client())
        for team in (a, b):
            create_handlers_configmap(cluster, team.namespace)
            cluster.kubectl("-n", team.namespace, "apply", "-f", str(manifest))
            # The pools go while the operator runs (it lifts kopf's finalizer).
            stack.callback(Pools(api, team.namespace).delete_all, timeout=120)
        set_up_accounts(installed, a, TEAM_A_ACCOUNTS)
        set_up_accounts(installed, b, TEAM_B_ACCOUNTS)
        set_up_accounts(installed, elsewhere, ELSEWHERE_ACCOUNTS)
        for team in (a, b):
            cluster.kubectl(
                "-n", team.namespace, "wait", "--for=condition=Ready", f"bp/{POOL}",
                "--timeout=180s", timeout=200,
            )  # fmt: skip
            team.workers = {p.metadata.name for p in Pools(api, team.namespace).pods(POOL)}
            assert len(team.workers) == 1, team.workers
            support.wait_for(
                f"the router to see {team.namespace}'s worker",
                functools.partial(installed.router_sees, team.api, team.workers),
            )
        e2e_timings["tenancy: two teams' pools Ready and seen by the router, callers bound"] = (
            f"{time.monotonic() - started:.1f} s"
        )
        yield Teams(installed, a, b, elsewhere)


# --------------------------------------------------------------------------
# Calls, and what they answered
# --------------------------------------------------------------------------

# What a 403 names as missing (the router says it as kubectl would).
EXECUTE = "create bridgepool.io bridgepools/execute"
END_SESSION = "delete bridgepool.io bridgepools/sessions"
GET = "get bridgepool.io bridgepools"
LIST = "list bridgepool.io bridgepools"


def send(
    method: str,
    url: str,
    token: str | None,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One call, on a connection of its own so the Service spreads the calls
    over both router replicas; ``token`` goes as ``Authorization: Bearer``."""
    sent = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.request(
        method, url, json=body, headers={**sent, **(headers or {})}, trust_env=False, timeout=15
    )


def error_of(resp: httpx.Response) -> dict[str, Any]:
    """The structured error body's ``error``."""
    error: dict[str, Any] = resp.json()["error"]
    return error


def worker_of(resp: httpx.Response) -> str:
    return resp.headers[HEADER_WORKER]


def count_of(resp: httpx.Response) -> int:
    """What ``incr`` answered: the session's count."""
    return int(resp.json()["result"]["count"])


class Check(Recorder):
    """Makes a test's calls, checks each answer's status (a refusal's body
    too), and keeps what it saw for the e2e summary and the test's output."""

    def __init__(self, title: str, timings: dict[str, str]) -> None:
        super().__init__("tenancy", title, timings)

    def __call__(
        self,
        case: str,
        method: str,
        url: str,
        token: str | None,
        status: int,
        missing: str | None = None,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        shown: Callable[[httpx.Response], str] | None = None,
    ) -> httpx.Response:
        """``status`` for the call; a 401 says how to authenticate
        (``WWW-Authenticate: Bearer``), a 403 names what is ``missing``.
        ``shown``: what of a 200 answer goes into the record beside its status."""
        resp = send(method, url, token, body, headers)
        extra = f" ({shown(resp)})" if shown is not None and resp.status_code == 200 else ""
        self.record(case, f"{resp.status_code}{extra}", resp.text)
        assert resp.status_code == status, (case, resp.status_code, resp.headers, resp.text[:500])
        if status == 401:
            assert error_of(resp)["type"] == "unauthenticated", resp.text
            assert resp.headers["WWW-Authenticate"].startswith("Bearer "), resp.headers
        if status == 403:
            error = error_of(resp)
            assert error["type"] == "forbidden", error
            assert missing is not None and missing in error["message"], (missing, error)
        return resp

    def execute(self, case: str, url: str, token: str | None, status: int = 200) -> httpx.Response:
        """An anonymous call (``ping``) to the pool at ``url`` (its execute route)."""
        return self(case, "POST", url, token, status, EXECUTE, body=PING)

    def incr(
        self, case: str, session_url: str, token: str | None, status: int = 200
    ) -> httpx.Response:
        """The example's counter, in the session at ``session_url``."""
        return self(
            case, "POST", f"{session_url}/execute", token, status, EXECUTE, body=INCR,
            shown=lambda resp: f"count {count_of(resp)}",
        )  # fmt: skip


def held_keys(cluster: Cluster, team: Team, core: client.CoreV1Api) -> set[str]:
    """The session keys a team's workers hold, asked of the workers directly
    (with the pool's key, as the router asks them)."""
    keys: set[str] = set()
    headers = cluster.worker_headers(team.namespace, POOL)
    for name in team.workers:
        pod = core.read_namespaced_pod(name, team.namespace)
        listing = httpx.get(
            f"{worker_url(pod)}/v1/sessions", headers=headers, trust_env=False, timeout=5
        ).json()
        keys.update(s["session_id"] for s in listing["sessions"])
    return keys


def pools_in_metrics(installed: Installed) -> set[tuple[str, str]]:
    """The (namespace, pool) labels of the routers' call counters, read from
    every router pod."""
    found: set[tuple[str, str]] = set()
    for router in installed.release.pods("router"):
        port = router.spec.containers[0].ports[0].container_port
        url = f"http://{router.status.pod_ip}:{port}/metrics"
        for family in text_string_to_metric_families(httpx.get(url, trust_env=False).text):
            if family.name == "bridgepool_router_requests":
                found |= {(s.labels["namespace"], s.labels["pool"]) for s in family.samples}
    return found


@contextlib.contextmanager
def client_pods(
    cluster: Cluster, core: client.CoreV1Api, namespace: str, image: str, accounts: list[str]
) -> Iterator[dict[str, support.HttpClient]]:
    """A client pod per ServiceAccount, running as it: ServiceAccount -> an
    HttpClient calling from its pod. The pods go when the block ends."""
    try:
        for account in accounts:
            support.start_client_pod(
                core, namespace, image, f"{account}-pod", service_account=account
            )
        yield {a: support.HttpClient(cluster, namespace, f"{a}-pod") for a in accounts}
    finally:
        for account in accounts:
            with contextlib.suppress(client.ApiException):
                core.delete_namespaced_pod(f"{account}-pod", namespace, grace_period_seconds=0)


def router_restarts(installed: Installed) -> dict[str, int]:
    return {
        p.metadata.name: sum(s.restart_count for s in p.status.container_statuses or [])
        for p in installed.release.pods("router")
    }


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_two_pools_of_one_name_are_two_pools(
    teams: Teams, core: client.CoreV1Api, e2e_timings: dict[str, str]
) -> None:
    """Each team's pool is its own: its detail and its namespace's list show
    its own worker, and its calls and sessions are answered by its own
    worker only, never the other team's."""
    check = Check("two pools of one name", e2e_timings)
    a, b = teams.a, teams.b
    assert a.workers.isdisjoint(b.workers)
    for team in (a, b):
        app = team.tokens["app"]
        detail = check(f"{team.label} GET detail", "GET", team.api, app, 200).json()
        assert (detail["namespace"], detail["pool"]) == (team.namespace, POOL), detail
        assert {w["worker"] for w in detail["workers"]} == team.workers, detail
        listed = check(f"{team.label} GET list", "GET", team.listing, app, 200).json()["pools"]
        assert [(p["namespace"], p["pool"]) for p in listed] == [(team.namespace, POOL)]
        served = {
            worker_of(check.execute(f"{team.label} execute", team.execute, app)) for _ in range(6)
        }
        check.record(f"{team.label} calls answered by", sorted(served))
        assert served == team.workers, (team.namespace, served)

    # One session id in both teams: two sessions, each on its own team's worker.
    session = "shared-name"
    for n in (1, 2):
        for team in (a, b):
            resp = check.incr(f"{team.label} incr", team.session(session), team.tokens["app"])
            assert count_of(resp) == n, (team.namespace, resp.text)
            assert worker_of(resp) in team.workers, (team.namespace, resp.headers)
    # Asked directly: a team's worker holds its own team's session, not the other's.
    a_key = owned_session_key(a.user("app"), session)
    b_key = owned_session_key(b.user("app"), session)
    held = {team.namespace: held_keys(teams.cluster, team, core) for team in (a, b)}
    assert a_key in held[a.namespace] and a_key not in held[b.namespace]
    assert b_key in held[b.namespace] and b_key not in held[a.namespace]
    for team in (a, b):
        check(f"{team.label} delete", "DELETE", team.session(session), team.tokens["app"], 200)

    # Two pools in the routers' metrics too: a namespace label beside the pool.
    in_metrics = pools_in_metrics(teams.installed)
    assert {(a.namespace, POOL), (b.namespace, POOL)} <= in_metrics, in_metrics


def test_the_caller_role_allows_and_its_absence_refuses(
    teams: Teams, core: client.CoreV1Api, worker_image: str, e2e_timings: dict[str, str]
) -> None:
    """Allowed with a RoleBinding of the caller ClusterRole, in its own
    namespace only; refused without one, without a token, with a token that
    is not valid, and with a valid token of another namespace."""
    check = Check("caller role", e2e_timings)
    a, b, elsewhere, cluster = teams.a, teams.b, teams.elsewhere, teams.cluster
    session = a.session("rbac-1")

    # Allowed: team-a's app, bound to the caller role in team-a.
    app = a.tokens["app"]
    assert can_i(cluster, a.user("app"), "create execute", a.namespace)
    assert can_i(cluster, a.user("app"), "delete sessions", a.namespace)
    assert worker_of(check.execute("app execute", a.execute, app)) in a.workers
    resp = check.incr("app session execute", session, app)
    assert count_of(resp) == 1 and worker_of(resp) in a.workers
    check("app session delete", "DELETE", session, app, 200)
    check("app GET detail", "GET", a.api, app, 200)
    check("app GET list", "GET", a.listing, app, 200)
    # The short form is the caller's own namespace: team-a's pool for team-a's
    # app, team-b's for team-b's.
    assert worker_of(check.execute("app short form", f"{a.short}/execute", app)) in a.workers
    assert check("app short form GET", "GET", a.short, app, 200).json()["namespace"] == a.namespace
    resp = check.execute("team-b app short form", f"{b.short}/execute", b.tokens["app"])
    assert worker_of(resp) in b.workers

    # Pods of team-a calling with their own mounted ServiceAccount tokens.
    with client_pods(cluster, core, a.namespace, worker_image, ["app", "nobody"]) as pods:
        answer = pods["app"].post_json(f"{a.short}/execute", PING, pod_token=True, timeout=15)
        check.record("pod of app, own token, short form", answer.status, answer.body)
        assert answer.status == 200, answer
        assert answer.headers[HEADER_WORKER.lower()] in a.workers, answer
        answer = pods["nobody"].post_json(a.execute, PING, pod_token=True, timeout=15)
        check.record("pod of nobody, own token", answer.status, answer.body)
        assert answer.status == 403 and EXECUTE in answer.body["error"]["message"], answer

    # Refused: a ServiceAccount of team-a with no binding.
    nobody = a.tokens["nobody"]
    assert not can_i(cluster, a.user("nobody"), "create execute", a.namespace)
    check.execute("nobody execute", a.execute, nobody, 403)
    check.incr("nobody session execute", session, nobody, 403)
    check("nobody session delete", "DELETE", session, nobody, 403, END_SESSION)
    check("nobody GET detail", "GET", a.api, nobody, 403, GET)
    check("nobody GET list", "GET", a.listing, nobody, 403, LIST)

    # Refused: no token; a token the API server did not issue (app's, with its
    # signature changed); one that is nothing like a token.
    check.execute("no token execute", a.execute, None, 401)
    check("no token session delete", "DELETE", session, None, 401)
    check("no token GET detail", "GET", a.api, None, 401)
    header, claims, signature = app.split(".")
    check.execute("forged token", a.execute, f"{header}.{claims}.{signature[::-1]}", 401)
    check.execute("garbage token", a.execute, "garbage", 401)

    # Refused: valid tokens of other namespaces, bound to the caller role there.
    for name, token in (
        ("team-b app", b.tokens["app"]),
        ("elsewhere app", elsewhere.tokens["app"]),
    ):
        check.execute(f"{name} execute", a.execute, token, 403)
        check.incr(f"{name} session execute", session, token, 403)
        check(f"{name} session delete", "DELETE", session, token, 403, END_SESSION)
        check(f"{name} GET detail", "GET", a.api, token, 403, GET)
    # The unrelated namespace's short form is its own namespace, which has no such pool.
    resp = check.execute("elsewhere app short form", f"{elsewhere.short}/execute",
                         elsewhere.tokens["app"], 404)  # fmt: skip
    assert error_of(resp)["type"] == "unknown_pool"
    assert error_of(resp)["context"]["namespace"] == elsewhere.namespace


def test_a_viewer_may_look_but_not_call(teams: Teams, e2e_timings: dict[str, str]) -> None:
    """A binding of the viewer ClusterRole lets a caller see its namespace's
    pools, and no more."""
    check = Check("viewer role", e2e_timings)
    a, cluster = teams.a, teams.cluster
    viewer = a.tokens["viewer"]
    assert can_i(cluster, a.user("viewer"), "get", a.namespace)
    assert not can_i(cluster, a.user("viewer"), "create execute", a.namespace)
    detail = check("viewer GET detail", "GET", a.api, viewer, 200).json()
    assert {w["worker"] for w in detail["workers"]} == a.workers
    check("viewer GET list", "GET", a.listing, viewer, 200)
    check.execute("viewer execute", a.execute, viewer, 403)
    check.incr("viewer session execute", a.session("v-1"), viewer, 403)
    check("viewer new session", "POST", f"{a.api}/sessions", viewer, 403, EXECUTE)
    check("viewer session delete", "DELETE", a.session("v-1"), viewer, 403, END_SESSION)
    check("viewer GET team-b detail", "GET", teams.b.api, viewer, 403, GET)


def test_a_session_belongs_to_the_identity_that_made_it(
    teams: Teams, e2e_timings: dict[str, str]
) -> None:
    """Another identity using the same session id, though allowed on the pool,
    gets a session of its own: it can neither call in, end, nor detect the
    first. Two tokens of one ServiceAccount (two pods of it) share it."""
    check = Check("session ownership", e2e_timings)
    a = teams.a
    app, other = a.tokens["app"], a.tokens["other"]
    session = a.session("user-42")

    assert count_of(check.incr("app incr", session, app)) == 1
    assert count_of(check.incr("app incr", session, app)) == 2
    resp = check("other delete (it has none)", "DELETE", session, other, 404)
    assert error_of(resp)["type"] == "session_not_found"
    assert count_of(check.incr("other incr", session, other)) == 1  # a fresh session, its own
    check("other delete (its own)", "DELETE", session, other, 200)
    check("other delete again", "DELETE", session, other, 404)
    assert count_of(check.incr("app incr", session, app)) == 3  # app's, untouched

    # A second token of app's ServiceAccount (as a second pod of it gets): the same session.
    second = teams.cluster.token(a.namespace, "app")
    assert second != app
    assert count_of(check.incr("app (2nd token) incr", session, second)) == 4
    check("app (2nd token) delete", "DELETE", session, second, 200)
    assert count_of(check.incr("app incr after that delete", session, app)) == 1
    check("app delete", "DELETE", session, app, 200)


def test_the_router_gives_out_unguessable_session_ids(
    teams: Teams, e2e_timings: dict[str, str]
) -> None:
    check = Check("new session ids", e2e_timings)
    a = teams.a
    app = a.tokens["app"]
    made = [check("app new session", "POST", f"{a.api}/sessions", app, 201) for _ in range(2)]
    ids = [resp.json()["session_id"] for resp in made]
    assert ids[0] != ids[1]
    bits = []
    for session_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", session_id), session_id
        bits.append(len(base64.urlsafe_b64decode(session_id + "=" * (-len(session_id) % 4))) * 8)
    check.record("random bits per id", bits, ids)
    assert min(bits) >= 128, bits
    session = a.session(ids[0])
    first, again = check.incr("incr in it", session, app), check.incr("incr in it", session, app)
    assert (count_of(first), count_of(again)) == (1, 2)
    assert worker_of(first) == worker_of(again) and worker_of(first) in a.workers
    check("delete it", "DELETE", session, app, 200)
    check("nobody new session", "POST", f"{a.api}/sessions", a.tokens["nobody"], 403, EXECUTE)
    check("no token new session", "POST", f"{a.api}/sessions", None, 401)


def test_bad_input_gets_a_clean_4xx_and_the_router_keeps_serving(
    teams: Teams, e2e_timings: dict[str, str]
) -> None:
    check = Check("bad input", e2e_timings)
    a = teams.a
    app = a.tokens["app"]
    restarts = router_restarts(teams.installed)

    # aiohttp's parser refuses a header this long before the router sees it (a
    # plain-text 400): any clean 4xx will do.
    resp = send("POST", a.execute, None, PING, {"Authorization": "Bearer " + "a" * 1_000_000})
    check.record("1 MB token", resp.status_code, resp.text)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    check.execute("then a good call", a.execute, app)

    bad_headers = {
        "non-JWT token": "Bearer not-a-jwt",
        "Basic scheme": "Basic " + base64.b64encode(b"admin:admin").decode(),
        "Bearer, no token": "Bearer",
    }
    for case, authorization in bad_headers.items():
        check(
            case, "POST", a.execute, None, 401, body=PING, headers={"Authorization": authorization}
        )
        check.execute("then a good call", a.execute, app)

    router = teams.a.router_url
    bad_names = {
        "invalid namespace": f"{router}/v1/namespaces/Team_A/pools/{POOL}/execute",
        "namespace of 64 characters": f"{router}/v1/namespaces/{'n' * 64}/pools/{POOL}/execute",
        "invalid pool name": f"{router}/v1/namespaces/{a.namespace}/pools/Ex_ample/execute",
        "invalid pool name, short form": f"{router}/v1/pools/Ex_ample/execute",
    }
    for case, url in bad_names.items():
        resp = check(case, "POST", url, app, 400, body=PING)
        assert error_of(resp)["type"] == "invalid_name", resp.text
        check.execute("then a good call", a.execute, app)

    assert router_restarts(teams.installed) == restarts
